"""The dead-letter store on the state layer, without a database: tables, types, trees, URLs."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from connector.dlq.postgres import PostgresStore
from connector.dlq.records import STATUSES
from connector.dlq.sqlite import SqliteStore
from connector.dlq.store import InvalidStoreURL, open_store
from connector.errors import ConfigError
from connector.state.dlq_schema import (
    DLQ_STATUSES,
    DLQ_TABLE_VERSION,
    FixedWidthUtc,
    JsonDocument,
    dlq_metadata,
)
from connector.state.migrations import DEAD_LETTERS, STATE, Tree, version_table

HELSINKI = dt.timezone(dt.timedelta(hours=2))


def test_the_status_check_allows_exactly_the_statuses_a_record_can_have() -> None:
    assert DLQ_STATUSES == STATUSES


@pytest.mark.parametrize("prefix", ["", "severa_connector_", "p" * 40])
def test_every_table_and_index_carries_the_prefix_and_fits_postgresql(prefix: str) -> None:
    metadata = dlq_metadata(prefix)
    assert {t.name for t in metadata.sorted_tables} == {
        f"{prefix}{name}"
        for name in (
            "dead_letters",
            "dlq_events",
            "dlq_replays",
            "dlq_audit",
            "pod_heartbeats",
            "schema_version",
        )
    }
    names = [index.name for table in metadata.sorted_tables for index in table.indexes]
    assert all(name is not None and name.startswith(prefix) and len(name) <= 63 for name in names)
    assert len(set(names)) == len(names) == 10
    for table in metadata.sorted_tables:  # SQLAlchemy refuses names PostgreSQL would truncate
        str(CreateTable(table).compile(dialect=postgresql.dialect()))
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=postgresql.dialect()))
    assert version_table(prefix, DEAD_LETTERS) == f"{prefix}dlq_alembic_version"


def test_sqlite_timestamps_are_fixed_width_so_text_order_is_time_order() -> None:
    column, dialect = FixedWidthUtc(), sqlite.dialect()
    moments = [
        dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 20, 12, 0, 0, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 20, 14, 0, 0, 500_000, tzinfo=HELSINKI),  # 12:00:00.5 UTC
        dt.datetime(2026, 11, 20, 12, 0, 1, tzinfo=dt.UTC),
    ]
    stored = [column.process_bind_param(m, dialect) for m in moments]
    assert stored[0] == "2026-11-20T12:00:00.000000+00:00"
    assert len({len(s) for s in stored}) == 1
    assert sorted(stored) == stored
    assert [column.process_result_value(s, dialect) for s in stored] == moments


def test_a_naive_timestamp_is_taken_as_utc_as_the_store_always_did() -> None:
    naive = dt.datetime(2026, 11, 20, 12, 0)
    assert FixedWidthUtc().process_bind_param(naive, sqlite.dialect()) == "2026-11-20T12:00:00.000000+00:00"
    assert FixedWidthUtc().process_bind_param(naive, postgresql.dialect()) == naive.replace(tzinfo=dt.UTC)


def test_json_is_text_on_sqlite_and_left_to_jsonb_on_postgresql() -> None:
    value = {"b": 1, "a": ["ä", {"$ts": "2026-11-20T12:00:00+00:00"}]}
    text = JsonDocument().process_bind_param(value, sqlite.dialect())
    assert text == '{"a":["ä",{"$ts":"2026-11-20T12:00:00+00:00"}],"b":1}'
    assert JsonDocument().process_result_value(text, sqlite.dialect()) == value
    assert JsonDocument().process_bind_param(value, postgresql.dialect()) is value
    assert (
        str(JsonDocument().dialect_impl(postgresql.dialect()).compile(dialect=postgresql.dialect()))
        == "JSONB"
    )


@pytest.mark.parametrize("tree", [STATE, DEAD_LETTERS], ids=lambda t: t.name)
def test_each_tree_is_one_line_of_revisions_ending_at_its_head(tree: Tree) -> None:
    config = Config()
    config.set_main_option("script_location", "connector/state/migrations")
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", f"connector/state/migrations/{tree.location}")
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [tree.head]
    assert len(script.get_bases()) == 1
    assert sorted(tree.legacy_revisions) == list(range(1, tree.table_version + 1))
    assert all(script.get_revision(r) is not None for r in tree.legacy_revisions.values())


def test_the_trees_keep_apart() -> None:
    assert STATE.version_table != DEAD_LETTERS.version_table
    assert STATE.component != DEAD_LETTERS.component
    assert DEAD_LETTERS.table_version == DLQ_TABLE_VERSION
    # The dead-letter tree takes the ledger's migration lock first (they share schema_version).
    assert DEAD_LETTERS.lock_keys("p_")[0] == STATE.lock_keys("p_")[0]
    assert len(set(DEAD_LETTERS.lock_keys("p_"))) == 2


@pytest.mark.parametrize(
    ("url", "backend", "where"),
    [
        ("sqlite:///dlq.db", SqliteStore, "dlq.db"),
        ("sqlite:////var/lib/severa/dlq.db", SqliteStore, "/var/lib/severa/dlq.db"),
        ("sqlite:///:memory:", SqliteStore, ":memory:"),
        ("postgresql://u@db:5432/state", PostgresStore, "db:5432/state"),
        ("postgres://u@db/state", PostgresStore, "db:5432/state"),
    ],
)
def test_a_store_url_names_its_backend(url: str, backend: type, where: str) -> None:
    store = open_store(url)
    assert isinstance(store, backend)
    assert (store.path if isinstance(store, SqliteStore) else store.where) == where  # type: ignore[attr-defined]


def test_a_postgresql_store_gets_the_default_prefix_unless_told() -> None:
    assert open_store("postgresql://db/x").table_prefix == "severa_connector_"  # type: ignore[attr-defined]
    assert open_store("postgresql://db/x", table_prefix="t1_").table_prefix == "t1_"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "unsupported dead-letter store URL scheme 'memory'"),
        ("mysql://db/x", "unsupported dead-letter store URL scheme 'mysql'"),
        ("sqlite://host/dlq.db", "has no host"),
        ("sqlite:///dlq.db?mode=ro", "takes no query parameters"),
        ("sqlite:///", "needs a path"),
        ("postgresql://", "needs at least a host or a database"),
        ("postgresql://secret:pw@[::1/x", "malformed dead-letter store URL"),
    ],
)
def test_a_bad_store_url_is_a_configuration_error_that_never_repeats_it(url: str, message: str) -> None:
    with pytest.raises(InvalidStoreURL, match=message) as caught:
        open_store(url)
    assert isinstance(caught.value, ConfigError)
    assert "memory://" not in caught.value.message.split("accepted")[-1]
    assert "pw" not in caught.value.message
