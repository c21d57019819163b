"""PostgreSQL dead-letter store: one store for every operator and pod.

Tables are prefixed (default ``severa_connector_``) and the schema version lives in the ledger's
``<prefix>schema_version`` table under component ``dlq``, so the store can share the ledger's
database (the default when ``state_url`` is PostgreSQL) without touching its tables.

A replay run's liveness is a *session* advisory lock, ``pg_advisory_lock(k)`` with ``k`` =
:func:`connector.state.postgres.advisory_key` of the run id, held on a connection set aside for the
run. If the operator's process dies, its TCP connection closes, the server ends the session and the
lock with it -- so the next replay sees at once that the run is gone and resumes its rows. A
network partition longer than TCP keep-alive does the same; the worst case is then that both runs
send a row, which the flows' idempotency absorbs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, NoReturn
from urllib.parse import unquote, urlsplit

import asyncpg

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
from connector.logging import get_logger, register_secret
from connector.state.postgres import advisory_key, describe_dsn

log = get_logger(__name__)

DEFAULT_TABLE_PREFIX: Final = "severa_connector_"
_SCHEMA_LOCK: Final = b"sc-dlq-schema"
_RUN_LOCK: Final = b"sc-dlq-replay"
_TYPES: Final = {
    "seq": "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "text": "text",
    "int": "bigint",
    "blob": "bytea",
    "ts": "timestamptz",
    "json": "jsonb",
}
_UNAVAILABLE: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class PostgresDialect(Dialect):
    def param(self, index: int) -> str:
        return f"${index}"

    def ts(self, moment: dt.datetime | None) -> Any:
        if moment is None:
            return None
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment

    def ts_out(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        moment: dt.datetime = value
        return moment.astimezone(dt.UTC)

    def json_param(self, placeholder: str) -> str:
        return f"{placeholder}::jsonb"

    def contains_ci(self, column: str, placeholder: str) -> str:
        return f"strpos(lower({column}), {placeholder}::text) > 0"

    def header_key(self, name: str) -> Any:
        return name

    def header_text(self, placeholder: str) -> str:
        return (
            f"(CASE jsonb_typeof(headers -> {placeholder}::text) WHEN 'null' THEN 'null' "
            f"ELSE headers ->> {placeholder}::text END)"
        )

    def header_exists(self, placeholder: str) -> str:
        return f"(headers -> {placeholder}::text) IS NOT NULL"

    def in_list(self, column: str, values: Sequence[str], params: Params) -> str:
        return f"{column} = ANY({params(list(values))}::text[])"


class _PostgresSession(Session):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._conn.fetch(sql, *params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(sql, *params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class PostgresStore(SqlStore):
    """The store in PostgreSQL, on a small asyncpg pool."""

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        max_size: int = 4,
        command_timeout: float = 30.0,
        application_name: str = "severa-connector-dlq",
        create: bool = True,
    ) -> None:
        super().__init__(PostgresDialect(), table_prefix=table_prefix)
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
        self.versions_table = f"{table_prefix}schema_version"
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._application_name = application_name
        self._create = create
        self._pool: Any = None
        self._run_conns: dict[str, Any] = {}

    async def _open(self) -> None:
        with self._translating("connect"):
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                # +1 per concurrent run lock is taken on demand: run locks hold a connection each.
                max_size=self._max_size,
                command_timeout=self._command_timeout,
                timeout=self._command_timeout,
                server_settings={"application_name": self._application_name},
            )
        try:
            await self._migrate()
        except BaseException:
            await self._close()
            raise
        log.debug("dlq.store_opened", backend=self.backend, where=self.where, prefix=self.table_prefix)

    async def _migrate(self) -> None:
        if not self._create:
            await self._require_schema()
        async with self._session(write=True) as session:
            # Operators starting together would race CREATE TABLE IF NOT EXISTS.
            await session.execute(
                "SELECT pg_advisory_xact_lock($1)",
                [advisory_key(self.table_prefix, COMPONENT, purpose=_SCHEMA_LOCK)],
            )
            await session.execute(
                f"CREATE TABLE IF NOT EXISTS {self.versions_table} (component text PRIMARY KEY, "
                "version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await session.fetch(
                f"SELECT version FROM {self.versions_table} WHERE component = $1", [COMPONENT]
            )
            current = int(rows[0]["version"]) if rows else 0
            if current > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the dead-letter tables {self.table_prefix}* in {self.where} have schema version "
                    f"{current}, newer than the {SCHEMA_VERSION} this connector understands",
                    reason="dlq_store_schema_too_new",
                )
            if current < SCHEMA_VERSION:
                for statement in schema_statements(self, _TYPES):
                    await session.execute(statement)
                await session.execute(
                    f"INSERT INTO {self.versions_table} (component, version) VALUES ($1, $2) "
                    "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()",
                    [COMPONENT, SCHEMA_VERSION],
                )

    async def _require_schema(self) -> None:
        """Refuse (without creating anything) a database whose dead-letter tables do not exist."""
        async with self._session(write=False) as session:
            rows = await session.fetch("SELECT to_regclass($1) IS NOT NULL AS present", [self.versions_table])
            found = bool(rows[0]["present"])
            if found:
                rows = await session.fetch(
                    f"SELECT 1 FROM {self.versions_table} WHERE component = $1", [COMPONENT]
                )
                found = bool(rows)
        if not found:
            raise StoreMissing(f"there are no dead-letter tables {self.table_prefix}* in {self.where}")

    async def _close(self) -> None:
        for replay_id in list(self._run_conns):
            await self._release_run_lock(replay_id)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except _UNAVAILABLE:
                pool.terminate()

    @asynccontextmanager
    async def _session(self, *, write: bool) -> AsyncIterator[Session]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the postgres dead-letter store is closed", reason="dlq_store_closed")
        with self._translating("write" if write else "read"):
            async with pool.acquire() as conn:
                if write:
                    async with conn.transaction():
                        yield _PostgresSession(conn)
                else:
                    yield _PostgresSession(conn)

    # -- run locks ---------------------------------------------------------------------------------

    def _run_key(self, replay_id: str) -> int:
        return advisory_key(self.table_prefix, replay_id, purpose=_RUN_LOCK)

    @asynccontextmanager
    async def run_lock(self, replay_id: str) -> AsyncIterator[None]:
        with self._translating("take a replay run lock"):
            # Not from the pool: this session lives as long as the run, and so does its lock.
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._command_timeout,
                server_settings={"application_name": f"{self._application_name}:replay"},
            )
        self._run_conns[replay_id] = conn
        try:
            with self._translating("take a replay run lock"):
                await conn.execute("SELECT pg_advisory_lock($1)", self._run_key(replay_id))
            yield
        finally:
            await self._release_run_lock(replay_id)

    async def _release_run_lock(self, replay_id: str) -> None:
        conn = self._run_conns.pop(replay_id, None)
        if conn is None:
            return
        # Closing the session drops the lock whatever state it is in.
        with contextlib.suppress(*_UNAVAILABLE):
            await conn.close(timeout=5)
        if not conn.is_closed():
            conn.terminate()

    async def _lock_held(self, replay_id: str) -> bool:
        key = self._run_key(replay_id)
        async with self._session(write=False) as session:
            rows = await session.fetch("SELECT pg_try_advisory_lock($1) AS got", [key])
            if not rows[0]["got"]:
                return True
            await session.execute("SELECT pg_advisory_unlock($1)", [key])
            return False

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except (ValueError, asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            raise  # a bug of ours, not an outage
        except _UNAVAILABLE as exc:
            self._unavailable(action, exc)

    def _unavailable(self, action: str, exc: BaseException) -> NoReturn:
        raise StoreUnavailable(
            f"the PostgreSQL dead-letter store at {self.where} could not {action}: "
            f"{type(exc).__name__}: {exc}",
            where=self.where,
        ) from exc

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where} prefix={self.table_prefix} {self._lifecycle.value}>"
