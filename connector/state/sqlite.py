"""SQLite ledger: the embedded default for a connector that runs as **one** pod.

Why SQLite is single-pod: :meth:`SqliteLedger.lock` is an :class:`asyncio.Lock` per external id,
which excludes the tasks of this process only. Two processes sharing the file could both decide to
``Add`` the same entry, so :meth:`SqliteLedger.setup` takes an exclusive ``flock`` on
``<database>.lock`` and refuses to open a file another process has open (a second pod, a
mis-scaled Deployment, a rolling update that overlaps pods -- use ``strategy: Recreate``). Several
pods need :class:`connector.state.postgres.PostgresLedger`. ``flock`` is unreliable on network
file systems, where SQLite itself is unsafe anyway: keep the file on a local volume.

Durability: the connection runs in autocommit mode, so every write is one transaction that has
committed before the method returns, and the journal is WAL. With ``synchronous=FULL`` (the
default) each commit fsyncs the WAL, so a write that returned survives a process crash *and* a
power loss or kernel panic. ``synchronous=NORMAL`` skips that fsync: still safe against a crash of
the process (the WAL is in the OS page cache), but the last commits before an OS crash can vanish,
and a lost ``mark_pending`` after a landed ``Add`` is exactly a duplicate hour entry. Choose NORMAL
only if the volume itself is crash-safe and the extra write rate matters (see ``bench/ledger.py``).

aiosqlite runs the connection on one worker thread, so statements never block the event loop and
are executed one at a time in submission order. A statement already handed to that thread
completes even if the awaiting task is cancelled: writes are idempotent upserts, so that is safe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import sqlite3
import sys
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

import aiosqlite
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from connector.logging import get_logger
from connector.state.ledger import (
    DEFAULT_LOCK_TIMEOUT,
    BaseLedger,
    LedgerLockTimeout,
    LedgerRecord,
    LedgerUnavailable,
    record_from_row,
    resolve_owners,
    utc_now,
)
from connector.state.migrations import migrate
from connector.state.schema import LEDGER_TABLE_VERSION

if sys.platform != "win32":
    import fcntl

log = get_logger(__name__)

MEMORY: Final = ":memory:"
SCHEMA_VERSION: Final = LEDGER_TABLE_VERSION
"""Version of the ledger table this code reads and writes, as ``schema_version`` records it; the
tables themselves are created and upgraded by :func:`connector.state.migrations.migrate`."""

# SQLite builds before 3.32 allow only 999 bound parameters per statement.
_IN_CHUNK: Final = 500
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6

_COLUMNS: Final = (
    "external_id, version, state, severa_guid, pending_version, fingerprint, updated_at, content_hash"
)
_GET: Final = f"SELECT {_COLUMNS} FROM ledger WHERE external_id = ?"
# Each write is one upsert statement, hence atomic without an explicit transaction. Unqualified
# columns in DO UPDATE are the existing row; ``excluded`` is the row we tried to insert.
_MARK_PENDING: Final = f"""
INSERT INTO ledger ({_COLUMNS}) VALUES (?1, 0, 'pending', NULL, ?2, ?3, ?4, NULL)
ON CONFLICT (external_id) DO UPDATE SET
    state = 'pending',
    pending_version = excluded.pending_version,
    fingerprint = excluded.fingerprint,
    updated_at = excluded.updated_at"""
_MARK_APPLIED: Final = f"""
INSERT INTO ledger ({_COLUMNS}) VALUES (?1, ?2, 'applied', ?3, NULL, NULL, ?4, ?5)
ON CONFLICT (external_id) DO UPDATE SET
    version = max(version, excluded.version),
    state = 'applied',
    severa_guid = excluded.severa_guid,
    content_hash = excluded.content_hash,
    pending_version = NULL,
    fingerprint = NULL,
    updated_at = excluded.updated_at"""
# Claim: the upsert of _MARK_APPLIED behind a guard, in one statement. Statements on
# the one connection run one at a time, so nobody writes between the guard and the upsert. An
# INSERT ... SELECT that yields no row changes nothing, so the row count says whether we claimed.
_CLAIM: Final = f"""
INSERT INTO ledger ({_COLUMNS})
SELECT ?1, ?2, 'applied', ?3, NULL, NULL, ?4, ?5
WHERE NOT EXISTS (
    SELECT 1 FROM ledger WHERE severa_guid = ?3 AND external_id <> ?1 AND state <> 'deleted'
)
ON CONFLICT (external_id) DO UPDATE SET
    version = max(version, excluded.version),
    state = 'applied',
    severa_guid = excluded.severa_guid,
    content_hash = excluded.content_hash,
    pending_version = NULL,
    fingerprint = NULL,
    updated_at = excluded.updated_at"""
_MARK_DELETED: Final = f"""
INSERT INTO ledger ({_COLUMNS}) VALUES (?1, ?2, 'deleted', NULL, NULL, NULL, ?3, NULL)
ON CONFLICT (external_id) DO UPDATE SET
    version = max(version, excluded.version),
    state = 'deleted',
    pending_version = NULL,
    fingerprint = NULL,
    updated_at = excluded.updated_at"""
_OWNERS: Final = (
    "SELECT severa_guid, external_id FROM ledger WHERE state <> 'deleted' AND severa_guid IN ({marks})"
)


class SqliteLedger(BaseLedger):
    """The ledger in one SQLite file (or ``":memory:"``, which lives as long as the ledger).

    :param path: database file; its directory must exist. ``<path>.lock`` is created next to it.
    :param synchronous: ``"FULL"`` (default, survives power loss) or ``"NORMAL"`` (survives a
        process crash only); see the module docstring.
    :param busy_timeout: seconds SQLite waits for a file lock held by another connection before
        failing with :class:`LedgerLockTimeout`.
    :param lock_timeout: seconds :meth:`lock` waits for an external id held by another task.
    :param exclusive: take the ``flock`` that keeps a second process off the file. Only turn this
        off for read-only tooling that never calls the write methods.
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        exclusive: bool = True,
    ) -> None:
        super().__init__(lock_timeout=lock_timeout)
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("SQLite ledger path must not be empty (use ':memory:' for a private database)")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._exclusive = exclusive
        self._conn: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        # ":memory:" is private to one connection; the migration needs a second one, so an
        # in-memory ledger is a named, shared-cache database that lives as long as ours is open.
        self._uri = self.path == MEMORY
        self._target = f"file:ledger-{uuid.uuid4().hex}?mode=memory&cache=shared" if self._uri else self.path

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        if self._exclusive and self.path != MEMORY:
            self._lock_fd = await asyncio.to_thread(_claim_file, self.path)
        try:
            with self._translating("open the database"):
                self._conn = await aiosqlite.connect(self._target, uri=self._uri, isolation_level=None)
                self._conn.row_factory = sqlite3.Row
                await self._configure(self._conn)
                await self._migrate()
        except BaseException:
            await self._close()
            raise
        log.info("ledger.opened", backend=self.backend, path=self.path, synchronous=self._synchronous)

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        # busy_timeout first: the journal-mode switch itself needs the file lock.
        await conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        mode = str(rows[0][0]).lower() if rows else "unknown"
        if mode != "wal" and self.path != MEMORY:
            # Still correct (each commit is durable), only slower and blocking readers on writes.
            log.warning("ledger.sqlite_wal_unavailable", path=self.path, journal_mode=mode)
        await conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    async def _migrate(self) -> None:
        # A connection of its own for the migration (``BEGIN IMMEDIATE`` excludes every other
        # writer of the file meanwhile); ours stays idle and, for ":memory:", keeps the shared
        # in-memory database alive.
        async def connect() -> aiosqlite.Connection:
            return await aiosqlite.connect(
                self._target, uri=self._uri, isolation_level=None, timeout=self._busy_timeout_ms / 1000
            )

        engine = create_async_engine("sqlite+aiosqlite://", poolclass=NullPool, async_creator=connect)
        try:
            await migrate(engine, table_prefix="")
        finally:
            await engine.dispose()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await conn.close()
        finally:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)  # drops the flock

    # -- operations --------------------------------------------------------------------------------

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise LedgerUnavailable("the sqlite ledger is closed", reason="ledger_closed")
        return self._conn

    async def _probe(self) -> None:
        with self._translating("answer a probe"):
            await self._connection().execute_fetchall("SELECT 1")

    async def _get(self, external_id: str) -> LedgerRecord | None:
        with self._translating("read a record"):
            rows = list(await self._connection().execute_fetchall(_GET, (external_id,)))
            if not rows:
                return None
            row = rows[0]
            return record_from_row(row, dt.datetime.fromisoformat(row["updated_at"]))

    async def _mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        with self._translating("mark a record pending"):
            await self._connection().execute(
                _MARK_PENDING, (external_id, version, fingerprint, utc_now().isoformat())
            )

    async def _mark_applied(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> None:
        with self._translating("mark a record applied"):
            await self._connection().execute(
                _MARK_APPLIED, (external_id, version, severa_guid, utc_now().isoformat(), content_hash)
            )

    async def _claim(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> bool:
        with self._translating("claim a GUID"):
            params = (external_id, version, severa_guid, utc_now().isoformat(), content_hash)
            async with self._connection().execute(_CLAIM, params) as cursor:
                return cursor.rowcount == 1

    async def _mark_deleted(self, external_id: str, version: int) -> None:
        with self._translating("mark a record deleted"):
            await self._connection().execute(_MARK_DELETED, (external_id, version, utc_now().isoformat()))

    async def _owners_of(self, guids: Collection[str]) -> dict[str, str]:
        ordered = sorted(guids)
        pairs: list[tuple[str, str]] = []
        with self._translating("look up GUID owners"):
            conn = self._connection()
            for start in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[start : start + _IN_CHUNK]
                query = _OWNERS.format(marks=", ".join("?" * len(chunk)))
                rows = await conn.execute_fetchall(query, chunk)
                pairs.extend((str(row[0]), str(row[1])) for row in rows)
        return resolve_owners(pairs)

    async def _count(self) -> int:
        with self._translating("count records"):
            rows = list(await self._connection().execute_fetchall("SELECT count(*) FROM ledger"))
            return int(rows[0][0])

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        """Re-raise sqlite3/aiosqlite failures as the connector's errors, ``from`` the original."""
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise LedgerLockTimeout(
                    f"SQLite ledger at {self.path} stayed locked by another connection for "
                    f"{self._busy_timeout_ms} ms while trying to {action}",
                    reason="ledger_busy",
                    backend=self.backend,
                ) from exc
            raise LedgerUnavailable(
                f"SQLite ledger at {self.path} failed to {action}: {exc}", backend=self.backend
            ) from exc
        except ValueError as exc:
            # aiosqlite's way of saying its connection or worker thread is gone; any other
            # ValueError is a bug of ours and must stay one.
            if self._conn is not None and "connection" not in str(exc).lower():
                raise
            raise LedgerUnavailable(
                f"SQLite ledger at {self.path} failed to {action}: {exc}",
                reason="ledger_closed",
                backend=self.backend,
            ) from exc

    def __repr__(self) -> str:
        return f"<SqliteLedger {self.path!r} {self._lifecycle.value}>"


def _claim_file(path: str) -> int | None:
    """Take the exclusive ``flock`` that keeps a second process off ``path``; return its fd.

    The fd must stay open for as long as the ledger is open: closing it (or the process dying, a
    SIGKILL included) is what releases the lock, so a crashed pod never leaves the file claimed.
    """
    if sys.platform == "win32":
        return None
    lock_path = f"{path}.lock"
    if not Path(path).parent.is_dir():
        raise LedgerUnavailable(
            f"the directory of the SQLite ledger {path} does not exist", reason="ledger_path_missing"
        )
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LedgerUnavailable(f"cannot create the SQLite ledger lock file {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LedgerUnavailable(
            f"the SQLite ledger {path} is in use by another process ({holder}); SQLite serves one "
            "pod only -- run a single replica or configure a postgresql:// ledger",
            reason="ledger_in_use",
            holder=holder,
        ) from exc
    except BaseException:
        os.close(fd)
        raise
    # Who holds it, for the message above when a second process is refused.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
    return fd
