"""The ledger's thread: calls in order, answers on the loop, cancellation and shutdown."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from connector.state.serial_thread import SerialThread, SerialThreadClosed


async def test_calls_run_on_one_other_thread_in_submission_order() -> None:
    worker = SerialThread("test-serial")
    seen: list[tuple[int, str]] = []

    def call(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * 2

    try:
        results = await asyncio.gather(*(worker.run(lambda n=n: call(n)) for n in range(50)))
    finally:
        worker.shutdown()
    assert results == [n * 2 for n in range(50)]
    assert [n for n, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-serial"}


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    worker = SerialThread("test-serial")

    def fail() -> None:
        raise ValueError("no")

    try:
        with pytest.raises(ValueError, match="no"):
            await worker.run(fail)
        assert await worker.run(lambda: 7) == 7
    finally:
        worker.shutdown()


async def test_a_cancelled_caller_does_not_stop_its_call_or_the_next() -> None:
    worker = SerialThread("test-serial")
    entered, leave, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> str:
        entered.set()
        leave.wait(10)
        finished.set()
        return "done"

    try:
        task = asyncio.create_task(worker.run(slow))
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        leave.set()
        assert await worker.run(lambda: "next") == "next"  # runs after slow, which completed
        assert finished.is_set()
    finally:
        worker.shutdown()


async def test_after_shutdown_calls_are_refused_and_one_in_progress_still_ends() -> None:
    worker = SerialThread("test-serial")
    entered, leave = threading.Event(), threading.Event()

    def first() -> str:
        entered.set()
        leave.wait(10)
        return "first"

    running = asyncio.create_task(worker.run(first))
    await asyncio.to_thread(entered.wait, 10)
    worker.shutdown()
    leave.set()
    assert await running == "first"
    with pytest.raises(SerialThreadClosed):
        await worker.run(lambda: None)
    await asyncio.to_thread(worker._thread.join, 10)
    assert not worker._thread.is_alive()


async def test_stop_iteration_reaches_the_caller_as_an_error_instead_of_hanging_it() -> None:
    worker = SerialThread("test-serial")

    def stops() -> None:
        raise StopIteration

    try:
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(worker.run(stops), 10)
    finally:
        worker.shutdown()


def test_a_thread_dropped_without_shutdown_ends_when_it_is_collected() -> None:
    worker = SerialThread("test-serial")
    thread = worker._thread
    del worker
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
