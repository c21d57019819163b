"""In-process retry of transient failures: jittered exponential backoff, bounded.

Only :class:`~connector.errors.TransientError` is retried; permanent and systemic errors pass
through at once (they are decided elsewhere). Retrying a whole handler is safe because handlers
are idempotent: the work-hours flow checks its ledger (and Severa, for a write whose answer was
lost) before writing again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from connector.errors import TransientError
from connector.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial_seconds: float = 0.2
    max_seconds: float = 5.0

    async def run(
        self, fn: Callable[[], Awaitable[T]], *, on_attempt: Callable[[int], None] | None = None
    ) -> T:
        """Call ``fn`` until it succeeds, raises a non-transient error or attempts run out.

        The last exception is re-raised as is (not wrapped in tenacity's ``RetryError``), and
        ``on_attempt`` is told the number of each attempt so callers can report how many were made.

        The first attempt is a plain call: nearly every event succeeds at once, and building
        tenacity's machinery for it was ~40 µs of every event's CPU. Only a transient failure
        hands over to tenacity, which starts from that failure (its first attempt re-raises it),
        so the waits, the log lines and the attempt numbers are what they always were.
        """
        if on_attempt is not None:
            on_attempt(1)
        try:
            return await fn()
        except TransientError as exc:
            if self.attempts <= 1:
                raise
            first: TransientError | None = exc

        async def again() -> T:
            nonlocal first
            if first is not None:
                seen, first = first, None
                raise seen
            return await fn()

        return await self._retrying(again, on_attempt)

    async def _retrying(self, fn: Callable[[], Awaitable[T]], on_attempt: Callable[[int], None] | None) -> T:
        """Tenacity from the first attempt on (the first was made already; it is not counted again)."""

        def _log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "transient_failure_retrying",
                attempt=state.attempt_number,
                of=self.attempts,
                next_in_s=round(state.upcoming_sleep, 3),
                error=str(exc),
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.initial_seconds, max=self.max_seconds),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if on_attempt is not None and attempt.retry_state.attempt_number > 1:
                    on_attempt(attempt.retry_state.attempt_number)
                return await fn()
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
