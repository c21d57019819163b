"""Ledger throughput: the work-hours flow's per-event ledger cycle on every backend, in one run.

One cycle is what the flow does around a Severa ``Add``, minus Severa::

    async with ledger.lock(x):
        await ledger.get(x)
        await ledger.mark_pending(x, 1, fingerprint)
        await ledger.mark_applied(x, 1, guid)

Each cycle uses a fresh external id. Cycles run sequentially (concurrency 1: latency bound) and
from N concurrent tasks (as with a consumer prefetch of N). The in-memory fake is the baseline:
it measures the asyncio/locking overhead alone, so ``x memory`` is the cost of real storage.

    python bench/ledger.py [--cycles 2000] [--concurrency 1 32] [--postgres-dsn URL] [--core]

``--core`` adds the same cycle with its statements built as SQLAlchemy Core and executed on an
``AsyncEngine`` (rows ``core sqlite``, FULL sync, and ``core postgres``): the price of running the
hot path through SQLAlchemy instead of the bare drivers.

SQLite is measured with synchronous=FULL (the default: fsync per commit) and NORMAL, so the price
of the durability choice is visible. PostgreSQL tables get a unique prefix and are dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from connector.state.ledger import BaseLedger
from connector.state.locks import KeyedLock
from connector.state.memory import InMemoryLedger
from connector.state.migrations import migrate, version_table
from connector.state.postgres import PostgresLedger, advisory_key
from connector.state.schema import UtcTimestamp, state_functions, state_metadata
from connector.state.sqlite import SqliteLedger

FINGERPRINT = '{"user":"U1","case":"C1","date":"2024-05-02","quantity":"1.50","description":"bench"}'


@dataclass
class Result:
    backend: str
    concurrency: int
    cycles: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _cycle(ledger: BaseLedger, external_id: str, latencies: list[float]) -> None:
    started = time.perf_counter()
    async with ledger.lock(external_id):
        await ledger.get(external_id)
        await ledger.mark_pending(external_id, 1, FINGERPRINT)
        await ledger.mark_applied(external_id, 1, f"guid-{external_id}")
    latencies.append(time.perf_counter() - started)


class CoreCycle:
    """The same cycle with every statement built from :mod:`connector.state.schema` as SQLAlchemy
    Core and run on an ``AsyncEngine`` (aiosqlite / asyncpg), to price Core against the backends'
    parameterised statements on the bare drivers. Locks as the backends do: a process-local lock
    per id, and on PostgreSQL a session advisory lock held on one connection for the block. On
    SQLite every statement runs on one ``shared`` connection, as the SQLite ledger's do (checking
    a connection out of a pool per statement measured about three times slower still).
    """

    def __init__(self, engine: AsyncEngine, table_prefix: str, shared: AsyncConnection | None = None) -> None:
        self._engine = engine
        self._shared = shared
        self._shared_mutex = asyncio.Lock()
        self._postgres = engine.dialect.name == "postgresql"
        self._prefix = table_prefix
        self._table = state_metadata(table_prefix).tables[f"{table_prefix}ledger"]
        self._local = KeyedLock()
        self._held: ContextVar[AsyncConnection | None] = ContextVar("held", default=None)
        insert = pg_insert if self._postgres else sqlite_insert
        t = self._table
        greatest = sa.func.greatest if self._postgres else sa.func.max
        pending = insert(t).values(
            external_id=sa.bindparam("x"),
            version=0,
            state="pending",
            pending_version=sa.bindparam("v"),
            fingerprint=sa.bindparam("f"),
            updated_at=sa.bindparam("now", type_=UtcTimestamp()),
        )
        self._pending = pending.on_conflict_do_update(
            index_elements=[t.c.external_id],
            set_={
                "state": "pending",
                "pending_version": pending.excluded.pending_version,
                "fingerprint": pending.excluded.fingerprint,
                "updated_at": pending.excluded.updated_at,
            },
        )
        applied = insert(t).values(
            external_id=sa.bindparam("x"),
            version=sa.bindparam("v"),
            state="applied",
            severa_guid=sa.bindparam("g"),
            updated_at=sa.bindparam("now", type_=UtcTimestamp()),
            content_hash=sa.bindparam("h"),
        )
        self._applied = applied.on_conflict_do_update(
            index_elements=[t.c.external_id],
            set_={
                "version": greatest(t.c.version, applied.excluded.version),
                "state": "applied",
                "severa_guid": applied.excluded.severa_guid,
                "content_hash": applied.excluded.content_hash,
                "pending_version": None,
                "fingerprint": None,
                "updated_at": applied.excluded.updated_at,
            },
        )
        self._get = sa.select(t).where(t.c.external_id == sa.bindparam("x"))

    @asynccontextmanager
    async def lock(self, external_id: str) -> AsyncIterator[None]:
        await self._local.acquire(external_id)
        try:
            if not self._postgres:
                yield
                return
            key = advisory_key(self._prefix, external_id)
            async with self._engine.connect() as conn:
                await conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
                token = self._held.set(conn)
                try:
                    yield
                finally:
                    self._held.reset(token)
                    await conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
        finally:
            self._local.release(external_id)

    async def _execute(self, statement: sa.Executable, params: dict[str, object]) -> sa.CursorResult[Any]:
        held = self._held.get()
        if held is not None:
            return await held.execute(statement, params)
        if self._shared is not None:
            async with self._shared_mutex:  # an AsyncConnection serves one statement at a time
                return await self._shared.execute(statement, params)
        async with self._engine.connect() as conn:
            return await conn.execute(statement, params)

    async def get(self, external_id: str) -> object:
        return (await self._execute(self._get, {"x": external_id})).first()

    async def mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        now = dt.datetime.now(dt.UTC)
        await self._execute(self._pending, {"x": external_id, "v": version, "f": fingerprint, "now": now})

    async def mark_applied(self, external_id: str, version: int, severa_guid: str) -> None:
        now = dt.datetime.now(dt.UTC)
        params = {"x": external_id, "v": version, "g": severa_guid, "h": None, "now": now}
        await self._execute(self._applied, params)


async def _core(
    name: str, url: str, prefix: str, pool_size: int, cycles: int, concurrency: list[int]
) -> list[Result]:
    """Run :class:`CoreCycle` on tables made by the migrations, as the ledger would find them."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=StaticPool)
        sqlite_pragmas(engine)
    else:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", pool_size=pool_size, max_overflow=0)
    try:
        await migrate(engine, table_prefix=prefix)
        async with contextlib.AsyncExitStack() as stack:
            shared = await stack.enter_async_context(engine.connect()) if url.startswith("sqlite") else None
            core = CoreCycle(engine, prefix, shared)
            return [await _run(core, name, cycles, n) for n in concurrency]  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def sqlite_pragmas(engine: AsyncEngine, synchronous: str = "FULL") -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")  # one of two constants of ours
        cursor.close()


