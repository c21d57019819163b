"""Supervised background tasks and the main loop's heartbeat: what liveness is made of.

A background task that dies quietly is the worst failure a long-running pod can have: the circuit
supervisor gone means a pod paused forever, a consumer keeper gone means a pod that never consumes
again -- and both still answer ``/healthz``. So every background task is started through a
:class:`TaskSupervisor`, which names it, logs its death with the exception once, and reports it
in :meth:`TaskSupervisor.dead`; liveness fails while any is dead, and Kubernetes restarts the pod.
A :class:`Heartbeat` task stamps the time every second (as arq's worker records its health): a
stamp older than its tolerance means the event loop is blocked or starved.

Owner rule: whoever starts a task cancels and awaits it (:meth:`TaskSupervisor.aclose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

from connector.logging import get_logger

log = get_logger(__name__)


class TaskSupervisor:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._closing = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coro`` as the supervised task ``name``."""
        return self.watch(name, asyncio.create_task(coro, name=name))

    def watch(self, name: str, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Supervise a task someone else started (e.g. a consumer's keeper)."""
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._on_done(name, done))
        return task

    def _on_done(self, name: str, task: asyncio.Task[Any]) -> None:
        if self._closing or task.cancelled():
            return
        exc = task.exception()
        log.error(
            "background_task_died",
            task=name,
            error=f"{type(exc).__name__}: {exc}" if exc else "returned",
            exc_info=exc,
        )

    def dead(self) -> list[str]:
        """Tasks that ended although nobody stopped them (a bug: liveness must fail)."""
        if self._closing:
            return []
        return sorted(name for name, task in self._tasks.items() if task.done())

    def begin_close(self) -> None:
        """From now on tasks may end: shutdown has begun (they are not reported dead)."""
        self._closing = True

    async def aclose(self) -> None:
        """Cancel every task and wait for them; idempotent."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()


class Heartbeat:
    """Stamps ``time.monotonic()`` every ``interval`` seconds from the event loop."""

    def __init__(self, interval: float = 1.0, tolerance: float = 15.0) -> None:
        self.interval = interval
        self.tolerance = tolerance
        self.last = time.monotonic()

    async def run(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(self.interval)  # a clock, not synchronisation

    @property
    def age(self) -> float:
        return time.monotonic() - self.last

    @property
    def fresh(self) -> bool:
        return self.age <= self.tolerance
