"""Work-hours throughput end to end: events/s through the real connector vs the broker alone.

Publishes N distinct work-hour events to a fresh, prefixed topology on the local RabbitMQ and
times until every one has its ``workhour.synced`` result, with the connector running in-process
against the fake Severa (in-process too, over real HTTP). The baseline, measured in the same run on
the same broker, is a bare consumer that only acks (what the broker alone allows), so the ratio
shows what the connector's work — validate, lock, ledger, SOAP call, result publish — costs.

    python bench/connector_throughput.py --events 2000 --prefetch 32 --state sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.severa.fake.server import FakeSevera
from connector.logging import configure_logging
from connector.topology import Names, build_topology
from tests.factories import SEVERA_SEED, event_dict
from tests.harness import connector_settings, running_connector

KEY = "bench-key-000000"


async def declare(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    for exchange in build_topology(names).exchanges:
        await channel.declare_exchange(exchange.name, aio_pika.ExchangeType(exchange.type), durable=True)
    for spec in build_topology(names).queues:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for exchange_name, key in spec.bindings:
            await queue.bind(exchange_name, key)


async def cleanup(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    topology = build_topology(names)
    for spec in topology.queues:
        await channel.queue_delete(spec.name)
    for exchange in topology.exchanges:
        await channel.exchange_delete(exchange.name)


async def publish_all(channel: aio_pika.abc.AbstractChannel, names: Names, bodies: list[bytes]) -> float:
    exchange = await channel.get_exchange(names.workhours_exchange)
    started = time.perf_counter()
    for body in bodies:
        await exchange.publish(aio_pika.Message(body, delivery_mode=2), "workhour.created", timeout=10)
    return time.perf_counter() - started


async def baseline(url: str, bodies: list[bytes], prefetch: int) -> float:
    """Raw consume + ack of the same messages (published beforehand)."""
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare(channel, names)
        await publish_all(channel, names, bodies)
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=prefetch)
        queue = await consumer_channel.get_queue(names.workhours_queue)
        done = asyncio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count == len(bodies):
                done.set()

        started = time.perf_counter()
        await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - started
        await cleanup(channel, names)
        return elapsed


async def through_connector(url: str, bodies: list[bytes], prefetch: int, state: str) -> tuple[float, int]:
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    connection = await aio_pika.connect(url)
    async with connection, FakeSevera(api_key=KEY, seed=SEVERA_SEED) as severa:
        channel = await connection.channel(publisher_confirms=True)
        await declare(channel, names)
        results = await channel.declare_queue(exclusive=True)
        await results.bind(names.results_exchange, "#")
        await publish_all(channel, names, bodies)  # backlog first: measure draining, not publishing
        done = asyncio.Event()
        count = 0

        async def on_result(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count == len(bodies):
                done.set()

        await results.consume(on_result)
        with tempfile.TemporaryDirectory() as tmp:
            overrides: dict[str, object] = {"rabbitmq": {"prefetch": prefetch}, "http": {"enabled": False}}
            if state == "memory":
                overrides["state_url"] = "memory://"
            settings = connector_settings(
                amqp_url=url,
                names=names,
                severa_url=severa.url,
                api_key=KEY,
                state_dir=Path(tmp),
                **overrides,
            )
            started = time.perf_counter()
            async with running_connector(settings):
                await asyncio.wait_for(done.wait(), 600)
                elapsed = time.perf_counter() - started
        calls = sum(severa.calls.values())
        await cleanup(channel, names)
        return elapsed, calls


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--state", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    configure_logging("ERROR", "console")
    bodies = [json.dumps(event_dict(description=f"bench #{i}")).encode() for i in range(args.events)]

    base = await baseline(args.url, bodies, args.prefetch)
    elapsed, calls = await through_connector(args.url, bodies, args.prefetch, args.state)
    base_rate = args.events / base
    rate = args.events / elapsed
    print(f"events: {args.events}, prefetch: {args.prefetch}, ledger: {args.state}")
    print(f"baseline (broker only: consume + ack)  {base_rate:9.0f} msgs/s")
    print(f"connector (validate → Severa → result)  {rate:9.0f} events/s")
    print(f"ratio connector / baseline              {rate / base_rate:9.3f}")
    print(f"Severa calls per event                  {calls / args.events:9.3f}")


if __name__ == "__main__":
    asyncio.run(main())
