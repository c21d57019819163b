"""The poller's state: a cursor per entity kind, the changes seen in its overlap, the lease.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.state.migrations import steps

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = steps.prefix()
    stamp = steps.timestamp_type
    bigint = sa.BigInteger() if steps.is_postgres() else sa.Integer()
    op.create_table(
        f"{p}poller_cursor",
        sa.Column("kind", sa.Text(), primary_key=True),
        sa.Column("cursor", stamp(), nullable=True),
        sa.Column("updated_at", stamp(), nullable=False),
    )
    op.create_table(
        f"{p}poller_seen",
        sa.Column(
            "kind",
            sa.Text(),
            sa.ForeignKey(f"{p}poller_cursor.kind", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("guid", sa.Text(), primary_key=True),
        sa.Column("stamp", sa.Text(), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        f"{p}poller_lease",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("fencing_token", bigint, nullable=False),
        sa.Column("expires_at", stamp(), nullable=False),
    )


def downgrade() -> None:
    p = steps.prefix()
    op.drop_table(f"{p}poller_lease")
    op.drop_table(f"{p}poller_seen")
    op.drop_table(f"{p}poller_cursor")
