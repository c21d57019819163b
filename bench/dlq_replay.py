"""Dead-letter replay: msgs/s of ``severa-connector dlq replay`` vs a raw confirmed publish, in one run.

    python bench/dlq_replay.py [--messages 20000] [--batch 500] [--store sqlite|postgres]

Every party is its own process, each on a RabbitMQ vhost of its own (made for the run, deleted
after it) with the production topology:

* **baseline** -- ``bench/contenders/confirmed_publish.py``: the same N bodies with the same
  ``x-replay-*`` headers published to ``q.workhours`` through the default exchange, pipelined in
  windows of the replay's batch size, every confirm awaited -- the most a replay could do;
* **replay** -- N dead letters (envelopes as the connector writes them) parked in
  ``q.workhours.dlq``, taken into a fresh store by ``severa-connector dlq ingest`` (its own process,
  timed whole), then replayed by ``severa-connector dlq replay --all`` (plan, claim, publish with
  confirms, settle each row after its confirm, audit).

Both publishers are timed the same way, from outside: the driver reads the depth of ``q.workhours``
(a passive declare every few milliseconds; nobody consumes it) and takes the span from the first
message seen to the N-th -- so interpreter start-up, opening the store and planning are left out of
the rate and reported apart as the replay command's whole wall time. The SQLite store is a file in
a temporary directory; the PostgreSQL one a fresh schema, dropped after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import declare_topology, delete_topology
from bench._procs import ROOT, Child, child, fresh_schema, fresh_vhosts, sample
from connector.config import DeadLetterSettings
from connector.topology import Names
from schemas.dead_letter import DeadLetterHeaders
from tests.factories import event_dict

NAMES: Final = Names()
#: How often the driver reads the work queue's depth; bounds the error of each timing.
DEPTH_POLL_SECONDS: Final = 0.01
PYTHON: Final = (sys.executable,)


def envelope() -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return DeadLetterHeaders(
        dead_letter_id=uuid.uuid4().hex,
        category="permanent",
        error_class="UnknownReference",
        reason="unknown_work_type",
        message="no work type with code 'NOPE'",
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        original_exchange=NAMES.workhours_exchange,
        original_routing_key="workhour.created",
        original_queue=NAMES.workhours_queue,
        flow="work_hours",
        connector_version="bench",
        pod="bench",
    ).to_amqp()


async def depth(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()


async def watch_arrivals(
    connection: aio_pika.abc.AbstractConnection, process: Child, target: int, timeout: float
) -> tuple[float, float]:
    """(first seen, N-th seen) on the monotonic clock, reading ``q.workhours``'s depth."""
    channel = await connection.channel()
    try:
        first: float | None = None
        exited_seen = False
        deadline = time.monotonic() + timeout
        while True:
            declared = await channel.declare_queue(NAMES.workhours_queue, passive=True)
            count, now = declared.declaration_result.message_count or 0, time.monotonic()
            if count and first is None:
                first = now
            if count >= target:
                assert first is not None
                return first, now
            if exited_seen:  # it had ended before the previous reading: nothing more will come
                raise process.failure(f"ended with {count} of {target} messages in {NAMES.workhours_queue}")
            exited_seen = not process.running
            if now > deadline:
                raise process.failure(f"{count} of {target} messages after {timeout:g} s")
            await asyncio.sleep(DEPTH_POLL_SECONDS)  # the observation period of a count we cannot await
    finally:
        await channel.close()


@dataclass(frozen=True, slots=True)
class Timing:
    seconds: float  # first → N-th message in q.workhours
    wall_seconds: float  # process start → exit
    cpu_seconds: float  # the publishing process, whole life

    def rate(self, n: int) -> float:
        return n / self.seconds


async def finish(process: Child) -> float:
    """Wait for a one-shot command to end by itself; its CPU seconds (read before it is reaped)."""
    cpu = 0.0
    while process.running:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            cpu = sample(process.pid).cpu_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.process.wait()), 0.1)
    code = await process.stop()
    if code != 0:
        raise process.failure(f"exited with {code}")
    return cpu


async def baseline(url: str, options: Options) -> Timing:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, NAMES)
        args = [str(ROOT / "bench/contenders/confirmed_publish.py"), "--messages", str(options.messages)]
        args += ["--window", str(options.batch), "--queue", NAMES.workhours_queue]
        started = time.monotonic()
        async with child("confirmed publish", args, {"BENCH_AMQP_URL": url}, command=PYTHON) as process:
            first, last = await watch_arrivals(connection, process, options.messages, options.timeout)
            cpu = await finish(process)
        wall = time.monotonic() - started
        await delete_topology(channel, NAMES)
        return Timing(last - first, wall, cpu)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def store_url(options: Options, tmp: Path) -> AsyncIterator[str]:
    if options.store == "postgres":
        async with fresh_schema(options.postgres_dsn, f"bench_{uuid.uuid4().hex[:10]}") as dsn:
            yield dsn
    else:
        yield f"sqlite:///{tmp / 'dlq.db'}"


