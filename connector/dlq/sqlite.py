"""SQLite dead-letter store: the default, for operators working from one host.

Unlike the ledger, several processes may open the file at once -- a ``dlq list`` while a
``dlq replay`` runs is normal -- so there is no exclusive ``flock`` on the database. SQLite's own
locking keeps them apart: WAL (readers never block the writer), ``BEGIN IMMEDIATE`` for every write
transaction (one writer at a time, waiting up to ``busy_timeout``; reads begin a deferred
transaction, a snapshot that takes no write lock), ``synchronous=FULL`` (a commit that returned
survives a power loss: an ingested dead letter is acked only after that). One connection per
process, whose sessions take turns.

A replay run's liveness is an exclusive ``flock`` on ``<database>.runs/<replay id>.lock``, held for
as long as the run's process lives and released by the kernel when it dies (SIGKILL included); a
later replay that can take the lock knows the run is dead and resumes its rows. Keep the file on a
local disk: ``flock`` (and SQLite itself) are unreliable on network file systems.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, StaticPool

from connector.dlq.sql import Driver, DriverStatement, SqlStore, one_line
from connector.dlq.store import StoreMissing, StoreUnavailable
from connector.logging import get_logger
from connector.state import sqlite_connection
from connector.state.migrations import sqlite_begin_immediate

if sys.platform != "win32":
    import fcntl

log = get_logger(__name__)

MEMORY: Final = ":memory:"
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6


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
        super().__init__(create=create)
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("SQLite store path must not be empty (use ':memory:')")
        self._busy_timeout = float(busy_timeout)
        # One connection, so sessions take turns: a transaction must not interleave with another.
        # The engine's sessions (SqlStore._session) and the driver's (ingest) take the same turn.
        self._turn = asyncio.Lock()
        self._serial = self._turn
        self._run_fds: dict[str, int] = {}
        self._memory_runs: set[str] = set()

    @property
    def runs_dir(self) -> Path:
        return Path(f"{self.path}.runs")

    def _describe(self) -> str:
        return self.path

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        if not self._create and not self._exists():
            raise StoreMissing(f"there is no dead-letter store at {self.path}")
        if self.path != MEMORY and not Path(self.path).parent.is_dir():
            raise StoreUnavailable(
                f"the directory of the dead-letter store {self.path} does not exist",
                reason="dlq_store_path_missing",
            )
        if not self._create:
            await self._require_schema()
        engine = self._make_engine()
        try:
            with self._translating("open the database"):
                await self._migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        log.debug("dlq.store_opened", backend=self.backend, path=self.path)

    def _exists(self) -> bool:
        return self.path == MEMORY or Path(self.path).is_file()

    def _rw_uri(self) -> str:
        return f"file:{quote(os.path.abspath(self.path))}?mode=rw"

    async def _connect(self, *, may_create: bool) -> aiosqlite.Connection:
        if may_create or self.path == MEMORY:
            return await sqlite_connection.connect(
                self.path, isolation_level=None, timeout=self._busy_timeout
            )
        # mode=rw: SQLite itself refuses to create the file, should it vanish after the check.
        return await sqlite_connection.connect(
            self._rw_uri(), uri=True, isolation_level=None, timeout=self._busy_timeout
        )

    def _make_engine(self) -> AsyncEngine:
        async def connect() -> aiosqlite.Connection:
            db = await self._connect(may_create=self._create)
            try:
                await self._switch_to_wal(db)
            except BaseException:
                await db.close()
                raise
            return db

        # No reset when a connection goes back to the pool: every session ends its transaction
        # itself (commit, or the rollback of closing), and a reset would be one more round trip
        # to the driver's thread per session.
        options: dict[str, Any] = {"async_creator": connect, "pool_reset_on_return": None}
        if self.path == MEMORY:
            options["poolclass"] = StaticPool  # every connection would see a database of its own
        else:
            # One connection: sessions take turns anyway (_serial). Named, because a URL without a
            # database would otherwise get the in-memory default, StaticPool.
            options.update(poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
        engine = create_async_engine("sqlite+aiosqlite://", **options)
        sqlite_begin_immediate(engine)
        event.listen(engine.sync_engine, "connect", _configure)
        return engine

    async def _switch_to_wal(self, db: aiosqlite.Connection) -> None:
        """WAL, so that readers never block the writer; retried up to ``busy_timeout``.

        SQLite answers a journal-mode switch that races another connection's with ``SQLITE_BUSY``
        at once, without calling the busy handler (seen with four stores creating one new file
        together), so the wait the timeout promises is ours to do here.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                await db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
                if not busy or loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)  # a back-off between attempts, not a synchronisation
            pause = min(pause * 2, 0.25)

    async def _require_schema(self) -> None:
        """Refuse, before writing a byte (the WAL switch included), a file that is not a store: the
        ledger, a mistyped path, an empty file."""
        if self.path == MEMORY:  # a new in-memory database is empty
            raise StoreMissing(f"{self.path} is not a dead-letter store (no dead-letter schema in it)")

        async def connect() -> aiosqlite.Connection:
            return await self._connect(may_create=False)

        # Its own engine: no WAL switch on connect, and the driver's autocommit, so nothing is written.
        probe = create_async_engine("sqlite+aiosqlite://", async_creator=connect, poolclass=NullPool)
        try:
            with self._translating("open the database"):
                found = await self._recorded(probe)
        finally:
            await probe.dispose()
        if not found:
            raise StoreMissing(f"{self.path} is not a dead-letter store (no dead-letter schema in it)")

    @asynccontextmanager
    async def _driver_transaction(self, action: str) -> AsyncIterator[Driver]:
        self._check_open()
        engine = self._engine
        if engine is None:
            raise self._closed_error()
        async with self._turn, engine.connect() as conn:
            with self._translating(action):
                raw = await conn.get_raw_connection()
                db = raw.driver_connection
                assert isinstance(db, aiosqlite.Connection)
                # IMMEDIATE: take the write lock now, so a transaction never fails half-way on it.
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield _AiosqliteDriver(db)
                    await db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT too: the pooled connection must not keep the transaction
                    # (and the write lock) into its next session.
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await db.execute("ROLLBACK")
                    raise

    async def _close(self) -> None:
        try:
            await self._close_engine()
        finally:
            for replay_id in list(self._run_fds):
                self._release_run_lock(replay_id)

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

    def _unavailable(self, action: str, exc: BaseException) -> StoreUnavailable:
        inner = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
        code = getattr(inner, "sqlite_errorcode", 0) & 0xFF
        busy = code in (_SQLITE_BUSY, _SQLITE_LOCKED)
        return StoreUnavailable(
            f"the SQLite dead-letter store {self.path} "
            + (
                f"stayed locked by another process for {int(self._busy_timeout * 1000)} ms"
                if busy
                else f"failed to {action}: {one_line(exc)}"
            ),
            reason="dlq_store_busy" if busy else "dlq_store_unavailable",
        )

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r} {self._lifecycle.value}>"


class _AiosqliteDriver:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def scalars(self, statement: DriverStatement, params: Sequence[Any]) -> list[Any]:
        return [row[0] for row in await self._db.execute_fetchall(statement.text, params)]

    async def executemany(self, statement: DriverStatement, rows: Sequence[Sequence[Any]]) -> None:
        cursor = await self._db.executemany(statement.text, rows)
        await cursor.close()


def _configure(dbapi_connection: Any, _record: Any) -> None:
    """Every connection: a commit that survives power loss (WAL is switched on as it connects).

    Constant statements: PRAGMAs take no bound parameters.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()
