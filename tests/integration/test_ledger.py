"""The ledger contract, one test body per behaviour, run against every backend.

The in-memory fake, SQLite and PostgreSQL must be indistinguishable to the work-hours flow, so
each behaviour is written once and parametrised over the backends. Behaviours only a shared or
persistent store can have (two pods, reopening, a killed process) run on the backends that have
them. PostgreSQL is expected at ``LEDGER_TEST_POSTGRES_DSN`` (default: 127.0.0.1:5432, database
``test``); if it is missing the PostgreSQL cases fail with a message saying so -- they never skip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from connector.state import InMemoryLedger, Ledger, LedgerLockLost, LedgerLockTimeout, LedgerUnavailable
from connector.state.identity import entry_key, split_entry_key
from connector.state.ledger import BaseLedger
from connector.state.postgres import PostgresLedger, advisory_key
from connector.state.sqlite import SqliteLedger
from tests.postgres_state import drop_state

POSTGRES_DSN = os.environ.get("LEDGER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REPO_ROOT = Path(__file__).resolve().parents[2]

MEMORY = pytest.param("memory", id="in-memory fake")
SQLITE = pytest.param("sqlite", id="sqlite file")
POSTGRES = pytest.param("postgres", id="postgresql", marks=pytest.mark.integration)
ALL_BACKENDS = [MEMORY, SQLITE, POSTGRES]
PERSISTENT = [SQLITE, POSTGRES]

X = "tracker:entry-1"
Y = "tracker:entry-2"
Z = "tracker:entry-3"
FINGERPRINT = '{"user": "U1", "date": "2024-05-02", "quantity": "1.5"}'
# The longest key an event can have: 100-character codes, the source all separators.
LONGEST_SOURCE, LONGEST_ENTRY_ID = ":" * 100, "𝄞" * 100
LONGEST = entry_key(LONGEST_SOURCE, LONGEST_ENTRY_ID)

# What schema version 1 looked like, frozen here: the migration tests build such a ledger with the
# SQL the old code ran, then open it with the current code.
V1_SQLITE = (
    "CREATE TABLE schema_version (component TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, "
    "migrated_at TEXT NOT NULL)",
    """CREATE TABLE ledger (
        external_id     TEXT PRIMARY KEY NOT NULL,
        version         INTEGER NOT NULL CHECK (version >= 0),
        state           TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'deleted')),
        severa_guid     TEXT,
        pending_version INTEGER,
        fingerprint     TEXT,
        updated_at      TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX ledger_severa_guid ON ledger (severa_guid)",
    "INSERT INTO schema_version VALUES ('ledger', 1, '2024-05-01T00:00:00+00:00')",
)
V1_POSTGRES = (
    "CREATE TABLE {p}schema_version (component text PRIMARY KEY, version integer NOT NULL, "
    "migrated_at timestamptz NOT NULL DEFAULT now())",
    """CREATE TABLE {p}ledger (
        external_id     text PRIMARY KEY,
        version         bigint NOT NULL CHECK (version >= 0),
        state           text NOT NULL CHECK (state IN ('pending', 'applied', 'deleted')),
        severa_guid     text,
        pending_version bigint,
        fingerprint     text,
        updated_at      timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX {p}ledger_severa_guid ON {p}ledger (severa_guid)",
    "INSERT INTO {p}schema_version (component, version) VALUES ('ledger', 1)",
)
# (external_id, version, state, severa_guid, pending_version, fingerprint) as version 1 wrote them,
# keyed f"{source}:{source_entry_id}".
V1_ROWS = [
    ("tracker:entry-1", 2, "applied", "G1", None, None),  # a plain key: unchanged
    ("a%b:x", 1, "pending", "G2", 2, FINGERPRINT),  # '%' in the source: re-escaped
    ("a%25b:x", 3, "deleted", "G3", None, None),  # re-escaped to a key that the row above...
    ("a%2525b:x", 1, "applied", "G5", None, None),  # ...and this one held: order matters
    ("hx:a0:b", 1, "applied", "G4", None, None),  # ambiguous: kept, taken as ("hx", "a0:b")
]
V2_KEYS = {
    "tracker:entry-1": entry_key("tracker", "entry-1"),
    "a%b:x": entry_key("a%b", "x"),
    "a%25b:x": entry_key("a%25b", "x"),
    "a%2525b:x": entry_key("a%2525b", "x"),
    "hx:a0:b": entry_key("hx", "a0:b"),
}


@dataclass
class Backend:
    """Opens ledgers over one store (one file, one set of tables) and closes them at teardown."""

    name: str
    make: Callable[..., BaseLedger]
    dsn: str | None = None
    table_prefix: str | None = None
    path: Path | None = None
    opened: list[BaseLedger] = field(default_factory=list)

    def new(self, **options: Any) -> BaseLedger:
        """A ledger over this store, not yet set up. For memory each one is a separate store."""
        ledger = self.make(**options)
        self.opened.append(ledger)
        return ledger

    async def open(self, **options: Any) -> BaseLedger:
        ledger = self.new(**options)
        await ledger.setup()
        return ledger


async def _require_postgres() -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is required for the postgresql ledger tests and is not reachable at "
            f"{POSTGRES_DSN} ({type(exc).__name__}: {exc}). Start it, or point "
            "LEDGER_TEST_POSTGRES_DSN at one; deselect with -m 'not integration' if you must.",
            pytrace=False,
        )
    await conn.close()


async def _drop_tables(prefix: str) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        await drop_state(conn, prefix)
    finally:
        await conn.close()


@pytest.fixture
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    name: str = request.param
    made: Backend
    if name == "memory":
        made = Backend(name, lambda **kw: InMemoryLedger(**kw))
    elif name == "sqlite":
        path = tmp_path / "ledger.db"
        made = Backend(name, lambda **kw: SqliteLedger(path, **kw), path=path)
    else:
        await _require_postgres()
        # Unique per test: parallel runs and leftovers of a crashed run never meet.
        prefix = f"t{uuid.uuid4().hex[:12]}_"
        options = {"table_prefix": prefix, "pool_size": 5}
        made = Backend(
            name,
            lambda **kw: PostgresLedger(POSTGRES_DSN, **{**options, **kw}),
            dsn=POSTGRES_DSN,
            table_prefix=prefix,
        )
    try:
        yield made
    finally:
        for ledger in reversed(made.opened):
            await ledger.aclose()
        if made.table_prefix is not None:
            await _drop_tables(made.table_prefix)


async def _wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0) -> None:
    """Poll an observable state (not a timer standing in for one) until it holds."""
    async with asyncio.timeout(timeout):
        # The state lives in PostgreSQL, which cannot set an asyncio.Event for us.
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _advisory_waiters(prefix: str, external_id: str, *, granted: bool) -> int:
    unsigned = advisory_key(prefix, external_id) & 0xFFFF_FFFF_FFFF_FFFF
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND classid = $1 AND objid = $2 AND granted = $3",
            unsigned >> 32,
            unsigned & 0xFFFF_FFFF,
            granted,
        )
    finally:
        await conn.close()
    return int(count)


async def _advisory_holder_pid(prefix: str, external_id: str) -> int:
    unsigned = advisory_key(prefix, external_id) & 0xFFFF_FFFF_FFFF_FFFF
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND classid = $1 AND objid = $2 AND granted",
            unsigned >> 32,
            unsigned & 0xFFFF_FFFF,
        )
    finally:
        await conn.close()
    assert pid is not None, "nobody holds the advisory lock"
    return int(pid)


async def _start_child(script: str, *args: str, ready: str) -> asyncio.subprocess.Process:
    """Run ``script`` in a fresh interpreter and wait until it prints the line ``ready``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"child exited before {ready!r}:\n{''.join(seen)}")
                if line.strip() == ready:
                    return proc
                seen.append(line)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)  # no finally blocks, no atexit, no close(): a real crash
    await proc.wait()


