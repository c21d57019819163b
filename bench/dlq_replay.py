"""Dead-letter replay throughput: msgs/s of ``dlq replay`` vs a raw confirmed publish, in one run.

Parks N dead letters (envelopes as the connector writes them) in the DLQ of a fresh, prefixed
topology on the local RabbitMQ, ingests them into a fresh store, and replays them all through the
same code path as ``severa-connector dlq replay`` (plan, claim, publish with confirms, settle each
row after its confirm, audit). The baseline, measured in the same run on the same broker, is a raw
publish of the same N messages through :class:`connector.bus.Bus`, pipelined in windows of the same
size and waiting for every confirm -- the most a replay could do -- so the ratio is what the store's
bookkeeping costs. Ingest (DLQ → store) is reported as well.

    python bench/dlq_replay.py --messages 5000 --batch 100 --store sqlite
    python bench/dlq_replay.py --store postgres --postgres-dsn postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.bus import Bus, OutgoingMessage
from connector.config import DlqSettings
from connector.dlq.contracts import flows_by_queue
from connector.dlq.ingest import Ingestor
from connector.dlq.operations import ReplayOptions, open_session, replay
from connector.dlq.selection import Filter
from connector.logging import configure_logging
from connector.topology import Names, build_topology
from schemas.dead_letter import DeadLetterHeaders, ReplayHeaders
from tests.factories import event_dict


async def declare(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    topology = build_topology(names)
    for exchange in topology.exchanges:
        await channel.declare_exchange(exchange.name, aio_pika.ExchangeType(exchange.type), durable=True)
    for spec in topology.queues:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for exchange_name, key in spec.bindings:
            await queue.bind(exchange_name, key)


async def cleanup(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    topology = build_topology(names)
    for spec in topology.queues:
        await channel.queue_delete(spec.name)
    for exchange in topology.exchanges:
        await channel.exchange_delete(exchange.name)


def envelope(names: Names) -> dict[str, object]:
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
        original_exchange=names.workhours_exchange,
        original_routing_key="workhour.created",
        original_queue=names.workhours_queue,
        flow="work_hours",
        connector_version="bench",
        pod="bench",
    ).to_amqp()


async def confirmed_publish(bus: Bus, messages: list[OutgoingMessage], window: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(messages), window):
        await asyncio.gather(*(bus.publish("", m) for m in messages[start : start + window]))
    return time.perf_counter() - started


async def baseline(url: str, bodies: list[bytes], window: int) -> float:
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await declare(channel, names)
    try:
        async with Bus(url, name="bench-baseline") as bus:
            # The very messages a replay sends: same bodies, same four x-replay-* headers.
            messages = [
                OutgoingMessage(
                    body=b,
                    routing_key=names.workhours_queue,
                    message_id=str(uuid.uuid4()),
                    content_type="application/json",
                    headers=ReplayHeaders(
                        replay_count=1,
                        replayed_at=dt.datetime.now(dt.UTC),
                        replay_id=uuid.uuid4().hex,
                        replayed_from=uuid.uuid4().hex,
                    ).to_amqp(),
                )
                for b in bodies
            ]
            return await confirmed_publish(bus, messages, window)
    finally:
        await cleanup(channel, names)
        await connection.close()


async def through_replay(
    url: str, bodies: list[bytes], window: int, store_url: str, prefix: str
) -> tuple[float, float]:
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await declare(channel, names)
    try:
        async with Bus(url, name="bench-park") as bus:
            parked = [
                OutgoingMessage(
                    body=b,
                    routing_key=names.workhours_queue,
                    message_id=str(uuid.uuid4()),
                    headers=envelope(names),
                )
                for b in bodies
            ]
            for start in range(0, len(parked), window):
                await asyncio.gather(
                    *(bus.publish(names.dead_letter_exchange, m) for m in parked[start : start + window])
                )
        with tempfile.TemporaryDirectory() as tmp:
            settings = DlqSettings(
                rabbitmq={"url": url, "prefix": names.prefix},
                dlq={
                    "store_url": store_url.replace("{tmp}", tmp),
                    "store_table_prefix": prefix,
                    "audit_log": str(Path(tmp) / "audit.jsonl"),
                    "replay_batch": window,
                },
            )
            async with open_session(
                settings, operator="bench", need_broker=True, create_store=True
            ) as session:
                assert session.bus is not None
                ingestor = Ingestor(session.bus, session.store, flows_by_queue=flows_by_queue(names))
                started = time.perf_counter()
                report = await ingestor.ingest(names.dead_letter_queues)
                ingest = time.perf_counter() - started
                assert report.stored == len(bodies), report
                started = time.perf_counter()
                outcome = await replay(
                    session, Filter(queues=(names.workhours_queue,)), ReplayOptions(reason="bench")
                )
                replayed = time.perf_counter() - started
                assert outcome.report is not None
                assert len(outcome.report.replayed) == len(bodies), outcome.report.status
        return ingest, replayed
    finally:
        await cleanup(channel, names)
        await connection.close()


async def drop_tables(dsn: str, prefix: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = ("dead_letters", "dlq_events", "dlq_replays", "dlq_audit", "schema_version")
        await conn.execute("DROP TABLE IF EXISTS " + ", ".join(prefix + t for t in tables))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100, help="replay batch = baseline publish window")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("DLQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    configure_logging("ERROR", "console")
    bodies = [json.dumps(event_dict(description=f"bench #{i}")).encode() for i in range(args.messages)]
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    store_url = "sqlite:///{tmp}/dlq.db" if args.store == "sqlite" else args.postgres_dsn

    base = await baseline(args.url, bodies, args.batch)
    try:
        ingest, replayed = await through_replay(args.url, bodies, args.batch, store_url, prefix)
    finally:
        if args.store == "postgres":
            await drop_tables(args.postgres_dsn, prefix)
    n = args.messages
    print(f"messages: {n}, batch/window: {args.batch}, store: {args.store}")
    print(f"baseline (Bus.publish, confirms, pipelined)   {n / base:9.0f} msgs/s")
    print(f"ingest (DLQ → store, commit before ack)       {n / ingest:9.0f} msgs/s")
    print(f"replay (claim → publish+confirm → settle)     {n / replayed:9.0f} msgs/s")
    print(f"ratio replay / baseline                       {(n / replayed) / (n / base):9.3f}")


if __name__ == "__main__":
    asyncio.run(main())
