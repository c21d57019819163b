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
import contextlib
import datetime as dt
import os
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

import aiosqlite

from connector.logging import get_logger
from connector.state.ledger import (
    COUNT_AMBIGUOUS_KEYS,
    DEFAULT_LOCK_TIMEOUT,
    SELECT_REKEY_CANDIDATES,
    BaseLedger,
    LedgerLockTimeout,
    LedgerRecord,
    LedgerUnavailable,
    log_rekeyed,
    record_from_row,
    rekey_plan,
    resolve_owners,
    utc_now,
)

if sys.platform != "win32":
    import fcntl

log = get_logger(__name__)

MEMORY: Final = ":memory:"
SCHEMA_VERSION: Final = 2
"""Version of the ledger tables this code reads and writes; stored in ``schema_version``.

1. the ``ledger`` table;
2. ``content_hash`` column; keys re-written from ``source:id`` to
   :func:`connector.state.identity.entry_key` (see :func:`connector.state.ledger.rekey_plan`).
"""

_COMPONENT: Final = "ledger"
# SQLite builds before 3.32 allow only 999 bound parameters per statement.
_IN_CHUNK: Final = 500
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6

_SCHEMA_VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_version (
    component   TEXT PRIMARY KEY NOT NULL,
    version     INTEGER NOT NULL,
    migrated_at TEXT NOT NULL
)"""


async def _add_content_hash(conn: aiosqlite.Connection) -> None:
    # SQLite has no ADD COLUMN IF NOT EXISTS; looking first keeps the step safe to repeat.
    columns = {str(row[1]) for row in await conn.execute_fetchall("PRAGMA table_info(ledger)")}
    if "content_hash" not in columns:
        await conn.execute("ALTER TABLE ledger ADD COLUMN content_hash TEXT")


async def _rekey(conn: aiosqlite.Connection) -> None:
    # Not idempotent on its own (a second pass would escape '%' twice): it relies on running in
    # the same transaction as the version row, so it commits exactly once per file.
    candidates = await conn.execute_fetchall(SELECT_REKEY_CANDIDATES.format(table="ledger"))
    plan = rekey_plan(str(row[0]) for row in candidates)
    for old, new in plan:
        await conn.execute("UPDATE ledger SET external_id = ? WHERE external_id = ?", (new, old))
    rows = list(await conn.execute_fetchall(COUNT_AMBIGUOUS_KEYS.format(table="ledger")))
    log_rekeyed(SqliteLedger.backend, len(plan), int(rows[0][0]))


_Step = str | Callable[[aiosqlite.Connection], Awaitable[None]]

# Migration N brings the schema from version N-1 to N. All steps of all pending migrations run in
# one transaction with the version row (SQLite's DDL is transactional), so a migration cut short
# leaves nothing behind and simply runs again; the steps are also safe to repeat where they can be.
_MIGRATIONS: Final[dict[int, tuple[_Step, ...]]] = {
    1: (
        """
        CREATE TABLE IF NOT EXISTS ledger (
            external_id     TEXT PRIMARY KEY NOT NULL,
            version         INTEGER NOT NULL CHECK (version >= 0),
            state           TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'deleted')),
            severa_guid     TEXT,
            pending_version INTEGER,
            fingerprint     TEXT,
            updated_at      TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS ledger_severa_guid ON ledger (severa_guid)",
    ),
    2: (_add_content_hash, _rekey),
}

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

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        if self._exclusive and self.path != MEMORY:
            self._lock_fd = await asyncio.to_thread(_claim_file, self.path)
        try:
            with self._translating("open the database"):
                self._conn = await aiosqlite.connect(self.path, isolation_level=None)
                self._conn.row_factory = sqlite3.Row
                await self._configure(self._conn)
                await self._migrate(self._conn)
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

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, so reading the version and migrating are
        # one step even if a tool opened the file with exclusive=False.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(_SCHEMA_VERSION_TABLE)
            rows = list(
                await conn.execute_fetchall(
                    "SELECT version FROM schema_version WHERE component = ?", (_COMPONENT,)
                )
            )
            current = int(rows[0][0]) if rows else 0
            if current > SCHEMA_VERSION:
                raise LedgerUnavailable(
                    f"the SQLite ledger at {self.path} has schema version {current}, newer than the "
                    f"{SCHEMA_VERSION} this connector understands: upgrade the connector",
                    reason="ledger_schema_too_new",
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for step in _MIGRATIONS[version]:
                    if isinstance(step, str):
                        await conn.execute(step)
                    else:
                        await step(conn)
            if current < SCHEMA_VERSION:
                await conn.execute(
                    "INSERT INTO schema_version (component, version, migrated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (component) DO UPDATE SET "
                    "version = excluded.version, migrated_at = excluded.migrated_at",
                    (_COMPONENT, SCHEMA_VERSION, utc_now().isoformat()),
                )
                log.info("ledger.schema_migrated", backend=self.backend, old=current, new=SCHEMA_VERSION)
            await conn.execute("COMMIT")
        except BaseException:
            # Keep the original error: a failed rollback only means SQLite already rolled back.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.execute("ROLLBACK")
            raise

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
