"""The dead-letter store on the state layer's migration runner, on SQLite and PostgreSQL.

The store's contract is in ``test_dlq_store.py``; these prove its migrations: a store made by the
hand-written runner of earlier releases is adopted with every row intact and its version recorded,
a fresh store and an adopted one have the schema the metadata describes, the store and the ledger
migrate apart even in one database, a newer schema is refused and left alone, and stores opening
together migrate once.

PostgreSQL as in ``test_dlq_store.py``: missing, those cases fail rather than skip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
import structlog
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from connector.dlq import codec
from connector.dlq.records import DeadLetterRecord, ReplayRun, StoreEvent
from connector.dlq.selection import Filter, HeaderMatch
from connector.dlq.sql import SqlStore
from connector.dlq.store import StoreMissing, StoreUnavailable, open_store
from connector.state.dlq_schema import dlq_metadata
from connector.state.migrations import DEAD_LETTERS, STATE, Tree, current_revision, version_table
from connector.state.postgres import PostgresLedger
from connector.state.schema import state_metadata
from connector.state.sqlite import SqliteLedger
from schemas.dlq import AuditSelection, DlqAuditRecord
from tests.dlq_factories import T0, record
from tests.integration.test_dlq_store import POSTGRES_DSN, require_postgres, store_tables
from tests.postgres_state import drop_state

pytestmark = pytest.mark.integration

SQLITE = pytest.param("sqlite", id="sqlite file")
POSTGRES = pytest.param("postgres", id="postgresql")

# ---------------------------------------------------------------------------------------------------
# The hand-written runner of the previous release (connector/dlq/sql.py, sqlite.py, postgres.py),
# frozen here as it ran: its DDL template, each backend's column types, its version table and row.

OLD_SQLITE_TYPES = {
    "seq": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "text": "TEXT",
    "int": "INTEGER",
    "blob": "BLOB",
    "ts": "TEXT",
    "json": "TEXT",
}
OLD_POSTGRES_TYPES = {
    "seq": "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "text": "text",
    "int": "bigint",
    "blob": "bytea",
    "ts": "timestamptz",
    "json": "jsonb",
}
OLD_SQLITE_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY NOT NULL, "
    "version INTEGER NOT NULL, migrated_at TEXT NOT NULL)",
    "INSERT INTO schema_version (component, version, migrated_at) VALUES ('dlq', 1, "
    "'2026-06-01T00:00:00.000000+00:00')",
)
OLD_POSTGRES_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS {p}schema_version (component text PRIMARY KEY, "
    "version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO {p}schema_version (component, version) VALUES ('dlq', 1)",
)


def old_schema(p: str, t: dict[str, str]) -> tuple[str, ...]:
    """``schema_statements()`` of the previous release: schema version 1 of the store."""
    statuses = "'parked', 'replaying', 'replayed', 'purged'"
    dl, ev, runs, audit = f"{p}dead_letters", f"{p}dlq_events", f"{p}dlq_replays", f"{p}dlq_audit"
    return (
        f"""CREATE TABLE IF NOT EXISTS {dl} (
            seq                  {t["seq"]},
            id                   {t["text"]} NOT NULL UNIQUE,
            status               {t["text"]} NOT NULL CHECK (status IN ({statuses})),
            dead_letter_queue    {t["text"]} NOT NULL,
            original_queue       {t["text"]} NOT NULL,
            original_exchange    {t["text"]} NOT NULL,
            original_routing_key {t["text"]} NOT NULL,
            flow                 {t["text"]},
            source               {t["text"]} NOT NULL,
            category             {t["text"]} NOT NULL,
            error_class          {t["text"]} NOT NULL,
            reason               {t["text"]} NOT NULL,
            error_message        {t["text"]} NOT NULL,
            traceback            {t["text"]} NOT NULL,
            attempts             {t["int"]} NOT NULL,
            first_failure_at     {t["ts"]} NOT NULL,
            last_failure_at      {t["ts"]} NOT NULL,
            group_id             {t["text"]} NOT NULL,
            connector_version    {t["text"]},
            pod                  {t["text"]},
            trace_id             {t["text"]},
            message_id           {t["text"]},
            correlation_id       {t["text"]},
            message_type         {t["text"]},
            content_type         {t["text"]},
            properties           {t["json"]} NOT NULL,
            headers              {t["json"]} NOT NULL,
            body                 {t["blob"]},
            body_size            {t["int"]} NOT NULL,
            original_body        {t["blob"]},
            edit_count           {t["int"]} NOT NULL DEFAULT 0,
            ingested_at          {t["ts"]} NOT NULL,
            replayed_from        {t["text"]},
            prior_replay_id      {t["text"]},
            prior_replays        {t["int"]} NOT NULL DEFAULT 0,
            replay_id            {t["text"]},
            replay_count         {t["int"]} NOT NULL DEFAULT 0,
            replayed_at          {t["ts"]},
            replayed_to          {t["text"]},
            last_error           {t["text"]},
            updated_at           {t["ts"]}
        )""",
        f"CREATE INDEX IF NOT EXISTS {dl}_status ON {dl} (status, seq)",
        f"CREATE INDEX IF NOT EXISTS {dl}_group ON {dl} (group_id, status)",
        f"CREATE INDEX IF NOT EXISTS {dl}_last_failure ON {dl} (last_failure_at)",
        f"CREATE INDEX IF NOT EXISTS {dl}_message_id ON {dl} (message_id)",
        f"CREATE INDEX IF NOT EXISTS {dl}_replayed_from ON {dl} (replayed_from)",
        f"CREATE INDEX IF NOT EXISTS {dl}_prior_replay ON {dl} (prior_replay_id)",
        f"CREATE INDEX IF NOT EXISTS {dl}_replay ON {dl} (replay_id)",
        f"""CREATE TABLE IF NOT EXISTS {ev} (
            seq            {t["seq"]},
            dead_letter_id {t["text"]} NOT NULL,
            at             {t["ts"]} NOT NULL,
            kind           {t["text"]} NOT NULL,
            operator       {t["text"]},
            audit_id       {t["text"]},
            replay_id      {t["text"]},
            detail         {t["json"]} NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {ev}_dead_letter ON {ev} (dead_letter_id, seq)",
        f"""CREATE TABLE IF NOT EXISTS {runs} (
            replay_id   {t["text"]} PRIMARY KEY,
            operator    {t["text"]} NOT NULL,
            host        {t["text"]} NOT NULL,
            pid         {t["int"]} NOT NULL,
            started_at  {t["ts"]} NOT NULL,
            finished_at {t["ts"]},
            status      {t["text"]} NOT NULL,
            selected    {t["int"]} NOT NULL,
            target      {t["text"]},
            audit_id    {t["text"]},
            replayed    {t["int"]} NOT NULL DEFAULT 0,
            failed      {t["int"]} NOT NULL DEFAULT 0
        )""",
        f"CREATE INDEX IF NOT EXISTS {runs}_status ON {runs} (status)",
        f"""CREATE TABLE IF NOT EXISTS {audit} (
            audit_id {t["text"]} NOT NULL,
            phase    {t["text"]} NOT NULL,
            at       {t["ts"]} NOT NULL,
            operator {t["text"]} NOT NULL,
            command  {t["text"]} NOT NULL,
            outcome  {t["text"]} NOT NULL,
            record   {t["json"]} NOT NULL,
            PRIMARY KEY (audit_id, phase)
        )""",
        f"CREATE INDEX IF NOT EXISTS {audit}_at ON {audit} (at)",
    )


