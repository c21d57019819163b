"""The dead-letter store contract, one test body per behaviour, on SQLite and on PostgreSQL.

PostgreSQL is expected at ``DLQ_TEST_POSTGRES_DSN`` (else ``LEDGER_TEST_POSTGRES_DSN``, else
127.0.0.1:5432, database ``test``); if it is missing the PostgreSQL cases FAIL saying so -- they
never skip. Each PostgreSQL case gets its own table prefix, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connector.dlq import codec
from connector.dlq.grouping import GroupBy
from connector.dlq.records import DeadLetterRecord, ReplayRun
from connector.dlq.selection import Filter, HeaderMatch
from connector.dlq.sql import SqlStore
from connector.dlq.store import StoreMissing, StoreUnavailable, open_store
from connector.errors import UsageError
from connector.state.dlq_schema import dlq_metadata
from connector.state.migrations import DEAD_LETTERS, version_table
from schemas.dlq import AuditSelection, DlqAuditRecord
from tests.dlq_factories import T0, record

pytestmark = pytest.mark.integration

POSTGRES_DSN = os.environ.get(
    "DLQ_TEST_POSTGRES_DSN",
    os.environ.get("LEDGER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
)
ROOT = Path(__file__).resolve().parents[2]
SQLITE = pytest.param("sqlite", id="sqlite file")
POSTGRES = pytest.param("postgres", id="postgresql")
NOW = T0 + dt.timedelta(days=1)


def store_tables(prefix: str) -> list[str]:
    """Every table a store under ``prefix`` has, its version table included (to drop them)."""
    return [table.name for table in dlq_metadata(prefix).sorted_tables] + [
        version_table(prefix, DEAD_LETTERS)
    ]


async def require_postgres() -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is required for the postgresql dead-letter store tests and is not reachable at "
            f"{POSTGRES_DSN} ({type(exc).__name__}: {exc}). Start it or set DLQ_TEST_POSTGRES_DSN.",
            pytrace=False,
        )
    await conn.close()


@dataclass
class Backend:
    """Opens stores over one database (one file, or one set of prefixed tables)."""

    name: str
    url: str
    prefix: str | None = None
    opened: list[SqlStore] = field(default_factory=list)

    async def open(self) -> SqlStore:
        store = open_store(self.url, table_prefix=self.prefix)
        assert isinstance(store, SqlStore)
        await store.setup()
        self.opened.append(store)
        return store


@pytest.fixture(params=[SQLITE, POSTGRES])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        made = Backend("sqlite", f"sqlite:///{tmp_path / 'dlq.db'}")
    else:
        await require_postgres()
        made = Backend("postgres", POSTGRES_DSN, prefix=f"t{uuid.uuid4().hex[:12]}_")
    try:
        yield made
    finally:
        for store in reversed(made.opened):
            await store.aclose()
        if made.prefix is not None:
            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                await conn.execute("DROP TABLE IF EXISTS " + ", ".join(store_tables(made.prefix)))
            finally:
                await conn.close()


@pytest.fixture
async def store(backend: Backend) -> SqlStore:
    return await backend.open()


def ids(records: list[DeadLetterRecord]) -> list[str]:
    return [r.id for r in records]


async def running(store: SqlStore, replay_id: str) -> None:
    await store.start_run(
        ReplayRun(
            replay_id=replay_id,
            operator="ops",
            host="h",
            pid=os.getpid(),
            started_at=NOW,
            status="running",
            selected=0,
            target=None,
            audit_id=None,
        )
    )


class TestIngestAndQueries:
    async def test_adding_the_same_dead_letters_again_stores_nothing_new(self, store: SqlStore) -> None:
        rows = [record() for _ in range(3)]
        assert await store.add(rows) == ids(rows)
        assert await store.add([*rows, rows[0]]) == []
        assert await store.count(Filter(statuses=frozenset())) == 3
        assert [e.kind for e in await store.events(rows[0].id)] == ["ingested"]

    async def test_a_copy_twice_in_one_batch_is_stored_once(self, store: SqlStore) -> None:
        row = record()
        assert await store.add([row, row]) == [row.id]

    async def test_a_record_comes_back_exactly_as_it_went_in(self, store: SqlStore) -> None:
        row = record(
            headers=codec.encode_table({"x-death": [{"time": T0, "count": 2}], "b": b"\x00", "n": 1.5}),
            properties=codec.encode_table({"timestamp": T0, "app_id": "tracker"}),
            body=b"\x00\xff binary",
            traceback="Traceback (most recent call last): …",
        )
        await store.add([row])
        back = await store.get(row.id)
        assert back is not None
        assert back == DeadLetterRecord(**{**_fields(row), "seq": back.seq, "updated_at": None})
        assert codec.decode_table(back.headers)["x-death"][0]["time"] == T0

    async def test_rows_come_back_in_ingest_order_which_is_the_dlq_order(self, store: SqlStore) -> None:
        rows = [record(id=f"{i:032x}"[::-1]) for i in range(20)]
        await store.add(rows[:7])
        await store.add(rows[7:])
        assert ids(await store.find(Filter())) == ids(rows)
        assert ids(await store.find(Filter(), limit=5, offset=5)) == ids(rows[5:10])
        assert ids(await store.find(Filter(), offset=18)) == ids(rows[18:])

    async def test_every_filter_selects_what_the_reference_semantics_select(self, store: SqlStore) -> None:
        rows = [
            record(reason="unknown_work_type", headers=codec.encode_table({"x-tenant": "acme", "x-n": 3})),
            record(
                reason="unknown_user",
                error_class="UnknownReference",
                error_message="no user with code 'NOBODY'",
                headers=codec.encode_table({"x-tenant": "globex", "x-flag": True}),
                last_failure_at=T0 + dt.timedelta(hours=2),
            ),
            record(
                reason="severa_validation",
                error_class="SeveraRejected",
                category="permanent",
                original_queue="q.other",
                flow=None,
                error_message="Quantity must be positive",
                last_failure_at=T0 + dt.timedelta(days=2),
                prior_replay_id="r-1",
            ),
            record(reason="delivery_limit", source="broker", category="permanent", message_id=None),
        ]
        await store.add(rows)
        selections = [
            Filter(),
            Filter(statuses=frozenset({"replayed"})),
            Filter(ids=(rows[1].id, rows[3].id)),
            Filter(queues=("q.other",)),
            Filter(flows=("work_hours",)),
            Filter(error_classes=("SeveraRejected",)),
            Filter(reasons=("unknown_user", "delivery_limit")),
            Filter(categories=("transient",)),
            Filter(groups=(rows[0].group_id,)),
            Filter(text="NOBODY"),
            Filter(text="quantity"),
            Filter(text="unknown_"),
            Filter(since=T0 + dt.timedelta(hours=1)),
            Filter(until=T0 + dt.timedelta(hours=2)),
            Filter(since=T0, until=T0 + dt.timedelta(days=1)),
            Filter(headers=(HeaderMatch("x-tenant", "acme"),)),
            Filter(headers=(HeaderMatch("x-tenant"),)),
            Filter(headers=(HeaderMatch("x-n", "3"),)),
            Filter(headers=(HeaderMatch("x-flag", "true"),)),
            Filter(headers=(HeaderMatch("x-missing"),)),
            Filter(message_ids=(rows[0].message_id or "",)),
            Filter(replay_ids=("r-1",)),
            Filter(queues=("q.workhours",), reasons=("unknown_user",), text="nobody"),
        ]
        stored = await store.find(Filter(statuses=frozenset()))
        for selection in selections:
            expected = [r.id for r in stored if selection.matches(r)]
            assert ids(await store.find(selection)) == expected, selection
            assert await store.count(selection) == len(expected), selection

    async def test_a_selection_of_tens_of_thousands_of_ids_is_one_statement(self, store: SqlStore) -> None:
        rows = [record() for _ in range(3)]
        await store.add(rows)
        many = tuple(uuid.uuid4().hex for _ in range(40_000)) + tuple(ids(rows))
        assert await store.count(Filter(ids=many)) == 3
        assert ids(await store.load(list(many))) == ids(rows)

    async def test_groups_count_each_failure_group_with_an_example(self, store: SqlStore) -> None:
        work_type = [record() for _ in range(3)]
        user = [record(reason="unknown_user", error_message=f"no user with code '{c}'") for c in ("A", "A")]
        await store.add([*work_type, *user])
        groups = await store.groups(Filter(), GroupBy.ERROR)
        assert [(g.key, g.count, g.reason) for g in groups] == [
            (work_type[0].group_id, 3, "unknown_work_type"),
            (user[0].group_id, 2, "unknown_user"),
        ]
        assert groups[0].example_id == work_type[0].id
        assert groups[1].example_message == "no user with code 'A'"
        by_reason = await store.groups(Filter(), GroupBy.REASON)
        assert {g.key: g.count for g in by_reason} == {"unknown_work_type": 3, "unknown_user": 2}

    async def test_short_ids_resolve_like_git(self, store: SqlStore) -> None:
        await store.add([record(id="abcdef01" + "0" * 24), record(id="abcdef02" + "0" * 24)])
        assert await store.resolve("abcdef01") == ["abcdef01" + "0" * 24]
        assert len(await store.resolve("abcdef")) == 2
        assert await store.resolve("ffffff") == []

    async def test_the_history_links_every_failure_of_one_message(self, store: SqlStore) -> None:
        first = record(message_id=None)
        second = record(message_id=None, replayed_from=first.id, prior_replay_id="r1")
        third = record(message_id=None, replayed_from=second.id, prior_replay_id="r2")
        unrelated = record()
        await store.add([first, second, third, unrelated])
        assert ids(await store.related(second)) == [first.id, third.id]
        assert ids(await store.related(third)) == [first.id, second.id]
        same_id = record(message_id=unrelated.message_id)
        await store.add([same_id])
        assert ids(await store.related(unrelated)) == [same_id.id]


class TestOpeningWithoutCreating:
    """Only the ingesters create a store; everything else must find it or say it is not there."""

    async def test_a_store_that_is_not_there_is_reported_and_not_created(self, backend: Backend) -> None:
        store = open_store(backend.url, table_prefix=backend.prefix, create=False)
        with pytest.raises(StoreMissing, match="no dead-letter"):
            await store.setup()
        await store.aclose()
        if backend.name == "sqlite":
            assert not await asyncio.to_thread(Path(backend.url.removeprefix("sqlite:///")).exists)
        else:
            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                made = await conn.fetchval(
                    "SELECT to_regclass($1) IS NOT NULL", f"{backend.prefix}dead_letters"
                )
            finally:
                await conn.close()
            assert made is False

    async def test_a_store_an_ingester_created_opens_with_its_rows(self, backend: Backend) -> None:
        created = await backend.open()
        await created.add([record()])
        found = open_store(backend.url, table_prefix=backend.prefix, create=False)
        assert isinstance(found, SqlStore)
        await found.setup()
        backend.opened.append(found)
        assert await found.count(Filter()) == 1

    async def test_a_file_that_is_not_a_store_is_left_alone(self, tmp_path: Path) -> None:
        other = tmp_path / "ledger.db"
        other.write_bytes(b"")
        store = open_store(f"sqlite:///{other}", create=False)
        with pytest.raises(StoreMissing, match="not a dead-letter store"):
            await store.setup()
        await store.aclose()
        assert other.read_bytes() == b""

    async def test_an_unreachable_postgresql_store_is_unavailable_not_missing(self) -> None:
        store = open_store("postgresql://postgres@127.0.0.1:1/test", create=False)
        with pytest.raises(StoreUnavailable) as raised:
            await store.setup()
        await store.aclose()
        assert not isinstance(raised.value, StoreMissing)
        assert "127.0.0.1:1" in raised.value.message


class TestReplayState:
    async def test_a_claim_takes_parked_rows_once_and_leaves_replayed_ones_unless_again(
        self, store: SqlStore
    ) -> None:
        rows = [record() for _ in range(3)]
        await store.add(rows)
        await running(store, "r1")
        assert sorted(await store.claim(ids(rows), replay_id="r1", again=False, now=NOW)) == sorted(ids(rows))
        await running(store, "r2")
        assert await store.claim(ids(rows), replay_id="r2", again=True, now=NOW) == []  # r1 is alive
        await store.mark_replayed(
            {rows[0].id: "q.workhours"}, replay_id="r1", operator="ops", audit_id="a1", now=NOW
        )
        await store.release(
            {rows[1].id: "not confirmed"}, replay_id="r1", operator="ops", audit_id="a1", now=NOW
        )
        replayed, released = await store.get(rows[0].id), await store.get(rows[1].id)
        assert replayed is not None
        assert released is not None
        assert (replayed.status, replayed.replay_count, replayed.replayed_to) == (
            "replayed",
            1,
            "q.workhours",
        )
        assert (released.status, released.last_error) == ("parked", "not confirmed")
        assert [e.kind for e in await store.events(rows[1].id)] == ["ingested", "replay_failed"]
        assert (replayed.replayed_at, replayed.updated_at, replayed.last_error) == (NOW, NOW, None)
        (_, marked) = await store.events(rows[0].id)
        assert (marked.kind, marked.detail, marked.replay_id, marked.operator, marked.audit_id) == (
            "replayed",
            {"to": "q.workhours"},
            "r1",
            "ops",
            "a1",
        )
        # Only a row this run holds in "replaying" is marked: not another run's, not a replayed one.
        await store.mark_replayed(
            {rows[0].id: "elsewhere"}, replay_id="r1", operator="ops", audit_id=None, now=NOW
        )
        await store.mark_replayed(
            {rows[2].id: "elsewhere"}, replay_id="r2", operator="ops", audit_id=None, now=NOW
        )
        untouched, other = await store.get(rows[0].id), await store.get(rows[2].id)
        assert untouched is not None
        assert (untouched.replay_count, untouched.replayed_to) == (1, "q.workhours")
        assert other is not None
        assert (other.status, other.replay_count) == ("replaying", 0)
        assert await store.claim([rows[0].id], replay_id="r2", again=False, now=NOW) == []
        assert await store.claim([rows[0].id, rows[1].id], replay_id="r2", again=True, now=NOW) != []

    async def test_rows_of_a_run_whose_lock_is_free_are_claimed_again(self, store: SqlStore) -> None:
        row = record()
        await store.add([row])
        await running(store, "dead")  # recorded as running, but nobody holds its lock
        assert await store.claim([row.id], replay_id="dead", again=False, now=NOW) == [row.id]
        async with store.run_lock("alive"):
            await running(store, "alive")
            assert await store.live_runs() == {"alive"}
            run = await store.run("dead")
            assert run is not None
            assert run.status == "interrupted"
            assert await store.claim([row.id], replay_id="alive", again=False, now=NOW) == [row.id]
        assert await store.live_runs() == set()

    async def test_two_pods_claiming_the_same_rows_at_once_never_share_one(self, backend: Backend) -> None:
        first, second = await backend.open(), await backend.open()
        rows = [record() for _ in range(300)]
        await first.add(rows)
        async with first.run_lock("p1"), second.run_lock("p2"):
            await running(first, "p1")
            await running(second, "p2")
            wanted = ids(rows)
            claims = await asyncio.gather(
                *(
                    (first if i % 2 else second).claim(
                        wanted[j : j + 50], replay_id="p1" if i % 2 else "p2", again=False, now=NOW
                    )
                    for i in range(2)
                    for j in range(0, 300, 50)
                )
            )
        taken = [i for claim in claims for i in claim]
        assert sorted(taken) == sorted(wanted)

    async def test_a_replay_killed_with_sigkill_frees_its_rows_at_once(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        store = await backend.open()
        row = record()
        await store.add([row])
        script = tmp_path / "holder.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import asyncio, datetime as dt, os, sys
                from connector.dlq.records import ReplayRun
                from connector.dlq.store import StoreMissing, StoreUnavailable, open_store

                async def main():
                    store = open_store({backend.url!r}, table_prefix={backend.prefix!r})
                    await store.setup()
                    async with store.run_lock("victim"):
                        now = dt.datetime.now(dt.UTC)
                        await store.start_run(ReplayRun("victim", "ops", "h", os.getpid(), now, "running", 1,
                                                        None, None))
                        await store.claim([{row.id!r}], replay_id="victim", again=False, now=now)
                        print("ready", flush=True)
                        await asyncio.sleep(600)

                asyncio.run(main())
                """
            )
        )
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(script), cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            # Unconfigured structlog logs to stdout too: read up to the marker.
            while (line := await asyncio.wait_for(child.stdout.readline(), 30)) and line.strip() != b"ready":
                pass
            assert line.strip() == b"ready"
            assert await store.live_runs() == {"victim"}
            assert await store.claim([row.id], replay_id="mine", again=False, now=NOW) == []
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        await _eventually(lambda: _not_alive(store, "victim"))
        async with store.run_lock("mine"):
            await running(store, "mine")
            assert await store.claim([row.id], replay_id="mine", again=False, now=NOW) == [row.id]