async def park(connection: aio_pika.abc.AbstractConnection, n: int, window: int) -> None:
    """N dead letters in the DLQ, as the connector's dead-lettering leaves them."""
    channel = await connection.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(NAMES.dead_letter_exchange)
    for start in range(0, n, window):
        batch = [
            aio_pika.Message(
                json.dumps(event_dict(description=f"bench #{i}")).encode(),
                message_id=str(uuid.uuid4()),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=envelope(),
            )
            for i in range(start, min(n, start + window))
        ]
        await asyncio.gather(*(dlx.publish(m, NAMES.workhours_queue, timeout=30) for m in batch))
    await channel.close()


async def through_replay(url: str, options: Options) -> tuple[float, Timing, dict[str, Any]]:
    """(ingest wall seconds, replay timing, the replay's JSON report)."""
    n = options.messages
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, NAMES)
        await park(connection, n, options.batch)
        with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
            async with store_url(options, Path(tmp)) as store:
                env = {
                    "SEVERA_CONNECTOR_RABBITMQ__URL": url,
                    "SEVERA_CONNECTOR_DLQ__STORE_URL": store,
                    "SEVERA_CONNECTOR_DLQ__AUDIT_LOG": str(Path(tmp) / "audit.jsonl"),
                    "SEVERA_CONNECTOR_DLQ__REPLAY_BATCH": str(options.batch),
                }
                started = time.monotonic()
                async with child("dlq ingest", ["dlq", "ingest"], env) as ingest:
                    await finish(ingest)
                ingest_seconds = time.monotonic() - started
                if left := await depth(connection, NAMES.workhours_dlq):
                    raise RuntimeError(f"dlq ingest left {left} dead letters in {NAMES.workhours_dlq}")
                output = Path(tmp) / "replay.out"
                args = ["dlq", "replay", "--all", "--reason", "bench", "--operator", "bench", "--json"]
                started = time.monotonic()
                async with child("dlq replay", args, env, log_file=output) as replay:
                    first, last = await watch_arrivals(connection, replay, n, options.timeout)
                    cpu = await finish(replay)
                wall = time.monotonic() - started
                report = json_report(output.read_text())
        if report.get("replayed") != n:
            raise RuntimeError(f"the replay reports {report.get('replayed')} of {n} replayed")
        await delete_topology(channel, NAMES)
        return ingest_seconds, Timing(last - first, wall, cpu), report
    finally:
        await connection.close()


def json_report(output: str) -> dict[str, Any]:
    """The ``--json`` document among the command's output (its notes go to stderr, same file)."""
    start = output.find("{")
    if start < 0:
        raise RuntimeError("dlq replay printed no JSON report:\n" + output[-2000:])
    document, _ = json.JSONDecoder().raw_decode(output[start:])
    if not isinstance(document, dict):
        raise RuntimeError("dlq replay's JSON report is not an object")
    return document


@dataclass(frozen=True, slots=True)
class Options:
    messages: int
    batch: int
    store: str
    amqp_url: str
    postgres_dsn: str
    timeout: float


async def main(options: Options) -> int:
    run_id = uuid.uuid4().hex[:6]
    vhosts = [f"bench-replay-{run_id}-baseline", f"bench-replay-{run_id}-replay"]
    load = os.getloadavg()
    async with fresh_vhosts(vhosts, options.amqp_url) as urls:
        base = await baseline(urls[vhosts[0]], options)
        ingest_seconds, ours, report = await through_replay(urls[vhosts[1]], options)
    n = options.messages
    print(
        f"Replay: {n} dead letters, batch/window {options.batch}, store {options.store}; every party its "
        f"own process, each on a fresh vhost; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{'contender':<44} {'msgs/s':>8} {'ratio':>6} {'wall s':>7} {'CPU ms/msg':>10}"
        "  (CPU and wall: the whole process)"
    )
    print(
        f"{'baseline (raw confirmed publish)':<44} {base.rate(n):>8.0f} {1:>6.3f} {base.wall_seconds:>7.1f}"
        f" {base.cpu_seconds / n * 1000:>10.3f}"
    )
    print(
        f"{'replay (claim → publish+confirm → settle)':<44} {ours.rate(n):>8.0f}"
        f" {ours.rate(n) / base.rate(n):>6.3f} {ours.wall_seconds:>7.1f} {ours.cpu_seconds / n * 1000:>10.3f}"
    )
    print(
        f"{'ingest (DLQ → store, commit before ack)':<44} {n / ingest_seconds:>8.0f} {'':>6}"
        f" {ingest_seconds:>7.1f}"
    )
    ratio = ours.rate(n) / base.rate(n)
    print(f"target replay ≥ 0.8x raw confirmed publish: {ratio:.3f}x {'met' if ratio >= 0.8 else 'NOT met'}")
    print("rates: first to N-th message seen in q.workhours; wall: the whole command, start-up included")
    print(
        f"replay status {report.get('status')}, {report.get('replayed')} replayed,"
        f" failed: {report.get('failed') or 'none'}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--batch",
        type=int,
        default=DeadLetterSettings.model_fields["replay_batch"].default,
        help="replay batch = baseline publish window (default: the production default)",
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    options = Options(args.messages, args.batch, args.store, args.url, args.postgres_dsn, args.timeout)
    try:
        sys.exit(asyncio.run(main(options)))
    except Exception as exc:  # one line a human can act on; a contender's output is in the message
        reason = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        print(f"replay bench failed: {reason}", file=sys.stderr)
        sys.exit(1)
