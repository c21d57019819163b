"""SQLite ledger: the embedded default for a connector that runs as **one** pod.

Why SQLite is single-pod: :meth:`SqliteLedger.lock` is an :class:`asyncio.Lock` per external id,
which excludes the tasks of this process only. Two processes sharing the file could both decide to
``Add`` the same entry, so :meth:`SqliteLedger.setup` takes an exclusive ``flock`` on
``<database>.lock`` and refuses to open a file another process has open (a second pod, a
mis-scaled Deployment, a rolling update that overlaps pods -- use ``strategy: Recreate``). Several
pods need :class:`connector.state.postgres.PostgresLedger`. ``flock`` is unreliable on network
file systems, where SQLite itself is unsafe anyway: keep the file on a local volume.

Durability: a write returns only once the transaction holding it has committed, and the journal
is WAL. With ``synchronous=FULL`` (the default) each commit fsyncs the WAL, so a write that
returned survives a process crash *and* a power loss or kernel panic. ``synchronous=NORMAL`` skips
that fsync: still safe against a crash of the process (the WAL is in the OS page cache), but the
last commits before an OS crash can vanish, and a lost ``mark_pending`` after a landed ``Add`` is
exactly a duplicate hour entry. Choose NORMAL only if the volume itself is crash-safe and the
extra write rate matters (see ``bench/ledger.py``).

**Group commit.** The fsync is what a write costs (milliseconds on ordinary disks, where the
statement itself takes microseconds), and with one fsync per write the ledger, not Severa, set the
pace of the whole pod. So writes issued while a commit is in progress wait together and go into
the next transaction: ``BEGIN IMMEDIATE``, each statement in the order it was issued, ``COMMIT``
-- one fsync for all of them, and each caller returns only after that commit, so "durable when it
returns" holds exactly as before (the message is acked after its group is durable). Nothing
waits on purpose: a lone write commits at once, and groups form only under load. Each write is
still its own upsert statement, so the statements of a group are as atomic as when each was a
transaction of its own; a claim's guard sees the group's earlier statements (one connection, one
statement at a time). If any statement of a group fails, the group is rolled back and its writes
are redone one transaction each, so one bad write never fails (or un-does) its neighbours. A write
whose caller was cancelled before its group started is dropped.

The writing connection lives on one thread of its own (:mod:`connector.state.serial_thread`), so
a commit (its fsync) never blocks the event loop, and statements run one at a time in submission
order. A statement already handed to that thread completes even if the awaiting task is cancelled:
writes are idempotent upserts, so that is safe.

**Reads.** Reads of a file database run on the event loop, over a read-only connection of their
own: in WAL mode a reader never waits for the writer, and a look-up by primary key takes
microseconds -- less than handing it to the thread and back, which cost more CPU than the query
(and made every read wait behind the commit in progress). Each read is its own transaction, so it
sees every write that has returned. A read that finds the file busy (a checkpoint or recovery)
goes to the worker thread, which may wait; ``":memory:"`` reads always do (its shared cache locks
tables, not pages).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import socket
import sqlite3
import sys
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import aiosqlite
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from connector.logging import get_logger
from connector.state import sqlite_connection
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
from connector.state.serial_thread import SerialThread, SerialThreadClosed

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
        self._conn: sqlite3.Connection | None = None
        # Reads of a file database, on the event loop (see "Reads" in the module docstring).
        self._reader: sqlite3.Connection | None = None
        # The one thread that uses the connection (sqlite3 objects are not for concurrent use).
        self._worker: SerialThread | None = None
        self._queued: list[_Write] = []  # writes waiting for the next group commit
        self._committer: asyncio.Task[None] | None = None
        #: Transactions committed for writes so far (fewer than the writes: group commit).
        self.commits = 0
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
                self._worker = SerialThread("ledger-sqlite")
                self._conn = await self._in_worker(
                    functools.partial(
                        sqlite3.connect,
                        self._target,
                        uri=self._uri,
                        factory=sqlite_connection.ReleasingConnection,
                        isolation_level=None,
                        check_same_thread=False,
                        timeout=self._busy_timeout_ms / 1000,
                    )
                )
                self._conn.row_factory = sqlite3.Row
                mode = await self._in_worker(functools.partial(self._configure, self._conn))
                if mode != "wal" and self.path != MEMORY:
                    # Still correct (each commit is durable), only slower and blocking readers on writes.
                    log.warning("ledger.sqlite_wal_unavailable", path=self.path, journal_mode=mode)
                await self._migrate()
                if self.path != MEMORY:
                    self._reader = self._open_reader()
        except BaseException:
            await self._close()
            raise
        log.info("ledger.opened", backend=self.backend, path=self.path, synchronous=self._synchronous)

    def _configure(self, conn: sqlite3.Connection) -> str:
        """Runs on the worker thread; returns the journal mode SQLite settled on."""
        # busy_timeout first: the journal-mode switch itself needs the file lock.
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        rows = conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return str(rows[0][0]).lower() if rows else "unknown"

    async def _migrate(self) -> None:
        # A connection of its own for the migration (``BEGIN IMMEDIATE`` excludes every other
        # writer of the file meanwhile); ours stays idle and, for ":memory:", keeps the shared
        # in-memory database alive.
        async def connect() -> aiosqlite.Connection:
            return await sqlite_connection.connect(
                self._target, uri=self._uri, isolation_level=None, timeout=self._busy_timeout_ms / 1000
            )

        engine = create_async_engine("sqlite+aiosqlite://", poolclass=NullPool, async_creator=connect)
        try:
            await migrate(engine, table_prefix="")
        finally:
            await engine.dispose()

    def _open_reader(self) -> sqlite3.Connection:
        reader = sqlite3.connect(
            self._target,
            uri=self._uri,
            isolation_level=None,
            check_same_thread=False,
            factory=sqlite_connection.ReleasingConnection,
        )
        reader.row_factory = sqlite3.Row
        # Never wait on the event loop: a read that finds the file busy goes to the worker instead.
        reader.execute("PRAGMA busy_timeout = 0")
        reader.execute("PRAGMA query_only = 1")
        return reader

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        committer = self._committer
        if committer is not None:
            # Writes already queued finish (or fail) before the connection goes.
            await asyncio.wait([committer])
        conn, self._conn = self._conn, None
        worker, self._worker = self._worker, None
        try:
            if conn is not None and worker is not None:
                await worker.run(conn.close)
        finally:
            if worker is not None:
                worker.shutdown()
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)  # drops the flock

    # -- the worker thread and group commit ---------------------------------------------------------

    async def _in_worker(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the connection's thread (after everything submitted before it)."""
        worker = self._worker
        if worker is None:
            raise LedgerUnavailable("the sqlite ledger is closed", reason="ledger_closed")
        try:
            return await worker.run(fn)
        except SerialThreadClosed as exc:  # shut down meanwhile
            raise LedgerUnavailable("the sqlite ledger is closed", reason="ledger_closed") from exc

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        conn = self._connection()
        reader = self._reader
        if reader is not None:
            try:
                return reader.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise
                # Busy (a checkpoint or recovery holds the file): the worker may wait for it.
        rows: list[sqlite3.Row] = await self._in_worker(lambda: conn.execute(sql, params).fetchall())
        return rows

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement in the next group commit; its row count once that committed."""
        self._connection()  # closed: fail now, not in the committer
        write = _Write(sql, params, asyncio.get_running_loop().create_future())
        self._queued.append(write)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_queued(), name="ledger-sqlite-commit")
        outcome = await write.done
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _commit_queued(self) -> None:
        """Commit what is queued, one group per turn of the worker, until nothing is left.

        While one group is in the worker (its fsync), the writes issued meanwhile queue up and form
        the next group: the group size follows the load, and no write ever waits on purpose.
        """
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                batch = [write for write in batch if not write.done.done()]  # callers cancelled
                if not batch:
                    continue
                conn = self._connection()
                statements = [(write.sql, write.params) for write in batch]
                try:
                    outcomes, commits = await self._in_worker(
                        functools.partial(_commit_group, conn, statements)
                    )
                except BaseException as exc:
                    for write in batch:
                        if not write.done.done():
                            write.done.set_result(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                self.commits += commits
                for write, outcome in zip(batch, outcomes, strict=True):
                    if not write.done.done():
                        write.done.set_result(outcome)
        except BaseException as exc:
            # Closed or cancelled: nobody still queued may wait for ever.
            queued, self._queued = self._queued, []
            for write in queued:
                if not write.done.done():
                    write.done.set_result(exc if isinstance(exc, Exception) else _closed())
            if not isinstance(exc, LedgerUnavailable):
                raise
        finally:
            self._committer = None

    # -- operations --------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise _closed()
        return self._conn

    async def _probe(self) -> None:
        with self._translating("answer a probe"):
            await self._read("SELECT 1")

    # The four operations of every event catch sqlite3.Error themselves rather than through
    # _translating: entering and leaving a generator-based context manager cost more than the
    # primary-key read it wrapped.

    async def _get(self, external_id: str) -> LedgerRecord | None:
        try:
            rows = await self._read(_GET, (external_id,))
        except sqlite3.Error as exc:
            raise self._translated(exc, "read a record") from exc
        if not rows:
            return None
        row = rows[0]
        return record_from_row(row, dt.datetime.fromisoformat(row["updated_at"]))

    async def _mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        try:
            await self._write(_MARK_PENDING, (external_id, version, fingerprint, utc_now().isoformat()))
        except sqlite3.Error as exc:
            raise self._translated(exc, "mark a record pending") from exc

    async def _mark_applied(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> None:
        params = (external_id, version, severa_guid, utc_now().isoformat(), content_hash)
        try:
            await self._write(_MARK_APPLIED, params)
        except sqlite3.Error as exc:
            raise self._translated(exc, "mark a record applied") from exc

    async def _claim(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> bool:
        params = (external_id, version, severa_guid, utc_now().isoformat(), content_hash)
        try:
            return await self._write(_CLAIM, params) == 1
        except sqlite3.Error as exc:
            raise self._translated(exc, "claim a GUID") from exc

    async def _mark_deleted(self, external_id: str, version: int) -> None:
        with self._translating("mark a record deleted"):
            await self._write(_MARK_DELETED, (external_id, version, utc_now().isoformat()))

    async def _owners_of(self, guids: Collection[str]) -> dict[str, str]:
        ordered = sorted(guids)
        pairs: list[tuple[str, str]] = []
        with self._translating("look up GUID owners"):
            for start in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[start : start + _IN_CHUNK]
                query = _OWNERS.format(marks=", ".join("?" * len(chunk)))
                rows = await self._read(query, chunk)
                pairs.extend((str(row[0]), str(row[1])) for row in rows)
        return resolve_owners(pairs)

    async def _count(self) -> int:
        with self._translating("count records"):
            rows = await self._read("SELECT count(*) FROM ledger")
            return int(rows[0][0])

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        """Re-raise sqlite3 failures as the connector's errors, ``from`` the original."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translated(exc, action) from exc

    def _translated(self, exc: sqlite3.Error, action: str) -> Exception:
        """The connector's error for a sqlite3 failure while trying to ``action``."""
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
            # "Cannot operate on a closed database": closed under a call racing shutdown. Other
            # ProgrammingErrors (a wrong binding, say) are bugs and take the generic branch.
            return LedgerUnavailable(
                f"SQLite ledger at {self.path} failed to {action}: {exc}",
                reason="ledger_closed",
                backend=self.backend,
            )
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return LedgerLockTimeout(
                f"SQLite ledger at {self.path} stayed locked by another connection for "
                f"{self._busy_timeout_ms} ms while trying to {action}",
                reason="ledger_busy",
                backend=self.backend,
            )
        return LedgerUnavailable(
            f"SQLite ledger at {self.path} failed to {action}: {exc}", backend=self.backend
        )

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