class TestEditPurgeAudit:
    async def test_the_first_edit_keeps_the_original_body_and_later_ones_do_not_overwrite_it(
        self, store: SqlStore
    ) -> None:
        row = record(body=b'{"v": 1}')
        await store.add([row])
        await store.edit(row.id, b'{"v": 2}', operator="ops", audit_id="a1", detail={"k": "v"}, now=NOW)
        edited = await store.edit(row.id, b'{"v": 3}', operator="ops", audit_id="a2", detail={}, now=NOW)
        assert (edited.body, edited.original_body, edited.edit_count) == (b'{"v": 3}', b'{"v": 1}', 2)
        assert [e.kind for e in await store.events(row.id)] == ["ingested", "edited", "edited"]

    async def test_a_row_being_replayed_can_be_neither_edited_nor_purged(self, store: SqlStore) -> None:
        row = record()
        await store.add([row])
        async with store.run_lock("r1"):
            await running(store, "r1")
            await store.claim([row.id], replay_id="r1", again=False, now=NOW)
            with pytest.raises(UsageError, match="replaying"):
                await store.edit(row.id, b"{}", operator="ops", audit_id="a", detail={}, now=NOW)
            assert await store.purge([row.id], operator="ops", audit_id="a", now=NOW) == []

    async def test_a_purge_drops_the_body_and_keeps_the_row_for_the_audit(self, store: SqlStore) -> None:
        rows = [record(), record()]
        await store.add(rows)
        assert await store.purge(ids(rows), operator="ops", audit_id="a1", now=NOW) == ids(rows)
        purged = await store.get(rows[0].id)
        assert purged is not None
        assert (purged.status, purged.body) == ("purged", None)
        assert await store.purge(ids(rows), operator="ops", audit_id="a2", now=NOW) == []
        assert await store.count(Filter()) == 0

    async def test_audit_records_are_kept_newest_first(self, store: SqlStore) -> None:
        def audit(phase: str, at: dt.datetime) -> DlqAuditRecord:
            return DlqAuditRecord(
                audit_id="a1",
                phase=phase,  # type: ignore[arg-type]
                at=at,
                operator="ops",
                host="h",
                command="purge",
                reason="why",
                selection=AuditSelection(id_count=1, ids=["x"]),
                outcome="started" if phase == "started" else "ok",
                connector_version="0",
            )

        await store.record_audit(audit("started", T0))
        await store.record_audit(audit("finished", T0 + dt.timedelta(seconds=1)))
        await store.record_audit(audit("finished", T0 + dt.timedelta(seconds=2)))  # a retry: kept once
        assert [(a.phase, a.outcome) for a in await store.audits()] == [
            ("finished", "ok"),
            ("started", "started"),
        ]


def _fields(row: DeadLetterRecord) -> dict[str, Any]:
    return {name: getattr(row, name) for name in DeadLetterRecord.__slots__}  # type: ignore[attr-defined]


async def _not_alive(store: SqlStore, replay_id: str) -> bool:
    return replay_id not in await store.live_runs()


async def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> None:
    """Poll an observable state until it holds (the server notices a dead session quickly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)