OLD_COLUMNS = [
    *("id", "status", "dead_letter_queue", "original_queue", "original_exchange", "original_routing_key"),
    *("flow", "source", "category", "error_class", "reason", "error_message", "traceback", "attempts"),
    *("first_failure_at", "last_failure_at", "group_id", "connector_version", "pod", "trace_id"),
    *("message_id", "correlation_id", "message_type", "content_type", "properties", "headers", "body"),
    *("body_size", "original_body", "edit_count", "ingested_at", "replayed_from", "prior_replay_id"),
    *("prior_replays", "replay_id", "replay_count", "replayed_at", "replayed_to", "last_error", "updated_at"),
]
OLD_EVENT_COLUMNS = "dead_letter_id, at, kind, operator, audit_id, replay_id, detail"
OLD_JSON = {"properties", "headers"}
OLD_TIMES = {"first_failure_at", "last_failure_at", "ingested_at", "replayed_at", "updated_at"}


def old_ts(moment: dt.datetime | None) -> str | None:
    """The previous release's SQLite timestamps: fixed-width ISO UTC."""
    return None if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def old_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------
# What the old store holds: dead letters in every state, their history, a run and an audit record

OLD_RUN = ReplayRun(
    replay_id="r-old",
    operator="ops",
    host="ops-host",
    pid=4242,
    started_at=T0 + dt.timedelta(hours=1),
    status="partial",
    selected=2,
    target="q.workhours",
    audit_id="a-old",
    finished_at=T0 + dt.timedelta(hours=1, seconds=3),
    replayed=1,
    failed=1,
)
OLD_AUDIT = DlqAuditRecord(
    audit_id="a-old",
    phase="finished",
    at=T0 + dt.timedelta(hours=1, seconds=3),
    operator="ops",
    host="ops-host",
    command="replay",
    reason="work type NOPE added in Severa",
    selection=AuditSelection(id_count=2, ids=["x", "y"]),
    outcome="partial",
    connector_version="0.9.0",
)


