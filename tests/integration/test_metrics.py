"""What on-call sees on /metrics of a running connector (real broker, fake Severa and Netvisor).

Every test scrapes the pod's own HTTP endpoint, as Prometheus does, so a metric that exists only
on the registry object but not in the exposition (or only after an event that has not happened
yet) fails here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.netvisor.fake.server import FakeNetvisor
from adapters.severa.fake.server import FakeSevera
from connector.errors import TransientError
from connector.processing import Delivery
from connector.runtime import FlowUnit
from connector.service import ConnectorService
from connector.topology import ExchangeSpec, FlowQueue, Names, dlq_name, retry_queue_name
from tests.factories import event_dict
from tests.fixtures.accounting import SEVERA_KEY as ACCOUNTING_SEVERA_KEY
from tests.fixtures.accounting import accounting_settings
from tests.harness import (
    SEVERA_KEY,
    TEST_RETRY_LADDER,
    Broker,
    connector_settings,
    running_connector,
    wait_until,
)
from tests.unit.test_monitoring_files import dashboard_exprs, metric_names, rule_exprs

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

#: Every metric of issue 11's list, by the sample name it has on /metrics.
EXPECTED = {
    "connector_build_info",
    "connector_ready",
    "connector_circuit_state",
    "connector_circuit_open",
    "connector_queue_messages",
    "connector_queue_consumers",
    "connector_queue_oldest_message_age_seconds",
    "connector_queue_last_sample_timestamp_seconds",
    "connector_messages_in_flight",
    "connector_messages_total",
    "connector_processing_seconds_bucket",
    "connector_poller_last_success_timestamp_seconds",
    "severa_calls_total",
    "severa_call_duration_seconds_bucket",
    "severa_quota_limit_calls",
    "severa_quota_used_calls",
    "netvisor_calls_total",
    "netvisor_call_duration_seconds_bucket",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "python_info",
    "python_gc_collections_total",
}


async def scrape(service: ConnectorService) -> Samples:
    """``/metrics`` of the pod, parsed: (sample name, labels) → value."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{service.health_port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def names_of(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def series(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {key: value for (n, key), value in samples.items() if n == name and wanted <= key}


