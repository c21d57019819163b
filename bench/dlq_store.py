"""Dead-letter store ingest: dead letters per second into a fresh store, on SQLite and PostgreSQL.

Ingest is what the store does most: ``dlq ingest`` commits batches of up to 500 dead letters, the
pods' continuous ingester commits whatever arrived together (often one). This measures
:meth:`DeadLetterStore.add` alone -- no broker, no envelope parsing -- with records as the
ingesters build them, so the figure is the price of the store's statements and transactions::

    python bench/dlq_store.py [--letters 5000] [--batch 500 50 1] [--repeat 3] [--postgres-dsn URL] [--core]

Each (backend, batch) pair runs ``--repeat`` times on a fresh store (a new SQLite file; a new
table prefix on PostgreSQL, dropped afterwards); medians are reported: dead letters per second,
and this process's CPU time per dead letter (the connector's share of the work, the driver's
threads included; steadier than wall time on a shared machine). The SQLite store runs
with synchronous=FULL, as in production: a batch of one is one fsync per dead letter.

``--core`` adds rows ``core sqlite`` / ``core postgres``: the same transaction with its statements
executed through the SQLAlchemy engine (one ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` and
the history rows) instead of on the driver connection, as :meth:`SqlStore.add` runs them -- the
measurement behind that choice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.dlq.records import DeadLetterRecord, StoreEvent
from connector.dlq.selection import Filter
from connector.dlq.sql import SqlStore
from connector.dlq.store import open_store
from connector.logging import configure_logging
from connector.state.dlq_schema import dlq_metadata
from connector.state.migrations import DEAD_LETTERS, version_table
from tests.dlq_factories import record


async def core_add(store: SqlStore, records: list[DeadLetterRecord]) -> list[str]:
    """What :meth:`SqlStore.add` does, with its statements run through the engine."""
    letters = store._letters
    insert = store._insert(letters).on_conflict_do_nothing(index_elements=[letters.c.id])
    async with store._session("bench", write=True) as conn:
        result = await conn.execute(insert.returning(letters.c.id), [store._values(r) for r in records])
        inserted = set(result.scalars())
        new = [r for r in records if r.id in inserted]
        await store._add_events(conn, [StoreEvent(r.id, r.ingested_at, "ingested") for r in new])
    return [r.id for r in new]


async def one_run(
    url: str, prefix: str | None, letters: int, batch: int, *, core: bool
) -> tuple[float, float]:
    """Dead letters per second, and this process's CPU microseconds per dead letter."""
    records = [record() for _ in range(letters)]
    async with open_store(url, table_prefix=prefix) as store:
        assert isinstance(store, SqlStore)
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, letters, batch):
            chunk = records[start : start + batch]
            await (core_add(store, chunk) if core else store.add(chunk))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert await store.count(Filter()) == letters
    return letters / elapsed, cpu * 1e6 / letters


async def drop(dsn: str, prefix: str) -> None:
    tables = [t.name for t in dlq_metadata(prefix).sorted_tables] + [version_table(prefix, DEAD_LETTERS)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS " + ", ".join(tables))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--letters", type=int, default=5000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 50, 1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--backend", choices=("sqlite", "postgres"), nargs="+", default=["sqlite", "postgres"]
    )
    parser.add_argument("--core", action="store_true", help="also run ingest through the engine (Core)")
    args = parser.parse_args()
    configure_logging("WARNING")
    print(f"{'store':<14} {'batch':>6} {'letters/s':>10} {'CPU µs/letter':>14}  (medians; runs)")
    variants = (False, True) if args.core else (False,)
    for backend in args.backend:
        for batch in args.batch:
            runs: dict[bool, list[tuple[float, float]]] = {core: [] for core in variants}
            # Variants take turns within each repetition, so a neighbour's load hits them alike.
            for _ in range(args.repeat):
                for core in variants:
                    runs[core].append(await measure(args, backend, batch, core=core))
            for core in variants:
                name = f"core {backend}" if core else backend
                rate = statistics.median(r for r, _ in runs[core])
                cpu = statistics.median(c for _, c in runs[core])
                shown = ", ".join(f"{r:,.0f}" for r, _ in runs[core])
                print(f"{name:<14} {batch:>6} {rate:>10,.0f} {cpu:>14,.0f}  ({shown})", flush=True)


async def measure(args: argparse.Namespace, backend: str, batch: int, *, core: bool) -> tuple[float, float]:
    """One run on a fresh store: a new SQLite file, or a new table prefix dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            return await one_run(f"sqlite:///{tmp}/dlq.db", None, args.letters, batch, core=core)
    prefix = f"b{uuid.uuid4().hex[:10]}_"
    try:
        return await one_run(args.postgres_dsn, prefix, args.letters, batch, core=core)
    finally:
        await drop(args.postgres_dsn, prefix)


if __name__ == "__main__":
    asyncio.run(main())
