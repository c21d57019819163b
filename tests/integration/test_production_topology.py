"""The connector as a real deployment runs it: production defaults, nothing else bound to the broker.

The other integration tests bind a results queue, as a source system that wants results would.
These tests bind nothing: no test-only queue or binding may hide what happens when nobody listens
(it once hid that every success was dead-lettered as ``publish_failed``). Only the broker URL, the
name prefix, the Severa endpoint and key, the state directory and an ephemeral health port differ
from the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika
import pytest

from adapters.severa.fake.server import FakeSevera
from connector.config import Settings
from connector.dlq.selection import Filter
from connector.dlq.store import open_store
from connector.topology import Names, build_topology
from tests.factories import event_dict
from tests.harness import SEVERA_KEY, Broker, running_connector, wait_until

pytestmark = pytest.mark.integration


def production_settings(
    amqp_url: str, names: Names, severa: FakeSevera, state_dir: Path, **extra: Any
) -> Settings:
    rabbitmq = {"url": amqp_url, "prefix": names.prefix, **extra.pop("rabbitmq", {})}
    return Settings(
        severa={"url": severa.url, "api_key": SEVERA_KEY},
        rabbitmq=rabbitmq,
        http={"host": "127.0.0.1", "port": 0},
        state_url=f"sqlite:///{state_dir / 'ledger.db'}",
        pod_name="prod-like-pod",
        **extra,
    )


async def retry_and_dead_letter_depth(broker: Broker, names: Names) -> int:
    spec = build_topology(names)
    queues = [q.name for q in spec.queues if ".retry." in q.name or q.name == names.workhours_dlq]
    return sum([await broker.depth(name) for name in queues])


@pytest.mark.slow
async def test_1000_events_with_nobody_listening_to_results_leave_no_dead_letters(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path, broker: Broker
) -> None:
    settings = production_settings(amqp_url, topology, severa, tmp_path)
    async with running_connector(settings) as connector:
        events = [event_dict(description=f"entry {n}") for n in range(1000)]
        for event in events:
            await broker.publish_event(event)
        await wait_until(
            lambda: (
                connector.metrics.messages.labels(flow="work_hours", outcome="acked")._value.get() == 1000
            ),
            timeout=120,
            what="1000 events acked",
        )
        unroutable = connector.metrics.results_unroutable.labels(
            flow="work_hours", event_type="workhour.synced"
        )._value.get()
        assert await retry_and_dead_letter_depth(broker, topology) == 0
        assert await broker.depth(topology.workhours_queue) == 0
    assert len(severa.store.hour_entries) == 1000
    assert unroutable == 1000  # every result dropped by the broker, counted, none a failure


async def test_a_bad_event_with_nobody_listening_is_parked_once_and_its_notice_counted(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path, broker: Broker
) -> None:
    settings = production_settings(amqp_url, topology, severa, tmp_path)
    async with running_connector(settings) as connector:
        await broker.publish(b"{not json", message_id="bad-1")
        await wait_until(
            lambda: (
                connector.metrics.messages.labels(flow="work_hours", outcome="dead_lettered")._value.get()
                == 1
            ),
            what="the bad event parked",
        )
        assert connector._ingester is not None
        await wait_until(lambda: connector._ingester.counts.stored == 1, what="the dead letter ingested")
        failed_notices = connector.metrics.results_unroutable.labels(
            flow="work_hours", event_type="workhour.failed"
        )._value.get()
    assert failed_notices == 1
    # The pod ingested the dead letter into the central store (beside its ledger): the DLQ queue
    # is empty and the record is there for the `dlq` commands.
    assert await broker.depth(topology.workhours_dlq) == 0
    async with open_store(settings.dlq_store_url(), create=False) as store:
        records = await store.find(Filter())
    assert [r.message_id for r in records] == ["bad-1"]
    assert records[0].reason == "invalid_json"


async def test_the_optional_results_queue_keeps_every_result_for_a_source_not_listening_yet(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    tmp_path: Path,
    broker: Broker,
    amqp_connection: aio_pika.abc.AbstractConnection,
) -> None:
    settings = production_settings(amqp_url, topology, severa, tmp_path, rabbitmq={"results_queue": True})
    try:
        async with running_connector(settings) as connector:
            for _ in range(3):
                await broker.publish_event(event_dict())
            await wait_until(lambda: len(severa.store.hour_entries) == 3, what="3 entries")
            await wait_until(
                lambda: (
                    connector.metrics.messages.labels(flow="work_hours", outcome="acked")._value.get() == 3
                ),
                what="3 acks",
            )
            assert (
                connector.metrics.results_unroutable.labels(
                    flow="work_hours", event_type="workhour.synced"
                )._value.get()
                == 0
            )
        assert await broker.depth(topology.results_queue) == 3
    finally:
        channel = await amqp_connection.channel()
        await channel.queue_delete(topology.results_queue)
        await channel.close()


async def test_the_pod_is_not_ready_until_it_has_reached_severa(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path, broker: Broker
) -> None:
    severa.set_api_key("not-the-connector-key")
    settings = production_settings(amqp_url, topology, severa, tmp_path)
    async with running_connector(settings) as connector:
        gauge = connector.metrics.circuit_open.labels(circuit="severa")
        assert gauge._value.get() == 1  # known from the start, not only after its first change
        await wait_until(lambda: severa.calls["GetUserByCode"] >= 1, what="the first keyed probe")
        readiness = connector.readiness()
        assert not readiness.ready
        assert connector.consumer is not None
        assert not connector.consumer.active
        severa.set_api_key(SEVERA_KEY)
        await wait_until(lambda: connector.readiness().ready, what="ready once Severa accepted the key")
        assert gauge._value.get() == 0
        assert severa.calls["GetVersion"] >= 1
