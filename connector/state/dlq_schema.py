"""The dead-letter store's tables, described as SQLAlchemy Core metadata (see :mod:`connector.dlq`).

Apart from :mod:`connector.state.schema` because the store migrates apart from the ledger
(:data:`connector.state.migrations.DEAD_LETTERS`): on SQLite it is a file of its own, on
PostgreSQL it shares the ledger's database and table prefix. Revision ``dlq0001`` creates exactly
what the store's hand-written runner created as its schema version 1 -- the same names, types,
constraints and indexes -- so a store that runner made is adopted as it is, and this metadata
describes both (a test compares them).

===========================  =====================================================================
``<prefix>dead_letters``     one row per dead-lettering (key ``id``; ``seq`` = ingest order = the
                             DLQ's order)
``<prefix>dlq_events``       per-row history: ingested, imported, edited, replayed, replay_failed,
                             purged
``<prefix>dlq_replays``      one row per replay run (status, counts, who, where); whether a run is
                             alive is a lock, not a column
``<prefix>dlq_audit``        the audit records (started / finished) of every replay, edit, purge,
                             archive, restore, import and export
``<prefix>pod_heartbeats``   one row per connector pod: its role, flows, circuit states and
                             readiness, rewritten every few seconds (``dlq0002``), so the console
                             can show pods that stopped beating as down
``<prefix>schema_version``   shared with the ledger: component ``dlq`` holds
                             :data:`DLQ_TABLE_VERSION`
===========================  =====================================================================

On SQLite the store's prefix is empty. Types, per backend:

==============  ===============================================  =========================
                SQLite                                           PostgreSQL
==============  ===============================================  =========================
``seq``         ``INTEGER PRIMARY KEY AUTOINCREMENT``            ``bigint`` identity
timestamps      ``TEXT``, fixed-width ISO 8601 UTC with          ``timestamptz``
                microseconds, so text order is time order
JSON            ``TEXT``                                         ``jsonb``
bodies          ``BLOB``                                         ``bytea``
==============  ===============================================  =========================
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from connector.state.schema import BigInt, check_prefix, state_metadata

DLQ_TABLE_VERSION: Final = 1
"""The ``schema_version`` row of component ``dlq`` this code writes and reads.

It counts changes to the store's tables as the hand-written runner did (1: the tables below). The
runner of the previous release refuses a store whose row is higher, so a revision that changes
these tables in a way that runner cannot read raises it.
"""

DLQ_STATUSES: Final = ("parked", "replaying", "replayed", "purged", "archived")
"""The values the ``status`` check allows (:data:`connector.dlq.records.STATUSES`; a test keeps the
two equal -- this module is imported by the migrations and stays free of the dlq package)."""

MAX_NAME_BYTES: Final = 63
SQLITE_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def index_name(name: str) -> str:
    """``name`` as PostgreSQL keeps it: cut at 63 bytes.

    Prefixes may be 40 characters long, which makes some index names longer than PostgreSQL's
    limit. The hand-written runner let the server truncate them; SQLAlchemy refuses long names
    instead, so they are truncated here the way the server did, and adopted stores match.
    """
    return name.encode()[:MAX_NAME_BYTES].decode()


def dumps(value: Any) -> str:
    """JSON as the store writes it: sorted keys, compact; what JSON cannot hold becomes its ``str``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class FixedWidthUtc(sa.TypeDecorator[dt.datetime]):
    """An instant in UTC: ``timestamptz`` on PostgreSQL, fixed-width ISO 8601 text on SQLite.

    Fixed width (microseconds always written) because SQLite compares the text: filters by time
    and ``ORDER BY at`` are only right if every value has the same shape. A naive datetime is taken
    to be UTC, as the store always did (dead-letter headers carry UTC times).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return utc.strftime(SQLITE_TIME_FORMAT) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)


class JsonDocument(sa.TypeDecorator[Any]):
    """A JSON value: ``jsonb`` on PostgreSQL, text on SQLite (where ``json_extract`` reads it).

    On PostgreSQL the driver's JSONB type serialises, with the engine's ``json_serializer`` (the
    store's engine passes :func:`dumps`); on SQLite this type does, with the same function.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql" or value is None:
            return value
        return dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, str) and dialect.name != "postgresql":
            return json.loads(value)
        return value


