"""SQLite dead-letter store: the default, for operators working from one host.

Unlike the ledger, several processes may open the file at once -- a ``dlq list`` while a
``dlq replay`` runs is normal -- so there is no exclusive ``flock`` on the database. SQLite's own
locking keeps them apart: WAL (readers never block the writer), ``BEGIN IMMEDIATE`` for every write
transaction (one writer at a time, waiting up to ``busy_timeout``), ``synchronous=FULL`` (a commit
that returned survives a power loss: an ingested dead letter is acked only after that).

A replay run's liveness is an exclusive ``flock`` on ``<database>.runs/<replay id>.lock``, held for
as long as the run's process lives and released by the kernel when it dies (SIGKILL included); a
later replay that can take the lock knows the run is dead and resumes its rows. Keep the file on a
local disk: ``flock`` (and SQLite itself) are unreliable on network file systems.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiosqlite

from connector.dlq.sql import (
    COMPONENT,
    SCHEMA_VERSION,
    Dialect,
    Params,
    Row,
    Session,
    SqlStore,
    schema_statements,
)
from connector.dlq.store import StoreMissing, StoreUnavailable
from connector.logging import get_logger

if sys.platform != "win32":
    import fcntl

log = get_logger(__name__)

MEMORY: Final = ":memory:"
_TYPES: Final = {
    "seq": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "text": "TEXT",
    "int": "INTEGER",
    "blob": "BLOB",
    "ts": "TEXT",
    "json": "TEXT",
}
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6


def sqlite_ts(moment: dt.datetime) -> str:
    """Fixed-width ISO-8601 UTC with microseconds: text order is time order."""
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


class SqliteDialect(Dialect):
    def param(self, index: int) -> str:
        return f"?{index}"

    def ts(self, moment: dt.datetime | None) -> Any:
        return None if moment is None else sqlite_ts(moment)

    def ts_out(self, value: Any) -> dt.datetime | None:
        return None if value is None else dt.datetime.fromisoformat(str(value))

    def json_param(self, placeholder: str) -> str:
        return placeholder

    def contains_ci(self, column: str, placeholder: str) -> str:
        return f"instr(lower({column}), {placeholder}) > 0"

    def header_key(self, name: str) -> Any:
        return '$."' + name.replace('"', "") + '"'

    def header_text(self, placeholder: str) -> str:
        return (
            f"(CASE json_type(headers, {placeholder}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"WHEN 'null' THEN 'null' ELSE CAST(json_extract(headers, {placeholder}) AS TEXT) END)"
        )

    def header_exists(self, placeholder: str) -> str:
        return f"json_type(headers, {placeholder}) IS NOT NULL"

    def in_list(self, column: str, values: Sequence[str], params: Params) -> str:
        # One JSON array parameter, however many ids: SQLite caps bound parameters per statement.
        return f"{column} IN (SELECT value FROM json_each({params(json.dumps(list(values)))}))"


class _SqliteSession(Session):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        cursor = await self._conn.execute(sql, params)
        await cursor.close()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        cursor = await self._conn.executemany(sql, rows)
        await cursor.close()


class SqliteStore(SqlStore):
    """The store in one SQLite file (or ``":memory:"``, living as long as the object).

    :param busy_timeout: seconds a write waits for another process's write transaction.
    :param create: create the file (and its schema) if missing; ``False`` raises
        :class:`~connector.dlq.store.StoreMissing` instead -- for commands that must find the
        store the ingesters fill, never start an empty one of their own.
    """

    backend = "sqlite"

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 15.0, create: bool = True
    ) -> None:
        super().__init__(SqliteDialect())
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("SQLite store path must not be empty (use ':memory:')")
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._create = create
        self._conn: aiosqlite.Connection | None = None
        # One connection, so sessions take turns: a transaction must not interleave with another.
        self._turn = asyncio.Lock()
        self._run_fds: dict[str, int] = {}
        self._memory_runs: set[str] = set()

    @property
    def runs_dir(self) -> Path:
        return Path(f"{self.path}.runs")

    async def _open(self) -> None:
        if not self._create and not self._exists():
            raise StoreMissing(f"there is no dead-letter store at {self.path}")
        if self.path != MEMORY and not Path(self.path).parent.is_dir():
            raise StoreUnavailable(
                f"the directory of the dead-letter store {self.path} does not exist",
                reason="dlq_store_path_missing",
            )
        with self._translating("open the database"):
            if self._create or self.path == MEMORY:
                conn = await aiosqlite.connect(self.path, isolation_level=None)
            else:
                # mode=rw: SQLite itself refuses to create the file, should it vanish after the check.
                conn = await aiosqlite.connect(self._rw_uri(), uri=True, isolation_level=None)
        self._conn = conn
        conn.row_factory = sqlite3.Row
        try:
            with self._translating("open the database"):
                await conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                if not self._create:
                    await self._require_schema(conn)
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await self._close()
            raise
        try:
            await self._migrate()
        except BaseException:
            await self._close()
            raise
        log.debug("dlq.store_opened", backend=self.backend, path=self.path)

    def _exists(self) -> bool:
        return self.path == MEMORY or Path(self.path).is_file()

    def _rw_uri(self) -> str:
        return f"file:{quote(os.path.abspath(self.path))}?mode=rw"

    async def _require_schema(self, conn: aiosqlite.Connection) -> None:
        """Refuse, before writing a byte (WAL switch included), a file that is not a store: the
        ledger, a mistyped path, an empty file."""
        rows = list(
            await conn.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            )
        )
        if rows:
            rows = list(
                await conn.execute_fetchall("SELECT 1 FROM schema_version WHERE component = ?1", [COMPONENT])
            )
        if not rows:
            raise StoreMissing(f"{self.path} is not a dead-letter store (no dead-letter schema in it)")

    async def _migrate(self) -> None:
        async with self._session(write=True) as session:
            await session.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY NOT NULL, "
                "version INTEGER NOT NULL, migrated_at TEXT NOT NULL)"
            )
            rows = await session.fetch("SELECT version FROM schema_version WHERE component = ?1", [COMPONENT])
            current = int(rows[0]["version"]) if rows else 0
            if current > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the dead-letter store {self.path} has schema version {current}, newer than the "
                    f"{SCHEMA_VERSION} this connector understands: upgrade the connector",
                    reason="dlq_store_schema_too_new",
                )
            if current < SCHEMA_VERSION:
                for statement in schema_statements(self, _TYPES):
                    await session.execute(statement)
                await session.execute(
                    "INSERT INTO schema_version (component, version, migrated_at) VALUES (?1, ?2, ?3) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                    "migrated_at = excluded.migrated_at",
                    [COMPONENT, SCHEMA_VERSION, sqlite_ts(dt.datetime.now(dt.UTC))],
                )

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        for replay_id in list(self._run_fds):
            self._release_run_lock(replay_id)

    @asynccontextmanager
    async def _session(self, *, write: bool) -> AsyncIterator[Session]:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the sqlite dead-letter store is closed", reason="dlq_store_closed")
        async with self._turn:
            with self._translating("write" if write else "read"):
                if not write:
                    yield _SqliteSession(conn)
                    return
                # IMMEDIATE: take the write lock now, so a transaction never fails half-way on it.
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteSession(conn)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")

    # -- run locks ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def run_lock(self, replay_id: str) -> AsyncIterator[None]:
        if self.path == MEMORY:
            self._memory_runs.add(replay_id)
            try:
                yield
            finally:
                self._memory_runs.discard(replay_id)
            return
        fd = await asyncio.to_thread(self._take_run_lock, replay_id)
        self._run_fds[replay_id] = fd
        try:
            yield
        finally:
            self._release_run_lock(replay_id)

    def _lock_path(self, replay_id: str) -> Path:
        return self.runs_dir / f"{replay_id}.lock"

    def _take_run_lock(self, replay_id: str) -> int:
        self.runs_dir.mkdir(exist_ok=True)
        fd = os.open(self._lock_path(replay_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        return fd

    def _release_run_lock(self, replay_id: str) -> None:
        fd = self._run_fds.pop(replay_id, None)
        if fd is None:
            return
        # Unlink before closing: nobody can take a lock on a file we are about to drop.
        with contextlib.suppress(OSError):
            self._lock_path(replay_id).unlink()
        os.close(fd)

    async def _lock_held(self, replay_id: str) -> bool:
        if self.path == MEMORY:
            return replay_id in self._memory_runs
        return await asyncio.to_thread(self._probe_lock, replay_id)

    def _probe_lock(self, replay_id: str) -> bool:
        path = self._lock_path(replay_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False  # the run finished (it removes its file) or never got that far
        try:
            if sys.platform == "win32":  # pragma: no cover - no flock: assume alive
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            # We got it: its owner is dead. Tidy its file away.
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        finally:
            os.close(fd)

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            busy = code in (_SQLITE_BUSY, _SQLITE_LOCKED)
            raise StoreUnavailable(
                f"the SQLite dead-letter store {self.path} "
                + (
                    f"stayed locked by another process for {self._busy_timeout_ms} ms"
                    if busy
                    else f"failed to {action}: {exc}"
                ),
                reason="dlq_store_busy" if busy else "dlq_store_unavailable",
            ) from exc

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r} {self._lifecycle.value}>"
