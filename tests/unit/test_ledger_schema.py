"""The state tables' description: names per prefix, and timestamps as each store keeps them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from connector.state.migrations import HEAD, LEGACY_LEDGER_REVISIONS, version_table
from connector.state.schema import LEDGER_TABLE_VERSION, UtcTimestamp, check_prefix, state_metadata

HELSINKI = dt.timezone(dt.timedelta(hours=3))


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="no prefix is the SQLite default"),
        pytest.param("severa_connector_", id="the PostgreSQL default is accepted"),
        pytest.param("t0123456789ab_", id="a test run's random prefix is accepted"),
    ],
)
def test_every_table_carries_the_prefix(prefix: str) -> None:
    names = {table.name for table in state_metadata(prefix).sorted_tables}
    assert names == {
        f"{prefix}{name}"
        for name in ("ledger", "schema_version", "poller_cursor", "poller_seen", "poller_lease")
    }
    assert version_table(prefix) == f"{prefix}alembic_version"


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("Upper_", id="upper case would need quoting and is refused"),
        pytest.param("x; DROP TABLE y; --", id="an injection attempt is refused"),
        pytest.param("9lives_", id="a leading digit is refused"),
        pytest.param("p" * 41, id="a prefix that would overflow 63-byte names is refused"),
    ],
)
def test_a_prefix_that_is_not_a_plain_identifier_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        check_prefix(prefix)
    with pytest.raises(ValueError, match="table_prefix"):
        state_metadata(prefix)


@pytest.mark.parametrize(
    ("dialect", "stored"),
    [
        pytest.param(sqlite.dialect(), "2024-05-02T07:30:00+00:00", id="sqlite keeps ISO text in UTC"),
        pytest.param(
            postgresql.dialect(),
            dt.datetime(2024, 5, 2, 7, 30, tzinfo=dt.UTC),
            id="postgresql keeps an aware datetime in UTC",
        ),
    ],
)
def test_timestamps_are_stored_as_utc(dialect: object, stored: object) -> None:
    column = UtcTimestamp()
    local = dt.datetime(2024, 5, 2, 10, 30, tzinfo=HELSINKI)
    assert column.process_bind_param(local, dialect) == stored  # type: ignore[arg-type]
    loaded = column.process_result_value(stored, dialect)  # type: ignore[arg-type]
    assert loaded == local
    assert loaded is not None
    assert loaded.utcoffset() == dt.timedelta(0)


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UtcTimestamp().process_bind_param(dt.datetime(2024, 5, 2, 10, 30), sqlite.dialect())


def test_sqlite_timestamps_are_text_columns() -> None:
    assert str(UtcTimestamp().dialect_impl(sqlite.dialect()).compile(dialect=sqlite.dialect())) == "TEXT"


def test_every_hand_written_ledger_version_has_a_revision_and_the_newest_is_ours() -> None:
    assert sorted(LEGACY_LEDGER_REVISIONS) == list(range(1, LEDGER_TABLE_VERSION + 1))
    assert max(LEGACY_LEDGER_REVISIONS.values()) <= HEAD
