"""The ledger's ``content_hash`` column; keys re-written to ``entry_key`` (``schema_version`` 2).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.state.ledger import log_rekeyed, rekey_plan
from connector.state.migrations import steps

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = steps.prefix()
    op.add_column(f"{p}ledger", sa.Column("content_hash", sa.Text()))
    _rekey(f"{p}ledger")
    steps.set_component_version("ledger", 2)


def _rekey(name: str) -> None:
    # Not idempotent on its own (a second pass would escape '%' twice): it runs in the
    # transaction that records the revision, so it commits exactly once per table.
    ledger = sa.table(name, sa.column("external_id"))
    bind = op.get_bind()
    # Only a source containing '%' escapes differently (the part before an old key's first ':'
    # cannot contain ':'); the query stays coarse and rekey_plan decides.
    candidates = bind.execute(
        sa.select(ledger.c.external_id).where(ledger.c.external_id.like("%!%%", escape="!"))
    ).scalars()
    plan = rekey_plan(str(key) for key in candidates)
    move = (
        sa.update(ledger)
        .where(ledger.c.external_id == sa.bindparam("old"))
        .values(external_id=sa.bindparam("new"))
    )
    for old, new in plan:  # one by one, in the order rekey_plan made collision-free
        bind.execute(move, {"old": old, "new": new})
    # Old keys with more than one ':': the pair they were written for is a guess.
    ambiguous = bind.execute(
        sa.select(sa.func.count()).select_from(ledger).where(ledger.c.external_id.like("%:%:%"))
    ).scalar_one()
    log_rekeyed(steps.backend(), len(plan), int(ambiguous))


def downgrade() -> None:
    raise NotImplementedError("the ledger is never migrated down: restore a backup instead")
