"""Stopping the console asks its replays to stop after their batch before it cancels any."""

from __future__ import annotations

import asyncio

from connector.console.runs import ConsoleRun, RunRegistry
from connector.dlq.operations import ReplayOutcome


async def test_closing_sets_each_runs_stop_and_lets_it_finish() -> None:
    registry = RunRegistry()
    run = ConsoleRun(replay_id="r1", operator="ops", selected=0)
    finished = asyncio.Event()

    async def work() -> ReplayOutcome:
        await run.stop.wait()  # what Replayer.run does between batches
        finished.set()
        return None  # type: ignore[return-value]

    registry.start(run, work())
    await registry.aclose(grace=10)
    assert finished.is_set()
    assert run.error is None  # ended by the stop, not cancelled


async def test_a_run_that_ignores_the_stop_is_cancelled_after_the_grace() -> None:
    registry = RunRegistry()
    run = ConsoleRun(replay_id="r1", operator="ops", selected=0)

    async def work() -> ReplayOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    registry.start(run, work())
    await registry.aclose(grace=0.01)
    assert run.stop.is_set()
    assert run.error is not None
    assert "resumes its rows" in run.error
