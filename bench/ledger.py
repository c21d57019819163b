"""Ledger throughput: the work-hours flow's per-event ledger cycle on every backend, in one run.

One cycle is what the flow does around a Severa ``Add``, minus Severa::

    async with ledger.lock(x):
        await ledger.get(x)
        await ledger.mark_pending(x, 1, fingerprint)
        await ledger.mark_applied(x, 1, guid)

Each cycle uses a fresh external id. Cycles run sequentially (concurrency 1: latency bound) and
from N concurrent tasks (as with a consumer prefetch of N). The in-memory fake is the baseline:
it measures the asyncio/locking overhead alone, so ``x memory`` is the cost of real storage.

    python bench/ledger.py [--cycles 2000] [--concurrency 1 32] [--postgres-dsn URL]

SQLite is measured with synchronous=FULL (the default: fsync per commit) and NORMAL, so the price
of the durability choice is visible. PostgreSQL tables get a unique prefix and are dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from connector.state.ledger import BaseLedger
from connector.state.memory import InMemoryLedger
from connector.state.postgres import PostgresLedger
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
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}ledger, {prefix}schema_version")
    finally:
        await conn.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--postgres-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pool-size", type=int, default=20)
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
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await _drop(args.postgres_dsn, prefix)

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
