"""One trace from a publisher's event through a dead letter and its replay, on the real broker.

The connector runs on production defaults (its pod ingests its DLQ into the store beside the
ledger) against the fake Severa over HTTP; the test plays the time tracker that publishes with a
``traceparent`` of its own and the integrator that binds a queue of its own to the results. Spans
go to the SDK's in-memory exporter. The other test runs the same path with tracing off.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from adapters.severa.fake.server import FakeSevera
from connector import tracing
from connector.config import DlqSettings, Settings
from connector.dlq import codec
from connector.dlq.operations import ReplayOptions, open_session, replay
from connector.dlq.records import DeadLetterRecord
from connector.dlq.selection import Filter
from connector.service import ConnectorService
from connector.topology import Names
from tests.factories import event_dict
from tests.harness import running_connector, wait_until
from tests.integration.test_production_topology import production_settings
from tests.tracing_support import (
    PUBLISHER_SPAN_ID,
    PUBLISHER_TRACE_ID,
    PUBLISHER_TRACEPARENT,
    ancestors,
    in_memory_tracing,
    named,
    parent_id,
    span_id,
    trace_id,
)

pytestmark = pytest.mark.integration

NEW_USER = {
    "GUID": "7d3c1e52-0000-4000-8000-000000000009",
    "Code": "NEWBIE",
    "Email": "new.person@example.com",
    "FirstName": "New",
    "LastName": "Person",
    "IsActive": True,
}


class Results:
    """What an integrator's own results queue receives: routing key, headers and body."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def of(self, routing_key: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(headers, body) for key, headers, body in self.messages if key == routing_key]


@asynccontextmanager
async def results_queue(connection: aio_pika.abc.AbstractConnection, names: Names) -> AsyncIterator[Results]:
    """An exclusive, auto-deleted queue bound to every result, as an integrator binds one."""
    results = Results()
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(names.results_exchange, "#")

    async def on_result(message: AbstractIncomingMessage) -> None:
        async with message.process():
            results.messages.append(
                (message.routing_key or "", dict(message.headers or {}), json.loads(message.body))
            )

    tag = await queue.consume(on_result)
    try:
        yield results
    finally:
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()


async def publish(
    connection: aio_pika.abc.AbstractConnection, names: Names, event: dict[str, Any], headers: dict[str, Any]
) -> None:
    """Publish like a time tracker: JSON body, message id = event id, and its own headers."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        exchange = await channel.get_exchange(names.workhours_exchange)
        await exchange.publish(
            aio_pika.Message(
                json.dumps(event).encode(),
                content_type="application/json",
                message_id=event["event_id"],
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event["event_type"],
            timeout=10,
        )
    finally:
        await channel.close()


def dlq_settings(amqp_url: str, names: Names, settings: Settings, tmp_path: Path) -> DlqSettings:
    """What an operator's ``dlq`` commands use: the same broker, prefix and store as the pod."""
    return DlqSettings(
        rabbitmq={"url": amqp_url, "prefix": names.prefix},
        state_url=settings.state_url,
        dlq={"audit_log": str(tmp_path / "audit.jsonl")},
    )


def acked(connector: ConnectorService) -> float:
    return float(connector.metrics.messages.labels(flow="work_hours", outcome="acked")._value.get())


async def park_fix_and_replay(
    amqp_url: str,
    names: Names,
    severa: FakeSevera,
    tmp_path: Path,
    connection: aio_pika.abc.AbstractConnection,
    headers: dict[str, Any],
) -> tuple[DeadLetterRecord, Results]:
    """Publish an event for a user Severa does not know yet, let the pod park and ingest it, add
    the user in Severa, replay the dead letter, and wait until the entry is in Severa and acked."""
    settings = production_settings(amqp_url, names, severa, tmp_path)
    event = event_dict(user_code=NEW_USER["Code"])
    async with results_queue(connection, names) as results, running_connector(settings) as connector:
        await publish(connection, names, event, headers)
        await wait_until(lambda: connector.ingested == 1, timeout=30, what="the dead letter ingested")
        await wait_until(lambda: bool(results.of("workhour.failed")), what="workhour.failed")
        async with open_session(
            dlq_settings(amqp_url, names, settings, tmp_path), operator="ops-test", need_broker=True
        ) as session:
            (parked,) = await session.store.find(Filter())
            assert parked.reason == "unknown_user"
            severa.store.users.put(NEW_USER, at=dt.datetime.now(dt.UTC))
            outcome = await replay(
                session,
                Filter(ids=(parked.id,), statuses=frozenset()),
                ReplayOptions(reason="the user was added in Severa"),
            )
            assert outcome.ok, outcome
        await wait_until(lambda: acked(connector) == 1, timeout=30, what="the replayed event acked")
        await wait_until(lambda: bool(results.of("workhour.synced")), what="workhour.synced")
    assert len(severa.store.hour_entries) == 1
    return parked, results


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def children(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if parent_id(s) == span_id(span)]


