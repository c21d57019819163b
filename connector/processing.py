"""The one place that decides what happens to a consumed message: ack, retry later, dead-letter or hold.

Flows are plain ``async def handle(delivery)`` functions that either return (done) or raise one of
:mod:`connector.errors`. :class:`MessageProcessor` wraps them::

    success                       → ack (after the side effect: at-least-once, handlers idempotent)
    TransientError                → retried in process with backoff; still failing → the delayed
                                    retry ladder; past its last rung → dead-letter
    PermanentError / any bug      → dead-letter at once (publish with confirm, then ack)
    SystemicError                 → trip the circuit and hold the message unacked until the circuit
                                    lets it try again; held until the hold deadline → put back on
                                    the queue (republished with confirm, then acked -- a requeue
                                    would count against the quorum delivery limit)

Bounds, derived from each other and checked at start (:mod:`connector.config`): one delivery is
settled within ``budget_seconds`` (the broker's ``consumer_timeout`` minus a margin -- past it the
broker closes the channel); a hold ends by ``hold_seconds`` (< budget); a message that fails
systemically while other messages succeed (:attr:`Circuit.evidence_of_health`) earns a strike,
carried across deliveries in ``x-systemic-strikes``, and is dead-lettered as a suspected poison
message at ``poison_strikes`` -- one bad message cannot pause the pod more often than that.

A message is acked only after its dead-letter (or retry, or put-back) copy is confirmed by the
broker, so nothing is lost between the two; if that publish fails the message is returned to the
queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage

from connector import tracing
from connector.circuit import Circuit, CircuitState
from connector.errors import (
    Category,
    ConnectorError,
    PermanentError,
    SystemicError,
    TransientError,
    classify,
    describe,
    outage_behind,
    reason_of,
)
from connector.headers import RETRY_STEP_HEADER, drop_untrusted_counters, header_int
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


class Republisher(Protocol):
    """Puts a message back on its work queue with extra headers (:mod:`connector.delayed_retry`)."""

    async def put_back(
        self,
        message: AbstractIncomingMessage,
        headers: Mapping[str, Any],
        *,
        first_failure_at: dt.datetime,
        attempts: int,
    ) -> None: ...


#: Systemic failures a message caused while other messages succeeded (our own header).
STRIKES_HEADER = "x-systemic-strikes"
#: How long before the broker's consumer_timeout a delivery must be settled.
BUDGET_MARGIN_SECONDS = 60.0


class ProcessingBudgetExceeded(TransientError):
    """Handling one delivery took longer than its budget; it is retried later instead."""

    reason = "processing_budget_exceeded"


class SuspectedPoisonMessage(PermanentError):
    """A message that keeps failing "systemically" while Severa serves other messages."""

    reason = "suspected_poison_message"


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
        budget_seconds: float = 1800.0 - BUDGET_MARGIN_SECONDS,
        poison_strikes: int = 3,
        on_dead_letter: FailureHook | None = None,
        retry_later: RetryScheduler | None = None,
        put_back: Republisher | None = None,
    ) -> None:
        if not 0 < hold_seconds < budget_seconds:
            raise ValueError(f"hold_seconds ({hold_seconds}) must be > 0 and < budget ({budget_seconds})")
        self.flow = flow
        self._handler = handler
        self._dead_letters = dead_letters
        self._circuit = circuit
        self._retry = retry
        self._metrics = metrics
        self._hold_seconds = hold_seconds
        self._budget_seconds = budget_seconds
        self._poison_strikes = poison_strikes
        self._on_dead_letter = on_dead_letter
        self._retry_later = retry_later
        self._put_back = put_back

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        if isinstance(message.headers, dict):
            drop_untrusted_counters(message.headers, message.exchange or "")
        delivery = Delivery.from_message(message)
        started = time.perf_counter()
        self._metrics.delivered(self.flow, message.timestamp)
        in_flight = self._metrics.in_flight.labels(flow=self.flow)
        in_flight.inc()
        try:
            with (
                bind_message_context(
                    flow=self.flow, event_id=delivery.message_id, correlation_id=delivery.correlation_id
                ),
                tracing.consuming(self.flow, delivery) as traced,  # a no-op unless tracing is on
            ):
                outcome = await self._process(message, delivery)
                traced.outcome(outcome)
        finally:
            in_flight.dec()
        self._metrics.messages.labels(flow=self.flow, outcome=outcome).inc()
        self._metrics.processing_seconds.labels(flow=self.flow).observe(time.perf_counter() - started)

    async def _process(self, message: AbstractIncomingMessage, delivery: Delivery) -> str:
        loop = asyncio.get_running_loop()
        budget_deadline = loop.time() + self._budget_seconds
        hold_deadline = loop.time() + self._hold_seconds
        attempts = 0
        strikes = header_int(message.headers, STRIKES_HEADER)
        first_failure: dt.datetime | None = None
        trial = False

        def count(_: int) -> None:
            nonlocal attempts
            attempts += 1

        while True:
            served_before = self._circuit.successes
            try:
                try:
                    async with asyncio.timeout_at(budget_deadline):
                        await self._retry.run(lambda: self._handler(delivery), on_attempt=count)
                except asyncio.CancelledError:
                    if trial:  # the trial ends without a verdict: let the next probe start another
                        self._circuit.abandon_trial()
                    raise
                except TimeoutError as exc:
                    if loop.time() < budget_deadline:
                        raise  # a timeout of the handler's own, not the budget's
                    raise ProcessingBudgetExceeded(
                        f"handling took longer than its {self._budget_seconds:g}s budget (the broker "
                        "closes a channel that holds a delivery past its consumer_timeout)"
                    ) from exc
            except Exception as exc:
                now = dt.datetime.now(dt.UTC)
                first_failure = first_failure or now
                systemic = exc if isinstance(exc, SystemicError) else outage_behind(exc)
                if systemic is not None:
                    if self._circuit.successes > served_before:
                        # Others were served by Severa while this message failed: it, not an
                        # outage, may be the cause. (During an outage nobody is served.)
                        strikes += 1
                    if strikes < self._poison_strikes:
                        self._circuit.trip(systemic)
                        if trial or loop.time() >= hold_deadline:
                            # A failed trial goes to the back of the queue so that the next trial
                            # is another message; a message held to its deadline likewise.
                            return await self._give_back(message, strikes, first_failure, attempts)
                        log.warning("message_held_circuit_open", reason=systemic.reason, strikes=strikes)
                        held_from = loop.time()
                        usable = await self._circuit.wait_usable(hold_deadline - loop.time())
                        self._metrics.hold_seconds.labels(flow=self.flow).observe(loop.time() - held_from)
                        if usable:
                            trial = self._circuit.state is not CircuitState.CLOSED
                            continue  # the circuit lets this message try again
                        return await self._give_back(message, strikes, first_failure, attempts)
                    exc = SuspectedPoisonMessage(
                        f"failed {strikes} times with {systemic.reason} while Severa served other "
                        f"messages, so it is parked as the likely cause: {systemic.message}",
                        strikes=strikes,
                        systemic_reason=systemic.reason,
                    )
                    exc.__cause__ = systemic
                # Not systemic: the trial (if this was one) is over; it is evidence that Severa
                # works only if Severa itself answered (a refusal), not for a body it never saw.
                self._circuit.record_success(
                    evidence=isinstance(exc, ConnectorError) and exc.answered_by_peer
                )
                failure = Failure(exc, max(attempts, 1), first_failure, now)
                if (
                    failure.category is Category.TRANSIENT
                    and self._retry_later is not None
                    and self._retry_later.next_delay(message) is not None
                ):
                    return await self._retry_after_delay(message, failure)
                return await self._give_up(message, delivery, failure)
            else:
                self._circuit.record_success()
                await _settle(message.ack(), "ack")
                return "acked"

    async def _give_back(
        self, message: AbstractIncomingMessage, strikes: int, first_failure: dt.datetime, attempts: int
    ) -> str:
        """End this delivery without losing the message or spending its delivery limit."""
        if self._put_back is not None:
            try:
                await self._put_back.put_back(
                    message, {STRIKES_HEADER: strikes}, first_failure_at=first_failure, attempts=attempts
                )
            except Exception as exc:
                log.error("put_back_failed_requeueing", error=str(exc))
            else:
                await _settle(message.ack(), "ack")
                log.info("message_put_back_circuit_open", strikes=strikes)
                return "put_back"
        await _settle(message.nack(requeue=True), "nack")
        return "requeued"

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
        step = header_int(message.headers, RETRY_STEP_HEADER) + 1  # the rung it was just sent to
        self._metrics.delayed_retries.labels(flow=self.flow, step=str(step), reason=failure.reason).inc()
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
