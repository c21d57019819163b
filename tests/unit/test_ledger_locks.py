"""KeyedLock: per-key exclusion that leaves nothing behind once nobody holds or waits."""

from __future__ import annotations

import asyncio

import pytest

from connector.state.locks import KeyedLock


async def test_an_idle_keyed_lock_holds_no_slots() -> None:
    locks = KeyedLock()
    await locks.acquire("a")
    assert len(locks) == 1
    assert locks.locked("a")
    locks.release("a")
    assert len(locks) == 0
    assert not locks.locked("a")


async def test_waiters_are_served_in_arrival_order_and_the_slot_goes_with_the_last() -> None:
    locks = KeyedLock()
    order: list[int] = []
    await locks.acquire("a")

    async def waiter(i: int) -> None:
        await locks.acquire("a")
        order.append(i)
        locks.release("a")

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)  # let every waiter queue up
    assert order == []
    locks.release("a")
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert len(locks) == 0


async def test_keys_are_independent() -> None:
    locks = KeyedLock()
    await locks.acquire("a")
    async with asyncio.timeout(1):
        await locks.acquire("b")
    locks.release("b")
    locks.release("a")
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    locks = KeyedLock()
    await locks.acquire("a")
    waiter = asyncio.create_task(locks.acquire("a"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    locks.release("a")
    assert len(locks) == 0


async def test_a_timed_out_waiter_raises_timeout_error_and_leaves_no_slot() -> None:
    locks = KeyedLock()
    await locks.acquire("a")
    with pytest.raises(TimeoutError):
        await locks.acquire("a", timeout=0.01)
    assert len(locks) == 1  # only the holder
    locks.release("a")
    assert len(locks) == 0


async def test_a_waiter_woken_and_cancelled_at_once_passes_the_lock_on() -> None:
    locks = KeyedLock()
    await locks.acquire("a")
    first = asyncio.create_task(locks.acquire("a"))
    second = asyncio.create_task(locks.acquire("a"))
    await asyncio.sleep(0)
    locks.release("a")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: `second` must get the lock
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(1):
        await second
    locks.release("a")
    assert len(locks) == 0


def test_releasing_a_key_nobody_holds_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not held"):
        KeyedLock().release("a")
