"""ByteBudget: the bytes of Severa answers one client holds at once, shared fairly and never lost.

Everything is driven by events and ``asyncio.sleep(0)`` turns (letting waiting tasks run), never by
time: the budget has no clock.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.severa.budget import MAX_INITIAL_RESERVATION, ByteBudget

MiB = 2**20


async def settle() -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("capacity", "largest", "holders", "initial"),
    [
        pytest.param(128 * MiB, 64 * MiB, 8, MAX_INITIAL_RESERVATION, id="the defaults start at one MiB"),
        pytest.param(64 * MiB, 64 * MiB, 8, 0, id="no room beside the largest: reserve it whole"),
        pytest.param(10, 6, 3, 2, id="room is shared by the other holders"),
        pytest.param(10_000, 100, 4, 100, id="never more than the largest answer"),
    ],
)
def test_the_first_reservation_leaves_room_for_one_largest_answer(
    capacity: int, largest: int, holders: int, initial: int
) -> None:
    budget = ByteBudget(capacity, largest=largest, holders=holders)
    assert budget.initial == initial
    assert largest + (holders - 1) * budget.initial <= capacity


def test_the_largest_answer_must_fit() -> None:
    with pytest.raises(ValueError, match="must fit"):
        ByteBudget(10, largest=11, holders=1)


async def test_bytes_are_granted_while_they_last_then_in_arrival_order() -> None:
    budget = ByteBudget(10, largest=10, holders=3)
    order: list[str] = []
    first = budget.reservation()
    await first.grow_to(8)

    async def want(name: str, size: int) -> None:
        async with budget.reservation() as share:
            await share.grow_to(size)
            order.append(name)
            await done[name].wait()

    done = {name: asyncio.Event() for name in ("large", "small")}
    large = asyncio.create_task(want("large", 5))
    await settle()
    small = asyncio.create_task(want("small", 1))
    await settle()
    # Two bytes are free: the small request would fit, but it came after the large one.
    assert order == []
    assert budget.waiting == 2
    first.release()
    await settle()
    assert order == ["large", "small"]
    assert budget.used == 6
    for event in done.values():
        event.set()
    await asyncio.gather(large, small)
    assert budget.used == 0


async def test_a_cancelled_waiter_takes_nothing_and_blocks_nobody() -> None:
    budget = ByteBudget(10, largest=10, holders=3)
    holder = budget.reservation()
    await holder.grow_to(10)
    blocked = asyncio.create_task(budget.reservation().grow_to(10))
    await settle()
    behind = budget.reservation()
    behind_task = asyncio.create_task(behind.grow_to(1))
    await settle()
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    holder.release()
    await behind_task
    assert (budget.used, budget.waiting) == (1, 0)
    behind.release()
    assert budget.used == 0


async def test_a_waiter_cancelled_after_its_grant_gives_the_bytes_back() -> None:
    budget = ByteBudget(10, largest=10, holders=2)
    holder = budget.reservation()
    await holder.grow_to(10)
    waiter = asyncio.create_task(budget.reservation().grow_to(4))
    await settle()
    holder.release()  # grants the waiter's four bytes ...
    waiter.cancel()  # ... but it is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0


async def test_every_holder_growing_at_once_does_not_deadlock() -> None:
    """Each holds the initial share and needs the rest of the largest answer: one at a time, all finish."""
    budget = ByteBudget(10, largest=6, holders=3)
    finished: list[int] = []
    gate = asyncio.Event()

    async def answer(number: int) -> None:
        async with budget.reservation() as share:
            await share.grow_to(budget.initial)
            await gate.wait()  # all three hold their initial share before any grows
            await share.grow_to(budget.largest)
            finished.append(number)

    tasks = [asyncio.create_task(answer(number)) for number in range(3)]
    await settle()
    assert budget.used == 3 * budget.initial
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(finished) == [0, 1, 2]
    assert budget.used == 0


async def test_release_is_idempotent() -> None:
    budget = ByteBudget(10, largest=10, holders=1)
    share = budget.reservation()
    await share.grow_to(7)
    await share.grow_to(3)  # already held: nothing more is taken
    assert budget.used == 7
    share.release()
    share.release()
    assert budget.used == 0
