"""Ingest: move every message waiting in the DLQs into the dead-letter store, exactly once.

Ingest is a deliberate act of a central place -- the connector pods, or a ``dlq ingest`` role --
never a side effect of looking: a dead letter that leaves the broker must land in the store
everyone else uses. Two shapes share one rule, *commit before ack*:

* :class:`DeadLetterIngester` runs for as long as the pod does: it consumes each DLQ and stores
  what arrives (concurrent arrivals committed together), acking each message after its commit. A
  store failure puts the message back on the DLQ (nack + requeue, after a growing pause) and marks
  the ingester unhealthy: it never drops one.
* :class:`Ingestor` drains what is there now (``dlq ingest``, the benchmark), batch by batch:
  consume (manual ack, prefetch = batch) → parse each envelope → one store transaction that
  inserts the new ids → ack each message of the batch, only after the commit.

So, for both:

* a crash before the commit leaves the messages unacked: the broker hands them out again;
* a crash between the commit and the ack does the same, and the second ingest finds the ids
  already stored (ids are ``x-dl-id`` or derived from the content) -- nothing is stored twice;
* a batch's size is whatever arrived within a short linger (it is a throughput device, not a
  contract): under CPU starvation it may be smaller, which changes where a failure splits the
  messages, never whether each one is stored once;
* nothing is requeued on purpose except after a store failure, so ingesting never "burns" a
  delivery of a quorum DLQ and never moves a message: the DLQ is read front to back, and the store
  keeps that order.

The DLQ may keep filling while :class:`Ingestor` reads (the connector runs): it stops when the
queue reports nothing ready and we hold nothing unacked, or after ``max_seconds``. A message that
lands in the instant between that check and the consumer's cancel is handed back to the queue by
the broker when the channel closes (its delivery count goes up by one; the DLQ has no delivery
limit) and is ingested next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from connector.bus import Bus, Consumer, ready_count
from connector.dlq.envelope import Envelope, parse_dead_letter
from connector.dlq.records import DeadLetterRecord
from connector.dlq.store import DeadLetterStore
from connector.logging import get_logger

log = get_logger(__name__)

DEFAULT_BATCH = 500
DEFAULT_PREFETCH = 50
DEFAULT_LINGER_SECONDS = 0.02  # how long a started batch waits to fill before it is committed
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
    queues_asked: int = 0
    """How many DLQs the ingest looked at (``missing_queues`` of them did not exist)."""


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
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._bus = bus
        self._store = store
        self._flows = dict(flows_by_queue or {})
        self._batch = batch
        self._max_seconds = max_seconds
        self._linger = linger_seconds
        self._clock = clock

    async def ingest(self, queues: Sequence[str]) -> IngestReport:
        report = IngestReport(queues_asked=len(queues))
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
        linger_until = time.monotonic() + self._linger
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
        records = to_records(batch, queue_name, now=self._clock(), flows_by_queue=self._flows)
        stored = await self._store.add(records)  # committed when it returns
        # Each message acked by its own tag (a frame, no round trip): an ack(multiple=True) would
        # also ack a delivery that has not reached the inbox yet, should callbacks ever reorder.
        for message in batch:
            await message.ack()
        report.received += len(batch)
        report.stored += len(stored)
        report.already_stored += len(batch) - len(stored)
        report.per_queue[queue_name] = report.per_queue.get(queue_name, 0) + len(batch)


def to_records(
    messages: Sequence[AbstractIncomingMessage],
    dead_letter_queue: str,
    *,
    now: dt.datetime,
    flows_by_queue: Mapping[str, str],
) -> list[DeadLetterRecord]:
    """What the store keeps of each message; one rule for both ingest shapes (never raises for content)."""
    return [
        parse_dead_letter(
            Envelope.from_message(m),
            dead_letter_queue=dead_letter_queue,
            now=now,
            flows_by_queue=flows_by_queue,
        )
        for m in messages
    ]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(slots=True)
class IngesterCounts:
    """What a :class:`DeadLetterIngester` did since it started."""

    received: int = 0
    stored: int = 0
    already_stored: int = 0
    requeued: int = 0


class DeadLetterIngester:
    """Ingests the DLQs continuously: the supervised background task of the connector pods.

    Each DLQ has a consumer of its own (:meth:`Bus.consumer`, ``prefetch`` unacked at most). Every
    delivery is parsed, committed to the store, and only then acked; deliveries arriving while a
    commit runs are committed together by the next one (one transaction for many, without a
    timer). If the store fails, the message is nacked with requeue after a pause that doubles with
    each consecutive failure (``retry_initial_seconds`` up to ``retry_max_seconds``), so an outage
    neither drops anything nor spins; :attr:`healthy` turns false and :attr:`last_error` says why
    until a commit succeeds again.

    Lifecycle: :meth:`start` (or ``async with``), :meth:`stop` -- idempotent: consumers are
    cancelled, then the callbacks in flight finish (their pauses cut short) for up to
    ``drain_seconds``; anything still unacked goes back to the DLQ when the bus closes its channels.
    A stopped ingester is not restarted.
    """

    def __init__(
        self,
        bus: Bus,
        store: DeadLetterStore,
        queues: Sequence[str],
        *,
        prefetch: int = DEFAULT_PREFETCH,
        flows_by_queue: Mapping[str, str] | None = None,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        drain_seconds: float = 30.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if not queues:
            raise ValueError("DeadLetterIngester needs at least one queue")
        self._bus = bus
        self._store = store
        self._queues = tuple(queues)
        self._prefetch = prefetch
        self._flows = dict(flows_by_queue or {})
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._drain_seconds = drain_seconds
        self._clock = clock
        self._state = _State.NEW
        self._lifecycle = asyncio.Lock()
        self._consumers: list[Consumer] = []
        self._stopping = asyncio.Event()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Group commit: records waiting for the next transaction, each with its caller's future.
        self._pending: list[tuple[DeadLetterRecord, asyncio.Future[bool]]] = []
        self._commit_lock = asyncio.Lock()
        self._failures = 0
        self.counts = IngesterCounts()
        #: Why the last store operation failed; ``None`` once a commit succeeded again.
        self.last_error: str | None = None

    @property
    def queues(self) -> tuple[str, ...]:
        return self._queues

    @property
    def running(self) -> bool:
        return self._state is _State.RUNNING

    @property
    def healthy(self) -> bool:
        """Running, every consumer consuming, and the store taking commits (for ``/readyz``)."""
        return (
            self._state is _State.RUNNING
            and self.last_error is None
            and all(consumer.active for consumer in self._consumers)
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Consume every DLQ; raises (and consumes nothing) if one of them cannot be consumed."""
        async with self._lifecycle:
            if self._state is _State.RUNNING:
                return
            if self._state is _State.STOPPED:
                raise RuntimeError("DeadLetterIngester is stopped and cannot be restarted")
            try:
                for queue in self._queues:
                    consumer = await self._bus.consumer(
                        queue, self._callback_for(queue), prefetch=self._prefetch
                    )
                    self._consumers.append(consumer)
                    await consumer.start()
            except BaseException:
                for consumer in self._consumers:  # nothing half-started is left behind
                    await self._bus.discard(consumer)
                self._consumers.clear()
                raise
            self._state = _State.RUNNING
            log.info("dlq.ingester_started", queues=list(self._queues), prefetch=self._prefetch)

    async def stop(self) -> None:
        """Stop consuming, let the callbacks in flight finish (bounded), log what was done."""
        async with self._lifecycle:
            if self._state is _State.STOPPED:
                return
            self._state = _State.STOPPED
            self._stopping.set()
            await self._stop_consumers()
            try:
                async with asyncio.timeout(self._drain_seconds):
                    await self._idle.wait()
            except TimeoutError:
                log.warning(
                    "dlq.ingester_drain_timeout", in_flight=self._in_flight, drain_seconds=self._drain_seconds
                )
            for consumer in self._consumers:  # their channels and keepers go with them
                await self._bus.discard(consumer)
            self._consumers.clear()
            counts = self.counts
            log.info(
                "dlq.ingester_stopped",
                received=counts.received,
                stored=counts.stored,
                already_stored=counts.already_stored,
                requeued=counts.requeued,
            )

    async def _stop_consumers(self) -> None:
        for consumer in self._consumers:
            try:
                await consumer.stop()
            except Exception as exc:  # a dead channel: the broker hands its messages back anyway
                log.warning("dlq.ingester_consumer_stop_failed", queue=consumer.queue_name, error=repr(exc))

    def _callback_for(self, queue: str) -> Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._ingest(queue, message)

        return on_message

    async def _ingest(self, queue: str, message: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            (record,) = to_records([message], queue, now=self._clock(), flows_by_queue=self._flows)
            try:
                new = await self._commit(record)
            except Exception as exc:
                await self._requeue_after_failure(queue, message, exc)
                return
            self.counts.received += 1
            if new:
                self.counts.stored += 1
            else:
                self.counts.already_stored += 1
            await self._settle(queue, message, requeue=None)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _commit(self, record: DeadLetterRecord) -> bool:
        """Commit ``record`` with whatever else is waiting; whether its id was new to the store."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((record, done))
        async with self._commit_lock:
            if not done.done():
                batch, self._pending = self._pending, []
                try:
                    stored = set(await self._store.add([r for r, _ in batch]))
                except Exception as exc:
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(exc)
                except BaseException:
                    for _, waiting in batch:
                        waiting.cancel()
                    raise
                else:
                    for r, waiting in batch:
                        waiting.set_result(r.id in stored)
                        stored.discard(r.id)  # a copy twice in one transaction is new once
                    self._recovered()
        return done.result()

    def _recovered(self) -> None:
        self._failures = 0
        if self.last_error is not None:
            log.info("dlq.ingester_recovered")
            self.last_error = None

    async def _requeue_after_failure(
        self, queue: str, message: AbstractIncomingMessage, exc: Exception
    ) -> None:
        self._failures += 1
        self.last_error = f"the dead-letter store failed: {getattr(exc, 'message', None) or exc!r}"
        pause = min(self._retry_max, self._retry_initial * 2 ** min(self._failures - 1, 30))
        log.error("dlq.ingest_failed", queue=queue, error=self.last_error, retry_in=pause)
        # Holding the message for the pause is the back-off: requeued at once, it would come straight
        # back and spin against a store that is down. A stop cuts the pause short.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await self._stopping.wait()
        self.counts.requeued += 1
        await self._settle(queue, message, requeue=True)

    async def _settle(self, queue: str, message: AbstractIncomingMessage, *, requeue: bool | None) -> None:
        """Ack (``requeue=None``) or nack; a channel that is gone hands the message back by itself."""
        try:
            if requeue is None:
                await message.ack()
            else:
                await message.nack(requeue=requeue)
        except Exception as exc:
            log.warning("dlq.ingest_settle_failed", queue=queue, error=repr(exc))
