"""The circuit against a Severa that refuses only writes, and a link cut in the middle of a trial.

These are the bad hours the half-open circuit is for: an API user that may read but not add hour
entries passes every probe while every real write fails. The pod must stay paused without spending
Severa's quota, park nobody, and never get stuck half-open.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import pytest

from adapters.severa.fake.server import FakeSevera
from connector.circuit import CircuitState
from connector.service import ConnectorService
from connector.topology import Names
from tests.factories import event_dict
from tests.harness import SEVERA_KEY, Broker, broker_view, connector_settings, running_connector, wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRITE_RIGHT_MISSING = "AuthenticationFailure"


@pytest.fixture
async def paused_by_writes(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path
) -> AsyncIterator[ConnectorService]:
    settings = connector_settings(
        amqp_url=amqp_url,
        names=topology,
        severa_url=severa.url,
        api_key=SEVERA_KEY,
        state_dir=tmp_path,
        circuit={"probe_initial_seconds": 0.2, "probe_max_seconds": 1.0},
    )
    async with running_connector(settings) as connector:
        await wait_until(lambda: not connector.circuit.is_open, what="Severa reached", timeout=15)
        yield connector


async def test_failed_trials_back_off_instead_of_spending_the_quota(
    paused_by_writes: ConnectorService, severa: FakeSevera, broker: Broker
) -> None:
    connector = paused_by_writes
    severa.faults.soap_fault(WRITE_RIGHT_MISSING, operation="AddNewHourEntry")
    for n in range(3):
        await broker.publish_event(event_dict(description=f"held {n}"))
    await wait_until(lambda: connector.circuit.is_open, what="the pause")
    severa.calls.clear()
    await asyncio.sleep(4)  # a measurement window: count what the supervisor spends in it
    # Backoff 0.2, 0.4, 0.8, 1, 1 ... s: a handful of probe rounds in 4 s, each with one trial or
    # one delivery of the three messages (before the fix: 1,426 probes and 2,138 Adds in 10 s).
    assert severa.calls["GetVersion"] <= 10, dict(severa.calls)
    assert severa.calls["AddNewHourEntry"] <= 3 * 10, dict(severa.calls)
    assert await broker.depth(connector.names.workhours_dlq) == 0


async def test_an_outage_of_writes_parks_no_innocent_event_as_poison(
    paused_by_writes: ConnectorService, severa: FakeSevera, broker: Broker
) -> None:
    connector = paused_by_writes
    await broker.publish_event(event_dict(description="before the outage"))
    await wait_until(lambda: len(severa.store.hour_entries) == 1, what="the first write")
    severa.faults.soap_fault(WRITE_RIGHT_MISSING, operation="AddNewHourEntry")
    for n in range(4):
        await broker.publish_event(event_dict(description=f"innocent {n}"))
        await broker.publish(b"not json", message_id=f"junk-{n}")  # refused before Severa sees it
    await wait_until(lambda: connector.circuit.trips >= 1, what="the pause")
    await asyncio.sleep(5)  # a measurement window: several probe/trial rounds
    parked = await broker.drain_dlq()
    reasons = Counter((m.headers or {}).get("x-dl-reason") for m in parked)
    assert reasons == {"invalid_json": 4}, reasons


async def test_a_link_cut_during_the_trial_does_not_leave_the_circuit_half_open(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    broker: Broker,
    amqp_connection: aio_pika.abc.AbstractConnection,
    tmp_path: Path,
) -> None:
    parts = urlsplit(amqp_url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        url = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}{parts.path or '/'}"
        settings = connector_settings(
            amqp_url=url + "?reconnect_interval=0.2",
            names=topology,
            severa_url=severa.url,
            api_key=SEVERA_KEY,
            state_dir=tmp_path,
        )
        async with running_connector(settings) as connector:
            await wait_until(lambda: not connector.circuit.is_open, what="Severa reached", timeout=15)
            severa.faults.latency(2.0, operation="AddNewHourEntry", times=2)  # the trial is slow
            severa.faults.soap_fault(WRITE_RIGHT_MISSING, operation="AddNewHourEntry", times=1)
            await broker.publish_event(event_dict(description="the trial's message"))
            await wait_until(lambda: connector.circuit.trial_pending, what="the trial running", timeout=15)
            proxy.cut()  # the trial's channel dies under it
            await wait_until(
                lambda: connector.circuit.state is CircuitState.CLOSED, timeout=20, what="closed"
            )
            await wait_until(lambda: len(severa.store.hour_entries) >= 1, timeout=20, what="the entry")
            consumers, _ = await broker_view(amqp_connection, topology.workhours_queue)
            assert consumers == 1
            assert connector.readiness().ready