def old_rows() -> list[DeadLetterRecord]:
    parked = record(
        headers=codec.encode_table({"x-dl-reason": "unknown_work_type", "producer": "tracker", "x-n": 3}),
        properties=codec.encode_table({"timestamp": T0, "app_id": "tracker"}),
        body=b"\x00\xff binary",
        traceback="Traceback (most recent call last): …",
    )
    replayed = dataclasses.replace(
        record(last_failure_at=T0 + dt.timedelta(minutes=30)),
        status="replayed",
        replay_id="r-old",
        replay_count=1,
        replayed_at=OLD_RUN.finished_at,
        replayed_to="q.workhours",
        updated_at=OLD_RUN.finished_at,
    )
    edited = dataclasses.replace(
        record(body=b'{"v": 2}', replayed_from=replayed.id, prior_replay_id="r-old", prior_replays=1),
        original_body=b'{"v": 1}',
        edit_count=1,
        last_error="not confirmed",
        updated_at=T0 + dt.timedelta(hours=2),
    )
    purged = dataclasses.replace(record(body=None), status="purged", updated_at=T0 + dt.timedelta(hours=3))
    return [
        dataclasses.replace(row, seq=seq)
        for seq, row in enumerate([parked, replayed, edited, purged], start=1)
    ]


OLD_EVENTS = [
    StoreEvent("placeholder", T0, "ingested"),
    StoreEvent("placeholder", OLD_RUN.started_at, "replayed", "ops", "a-old", "r-old", {"to": "q.workhours"}),
]


