"""``severa-connector dlq`` end to end: real processes, real RabbitMQ, the connector running, fake Severa.

The story ops live through: a bad mapping table (``work_types: {dev: NOPE}``) sends a thousand
events to the DLQ; ops see one failure group of 1,000, fix the table, preview the replay, send a
canary of ten, then replay the rest at a bounded rate -- and Severa ends up with exactly one hour
entry per event. And the same replay killed with SIGKILL halfway, then rerun: still exactly one
entry per event.

The CLI runs as a subprocess (``python -m connector dlq …``) while the connector runs in this
test's event loop, and ``dlq ingest --follow`` runs beside it as the central ingest role (what the
connector pods do once they run the ingester themselves); everything waits on conditions (store
counts, Severa's entries, queue depth), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml

from adapters.severa.fake.server import FakeSevera
from connector.config import Settings
from connector.dlq.selection import Filter
from connector.dlq.sqlite import SqliteStore
from connector.service import ConnectorService
from connector.topology import Names
from schemas.dlq import DlqAuditRecord
from tests.factories import event_dict
from tests.harness import SEVERA_KEY, Broker, connector_settings, wait_until
from tests.integration.test_dlq_broker import park

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 1000


@dataclass
class Cli:
    """Runs ``python -m connector dlq …`` against this test's broker prefix and store."""

    env: dict[str, str]
    store_path: Path
    audit_log: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "connector", "dlq", *args]

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.command(*args),
            env=self.env,
            cwd=ROOT / "tests",  # no .env of the working copy
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        process = await self.start(*args)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return process.returncode, stdout.decode(), stderr.decode()

    async def json(self, *args: str, expect: int = 0) -> Any:
        code, stdout, stderr = await self.run(*args, "--json")
        assert code == expect, f"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        return json.loads(stdout)


@pytest.fixture
def cli(amqp_url: str, topology: Names, tmp_path: Path) -> Cli:
    store_path = tmp_path / "dlq.db"
    audit_log = tmp_path / "dlq-audit.jsonl"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    env = {
        **clean,
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": topology.prefix,
        "SEVERA_CONNECTOR_DLQ__STORE_URL": f"sqlite:///{store_path}",
        "SEVERA_CONNECTOR_DLQ__AUDIT_LOG": str(audit_log),
        "SEVERA_CONNECTOR_DLQ__CANARY_TIMEOUT_SECONDS": "30",
        "USER": "ops-e2e",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return Cli(env=env, store_path=store_path, audit_log=audit_log)


@asynccontextmanager
async def following(cli: Cli) -> AsyncIterator[asyncio.subprocess.Process]:
    """``dlq ingest --follow`` for as long as the block runs; SIGTERM then, and it must exit 0."""
    process = await cli.start("ingest", "--follow")
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 60)
        assert b"until SIGTERM" in line, line
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()


async def stored(path: Path) -> int:
    if not await asyncio.to_thread(path.exists):
        return 0
    async with SqliteStore(path) as store:
        return await store.count(Filter(statuses=frozenset()))


class RestartableConnector:
    """The connector in this event loop; restarted to pick up a corrected mapping file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: ConnectorService | None = None

    async def start(self) -> None:
        self.service = ConnectorService(self.settings)
        await self.service.start()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.close()
            self.service = None


@pytest.fixture
async def broker(amqp_url: str, topology: Names) -> AsyncIterator[Broker]:
    """Like the shared ``broker`` fixture, on a connection of its own: result events still arriving
    while it closes (the connector is torn down after it) cannot break the ``topology`` fixture's
    connection, which has yet to delete the test's queues."""
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "dlq-e2e-broker"})
    channel = await connection.channel(publisher_confirms=True)
    watcher = Broker(channel, topology)
    await watcher.watch_results()
    try:
        yield watcher
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump({"work_types": {"dev": "NOPE"}}))  # the bad table
    return path


