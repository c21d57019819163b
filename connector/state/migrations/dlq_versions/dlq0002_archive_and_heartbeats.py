"""Archived dead letters, and the pods' heartbeats.

* ``dead_letters.status`` may be ``archived``: an operator set the row aside (nothing is deleted;
  restoring puts it back). Only the status check changes. PostgreSQL swaps the constraint; SQLite
  cannot alter a constraint, so the table is rebuilt as SQLite documents it (new table with the
  new DDL, rows copied with their ``seq``, old table dropped, new one renamed, indexes re-created),
  inside the migration's one transaction.
* ``pod_heartbeats``: one row per connector pod, rewritten every few seconds with its role, flows,
  circuit states and readiness, which the console reads (:mod:`connector.heartbeats`).

A connector of the previous release does not know this revision and refuses the store (as for any
newer revision), so no ``schema_version`` change is needed: the hand-written runner of the release
before that reads only version 1's tables, which are all still here.

Revision ID: dlq0002
Revises: dlq0001
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from connector.state.migrations import steps

revision = "dlq0002"
down_revision = "dlq0001"
branch_labels = None
depends_on = None

OLD_STATUSES = "'parked', 'replaying', 'replayed', 'purged'"
NEW_STATUSES = "'parked', 'replaying', 'replayed', 'purged', 'archived'"


def upgrade() -> None:
    p = steps.prefix()
    table = f"{p}dead_letters"
    if steps.is_postgres():
        _swap_postgres_check(table)
    else:
        _rebuild_sqlite(table)
    json: Any = JSONB() if steps.is_postgres() else sa.Text()
    op.create_table(
        f"{p}pod_heartbeats",
        sa.Column("pod", sa.Text(), primary_key=True),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("flows", json, nullable=False),
        sa.Column("circuits", json, nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("reasons", json, nullable=False),
        sa.Column("version", sa.Text()),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", steps.timestamp_type(), nullable=False),
        sa.Column("beat_at", steps.timestamp_type(), nullable=False),
    )


def _swap_postgres_check(table: str) -> None:
    bind = op.get_bind()
    checks = [
        str(found["name"])
        for found in sa.inspect(bind).get_check_constraints(table)
        if "status" in str(found.get("sqltext", ""))
    ]
    if len(checks) != 1:
        raise RuntimeError(f"expected one status check on {table}, found {checks}")
    op.drop_constraint(checks[0], table, type_="check")
    op.create_check_constraint(checks[0], table, f"status IN ({NEW_STATUSES})")


def _rebuild_sqlite(table: str) -> None:
    bind = op.get_bind()
    ddl = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": table}
    ).scalar_one()
    if ddl.count(OLD_STATUSES) != 1:
        raise RuntimeError(f"the status check of {table} is not the one dlq0001 made")
    temporary = f"{table}_dlq0002"
    created, renamed = re.subn(
        rf'^CREATE TABLE (?:IF NOT EXISTS )?"?{re.escape(table)}"?', f'CREATE TABLE "{temporary}"', ddl
    )
    if renamed != 1:
        raise RuntimeError(f"cannot read the DDL of {table}")
    indexes = [
        str(sql)
        for sql in bind.execute(
            sa.text(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :name AND sql IS NOT NULL"
            ),
            {"name": table},
        ).scalars()
    ]
    sequence = bind.execute(
        sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": table}
    ).scalar_one_or_none()
    bind.exec_driver_sql(created.replace(OLD_STATUSES, NEW_STATUSES))
    # Same DDL but the check, so the same columns in the same order; seq is copied as it is.
    bind.exec_driver_sql(f'INSERT INTO "{temporary}" SELECT * FROM "{table}"')
    bind.exec_driver_sql(f'DROP TABLE "{table}"')
    bind.exec_driver_sql(f'ALTER TABLE "{temporary}" RENAME TO "{table}"')
    for sql in indexes:
        bind.exec_driver_sql(sql)
    if sequence is not None:  # AUTOINCREMENT never hands out a seq again, even one above every row
        bind.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = :name"),
            {"seq": int(sequence), "name": table},
        )


def downgrade() -> None:
    raise NotImplementedError("the dead-letter store is never migrated down: restore a backup instead")
