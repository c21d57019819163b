"""Exactly once in effect, under stress: redeliveries, cut connections, SIGKILL, outages, two pods.

Real RabbitMQ, the fake Severa over real SOAP/HTTP, the real connector (in-process, or as a separate
process where it must be killed). Every test ends by comparing Severa with the expected set: each
event's entry exactly once, nothing dead-lettered that should not be.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from adapters.severa.fake.faults import Phase
from adapters.severa.fake.server import FakeSevera
from connector.service import ConnectorService
from connector.state import open_ledger
from connector.state.ledger import Ledger
from connector.state.postgres import PostgresLedger
from connector.topology import Names
from schemas.identity import entry_key
from tests.factories import (
    SEED_CASE_GUID,
    SEED_PHASE_GUID,
    SEED_USER_GUID,
    SEED_WORK_TYPE_GUID,
    event_dict,
)
from tests.harness import (
    SEVERA_KEY,
    TEST_RETRY_LADDER,
    Broker,
    connector_settings,
    running_connector,
    wait_until,
)
from tests.postgres_state import drop_state
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def broker(listening_broker: Broker) -> Broker:
    """These tests count result events, so they listen as a source system would (its own queue
    bound to the results exchange); test_production_topology.py runs with nothing bound."""
    return listening_broker


KEY = SEVERA_KEY
POSTGRES_DSN = os.environ.get("LEDGER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]


def bulk_events(count: int, tag: str) -> list[dict[str, Any]]:
    """Events whose descriptions identify them in Severa -- and, every 25th, an identical-looking
    twin: another external entry with the same user, date, case, phase, work type, hours and
    description, so that finding a lost Add by its content must pick the right one of two."""
    events: list[dict[str, Any]] = []
    for i in range(count):
        if i % 25 == 1:
            twin_of = events[-1]
            events.append(event_dict(description=twin_of["description"], hours=twin_of["hours"]))
        else:
            events.append(event_dict(description=f"{tag} #{i}", hours=str(1 + i % 8)))
    return events


def entry_content(entry: dict[str, Any]) -> tuple[str, ...]:
    event_date = entry["EventDate"]
    day = event_date.date().isoformat() if hasattr(event_date, "date") else str(event_date)[:10]
    return (
        str(entry["UserGUID"]),
        str(entry["CaseGUID"]),
        str(entry["PhaseGUID"]),
        str(entry.get("WorkTypeGUID")),
        day,
        str(Decimal(str(entry["Quantity"])).normalize()),
        str(entry["Description"]),
    )


def event_content(event: dict[str, Any]) -> tuple[str, ...]:
    return (
        SEED_USER_GUID,
        SEED_CASE_GUID,
        SEED_PHASE_GUID,
        SEED_WORK_TYPE_GUID,
        event["date"],
        str(Decimal(event["hours"]).normalize()),
        event["description"],
    )


def descriptions(severa: FakeSevera, tag: str) -> Counter[str]:
    return Counter(
        str(e["Description"]) for e in severa.store.hour_entries if str(e["Description"]).startswith(tag)
    )


async def assert_exactly_once(
    severa: FakeSevera, events: list[dict[str, Any]], tag: str, ledger: Ledger | None = None
) -> None:
    """Severa holds each event's entry exactly once, field for field; with the ledger, each
    external entry owns its own Severa entry (no two share a GUID) holding exactly its values."""
    entries = {str(e["GUID"]): e for e in severa.store.hour_entries if str(e["Description"]).startswith(tag)}
    got = Counter(entry_content(e) for e in entries.values())
    want = Counter(event_content(e) for e in events)
    duplicated, lost = got - want, want - got
    assert not duplicated, f"duplicated in Severa: {list(duplicated)[:3]} ({sum(duplicated.values())} in all)"
    assert not lost, f"lost: {list(lost)[:3]} ({sum(lost.values())} in all)"
    if ledger is None:
        return
    owners: dict[str, str] = {}
    for event in events:
        key = entry_key(event["source"], event["source_entry_id"])
        record = await ledger.get(key)
        assert record is not None, f"{key}: not in the ledger"
        assert record.state == "applied", f"{key}: {record.state}"
        assert record.severa_guid in entries, f"{key}: its GUID {record.severa_guid} is not in Severa"
        assert entry_content(entries[record.severa_guid]) == event_content(event), key
        other = owners.setdefault(record.severa_guid, key)
        assert other == key, f"{key} and {other} both own {record.severa_guid}"


def synced_ids(broker: Broker) -> set[str]:
    return {r["event_id"] for r in broker.results.synced}


def via(url: str, port: int, **query: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}", query=extra))


async def test_2000_events_with_forced_redeliveries_land_exactly_once(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    events = bulk_events(2000, "bulk")
    severa.faults.drop(operation="AddNewHourEntry", probability=0.02, phase=Phase.AFTER)  # answers lost
    upstream = urlsplit(amqp_url)
    async with TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5672) as proxy:
        settings = connector_settings(
            amqp_url=via(amqp_url, proxy.port, reconnect_interval="0.2"),
            names=topology,
            severa_url=severa.url,
            api_key=KEY,
            state_dir=tmp_path,
            rabbitmq={"prefetch": 32},
        )
        async with running_connector(settings):
            for i, event in enumerate(events):
                await broker.publish_event(event)
                if i % 10 == 0:  # a producer retrying its publish: the same event twice
                    await broker.publish_event(event)
            for threshold in (400, 1000, 1600):  # cut the wire under load: unacked work is redelivered
                await wait_until(
                    lambda t=threshold: len(descriptions(severa, "bulk")) >= t,  # type: ignore[misc]
                    timeout=60,
                    what=f"{threshold} entries",
                )
                proxy.cut()
            want = {e["event_id"] for e in events}
            await wait_until(lambda: want <= synced_ids(broker), timeout=120, what="every event synced")
    assert proxy.cuts >= 3
    async with open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        await assert_exactly_once(severa, events, "bulk", ledger)
    assert broker.results.failed == []
    assert await broker.depth(topology.workhours_dlq) == 0
    assert severa.faults.rules[0].fired > 0, "no answer was lost: the test proved nothing"


def connector_process(
    amqp_url: str, names: Names, severa: FakeSevera, state_dir: Path
) -> Callable[[], subprocess.Popen[bytes]]:
    """A starter for ``severa-connector run`` as a real process (so that it can be killed)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")},
        "SEVERA_CONNECTOR_SEVERA__URL": severa.url,
        "SEVERA_CONNECTOR_SEVERA__API_KEY": KEY,
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": names.prefix,
        "SEVERA_CONNECTOR_STATE_URL": f"sqlite:///{state_dir / 'ledger.db'}",
        "SEVERA_CONNECTOR_HTTP__ENABLED": "false",
        "SEVERA_CONNECTOR_LOG__LEVEL": "INFO",
        "SEVERA_CONNECTOR_LOG__FORMAT": "json",
        "SEVERA_CONNECTOR_RETRY__LADDER_SECONDS": json.dumps(TEST_RETRY_LADDER),
        "SEVERA_CONNECTOR_DRAIN_SECONDS": "10",
    }

    def start() -> subprocess.Popen[bytes]:
        with open(state_dir / "connector.log", "ab") as log_file:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "connector", "run"],
                env=env,
                cwd=state_dir,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )

    return start


