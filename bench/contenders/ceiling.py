"""The broker ceiling: consume and ack work-hour events, nothing else -- what the broker alone allows.

    BENCH_AMQP_URL=amqp://… python bench/contenders/ceiling.py --events 3000 [--prefetch 32]

Same queue, same prefetch and one ack per message as the other contenders, but no work at all. It
has no results to publish, so it times itself: one JSON line ``{"event": "ceiling.done", ...}`` with
the monotonic clock (shared by every process of the machine) and its own CPU time at the first
delivery and at the N-th ack. Then it waits for SIGTERM or SIGINT like the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time

import aio_pika


async def main(events: int, prefetch: int, prefix: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(f"{prefix}q.workhours", ensure=False)
    first: tuple[float, float] | None = None
    count = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal first, count
        if first is None:
            first = (time.monotonic(), time.process_time())
        await message.ack()
        count += 1
        if count == events:
            assert first is not None
            record = {
                "event": "ceiling.done",
                "events": count,
                "first_at": first[0],
                "last_at": time.monotonic(),
                "cpu_first": first[1],
                "cpu_last": time.process_time(),
            }
            print(json.dumps(record), flush=True)

    tag = await queue.consume(on_message)
    await stop.wait()
    await queue.cancel(tag)
    await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--prefix", default="")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.prefetch, arguments.prefix))