async def _terminate_backend(pid: int) -> None:
    """What an operator's ``pg_terminate_backend`` or a connection reset does to a session."""
    killer = await asyncpg.connect(POSTGRES_DSN)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()


async def _create_v1_ledger(backend: Backend) -> None:
    """A ledger as schema version 1 left it, holding :data:`V1_ROWS`."""
    if backend.path is not None:
        with sqlite3.connect(backend.path) as db:
            for statement in V1_SQLITE:
                db.execute(statement)
            db.executemany(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, '2024-05-01T00:00:00+00:00')", V1_ROWS
            )
        db.close()
        return
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        for statement in V1_POSTGRES:
            await conn.execute(statement.format(p=backend.table_prefix))
        await conn.executemany(
            f"INSERT INTO {backend.table_prefix}ledger (external_id, version, state, severa_guid, "
            "pending_version, fingerprint) VALUES ($1, $2, $3, $4, $5, $6)",
            V1_ROWS,
        )
    finally:
        await conn.close()


async def _stored_schema_version(backend: Backend) -> int:
    if backend.path is not None:
        with sqlite3.connect(backend.path) as db:
            (version,) = db.execute(
                "SELECT version FROM schema_version WHERE component = 'ledger'"
            ).fetchone()
        db.close()
        return int(version)
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        found = await conn.fetchval(
            f"SELECT version FROM {backend.table_prefix}schema_version WHERE component = 'ledger'"
        )
    finally:
        await conn.close()
    return int(found)


