"""``ByteBudget``: how many bytes of Severa answers one client may hold in memory at once.

``max_response_bytes`` bounds one answer; without a bound across answers, eight concurrent calls may
each hold 64 MiB (more than a 512 MiB pod can carry once parsing is added). Every call therefore
reserves the bytes it is about to hold from one budget per client (``max_buffered_bytes``) and
gives them back when it has read and parsed the answer; a call that cannot get its bytes waits,
first come first served, instead of buffering them.

How much a call reserves, and when:

* an answer with a ``Content-Length`` (and no ``Content-Encoding``) reserves that length before its
  body is read: the HTTP parser never delivers more;
* an answer of unknown size (chunked, or compressed: the decompressed size is unknown) starts with
  :attr:`ByteBudget.initial` bytes and, if it outgrows them, waits once for the rest of
  ``max_response_bytes``.

That second wait is made while holding ``initial`` bytes. It cannot deadlock because ``initial`` is
chosen so that ``max_response_bytes + (max_concurrency - 1) * initial <= max_buffered_bytes``: when
every holder is waiting, each holds at most ``initial``, so the first waiter always fits. When the
settings leave no room (``max_buffered_bytes == max_response_bytes``), ``initial`` is 0 and an answer
of unknown size reserves the whole ``max_response_bytes`` at once.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType
from typing import Final, Self

#: The most an answer of unknown size reserves before it has shown that it is large. Most answers
#: are a few KiB; one MiB keeps them from queueing behind each other.
MAX_INITIAL_RESERVATION: Final = 1024 * 1024


class ByteBudget:
    """A pool of ``capacity`` bytes shared by the concurrent calls of one client (asyncio, one loop)."""

    def __init__(self, capacity: int, *, largest: int, holders: int) -> None:
        if largest > capacity:
            raise ValueError("one answer (largest) must fit in the budget (capacity)")
        self.capacity = capacity
        self.largest = largest
        spare = (capacity - largest) // max(holders - 1, 1)
        self.initial = min(MAX_INITIAL_RESERVATION, spare, largest)
        self._used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def used(self) -> int:
        """Bytes reserved right now."""
        return self._used

    @property
    def waiting(self) -> int:
        """Calls waiting for bytes right now."""
        return sum(1 for _, future in self._waiters if not future.done())

    def reservation(self) -> Reservation:
        """An empty share of the budget; use it as an async context manager so that it is returned."""
        return Reservation(self)

    async def _acquire(self, size: int) -> None:
        if size > self.capacity:
            raise ValueError(f"cannot reserve {size} bytes from a budget of {self.capacity}")
        if not self._waiters and self._used + size <= self.capacity:
            self._used += size
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._used -= size  # granted, but the waiter was cancelled before it could use them
            else:
                self._waiters.remove(entry)
            self._grant()
            raise

    def _release(self, size: int) -> None:
        self._used -= size
        self._grant()

    def _grant(self) -> None:
        # Strictly in arrival order: a large request is not overtaken for ever by small ones.
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self._used + size > self.capacity:
                return
            self._waiters.popleft()
            self._used += size
            future.set_result(None)


class Reservation:
    """One call's share of a :class:`ByteBudget`; grows on demand, returned all at once on exit."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0

    async def grow_to(self, total: int) -> None:
        """Hold at least ``total`` bytes, waiting for them if the budget is spent."""
        if total > self.held:
            await self._budget._acquire(total - self.held)
            self.held = total

    def release(self) -> None:
        """Give every held byte back (idempotent)."""
        held, self.held = self.held, 0
        if held:
            self._budget._release(held)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
