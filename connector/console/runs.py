"""Replays started from the console, running beside the requests that show their progress.

A confirmed replay is started as a task of the console process and the browser is sent to its
page (``/runs/<replay id>``), which re-renders every second while the run goes on (a
``<meta http-equiv="refresh">``: live progress without a line of script, so the strict CSP
stays as it is). The page reads the progress from the store (rows of the run by status), so it
also works from another replica; what only this process knows -- the canary's verdict, an error
before the run was recorded -- is kept here for the last :data:`KEEP` runs.

A run is not tied to the request that started it: closing the tab does not stop it. Stopping the
console asks the runs in progress to stop after the batch in flight (as Ctrl-C does for ``dlq
replay``), waits :data:`STOP_GRACE_SECONDS` for them, then cancels what is left; a cancelled run's
rows stay ``replaying`` under a run whose lock is gone, and the next replay resumes them (see
:mod:`connector.dlq.replay`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from connector.dlq.operations import ReplayOutcome
from connector.errors import ConnectorError
from connector.logging import get_logger

log = get_logger(__name__)

KEEP: Final = 50
STOP_GRACE_SECONDS: Final = 30.0


@dataclass(slots=True)
class ConsoleRun:
    """One replay this console started."""

    replay_id: str
    operator: str
    selected: int
    task: asyncio.Task[None] | None = None
    outcome: ReplayOutcome | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # the replay ends after its batch


class RunRegistry:
    """The console's replays in progress and the latest finished ones."""

    def __init__(self, *, keep: int = KEEP) -> None:
        self._runs: OrderedDict[str, ConsoleRun] = OrderedDict()
        self._keep = keep

    def start(self, run: ConsoleRun, work: Coroutine[Any, Any, ReplayOutcome]) -> ConsoleRun:
        async def supervised() -> None:
            try:
                run.outcome = await work
            except ConnectorError as exc:
                run.error = exc.message
                log.warning("console_replay_failed", replay_id=run.replay_id, error=exc.message)
            except asyncio.CancelledError:
                run.error = "the console stopped during the replay; the next replay resumes its rows"
                raise
            except Exception as exc:  # reported on the run's page, never a silent drop
                run.error = f"{type(exc).__name__}: {exc}"
                log.exception("console_replay_crashed", replay_id=run.replay_id)
            finally:
                run.done.set()

        run.task = asyncio.create_task(supervised(), name=f"console-replay:{run.replay_id}")
        self._runs[run.replay_id] = run
        while len(self._runs) > self._keep:
            oldest = next(iter(self._runs.values()))
            if not oldest.done.is_set():
                break
            self._runs.popitem(last=False)
        return run

    def get(self, replay_id: str) -> ConsoleRun | None:
        return self._runs.get(replay_id)

    async def aclose(self, grace: float = STOP_GRACE_SECONDS) -> None:
        tasks = [run.task for run in self._runs.values() if run.task is not None and not run.task.done()]
        if not tasks:
            return
        for run in self._runs.values():
            run.stop.set()  # as Ctrl-C does: finish and settle the batch in flight
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
