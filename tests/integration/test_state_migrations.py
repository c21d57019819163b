"""The one migration mechanism: Alembic revisions, run by ``migrate()``, on SQLite and PostgreSQL.

The ledger contract tests (``test_ledger.py``) prove that the backends open, adopt and upgrade
ledgers; these prove the mechanism itself: the revisions arrive at the schema the metadata
describes, ledgers left by the hand-written runners of earlier releases are adopted at their
version rather than re-created or migrated twice, a newer schema is refused, a failed migration
leaves nothing behind, and concurrent starts migrate once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
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

import connector.state.ledger
from connector.state import LedgerUnavailable
from connector.state.identity import entry_key
from connector.state.migrations import DEAD_LETTERS, HEAD, current_revision, migrate, version_table
from connector.state.postgres import PostgresLedger
from connector.state.schema import state_metadata
from connector.state.sqlite import SqliteLedger
from tests.integration.test_ledger import (
    POSTGRES_DSN,
    V1_POSTGRES,
    V1_ROWS,
    V1_SQLITE,
    V2_KEYS,
    _require_postgres,
)
from tests.postgres_state import drop_state

SQLITE = pytest.param("sqlite", id="sqlite file")
POSTGRES = pytest.param("postgres", id="postgresql", marks=pytest.mark.integration)

# What the hand-written runner's version 2 did to a version 1 ledger, frozen here as it ran.
V2_SQLITE = (
    *V1_SQLITE[:-1],
    "ALTER TABLE ledger ADD COLUMN content_hash TEXT",
    "INSERT INTO schema_version VALUES ('ledger', 2, '2024-06-01T00:00:00+00:00')",
)
V2_POSTGRES = (
    *V1_POSTGRES[:-1],
    "ALTER TABLE {p}ledger ADD COLUMN IF NOT EXISTS content_hash text",
    "INSERT INTO {p}schema_version (component, version) VALUES ('ledger', 2)",
)
# Rows as version 2 wrote them: already re-keyed, so adopting must not escape their '%' again.
V2_ROWS = [
    (V2_KEYS[old], version, state, guid, pending_version, fingerprint, None)
    for old, version, state, guid, pending_version, fingerprint in V1_ROWS
]
DLQ_ROW_SQLITE = "INSERT INTO schema_version VALUES ('dlq', 1, '2024-06-01T00:00:00+00:00')"
DLQ_ROW_POSTGRES = "INSERT INTO {p}schema_version (component, version) VALUES ('dlq', 1)"


@dataclass
class Store:
    """One database (a file, or a table prefix in PostgreSQL) and raw access to it."""

    name: str
    prefix: str
    path: Path | None = None

    def engine(self, **options: Any) -> AsyncEngine:
        if self.path is not None:
            return create_async_engine(f"sqlite+aiosqlite:///{self.path}", poolclass=NullPool, **options)
        return create_async_engine(
            POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=NullPool, **options
        )

    def ledger(self) -> SqliteLedger | PostgresLedger:
        if self.path is not None:
            return SqliteLedger(self.path)
        return PostgresLedger(POSTGRES_DSN, table_prefix=self.prefix, pool_size=2)

    async def execute(self, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        if self.path is not None:
            with sqlite3.connect(self.path) as db:
                for statement in statements:
                    db.execute(statement.format(p=""))
                if rows:
                    db.executemany(
                        "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, '2024-05-01T00:00:00+00:00', ?)", rows
                    )
            db.close()
            return
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            for statement in statements:
                await conn.execute(statement.format(p=self.prefix))
            if rows:
                await conn.executemany(
                    f"INSERT INTO {self.prefix}ledger (external_id, version, state, severa_guid, "
                    "pending_version, fingerprint, content_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    rows,
                )
        finally:
            await conn.close()

    async def fetch(self, query: str) -> list[tuple[Any, ...]]:
        if self.path is not None:
            with sqlite3.connect(self.path) as db:
                found = [tuple(row) for row in db.execute(query.format(p=""))]
            db.close()
            return found
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            return [tuple(row) for row in await conn.fetch(query.format(p=self.prefix))]
        finally:
            await conn.close()

    async def revision(self) -> str | None:
        engine = self.engine()
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(current_revision, self.prefix)
        finally:
            await engine.dispose()


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        yield Store("sqlite", "", tmp_path / "state.db")
        return
    await _require_postgres()
    made = Store("postgres", f"m{uuid.uuid4().hex[:12]}_")
    try:
        yield made
    finally:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await drop_state(conn, made.prefix)
        finally:
            await conn.close()


def _schema_differences(connection: sa.Connection, prefix: str) -> list[Any]:
    ours = {table.name for table in state_metadata(prefix).sorted_tables} | {version_table(prefix)}

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        # Other tables in the shared test database (and their indexes) belong to other tests, or
        # to a connector run on this machine: compare only this prefix's tables.
        return type_ != "table" or name in ours

    context = MigrationContext.configure(
        connection,
        opts={"version_table": version_table(prefix), "compare_type": True, "include_name": include_name},
    )
    return list(compare_metadata(context, state_metadata(prefix)))


async def _migrate(store: Store, **options: Any) -> None:
    engine = store.engine(**options)
    try:
        await migrate(engine, table_prefix=store.prefix)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("store", [SQLITE, POSTGRES], indirect=True)
class TestMigrate:
    async def test_an_empty_database_arrives_at_the_schema_the_metadata_describes(self, store: Store) -> None:
        await _migrate(store)
        assert await store.revision() == HEAD
        engine = store.engine()
        try:
            async with engine.connect() as conn:
                differences = await conn.run_sync(_schema_differences, store.prefix)
        finally:
            await engine.dispose()
        assert differences == []
        assert await store.fetch("SELECT component, version FROM {p}schema_version") == [("ledger", 2)]

    async def test_migrating_again_changes_nothing(self, store: Store) -> None:
        await _migrate(store)
        with structlog.testing.capture_logs() as logs:
            await _migrate(store)
        assert not [e for e in logs if e["event"].startswith("state.schema_")]
        assert await store.revision() == HEAD

    async def test_a_version_2_ledger_is_stamped_not_recreated_and_its_keys_stay(self, store: Store) -> None:
        await store.execute(*(V2_SQLITE if store.path else V2_POSTGRES), rows=V2_ROWS)
        with structlog.testing.capture_logs() as logs:
            await _migrate(store)

        adopted = [e for e in logs if e["event"] == "state.schema_adopted"]
        assert [(e["schema_version"], e["revision"]) for e in adopted] == [(2, "0002")]
        assert not [e for e in logs if "rekeyed" in e["event"]], "a version 2 ledger was re-keyed again"
        assert await store.revision() == HEAD
        async with store.ledger() as ledger:
            assert await ledger.count() == len(V2_ROWS)
            for key, version, state, guid, pending_version, fingerprint, _ in V2_ROWS:
                rec = await ledger.get(key)
                assert rec is not None, f"{key!r} was lost or re-keyed"
                assert (rec.version, rec.state, rec.severa_guid, rec.pending_version, rec.fingerprint) == (
                    version,
                    state,
                    guid,
                    pending_version,
                    fingerprint,
                )

    async def test_a_version_1_ledger_is_stamped_at_0001_and_upgraded(self, store: Store) -> None:
        await store.execute(*(V1_SQLITE if store.path else V1_POSTGRES))
        with structlog.testing.capture_logs() as logs:
            await _migrate(store)
        adopted = [e for e in logs if e["event"] == "state.schema_adopted"]
        assert [(e["schema_version"], e["revision"]) for e in adopted] == [(1, "0001")]
        assert await store.revision() == HEAD
        assert await store.fetch("SELECT version FROM {p}schema_version WHERE component = 'ledger'") == [(2,)]

    async def test_the_dead_letter_stores_row_is_kept(self, store: Store) -> None:
        # The dead-letter store shares schema_version and may have created it first.
        create = (V1_SQLITE if store.path else V1_POSTGRES)[0]
        await store.execute(create, DLQ_ROW_SQLITE if store.path else DLQ_ROW_POSTGRES)
        await _migrate(store)
        rows = await store.fetch("SELECT component, version FROM {p}schema_version ORDER BY component")
        assert rows == [("dlq", 1), ("ledger", 2)]

    async def test_a_revision_this_code_does_not_know_is_refused(self, store: Store) -> None:
        await _migrate(store)
        await store.execute(f"UPDATE {{p}}{version_table('')} SET version_num = '9999'")
        with pytest.raises(LedgerUnavailable) as caught:
            await _migrate(store)
        assert caught.value.reason == "ledger_schema_too_new"
        assert "9999" in str(caught.value)

    async def test_a_hand_written_ledger_newer_than_ours_is_refused_and_left_alone(
        self, store: Store
    ) -> None:
        await store.execute(*(V1_SQLITE if store.path else V1_POSTGRES)[:-1])
        await store.execute(
            "INSERT INTO schema_version VALUES ('ledger', 3, '2025-01-01T00:00:00+00:00')"
            if store.path
            else "INSERT INTO {p}schema_version (component, version) VALUES ('ledger', 3)"
        )
        with pytest.raises(LedgerUnavailable) as caught:
            await _migrate(store)
        assert caught.value.reason == "ledger_schema_too_new"
        assert await store.revision() is None

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({}, id="on an engine with the default isolation"),
            pytest.param({"isolation_level": "AUTOCOMMIT"}, id="on an autocommit engine"),
        ],
    )
    async def test_a_migration_that_fails_halfway_leaves_nothing_behind(
        self, store: Store, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
    ) -> None:
        await store.execute(*(V1_SQLITE if store.path else V1_POSTGRES))
        await store.execute(
            "INSERT INTO {p}ledger (external_id, version, state, updated_at) "
            "VALUES ('a%b:x', 1, 'applied', '2024-05-01T00:00:00+00:00')"
        )

        def broken(keys: Any) -> list[tuple[str, str]]:
            raise sa.exc.OperationalError("rekey", {}, Exception("disk full"))

        monkeypatch.setattr(connector.state.ledger, "rekey_plan", broken)
        with pytest.raises(LedgerUnavailable, match="disk full"):
            await _migrate(store, **options)

        # 0002's ADD COLUMN and the stamp rolled back with the rest.
        assert await store.revision() is None
        assert await store.fetch("SELECT version FROM {p}schema_version WHERE component = 'ledger'") == [(1,)]
        monkeypatch.undo()
        await _migrate(store, **options)
        assert await store.fetch("SELECT external_id FROM {p}ledger") == [(entry_key("a%b", "x"),)]

    async def test_a_url_is_accepted_as_well_as_an_engine(self, store: Store) -> None:
        url = (
            f"sqlite+aiosqlite:///{store.path}"
            if store.path
            else POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
        )
        await migrate(url, table_prefix=store.prefix)
        assert await store.revision() == HEAD


@pytest.mark.parametrize("store", [POSTGRES], indirect=True)
class TestConcurrentStarts:
    @pytest.mark.parametrize(
        "prepare",
        [
            pytest.param(lambda s: (), id="five pods on an empty database create it once"),
            pytest.param(lambda s: V2_POSTGRES, id="five pods on a version 2 ledger adopt it once"),
        ],
    )
    async def test_pods_starting_together_migrate_once(
        self, store: Store, prepare: Callable[[Store], tuple[str, ...]]
    ) -> None:
        statements = prepare(store)
        if statements:
            await store.execute(*statements, rows=V2_ROWS)
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(30):
                await asyncio.gather(*(_migrate(store) for _ in range(5)))
        assert len([e for e in logs if e["event"] == "state.schema_migrated"]) == 1
        assert await store.revision() == HEAD
        assert await store.fetch("SELECT count(*) FROM {p}ledger") == [(len(V2_ROWS) if statements else 0,)]


async def test_one_process_migrates_two_sqlite_files_at_once(tmp_path: Path) -> None:
    """A pod opens its ledger and its dead-letter store together: two migrations of one event loop
    on two files. Alembic's environment is a module global, so without the per-loop lock each
    would run half the time with the other's (``table schema_version already exists``,
    ``KeyError: 'config'``)."""
    for attempt in range(5):
        urls = [f"sqlite+aiosqlite:///{tmp_path / f'{attempt}-{n}.db'}" for n in range(3)]
        async with asyncio.timeout(30):
            await asyncio.gather(
                migrate(urls[0]), migrate(urls[1], tree=DEAD_LETTERS), migrate(urls[2], table_prefix="b_")
            )
        for url, tree, prefix in ((urls[0], None, ""), (urls[1], DEAD_LETTERS, ""), (urls[2], None, "b_")):
            engine = create_async_engine(url, poolclass=NullPool)
            try:
                async with engine.connect() as conn:
                    revision = await conn.run_sync(
                        current_revision, prefix, *((tree,) if tree is not None else ())
                    )
            finally:
                await engine.dispose()
            assert revision == (DEAD_LETTERS.head if tree is not None else HEAD), (url, revision)
