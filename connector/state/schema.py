"""The connector's state tables, described once as SQLAlchemy Core metadata.

One :class:`~sqlalchemy.MetaData` per table prefix (:func:`state_metadata`): several connectors, or
test runs, may share one PostgreSQL database as long as their prefixes differ; on SQLite the
prefix is empty. The metadata is what the migrations in :mod:`connector.state.migrations` must
arrive at (a test compares them), and what new state code builds its statements from.

=============================  ===================================================================
``<prefix>ledger``             the idempotency ledger (:mod:`connector.state.ledger`), one row per
                               external entry
``<prefix>poller_cursor``      per entity kind, the ``ChangedSince`` the next poll starts from
``<prefix>poller_seen``        per kind, the ``(guid, stamp)`` pairs already published at or after
                               the cursor: a poll overlaps the last minute (Severa matches
                               ``ChangedSince`` to the minute), and these rows say which of the
                               overlapping changes are old news
``<prefix>poller_lease``       the lease that lets exactly one poller run; ``fencing_token`` grows
                               on every change of holder, so a write by a holder that lost the
                               lease can be refused
``<prefix>schema_version``     per component, the version of its tables as the hand-written
                               runners counted them (``ledger``, ``dlq``); kept so that a connector
                               of the previous release still recognises the ledger it finds
``<prefix>alembic_version``    Alembic's revision of the tables above (created by Alembic)
=============================  ===================================================================

The dead-letter store's tables are described apart, in :mod:`connector.state.dlq_schema`: they
migrate as a tree of their own, with their own version table (see
:mod:`connector.state.migrations`).

Server-side defaults are left out: every write supplies its values, and ``now()`` does not exist on
SQLite. (The ledger's ``updated_at`` keeps the ``DEFAULT now()`` the first PostgreSQL schema gave it.)

Timestamps are aware UTC datetimes in Python. PostgreSQL stores them as ``timestamptz``; SQLite,
which has no time type, as ISO 8601 text -- the form the SQLite ledger has always written.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from connector.state.ledger import LEDGER_STATES

PREFIX_PATTERN: Final = re.compile(r"(?:[a-z_][a-z0-9_]{0,39})?")
"""Table prefixes become part of table and index names: plain lower-case identifiers only (nothing
to quote), short enough that every name stays within PostgreSQL's 63 bytes."""

LEDGER_TABLE_VERSION: Final = 2
"""The ``schema_version`` row of component ``ledger`` that this code writes and reads.

It counts changes to the ledger table only, as the hand-written runners did: 1 the table, 2 the
``content_hash`` column and re-keyed rows. A connector of the previous release refuses a ledger
whose row is higher, so a revision that changes the ledger table incompatibly raises it.
"""


LEDGER_COMMENT: Final = (
    "severa-connector idempotency ledger: one row per external hour entry; "
    "schema version in the schema_version table next to it"
)
"""PostgreSQL's comment on the ledger table, as the first schema wrote it."""


def check_prefix(table_prefix: str) -> str:
    if not isinstance(table_prefix, str) or not PREFIX_PATTERN.fullmatch(table_prefix):
        raise ValueError(
            f"table_prefix must match {PREFIX_PATTERN.pattern} (lower-case identifier), got {table_prefix!r}"
        )
    return table_prefix


class UtcTimestamp(sa.TypeDecorator[dt.datetime]):
    """An aware UTC datetime: ``timestamptz`` on PostgreSQL, ISO 8601 text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got {value!r}")
        value = value.astimezone(dt.UTC)
        return value.isoformat() if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)


# 64-bit on both stores: SQLite's INTEGER is, and keeping it INTEGER there keeps WITHOUT ROWID
# tables and the hand-written schema identical.
BigInt: Final = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def state_metadata(table_prefix: str = "") -> sa.MetaData:
    """The state tables under ``table_prefix``; build once per prefix and keep."""
    p = check_prefix(table_prefix)
    metadata = sa.MetaData()
    states = ", ".join(f"'{state}'" for state in LEDGER_STATES)  # constants of ours, not values
    sa.Table(
        f"{p}ledger",
        metadata,
        sa.Column("external_id", sa.Text(), primary_key=True),
        sa.Column("version", BigInt, sa.CheckConstraint("version >= 0"), nullable=False),
        sa.Column("state", sa.Text(), sa.CheckConstraint(f"state IN ({states})"), nullable=False),
        sa.Column("severa_guid", sa.Text()),
        sa.Column("pending_version", BigInt),
        sa.Column("fingerprint", sa.Text()),
        sa.Column("updated_at", UtcTimestamp(), nullable=False),
        sa.Column("content_hash", sa.Text()),
        sa.Index(f"{p}ledger_severa_guid", "severa_guid"),
        sqlite_with_rowid=False,
        comment=LEDGER_COMMENT,
    )
    sa.Table(
        f"{p}schema_version",
        metadata,
        sa.Column("component", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("migrated_at", UtcTimestamp(), nullable=False),
    )
    sa.Table(
        f"{p}poller_cursor",
        metadata,
        sa.Column("kind", sa.Text(), primary_key=True),
        sa.Column("cursor", UtcTimestamp(), nullable=True),
        sa.Column("updated_at", UtcTimestamp(), nullable=False),
    )
    sa.Table(
        f"{p}poller_seen",
        metadata,
        sa.Column(
            "kind",
            sa.Text(),
            sa.ForeignKey(f"{p}poller_cursor.kind", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("guid", sa.Text(), primary_key=True),
        # A change time as change_stamp() writes it, an event id or a content hash: text.
        sa.Column("stamp", sa.Text(), primary_key=True),
        sqlite_with_rowid=False,
    )
    sa.Table(
        f"{p}poller_lease",
        metadata,
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("fencing_token", BigInt, nullable=False),
        sa.Column("expires_at", UtcTimestamp(), nullable=False),
    )
    return metadata


def ledger_lock_get(table_prefix: str = "") -> str:
    """The PostgreSQL function that takes an entry's lock and reads its record in one call.

    ``<prefix>ledger_lock_get(entry_lock bigint, wait_ms integer, wanted text)``, made by revision
    ``0004`` (PostgreSQL only; SQLite has no functions and needs none). It returns the ledger's
    columns by name, as a table of its own rather than ``SETOF <prefix>ledger``, so that dropping
    the ledger table is never blocked by it; a revision that changes a column's type recreates it.
    """
    return f"{check_prefix(table_prefix)}ledger_lock_get"


def state_functions(table_prefix: str = "") -> list[str]:
    """The state tree's PostgreSQL functions under ``table_prefix``, as ``DROP FUNCTION`` takes them."""
    return [f"{ledger_lock_get(table_prefix)}(bigint, integer, text)"]