@dataclass
class Database:
    """One database for a store: a SQLite file, or a table prefix in the shared PostgreSQL database."""

    name: str
    prefix: str
    path: Path | None = None

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}" if self.path is not None else POSTGRES_DSN

    def store(self, *, create: bool = True) -> SqlStore:
        store = open_store(self.url, table_prefix=self.prefix or None, create=create)
        assert isinstance(store, SqlStore)
        return store

    def engine(self) -> AsyncEngine:
        if self.path is not None:
            return create_async_engine(f"sqlite+aiosqlite:///{self.path}", poolclass=NullPool)
        return create_async_engine(
            POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=NullPool
        )

    async def execute(self, *statements: str) -> None:
        if self.path is not None:
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                for statement in statements:
                    db.execute(statement.format(p=""))
            finally:
                db.close()
            return
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            for statement in statements:
                await conn.execute(statement.format(p=self.prefix))
        finally:
            await conn.close()

    async def fetch(self, query: str) -> list[tuple[Any, ...]]:
        if self.path is not None:
            db = sqlite3.connect(self.path)
            try:
                return [tuple(row) for row in db.execute(query.format(p=""))]
            finally:
                db.close()
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            return [tuple(row) for row in await conn.fetch(query.format(p=self.prefix))]
        finally:
            await conn.close()

    async def tables(self) -> set[str]:
        if self.path is not None:
            return {row[0] for row in await self.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = await self.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE '{p}%'"
        )
        return {row[0] for row in rows}

    async def create_old_store(self) -> list[DeadLetterRecord]:
        """A store as the previous release's runner made and filled it; the rows it holds."""
        postgres = self.path is None
        rows = old_rows()
        await self.execute(
            *(OLD_POSTGRES_VERSIONS if postgres else OLD_SQLITE_VERSIONS),
            *old_schema("{p}", OLD_POSTGRES_TYPES if postgres else OLD_SQLITE_TYPES),
        )
        letters = [[_old_value(r, c, postgres) for c in OLD_COLUMNS] for r in rows]
        events = [
            (r.id, _ts(e.at, postgres), e.kind, e.operator, e.audit_id, e.replay_id, json.dumps(e.detail))
            for r in rows
            for e in (OLD_EVENTS if r.status == "replayed" else OLD_EVENTS[:1])
        ]
        run = OLD_RUN
        run_row = (
            run.replay_id,
            run.operator,
            run.host,
            run.pid,
            _ts(run.started_at, postgres),
            _ts(run.finished_at, postgres),
            run.status,
            run.selected,
            run.target,
            run.audit_id,
            run.replayed,
            run.failed,
        )
        audit = OLD_AUDIT
        audit_row = (
            audit.audit_id,
            audit.phase,
            _ts(audit.at, postgres),
            audit.operator,
            audit.command,
            audit.outcome,
            audit.model_dump_json(),
        )
        if not postgres:
            db = sqlite3.connect(self.path or "", isolation_level=None)
            try:
                marks = ", ".join(f"?{i}" for i in range(1, len(OLD_COLUMNS) + 1))
                db.executemany(
                    f"INSERT INTO dead_letters ({', '.join(OLD_COLUMNS)}) VALUES ({marks})", letters
                )
                db.executemany(
                    f"INSERT INTO dlq_events ({OLD_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", events
                )
                db.execute(f"INSERT INTO dlq_replays VALUES ({', '.join('?' * len(run_row))})", run_row)
                db.execute("INSERT INTO dlq_audit VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", audit_row)
            finally:
                db.close()
            return rows
        p = self.prefix
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            marks = ", ".join(
                f"${i}::jsonb" if c in OLD_JSON else f"${i}" for i, c in enumerate(OLD_COLUMNS, start=1)
            )
            await conn.executemany(
                f"INSERT INTO {p}dead_letters ({', '.join(OLD_COLUMNS)}) VALUES ({marks})", letters
            )
            await conn.executemany(
                f"INSERT INTO {p}dlq_events ({OLD_EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                events,
            )
            await conn.execute(
                f"INSERT INTO {p}dlq_replays VALUES ({', '.join(f'${i}' for i in range(1, 13))})", *run_row
            )
            await conn.execute(
                f"INSERT INTO {p}dlq_audit VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)", *audit_row
            )
        finally:
            await conn.close()
        return rows


def _ts(moment: dt.datetime | None, postgres: bool) -> Any:
    return moment if postgres else old_ts(moment)


def _old_value(row: DeadLetterRecord, column: str, postgres: bool) -> Any:
    value = getattr(row, column)
    if column in OLD_TIMES:
        return _ts(value, postgres)
    if column in OLD_JSON:
        return old_json(value)
    return value


@pytest.fixture
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", "", tmp_path / "dlq.db")
        return
    await require_postgres()
    made = Database("postgres", f"m{uuid.uuid4().hex[:12]}_")
    try:
        yield made
    finally:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {', '.join(store_tables(made.prefix))}")
            await drop_state(conn, made.prefix)  # the ledger's tables and function
        finally:
            await conn.close()


def _differences(connection: sa.Connection, prefix: str) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table(prefix, DEAD_LETTERS), "compare_type": True}
    )
    metadata = dlq_metadata(prefix)
    ours = {table.name for table in metadata.sorted_tables} | {version_table(prefix, DEAD_LETTERS)}
    # Other tables in the database (other tests', or the ledger's beside the store) are not ours.
    return [
        diff
        for diff in compare_metadata(context, metadata)
        if not (diff[0] == "remove_table" and diff[1].name not in ours)
        and not (diff[0] == "remove_index" and diff[1].table.name not in ours)
    ]


async def _schema_differences(database: Database) -> list[Any]:
    engine = database.engine()
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_differences, database.prefix)
    finally:
        await engine.dispose()


