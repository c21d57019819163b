"""The broker-side numbers on-call needs, sampled: queue depth, consumers, the oldest message's age.

RabbitMQ 3.x without the management plugin tells a client two things about a queue, in the answer
to a *passive* ``queue.declare``: the messages **ready** in it and the **consumers** on it. That is
cheap, changes nothing and needs no extra permission, so a supervised background task
(:class:`QueueSampler`, spawned by the service) asks it every ``http.metrics_sample_seconds`` for
each flow's work queue, its retry wait queues and its DLQ, on a channel of its own (a passive
declare of a missing queue closes the channel it was asked on; the consumers' channels must never
see that).

What is exact and what is not:

* ``connector_queue_messages`` and ``connector_queue_consumers`` are the broker's numbers at the
  moment of the sample (ready messages only: deliveries held unacked by consumers are in
  ``connector_messages_in_flight`` of the pods that hold them). Every consuming pod samples the
  same queues, so aggregate with ``max by (queue)``, not ``sum``.
* ``connector_queue_oldest_message_age_seconds`` is an **upper bound**. The broker does not say
  how old its head message is, and peeking (``basic.get`` then a requeue) would spend a quorum
  queue's delivery limit. Deliveries come in queue order, so the message delivered last was the
  head when it was delivered, and every message still ready is younger than it: ``now - its AMQP
  timestamp`` bounds the head's age from above -- exact right after a delivery, and growing while
  nothing is consumed (a paused or stuck consumer), which is what the alert wants to see. It is
  0 when the queue is empty and absent when unknown: no delivery yet since the pod started, or a
  publisher that does not set the AMQP ``timestamp`` property. Messages put back or retried keep
  their original timestamp, so they count with their full age.

A sample that fails (the broker away, a queue deleted) is logged and counted in
``connector_queue_sample_failures_total``; the previous values stay and
``connector_queue_last_sample_timestamp_seconds`` stops moving, which is how a dashboard tells a
stale number from a fresh one. The task never raises: a dead sampler would fail liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from connector.logging import get_logger
from connector.observability import Metrics
from connector.runtime import FlowUnit
from connector.topology import dlq_name, retry_queue_name

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SampledQueue:
    flow: str
    queue: str
    #: ``work``, ``retry`` or ``dead_letter``.
    kind: str


def queues_of(flows: Sequence[FlowUnit], ladder: Sequence[float]) -> list[SampledQueue]:
    """Every queue of every flow: its work queue, one wait queue per ladder rung, its DLQ."""
    sampled: list[SampledQueue] = []
    for unit in flows:
        work = unit.queue.queue
        sampled.append(SampledQueue(unit.name, work, "work"))
        sampled.extend(SampledQueue(unit.name, retry_queue_name(work, delay), "retry") for delay in ladder)
        sampled.append(SampledQueue(unit.name, dlq_name(work), "dead_letter"))
    return sampled


class QueueSampler:
    """Samples the queues every ``interval`` seconds into ``metrics`` until cancelled."""

    def __init__(
        self,
        connection: Callable[[], AbstractRobustConnection],
        queues: Sequence[SampledQueue],
        metrics: Metrics,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connection = connection
        self._queues = tuple(queues)
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        self._channel: AbstractChannel | None = None
        #: Rounds completed (each queue asked once), for tests and logs.
        self.rounds = 0

    async def run(self) -> None:
        try:
            while True:
                await self.sample_once()
                await asyncio.sleep(self._interval)  # the sampling period, not synchronisation
        finally:
            await self._close_channel()

    async def sample_once(self) -> None:
        """Ask the broker about every queue once; never raises (but for cancellation)."""
        for queue in self._queues:
            try:
                ready, consumers = await self._declare_passive(queue.queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.queue_sample_failures.labels(queue=queue.queue).inc()
                log.warning("queue_sample_failed", queue=queue.queue, error=f"{type(exc).__name__}: {exc}")
                await self._close_channel()  # the next question gets a fresh channel
                continue
            self._record(queue, ready, consumers)
        self.rounds += 1

    def _record(self, queue: SampledQueue, ready: int, consumers: int) -> None:
        labels = {"flow": queue.flow, "queue": queue.queue, "kind": queue.kind}
        self._metrics.queue_messages.labels(**labels).set(ready)
        self._metrics.queue_consumers.labels(**labels).set(consumers)
        self._metrics.queue_sampled_at.labels(queue=queue.queue).set(self._clock())
        if queue.kind != "work":
            return
        age = self._metrics.queue_oldest_age
        published_at = self._metrics.last_delivered_published_at.get(queue.flow)
        if ready == 0:
            age.labels(flow=queue.flow, queue=queue.queue).set(0)
        elif published_at is not None:
            age.labels(flow=queue.flow, queue=queue.queue).set(max(0.0, self._clock() - published_at))
        else:
            with contextlib.suppress(KeyError):  # unknown: no sample rather than a made-up one
                age.remove(queue.flow, queue.queue)

    async def _declare_passive(self, name: str) -> tuple[int, int]:
        # The underlying channel: a robust channel answers a repeated passive declare from its cache.
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection().channel()
        underlay = await self._channel.get_underlay_channel()
        try:
            declared = await underlay.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise LookupError(f"queue {name} does not exist") from None
        return declared.message_count or 0, declared.consumer_count or 0

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                log.debug("queue_sampler_channel_close_failed", error=str(exc))