def value(samples: Samples, name: str, **labels: str) -> float:
    found = series(samples, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return next(iter(found.values()))


async def test_every_metric_on_call_needs_is_on_metrics_and_every_rule_and_panel_names_one(
    amqp_url: str,
    accounting_topology: Names,
    severa: FakeSevera,
    netvisor: FakeNetvisor,
    broker: Broker,
    scripted: ScriptedFlow,
    amqp_connection: aio_pika.abc.AbstractConnection,
    tmp_path: Path,
) -> None:
    severa.set_api_key(ACCOUNTING_SEVERA_KEY)  # the seed with the users the work-hour event names
    settings = accounting_settings(
        amqp_url=amqp_url,
        names=accounting_topology,
        severa=severa,
        netvisor=netvisor,
        state_dir=tmp_path,
        http={"metrics_sample_seconds": 0.05},
    )
    pod = ConnectorService(settings, extra_flows=[scripted.unit])
    channel = await amqp_connection.channel(publisher_confirms=True)
    try:
        await pod.start()
        await wait_until(lambda: pod.readiness().ready, timeout=30, what="the pod ready")
        # One of each: a work-hour event (its result unroutable: nobody binds results here) and a
        # message that climbs the retry ladder into the DLQ.
        await broker.publish_event(event_dict())
        exchange = await channel.get_exchange(scripted.exchange)
        await exchange.publish(aio_pika.Message(b"flaky"), routing_key="any")
        messages = pod.metrics.messages
        await wait_until(
            lambda: (
                messages.labels(flow="work_hours", outcome="acked")._value.get() == 1
                and messages.labels(flow="scripted", outcome="dead_lettered")._value.get() == 1
            ),
            what="the event written and the flaky message parked",
        )
        await wait_until(lambda: pod.poller is not None and pod.poller.polls >= 1, what="a poll")
        rounds = pod.queue_sampler.rounds
        await wait_until(lambda: pod.queue_sampler.rounds >= rounds + 1, what="a queue sample after that")
        samples = await scrape(pod)
    finally:
        await channel.close()
        await pod.close()

    missing = EXPECTED - names_of(samples)
    assert not missing, f"not on /metrics: {sorted(missing)}"
    assert value(samples, "connector_build_info") == 1
    assert value(samples, "connector_ready") == 1  # ready: one series, no reason
    flows = {"work_hours", "accounting_customers", "accounting_invoices", "severa_invoice_updates"}
    for flow in flows:
        assert value(samples, "connector_messages_in_flight", flow=flow) == 0
        assert value(samples, "connector_queue_consumers", flow=flow, kind="work") == 1
        assert value(samples, "connector_queue_messages", flow=flow, kind="dead_letter") == 0
        assert value(samples, "connector_queue_oldest_message_age_seconds", flow=flow) == 0
    assert value(samples, "connector_queue_messages", flow="scripted", kind="dead_letter") == 1
    assert value(samples, "connector_circuit_state", circuit="severa") == 0
    assert value(samples, "connector_circuit_state", circuit="accounting") == 0
    feeds = {dict(key)["feed"] for key in series(samples, "connector_poller_last_success_timestamp_seconds")}
    assert feeds, "no feed's last success on /metrics after a poll"

    referenced = set().union(*(metric_names(expr) for expr in rule_exprs() + dashboard_exprs()))
    unknown = referenced - names_of(samples)
    assert not unknown, f"rules or dashboard name metrics that /metrics does not have: {sorted(unknown)}"


async def test_circuit_state_and_ready_reasons_are_there_from_the_start_and_clear_when_ready(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path
) -> None:
    severa.set_api_key("not-the-connector-key")
    settings = connector_settings(
        amqp_url=amqp_url, names=topology, severa_url=severa.url, api_key=SEVERA_KEY, state_dir=tmp_path
    )
    async with running_connector(settings) as pod:
        paused = await scrape(pod)
        assert value(paused, "connector_circuit_state", circuit="severa") == 2
        assert value(paused, "connector_circuit_open", circuit="severa") == 1
        ready = series(paused, "connector_ready")
        assert ready == {frozenset({("reason", "severa_circuit_open")}): 0.0}

        severa.set_api_key(SEVERA_KEY)
        await wait_until(lambda: pod.readiness().ready, what="ready once Severa accepted the key")
        resumed = await scrape(pod)
    assert value(resumed, "connector_circuit_state", circuit="severa") == 0
    assert series(resumed, "connector_ready") == {frozenset({("reason", "")}): 1.0}, "old reasons cleared"


async def test_quota_is_absent_until_severa_has_answered(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path
) -> None:
    """No sample rather than 0: a 0/0 quota would read as spent."""
    service = ConnectorService(
        connector_settings(
            amqp_url=amqp_url, names=topology, severa_url=severa.url, api_key=SEVERA_KEY, state_dir=tmp_path
        )
    )
    from adapters.severa.metrics import severa_metrics

    severa_metrics(service.metrics.registry)  # as the client registers them
    before = {m.name for m in service.metrics.registry.collect()}
    assert "severa_quota_limit_calls" not in before
    assert "connector_circuit_state" in before
    try:
        await service.start()
        await wait_until(lambda: service.readiness().ready, what="ready")
        after = await scrape(service)
    finally:
        await service.close()
    assert value(after, "severa_quota_limit_calls") > 0


async def test_dlq_depth_follows_a_dead_lettered_message(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    settings = connector_settings(
        amqp_url=amqp_url,
        names=topology,
        severa_url=severa.url,
        api_key=SEVERA_KEY,
        state_dir=tmp_path,
        http={"metrics_sample_seconds": 0.05},
    )
    async with running_connector(settings) as pod:
        dlq = pod.metrics.queue_messages.labels(
            flow="work_hours", queue=topology.workhours_dlq, kind="dead_letter"
        )
        await wait_until(lambda: pod.queue_sampler.rounds >= 1, what="a first sample")
        assert dlq._value.get() == 0
        await broker.publish(b"{not json", message_id="bad-1")
        await wait_until(lambda: dlq._value.get() == 1, what="the DLQ depth at 1")
        parked = await scrape(pod)
        taken = await broker.drain_dlq()
        await wait_until(lambda: dlq._value.get() == 0, what="the DLQ depth back at 0")
    assert value(parked, "connector_queue_messages", queue=topology.workhours_dlq) == 1
    assert [message.message_id for message in taken] == ["bad-1"]


class ScriptedFlow:
    """A flow of the test's own: ``slow`` waits until released, ``flaky`` always fails transiently."""

    def __init__(self, names: Names) -> None:
        self.exchange = f"{names.prefix}test.scripted"
        self.queue = FlowQueue(
            flow="scripted",
            queue=f"{names.prefix}q.test.scripted",
            bindings=((self.exchange, "#"),),
            exchanges=(ExchangeSpec(self.exchange, "topic"),),
        )
        self.release = asyncio.Event()
        self.handled: list[bytes] = []

    async def handle(self, delivery: Delivery) -> None:
        if delivery.body == b"slow":
            await self.release.wait()
        if delivery.body == b"flaky":
            raise TransientError("the test's dependency is flaky", reason="test_flaky")
        self.handled.append(delivery.body)

    def unit(self, _: ConnectorService) -> FlowUnit:
        return FlowUnit(queue=self.queue, handle=self.handle)


@pytest.fixture
async def scripted(
    topology: Names, amqp_connection: aio_pika.abc.AbstractConnection
) -> AsyncIterator[ScriptedFlow]:
    flow = ScriptedFlow(topology)
    yield flow
    channel = await amqp_connection.channel()
    for delay in TEST_RETRY_LADDER:
        await channel.queue_delete(retry_queue_name(flow.queue.queue, delay))
    await channel.queue_delete(dlq_name(flow.queue.queue))
    await channel.queue_delete(flow.queue.queue)
    await channel.exchange_delete(flow.exchange)
    await channel.close()


async def test_in_flight_oldest_age_and_retries_by_ladder_step(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    scripted: ScriptedFlow,
    amqp_connection: aio_pika.abc.AbstractConnection,
    tmp_path: Path,
) -> None:
    settings = connector_settings(
        amqp_url=amqp_url,
        names=topology,
        severa_url=severa.url,
        api_key=SEVERA_KEY,
        state_dir=tmp_path,
        rabbitmq={"prefetch": 1},
        http={"metrics_sample_seconds": 0.05},
    )
    service = ConnectorService(settings, extra_flows=[scripted.unit])
    channel = await amqp_connection.channel(publisher_confirms=True)
    metrics = service.metrics
    work = {"flow": "scripted", "queue": scripted.queue.queue}
    try:
        await service.start()
        await wait_until(lambda: service.readiness().ready, what="ready")
        exchange = await channel.get_exchange(scripted.exchange)
        two_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
        for body in (b"slow", b"next"):
            await exchange.publish(aio_pika.Message(body, timestamp=two_minutes_ago), routing_key="any")
        in_flight = metrics.in_flight.labels(flow="scripted")
        ready = metrics.queue_messages.labels(**work, kind="work")
        await wait_until(lambda: in_flight._value.get() == 1 and ready._value.get() == 1, what="one held")
        waiting = await scrape(service)
        assert value(waiting, "connector_messages_in_flight", flow="scripted") == 1
        age = value(waiting, "connector_queue_oldest_message_age_seconds", flow="scripted")
        assert 120 <= age < 180, age  # the delivered message's age: an upper bound of the head's

        scripted.release.set()
        await wait_until(lambda: scripted.handled == [b"slow", b"next"], what="both handled")
        oldest = metrics.queue_oldest_age.labels(**work)
        await wait_until(lambda: ready._value.get() == 0 and oldest._value.get() == 0, what="age 0")

        await exchange.publish(aio_pika.Message(b"flaky"), routing_key="any")
        dead = metrics.messages.labels(flow="scripted", outcome="dead_lettered")
        await wait_until(lambda: dead._value.get() == 1, what="flaky climbed the ladder")
        parked = metrics.queue_messages.labels(
            flow="scripted", queue=dlq_name(scripted.queue.queue), kind="dead_letter"
        )
        await wait_until(lambda: parked._value.get() == 1, what="the DLQ depth at 1")
        climbed = await scrape(service)
    finally:
        await channel.close()
        await service.close()
    steps = {
        dict(key)["step"]: count
        for key, count in series(climbed, "connector_delayed_retries_total", flow="scripted").items()
    }
    assert steps == {"1": 1.0, "2": 1.0}  # TEST_RETRY_LADDER has two rungs, then the DLQ
    assert value(climbed, "connector_delayed_retries_total", flow="scripted", step="1", reason="test_flaky")
    assert value(climbed, "connector_queue_messages", queue=dlq_name(scripted.queue.queue)) == 1
