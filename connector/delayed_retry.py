"""Delayed retry and put-back: republish a message (with confirms) instead of requeueing it.

In-process retries cover blips of a few seconds. A message still failing after them climbs the
ladder (e.g. 10 s, 1 min, 10 min): it is republished to the wait queue of the next rung and the
original is acked; when its TTL expires the broker routes it back to the work queue. Past the last
rung it is dead-lettered. RabbitMQ 3.x has no native delayed delivery, hence the wait queues (see
:mod:`connector.topology`).

A message held while the circuit is open is *put back* the same way, straight onto its work
queue: a ``nack(requeue=True)`` would count against the quorum queue's delivery limit, and a long
outage would then end with the broker dead-lettering messages that never failed on their own.

Every republish keeps the message's provenance (:mod:`connector.headers`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from connector.bus import Bus, OutgoingMessage
from connector.headers import (
    ATTEMPTS_HEADER,
    RETRY_REASON_HEADER,
    RETRY_STEP_HEADER,
    header_int,
    with_provenance,
)
from connector.processing import Failure
from connector.topology import retry_queue_name

__all__ = ["ATTEMPTS_HEADER", "RETRY_STEP_HEADER", "RetryLadder", "header_int"]


class RetryLadder:
    """The delayed-retry ladder of one work queue, and its put-back."""

    def __init__(self, bus: Bus, queue: str, ladder: tuple[float, ...]) -> None:
        self._bus = bus
        self._queue = queue
        self._ladder = ladder

    def next_delay(self, message: AbstractIncomingMessage) -> float | None:
        """The delay of the next rung for this message, or None when the ladder is climbed."""
        step = header_int(message.headers, RETRY_STEP_HEADER)
        return self._ladder[step] if step < len(self._ladder) else None

    async def schedule(self, message: AbstractIncomingMessage, failure: Failure) -> float:
        delay = self.next_delay(message)
        if delay is None:
            raise ValueError("no rung left; dead-letter instead")
        headers = _provenance(message, failure.first_failure_at)
        headers[RETRY_STEP_HEADER] = header_int(headers, RETRY_STEP_HEADER) + 1
        headers[ATTEMPTS_HEADER] = header_int(headers, ATTEMPTS_HEADER) + failure.attempts
        headers[RETRY_REASON_HEADER] = failure.reason
        await self._bus.publish(
            "",
            OutgoingMessage.copy_of(
                message, routing_key=retry_queue_name(self._queue, delay), headers=headers
            ),
        )
        return delay

    async def put_back(
        self,
        message: AbstractIncomingMessage,
        headers: Mapping[str, Any],
        *,
        first_failure_at: dt.datetime,
        attempts: int,
    ) -> None:
        """Republish ``message`` to the tail of its work queue with ``headers`` added, keeping when
        it first failed and counting the attempts this delivery made."""
        merged = {**_provenance(message, first_failure_at), **headers}
        merged[ATTEMPTS_HEADER] = header_int(merged, ATTEMPTS_HEADER) + attempts
        await self._bus.publish("", OutgoingMessage.copy_of(message, routing_key=self._queue, headers=merged))


def _provenance(message: AbstractIncomingMessage, failed_at: dt.datetime) -> dict[str, Any]:
    return with_provenance(
        message.headers,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        failed_at=failed_at,
    )