def attribute(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(key)


async def test_one_trace_spans_a_replayed_message_end_to_end(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    tmp_path: Path,
    amqp_connection: aio_pika.abc.AbstractConnection,
) -> None:
    with in_memory_tracing() as exporter:
        parked, results = await park_fix_and_replay(
            amqp_url,
            topology,
            severa,
            tmp_path,
            amqp_connection,
            {"traceparent": PUBLISHER_TRACEPARENT, "tracestate": "tracker=1"},
        )
        spans = exporter.get_finished_spans()

    # The dead-letter store holds the publisher's W3C trace id, not the correlation-id stand-in.
    assert parked.trace_id == PUBLISHER_TRACE_ID
    ours = [s for s in spans if trace_id(s) == PUBLISHER_TRACE_ID]
    first, second = sorted(named(ours, "process work_hours"), key=lambda s: s.start_time or 0)
    # publish → consume: the first handling is the child of the publisher's span.
    assert parent_id(first) == PUBLISHER_SPAN_ID
    assert first.kind is trace.SpanKind.CONSUMER
    assert attribute(first, "connector.outcome") == "dead_lettered"
    # … its Severa calls (the user look-up found nobody: the call itself went fine) …
    lookup = only(children(first, ours), "severa IUser.GetUserByCode")
    assert attribute(lookup, "connector.outcome") == "ok"
    # … the DLQ record, and the copy published to the dead-letter exchange …
    dead_letter = only(ours, f"dead-letter {topology.workhours_queue}")
    assert first in ancestors(dead_letter, spans)
    assert attribute(dead_letter, "connector.dead_letter_id") == parked.id
    assert attribute(dead_letter, "connector.reason") == "unknown_user"
    to_dlx = only(ours, f"publish {topology.dead_letter_exchange}")
    assert parent_id(to_dlx) == span_id(dead_letter)
    assert to_dlx.kind is trace.SpanKind.PRODUCER
    # … the replay, a child of the context the dead letter was stored with …
    replayed = only(ours, f"dlq replay {topology.workhours_queue}")
    assert parent_id(replayed) == span_id(to_dlx)
    assert attribute(replayed, "connector.dead_letter_id") == parked.id
    # … the replayed handling, its successful Add in Severa and its result event.
    assert replayed in ancestors(second, spans)
    assert attribute(second, "connector.outcome") == "acked"
    under_second = children(second, ours)
    add = only(under_second, "severa IHourEntry.AddNewHourEntry")
    assert attribute(add, "connector.outcome") == "ok"
    assert add.kind is trace.SpanKind.CLIENT
    synced = only(under_second, f"publish {topology.results_exchange}")
    assert attribute(synced, "connector.outcome") == "ok"
    # The integrator's results carry the trace on: both results belong to the publisher's trace.
    ((failed_headers, _),) = results.of("workhour.failed")
    ((synced_headers, _),) = results.of("workhour.synced")
    assert tracing.trace_id_in(failed_headers) == tracing.trace_id_in(synced_headers) == PUBLISHER_TRACE_ID
    assert synced_headers["traceparent"].split("-")[2] == span_id(synced)
    assert synced_headers["tracestate"] == "tracker=1"
    # Every span of the message's path is in this one trace; the others are traces of their own
    # (the circuit's probes of Severa, the replay's audit record), none a part of this message's.
    for other in (s for s in spans if trace_id(s) != PUBLISHER_TRACE_ID):
        assert other.parent is None, other.name
        assert "work_hours" not in other.name, other.name
        assert topology.workhours_queue not in other.name, other.name


async def test_with_tracing_off_nothing_is_made_and_the_publishers_context_passes_through(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    tmp_path: Path,
    amqp_connection: aio_pika.abc.AbstractConnection,
) -> None:
    assert not tracing.active()
    parked, results = await park_fix_and_replay(
        amqp_url, topology, severa, tmp_path, amqp_connection, {"traceparent": PUBLISHER_TRACEPARENT}
    )
    assert not tracing.active()
    assert not isinstance(trace.get_tracer_provider(), SdkTracerProvider)
    # No span was made, so nothing was written: results carry no trace context of ours …
    for headers, _ in results.of("workhour.failed") + results.of("workhour.synced"):
        assert "traceparent" not in headers
    # … yet the store has the publisher's real trace id, and the replay sent its context back
    # unchanged (the replayed message was handled: its context survived the trip).
    assert parked.trace_id == PUBLISHER_TRACE_ID
    assert codec.decode_table(parked.headers)["traceparent"] == PUBLISHER_TRACEPARENT


async def test_a_message_without_trace_context_is_parked_under_its_correlation_id(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    tmp_path: Path,
    amqp_connection: aio_pika.abc.AbstractConnection,
) -> None:
    """The fallback for publishers without tracing, with tracing on: the trace the pod started."""
    settings = production_settings(amqp_url, topology, severa, tmp_path)
    with in_memory_tracing() as exporter:
        async with running_connector(settings) as connector:
            channel = await amqp_connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.workhours_exchange)
            await exchange.publish(
                aio_pika.Message(b"{not json", message_id="bad-1", correlation_id="corr-1"),
                routing_key="workhour.created",
                timeout=10,
            )
            await channel.close()
            await wait_until(lambda: connector.ingested == 1, timeout=30, what="the dead letter ingested")
        spans = exporter.get_finished_spans()
    async with open_session(
        dlq_settings(amqp_url, topology, settings, tmp_path), operator="ops-test"
    ) as session:
        (parked,) = await session.store.find(Filter())
    consume = only(spans, "process work_hours")
    assert consume.parent is None  # a trace of its own, started by the pod
    assert parked.trace_id == trace_id(consume)
