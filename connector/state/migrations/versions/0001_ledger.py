"""The ledger table as the first hand-written schema (``schema_version`` 1) made it.

Revision ID: 0001
Revises: -
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.state.migrations import steps
from connector.state.schema import LEDGER_COMMENT

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = steps.prefix()
    postgres = steps.is_postgres()
    # The dead-letter store keeps its own row in this table and may have made it first.
    if not steps.has_table(f"{p}schema_version"):
        op.create_table(
            f"{p}schema_version",
            sa.Column("component", sa.Text(), primary_key=True),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column(
                "migrated_at",
                steps.timestamp_type(),
                nullable=False,
                server_default=sa.text("now()") if postgres else None,
            ),
        )
    version_type = sa.BigInteger() if postgres else sa.Integer()
    op.create_table(
        f"{p}ledger",
        sa.Column("external_id", sa.Text(), primary_key=True),
        sa.Column("version", version_type, sa.CheckConstraint("version >= 0"), nullable=False),
        sa.Column(
            "state",
            sa.Text(),
            sa.CheckConstraint("state IN ('pending', 'applied', 'deleted')"),
            nullable=False,
        ),
        sa.Column("severa_guid", sa.Text()),
        sa.Column("pending_version", version_type),
        sa.Column("fingerprint", sa.Text()),
        sa.Column(
            "updated_at",
            steps.timestamp_type(),
            nullable=False,
            server_default=sa.text("now()") if postgres else None,
        ),
        sqlite_with_rowid=False,
        comment=LEDGER_COMMENT if postgres else None,
    )
    op.create_index(f"{p}ledger_severa_guid", f"{p}ledger", ["severa_guid"])
    steps.set_component_version("ledger", 1)


def downgrade() -> None:
    raise NotImplementedError("the ledger is never migrated down: restore a backup instead")
