"""The dead-letter store's tables as its hand-written runner made them (``schema_version`` 1).

A store that runner made is stamped at this revision, not re-created (see
:mod:`connector.state.migrations`); hence the DDL below is that runner's, type for type, and must
never change: the next change to these tables is the next revision.

Revision ID: dlq0001
Revises: -
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from connector.state.migrations import steps

revision = "dlq0001"
down_revision = None
branch_labels = None
depends_on = None


def _name(name: str) -> str:
    # What PostgreSQL made of the runner's longer index names (63 bytes); names stay ASCII.
    return name[:63]


def upgrade() -> None:
    p = steps.prefix()
    postgres = steps.is_postgres()
    steps.create_schema_version_table()

    def integer() -> sa.types.TypeEngine[int]:
        return sa.BigInteger() if postgres else sa.Integer()

    def seq() -> sa.Column[int]:
        if postgres:
            return sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), primary_key=True)
        return sa.Column("seq", sa.Integer(), primary_key=True)  # AUTOINCREMENT: sqlite_autoincrement

    def json() -> sa.types.TypeEngine[Any]:
        return JSONB() if postgres else sa.Text()

    ts = steps.timestamp_type
    text = sa.Text
    zero = sa.text("0")
    dl = f"{p}dead_letters"
    op.create_table(
        dl,
        seq(),
        sa.Column("id", text(), nullable=False, unique=True),
        sa.Column(
            "status",
            text(),
            sa.CheckConstraint("status IN ('parked', 'replaying', 'replayed', 'purged')"),
            nullable=False,
        ),
        sa.Column("dead_letter_queue", text(), nullable=False),
        sa.Column("original_queue", text(), nullable=False),
        sa.Column("original_exchange", text(), nullable=False),
        sa.Column("original_routing_key", text(), nullable=False),
        sa.Column("flow", text()),
        sa.Column("source", text(), nullable=False),
        sa.Column("category", text(), nullable=False),
        sa.Column("error_class", text(), nullable=False),
        sa.Column("reason", text(), nullable=False),
        sa.Column("error_message", text(), nullable=False),
        sa.Column("traceback", text(), nullable=False),
        sa.Column("attempts", integer(), nullable=False),
        sa.Column("first_failure_at", ts(), nullable=False),
        sa.Column("last_failure_at", ts(), nullable=False),
        sa.Column("group_id", text(), nullable=False),
        sa.Column("connector_version", text()),
        sa.Column("pod", text()),
        sa.Column("trace_id", text()),
        sa.Column("message_id", text()),
        sa.Column("correlation_id", text()),
        sa.Column("message_type", text()),
        sa.Column("content_type", text()),
        sa.Column("properties", json(), nullable=False),
        sa.Column("headers", json(), nullable=False),
        sa.Column("body", sa.LargeBinary()),
        sa.Column("body_size", integer(), nullable=False),
        sa.Column("original_body", sa.LargeBinary()),
        sa.Column("edit_count", integer(), nullable=False, server_default=zero),
        sa.Column("ingested_at", ts(), nullable=False),
        sa.Column("replayed_from", text()),
        sa.Column("prior_replay_id", text()),
        sa.Column("prior_replays", integer(), nullable=False, server_default=zero),
        sa.Column("replay_id", text()),
        sa.Column("replay_count", integer(), nullable=False, server_default=zero),
        sa.Column("replayed_at", ts()),
        sa.Column("replayed_to", text()),
        sa.Column("last_error", text()),
        sa.Column("updated_at", ts()),
        sqlite_autoincrement=True,
    )
    for suffix, columns in (
        ("status", ["status", "seq"]),
        ("group", ["group_id", "status"]),
        ("last_failure", ["last_failure_at"]),
        ("message_id", ["message_id"]),
        ("replayed_from", ["replayed_from"]),
        ("prior_replay", ["prior_replay_id"]),
        ("replay", ["replay_id"]),
    ):
        op.create_index(_name(f"{dl}_{suffix}"), dl, columns)
    events = f"{p}dlq_events"
    op.create_table(
        events,
        seq(),
        sa.Column("dead_letter_id", text(), nullable=False),
        sa.Column("at", ts(), nullable=False),
        sa.Column("kind", text(), nullable=False),
        sa.Column("operator", text()),
        sa.Column("audit_id", text()),
        sa.Column("replay_id", text()),
        sa.Column("detail", json(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(_name(f"{events}_dead_letter"), events, ["dead_letter_id", "seq"])
    runs = f"{p}dlq_replays"
    op.create_table(
        runs,
        sa.Column("replay_id", text(), primary_key=True),
        sa.Column("operator", text(), nullable=False),
        sa.Column("host", text(), nullable=False),
        sa.Column("pid", integer(), nullable=False),
        sa.Column("started_at", ts(), nullable=False),
        sa.Column("finished_at", ts()),
        sa.Column("status", text(), nullable=False),
        sa.Column("selected", integer(), nullable=False),
        sa.Column("target", text()),
        sa.Column("audit_id", text()),
        sa.Column("replayed", integer(), nullable=False, server_default=zero),
        sa.Column("failed", integer(), nullable=False, server_default=zero),
    )
    op.create_index(_name(f"{runs}_status"), runs, ["status"])
    audit = f"{p}dlq_audit"
    op.create_table(
        audit,
        sa.Column("audit_id", text(), primary_key=True),
        sa.Column("phase", text(), primary_key=True),
        sa.Column("at", ts(), nullable=False),
        sa.Column("operator", text(), nullable=False),
        sa.Column("command", text(), nullable=False),
        sa.Column("outcome", text(), nullable=False),
        sa.Column("record", json(), nullable=False),
    )
    op.create_index(_name(f"{audit}_at"), audit, ["at"])
    steps.set_component_version("dlq", 1)


def downgrade() -> None:
    raise NotImplementedError("the dead-letter store is never migrated down: restore a backup instead")