_T = TypeVar("_T")


@dataclass(slots=True)
class _Write:
    sql: str
    params: Sequence[Any]
    #: The statement's row count, or the error it (or its group) ended with.
    done: asyncio.Future[int | BaseException] = field(repr=False)


def _closed() -> LedgerUnavailable:
    return LedgerUnavailable("the sqlite ledger is closed", reason="ledger_closed")


def _commit_group(
    conn: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]
) -> tuple[list[int | BaseException], int]:
    """Runs on the worker thread: the statements in one transaction; each one's row count (or
    error), and the number of transactions committed.

    One fsync for the group. If any statement fails (or the commit does), nothing of the group is
    kept and each statement is run again in a transaction of its own, so that a failure is
    reported to its own caller only and never rolls back a neighbour's write.
    """
    if len(statements) > 1:
        try:
            conn.execute("BEGIN IMMEDIATE")
            counts: list[int | BaseException] = [
                conn.execute(sql, params).rowcount for sql, params in statements
            ]
            conn.execute("COMMIT")
            return counts, 1
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    outcomes: list[int | BaseException] = []
    for sql, params in statements:
        try:
            outcomes.append(conn.execute(sql, params).rowcount)  # autocommit: its own transaction
        except sqlite3.Error as exc:
            outcomes.append(exc)
    return outcomes, sum(1 for outcome in outcomes if not isinstance(outcome, BaseException))