@pytest.fixture
async def connector(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path, mapping_file: Path
) -> AsyncIterator[RestartableConnector]:
    settings = connector_settings(
        amqp_url=amqp_url,
        names=topology,
        severa_url=severa.url,
        api_key=SEVERA_KEY,
        state_dir=tmp_path,
        mapping_file=mapping_file,
        rabbitmq={"prefetch": 64},
        http={"enabled": False},
    )
    running = RestartableConnector(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def descriptions(severa: FakeSevera) -> list[str]:
    return [str(entry.get("Description")) for entry in severa.store.hour_entries]


async def publish_events(broker: Broker, count: int) -> set[str]:
    """``count`` events on work type ``dev`` (what the bad table maps to NOPE); their descriptions."""
    run = uuid.uuid4().hex[:6]
    events = [
        event_dict(work_type_code="dev", description=f"dlq-e2e {run} #{i}", source_entry_id=f"{run}-{i}")
        for i in range(count)
    ]
    for start in range(0, count, 100):
        await asyncio.gather(*(broker.publish_event(e) for e in events[start : start + 100]))
    return {e["description"] for e in events}


async def dead_lettered_group(broker: Broker, cli: Cli) -> str:
    """Wait for every event to fail, then find the one failure group the CLI reports."""
    await wait_until(
        lambda: len(broker.results.failed) >= EVENTS,
        timeout=90,
        what=f"{EVENTS} dead letters (have {len(broker.results.failed)})",
    )
    assert {r["reason"] for r in broker.results.failed} == {"unknown_work_type"}
    for _ in range(3000):  # the ingest role takes them into the store as they arrive
        if await stored(cli.store_path) >= EVENTS:
            break
        await asyncio.sleep(0.02)
    groups = await cli.json("list", "--group-by", "error")
    assert len(groups) == 1, groups
    (group,) = groups
    assert group["count"] == EVENTS
    assert group["reason"] == "unknown_work_type"
    assert group["error_class"] == "UnknownReference"
    assert "'NOPE'" in group["example_message"]
    assert await broker.depth(broker.names.workhours_dlq) == 0  # all of it is in the store now
    return str(group["key"])


async def fix_mapping(mapping_file: Path, connector: RestartableConnector) -> None:
    await asyncio.to_thread(mapping_file.write_text, yaml.safe_dump({"work_types": {"dev": "DEV"}}))
    # Until the connector reloads the mapping file by itself, a restart picks the fix up.
    await connector.restart()


async def all_settled(severa: FakeSevera, broker: Broker, expected: set[str]) -> None:
    """Every expected entry is in Severa and nothing is left to process."""
    await wait_until(
        lambda: len(expected & set(descriptions(severa))) == len(expected),
        timeout=120,
        what=f"{len(expected)} hour entries (have {len(expected & set(descriptions(severa)))})",
    )

    async def drained() -> bool:
        return await broker.depth(broker.names.workhours_queue) == 0

    for _ in range(1000):
        if await drained():
            break
        await asyncio.sleep(0.05)
    assert await drained()


def assert_exactly_once(severa: FakeSevera, expected: set[str]) -> None:
    landed = [d for d in descriptions(severa) if d in expected]
    duplicated = {d for d in landed if landed.count(d) > 1}
    assert not duplicated, f"{len(duplicated)} events landed twice, e.g. {sorted(duplicated)[:3]}"
    assert set(landed) == expected, f"{len(expected - set(landed))} events lost"


async def store_counts(path: Path, group: str) -> dict[str, int]:
    async with SqliteStore(path) as store:
        return {
            status: await store.count(Filter(groups=(group,), statuses=frozenset({status})))  # type: ignore[arg-type]
            for status in ("parked", "replaying", "replayed")
        }


def committed_counts(path: Path, group: str) -> dict[str, int]:
    """The group's rows by status as last committed, read without taking any lock: a reader of a WAL
    database never waits for a writer, even one frozen half-way through its transaction (which
    ``SqliteStore``, migrating on open under the write lock, would wait for)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM dead_letters WHERE group_id = ? GROUP BY status", (group,)
        ).fetchall()
    found = {str(status): int(n) for status, n in rows}
    return {status: found.get(status, 0) for status in ("parked", "replaying", "replayed")}


async def audit_records(channel: aio_pika.abc.AbstractChannel, names: Names) -> list[DlqAuditRecord]:
    queue = await channel.get_queue(names.dlq_audit_queue)
    records: list[DlqAuditRecord] = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        records.append(DlqAuditRecord.model_validate_json(message.body))
    return records


async def test_a_bad_mapping_group_is_fixed_previewed_canaried_and_replayed_exactly_once(
    connector: RestartableConnector,
    broker: Broker,
    severa: FakeSevera,
    cli: Cli,
    mapping_file: Path,
) -> None:
    async with following(cli):
        await _fixed_previewed_canaried_and_replayed(connector, broker, severa, cli, mapping_file)


async def _fixed_previewed_canaried_and_replayed(
    connector: RestartableConnector, broker: Broker, severa: FakeSevera, cli: Cli, mapping_file: Path
) -> None:
    expected = await publish_events(broker, EVENTS)
    group = await dead_lettered_group(broker, cli)
    assert not set(descriptions(severa)) & expected

    await fix_mapping(mapping_file, connector)

    preview = await cli.json("replay", "--group", group, "--dry-run", "--reason", "preview the fix")
    assert preview["dry_run"] is True
    assert preview["selected"] == EVENTS
    assert [g["key"] for g in preview["groups"]] == [group]
    assert await store_counts(cli.store_path, group) == {"parked": EVENTS, "replaying": 0, "replayed": 0}
    assert not set(descriptions(severa)) & expected, "a dry run sent something"

    canary = await cli.json(
        "replay", "--group", group, "--canary", "10", "--canary-only", "--reason", "work type mapping fixed"
    )
    assert canary["status"] == "completed", canary
    assert canary["replayed"] == 10
    assert len(canary["canary"]["passed"]) == 10
    assert len(set(descriptions(severa)) & expected) == 10
    assert await store_counts(cli.store_path, group) == {
        "parked": EVENTS - 10,
        "replaying": 0,
        "replayed": 10,
    }

    rest = await cli.json("replay", "--group", group, "--rate", "2000", "--reason", "work type mapping fixed")
    assert rest["status"] == "completed", rest
    assert rest["replayed"] == EVENTS - 10
    assert rest["failed"] == {}
    # The canaries are replayed already: the group's selection names them, but not again (no --again).
    assert set(rest["skipped"].values()) == {"already replayed (use --again)"}
    assert len(rest["skipped"]) == 10

    await all_settled(severa, broker, expected)
    assert_exactly_once(severa, expected)
    assert await store_counts(cli.store_path, group) == {"parked": 0, "replaying": 0, "replayed": EVENTS}
    await wait_until(lambda: len(broker.results.synced) >= EVENTS, what=f"{EVENTS} synced results")
    assert sorted({r["outcome"] for r in broker.results.synced}) == ["created"]

    records = await audit_records(broker.channel, broker.names)
    assert [(r.phase, r.outcome, r.dry_run) for r in records] == [
        ("started", "started", True),
        ("finished", "dry_run", True),
        ("started", "started", False),
        ("finished", "ok", False),
        ("started", "started", False),
        ("finished", "ok", False),
    ]
    assert {r.operator for r in records} == {"ops-e2e"}
    assert records[-1].reason == "work type mapping fixed"
    assert records[-1].counts["replayed"] == EVENTS - 10
    assert records[-1].selection.filter["groups"] == [group]
    logged = [json.loads(line) for line in cli.audit_log.read_text().splitlines()]
    assert [line["audit_id"] for line in logged] == [r.audit_id for r in records]


async def test_a_replay_killed_halfway_and_rerun_loses_and_duplicates_nothing(
    connector: RestartableConnector,
    broker: Broker,
    severa: FakeSevera,
    cli: Cli,
    mapping_file: Path,
) -> None:
    async with following(cli):
        expected = await publish_events(broker, EVENTS)
        group = await dead_lettered_group(broker, cli)
    await fix_mapping(mapping_file, connector)

    first = await cli.start("replay", "--group", group, "--rate", "400", "--reason", "mapping fixed")
    try:
        # Kill it mid-flight: about half replayed and a batch claimed but not yet settled. The
        # store is read while the process is frozen (SIGSTOP), so what was seen is what the kill
        # leaves; if the batch settled between the look and the freeze, thaw it and look again.
        def halfway() -> bool:
            counts = committed_counts(cli.store_path, group)
            return counts["replayed"] >= EVENTS // 2 and counts["replaying"] > 0

        for _ in range(2000):
            if first.returncode is not None:
                break
            if halfway():
                first.send_signal(signal.SIGSTOP)
                if halfway():
                    break
                first.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
        await first.wait()
    assert first.returncode == -signal.SIGKILL
    at_kill = await store_counts(cli.store_path, group)
    assert 0 < at_kill["replayed"] < EVENTS, at_kill
    assert at_kill["replaying"] > 0, "the kill should leave a batch in flight"

    rerun = await cli.json("replay", "--group", group, "--reason", "mapping fixed (rerun after kill)")
    assert rerun["status"] == "completed", rerun
    assert len(rerun["resumed"]) == at_kill["replaying"]
    assert rerun["replayed"] == EVENTS - at_kill["replayed"]

    await all_settled(severa, broker, expected)
    assert_exactly_once(severa, expected)
    assert await store_counts(cli.store_path, group) == {"parked": 0, "replaying": 0, "replayed": EVENTS}


async def test_ingest_follow_takes_dead_letters_as_they_arrive_and_drains_on_sigterm(
    cli: Cli, broker: Broker, topology: Names
) -> None:
    assert not cli.store_path.exists()
    async with following(cli) as process:
        await park(broker.channel, topology, 50)
        for _ in range(1500):
            if await stored(cli.store_path) == 50:
                break
            await asyncio.sleep(0.02)
        assert await stored(cli.store_path) == 50
        await park(broker.channel, topology, 50, start=50)  # still arriving when SIGTERM comes
        process.send_signal(signal.SIGTERM)
    # Whatever it had taken was committed and acked before it exited; the rest waits in the DLQ.
    assert await stored(cli.store_path) + await broker.depth(topology.workhours_dlq) == 100
    code, _, stderr = await cli.run("ingest")
    assert code == 0, stderr
    assert await stored(cli.store_path) == 100
    assert await broker.depth(topology.workhours_dlq) == 0
