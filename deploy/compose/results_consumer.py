"""The laptop stack's results consumer: prints every work-hour result event as one JSON line.

Result events (``workhour.synced`` / ``workhour.failed``) are notifications on the
``workhours.results`` topic exchange; the production topology binds no queue to it, so a result
nobody listens for is dropped by the broker and counted, never kept. This consumer does what an
integrator does: it binds a queue of its own -- exclusive, so the broker deletes it with the
connection and nothing piles up while the consumer is down -- and reads it.

Run in the connector's image (docker-compose.yml mounts it); it reads the connector's own broker
variables. It exits on a lost connection and lets the restart policy start it again, and marks
itself ready with a file for the healthcheck.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika

URL = os.environ.get("SEVERA_CONNECTOR_RABBITMQ__URL", "amqp://guest:guest@127.0.0.1:5672/")
PREFIX = os.environ.get("SEVERA_CONNECTOR_RABBITMQ__PREFIX", "")
READY_FILE = Path(os.environ.get("RESULTS_CONSUMER_READY_FILE", "/tmp/results-consumer.ready"))


def _mark_ready() -> None:
    READY_FILE.write_text("listening\n", encoding="utf-8")


def _without_password(text: str) -> str:
    """The broker password never reaches the log, whatever an error message quotes."""
    password = urlsplit(URL).password
    return text.replace(password, "***") if password else text


async def consume(stop: asyncio.Event) -> None:
    connection = await aio_pika.connect(URL)
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    async with connection:
        channel = await connection.channel()
        # Passive: the connector declares the exchange; until it has, fail and be restarted.
        exchange = await channel.get_exchange(f"{PREFIX}workhours.results", ensure=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")

        async def printed(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                try:
                    body: object = json.loads(message.body)
                except ValueError:
                    body = message.body.decode("utf-8", "replace")
                print(json.dumps({"routing_key": message.routing_key, "body": body}), flush=True)

        await queue.consume(printed)
        _mark_ready()
        print(f"listening on {exchange.name}", file=sys.stderr, flush=True)
        stopped = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(closed.wait())
        await asyncio.wait({stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stopped, lost):
            waiter.cancel()
        if lost.done() and not stop.is_set():
            raise ConnectionError("the broker closed the connection")


def main() -> int:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        loop.run_until_complete(consume(stop))
    except (ConnectionError, aio_pika.exceptions.AMQPError, OSError) as exc:
        reason = _without_password(f"{type(exc).__name__}: {exc}")
        print(f"results consumer stopped: {reason}", file=sys.stderr, flush=True)
        return 1
    finally:
        READY_FILE.unlink(missing_ok=True)
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
