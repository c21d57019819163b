"""The one place that decides what happens to a consumed message: ack, dead-letter or hold.

Flows are plain ``async def handle(delivery)`` functions that either return (done) or raise one of
:mod:`connector.errors`. :class:`MessageProcessor` wraps them::

    success                       → ack (after the side effect: at-least-once, handlers idempotent)
    TransientError                → retried in process with backoff; still failing → dead-letter
    PermanentError / any bug      → dead-letter at once (publish with confirm, then ack)
    SystemicError                 → trip the circuit and hold the message unacked until the circuit
                                    closes, then handle it again; held too long → back to the queue

A message is acked only after its dead-letter copy is confirmed by the broker, so nothing is lost
between the two; if dead-lettering itself fails the message is returned to the queue.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage

from connector.circuit import Circuit
from connector.errors import (
    Category,
    ConnectorError,
    SystemicError,
    classify,
    describe,
    outage_behind,
    reason_of,
)
from connector.logging import bind_message_context, get_logger
from connector.observability import Metrics
from connector.retry import RetryPolicy

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A consumed message as flows see it: no broker objects, nothing to ack."""

    body: bytes
    routing_key: str
    exchange: str
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    redelivered: bool = False

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> Delivery:
        return cls(
            body=message.body,
            routing_key=message.routing_key or "",
            exchange=message.exchange or "",
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            headers=dict(message.headers or {}),
            redelivered=bool(message.redelivered),
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Everything known about a message's failure, for the dead-letter headers and result events."""

    error: BaseException
    attempts: int
    first_failure_at: dt.datetime
    last_failure_at: dt.datetime

    @property
    def category(self) -> Category:
        return classify(self.error)

    @property
    def reason(self) -> str:
        return reason_of(self.error)

    @property
    def message(self) -> str:
        return self.error.message if isinstance(self.error, ConnectorError) else str(self.error)

    def short_traceback(self, limit: int = 8) -> str:
        return "".join(traceback.format_exception(self.error, limit=limit))


Handler = Callable[[Delivery], Awaitable[None]]


class RetryScheduler(Protocol):
    """Where a transiently failing message waits before its next try (:mod:`connector.delayed_retry`)."""

    def next_delay(self, message: AbstractIncomingMessage) -> float | None: ...

    async def schedule(self, message: AbstractIncomingMessage, failure: Failure) -> float: ...


class DeadLetterSink(Protocol):
    """Where the processor parks a message it gives up on (see :class:`connector.dlq.DeadLetterer`)."""

    async def dead_letter(self, message: AbstractIncomingMessage, failure: Failure) -> None: ...


FailureHook = Callable[[Delivery, Failure], Awaitable[None]]


class MessageProcessor:
    def __init__(
        self,
        *,
        flow: str,
        handler: Handler,
        dead_letters: DeadLetterSink,
        circuit: Circuit,
        retry: RetryPolicy,
        metrics: Metrics,
        hold_seconds: float = 600.0,
        max_holds: int = 5,
        on_dead_letter: FailureHook | None = None,
        retry_later: RetryScheduler | None = None,
    ) -> None:
        self.flow = flow
        self._handler = handler
        self._dead_letters = dead_letters
        self._circuit = circuit
        self._retry = retry
        self._metrics = metrics
        self._hold_seconds = hold_seconds
        # A message that fails "systemically" again and again while probes succeed is not a victim
        # of an outage but a poison message that Severa chokes on: dead-letter it after max_holds.
        self._max_holds = max_holds
        self._on_dead_letter = on_dead_letter
        self._retry_later = retry_later

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery.from_message(message)
        started = time.perf_counter()
        with bind_message_context(
            flow=self.flow, event_id=delivery.message_id, correlation_id=delivery.correlation_id
        ):
            outcome = await self._process(message, delivery)
        self._metrics.messages.labels(flow=self.flow, outcome=outcome).inc()
        self._metrics.processing_seconds.labels(flow=self.flow).observe(time.perf_counter() - started)

    async def _process(self, message: AbstractIncomingMessage, delivery: Delivery) -> str:
        attempts = 0
        holds = 0
        first_failure: dt.datetime | None = None

        def count(_: int) -> None:
            nonlocal attempts
            attempts += 1

        while True:
            try:
                await self._retry.run(lambda: self._handler(delivery), on_attempt=count)
            except Exception as exc:
                now = dt.datetime.now(dt.UTC)
                first_failure = first_failure or now
                systemic = exc if isinstance(exc, SystemicError) else outage_behind(exc)
                if systemic is not None and holds < self._max_holds:
                    # Severa is unusable for everyone: hold this message, pause, resume later.
                    holds += 1
                    self._circuit.trip(systemic)
                    log.warning("message_held_circuit_open", reason=systemic.reason, hold=holds)
                    if await self._circuit.wait_closed(self._hold_seconds):
                        continue  # Severa is usable again: handle the same message once more
                    await _settle(message.nack(requeue=True), "nack")
                    return "requeued"
                failure = Failure(exc, max(attempts, 1), first_failure, now)
                if (
                    failure.category is Category.TRANSIENT
                    and self._retry_later is not None
                    and self._retry_later.next_delay(message) is not None
                ):
                    return await self._retry_after_delay(message, failure)
                return await self._give_up(message, delivery, failure)
            else:
                await _settle(message.ack(), "ack")
                return "acked"

    async def _retry_after_delay(self, message: AbstractIncomingMessage, failure: Failure) -> str:
        assert self._retry_later is not None
        try:
            delay = await self._retry_later.schedule(message, failure)
        except Exception as exc:
            log.error("retry_schedule_failed_requeueing", error=str(exc))
            await _settle(message.nack(requeue=True), "nack")
            return "requeued"
        log.warning(
            "message_retry_scheduled", delay_s=delay, attempts=failure.attempts, reason=failure.reason
        )
        await _settle(message.ack(), "ack")
        return "retry_scheduled"

    async def _give_up(self, message: AbstractIncomingMessage, delivery: Delivery, failure: Failure) -> str:
        log_method = log.warning if failure.category is Category.PERMANENT else log.error
        log_method(
            "message_dead_lettered",
            attempts=failure.attempts,
            **describe(failure.error),
            exc_info=failure.category is not Category.PERMANENT
            or not isinstance(failure.error, ConnectorError),
        )
        try:
            await self._dead_letters.dead_letter(message, failure)
        except Exception as exc:
            # The DLQ copy is not confirmed: keep the original rather than risk losing it.
            log.error("dead_letter_failed_requeueing", error=str(exc))
            await _settle(message.nack(requeue=True), "nack")
            return "requeued"
        await _settle(message.ack(), "ack")
        if self._on_dead_letter is not None:
            try:
                await self._on_dead_letter(delivery, failure)
            except Exception as exc:  # the message is safe in the DLQ; a lost notice is only logged
                log.warning("failure_notice_not_published", error=str(exc))
        return "dead_lettered"


async def _settle(action: Awaitable[None], what: str) -> None:
    """Ack/nack; if the channel died meanwhile the broker redelivers, which idempotency absorbs."""
    try:
        await action
    except Exception as exc:
        log.warning("settle_failed_message_will_be_redelivered", action=what, error=str(exc))
