"""Process-local, per-key mutual exclusion that does not grow without bound.

Every ledger backend serialises work on one external id inside the process with an
:class:`asyncio.Lock` per id. External ids are unbounded (one per hour entry ever seen), so a plain
``defaultdict(asyncio.Lock)`` would leak one lock per id for the life of the pod. :class:`KeyedLock`
keeps a lock only while some task holds it or waits for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Holders plus waiters: the slot may be dropped only when nobody can still touch its lock.
    users: int = 0


class KeyedLock:
    """One FIFO :class:`asyncio.Lock` per key, created on demand and dropped when unused.

    Not re-entrant: a task that acquires a key it already holds waits for itself forever (or until
    its timeout). Keys are independent: holding ``"a"`` never delays ``"b"``.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        """Number of keys currently held or waited for (0 when idle: nothing leaks)."""
        return len(self._slots)

    def locked(self, key: str) -> bool:
        """Whether some task holds ``key`` right now."""
        slot = self._slots.get(key)
        return slot is not None and slot.lock.locked()

    async def acquire(self, key: str, timeout: float | None = None) -> None:
        """Wait until this task holds ``key``.

        Raises :class:`TimeoutError` after ``timeout`` seconds; on that or on cancellation the task
        holds nothing and the slot is cleaned up as if it had never waited.
        """
        slot = self._slots.get(key)
        if slot is None:
            # Nobody else holds or waits for a key without a slot: its new lock is taken at once
            # (asyncio.Lock.acquire does not suspend when unlocked without waiters), so the
            # timeout's timer, which most acquisitions would arm and cancel for nothing, is skipped.
            slot = self._slots[key] = _Slot(users=1)
            await slot.lock.acquire()
            return
        slot.users += 1
        try:
            if timeout is None:
                await slot.lock.acquire()
            else:
                async with asyncio.timeout(timeout):
                    await slot.lock.acquire()
        except BaseException:
            # asyncio.Lock hands the lock on to the next waiter if we were woken and cancelled at
            # the same moment, so all that is left to undo is our registration.
            self._leave(key, slot)
            raise

    def release(self, key: str) -> None:
        """Release ``key``, which the calling task must hold."""
        slot = self._slots.get(key)
        if slot is None or not slot.lock.locked():
            raise RuntimeError(f"release of a key that is not held: {key!r}")
        slot.lock.release()
        self._leave(key, slot)

    def _leave(self, key: str, slot: _Slot) -> None:
        slot.users -= 1
        if slot.users == 0:
            del self._slots[key]
