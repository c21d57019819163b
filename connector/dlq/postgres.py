"""PostgreSQL dead-letter store: one store for every operator and pod.

Tables are prefixed (default ``severa_connector_``) and the store's ``schema_version`` row lives in
the ledger's ``<prefix>schema_version`` table under component ``dlq``, so the store can share the
ledger's database (the default when ``state_url`` is PostgreSQL) without touching its tables; its
Alembic revision has a version table of its own, ``<prefix>dlq_alembic_version`` (see
:mod:`connector.state.migrations`).

A replay run's liveness is a *session* advisory lock, ``pg_advisory_lock(k)`` with ``k`` =
:func:`connector.state.postgres.advisory_key` of the run id, held on a connection set aside for the
run. If the operator's process dies, its TCP connection closes, the server ends the session and the
lock with it -- so the next replay sees at once that the run is gone and resumes its rows. A
network partition longer than TCP keep-alive does the same; the worst case is then that both runs
send a row, which the flows' idempotency absorbs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connector.dlq.sql import UNAVAILABLE, Driver, DriverStatement, SqlStore, one_line
from connector.dlq.store import StoreMissing, StoreUnavailable
from connector.logging import get_logger, register_secret
from connector.state.dlq_schema import dumps
from connector.state.postgres import DEFAULT_TABLE_PREFIX, advisory_key, describe_dsn

__all__ = ["DEFAULT_TABLE_PREFIX", "PostgresStore"]

log = get_logger(__name__)

_RUN_LOCK: Final = b"sc-dlq-replay"


class PostgresStore(SqlStore):
    """The store in PostgreSQL, on a small pool of the engine's connections."""

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
        super().__init__(table_prefix=table_prefix, create=create)
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            register_secret(password)
            register_secret(unquote(password))
        self._dsn = dsn
        self.where = describe_dsn(dsn)
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._application_name = application_name
        self._run_conns: dict[str, Any] = {}

    def _describe(self) -> str:
        return f"{self.table_prefix}* in {self.where}"

    # -- lifecycle ---------------------------------------------------------------------------------

    def _make_engine(self) -> AsyncEngine:
        dsn = self._dsn

        # The DSN verbatim, as the ledger's pool connects: its query parameters stay asyncpg's
        # connection options and server settings.
        async def connect() -> Any:
            return await asyncpg.connect(
                dsn,
                command_timeout=self._command_timeout,
                timeout=self._command_timeout,
                server_settings={"application_name": self._application_name},
            )

        return create_async_engine(
            "postgresql+asyncpg://",
            async_creator=connect,
            pool_size=self._max_size,
            max_overflow=0,
            pool_timeout=self._command_timeout,
            # No ping per checkout (a round trip per ingest): a connection the server dropped fails
            # its statement as StoreUnavailable, SQLAlchemy discards the pool's connections, and the
            # caller's retry (the ingester's backoff) connects afresh.
            json_serializer=dumps,
        )

    async def _open(self) -> None:
        engine = self._make_engine()
        try:
            with self._translating("connect"):
                if not self._create and not await self._recorded(engine):
                    raise StoreMissing(f"there are no dead-letter tables {self._describe()}")
                await self._migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        log.debug("dlq.store_opened", backend=self.backend, where=self.where, prefix=self.table_prefix)

    @asynccontextmanager
    async def _driver_transaction(self, action: str) -> AsyncIterator[Driver]:
        self._check_open()
        engine = self._engine
        if engine is None:
            raise self._closed_error()
        with self._translating(action):
            async with engine.connect() as conn:
                raw = await conn.get_raw_connection()
                db = raw.driver_connection
                assert db is not None
                async with db.transaction():
                    yield _AsyncpgDriver(db)

    async def _close(self) -> None:
        for replay_id in list(self._run_conns):
            await self._release_run_lock(replay_id)
        await self._close_engine()

    # -- run locks ---------------------------------------------------------------------------------

    def _run_key(self, replay_id: str) -> int:
        return advisory_key(self.table_prefix, replay_id, purpose=_RUN_LOCK)

    @asynccontextmanager
    async def run_lock(self, replay_id: str) -> AsyncIterator[None]:
        # A bare driver connection, not one of the engine's: the lock is the session's, so the
        # session must live exactly as long as the run -- a pool would keep it, or hand it on.
        # The one statement is constant, with the key bound.
        with self._translating("take a replay run lock"):
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
        with contextlib.suppress(*UNAVAILABLE):
            await conn.close(timeout=5)
        if not conn.is_closed():
            conn.terminate()

    async def _lock_held(self, replay_id: str) -> bool:
        key = self._run_key(replay_id)
        async with self._session("check a replay run lock", write=False) as conn:
            if not (await conn.execute(sa.select(sa.func.pg_try_advisory_lock(key)))).scalar_one():
                return True
            await conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            return False

    # -- errors ------------------------------------------------------------------------------------

    def _unavailable(self, action: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"the PostgreSQL dead-letter store at {self.where} could not {action}: {one_line(exc)}",
            where=self.where,
        )

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where} prefix={self.table_prefix} {self._lifecycle.value}>"


class _AsyncpgDriver:
    def __init__(self, db: Any) -> None:
        self._db = db

    async def scalars(self, statement: DriverStatement, params: Sequence[Any]) -> list[Any]:
        return [row[0] for row in await self._db.fetch(statement.text, *params)]

    async def executemany(self, statement: DriverStatement, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(statement.text, rows)
