"""PostgreSQL ledger: shared by every pod of the connector.

Locking across pods uses a session-level advisory lock, ``pg_advisory_lock(k)``, where ``k`` is
:func:`advisory_key` -- a stable 64-bit BLAKE2b hash of the table prefix and the external id
(Python's ``hash()`` is salted per process, so two pods would disagree). The lock lives on one
pooled connection held for the whole ``async with ledger.lock(x)`` block:

* released in ``finally`` by handing the connection back to the pool, whose reset runs
  ``pg_advisory_unlock_all()`` (one round trip for the unlock and the reset together; the ledger
  leaves no other session state behind); if that fails or is cancelled, the connection is
  terminated instead, because a session that goes back to the pool still holding the lock would
  block that entry for as long as the connection lives;
* if the pod dies or the network drops, the server ends the session and the lock with it -- the
  reason for a session lock rather than a row in a table that would need expiry.

The lock is taken by ``<prefix>ledger_lock_get`` (revision ``0004``), which in the same round trip
reads the entry's record under a snapshot taken after the lock was granted: the holder's first
``get`` of that id is answered from it when nothing else has run on the lock's connection since
(every flow reads right after locking). A write made without the entry's lock in between -- the
invoice flow records a customer it added under the invoice's lock -- is then not seen, exactly as
if it had landed just after a read. Taking a second lock inside the block (which the flows never
do) drops the outer lock's read, since the task's statements then run on the inner connection.

While a task holds the lock, its own ledger calls (``get``, ``mark_*``, ``claim``, ``owners_of``)
run on the lock's connection, found through a context variable, instead of taking a second
connection from the pool. That saves a pool round trip, it means ``pool_size`` tasks holding locks can never
deadlock the pool by each waiting for one more connection, and it is what fences the lock (below).
In front of the advisory lock sits a process-local :class:`asyncio.Lock` per id, so tasks of one
pod queue in memory rather than each parking a connection on the server.

**Fencing.** A session lock dies with its session: after a connection reset or a
``pg_terminate_backend`` the server has released it, and another pod may already hold the entry
while this task still goes on to call Severa. Writes made under the lock are fenced by running on
the very session that holds it -- no token column, no extra round trip:

* a statement executes on the server only while its session is alive, and the session holds the
  lock from ``pg_advisory_lock`` until it ends (we never unlock before the block is left). So any
  write that commits on the lock's connection committed while we held the entry;
* the lock's connection is never swapped for another: asyncpg does not reconnect a connection
  (when one closes, the pool detaches our handle for good and later gives its slot a new
  session), and while a task holds a lock its calls never fall back to the pool -- a write from a
  task that inherited the lock after it was released is refused;
* once a statement on the lock's connection fails because the session is gone (or cannot be
  vouched for: no answer within ``command_timeout``), the connection is terminated, the lock is
  marked lost, and that call and every later call under the same lock raise
  :class:`LedgerLockLost` -- transient, so the message is retried under a fresh lock, where the
  pending mark written before an ``Add`` leads to the usual recovery instead of a duplicate.

A failure that leaves the session alive (a constraint, a row-lock timeout) keeps the lock and is
translated as usual.

**Claims.** :meth:`PostgresLedger.claim` must be atomic across external ids, which the entry locks
do not give: under read committed, two conditional updates for two ids can each check "nobody else
holds this GUID" before either has committed, and both pass. So a claim is one short transaction
that first takes ``pg_advisory_xact_lock(k1, k2)``, where ``(k1, k2)`` is :func:`guid_lock_keys`,
and only then runs the conditional upsert, whose snapshot is taken after the lock was granted and
so sees the claim that went before it. Both go in one round trip, as a simple-protocol script the
server runs as one implicit transaction (:meth:`PostgresLedger._claim_script`). The two-key form
lives in a key space of its own (in ``pg_locks``, ``objsubid = 2``; the entry and schema locks take
one ``bigint``, ``objsubid = 1``), so a GUID can never block an entry lock, whatever the hashes.
The lock ends with the transaction, and the claim runs on the lock's connection like every other
call under an entry's lock, so it is fenced the same way and takes no extra pooled connection.
Nobody waits for an entry lock while holding a GUID lock, so the two kinds cannot deadlock.

The pool holds ``pool_size`` connections: one per entry locked at once, so size it to the consumer
prefetch plus a little headroom (probes, calls outside a lock). Waiting for a pooled connection is
bounded by the lock timeout too, but is not charged to the entry's lock budget and is never
reported as contention: a pool that cannot serve us stalls every entry, so it raises
:class:`LedgerUnavailable` (``ledger_pool_exhausted``), not :class:`LedgerLockTimeout`.

Do not nest :meth:`PostgresLedger.lock` for two ids in one task: the inner lock takes a second
connection (pool exhaustion under load) and pods nesting in opposite orders deadlock -- PostgreSQL
detects that and one side gets :class:`LedgerLockTimeout`, but it is still a wasted round.

Session advisory locks need a real session: connect directly or through PgBouncer in *session*
pooling mode. Transaction pooling would hand the lock's session to someone else.

Durability is PostgreSQL's: each write is a single autocommitted upsert (a claim: one short
transaction), acknowledged after the server has committed it (``synchronous_commit`` as
configured on the server, ``on`` by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn
from urllib.parse import unquote, urlsplit

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from connector.logging import get_logger, register_secret
from connector.state.ledger import (
    DEFAULT_LOCK_TIMEOUT,
    BaseLedger,
    LedgerLockLost,
    LedgerLockTimeout,
    LedgerRecord,
    LedgerUnavailable,
    check_pool_size,
    record_from_row,
    resolve_owners,
)
from connector.state.migrations import migrate
from connector.state.schema import LEDGER_TABLE_VERSION, PREFIX_PATTERN, ledger_lock_get

log = get_logger(__name__)

SCHEMA_VERSION: Final = LEDGER_TABLE_VERSION
"""Version of the ledger table this code reads and writes, as ``<prefix>schema_version`` records
it; the tables themselves are created and upgraded by :func:`connector.state.migrations.migrate`."""

DEFAULT_POOL_SIZE: Final = 10
DEFAULT_TABLE_PREFIX: Final = "severa_connector_"
_COMPONENT: Final = "ledger"
# Prefixes become part of table and index names (see connector.state.schema).
_PREFIX_RE: Final = PREFIX_PATTERN
# BLAKE2b personalisation keeps lock keys for entries apart from the key guarding migrations.
_ENTRY_LOCK: Final = b"sc-ledger-entry"
_SCHEMA_LOCK: Final = b"sc-ledger-schema"
_GUID_LOCK: Final = b"sc-ledger-guid"

# Failures that mean "the database cannot be used right now" (see _translating for exceptions).
# InternalClientError is asyncpg losing track of a connection the server has just killed.
_UNAVAILABLE: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_CONTENDED: Final = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
# Failures after which a connection's session -- and any advisory lock it held -- cannot be vouched
# for. A FATAL from the server (pg_terminate_backend) also closes the connection, which
# PostgresLedger._fencing checks as well, whatever the exception type.
_SESSION_LOST: Final = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    OSError,
    TimeoutError,
)


def advisory_key(table_prefix: str, external_id: str, *, purpose: bytes = _ENTRY_LOCK) -> int:
    """The signed 64-bit advisory-lock key for ``external_id`` under ``table_prefix``.

    Stable across processes, hosts and Python versions. Including the prefix keeps connectors (or
    test runs) that share a database but not tables from blocking each other. Operators can find
    a holder with ``SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND
    ((classid::bigint << 32) | objid::bigint) = <key as unsigned>``.
    """
    digest = hashlib.blake2b(
        f"{table_prefix}\x00{external_id}".encode(), digest_size=8, person=purpose
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def schema_lock_key(table_prefix: str) -> int:
    """The advisory-lock key that serialises migrations of the tables under ``table_prefix``.

    The key the hand-written runner of earlier releases took, so that old and new pods starting
    together still migrate one at a time.
    """
    return advisory_key(table_prefix, _COMPONENT, purpose=_SCHEMA_LOCK)


def guid_lock_keys(table_prefix: str, severa_guid: str) -> tuple[int, int]:
    """The two signed 32-bit keys of the transaction lock that serialises claims of ``severa_guid``.

    Taken as ``pg_advisory_xact_lock(k1, k2)``: the two-key form, a key space apart from the
    one-``bigint`` entry locks (see "Claims" in the module docstring). The hash is
    :func:`advisory_key`'s under a personalisation of its own, so it is stable across pods too.
    Find a holder with ``... WHERE locktype = 'advisory' AND objsubid = 2 AND classid = <k1 as
    unsigned> AND objid = <k2 as unsigned>``.
    """
    key = advisory_key(table_prefix, severa_guid, purpose=_GUID_LOCK)
    high, low = key >> 32, key & 0xFFFF_FFFF
    return high, low - (1 << 32) if low >= 1 << 31 else low


async def _release_session_locks(conn: Any) -> None:
    """The pool's reset of a connection handed back: release every advisory lock of the session.

    asyncpg's default reset also closes cursors, unlistens and resets settings, none of which the
    ledger leaves behind (it sets nothing beyond a transaction-local ``lock_timeout``); asyncpg
    rolls back an open transaction itself before calling this. Releasing an entry's lock is this
    reset's job.
    """
    await conn.execute("SELECT pg_advisory_unlock_all()")


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (``standard_conforming_strings`` on: quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _terminate(conn: Any) -> None:
    """End the session now, so the server drops every lock it holds.

    A no-op when asyncpg has already taken a broken connection back into the pool: then the
    session is gone, and its locks with it.
    """
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def _closed(conn: Any) -> bool:
    """Whether ``conn`` has lost its session for good.

    When a pooled connection closes, asyncpg hands its slot back to the pool and detaches our
    proxy, which from then on raises on every call -- ``is_closed()`` included. The proxy is never
    re-attached to a new session: that is what lets a lost lock stay lost.
    """
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` of a DSN, for messages: never the user's password or options."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:  # multi-host DSNs and other shapes urlsplit cannot take apart
        return "postgresql"
    database = unquote(parts.path.lstrip("/")) or parts.username or "postgres"
    return f"{host}:{port}/{database}"


@dataclass(slots=True, eq=False)
class _Held:
    """The connection holding one advisory lock, lent to ledger calls of the holding task."""

    conn: Any
    pool: Any
    external_id: str
    # Serialises calls when a child task inherited the context variable: one connection runs one
    # statement at a time.
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)
    # False once the block is left and the lock is being released.
    active: bool = True
    # True once the session was seen gone: the server has dropped the lock (see "Fencing").
    lost: bool = False
    # The record the lock's call read right after the lock was granted, kept for the holder's
    # first get() of the same id; dropped by any other statement on the lock's connection.
    prefetched_for: str | None = None
    prefetched: LedgerRecord | None = None


class PostgresLedger(BaseLedger):
    """The ledger in PostgreSQL, on an asyncpg pool.

    :param dsn: ``postgresql://`` or ``postgres://`` URL as asyncpg accepts it (unknown query
        parameters become server settings, e.g. ``?search_path=connector``).
    :param pool_size: connection limit (default :data:`DEFAULT_POOL_SIZE`, at least
        :data:`~connector.state.ledger.MIN_POOL_SIZE`); also the number of entries this pod can
        lock at once, so give it the consumer prefetch plus some headroom.
    :param min_size: connections opened up front and kept.
    :param max_size: the former name of ``pool_size``, still accepted for existing callers.
    :param table_prefix: prefix of ``<prefix>ledger`` and ``<prefix>schema_version``; lets several
        connectors (or tests) share a database.
    :param lock_timeout: seconds :meth:`lock` waits for the entry -- in the process and on the
        server together -- before raising :class:`LedgerLockTimeout`; separately, the longest
        wait for a pooled connection before :class:`LedgerUnavailable`.
    :param command_timeout: client-side limit in seconds for every other statement.
    :param close_timeout: seconds :meth:`aclose` waits for borrowed connections before
        terminating them.
    """

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int | None = None,
        min_size: int = 1,
        max_size: int | None = None,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        command_timeout: float = 10.0,
        close_timeout: float = 10.0,
        application_name: str = "severa-connector",
    ) -> None:
        super().__init__(lock_timeout=lock_timeout)
        if max_size is not None:
            if pool_size is not None and pool_size != max_size:
                raise ValueError("give pool_size only: max_size is its former name")
            pool_size = max_size
        self.pool_size = check_pool_size(DEFAULT_POOL_SIZE if pool_size is None else pool_size)
        if not 0 <= min_size <= self.pool_size:
            raise ValueError(f"need 0 <= min_size <= pool_size, got {min_size} and {self.pool_size}")
        if not _PREFIX_RE.fullmatch(table_prefix):
            raise ValueError(
                f"table_prefix must match {_PREFIX_RE.pattern} (lower-case identifier), got {table_prefix!r}"
            )
        if not command_timeout > 0 or not close_timeout > 0:
            raise ValueError("command_timeout and close_timeout must be positive numbers of seconds")
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            register_secret(password)
            register_secret(unquote(password))
        self._dsn = dsn
        self.where = describe_dsn(dsn)
        self.table_prefix = table_prefix
        self._min_size = min_size
        self._command_timeout = float(command_timeout)
        self._close_timeout = float(close_timeout)
        self._application_name = application_name
        self._pool: Any = None
        # Per instance, so two ledgers in one task (tests playing two pods) never share a holder.
        self._held: ContextVar[_Held | None] = ContextVar(f"ledger_held_{id(self):x}", default=None)

        table = self.table = f"{table_prefix}ledger"
        self.versions_table = f"{table_prefix}schema_version"
        columns = (
            "external_id, version, state, severa_guid, pending_version, fingerprint, updated_at, content_hash"
        )
        self._sql_get = f"SELECT {columns} FROM {table} WHERE external_id = $1"
        self._sql_lock_get = f"SELECT {columns} FROM {ledger_lock_get(table_prefix)}($1, $2, $3)"
        # One upsert per write: atomic on its own. ``{table}.col`` is the existing row, EXCLUDED
        # the one we tried to insert; now() is the server's clock, so pods with skewed clocks agree.
        self._sql_pending = f"""
            INSERT INTO {table} AS t ({columns}) VALUES ($1, 0, 'pending', NULL, $2, $3, now(), NULL)
            ON CONFLICT (external_id) DO UPDATE SET
                state = 'pending',
                pending_version = EXCLUDED.pending_version,
                fingerprint = EXCLUDED.fingerprint,
                updated_at = EXCLUDED.updated_at"""
        self._sql_applied = f"""
            INSERT INTO {table} AS t ({columns}) VALUES ($1, $2, 'applied', $3, NULL, NULL, now(), $4)
            ON CONFLICT (external_id) DO UPDATE SET
                version = GREATEST(t.version, EXCLUDED.version),
                state = 'applied',
                severa_guid = EXCLUDED.severa_guid,
                content_hash = EXCLUDED.content_hash,
                pending_version = NULL,
                fingerprint = NULL,
                updated_at = EXCLUDED.updated_at"""
        # The guard reads the other rows; run it only under the GUID's transaction lock (_claim),
        # which is why the claim goes as one simple-protocol script with its values inlined as
        # literals (see _claim_script): parameters would need the extended protocol, one round trip
        # per statement plus BEGIN and COMMIT.
        self._sql_claim = f"""
            INSERT INTO {table} AS t ({columns})
            SELECT {{external_id}}, {{version}}, 'applied', {{guid}}, NULL, NULL, now(), {{content_hash}}
            WHERE NOT EXISTS (
                SELECT 1 FROM {table}
                WHERE severa_guid = {{guid}} AND external_id <> {{external_id}} AND state <> 'deleted'
            )
            ON CONFLICT (external_id) DO UPDATE SET
                version = GREATEST(t.version, EXCLUDED.version),
                state = 'applied',
                severa_guid = EXCLUDED.severa_guid,
                content_hash = EXCLUDED.content_hash,
                pending_version = NULL,
                fingerprint = NULL,
                updated_at = EXCLUDED.updated_at"""
        self._sql_deleted = f"""
            INSERT INTO {table} AS t ({columns}) VALUES ($1, $2, 'deleted', NULL, NULL, NULL, now(), NULL)
            ON CONFLICT (external_id) DO UPDATE SET
                version = GREATEST(t.version, EXCLUDED.version),
                state = 'deleted',
                pending_version = NULL,
                fingerprint = NULL,
                updated_at = EXCLUDED.updated_at"""
        self._sql_owners = (
            f"SELECT severa_guid, external_id FROM {table} "
            "WHERE severa_guid = ANY($1::text[]) AND state <> 'deleted'"
        )
        self._sql_count = f"SELECT count(*) FROM {table}"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        with self._translating("connect"):
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self.pool_size,
                command_timeout=self._command_timeout,
                timeout=self._command_timeout,  # connection establishment
                server_settings={
                    "application_name": self._application_name,
                    # Row locks are only ever contended by writers racing outside ledger.lock().
                    "lock_timeout": f"{int(self.lock_timeout * 1000)}ms",
                    # What makes _literal's quoting complete (the claim inlines its values).
                    "standard_conforming_strings": "on",
                },
                reset=_release_session_locks,
            )
        try:
            await self._migrate()
        except BaseException:
            await self._close()
            raise
        log.info("ledger.opened", backend=self.backend, where=self.where, table=self.table)

    async def _migrate(self) -> None:
        # Its own short-lived connection, made the way the pool makes them (the DSN verbatim, so
        # query parameters stay server settings): see connector.state.migrations for the lock that
        # lets pods starting together migrate one at a time.
        async def connect() -> Any:
            return await asyncpg.connect(
                self._dsn,
                command_timeout=self._command_timeout,
                timeout=self._command_timeout,
                server_settings={"application_name": self._application_name},
            )

        engine = create_async_engine("postgresql+asyncpg://", poolclass=NullPool, async_creator=connect)
        try:
            with self._translating("migrate the schema"):
                await migrate(engine, table_prefix=self.table_prefix)
        finally:
            await engine.dispose()

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # close() waits for borrowed connections (a lock held across a Severa call); bounded,
            # because shutdown must finish even if one of them hangs.
            await asyncio.wait_for(pool.close(), self._close_timeout)
        except (TimeoutError, *_UNAVAILABLE) as exc:
            log.warning("ledger.close_forced", backend=self.backend, error=repr(exc))
            pool.terminate()

    # -- connections -------------------------------------------------------------------------------

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise LedgerUnavailable("the postgres ledger is closed", reason="ledger_closed")
        return self._pool

    @asynccontextmanager
    async def _connection(self, action: str, *, write: bool = False) -> AsyncIterator[Any]:
        """The lock's connection if this task holds one, else one borrowed from the pool.

        A ``write`` from a task whose inherited lock has already been released is refused: on a
        pooled connection it would no longer be fenced.
        """
        holder = self._held.get()
        if holder is not None:
            async with holder.mutex:
                # Checked under the mutex: the lock may have been released while we waited.
                if holder.active:
                    holder.prefetched_for = None  # a statement of ours may change the record
                    with self._fencing(holder, action):
                        yield holder.conn
                    return
            if write:
                raise self._lock_lost(holder, action, "the lock was released before this write")
        pool = self._require_pool()
        try:
            conn = await pool.acquire(timeout=self._command_timeout)
        except TimeoutError as exc:
            raise self._pool_exhausted(action, self._command_timeout) from exc
        except _UNAVAILABLE as exc:
            self._raise_unavailable(action, exc)
        try:
            with self._translating(action):
                yield conn
        finally:
            await self._release(pool, conn)

    async def _release(self, pool: Any, conn: Any) -> None:
        try:
            await pool.release(conn)  # shielded by asyncpg: survives our cancellation
        except _UNAVAILABLE as exc:
            # The pool is closing or the connection broke; either way it is not coming back.
            log.debug("ledger.release_failed", error=repr(exc))

    # -- locking -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _shared_lock(self, external_id: str, deadline: float) -> AsyncIterator[None]:
        key = advisory_key(self.table_prefix, external_id)
        outer = self._held.get()
        if outer is not None:
            # Nested (not done by the flows): statements now run on the inner lock's connection,
            # where a write of the outer entry would not clear the outer lock's read.
            outer.prefetched_for = None
        holder = await self._advisory_lock(external_id, key, deadline)
        token = self._held.set(holder)
        try:
            yield
        finally:
            self._held.reset(token)
            await self._advisory_unlock(holder, external_id, key)

    async def _advisory_lock(self, external_id: str, key: int, deadline: float) -> _Held:
        pool = self._require_pool()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # A budget of its own: time spent here says nothing about the entry, so it is neither
            # charged to the entry's lock budget nor ever reported as contention on it.
            conn = await pool.acquire(timeout=self.lock_timeout)
        except TimeoutError as exc:
            raise self._pool_exhausted(f"lock {external_id!r}", self.lock_timeout) from exc
        except _UNAVAILABLE as exc:
            self._raise_unavailable("acquire a connection for a lock", exc)
        # What was left of the entry's budget when we started waiting for the pool.
        remaining = max(deadline - started, 0.001)
        try:
            # One round trip: the function sets the exact remaining budget as lock_timeout for its
            # own transaction, takes the lock, then reads the entry's record under a snapshot taken
            # after the lock was granted (revision 0004 says why it must be a function).
            rows = await conn.fetch(
                self._sql_lock_get,
                key,
                max(int(remaining * 1000), 1),
                external_id,
                timeout=remaining + self._command_timeout,  # backstop if the server goes silent
            )
            # Inside the try: a record we cannot read (ledger_corrupt) must not leave the lock held.
            prefetched = self._record(rows[0]) if rows else None
        except asyncpg.LockNotAvailableError as exc:
            # Mostly the entry's lock refused. But the read after it waits under the same
            # lock_timeout for the table (an ALTER or VACUUM FULL holding it), when the entry's
            # lock may already be granted: end the session so it cannot go back to the pool held.
            _terminate(conn)
            await self._release(pool, conn)
            raise self._lock_timeout_error(
                external_id, "another process or pod holds it (or the ledger table is locked)"
            ) from exc
        except BaseException as exc:
            # Cancelled or broken while waiting: the server may grant the lock after we stopped
            # listening. Ending the session is the only way to be sure the lock dies with it.
            _terminate(conn)
            await self._release(pool, conn)
            if isinstance(exc, asyncpg.DeadlockDetectedError):
                raise self._lock_timeout_error(
                    external_id, "deadlock with another pod (are locks nested?)"
                ) from exc
            if isinstance(exc, _UNAVAILABLE):
                self._raise_unavailable("take an advisory lock", exc)
            raise
        return _Held(
            conn=conn,
            pool=pool,
            external_id=external_id,
            prefetched_for=external_id,
            prefetched=prefetched,
        )

    async def _advisory_unlock(self, holder: _Held, external_id: str, key: int) -> None:
        """Give the lock up by handing its connection back to the pool, whose reset
        (:func:`_release_session_locks`) runs ``pg_advisory_unlock_all()`` -- one round trip for
        the unlock and the reset together. If the reset fails, asyncpg terminates the connection,
        and the server drops the lock with the session."""
        holder.active = False
        conn = holder.conn
        if holder.lost:
            # Terminated when the loss was seen: the server dropped the lock with the session.
            await self._release(holder.pool, conn)
            return
        try:
            async with holder.mutex:  # let a statement of a child task finish first
                await holder.pool.release(conn, timeout=self._command_timeout)
        except asyncio.CancelledError:
            _terminate(conn)
            raise
        except Exception as exc:
            # Typically the connection died inside the block: the server already dropped the
            # lock with the session. Terminating covers the other cases. Not raised, so it
            # cannot mask what happened inside the block.
            _terminate(conn)
            log.warning("ledger.unlock_failed", external_id=external_id, error=repr(exc))

    # -- operations --------------------------------------------------------------------------------

    async def _probe(self) -> None:
        async with self._connection("answer a probe") as conn:
            await conn.fetchval("SELECT 1")

    async def _get(self, external_id: str) -> LedgerRecord | None:
        holder = self._held.get()
        if (
            holder is not None
            and holder.prefetched_for == external_id
            and holder.active
            and not holder.lost
            and not _closed(holder.conn)
        ):
            # Read by the lock's own call after the lock was granted, and nothing has run on the
            # lock's connection since (see the module docstring): no second round trip. A session seen
            # gone goes the usual way, which reports the lock lost.
            holder.prefetched_for = None
            return holder.prefetched
        async with self._connection("read a record") as conn:
            row = await conn.fetchrow(self._sql_get, external_id)
        return None if row is None else self._record(row)

    @staticmethod
    def _record(row: Any) -> LedgerRecord:
        updated_at: dt.datetime = row["updated_at"]
        return record_from_row(row, updated_at.astimezone(dt.UTC))

    async def _mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        async with self._connection("mark a record pending", write=True) as conn:
            await conn.execute(self._sql_pending, external_id, version, fingerprint)

    async def _mark_applied(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> None:
        async with self._connection("mark a record applied", write=True) as conn:
            await conn.execute(self._sql_applied, external_id, version, severa_guid, content_hash)

    async def _claim(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> bool:
        script = self._claim_script(external_id, version, severa_guid, content_hash)
        async with self._connection("claim a GUID", write=True) as conn:
            status = await conn.execute(script)
        # The status of the script's last statement: "INSERT 0 1" when the row was written.
        return bool(status == "INSERT 0 1")

    def _claim_script(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> str:
        """The claim as one round trip: a simple-protocol query of two statements, which the server
        runs as one implicit transaction, each statement (read committed) with a snapshot of its
        own -- so the guard's snapshot is taken after the GUID's transaction lock was granted, as
        with an explicit BEGIN, lock, claim, COMMIT, which cost four round trips.

        The values are inlined as literals, which is safe as written: the keys and the version are
        integers, the texts passed :func:`~connector.state.ledger.check_text` (no NUL) and are
        quoted by :func:`_literal` under ``standard_conforming_strings``, which the pool pins on.
        """
        high, low = guid_lock_keys(self.table_prefix, severa_guid)
        claim = self._sql_claim.format(
            external_id=_literal(external_id),
            version=int(version),
            guid=_literal(severa_guid),
            content_hash="NULL" if content_hash is None else _literal(content_hash),
        )
        return f"SELECT pg_advisory_xact_lock({int(high)}, {int(low)});{claim}"

    async def _mark_deleted(self, external_id: str, version: int) -> None:
        async with self._connection("mark a record deleted", write=True) as conn:
            await conn.execute(self._sql_deleted, external_id, version)

    async def _owners_of(self, guids: Collection[str]) -> dict[str, str]:
        async with self._connection("look up GUID owners") as conn:
            rows = await conn.fetch(self._sql_owners, sorted(guids))
        return resolve_owners([(str(row["severa_guid"]), str(row["external_id"])) for row in rows])

    async def _count(self) -> int:
        async with self._connection("count records") as conn:
            return int(await conn.fetchval(self._sql_count))

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        """Re-raise asyncpg/socket failures as the connector's errors, ``from`` the original."""
        try:
            yield
        except _CONTENDED as exc:
            raise LedgerLockTimeout(
                f"PostgreSQL ledger could not {action}: {exc}", reason="ledger_busy", backend=self.backend
            ) from exc
        except (ValueError, asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            # A value the server refused, or a bad argument on our side: a bug or a bad message,
            # never a reason to pause consumption (classify() makes it permanent).
            raise
        except _UNAVAILABLE as exc:
            self._raise_unavailable(action, exc)

    @contextmanager
    def _fencing(self, holder: _Held, action: str) -> Iterator[None]:
        """:meth:`_translating` for the lock's connection, turning a lost session into
        :class:`LedgerLockLost` (see "Fencing" in the module docstring)."""
        if holder.lost or _closed(holder.conn):
            holder.lost = True
            raise self._lock_lost(holder, action, "its session had already ended")
        try:
            with self._translating(action):
                yield
        except LedgerUnavailable as exc:
            if not (isinstance(exc.__cause__, _SESSION_LOST) or _closed(holder.conn)):
                raise  # the session is alive, and with it the lock
            holder.lost = True
            # If the session is in fact still alive (no answer in time), ending it makes sure the
            # lock is gone too, rather than held by a session nobody will use again.
            _terminate(holder.conn)
            raise self._lock_lost(holder, action, "its session ended", exc.__cause__) from exc.__cause__

    def _lock_lost(
        self, holder: _Held, action: str, why: str, cause: BaseException | None = None
    ) -> LedgerLockLost:
        log.warning(
            "ledger.lock_lost",
            backend=self.backend,
            external_id=holder.external_id,
            action=action,
            why=why,
            error=None if cause is None else repr(cause),
        )
        return LedgerLockLost(
            f"refused to {action}: the ledger lock on {holder.external_id!r} was lost ({why}); "
            "another pod may hold the entry now, so nothing was written unguarded",
            external_id=holder.external_id,
            backend=self.backend,
        )

    def _pool_exhausted(self, action: str, waited: float) -> LedgerUnavailable:
        return LedgerUnavailable(
            f"no connection from the PostgreSQL ledger pool within {waited:g}s to {action}: all "
            f"{self.pool_size} are in use. The store cannot serve this pod -- this is not another "
            "task holding the entry. Make the pool at least the consumer prefetch plus headroom, "
            "or look for connections stuck on the database.",
            reason="ledger_pool_exhausted",
            backend=self.backend,
            where=self.where,
            pool_size=self.pool_size,
        )

    def _raise_unavailable(self, action: str, exc: BaseException) -> NoReturn:
        raise LedgerUnavailable(
            f"PostgreSQL ledger at {self.where} could not {action}: {type(exc).__name__}: {exc}",
            backend=self.backend,
            where=self.where,
        ) from exc

    def __repr__(self) -> str:
        return f"<PostgresLedger {self.where} table={self.table} {self._lifecycle.value}>"
