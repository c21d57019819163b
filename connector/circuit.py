"""The circuit breaker for systemic failures (auth refused, quota spent, Severa down).

When every message would fail the same way, handling more of them only burns them into the DLQ.
A systemic error *trips* the circuit::

    CLOSED ──trip──► OPEN ──probe ok──► HALF_OPEN ──trial not systemic──► CLOSED
                      ▲                     │
                      └──trial systemic─────┘     (no held message to try: CLOSED at once)

While OPEN the supervisor has stopped consuming, reports not-ready and probes Severa with backoff.
A successful probe proves little when only one operation is refused (an API user without the right
to write hour entries passes the read-only probe), so the circuit does not simply close: it goes
HALF_OPEN and lets exactly one held message through as a *trial*. Only if that trial ends without
a systemic failure does the circuit close and every held message go again; a systemic trial opens
it again and the supervisor keeps backing off. Held messages are never dead-lettered for being
held -- only a message that keeps failing while other messages succeed is suspected of being the
cause (see :attr:`Circuit.evidence_of_health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable

from connector.errors import ConnectorError, describe
from connector.logging import get_logger

log = get_logger(__name__)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Circuit:
    def __init__(self, name: str = "severa") -> None:
        self.name = name
        self._state = CircuitState.CLOSED
        self._changed = asyncio.Event()
        self._tripped = asyncio.Event()
        self._trial_taken = False
        self._trial_active = False
        self._holding = True
        self._waiters = 0
        self.last_error: ConnectorError | None = None
        self.opened_at: float | None = None
        self.trips = 0
        #: Handled messages that did not fail systemically, ever (monotonic).
        self.successes = 0
        self._successes_at_close = 0

    # -- reading --------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def is_open(self) -> bool:
        """True unless CLOSED: consumption stays paused while OPEN and HALF_OPEN."""
        return self._state is not CircuitState.CLOSED

    @property
    def waiters(self) -> int:
        """Messages held, waiting for the circuit."""
        return self._waiters

    @property
    def evidence_of_health(self) -> bool:
        """Did a message succeed since the circuit last closed (the trial that closed it included)?

        A systemic failure while this is true is not the outage's fault: Severa served someone
        else meanwhile, so the failing message may itself be the cause (a poison message).
        """
        return self.successes > self._successes_at_close

    # -- transitions ----------------------------------------------------------------------------

    def trip(self, error: ConnectorError) -> None:
        """Open the circuit (idempotent while open); the supervisor is woken to pause and probe."""
        self.last_error = error
        if self._state is not CircuitState.OPEN:
            if self._state is CircuitState.CLOSED:
                self.opened_at = time.monotonic()
                self.trips += 1
                # A pod starts with its circuits open until each dependency answered once: that is
                # the normal start, not an error anyone should be paged for.
                starting = error.reason.endswith("_not_reached_yet")
                (log.info if starting else log.error)("circuit_opened", circuit=self.name, **describe(error))
            else:
                log.warning("circuit_trial_failed", circuit=self.name, **describe(error))
            self._state = CircuitState.OPEN
            self._trial_taken = False
            self._trial_active = False
            self._notify()
        self._tripped.set()

    def half_open(self) -> None:
        """A probe succeeded: let one held message try (or close at once if none is held)."""
        if self._state is not CircuitState.OPEN:
            return
        if self._waiters == 0:
            self.close()
            return
        self._state = CircuitState.HALF_OPEN
        self._trial_taken = False
        self._trial_active = False
        log.info("circuit_half_open", circuit=self.name, held=self._waiters)
        self._notify()

    def close(self, *, by_trial: bool = False) -> None:
        if self._state is not CircuitState.CLOSED:
            opened_for = time.monotonic() - (self.opened_at or time.monotonic())
            log.info("circuit_closed", circuit=self.name, open_seconds=round(opened_for, 1))
        self._state = CircuitState.CLOSED
        self.opened_at = None
        self._trial_taken = False
        self._trial_active = False
        self._tripped.clear()
        # The trial that closed the circuit is itself evidence that Severa works.
        self._successes_at_close = self.successes - 1 if by_trial else self.successes
        self._notify()

    def record_success(self, *, evidence: bool = True) -> None:
        """A handled message did not fail systemically; in HALF_OPEN that closes the circuit.

        ``evidence``: the outcome was served by the dependency (an ack, Severa refusing a write).
        A message refused before it reached Severa (not JSON, a schema violation) proves nothing
        about Severa: it still ends a trial, but does not count as a success of others when a
        message is judged a poison suspect, nor reset the supervisor's backoff.
        """
        if evidence:
            self.successes += 1
        if self._state is CircuitState.HALF_OPEN:
            self.close(by_trial=evidence)

    def abandon_trial(self) -> None:
        """The trial ended without a verdict (its task was cancelled), or nobody is left to try:
        open again, not a new trip, so the next probe starts another trial (or closes the circuit)
        instead of it waiting half-open forever."""
        if self._state is CircuitState.HALF_OPEN:
            log.warning("circuit_trial_abandoned", circuit=self.name, trial_taken=self._trial_taken)
            self._state = CircuitState.OPEN
            self._trial_taken = False
            self._trial_active = False
            self._tripped.set()
            self._notify()

    @property
    def trial_pending(self) -> bool:
        """HALF_OPEN with a trial admitted and not yet decided."""
        return self._state is CircuitState.HALF_OPEN and self._trial_active

    def stop_holding(self) -> None:
        """Shutting down: every held message stops waiting (it is put back, not cancelled)."""
        self._holding = False
        self._notify()

    # -- waiting --------------------------------------------------------------------------------

    async def _wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``ready()`` holds after some transition; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not ready():
            if not self._holding:
                return False
            changed = self._changed
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                # A transition in the same loop turn as the timeout must not be lost: a trial
                # offered just now and given up on would leave the circuit half-open with nobody.
                return self._holding and ready()
        return True

    async def wait_usable(self, timeout: float | None = None) -> bool:
        """Hold until this message may try again: CLOSED, or HALF_OPEN and it won the trial.

        False when ``timeout`` ran out first (the caller puts the message back).
        """
        self._waiters += 1
        try:
            return await self._wait_for(self._admit, timeout)
        finally:
            self._waiters -= 1

    def _admit(self) -> bool:
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.HALF_OPEN and not self._trial_taken:
            self._trial_taken = True
            self._trial_active = True
            return True
        return False

    async def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the circuit is closed (not merely half-open); False on timeout."""
        return await self._wait_for(lambda: self._state is CircuitState.CLOSED, timeout)

    async def wait_tripped(self) -> None:
        await self._tripped.wait()

    async def wait_changed(self, timeout: float) -> None:
        """Wake on the next transition, or after ``timeout``; for the supervisor's loop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _notify(self) -> None:
        # Wake everyone waiting on the current generation and start a new one: waiters re-check
        # their condition, so no transition is missed and nothing needs a task of its own.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