async def _assert_rekeyed(ledger: BaseLedger) -> None:
    assert await ledger.count() == len(V1_ROWS)
    for old_key, version, state, guid, pending_version, fingerprint in V1_ROWS:
        rec = await ledger.get(V2_KEYS[old_key])
        assert rec is not None, f"{old_key!r} was not re-keyed to {V2_KEYS[old_key]!r}"
        assert (rec.version, rec.state, rec.severa_guid, rec.pending_version, rec.fingerprint) == (
            version,
            state,
            guid,
            pending_version,
            fingerprint,
        ), f"re-keying {old_key!r} changed more than its key"
        assert rec.content_hash is None


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
class TestRecords:
    async def test_an_unknown_id_has_no_record(self, backend: Backend) -> None:
        ledger = await backend.open()
        assert await ledger.get(X) is None
        assert await ledger.count() == 0

    async def test_pending_then_applied_records_the_guid_and_version(self, backend: Backend) -> None:
        ledger = await backend.open()

        await ledger.mark_pending(X, 1, FINGERPRINT)
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.pending_version, rec.fingerprint, rec.severa_guid) == (
            "pending",
            0,
            1,
            FINGERPRINT,
            None,
        )

        await ledger.mark_applied(X, 1, "G1")
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.pending_version, rec.fingerprint, rec.severa_guid) == (
            "applied",
            1,
            None,
            None,
            "G1",
        )
        assert rec.active_guid == "G1"
        assert await ledger.count() == 1

    async def test_a_later_version_going_pending_keeps_the_applied_version_and_guid(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(X, 1, "G1")

        await ledger.mark_pending(X, 2, FINGERPRINT)
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.pending_version, rec.severa_guid) == ("pending", 1, 2, "G1")
        assert rec.active_guid is None, "a pending record's GUID must be looked up, not trusted"

        await ledger.mark_applied(X, 2, "G2")
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid) == ("applied", 2, "G2")

    async def test_a_stale_version_never_lowers_the_recorded_version(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(X, 5, "G5")

        await ledger.mark_applied(X, 3, "G5")
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version) == ("applied", 5)

        await ledger.mark_deleted(X, 4)
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version) == ("deleted", 5)

    async def test_a_delete_leaves_a_tombstone_that_keeps_the_guid_for_audit(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(X, 1, "G1")

        await ledger.mark_deleted(X, 2)
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid, rec.pending_version) == ("deleted", 2, "G1", None)
        assert rec.active_guid is None
        # The flow's rule: a late "created" of version 1 is stale against the tombstone.
        assert rec.state != "pending"
        assert rec.version >= 1

    async def test_a_delete_that_overtakes_the_create_still_leaves_a_tombstone(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open()
        await ledger.mark_deleted(X, 3)
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid) == ("deleted", 3, None)

    async def test_a_delete_clears_a_pending_mark(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.mark_pending(X, 1, FINGERPRINT)
        await ledger.mark_deleted(X, 1)
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.pending_version, rec.fingerprint) == ("deleted", 1, None, None)

    async def test_owners_of_names_applied_and_pending_holders_only(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.mark_applied("a:1", 1, "GA")
        await ledger.mark_applied("b:1", 1, "GB")
        await ledger.mark_pending("b:1", 2, FINGERPRINT)  # pending, still holding GB
        await ledger.mark_applied("c:1", 1, "GC")
        await ledger.mark_deleted("c:1", 2)  # tombstones own nothing

        owners = await ledger.owners_of(["GA", "GB", "GC", "G-unknown"])
        assert owners == {"GA": "a:1", "GB": "b:1"}
        assert await ledger.owners_of([]) == {}
        with pytest.raises(TypeError, match="not a single string"):
            await ledger.owners_of("GA")

    async def test_owners_of_takes_more_guids_than_one_statement_can_bind(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(X, 1, "G-0001")
        await ledger.mark_applied(Y, 1, "G-1199")
        guids = [f"G-{i:04d}" for i in range(1200)]
        assert await ledger.owners_of(guids) == {"G-0001": X, "G-1199": Y}

    async def test_updated_at_is_aware_utc_and_moves_forward(self, backend: Backend) -> None:
        ledger = await backend.open()
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)  # server clock may lag a bit
        await ledger.mark_pending(X, 1, FINGERPRINT)
        first = await ledger.get(X)
        await ledger.mark_applied(X, 1, "G1")
        second = await ledger.get(X)
        assert first is not None
        assert second is not None
        assert first.updated_at.utcoffset() == dt.timedelta(0)
        assert before <= first.updated_at <= second.updated_at

    async def test_applied_stores_a_content_hash_that_pending_and_delete_keep(self, backend: Backend) -> None:
        ledger = await backend.open()

        async def content_hash() -> str | None:
            rec = await ledger.get(X)
            assert rec is not None
            return rec.content_hash

        await ledger.mark_pending(X, 1, FINGERPRINT)
        assert await content_hash() is None
        await ledger.mark_applied(X, 1, "G1", content_hash="H1")
        assert await content_hash() == "H1"
        await ledger.mark_pending(X, 2, FINGERPRINT)
        assert await content_hash() == "H1", "a pending mark keeps the hash of what is applied"
        await ledger.mark_applied(X, 2, "G2", content_hash="H2")
        assert await content_hash() == "H2"
        await ledger.mark_deleted(X, 3)
        assert await content_hash() == "H2", "a tombstone keeps the hash for audit"
        await ledger.mark_applied(X, 4, "G4")
        assert await content_hash() is None, "applying without a hash clears the old one"

        await ledger.mark_deleted(Y, 1)
        rec = await ledger.get(Y)
        assert rec is not None
        assert rec.content_hash is None

    async def test_an_empty_content_hash_is_refused(self, backend: Backend) -> None:
        ledger = await backend.open()
        with pytest.raises(ValueError, match="content_hash"):
            await ledger.mark_applied(X, 1, "G1", content_hash="")
        assert await ledger.count() == 0

    async def test_keys_of_the_maximum_length_store_lock_and_load(self, backend: Backend) -> None:
        ledger = await backend.open()
        assert len(LONGEST) == 401
        async with asyncio.timeout(10), ledger.lock(LONGEST):
            await ledger.mark_pending(LONGEST, 1, FINGERPRINT)
            await ledger.mark_applied(LONGEST, 1, "G1", content_hash="H1")
        rec = await ledger.get(LONGEST)
        assert rec is not None
        assert rec.external_id == LONGEST
        assert split_entry_key(rec.external_id) == (LONGEST_SOURCE, LONGEST_ENTRY_ID)
        assert (rec.state, rec.severa_guid, rec.content_hash) == ("applied", "G1", "H1")
        assert await ledger.owners_of(["G1"]) == {"G1": LONGEST}

    async def test_entries_whose_old_keys_collided_stay_apart(self, backend: Backend) -> None:
        ledger = await backend.open()
        first, second = entry_key("hx:a0", "b"), entry_key("hx", "a0:b")
        await ledger.mark_applied(first, 1, "G-first")
        await ledger.mark_applied(second, 1, "G-second")
        assert await ledger.count() == 2
        assert await ledger.owners_of(["G-first", "G-second"]) == {"G-first": first, "G-second": second}

    @pytest.mark.parametrize(
        ("call", "args"),
        [
            pytest.param("get", ("",), id="an empty external id is refused"),
            pytest.param("mark_pending", (X, -1, FINGERPRINT), id="a negative version is refused"),
            pytest.param("mark_pending", (X, 2**63, FINGERPRINT), id="a version beyond 64 bits is refused"),
            pytest.param("mark_pending", (X, True, FINGERPRINT), id="a bool is not a version"),
            pytest.param("mark_pending", (X, 1, ""), id="an empty fingerprint is refused"),
            pytest.param("mark_applied", (X, 1, ""), id="an empty guid is refused"),
            pytest.param("mark_deleted", ("a\x00b", 1), id="a NUL character in an id is refused"),
            pytest.param("mark_pending", (X, 1, "\udc80"), id="unpaired surrogates are refused"),
            pytest.param("owners_of", ([""],), id="an empty guid in a lookup is refused"),
            pytest.param("claim", (X, 1, ""), id="an empty guid is not claimed"),
            pytest.param("claim", (X, -1, "G1"), id="a claim at a negative version is refused"),
        ],
    )
    async def test_bad_arguments_are_value_errors_not_store_failures(
        self, backend: Backend, call: str, args: tuple[Any, ...]
    ) -> None:
        ledger = await backend.open()
        with pytest.raises(ValueError, match=r"."):
            await getattr(ledger, call)(*args)
        assert await ledger.count() == 0

    async def test_a_claim_of_a_guid_nobody_holds_applies_the_pending_record(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(X, 1, "G1", content_hash="H1")
        await ledger.mark_pending(X, 2, FINGERPRINT)

        assert await ledger.claim(X, 2, "G2") is True
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid, rec.pending_version, rec.fingerprint) == (
            "applied",
            2,
            "G2",
            None,
            None,
        )
        assert rec.content_hash is None, "what landed is the pending version's content, not H1's"
        assert await ledger.owners_of(["G1", "G2"]) == {"G2": X}

    async def test_a_claim_never_lowers_the_version_and_creates_a_missing_record(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open()
        await ledger.mark_deleted(X, 5)
        assert await ledger.claim(X, 3, "G1") is True
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid) == ("applied", 5, "G1")

        assert await ledger.claim(Y, 2, "G2") is True
        rec = await ledger.get(Y)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid, rec.content_hash) == ("applied", 2, "G2", None)

    async def test_a_claim_of_a_guid_another_entry_holds_is_refused_and_changes_nothing(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(Y, 1, "GY")  # applied: holds GY
        await ledger.mark_applied(Z, 1, "GZ")
        await ledger.mark_pending(Z, 2, FINGERPRINT)  # pending: still holds GZ
        await ledger.mark_pending(X, 1, FINGERPRINT)
        before = await ledger.get(X)

        assert await ledger.claim(X, 1, "GY") is False
        assert await ledger.claim(X, 1, "GZ") is False
        assert await ledger.get(X) == before
        assert await ledger.owners_of(["GY", "GZ"]) == {"GY": Y, "GZ": Z}

        assert await ledger.claim("new:1", 1, "GY") is False
        assert await ledger.get("new:1") is None, "a refused claim creates no record"
        assert await ledger.count() == 3

    async def test_a_claim_may_take_a_guid_held_only_by_a_tombstone_or_by_itself(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open()
        await ledger.mark_applied(Y, 1, "GY")
        await ledger.mark_deleted(Y, 2)  # tombstones own nothing
        await ledger.mark_pending(X, 1, FINGERPRINT)
        assert await ledger.claim(X, 1, "GY") is True
        assert await ledger.claim(X, 1, "GY") is True, "claiming again what we hold is a no-op"
        assert await ledger.owners_of(["GY"]) == {"GY": X}

    async def test_of_many_entries_claiming_one_guid_at_once_exactly_one_wins(self, backend: Backend) -> None:
        ledger = await backend.open()
        ids = [f"tracker:twin-{i}" for i in range(10)]
        for external_id in ids:
            await ledger.mark_pending(external_id, 1, FINGERPRINT)

        async def claim(external_id: str) -> bool:
            async with ledger.lock(external_id):
                return await ledger.claim(external_id, 1, "G-shared")

        async with asyncio.timeout(30):
            won = await asyncio.gather(*(claim(external_id) for external_id in ids))
        assert won.count(True) == 1
        winner = ids[won.index(True)]
        assert await ledger.owners_of(["G-shared"]) == {"G-shared": winner}
        for external_id, claimed in zip(ids, won, strict=True):
            rec = await ledger.get(external_id)
            assert rec is not None
            assert rec.state == ("applied" if claimed else "pending")

    async def test_fifty_tasks_apply_distinct_ids_concurrently(self, backend: Backend) -> None:
        ledger = await backend.open()

        async def apply(i: int) -> None:
            external_id = f"tracker:{i}"
            async with ledger.lock(external_id):
                assert await ledger.get(external_id) is None
                await ledger.mark_pending(external_id, 1, FINGERPRINT)
                await ledger.mark_applied(external_id, 1, f"G{i}")

        async with asyncio.timeout(30):
            await asyncio.gather(*(apply(i) for i in range(50)))

        assert await ledger.count() == 50
        owners = await ledger.owners_of([f"G{i}" for i in range(50)])
        assert owners == {f"G{i}": f"tracker:{i}" for i in range(50)}


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
class TestLock:
    async def test_a_second_task_waits_until_the_first_releases(self, backend: Backend) -> None:
        ledger = await backend.open()
        order: list[str] = []
        a_holds = asyncio.Event()
        b_is_waiting = asyncio.Event()

        async def a() -> None:
            async with ledger.lock(X):
                order.append("a in")
                a_holds.set()
                await b_is_waiting.wait()
                # B reached lock(X) before this line ran; give it every chance to get in anyway:
                # plain yields plus a ledger call (on PostgreSQL answered by the lock's own read).
                for _ in range(20):
                    await asyncio.sleep(0)
                await ledger.get(X)
                order.append("a out")

        async def b() -> None:
            await a_holds.wait()
            b_is_waiting.set()  # no await between this and the lock attempt below
            async with ledger.lock(X):
                order.append("b in")

        async with asyncio.timeout(10):
            await asyncio.gather(a(), b())
        assert order == ["a in", "a out", "b in"]

    async def test_locks_on_different_ids_do_not_block_each_other(self, backend: Backend) -> None:
        ledger = await backend.open()
        release_x = asyncio.Event()
        x_held = asyncio.Event()

        async def hold_x() -> None:
            async with ledger.lock(X):
                x_held.set()
                await release_x.wait()

        holder = asyncio.create_task(hold_x())
        try:
            await x_held.wait()
            # Would hang (and hit the timeout) if Y queued behind X.
            async with asyncio.timeout(10), ledger.lock(Y):
                await ledger.mark_applied(Y, 1, "GY")
            assert not holder.done()
        finally:
            release_x.set()
            await holder

    async def test_the_lock_is_released_when_the_block_raises(self, backend: Backend) -> None:
        ledger = await backend.open()
        with pytest.raises(ZeroDivisionError):
            async with ledger.lock(X):
                _ = 1 / 0
        async with asyncio.timeout(10), ledger.lock(X):
            await ledger.mark_deleted(X, 1)

    async def test_the_lock_is_released_when_its_holder_is_cancelled(self, backend: Backend) -> None:
        ledger = await backend.open()
        entered = asyncio.Event()

        async def hold_forever() -> None:
            async with ledger.lock(X):
                entered.set()
                await asyncio.Event().wait()

        holder = asyncio.create_task(hold_forever())
        await entered.wait()
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        async with asyncio.timeout(10), ledger.lock(X):
            await ledger.mark_applied(X, 1, "G1")

    async def test_a_waiter_gives_up_after_the_lock_timeout(self, backend: Backend) -> None:
        ledger = await backend.open(lock_timeout=0.2)
        entered = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with ledger.lock(X):
                entered.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        try:
            await entered.wait()
            with pytest.raises(LedgerLockTimeout) as caught:
                async with ledger.lock(X):
                    pytest.fail("entered a lock that another task holds")
            assert caught.value.category.value == "transient"
        finally:
            release.set()
            await holder
        async with ledger.lock(X):  # still usable after a timed-out waiter
            pass

    async def test_an_error_inside_the_block_is_not_mistaken_for_a_lock_timeout(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open()
        with pytest.raises(TimeoutError) as caught:
            async with ledger.lock(X):
                raise TimeoutError("Severa took too long")
        assert not isinstance(caught.value, LedgerLockTimeout)


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
class TestLifecycle:
    async def test_setup_and_close_are_idempotent(self, backend: Backend) -> None:
        ledger = backend.new()
        await ledger.setup()
        await ledger.mark_applied(X, 1, "G1")

        # A second setup neither reopens (SQLite would refuse its own file) nor resets the store.
        await ledger.setup()
        await ledger.probe()
        rec = await ledger.get(X)
        assert rec is not None
        assert rec.severa_guid == "G1"
        assert await ledger.count() == 1

        await ledger.aclose()
        await ledger.aclose()  # quietly, and the ledger stays closed
        with pytest.raises(LedgerUnavailable) as caught:
            await ledger.probe()
        assert caught.value.reason == "ledger_closed"

    async def test_a_ledger_is_an_async_context_manager(self, backend: Backend) -> None:
        async with backend.new() as ledger:
            await ledger.mark_applied(X, 1, "G1")
        with pytest.raises(LedgerUnavailable):
            await ledger.get(X)

    async def test_use_before_setup_is_a_programming_error(self, backend: Backend) -> None:
        ledger = backend.new()
        with pytest.raises(RuntimeError, match="not set up"):
            await ledger.get(X)

    async def test_a_closed_ledger_refuses_work_and_reopening(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.aclose()
        with pytest.raises(LedgerUnavailable) as caught:
            await ledger.mark_applied(X, 1, "G1")
        assert caught.value.reason == "ledger_closed"
        assert caught.value.category.value == "systemic"
        with pytest.raises(LedgerUnavailable):
            async with ledger.lock(X):
                pass
        with pytest.raises(RuntimeError, match="cannot be reopened"):
            await ledger.setup()

    async def test_every_backend_satisfies_the_port(self, backend: Backend) -> None:
        ledger: Ledger = backend.new()
        assert isinstance(ledger, Ledger)


@pytest.mark.parametrize("backend", PERSISTENT, indirect=True)
class TestPersistence:
    async def test_records_survive_reopening(self, backend: Backend) -> None:
        first = await backend.open()
        await first.mark_applied(X, 2, "G1", content_hash="H2")
        await first.mark_pending(Y, 1, FINGERPRINT)
        await first.aclose()

        second = await backend.open()
        x, y = await second.get(X), await second.get(Y)
        assert x is not None
        assert y is not None
        assert (x.state, x.version, x.severa_guid, x.content_hash) == ("applied", 2, "G1", "H2")
        assert (y.state, y.pending_version, y.fingerprint) == ("pending", 1, FINGERPRINT)
        assert await second.count() == 2

    async def test_a_schema_newer_than_the_code_is_refused(self, backend: Backend) -> None:
        ledger = await backend.open()
        await ledger.aclose()
        if backend.path is not None:
            with sqlite3.connect(backend.path) as db:
                db.execute("UPDATE schema_version SET version = 99 WHERE component = 'ledger'")
            db.close()
        else:
            conn = await asyncpg.connect(POSTGRES_DSN)
            await conn.execute(
                f"UPDATE {backend.table_prefix}schema_version SET version = 99 WHERE component = 'ledger'"
            )
            await conn.close()
        with pytest.raises(LedgerUnavailable) as caught:
            await backend.open()
        assert caught.value.reason == "ledger_schema_too_new"


@pytest.mark.parametrize("backend", PERSISTENT, indirect=True)
class TestSchemaVersion2:
    async def test_a_version_1_ledger_is_rekeyed_and_keeps_everything_else(self, backend: Backend) -> None:
        await _create_v1_ledger(backend)
        with structlog.testing.capture_logs() as logs:
            ledger = await backend.open()

        await _assert_rekeyed(ledger)
        assert await _stored_schema_version(backend) == 2
        # The flow finds the old rows under the keys it now computes.
        pending = await ledger.get(entry_key("a%b", "x"))
        assert pending is not None
        assert (pending.state, pending.fingerprint) == ("pending", FINGERPRINT)
        warnings = [e for e in logs if e["event"] == "ledger.ambiguous_keys_rekeyed"]
        assert len(warnings) == 1
        assert warnings[0]["log_level"] == "warning"
        assert (warnings[0]["ambiguous"], warnings[0]["rekeyed"]) == (1, 3)
        assert "first ':' ended the source" in warnings[0]["assumption"]

    async def test_a_migrated_ledger_takes_content_hashes(self, backend: Backend) -> None:
        await _create_v1_ledger(backend)
        ledger = await backend.open()
        await ledger.mark_applied(X, 3, "G1", content_hash="H3")
        rec = await ledger.get(X)
        assert rec is not None
        assert (rec.version, rec.content_hash) == (3, "H3")

    async def test_reopening_a_migrated_ledger_does_not_migrate_again(self, backend: Backend) -> None:
        await _create_v1_ledger(backend)
        await (await backend.open()).aclose()

        with structlog.testing.capture_logs() as logs:
            ledger = await backend.open()

        await _assert_rekeyed(ledger)  # '%' escaped once, not twice
        assert not [e for e in logs if e["event"] in ("ledger.keys_rekeyed", "ledger.ambiguous_keys_rekeyed")]

    async def test_a_new_ledger_is_created_at_version_2_without_warnings(self, backend: Backend) -> None:
        with structlog.testing.capture_logs() as logs:
            ledger = await backend.open()
        assert await _stored_schema_version(backend) == 2
        assert not [e for e in logs if e["log_level"] == "warning"]
        await ledger.mark_applied(X, 1, "G1", content_hash="H1")


@pytest.mark.parametrize("backend", [SQLITE], indirect=True)
class TestSqlite:
    async def test_wal_journal_and_full_sync_are_in_effect(self, backend: Backend) -> None:
        ledger = await backend.open()
        assert isinstance(ledger, SqliteLedger)
        await ledger.mark_applied(X, 1, "G1")
        assert backend.path is not None
        with sqlite3.connect(backend.path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()

    async def test_a_second_process_on_the_same_file_is_refused(self, backend: Backend) -> None:
        await backend.open()
        with pytest.raises(LedgerUnavailable, match="in use by another process") as caught:
            await backend.open()
        assert caught.value.reason == "ledger_in_use"

    async def test_writes_that_returned_survive_a_killed_process(self, backend: Backend) -> None:
        assert backend.path is not None
        script = (
            "import asyncio, sys\n"
            "from connector.state.sqlite import SqliteLedger\n"
            "async def main():\n"
            "    ledger = SqliteLedger(sys.argv[1])\n"
            "    await ledger.setup()\n"
            "    await ledger.mark_pending('a:1', 1, '{}')\n"
            "    await ledger.mark_applied('b:1', 3, 'GB')\n"
            "    await ledger.mark_deleted('c:1', 2)\n"
            "    print('written', flush=True)\n"
            "    await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        child = await _start_child(script, str(backend.path), ready="written")
        await _kill(child)

        # The flock died with the process, so this open succeeds.
        ledger = await backend.open()
        a, b, c = await ledger.get("a:1"), await ledger.get("b:1"), await ledger.get("c:1")
        assert a is not None
        assert a.state == "pending"
        assert b is not None
        assert (b.state, b.version, b.severa_guid) == ("applied", 3, "GB")
        assert c is not None
        assert c.state == "deleted"


@pytest.mark.parametrize("backend", [POSTGRES], indirect=True)
class TestPostgres:
    async def test_a_lock_held_by_one_pod_blocks_the_same_id_in_another(self, backend: Backend) -> None:
        pod_a, pod_b = await backend.open(), await backend.open()
        assert backend.table_prefix is not None
        order: list[str] = []
        a_holds = asyncio.Event()

        async def a() -> None:
            async with pod_a.lock(X):
                order.append("a in")
                a_holds.set()
                # Proof that B is blocked on the server, not merely late: PostgreSQL itself
                # reports its lock request as waiting.
                await _wait_until(lambda: _has_waiter(backend.table_prefix or "", X))
                await pod_a.mark_applied(X, 1, "GA")
                order.append("a out")

        async def b() -> None:
            await a_holds.wait()
            async with pod_b.lock(X):
                order.append("b in")
                rec = await pod_b.get(X)
                assert rec is not None
                assert rec.severa_guid == "GA", "B must see what A committed"

        async with asyncio.timeout(20):
            await asyncio.gather(a(), b())
        assert order == ["a in", "a out", "b in"]

    async def test_another_pod_times_out_while_the_lock_is_held(self, backend: Backend) -> None:
        pod_a, pod_b = await backend.open(), await backend.open(lock_timeout=0.3)
        async with pod_a.lock(X):
            with pytest.raises(LedgerLockTimeout, match="another process or pod"):
                async with pod_b.lock(X):
                    pytest.fail("two pods held the same id")
            # Different ids across pods stay independent.
            async with asyncio.timeout(10), pod_b.lock(Y):
                pass
        async with asyncio.timeout(10), pod_b.lock(X):
            pass

    async def test_the_server_frees_the_lock_of_a_killed_pod(self, backend: Backend) -> None:
        assert backend.table_prefix is not None
        script = (
            "import asyncio, sys\n"
            "from connector.state.postgres import PostgresLedger\n"
            "async def main():\n"
            "    ledger = PostgresLedger(sys.argv[1], table_prefix=sys.argv[2], pool_size=2)\n"
            "    await ledger.setup()\n"
            "    async with ledger.lock(sys.argv[3]):\n"
            "        print('locked', flush=True)\n"
            "        await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        child = await _start_child(script, POSTGRES_DSN, backend.table_prefix, X, ready="locked")
        try:
            pod = await backend.open(lock_timeout=0.3)
            with pytest.raises(LedgerLockTimeout):
                async with pod.lock(X):
                    pytest.fail("the child process's lock did not exclude this pod")
        finally:
            await _kill(child)

        survivor = await backend.open(lock_timeout=15)
        async with survivor.lock(X):
            await survivor.mark_applied(X, 1, "G1")

    async def test_calls_inside_a_lock_use_its_connection_so_a_full_pool_cannot_deadlock(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open(min_size=1, pool_size=2, lock_timeout=5, command_timeout=5)
        y_held, release_y = asyncio.Event(), asyncio.Event()

        async def hold_y() -> None:
            async with ledger.lock(Y):
                y_held.set()
                await release_y.wait()

        other = asyncio.create_task(hold_y())
        try:
            await y_held.wait()
            # Both connections are now taken: a call that wanted a second one would fail.
            async with asyncio.timeout(10), ledger.lock(X):
                assert await ledger.get(X) is None
                await ledger.mark_pending(X, 1, FINGERPRINT)
                assert await ledger.owners_of(["G1"]) == {}
                assert await ledger.claim(X, 1, "G0")
                await ledger.mark_applied(X, 1, "G1")
                assert await ledger.count() == 1
        finally:
            release_y.set()
            await other
        async with asyncio.timeout(10):
            await asyncio.gather(*(_apply(ledger, f"t:{i}", f"G{i}") for i in range(10)))
        assert await ledger.count() == 11

    async def test_a_full_pool_is_unavailable_not_an_entry_held_by_someone_else(
        self, backend: Backend
    ) -> None:
        ledger = await backend.open(pool_size=2, lock_timeout=0.3, command_timeout=0.3)
        held = [asyncio.Event(), asyncio.Event()]
        release = asyncio.Event()

        async def hold(i: int, external_id: str) -> None:
            async with ledger.lock(external_id):
                held[i].set()
                await release.wait()

        holders = [asyncio.create_task(hold(0, Y)), asyncio.create_task(hold(1, Z))]
        try:
            await held[0].wait()
            await held[1].wait()
            # Nobody holds X; only the pool is full.
            with pytest.raises(LedgerUnavailable) as caught:
                async with ledger.lock(X):
                    pytest.fail("entered a lock without a connection to hold it")
            assert caught.value.reason == "ledger_pool_exhausted"
            assert caught.value.category.value == "systemic"
            assert "not another task holding the entry" in str(caught.value)
            assert not isinstance(caught.value, LedgerLockTimeout)

            with pytest.raises(LedgerUnavailable) as outside:
                await ledger.get(X)  # a call outside any lock needs a pooled connection too
            assert outside.value.reason == "ledger_pool_exhausted"
        finally:
            release.set()
            await asyncio.gather(*holders)
        async with asyncio.timeout(10), ledger.lock(X):
            await ledger.mark_applied(X, 1, "G1")

    async def test_a_write_after_the_locks_session_died_is_refused_while_another_pod_holds_the_entry(
        self, backend: Backend
    ) -> None:
        assert backend.table_prefix is not None
        pod_a, pod_b = await backend.open(), await backend.open()
        async with pod_a.lock(X):
            await pod_a.mark_pending(X, 1, FINGERPRINT)
            # A now calls Severa. Meanwhile its session is killed and the server drops its lock.
            await _terminate_backend(await _advisory_holder_pid(backend.table_prefix, X))
            async with asyncio.timeout(10), pod_b.lock(X):
                taken_over = await pod_b.get(X)
                assert taken_over is not None
                assert taken_over.state == "pending"  # B recovers from A's pending mark
                await pod_b.mark_applied(X, 1, "G-found-by-B", content_hash="HB")

                # A's Severa call returns; every write it still tries is refused.
                with pytest.raises(LedgerLockLost) as caught:
                    await pod_a.mark_applied(X, 1, "G-added-by-A", content_hash="HA")
                assert caught.value.reason == "ledger_lock_lost"
                assert caught.value.category.value == "transient"
                assert X in str(caught.value)
                with pytest.raises(LedgerLockLost):
                    await pod_a.mark_deleted(X, 2)
                with pytest.raises(LedgerLockLost):
                    await pod_a.mark_pending(X, 2, FINGERPRINT)
                with pytest.raises(LedgerLockLost):
                    await pod_a.claim(X, 1, "G-added-by-A")
                with pytest.raises(LedgerLockLost):
                    await pod_a.get(X)
        # Leaving A's block did not raise, and B's record is what the ledger holds.
        rec = await pod_b.get(X)
        assert rec is not None
        assert (rec.state, rec.version, rec.severa_guid, rec.content_hash) == (
            "applied",
            1,
            "G-found-by-B",
            "HB",
        )
        # The retry of A's message takes a fresh lock and sees B's result.
        async with asyncio.timeout(10), pod_a.lock(X):
            again = await pod_a.get(X)
            assert again is not None
            assert again.severa_guid == "G-found-by-B"

    async def test_a_task_that_inherited_a_released_lock_cannot_write(self, backend: Backend) -> None:
        ledger = await backend.open()
        released = asyncio.Event()

        async def late_write() -> None:
            await released.wait()
            await ledger.mark_applied(X, 1, "G-late")

        async with ledger.lock(X):
            child = asyncio.create_task(late_write())  # copies the context: the lock's holder
        released.set()
        with pytest.raises(LedgerLockLost, match="released before this write"):
            await child
        assert await ledger.get(X) is None  # reads outside the lock still work

    async def test_a_lock_whose_connection_dies_is_dropped_by_the_server(self, backend: Backend) -> None:
        assert backend.table_prefix is not None
        pod, observer = await backend.open(), await backend.open()
        async with pod.lock(X):
            # Answered by the lock's own call (it read the record with the lock), before the kill:
            # a session that dies between the lock and that read is noticed at the next statement,
            # as one that dies just after it.
            assert await pod.get(X) is None
            pid = await _advisory_holder_pid(backend.table_prefix, X)
            killer = await asyncpg.connect(POSTGRES_DSN)
            try:
                assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await killer.close()
            with pytest.raises(LedgerLockLost):
                await pod.get(X)
        # Leaving the block did not raise; the lock is gone and the pool recovers.
        async with asyncio.timeout(10), observer.lock(X):
            pass
        async with asyncio.timeout(10), pod.lock(X):
            await pod.mark_applied(X, 1, "G1")

    async def test_two_pods_claiming_one_guid_for_two_entries_at_once_never_both_win(
        self, backend: Backend
    ) -> None:
        # Read committed lets two guarded upserts that start together both pass their guard; the
        # claim must serialise them per GUID. Many rounds, because a single one may win by luck.
        pod_a, pod_b = await backend.open(), await backend.open()
        rounds = 60
        for pod, external_id in ((pod_a, X), (pod_b, Y)):
            await pod.mark_pending(external_id, 1, FINGERPRINT)

        async def claim(pod: BaseLedger, external_id: str, guid: str) -> bool:
            async with pod.lock(external_id):
                return await pod.claim(external_id, 1, guid)

        async with asyncio.timeout(60):
            for i in range(rounds):
                guid = f"G-round-{i}"
                won = await asyncio.gather(claim(pod_a, X, guid), claim(pod_b, Y, guid))
                assert sorted(won) == [False, True], f"round {i}: {won}"
                owner = X if won[0] else Y
                assert await pod_a.owners_of([guid]) == {guid: owner}
                # Put the loser back to pending, as a recovery that found nothing would leave it.
                await (pod_b if won[0] else pod_a).mark_pending(Y if won[0] else X, 1, FINGERPRINT)

    async def test_pods_starting_together_create_the_schema_once(self, backend: Backend) -> None:
        pods = [backend.new() for _ in range(5)]
        async with asyncio.timeout(20):
            await asyncio.gather(*(pod.setup() for pod in pods))
        await pods[0].mark_applied(X, 1, "G1")
        assert await pods[4].owners_of(["G1"]) == {"G1": X}

    async def test_pods_starting_together_on_a_version_1_ledger_migrate_it_once(
        self, backend: Backend
    ) -> None:
        await _create_v1_ledger(backend)
        pods = [backend.new() for _ in range(5)]
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(20):
                await asyncio.gather(*(pod.setup() for pod in pods))
        await _assert_rekeyed(pods[0])
        assert len([e for e in logs if e["event"] == "ledger.ambiguous_keys_rekeyed"]) == 1


# Backend-specific cases that need no shared store.


async def test_a_missing_directory_is_reported_not_created(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "absent" / "ledger.db")
    with pytest.raises(LedgerUnavailable, match="does not exist"):
        await ledger.setup()
    await ledger.aclose()


async def test_an_in_memory_database_works_without_a_file() -> None:
    async with SqliteLedger(":memory:") as ledger:
        await ledger.mark_applied(X, 1, "G1")
        assert await ledger.owners_of(["G1"]) == {"G1": X}


@pytest.mark.integration
async def test_an_unreachable_server_is_a_systemic_error_without_the_password() -> None:
    ledger = PostgresLedger("postgresql://app:s3cr3t-pw@127.0.0.1:1/db", command_timeout=2)
    with pytest.raises(LedgerUnavailable) as caught:
        await ledger.setup()
    assert caught.value.category.value == "systemic"
    assert "s3cr3t-pw" not in str(caught.value)
    assert "127.0.0.1:1/db" in str(caught.value)
    await ledger.aclose()


async def _has_waiter(prefix: str, external_id: str) -> bool:
    return await _advisory_waiters(prefix, external_id, granted=False) > 0


async def _apply(ledger: BaseLedger, external_id: str, guid: str) -> None:
    async with ledger.lock(external_id):
        await ledger.mark_pending(external_id, 1, FINGERPRINT)
        await ledger.mark_applied(external_id, 1, guid)