async def _revision(database: Database, tree: Tree = DEAD_LETTERS) -> str | None:
    engine = database.engine()
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(current_revision, database.prefix, tree)
    finally:
        await engine.dispose()


async def _versions(database: Database) -> list[tuple[Any, ...]]:
    return await database.fetch("SELECT component, version FROM {p}schema_version ORDER BY component")


@pytest.mark.parametrize("database", [SQLITE, POSTGRES], indirect=True)
class TestAdoptingAStoreTheHandWrittenRunnerMade:
    async def test_every_row_survives_and_the_version_is_recorded(self, database: Database) -> None:
        rows = await database.create_old_store()
        with structlog.testing.capture_logs() as logs:
            # As a dlq command opens it: an existing store, never a new one.
            async with database.store(create=False) as store:
                stored = await store.find(Filter(statuses=frozenset()))
                assert stored == rows
                for row in rows:
                    assert await store.get(row.id) == row
                replayed = rows[1]
                assert await store.events(replayed.id) == [
                    dataclasses.replace(e, dead_letter_id=replayed.id) for e in OLD_EVENTS
                ]
                assert await store.run("r-old") == OLD_RUN
                assert await store.audits() == [OLD_AUDIT]
                # The old rows' JSON and timestamps answer the new queries.
                assert [r.id for r in await store.find(Filter(headers=(HeaderMatch("x-n", "3"),)))] == [
                    rows[0].id
                ]
                assert [
                    r.id
                    for r in await store.find(
                        Filter(statuses=frozenset(), since=T0 + dt.timedelta(minutes=1))
                    )
                ] == [rows[1].id]
                # New rows follow the old ones: the sequence carried over.
                new = record()
                assert await store.add([new]) == [new.id]
                added = await store.get(new.id)
                assert added is not None
                assert added.seq > max(r.seq for r in rows)

        adopted = [e for e in logs if e["event"] == "state.schema_adopted"]
        assert [(e["tree"], e["schema_version"], e["revision"]) for e in adopted] == [
            ("dead-letter", 1, "dlq0001")
        ]
        # Adopted as it is, then only the later revisions ran (dlq0002 rebuilt no row away).
        migrated = [(e["old"], e["new"]) for e in logs if e["event"] == "state.schema_migrated"]
        assert migrated == [("dlq0001", DEAD_LETTERS.head)]
        assert await _revision(database) == DEAD_LETTERS.head
        assert await _versions(database) == [("dlq", 1)]

    async def test_the_adopted_store_has_the_schema_a_new_store_gets(self, database: Database) -> None:
        await database.create_old_store()
        async with database.store():
            pass
        differences = await _schema_differences(database)
        if database.path is None:
            assert differences == []
            return
        # One SQLite quirk the old DDL had: a TEXT PRIMARY KEY without NOT NULL admits NULL. New
        # stores say NOT NULL; nothing ever wrote a run without its id, so adopted ones keep theirs.
        assert [(d[0][0], d[0][2], d[0][3]) for d in differences] == [
            ("modify_nullable", "dlq_replays", "replay_id")
        ]

    async def test_opening_it_again_changes_nothing(self, database: Database) -> None:
        await database.create_old_store()
        async with database.store():
            pass
        with structlog.testing.capture_logs() as logs:
            async with database.store(create=False) as store:
                assert await store.count(Filter(statuses=frozenset())) == len(old_rows())
        assert not [e for e in logs if e["event"].startswith("state.schema_")]


