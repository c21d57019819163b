"""SQLite connections that let go of the file's locks when closed, whatever still points at them.

Since Python 3.11, ``sqlite3.Connection.close()`` is ``sqlite3_close_v2()``: while a statement
of the connection is unfinalized -- a cursor somewhere still alive -- SQLite keeps the closed
connection as a zombie, and with it its open transaction and the file's write lock, until the
last such cursor is freed. An execute cut short leaves exactly that behind: SQLAlchemy
invalidates a connection whose execute a cancellation interrupted (closing it, with no
rollback), and the cursor lives on in the traceback's reference cycle until the garbage
collector happens to run -- with the start-up heap frozen and a raised threshold
(:mod:`connector.heap`), that can be minutes. Seen: a pod's shutdown cancelled its heartbeat
writer while it migrated the dead-letter store under ``BEGIN IMMEDIATE``, and the next opener
of the file waited out the whole busy timeout.

:class:`ReleasingConnection` rolls an open transaction back before it closes, which releases
the locks at once (a pending statement is aborted by the rollback; only the memory waits for
the collector). Every SQLite connection the connector opens is one: :func:`connect` for
aiosqlite, :data:`FACTORY` for :func:`sqlite3.connect` and SQLAlchemy's ``connect_args``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Final

import aiosqlite

__all__ = ["FACTORY", "ReleasingConnection", "connect"]


class ReleasingConnection(sqlite3.Connection):
    """A :class:`sqlite3.Connection` whose :meth:`close` first ends an open transaction."""

    def close(self) -> None:
        # ProgrammingError (a subclass of sqlite3.Error) when already closed: nothing to end.
        with contextlib.suppress(sqlite3.Error):
            if self.in_transaction:
                self.rollback()
        super().close()


FACTORY: Final[dict[str, Any]] = {"factory": ReleasingConnection}
"""Keyword arguments that make :func:`sqlite3.connect` (or a driver passing them on) open one."""


def connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """:func:`aiosqlite.connect`, with a :class:`ReleasingConnection` under it."""
    return aiosqlite.connect(database, factory=ReleasingConnection, **kwargs)