async def _run(ledger: BaseLedger, name: str, cycles: int, concurrency: int) -> Result:
    run = uuid.uuid4().hex[:8]
    for i in range(min(50, cycles)):  # warm pools, statement caches, page cache
        await _cycle(ledger, f"warm:{run}:{i}", [])
    latencies: list[float] = []
    queue = iter(range(cycles))

    async def worker() -> None:
        for i in queue:  # shared iterator: tasks pull the next id until none are left
            await _cycle(ledger, f"bench:{run}:{i}", latencies)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, concurrency, cycles, time.perf_counter() - started, latencies)


async def _drop(dsn: str, prefix: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        names = [table.name for table in state_metadata(prefix).sorted_tables] + [version_table(prefix)]
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(names)}")
        for function in state_functions(prefix):
            await conn.execute(f"DROP FUNCTION IF EXISTS {function}")
    finally:
        await conn.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument(
        "--core",
        action="store_true",
        help="also run the cycle through SQLAlchemy Core on an AsyncEngine (rows 'core ...')",
    )
    args = parser.parse_args(argv)

    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        backends: list[tuple[str, Callable[[], BaseLedger]]] = [
            ("memory", InMemoryLedger),
            ("sqlite FULL", lambda: SqliteLedger(Path(tmp) / "full.db", synchronous="FULL")),
            ("sqlite NORMAL", lambda: SqliteLedger(Path(tmp) / "normal.db", synchronous="NORMAL")),
            (
                "postgres",
                lambda: PostgresLedger(
                    args.postgres_dsn, table_prefix=prefix, min_size=args.pool_size, pool_size=args.pool_size
                ),
            ),
        ]
        results: list[Result] = []
        try:
            for name, make in backends:
                try:
                    async with make() as ledger:
                        for concurrency in args.concurrency:
                            results.append(await _run(ledger, name, args.cycles, concurrency))
                except Exception as exc:
                    print(f"{name}: not measured ({type(exc).__name__}: {exc})", file=sys.stderr)
            if args.core:
                core_runs = [
                    ("core sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'core.db'}", ""),
                    (
                        "core postgres",
                        args.postgres_dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
                        f"{prefix}core_",
                    ),
                ]
                for name, url, table_prefix in core_runs:
                    try:
                        results += await _core(
                            name, url, table_prefix, args.pool_size, args.cycles, args.concurrency
                        )
                    except Exception as exc:
                        print(f"{name}: not measured ({type(exc).__name__}: {exc})", file=sys.stderr)
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await _drop(args.postgres_dsn, prefix)
                await _drop(args.postgres_dsn, f"{prefix}core_")

    _report(results, args.cycles)
    return 0


def _report(results: list[Result], cycles: int) -> None:
    baseline = {r.concurrency: r.rate for r in results if r.backend == "memory"}
    sqlite_full = {r.concurrency: r.rate for r in results if r.backend == "sqlite FULL"}
    print(f"\nledger cycle = lock + get + mark_pending + mark_applied; {cycles} cycles per row\n")
    header = (
        f"{'backend':<14} {'tasks':>5} {'cycles/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'x memory':>10} {'x sqlite FULL':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        vs_memory = r.rate / baseline[r.concurrency] if r.concurrency in baseline else float("nan")
        vs_sqlite = r.rate / sqlite_full[r.concurrency] if r.concurrency in sqlite_full else float("nan")
        print(
            f"{r.backend:<14} {r.concurrency:>5} {r.rate:>10,.0f} {r.percentile(0.5) * 1000:>8.2f} "
            f"{r.percentile(0.99) * 1000:>8.2f} {vs_memory:>10.4f} {vs_sqlite:>14.2f}"
        )
    mean_ms = {r.backend: statistics.fmean(r.latencies) * 1000 for r in results if r.concurrency == 1}
    if mean_ms:
        print(
            "\nmean latency of one sequential cycle: "
            + ", ".join(f"{k} {v:.3f} ms" for k, v in mean_ms.items())
        )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