def dlq_metadata(table_prefix: str = "") -> sa.MetaData:
    """The store's tables under ``table_prefix``; build once per store and keep."""
    p = check_prefix(table_prefix)
    metadata = sa.MetaData()
    statuses = ", ".join(f"'{status}'" for status in DLQ_STATUSES)  # constants of ours, not values
    ts = FixedWidthUtc
    zero = sa.text("0")
    dead_letters = f"{p}dead_letters"
    sa.Table(
        dead_letters,
        metadata,
        sa.Column("seq", BigInt, sa.Identity(always=True), primary_key=True),
        sa.Column("id", sa.Text(), nullable=False, unique=True),
        sa.Column("status", sa.Text(), sa.CheckConstraint(f"status IN ({statuses})"), nullable=False),
        sa.Column("dead_letter_queue", sa.Text(), nullable=False),
        sa.Column("original_queue", sa.Text(), nullable=False),
        sa.Column("original_exchange", sa.Text(), nullable=False),
        sa.Column("original_routing_key", sa.Text(), nullable=False),
        sa.Column("flow", sa.Text()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("error_class", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("attempts", BigInt, nullable=False),
        sa.Column("first_failure_at", ts(), nullable=False),
        sa.Column("last_failure_at", ts(), nullable=False),
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("connector_version", sa.Text()),
        sa.Column("pod", sa.Text()),
        sa.Column("trace_id", sa.Text()),
        sa.Column("message_id", sa.Text()),
        sa.Column("correlation_id", sa.Text()),
        sa.Column("message_type", sa.Text()),
        sa.Column("content_type", sa.Text()),
        sa.Column("properties", JsonDocument(), nullable=False),
        sa.Column("headers", JsonDocument(), nullable=False),
        sa.Column("body", sa.LargeBinary()),
        sa.Column("body_size", BigInt, nullable=False),
        sa.Column("original_body", sa.LargeBinary()),
        sa.Column("edit_count", BigInt, nullable=False, server_default=zero),
        sa.Column("ingested_at", ts(), nullable=False),
        sa.Column("replayed_from", sa.Text()),
        sa.Column("prior_replay_id", sa.Text()),
        sa.Column("prior_replays", BigInt, nullable=False, server_default=zero),
        sa.Column("replay_id", sa.Text()),
        sa.Column("replay_count", BigInt, nullable=False, server_default=zero),
        sa.Column("replayed_at", ts()),
        sa.Column("replayed_to", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("updated_at", ts()),
        sa.Index(index_name(f"{dead_letters}_status"), "status", "seq"),
        sa.Index(index_name(f"{dead_letters}_group"), "group_id", "status"),
        sa.Index(index_name(f"{dead_letters}_last_failure"), "last_failure_at"),
        sa.Index(index_name(f"{dead_letters}_message_id"), "message_id"),
        sa.Index(index_name(f"{dead_letters}_replayed_from"), "replayed_from"),
        sa.Index(index_name(f"{dead_letters}_prior_replay"), "prior_replay_id"),
        sa.Index(index_name(f"{dead_letters}_replay"), "replay_id"),
        sqlite_autoincrement=True,
    )
    events = f"{p}dlq_events"
    sa.Table(
        events,
        metadata,
        sa.Column("seq", BigInt, sa.Identity(always=True), primary_key=True),
        sa.Column("dead_letter_id", sa.Text(), nullable=False),
        sa.Column("at", ts(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("operator", sa.Text()),
        sa.Column("audit_id", sa.Text()),
        sa.Column("replay_id", sa.Text()),
        sa.Column("detail", JsonDocument(), nullable=False),
        sa.Index(index_name(f"{events}_dead_letter"), "dead_letter_id", "seq"),
        sqlite_autoincrement=True,
    )
    runs = f"{p}dlq_replays"
    sa.Table(
        runs,
        metadata,
        sa.Column("replay_id", sa.Text(), primary_key=True),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", BigInt, nullable=False),
        sa.Column("started_at", ts(), nullable=False),
        sa.Column("finished_at", ts()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("selected", BigInt, nullable=False),
        sa.Column("target", sa.Text()),
        sa.Column("audit_id", sa.Text()),
        sa.Column("replayed", BigInt, nullable=False, server_default=zero),
        sa.Column("failed", BigInt, nullable=False, server_default=zero),
        sa.Index(index_name(f"{runs}_status"), "status"),
    )
    beats = f"{p}pod_heartbeats"
    sa.Table(
        beats,
        metadata,
        sa.Column("pod", sa.Text(), primary_key=True),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("flows", JsonDocument(), nullable=False),
        sa.Column("circuits", JsonDocument(), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("reasons", JsonDocument(), nullable=False),
        sa.Column("version", sa.Text()),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", ts(), nullable=False),
        sa.Column("beat_at", ts(), nullable=False),
    )
    audit = f"{p}dlq_audit"
    sa.Table(
        audit,
        metadata,
        sa.Column("audit_id", sa.Text(), primary_key=True),
        sa.Column("phase", sa.Text(), primary_key=True),
        sa.Column("at", ts(), nullable=False),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("record", JsonDocument(), nullable=False),
        sa.Index(index_name(f"{audit}_at"), "at"),
    )
    # The version table the ledger's tree describes; the store writes its own row in it.
    state_metadata(p).tables[f"{p}schema_version"].to_metadata(metadata)
    return metadata