async def test_a_connector_killed_mid_stream_and_restarted_leaves_severa_exact(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    events = bulk_events(600, "kill")
    # Writes land, then the answer takes a while: a kill often falls between Severa and our ack.
    severa.faults.latency(0.01, operation="AddNewHourEntry", phase=Phase.AFTER)
    start = connector_process(amqp_url, topology, severa, tmp_path)
    process = start()
    try:
        for event in events:
            await broker.publish_event(event)
        await wait_until(lambda: len(descriptions(severa, "kill")) >= 200, timeout=60, what="200 entries")
        process.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(process.wait, 10) == -signal.SIGKILL
        landed_at_kill = len(descriptions(severa, "kill"))
        assert landed_at_kill < len(events), "everything landed before the kill: the test proved nothing"

        process = start()
        want = {e["event_id"] for e in events}
        await wait_until(lambda: want <= synced_ids(broker), timeout=120, what="every event synced")
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    async with open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        await assert_exactly_once(severa, events, "kill", ledger)
    assert broker.results.failed == []
    assert await broker.depth(topology.workhours_dlq) == 0


async def test_sigterm_drains_in_flight_work_and_exits_cleanly(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    events = bulk_events(300, "term")
    severa.faults.latency(0.02, operation="AddNewHourEntry")  # keep work in flight
    start = connector_process(amqp_url, topology, severa, tmp_path)
    process = start()
    try:
        for event in events:
            await broker.publish_event(event)
        await wait_until(lambda: len(descriptions(severa, "term")) >= 50, timeout=60, what="50 entries")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        log = (tmp_path / "connector.log").read_text()
        assert '"connector_stopped"' in log
        assert "Traceback" not in log
        stopped_at = len(descriptions(severa, "term"))
        assert stopped_at < len(events), "all work was done before SIGTERM: the test proved nothing"

        process = start()  # the rest is still in the queue
        want = {e["event_id"] for e in events}
        await wait_until(lambda: want <= synced_ids(broker), timeout=120, what="every event synced")
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    await assert_exactly_once(severa, events, "term")
    assert broker.results.failed == []


OUTAGE_SECONDS = float(os.environ.get("SEVERA_OUTAGE_SECONDS", "60"))


async def test_a_severa_outage_dead_letters_nothing_and_drains_afterwards(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    settings = connector_settings(
        amqp_url=amqp_url,
        names=topology,
        severa_url=severa.url,
        api_key=KEY,
        state_dir=tmp_path,
        circuit={"probe_initial_seconds": 0.1, "probe_max_seconds": 2.0},
        work_hours={"hold_seconds": OUTAGE_SECONDS / 3},  # held messages go back to the queue too
    )
    before = bulk_events(20, "outage-before")
    during = bulk_events(100, "outage-during")
    async with running_connector(settings) as connector:
        for event in before:
            await broker.publish_event(event)
        await wait_until(lambda: len(broker.results.synced) == 20, what="the first 20")

        outage = severa.faults.http_error(503, body="Service Unavailable")  # every operation
        loop = asyncio.get_running_loop()
        started = loop.time()
        for event in during:
            await broker.publish_event(event)
        await wait_until(lambda: connector.circuit.is_open, what="the circuit to open")
        while loop.time() - started < OUTAGE_SECONDS:
            assert await broker.depth(topology.workhours_dlq) == 0
            assert broker.results.failed == []
            await asyncio.sleep(1)  # the outage's length is the test's subject, not synchronisation
        assert not connector.readiness().ready
        severa.faults.remove(outage.id)

        want = {e["event_id"] for e in during}
        await wait_until(lambda: want <= synced_ids(broker), timeout=60, what="the backlog to drain")
        await wait_until(lambda: connector.readiness().ready, what="ready again")
    await assert_exactly_once(severa, during, "outage-during")
    assert broker.results.failed == []
    assert await broker.depth(topology.workhours_dlq) == 0


async def test_a_steady_stream_costs_at_most_1_1_severa_calls_per_event(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    settings = connector_settings(
        amqp_url=amqp_url, names=topology, severa_url=severa.url, api_key=KEY, state_dir=tmp_path
    )
    events = bulk_events(300, "steady") + [
        event_dict(user_code="MMEI", description=f"steady other #{i}") for i in range(100)
    ]
    async with running_connector(settings):
        for event in events:
            await broker.publish_event(event)
        await broker.results.wait_for(len(events), timeout=60)
    calls = sum(severa.calls.values())
    assert calls / len(events) <= 1.1, f"{calls} Severa calls for {len(events)} events: {severa.calls}"


async def test_two_pods_sharing_a_postgres_ledger_never_duplicate(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    prefix = f"t_{uuid.uuid4().hex[:10]}_"
    events = bulk_events(300, "pods")
    ledgers = [PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=20) for _ in range(2)]
    try:
        for ledger in ledgers:
            await ledger.setup()
        pods: list[ConnectorService] = []
        for i, ledger in enumerate(ledgers):
            (tmp_path / f"pod{i}").mkdir()
            settings = connector_settings(
                amqp_url=amqp_url,
                names=topology,
                severa_url=severa.url,
                api_key=KEY,
                state_dir=tmp_path / f"pod{i}",
                pod_name=f"pod-{i}",
            )
            pod = ConnectorService(settings, ledger=ledger)
            await pod.start()
            pods.append(pod)
        try:
            for event in events:  # every event twice: both pods may get a copy at the same time
                await broker.publish_event(event)
                await broker.publish_event(event)
            want = {e["event_id"] for e in events}
            await wait_until(lambda: want <= synced_ids(broker), timeout=60, what="every event synced")
            await broker.results.wait_for(2 * len(events), timeout=30)
        finally:
            for pod in pods:
                await pod.close()
        acked = [pod.metrics.messages.labels(flow="work_hours", outcome="acked")._value.get() for pod in pods]
        assert all(count > 0 for count in acked), f"both pods must have competed: {acked}"
        await assert_exactly_once(severa, events, "pods", ledgers[0])
        outcomes = Counter(r["outcome"] for r in broker.results.synced)
        assert outcomes == {"created": 300, "unchanged": 300}
    finally:
        for ledger in ledgers:
            await ledger.aclose()
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await drop_state(conn, prefix)
        finally:
            await conn.close()
