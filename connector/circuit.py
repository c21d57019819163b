"""The circuit breaker for systemic failures (auth refused, quota spent, Severa down).

When every message would fail the same way, handling more of them only burns them into the DLQ.
A systemic error *trips* the circuit: the supervisor stops consuming, reports not-ready, and probes
Severa with backoff; the first successful probe closes the circuit and consumption resumes. Handlers
that hit the error meanwhile wait (holding their message, unacked) for the circuit to close.
"""

from __future__ import annotations

import asyncio
import enum
import time

from connector.errors import ConnectorError, describe
from connector.logging import get_logger

log = get_logger(__name__)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class Circuit:
    def __init__(self, name: str = "severa") -> None:
        self.name = name
        self._closed = asyncio.Event()
        self._closed.set()
        self._tripped = asyncio.Event()
        self.last_error: ConnectorError | None = None
        self.opened_at: float | None = None
        self.trips = 0

    @property
    def state(self) -> CircuitState:
        return CircuitState.CLOSED if self._closed.is_set() else CircuitState.OPEN

    @property
    def is_open(self) -> bool:
        return not self._closed.is_set()

    def trip(self, error: ConnectorError) -> None:
        """Open the circuit (idempotent while open); the supervisor is woken to pause and probe."""
        self.last_error = error
        if self._closed.is_set():
            self._closed.clear()
            self.opened_at = time.monotonic()
            self.trips += 1
            log.error("circuit_opened", circuit=self.name, **describe(error))
        self._tripped.set()

    def close(self) -> None:
        if not self._closed.is_set():
            opened_for = time.monotonic() - (self.opened_at or time.monotonic())
            log.info("circuit_closed", circuit=self.name, open_seconds=round(opened_for, 1))
        self.opened_at = None
        self._tripped.clear()
        self._closed.set()

    async def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the circuit is closed; False on timeout."""
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_tripped(self) -> None:
        await self._tripped.wait()
