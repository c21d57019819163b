"""One thread that runs calls one at a time, in submission order, answering on the event loop.

The SQLite ledger's writing connection lives on such a thread (a commit's fsync never blocks the
loop). It replaces a one-worker :class:`~concurrent.futures.ThreadPoolExecutor` behind
:func:`asyncio.wrap_future`, because each hop there costs a concurrent future, an asyncio future
chained to it, the executor's two locks and its idle-semaphore handshake with the worker: measured
on this machine, about 33 µs of the loop thread's CPU per hop against 19 µs for a queue and
:meth:`~asyncio.AbstractEventLoop.call_soon_threadsafe` (what aiosqlite does); in a profile of a
busy pod, ``ThreadPoolExecutor.submit`` alone was 6 % of the loop's CPU.

A call runs to its end even if the awaiting task is cancelled (the answer is then dropped) -- also
one still queued behind others, which the executor would have skipped. The ledger relies on
neither: its writes are idempotent upserts, and its committer leaves out the writes of callers
cancelled before their group was handed over. The thread is a daemon: a process that
exits without closing its ledger must not hang on it, and a commit cut short by the exit is one
that never happened (SQLite commits atomically) and whose caller was never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["SerialThread", "SerialThreadClosed"]

_T = TypeVar("_T")
_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class SerialThreadClosed(RuntimeError):
    """A call was submitted after :meth:`SerialThread.shutdown`."""


class SerialThread:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        # The thread holds the queue only, not this object: one that is dropped without shutdown()
        # is still collected, and its finalizer lets the thread end.
        self._thread = threading.Thread(target=_serve, args=(self._queue,), name=name, daemon=True)
        self._thread.start()
        weakref.finalize(self, self._queue.put, None)

    async def run(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on the thread, after everything submitted before it."""
        if self._closed:
            raise SerialThreadClosed("the thread has been shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.put((loop, future, fn))
        return await future

    def shutdown(self) -> None:
        """Refuse new calls; the thread ends once it has run those already submitted."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)


def _serve(calls: queue.SimpleQueue[_Item | None]) -> None:
    while (item := calls.get()) is not None:
        loop, future, fn = item
        try:
            result = fn()
        except StopIteration as exc:  # a future refuses it (TypeError): the caller would hang
            _answer(loop, future, _set_exception, RuntimeError(f"the call raised StopIteration: {exc!r}"))
        except BaseException as exc:  # handed to the caller, whatever it is
            _answer(loop, future, _set_exception, exc)
        else:
            _answer(loop, future, _set_result, result)
        del item, future, fn  # nothing of a finished call outlives it here


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    setter: Callable[[asyncio.Future[Any], Any], None],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
