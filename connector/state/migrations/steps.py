"""Building blocks the revisions share: the table prefix, the dialect, the ``schema_version`` row.

Revisions call these from inside Alembic's ``upgrade()``, on the connection and transaction that
:func:`connector.state.migrations.migrate` opened.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op


def prefix() -> str:
    """The table prefix the running migration works under."""
    value = op.get_context().opts["table_prefix"]
    assert isinstance(value, str)
    return value


def is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def backend() -> str:
    """The backend name the ledger's log lines use for this dialect."""
    return "postgres" if is_postgres() else op.get_bind().dialect.name


def timestamp_type() -> sa.types.TypeEngine[dt.datetime] | sa.Text:
    """``timestamptz`` on PostgreSQL, ISO 8601 text on SQLite (see :mod:`connector.state.schema`)."""
    return sa.DateTime(timezone=True) if is_postgres() else sa.Text()


def has_table(name: str) -> bool:
    return bool(sa.inspect(op.get_bind()).has_table(name))


def set_component_version(component: str, version: int) -> None:
    """Write ``version`` as ``component``'s row in ``<prefix>schema_version`` (made by 0001)."""
    versions = sa.table(
        f"{prefix()}schema_version", sa.column("component"), sa.column("version"), sa.column("migrated_at")
    )
    now = dt.datetime.now(dt.UTC)
    bind = op.get_bind()
    # Under the migration lock, inside the migration's transaction: delete-then-insert is the
    # upsert both dialects spell the same way.
    bind.execute(sa.delete(versions).where(versions.c.component == component))
    bind.execute(
        sa.insert(versions).values(
            component=component,
            version=version,
            migrated_at=now if is_postgres() else now.isoformat(),
        )
    )


def create_schema_version_table() -> None:
    """``<prefix>schema_version`` as revision ``0001`` creates it, unless a tree made it already.

    Both trees keep a row there (``ledger``, ``dlq``), and either may be the first in a database.
    """
    name = f"{prefix()}schema_version"
    if has_table(name):
        return
    op.create_table(
        name,
        sa.Column("component", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "migrated_at",
            timestamp_type(),
            nullable=False,
            server_default=sa.text("now()") if is_postgres() else None,
        ),
    )