@pytest.mark.parametrize("database", [SQLITE, POSTGRES], indirect=True)
class TestMigratingTheStore:
    async def test_a_new_store_has_the_schema_the_metadata_describes(self, database: Database) -> None:
        async with database.store():
            pass
        assert await _schema_differences(database) == []
        assert await _revision(database) == DEAD_LETTERS.head
        # What the previous release's runner looks for, so a rollback still finds its store.
        assert await _versions(database) == [("dlq", 1)]

    async def test_a_store_of_a_newer_connector_is_refused(self, database: Database) -> None:
        async with database.store():
            pass
        await database.execute(f"UPDATE {{p}}{DEAD_LETTERS.version_table} SET version_num = 'dlq9999'")
        with pytest.raises(StoreUnavailable) as caught:
            async with database.store(create=False):
                pass
        assert caught.value.reason == "dlq_store_schema_too_new"
        assert "dlq9999" in caught.value.message

    async def test_a_hand_written_store_newer_than_ours_is_refused_and_left_alone(
        self, database: Database
    ) -> None:
        postgres = database.path is None
        versions = OLD_POSTGRES_VERSIONS if postgres else OLD_SQLITE_VERSIONS
        await database.execute(versions[0], versions[1].replace("'dlq', 1", "'dlq', 2"))
        with pytest.raises(StoreUnavailable) as caught:
            async with database.store():
                pass
        assert caught.value.reason == "dlq_store_schema_too_new"
        assert await database.tables() == {f"{database.prefix}schema_version"}

    async def test_a_missing_store_is_neither_created_nor_migrated(self, database: Database) -> None:
        if database.path is not None:
            database.path.write_bytes(b"")  # an empty file: exists, but is no store
        with pytest.raises(StoreMissing):
            async with database.store(create=False):
                pass
        assert await database.tables() == set()

    async def test_stores_opening_together_migrate_once(self, database: Database) -> None:
        stores = [database.store() for _ in range(4)]
        with structlog.testing.capture_logs() as logs:
            await asyncio.gather(*(s.setup() for s in stores))
        for store in stores:
            await store.aclose()
        assert len([e for e in logs if e["event"] == "state.schema_migrated"]) == 1
        assert await _revision(database) == DEAD_LETTERS.head


class TestTheStoreAndTheLedgerMigrateApart:
    @pytest.mark.parametrize("database", [SQLITE], indirect=True)
    async def test_a_store_file_holds_no_ledger_and_a_ledger_file_no_store(
        self, database: Database, tmp_path: Path
    ) -> None:
        async with database.store():
            pass
        async with SqliteLedger(tmp_path / "state.db"):
            pass
        assert await database.tables() == {
            *(t.name for t in dlq_metadata().sorted_tables),
            version_table("", DEAD_LETTERS),
            "sqlite_sequence",
        }
        ledger_file = Database("sqlite", "", tmp_path / "state.db")
        assert await ledger_file.tables() == {
            *(t.name for t in state_metadata().sorted_tables),
            version_table("", STATE),
        }

    @pytest.mark.parametrize("store_first", [True, False], ids=["store first", "ledger first"])
    @pytest.mark.parametrize("database", [POSTGRES], indirect=True)
    async def test_one_postgresql_prefix_holds_both_with_one_revision_per_version_table(
        self, database: Database, store_first: bool
    ) -> None:
        async def ledger() -> None:
            async with PostgresLedger(POSTGRES_DSN, table_prefix=database.prefix, pool_size=2):
                pass

        async def store() -> None:
            async with database.store():
                pass

        for step in (store, ledger) if store_first else (ledger, store):
            await step()
        # The previous release reads <prefix>alembic_version as one revision: it must stay one row.
        assert await database.fetch(f"SELECT version_num FROM {{p}}{STATE.version_table}") == [(STATE.head,)]
        assert await database.fetch(f"SELECT version_num FROM {{p}}{DEAD_LETTERS.version_table}") == [
            (DEAD_LETTERS.head,)
        ]
        assert await _versions(database) == [("dlq", 1), ("ledger", 2)]
        assert await _schema_differences(database) == []


async def test_opening_a_store_at_its_head_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """``dlq list`` beside a pod that holds the write lock: the open looks at the revision in a
    snapshot and skips the migration, so it reads at once instead of waiting the busy timeout.
    A store behind its head still migrates, and that does wait (the control)."""
    from connector.dlq.sqlite import SqliteStore

    path = tmp_path / "dlq.db"
    async with SqliteStore(path) as store:
        await store.add([record()])
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        async with SqliteStore(path, busy_timeout=0.2, create=False) as reader:
            assert len(await reader.find(Filter())) == 1
        behind = tmp_path / "behind.db"
        async with SqliteStore(behind):
            pass
        with sqlite3.connect(behind) as db:
            db.execute(f"UPDATE {version_table('', DEAD_LETTERS)} SET version_num = 'dlq0001'")
        db.close()
        held = sqlite3.connect(behind, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match="stayed locked"):
                async with SqliteStore(behind, busy_timeout=0.2, create=False):
                    pass
        finally:
            held.close()
    finally:
        writer.close()
