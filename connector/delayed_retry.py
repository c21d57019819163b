"""Delayed retry: park a transiently failing message in a TTL'd wait queue, then try again.

In-process retries cover blips of a few seconds. A message still failing after them climbs the
ladder (e.g. 10 s, 1 min, 10 min): it is republished (with confirms) to the wait queue of the next
rung and the original is acked; when its TTL expires the broker routes it back to the work queue.
Past the last rung it is dead-lettered. RabbitMQ 3.x has no native delayed delivery, hence the
wait queues (see :mod:`connector.topology`).
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from connector.bus import Bus, OutgoingMessage
from connector.processing import Failure
from connector.topology import Names

#: Rungs climbed so far (our own counter; ``x-death`` is not trusted).
RETRY_STEP_HEADER = "x-retry-step"
#: Handling attempts over the message's whole life (in-process attempts summed over the rungs).
ATTEMPTS_HEADER = "x-attempts"


def header_int(headers: dict[str, Any] | None, name: str) -> int:
    value = (headers or {}).get(name)
    try:
        return max(int(value), 0) if value is not None else 0
    except (TypeError, ValueError):
        return 0


class RetryLadder:
    def __init__(self, bus: Bus, names: Names, ladder: tuple[float, ...]) -> None:
        self._bus = bus
        self._names = names
        self._ladder = ladder

    def next_delay(self, message: AbstractIncomingMessage) -> float | None:
        """The delay of the next rung for this message, or None when the ladder is climbed."""
        step = header_int(message.headers, RETRY_STEP_HEADER)
        return self._ladder[step] if step < len(self._ladder) else None

    async def schedule(self, message: AbstractIncomingMessage, failure: Failure) -> float:
        delay = self.next_delay(message)
        if delay is None:
            raise ValueError("no rung left; dead-letter instead")
        headers = dict(message.headers or {})
        headers[RETRY_STEP_HEADER] = header_int(headers, RETRY_STEP_HEADER) + 1
        headers[ATTEMPTS_HEADER] = header_int(headers, ATTEMPTS_HEADER) + failure.attempts
        headers["x-retry-reason"] = failure.reason
        await self._bus.publish(
            "",
            OutgoingMessage(
                body=message.body,
                routing_key=self._names.retry_queue(delay),
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                type=message.type,
                content_type=message.content_type or "application/octet-stream",
                headers=headers,
                timestamp=message.timestamp,
            ),
        )
        return delay
