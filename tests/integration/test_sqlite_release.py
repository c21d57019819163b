"""A SQLite connection closed under a live cursor gives the file's write lock up at once.

The failure this guards against (:mod:`connector.state.sqlite_connection`): an execute cut short
by a cancellation leaves its cursor alive in a traceback's reference cycle; SQLAlchemy closes the
connection, SQLite keeps it as a zombie with its transaction, and the next writer of the file
waits for the garbage collector. The collector is switched off here so that it cannot hide it.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosqlite
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from connector.state import sqlite_connection
from connector.state.migrations import sqlite_begin_immediate

pytestmark = pytest.mark.integration


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def free_for_writing(path: Path) -> bool:
    """Whether another connection can take the write lock without waiting."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(10)])
    setup.close()
    return path


@pytest.mark.parametrize(
    ("factory", "released"),
    [(sqlite3.Connection, False), (sqlite_connection.ReleasingConnection, True)],
    ids=["plain-sqlite3-keeps-the-lock", "releasing-connection"],
)
def test_closing_under_a_live_cursor(database: Path, no_gc: None, factory: type, released: bool) -> None:
    """The premise (a plain connection keeps the lock) and the fix, side by side."""
    conn = sqlite3.connect(database, isolation_level=None, factory=factory)
    conn.execute("BEGIN IMMEDIATE")
    cursor = conn.execute("SELECT x FROM t")
    cursor.fetchone()  # the statement is now mid-way, as an interrupted execute leaves it
    conn.close()
    assert free_for_writing(database) is released
    del cursor


@pytest.mark.parametrize(
    ("opener", "released"),
    [(aiosqlite.connect, False), (sqlite_connection.connect, True)],
    ids=["plain-aiosqlite-keeps-the-lock", "releasing-connection"],
)
async def test_a_cancelled_execute_under_begin_immediate(
    database: Path, no_gc: None, opener: Callable[..., aiosqlite.Connection], released: bool
) -> None:
    """The path a pod took at shutdown: SQLAlchemy engine, BEGIN IMMEDIATE, execute cancelled."""
    entered, leave = threading.Event(), threading.Event()

    def hold(_: int) -> int:  # runs on the driver's thread, inside the statement
        entered.set()
        leave.wait(10)
        return 0

    async def connect() -> object:
        db = await opener(str(database), isolation_level=None, timeout=5)
        await db.create_function("hold", 1, hold)
        return db

    engine = create_async_engine("sqlite+aiosqlite://", poolclass=NullPool, async_creator=connect)
    sqlite_begin_immediate(engine)

    async def write() -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            await conn.execute(sa.text("SELECT hold(x) FROM t"))

    task = asyncio.create_task(write())
    await asyncio.to_thread(entered.wait, 10)
    task.cancel()
    leave.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.dispose()
    assert free_for_writing(database) is released
    if released:  # and the insert rolled back
        assert sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone() == (10,)
