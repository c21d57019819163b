"""The replay bench's baseline: a raw confirmed publish of the messages a replay would send.

    BENCH_AMQP_URL=amqp://… python bench/contenders/confirmed_publish.py --messages 20000 --window 100

The same bodies and the same four ``x-replay-*`` headers as ``severa-connector dlq replay`` sends,
to the same queue through the default exchange, persistent, pipelined in windows of the replay's
batch size and waiting for every confirm: the most a replay could do on this broker. No store, no
claim, no bookkeeping. Prints one JSON line ``{"event": "publish.done", ...}`` with its own timing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from schemas.dead_letter import ReplayHeaders
from tests.factories import event_dict


async def main(messages: int, window: int, queue: str) -> None:
    bodies = [json.dumps(event_dict(description=f"bench #{i}")).encode() for i in range(messages)]
    connection = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel(publisher_confirms=True)
    started, cpu = time.monotonic(), time.process_time()
    for start in range(0, messages, window):
        batch = [
            aio_pika.Message(
                body,
                message_id=str(uuid.uuid4()),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=ReplayHeaders(
                    replay_count=1,
                    replayed_at=dt.datetime.now(dt.UTC),
                    replay_id=uuid.uuid4().hex,
                    replayed_from=uuid.uuid4().hex,
                ).to_amqp(),
            )
            for body in bodies[start : start + window]
        ]
        await asyncio.gather(*(channel.default_exchange.publish(m, queue, timeout=30) for m in batch))
    record = {
        "event": "publish.done",
        "messages": messages,
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu,
    }
    print(json.dumps(record), flush=True)
    await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--queue", default="q.workhours")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.window, arguments.queue))
