"""The store's driver statements bind as the engine would, with constants processed once."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg

from connector.dlq.sql import EVENT_COLUMNS, DriverStatement
from connector.dlq.sqlite import SqliteStore

NOW = dt.datetime(2026, 12, 1, 12, 30, 0, 1, tzinfo=dt.UTC)


@pytest.fixture(params=[sqlite.dialect(), asyncpg.dialect()], ids=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> sa.Dialect:
    return request.param  # type: ignore[no-any-return]


def test_the_replayed_update_binds_only_named_parameters(dialect: sa.Dialect) -> None:
    statement = DriverStatement.compile(SqliteStore(":memory:")._replayed_update(), dialect)
    assert sorted(statement.keys) == ["b_at", "b_id", "b_run", "b_to", "b_updated"]
    assert "'replaying'" in statement.text
    assert "'replayed'" in statement.text


def test_a_binder_gives_the_rows_bind_gives(dialect: sa.Dialect) -> None:
    store = SqliteStore(":memory:")
    update = DriverStatement.compile(store._replayed_update(), dialect)
    event = DriverStatement.compile(sa.insert(store._events), dialect, EVENT_COLUMNS)
    shared = {"b_run": "r1", "b_at": NOW, "b_updated": NOW.replace(tzinfo=None)}
    bind_update = update.binder(shared)
    for row in ({"b_id": "a", "b_to": "q.one"}, {"b_id": "b", "b_to": "q.two"}):
        assert bind_update(row) == update.bind(shared | row)
    constants = {"at": NOW, "kind": "replayed", "operator": "ops", "audit_id": None, "replay_id": "r1"}
    bind_event = event.binder(constants)
    row = {"dead_letter_id": "a", "detail": {"to": "q.one"}}
    assert bind_event(row) == event.bind(constants | row)
    with pytest.raises(KeyError):
        bind_event({"dead_letter_id": "a"})  # a value the constants do not cover is required
