"""Profile the work-hours path as deployed: the fake Severa and the connector each in a process.

A quick loop for finding where the connector's time goes, not the full comparison: a backlog of N
distinct events is published to a fresh prefixed topology, ``severa-connector run`` is started on
it (production defaults, JSON logs at INFO written to a file, SQLite or PostgreSQL ledger) and
the driver reads every ``workhour.synced``. Reported: events/s and the connector process's CPU
milliseconds per event between the first and the last result (start-up excluded), and Severa calls
per event. ``--py-spy FILE`` records a flame graph of the connector meanwhile; with
``--py-spy-gil`` only the thread holding the interpreter is sampled, which is the profile to read
for CPU (without it, a thread blocked in a queue, a lock or an fsync counts as busy).

    python bench/profile_workhours.py --events 3000 --latency-ms 0 50 --state sqlite postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.topology import Names, build_topology
from tests.factories import SEVERA_SEED, event_dict

KEY = "bench-key-000000"
ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_port(port: int, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


async def run_one(args: argparse.Namespace, latency_ms: float, state: str) -> dict[str, Any]:
    names = Names(prefix=f"prof-{uuid.uuid4().hex[:6]}.")
    schema = f"prof_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="prof-"))
    seed = tmp / "seed.json"
    seed.write_text(json.dumps(SEVERA_SEED))
    port = free_port()
    fake = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [
            sys.executable,
            "-m",
            "adapters.severa.fake",
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--seed",
            str(seed),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connector: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    connection = await aio_pika.connect(args.url)
    topology = build_topology(names)
    try:
        await wait_port(port)
        admin = f"http://127.0.0.1:{port}/admin"
        async with aiohttp.ClientSession() as http:
            if latency_ms:
                rule = {"kind": "latency", "seconds": latency_ms / 1000}
                async with http.post(f"{admin}/faults", json=rule) as response:
                    response.raise_for_status()
        channel = await connection.channel(publisher_confirms=True)
        for exchange_spec in topology.exchanges:
            await channel.declare_exchange(
                exchange_spec.name, aio_pika.ExchangeType(exchange_spec.type), durable=True
            )
        for spec in topology.queues:
            queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            for exchange_name, key in spec.bindings:
                await queue.bind(exchange_name, key)
        results = await channel.declare_queue(exclusive=True)
        await results.bind(names.results_exchange, "#")
        exchange = await channel.get_exchange(names.workhours_exchange)
        for i in range(args.events):
            body = json.dumps(event_dict(description=f"profile #{i}")).encode()
            await exchange.publish(aio_pika.Message(body, delivery_mode=2), "workhour.created", timeout=10)

        marks: list[tuple[float, float]] = []
        outcomes: dict[str, int] = {}
        done = asyncio.Event()
        count = 0

        async def on_result(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            outcome = json.loads(message.body).get("outcome", "failed")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if count in (1, args.events):
                assert connector is not None
                marks.append((time.perf_counter(), cpu_seconds(connector.pid)))
            if count == args.events:
                done.set()

        await results.consume(on_result)
        if state == "postgres":
            state_url = await create_pg_schema(schema)
        else:
            state_url = f"sqlite:///{tmp / 'ledger.db'}"
        env = {
            **os.environ,
            "SEVERA_CONNECTOR_RABBITMQ__URL": args.url,
            "SEVERA_CONNECTOR_RABBITMQ__PREFIX": names.prefix,
            "SEVERA_CONNECTOR_SEVERA__URL": f"http://127.0.0.1:{port}/webservice/S3/API.svc",
            "SEVERA_CONNECTOR_SEVERA__API_KEY": KEY,
            "SEVERA_CONNECTOR_STATE_URL": state_url,
            "SEVERA_CONNECTOR_HTTP__PORT": str(free_port()),
            "SEVERA_CONNECTOR_LOG_FORMAT": "json",
            "SEVERA_CONNECTOR_LOG_LEVEL": "INFO",
            **dict(kv.split("=", 1) for kv in args.env),
        }
        log_file = (tmp / "connector.log").open("wb")
        connector = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
            [str(ROOT / ".venv/bin/severa-connector"), "run"],
            cwd=tmp,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
        if args.py_spy:
            out = f"{args.py_spy}-{state}-{latency_ms:g}ms.{args.py_spy_format}"
            spy = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
                [
                    shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy"),
                    "record",
                    "-o",
                    out,
                    "-r",
                    "200",
                    "--pid",
                    str(connector.pid),
                    "--nonblocking",
                    *(["--gil"] if args.py_spy_gil else []),
                    "-t",
                    "-f",
                    "raw" if out.endswith(".txt") else "flamegraph",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if args.scrape:
            await asyncio.sleep(args.scrape)
            metrics_url = f"http://127.0.0.1:{env['SEVERA_CONNECTOR_HTTP__PORT']}/metrics"
            async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
                text = await response.text()
            wanted = (
                "connector_messages_in_flight",
                "severa_call_duration_seconds_sum",
                "severa_call_duration_seconds_count",
                "connector_processing_seconds_sum",
                "connector_processing_seconds_count",
            )
            print("\n".join(line for line in text.splitlines() if line.startswith(wanted)))
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
        except TimeoutError:
            tail = (tmp / "connector.log").read_text().splitlines()[-15:]
            raise SystemExit(
                f"{count} of {args.events} results; connector log ends:\n" + "\n".join(tail)
            ) from None
        (t0, c0), (t1, c1) = marks
        async with aiohttp.ClientSession() as http, http.get(f"{admin}/state") as response:
            fake_state = await response.json()
        calls = sum(fake_state.get("calls", {}).values())
        n = args.events - 1
        levels: dict[str, int] = {}
        for line in (tmp / "connector.log").read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("level") in ("warning", "error", "critical"):
                    key = f"{record['level']}:{record.get('event')}"
                    levels[key] = levels.get(key, 0) + 1
        if levels:
            print("connector log:", levels)
        return {
            "state": state,
            "latency_ms": latency_ms,
            "events_per_s": n / (t1 - t0),
            "cpu_ms_per_event": (c1 - c0) * 1000 / n,
            "calls_per_event": calls / args.events,
            "outcomes": outcomes,
        }
    finally:
        for proc in (spy, connector, fake):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is spy else signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        cleanup = await connection.channel()
        everything = (*topology.queues, *build_topology(names, flows=()).queues)
        for spec in everything:
            with contextlib.suppress(Exception):
                await cleanup.queue_delete(spec.name)
        for exchange_spec in topology.exchanges:
            with contextlib.suppress(Exception):
                await cleanup.exchange_delete(exchange_spec.name)
        await connection.close()
        if state == "postgres":
            await drop_pg_schema(schema)
        shutil.rmtree(tmp, ignore_errors=True)


async def create_pg_schema(schema: str) -> str:
    """A schema of the run's own (the database is shared): the ledger is created in it."""
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{PG_URL}?search_path={schema}"


async def drop_pg_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0])
    parser.add_argument("--state", choices=["sqlite", "postgres"], nargs="+", default=["sqlite"])
    parser.add_argument("--py-spy", default=None, help="record a flame graph to <prefix>-<state>-<ms>.svg")
    parser.add_argument("--py-spy-format", choices=["svg", "txt"], default="svg")
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="sample only the thread holding the GIL: where the Python CPU goes (a thread blocked in "
        "a queue, a lock or fsync is otherwise counted as busy)",
    )
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the connector")
    parser.add_argument("--scrape", type=float, default=0, help="print in-flight metrics after N s")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    for state in args.state:
        for latency in args.latency_ms:
            r = await run_one(args, latency, state)
            print(
                f"{r['state']:8} {r['latency_ms']:4g} ms  {r['events_per_s']:7.1f} events/s  "
                f"{r['cpu_ms_per_event']:5.2f} CPU ms/event  {r['calls_per_event']:.3f} calls/event  "
                f"{r['outcomes']}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
