"""Ingest: move every message waiting in the DLQs into the dead-letter store, exactly once.

Per batch: consume (manual ack, prefetch = batch) → parse each envelope → one store transaction
that inserts the new ids → ack each message of the batch, only after the commit. So:

* a crash before the commit leaves the messages unacked: the broker hands them out again;
* a crash between the commit and the ack does the same, and the second ingest finds the ids
  already stored (ids are ``x-dl-id`` or derived from the content) -- nothing is stored twice;
* nothing is ever requeued on purpose, so peeking never "burns" a delivery of a quorum DLQ and
  never moves a message: the DLQ is read once, front to back, and the store keeps that order.

The DLQ may keep filling while we read (the connector runs): an ingest stops when the queue
reports nothing ready and we hold nothing unacked, or after ``max_seconds``. A message that lands
in the instant between that check and the consumer's cancel is handed back to the queue by the
broker when the channel closes (its delivery count goes up by one; the DLQ has no delivery limit)
and is ingested next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from connector.bus import Bus, ready_count
from connector.dlq.envelope import Envelope, parse_dead_letter
from connector.dlq.store import DeadLetterStore
from connector.logging import get_logger

log = get_logger(__name__)

DEFAULT_BATCH = 500
_LINGER_SECONDS = 0.02  # how long a started batch waits to fill before it is committed
_IDLE_SECONDS = 1.0  # nothing delivered for this long: ask the broker whether the queue is empty
_QUIET_SECONDS = 0.15  # the broker has nothing ready: deliveries still on the wire arrive within this


@dataclass(slots=True)
class IngestReport:
    """What one ingest took out of the DLQs."""

    received: int = 0
    stored: int = 0
    already_stored: int = 0
    missing_queues: list[str] = field(default_factory=list)
    per_queue: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False


class Ingestor:
    """Moves DLQ messages into the store (see the module docstring for the guarantees)."""

    def __init__(
        self,
        bus: Bus,
        store: DeadLetterStore,
        *,
        flows_by_queue: Mapping[str, str] | None = None,
        batch: int = DEFAULT_BATCH,
        max_seconds: float = 300.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._bus = bus
        self._store = store
        self._flows = dict(flows_by_queue or {})
        self._batch = batch
        self._max_seconds = max_seconds
        self._clock = clock

    async def ingest(self, queues: Sequence[str]) -> IngestReport:
        report = IngestReport()
        for queue_name in queues:
            await self._ingest_queue(queue_name, report)
        if report.received:
            log.info(
                "dlq.ingested",
                received=report.received,
                stored=report.stored,
                already_stored=report.already_stored,
            )
        return report

    async def _ingest_queue(self, queue_name: str, report: IngestReport) -> None:
        channel = await self._bus.connection.channel()
        try:
            try:
                queue = await channel.declare_queue(queue_name, passive=True)
            except ChannelNotFoundEntity:
                report.missing_queues.append(queue_name)
                return
            if not (queue.declaration_result.message_count or 0):
                return  # the common case costs one round trip
            await channel.set_qos(prefetch_count=self._batch)
            await self._drain(channel, queue, queue_name, report)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _drain(
        self, channel: AbstractChannel, queue: AbstractQueue, queue_name: str, report: IngestReport
    ) -> None:
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        deadline = time.monotonic() + self._max_seconds
        tag = await queue.consume(on_message, no_ack=False)
        wait = _IDLE_SECONDS
        try:
            while True:
                batch = await self._collect(inbox, wait)
                if batch:
                    await self._store_batch(batch, queue_name, report)
                    wait = _IDLE_SECONDS
                    if not inbox.empty() and time.monotonic() <= deadline:
                        continue
                elif wait == _QUIET_SECONDS:
                    break  # nothing ready at the broker and nothing arrived since: drained
                if time.monotonic() > deadline:
                    report.stopped_early = True
                    break
                # Nothing ready at the broker: wait a moment for deliveries still on the wire.
                wait = _QUIET_SECONDS if await ready_count(channel, queue_name) == 0 else _IDLE_SECONDS
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        # Deliveries that raced the cancel are in the inbox now or will be handed back on close.
        leftovers: list[AbstractIncomingMessage] = []
        while not inbox.empty():
            leftovers.append(inbox.get_nowait())
        if leftovers:
            await self._store_batch(leftovers, queue_name, report)

    async def _collect(
        self, inbox: asyncio.Queue[AbstractIncomingMessage], wait: float
    ) -> list[AbstractIncomingMessage]:
        """Up to a batch: the first message within ``wait`` seconds, then whatever follows at once."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
        # its timeout, and an ingest must stop when told to.
        try:
            async with asyncio.timeout(wait):
                first = await inbox.get()
        except TimeoutError:
            return []
        batch = [first]
        linger_until = time.monotonic() + _LINGER_SECONDS
        while len(batch) < self._batch:
            try:
                batch.append(inbox.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = linger_until - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await inbox.get())
            except TimeoutError:
                break
        return batch

    async def _store_batch(
        self, batch: list[AbstractIncomingMessage], queue_name: str, report: IngestReport
    ) -> None:
        now = self._clock()
        records = [
            parse_dead_letter(
                Envelope.from_message(m), dead_letter_queue=queue_name, now=now, flows_by_queue=self._flows
            )
            for m in batch
        ]
        stored = await self._store.add(records)  # committed when it returns
        # Each message acked by its own tag (a frame, no round trip): an ack(multiple=True) would
        # also ack a delivery that has not reached the inbox yet, should callbacks ever reorder.
        for message in batch:
            await message.ack()
        report.received += len(batch)
        report.stored += len(stored)
        report.already_stored += len(batch) - len(stored)
        report.per_queue[queue_name] = report.per_queue.get(queue_name, 0) + len(batch)
