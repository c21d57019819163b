"""PostgreSQL: an entry's lock and its record in one round trip (``<prefix>ledger_lock_get``).

Every event takes its entry's advisory lock and then reads the entry's record. A single statement
cannot do both: under read committed its snapshot is taken when it starts, before a lock it waits
for is granted, so it could miss what the previous holder committed meanwhile. A ``VOLATILE``
PL/pgSQL function takes a fresh snapshot for each statement in it, so its read, which runs after
the lock was granted, sees every commit made under the lock before -- the guarantee of the two
round trips it replaces (see the docstring of ``connector/state/postgres.py``). ``lock_timeout``
is set for the call's own transaction only (``set_config(..., true)``), as the ``SET LOCAL`` it
replaces. ``OR REPLACE``: a function left behind by a drop of the tables alone must not stop the
ledger from being made again.

SQLite: nothing (one process holds its ledger; its lock is in memory).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from connector.state.migrations import steps
from connector.state.schema import ledger_lock_get

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not steps.is_postgres():
        return
    p = steps.prefix()
    # The column types are the ledger's own (0001, 0002); the names are qualified with the table's
    # alias because PL/pgSQL would otherwise take them for the output columns of the same names.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {ledger_lock_get(p)}(entry_lock bigint, wait_ms integer, wanted text)
        RETURNS TABLE (
            external_id text, version bigint, state text, severa_guid text, pending_version bigint,
            fingerprint text, updated_at timestamptz, content_hash text
        )
        LANGUAGE plpgsql VOLATILE
        AS $body$
        BEGIN
            PERFORM set_config('lock_timeout', wait_ms || 'ms', true);
            PERFORM pg_advisory_lock(entry_lock);
            RETURN QUERY
                SELECT l.external_id, l.version, l.state, l.severa_guid, l.pending_version,
                       l.fingerprint, l.updated_at, l.content_hash
                FROM {p}ledger AS l
                WHERE l.external_id = wanted;
        END
        $body$
        """
    )


def downgrade() -> None:
    if not steps.is_postgres():
        return
    op.execute(f"DROP FUNCTION IF EXISTS {ledger_lock_get(steps.prefix())}(bigint, integer, text)")
