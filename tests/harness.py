"""Test harness: run the connector against the real broker and the fake Severa, watch what comes out.

Everything waits on conditions with timeouts (results arriving on a queue, a predicate becoming
true), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from connector.config import Settings
from connector.service import ConnectorService
from connector.topology import Names

#: The key the ``severa`` fixture's fake Severa accepts.
SEVERA_KEY = "integration-key-5f2b9c"

#: Short rungs so that delayed-retry tests finish quickly (the topology fixture declares the same).
TEST_RETRY_LADDER = (0.2, 0.5)


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def connector_settings(
    *, amqp_url: str, names: Names, severa_url: str, api_key: str, state_dir: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "severa": {"url": severa_url, "api_key": api_key, "timeout_seconds": 5, "connect_timeout_seconds": 2},
        "rabbitmq": {"url": amqp_url, "prefix": names.prefix, "prefetch": 16},
        "http": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "retry": {
            "attempts": 3,
            "initial_seconds": 0.01,
            "max_seconds": 0.05,
            "ladder_seconds": TEST_RETRY_LADDER,
        },
        "circuit": {"probe_initial_seconds": 0.05, "probe_max_seconds": 0.2},
        "work_hours": {"hold_seconds": 30},
        "state_url": f"sqlite:///{state_dir / 'ledger.db'}",
        "drain_seconds": 5,
        "pod_name": "test-pod",
        # These tests read the raw DLQ queue to see what was parked and why, so the pod must not
        # move dead letters into its store first. The ingesting pod (the production default) is
        # what tests/integration/test_production_topology.py runs.
        "dlq": {"ingest": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


@dataclass
class Results:
    """Result events (workhour.synced / workhour.failed) as they arrive."""

    synced: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def about(self, event_id: str) -> list[dict[str, Any]]:
        return [r for r in self.synced + self.failed if r.get("event_id") == event_id]

    async def wait_for(self, count: int, timeout: float = 15.0) -> None:
        await wait_until(
            lambda: len(self.synced) + len(self.failed) >= count,
            timeout=timeout,
            what=f"{count} result events (have {len(self.synced)} synced, {len(self.failed)} failed)",
        )


class Broker:
    """Publishes events like an external system and reads results and the DLQ like ops would."""

    def __init__(self, channel: AbstractChannel, names: Names) -> None:
        self.channel = channel
        self.names = names
        self.results = Results()
        self._results_queue: AbstractQueue | None = None
        self._results_tag = ""

    async def watch_results(self) -> None:
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.names.results_exchange, "#")

        async def on_result(message: AbstractIncomingMessage) -> None:
            async with message.process():
                body = json.loads(message.body)
                (
                    self.results.synced if message.routing_key == "workhour.synced" else self.results.failed
                ).append({**body, "_correlation_id": message.correlation_id})

        self._results_tag = await queue.consume(on_result)
        self._results_queue = queue

    async def close(self) -> None:
        """Stop watching before the channel closes, so no ack races a closed channel."""
        if self._results_queue is not None:
            await self._results_queue.cancel(self._results_tag)
            self._results_queue = None
        await self.channel.close()

    async def publish(
        self,
        body: bytes,
        *,
        routing_key: str = "workhour.created",
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        exchange = await self.channel.get_exchange(self.names.workhours_exchange)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                message_id=message_id,
                correlation_id=correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
            timeout=10,
        )

    async def publish_event(self, event: dict[str, Any], **kwargs: Any) -> None:
        await self.publish(
            json.dumps(event).encode(),
            routing_key=event.get("event_type", "workhour.created"),
            message_id=event.get("event_id"),
            **kwargs,
        )

    async def drain_dlq(self) -> list[AbstractIncomingMessage]:
        """Take every message out of the DLQ (acked: the test owns them)."""
        queue = await self.channel.get_queue(self.names.workhours_dlq)
        taken: list[AbstractIncomingMessage] = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
        return taken

    async def depth(self, queue_name: str) -> int:
        queue = await self.channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0


async def broker_view(connection: aio_pika.abc.AbstractConnection, queue: str) -> tuple[int, int]:
    """(consumers, ready messages) of ``queue`` as the broker reports them right now.

    A fresh channel per question: a passive declare of a queue that is gone (deleted, not yet
    re-declared) closes the channel it was asked on; that answer is (0, 0).
    """
    channel = await connection.channel()
    try:
        underlay = await channel.get_underlay_channel()
        declared = await underlay.queue_declare(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0, 0
    finally:
        if not channel.is_closed:
            await channel.close()
    return declared.consumer_count or 0, declared.message_count or 0


@asynccontextmanager
async def running_connector(settings: Settings) -> AsyncIterator[ConnectorService]:
    service = ConnectorService(settings)
    try:
        await service.start()
        yield service
    finally:
        await service.close()
