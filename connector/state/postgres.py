"""PostgreSQL ledger: shared by every pod of the connector.

Locking across pods uses a session-level advisory lock, ``pg_advisory_lock(k)``, where ``k`` is
:func:`advisory_key` -- a stable 64-bit BLAKE2b hash of the table prefix and the external id
(Python's ``hash()`` is salted per process, so two pods would disagree). The lock lives on one
pooled connection held for the whole ``async with ledger.lock(x)`` block:

* released with ``pg_advisory_unlock`` in ``finally``; if that fails or is cancelled, the
  connection is terminated instead, because a session that goes back to the pool still holding
  the lock would block that entry for as long as the connection lives;
* if the pod dies or the network drops, the server ends the session and the lock with it -- the
  reason for a session lock rather than a row in a table that would need expiry;
* asyncpg's pool also runs ``pg_advisory_unlock_all()`` when a connection is released: a second,
  independent net under the first.

While a task holds the lock, its own ledger calls (``get``, ``mark_*``, ``owners_of``) run on the
lock's connection, found through a context variable, instead of taking a second connection from
the pool. That saves a pool round trip, and above all it means ``max_size`` tasks holding locks can
never deadlock the pool by each waiting for one more connection. In front of the advisory lock sits
a process-local :class:`asyncio.Lock` per id, so tasks of one pod queue in memory rather than each
parking a connection on the server.

Do not nest :meth:`PostgresLedger.lock` for two ids in one task: the inner lock takes a second
connection (pool exhaustion under load) and pods nesting in opposite orders deadlock -- PostgreSQL
detects that and one side gets :class:`LedgerLockTimeout`, but it is still a wasted round.

Session advisory locks need a real session: connect directly or through PgBouncer in *session*
pooling mode. Transaction pooling would hand the lock's session to someone else.

Durability is PostgreSQL's: each write is a single autocommitted upsert, acknowledged after the
server has committed it (``synchronous_commit`` as configured on the server, ``on`` by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn
from urllib.parse import unquote, urlsplit

import asyncpg

from connector.logging import get_logger, register_secret
from connector.state.ledger import (
    DEFAULT_LOCK_TIMEOUT,
    BaseLedger,
    LedgerLockTimeout,
    LedgerRecord,
    LedgerUnavailable,
    record_from_row,
    resolve_owners,
)

log = get_logger(__name__)

SCHEMA_VERSION: Final = 1
"""Version of the ledger tables this code reads and writes; stored in ``<prefix>schema_version``."""

DEFAULT_TABLE_PREFIX: Final = "severa_connector_"
_COMPONENT: Final = "ledger"
# Prefixes become part of table and index names: plain lower-case identifiers only (nothing to
# quote, nothing to inject), short enough that "<prefix>schema_version" fits in 63 bytes.
_PREFIX_RE: Final = re.compile(r"(?:[a-z_][a-z0-9_]{0,39})?")
# BLAKE2b personalisation keeps lock keys for entries apart from the key guarding migrations.
_ENTRY_LOCK: Final = b"sc-ledger-entry"
_SCHEMA_LOCK: Final = b"sc-ledger-schema"

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


def _terminate(conn: Any) -> None:
    """End the session now, so the server drops every lock it holds.

    A no-op when asyncpg has already taken a broken connection back into the pool: then the
    session is gone, and its locks with it.
    """
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


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
    # Serialises calls when a child task inherited the context variable: one connection runs one
    # statement at a time.
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = True


class PostgresLedger(BaseLedger):
    """The ledger in PostgreSQL, on an asyncpg pool.

    :param dsn: ``postgresql://`` or ``postgres://`` URL as asyncpg accepts it (unknown query
        parameters become server settings, e.g. ``?search_path=connector``).
    :param min_size: connections opened up front and kept.
    :param max_size: connection limit; also the number of entries this pod can lock at once.
    :param table_prefix: prefix of ``<prefix>ledger`` and ``<prefix>schema_version``; lets several
        connectors (or tests) share a database.
    :param lock_timeout: seconds :meth:`lock` waits -- in the process, for a pooled connection and
        on the server together -- before raising :class:`LedgerLockTimeout`.
    :param command_timeout: client-side limit in seconds for every other statement.
    :param close_timeout: seconds :meth:`aclose` waits for borrowed connections before
        terminating them.
    """

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        command_timeout: float = 10.0,
        close_timeout: float = 10.0,
        application_name: str = "severa-connector",
    ) -> None:
        super().__init__(lock_timeout=lock_timeout)
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}")
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
        self._max_size = max_size
        self._command_timeout = float(command_timeout)
        self._close_timeout = float(close_timeout)
        self._application_name = application_name
        self._pool: Any = None
        # Per instance, so two ledgers in one task (tests playing two pods) never share a holder.
        self._held: ContextVar[_Held | None] = ContextVar(f"ledger_held_{id(self):x}", default=None)

        table = self.table = f"{table_prefix}ledger"
        self.versions_table = f"{table_prefix}schema_version"
        columns = "external_id, version, state, severa_guid, pending_version, fingerprint, updated_at"
        self._sql_get = f"SELECT {columns} FROM {table} WHERE external_id = $1"
        # One upsert per write: atomic on its own. ``{table}.col`` is the existing row, EXCLUDED
        # the one we tried to insert; now() is the server's clock, so pods with skewed clocks agree.
        self._sql_pending = f"""
            INSERT INTO {table} AS t ({columns}) VALUES ($1, 0, 'pending', NULL, $2, $3, now())
            ON CONFLICT (external_id) DO UPDATE SET
                state = 'pending',
                pending_version = EXCLUDED.pending_version,
                fingerprint = EXCLUDED.fingerprint,
                updated_at = EXCLUDED.updated_at"""
        self._sql_applied = f"""
            INSERT INTO {table} AS t ({columns}) VALUES ($1, $2, 'applied', $3, NULL, NULL, now())
            ON CONFLICT (external_id) DO UPDATE SET
                version = GREATEST(t.version, EXCLUDED.version),
                state = 'applied',
                severa_guid = EXCLUDED.severa_guid,
                pending_version = NULL,
                fingerprint = NULL,
                updated_at = EXCLUDED.updated_at"""
        self._sql_deleted = f"""
            INSERT INTO {table} AS t ({columns}) VALUES ($1, $2, 'deleted', NULL, NULL, NULL, now())
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

    def _migrations(self) -> dict[int, tuple[str, ...]]:
        # Migration N brings the schema from N-1 to N; idempotent statements, so a migration cut
        # short before its version row was written can simply run again.
        table = self.table
        return {
            1: (
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    external_id     text PRIMARY KEY,
                    version         bigint NOT NULL CHECK (version >= 0),
                    state           text NOT NULL CHECK (state IN ('pending', 'applied', 'deleted')),
                    severa_guid     text,
                    pending_version bigint,
                    fingerprint     text,
                    updated_at      timestamptz NOT NULL DEFAULT now()
                )""",
                f"CREATE INDEX IF NOT EXISTS {table}_severa_guid ON {table} (severa_guid)",
                f"COMMENT ON TABLE {table} IS 'severa-connector idempotency ledger: one row per "
                "external hour entry; schema version in the schema_version table next to it'",
            ),
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        with self._translating("connect"):
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                command_timeout=self._command_timeout,
                timeout=self._command_timeout,  # connection establishment
                server_settings={
                    "application_name": self._application_name,
                    # Row locks are only ever contended by writers racing outside ledger.lock().
                    "lock_timeout": f"{int(self.lock_timeout * 1000)}ms",
                },
            )
        try:
            await self._migrate()
        except BaseException:
            await self._close()
            raise
        log.info("ledger.opened", backend=self.backend, where=self.where, table=self.table)

    async def _migrate(self) -> None:
        async with self._connection("migrate the schema") as conn, conn.transaction():
            # Pods starting together would race CREATE TABLE IF NOT EXISTS (it is not atomic
            # against itself); a transaction-scoped advisory lock lets one migrate at a time.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)",
                advisory_key(self.table_prefix, _COMPONENT, purpose=_SCHEMA_LOCK),
            )
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.versions_table} (
                        component   text PRIMARY KEY,
                        version     integer NOT NULL,
                        migrated_at timestamptz NOT NULL DEFAULT now()
                    )"""
            )
            found = await conn.fetchval(
                f"SELECT version FROM {self.versions_table} WHERE component = $1", _COMPONENT
            )
            current = 0 if found is None else int(found)
            if current > SCHEMA_VERSION:
                raise LedgerUnavailable(
                    f"the ledger tables {self.table} in {self.where} have schema version {current}, "
                    f"newer than the {SCHEMA_VERSION} this connector understands: upgrade the connector",
                    reason="ledger_schema_too_new",
                )
            migrations = self._migrations()
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in migrations[version]:
                    await conn.execute(statement)
            if current < SCHEMA_VERSION:
                await conn.execute(
                    f"""INSERT INTO {self.versions_table} (component, version) VALUES ($1, $2)
                        ON CONFLICT (component) DO UPDATE
                        SET version = EXCLUDED.version, migrated_at = now()""",
                    _COMPONENT,
                    SCHEMA_VERSION,
                )
                log.info("ledger.schema_migrated", backend=self.backend, old=current, new=SCHEMA_VERSION)

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
    async def _connection(self, action: str) -> AsyncIterator[Any]:
        """The lock's connection if this task holds one, else one borrowed from the pool."""
        holder = self._held.get()
        if holder is not None and holder.active:
            async with holder.mutex:
                # Re-check: the lock may have been released while we waited for the mutex.
                if holder.active:
                    with self._translating(action):
                        yield holder.conn
                    return
        pool = self._require_pool()
        try:
            conn = await pool.acquire(timeout=self._command_timeout)
        except TimeoutError as exc:
            raise LedgerLockTimeout(
                f"no free connection in the ledger pool ({self._max_size}) within "
                f"{self._command_timeout:g}s to {action}: every one holds an entry's lock",
                reason="ledger_pool_exhausted",
                backend=self.backend,
            ) from exc
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
        try:
            conn = await pool.acquire(timeout=max(deadline - loop.time(), 0.001))
        except TimeoutError as exc:
            raise self._lock_timeout_error(
                external_id, f"all {self._max_size} pooled connections stayed busy holding other locks"
            ) from exc
        except _UNAVAILABLE as exc:
            self._raise_unavailable("acquire a connection for a lock", exc)
        remaining = max(deadline - loop.time(), 0.001)
        try:
            # One simple-protocol message: SET LOCAL gives the server the exact remaining budget
            # and dies with the implicit transaction, so it never leaks to later statements. Both
            # values are integers we computed: nothing to inject.
            await conn.execute(
                f"SET LOCAL lock_timeout = {max(int(remaining * 1000), 1)}; SELECT pg_advisory_lock({key})",
                timeout=remaining + self._command_timeout,  # backstop if the server goes silent
            )
        except asyncpg.LockNotAvailableError as exc:
            # The server refused before granting anything: the connection is clean.
            await self._release(pool, conn)
            raise self._lock_timeout_error(external_id, "another process or pod holds it") from exc
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
        return _Held(conn=conn, pool=pool)

    async def _advisory_unlock(self, holder: _Held, external_id: str, key: int) -> None:
        holder.active = False
        conn = holder.conn
        try:
            async with holder.mutex:  # let a statement of a child task finish first
                released = await conn.fetchval(
                    "SELECT pg_advisory_unlock($1)", key, timeout=self._command_timeout
                )
            if not released:
                log.warning("ledger.lock_not_held_at_release", external_id=external_id)
        except asyncio.CancelledError:
            _terminate(conn)
            raise
        except Exception as exc:
            # Typically the connection died inside the block: the server already dropped the
            # lock with the session. Terminating covers the other cases. Not raised, so it
            # cannot mask what happened inside the block.
            _terminate(conn)
            log.warning("ledger.unlock_failed", external_id=external_id, error=repr(exc))
        finally:
            await self._release(holder.pool, conn)

    # -- operations --------------------------------------------------------------------------------

    async def _probe(self) -> None:
        async with self._connection("answer a probe") as conn:
            await conn.fetchval("SELECT 1")

    async def _get(self, external_id: str) -> LedgerRecord | None:
        async with self._connection("read a record") as conn:
            row = await conn.fetchrow(self._sql_get, external_id)
        if row is None:
            return None
        updated_at: dt.datetime = row["updated_at"]
        return record_from_row(row, updated_at.astimezone(dt.UTC))

    async def _mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        async with self._connection("mark a record pending") as conn:
            await conn.execute(self._sql_pending, external_id, version, fingerprint)

    async def _mark_applied(self, external_id: str, version: int, severa_guid: str) -> None:
        async with self._connection("mark a record applied") as conn:
            await conn.execute(self._sql_applied, external_id, version, severa_guid)

    async def _mark_deleted(self, external_id: str, version: int) -> None:
        async with self._connection("mark a record deleted") as conn:
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

    def _raise_unavailable(self, action: str, exc: BaseException) -> NoReturn:
        raise LedgerUnavailable(
            f"PostgreSQL ledger at {self.where} could not {action}: {type(exc).__name__}: {exc}",
            backend=self.backend,
            where=self.where,
        ) from exc

    def __repr__(self) -> str:
        return f"<PostgresLedger {self.where} table={self.table} {self._lifecycle.value}>"
