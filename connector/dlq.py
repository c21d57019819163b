"""Dead-lettering: park a message we give up on, with the story of its failure.

We publish the copy ourselves (to the DLX, routing key = the queue it came from) instead of
``reject(requeue=False)`` because the broker's own dead-lettering cannot add headers: ops need the
reason, the attempts and the original coordinates next to the message. The copy is confirmed by
the broker before the original is acked (see :mod:`connector.processing`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from connector import __version__
from connector.bus import Bus, OutgoingMessage
from connector.delayed_retry import ATTEMPTS_HEADER, header_int
from connector.logging import redact_text
from connector.processing import Failure
from schemas.dead_letter import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, DeadLetterHeaders, truncate

# Headers we set that must not pile up when a replayed message fails again.
_OUR_PREFIX = "x-dl-"


class DeadLetterer:
    def __init__(self, bus: Bus, *, exchange: str, queue: str, flow: str, pod: str) -> None:
        self._bus = bus
        self._exchange = exchange
        self._queue = queue
        self._flow = flow
        self._pod = pod

    def headers_for(self, message: AbstractIncomingMessage, failure: Failure) -> dict[str, Any]:
        original = {k: v for k, v in (message.headers or {}).items() if not str(k).startswith(_OUR_PREFIX)}
        # A replayed message that fails again keeps the time of its very first failure.
        previous = _as_datetime((message.headers or {}).get("x-dl-first-failure-at"))
        headers = DeadLetterHeaders(
            category=failure.category.value,
            error_class=type(failure.error).__name__,
            reason=failure.reason,
            message=truncate(redact_text(failure.message), MAX_MESSAGE_CHARS),
            traceback=truncate(redact_text(failure.short_traceback()), MAX_TRACEBACK_CHARS),
            attempts=header_int(message.headers, ATTEMPTS_HEADER) + failure.attempts,
            first_failure_at=previous or failure.first_failure_at,
            last_failure_at=failure.last_failure_at,
            original_exchange=message.exchange or "",
            original_routing_key=message.routing_key or "",
            original_queue=self._queue,
            flow=self._flow,
            connector_version=__version__,
            pod=self._pod,
            trace_id=message.correlation_id or message.message_id,
        )
        return {**original, **headers.to_amqp()}

    async def dead_letter(self, message: AbstractIncomingMessage, failure: Failure) -> None:
        await self._bus.publish(
            self._exchange,
            OutgoingMessage(
                body=message.body,
                routing_key=self._queue,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                type=message.type,
                content_type=message.content_type or "application/octet-stream",
                headers=self.headers_for(message, failure),
                timestamp=message.timestamp,
            ),
        )


def _as_datetime(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
