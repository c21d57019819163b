"""The lifecycle every state store shares: set up once, close once, never reopen.

The ledger backends, the poller-state backends and the dead-letter store differ in what they
store and in the error a closed store raises; how they open and close is the same, so it is
written here once.
``setup()`` is idempotent and, on failure, leaves the store NEW so that start-up may simply call it
again; ``aclose()`` marks the store closed *before* closing it, so operations racing with close fail
fast instead of queueing on connections that are going away.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from types import TracebackType
from typing import Self


class Lifecycle(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class StoreLifecycle(abc.ABC):
    """Backends implement :meth:`_open`, :meth:`_close` and :meth:`_closed_error`."""

    def __init__(self) -> None:
        self._lifecycle = Lifecycle.NEW
        self._lifecycle_lock = asyncio.Lock()

    async def setup(self) -> None:
        async with self._lifecycle_lock:
            if self._lifecycle is Lifecycle.OPEN:
                return
            if self._lifecycle is Lifecycle.CLOSED:
                raise RuntimeError(f"{type(self).__name__} is closed and cannot be reopened")
            await self._open()
            self._lifecycle = Lifecycle.OPEN

    async def aclose(self) -> None:
        async with self._lifecycle_lock:
            was_open = self._lifecycle is Lifecycle.OPEN
            self._lifecycle = Lifecycle.CLOSED
            if was_open:
                await self._close()

    async def __aenter__(self) -> Self:
        await self.setup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._lifecycle is Lifecycle.OPEN:
            return
        if self._lifecycle is Lifecycle.NEW:
            raise RuntimeError(f"{type(self).__name__} is not set up: call setup() or use 'async with'")
        raise self._closed_error()

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    def _closed_error(self) -> Exception:
        """The error an operation on a closed store raises."""
