"""The one migration mechanism of the connector's state: Alembic, run from code.

:func:`migrate` brings the tables of :func:`connector.state.schema.state_metadata` under one table
prefix to the newest revision. Every state backend calls it from ``setup()``; no ``alembic.ini``
is involved, and the revisions (``versions/``) ship inside the package.

========  ======================================================================================
``0001``  the ledger table as the first hand-written schema made it, and ``schema_version``
``0002``  the ledger's ``content_hash`` column; keys re-written to
          :func:`connector.state.identity.entry_key` (:func:`connector.state.ledger.rekey_plan`)
``0003``  the poller's tables: ``poller_cursor``, ``poller_seen``, ``poller_lease``
========  ======================================================================================

**Adopting a ledger made by the hand-written runners.** Alembic records its revision in
``<prefix>alembic_version``. A database without that table but with a ``schema_version`` row of
component ``ledger`` was made by the runner of an earlier release: version 1 is stamped as
``0001`` and version 2 as ``0002`` (the revisions are those versions, step for step), then the
remaining revisions run as usual. Nothing is re-created and no row is touched beyond what the
revisions themselves do. The ``schema_version`` row itself is kept up to date by the revisions
that change the ledger table (:data:`~connector.state.schema.LEDGER_TABLE_VERSION`), so a
connector of the previous release, rolled back onto a migrated database, still finds the version
it knows and neither re-keys a second time nor refuses to start. A revision we do not know, or a
``schema_version`` higher than ours, means a newer connector has been here:
:class:`~connector.state.ledger.LedgerUnavailable` with reason ``ledger_schema_too_new``.

**One transaction, one migrator at a time.** Reading the revision, stamping and every revision's
steps run in a single transaction. On PostgreSQL, whose DDL is transactional, that transaction
first takes ``pg_advisory_xact_lock`` on :func:`connector.state.postgres.schema_lock_key` -- the
key the hand-written runner took, so pods of the previous and this release starting together
still migrate one at a time -- and pods starting together migrate once: the others wait, then
find the head revision. On SQLite the transaction starts with ``BEGIN IMMEDIATE`` (the write lock
up front, as the hand-written runner did; SQLite's DDL is transactional too), so a migration cut
short leaves nothing behind and simply runs again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from connector.logging import get_logger
from connector.state.ledger import LedgerUnavailable
from connector.state.schema import LEDGER_TABLE_VERSION, check_prefix

__all__ = ["HEAD", "LEGACY_LEDGER_REVISIONS", "current_revision", "migrate", "sqlite_begin_immediate"]

log = get_logger(__name__)

HEAD: Final = "0003"
"""The newest revision this code knows."""
LEGACY_LEDGER_REVISIONS: Final = {1: "0001", 2: "0002"}
"""The revision each ``schema_version`` of the hand-written ledger runners corresponds to."""

_SCRIPT_LOCATION: Final = str(Path(__file__).resolve().parent)
_TRANSACTIONAL: Final = {"postgresql": "READ COMMITTED", "sqlite": "SERIALIZABLE"}


def version_table(table_prefix: str) -> str:
    return f"{table_prefix}alembic_version"


async def migrate(engine: AsyncEngine | str, *, table_prefix: str = "") -> None:
    """Create or upgrade the state tables under ``table_prefix`` to :data:`HEAD`.

    ``engine`` is an async engine (``sqlite+aiosqlite``, ``postgresql+asyncpg``) or its URL; an
    engine made here from a URL is disposed of before returning. Safe to call from several
    processes at once (see the module docstring). Raises
    :class:`~connector.state.ledger.LedgerUnavailable` when the store fails or holds a newer schema.
    """
    check_prefix(table_prefix)
    owned = isinstance(engine, str)
    target = create_async_engine(engine, poolclass=NullPool) if isinstance(engine, str) else engine
    if target.dialect.name not in _TRANSACTIONAL:
        raise ValueError(f"the state tables live in SQLite or PostgreSQL, not {target.dialect.name}")
    if target.dialect.name == "sqlite":
        sqlite_begin_immediate(target)
    try:
        async with target.connect() as conn:
            # Whatever the engine's default (an AUTOCOMMIT engine would never send the BEGIN and
            # COMMIT the single migration transaction depends on).
            await conn.execution_options(isolation_level=_TRANSACTIONAL[target.dialect.name])
            await conn.run_sync(_upgrade, table_prefix)
    except sa.exc.SQLAlchemyError as exc:
        raise LedgerUnavailable(
            f"could not migrate the state tables {table_prefix}* ({target.dialect.name}): "
            f"{type(exc).__name__}: {exc}",
            reason="ledger_migration_failed",
        ) from exc
    finally:
        if owned:
            await target.dispose()


def sqlite_begin_immediate(engine: AsyncEngine) -> None:
    """Make ``engine``'s transactions real SQLite transactions that take the write lock at once.

    Python's sqlite3 module opens a transaction only before DML, so DDL would run in autocommit
    and a migration cut short would leave half a schema. SQLAlchemy's documented remedy: leave
    the driver in autocommit and emit ``BEGIN`` ourselves -- ``IMMEDIATE``, so that reading the
    revision and migrating are one step against any other writer of the file.
    """
    sync_engine = engine.sync_engine
    if event.contains(sync_engine, "begin", _begin_immediate):
        return
    event.listen(sync_engine, "connect", _driver_autocommit)
    event.listen(sync_engine, "begin", _begin_immediate)


def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def current_revision(connection: Connection, table_prefix: str) -> str | None:
    """The revision recorded under ``table_prefix``, ``None`` if Alembic has not been here."""
    context = MigrationContext.configure(connection, opts={"version_table": version_table(table_prefix)})
    return context.get_current_revision()


def _config(connection: Connection, table_prefix: str) -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    config.attributes["table_prefix"] = table_prefix
    return config


def _upgrade(connection: Connection, table_prefix: str) -> None:
    with connection.begin():
        if connection.dialect.name == "postgresql":
            from connector.state.postgres import schema_lock_key

            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(schema_lock_key(table_prefix))))
        config = _config(connection, table_prefix)
        script = ScriptDirectory.from_config(config)
        current = current_revision(connection, table_prefix)
        legacy = _ledger_table_version(connection, table_prefix)
        if legacy is not None and legacy > LEDGER_TABLE_VERSION:
            raise _too_new(table_prefix, f"ledger schema version {legacy}")
        if current is None and legacy is not None:
            current = LEGACY_LEDGER_REVISIONS[legacy]
            with _commands():
                command.stamp(config, current)
            log.info(
                "state.schema_adopted", table_prefix=table_prefix, schema_version=legacy, revision=current
            )
        elif current is not None and not _known(script, current):
            raise _too_new(table_prefix, f"revision {current!r}")
        if current == HEAD:
            return
        with _commands():
            command.upgrade(config, HEAD)
        log.info("state.schema_migrated", table_prefix=table_prefix, old=current, new=HEAD)


def _ledger_table_version(connection: Connection, table_prefix: str) -> int | None:
    name = f"{table_prefix}schema_version"
    if not sa.inspect(connection).has_table(name):
        return None
    versions = sa.table(name, sa.column("component"), sa.column("version"))
    found = connection.execute(
        sa.select(versions.c.version).where(versions.c.component == "ledger")
    ).scalar_one_or_none()
    return None if found is None else int(found)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False
    except Exception as exc:  # alembic.script.revision.ResolutionError and kin
        if type(exc).__module__.startswith("alembic"):
            return False
        raise


def _too_new(table_prefix: str, what: str) -> LedgerUnavailable:
    return LedgerUnavailable(
        f"the state tables {table_prefix}* hold {what}, newer than this connector understands "
        f"(it knows up to revision {HEAD}): upgrade the connector",
        reason="ledger_schema_too_new",
    )


@contextmanager
def _commands() -> Iterator[None]:
    """Alembic's commands report misuse as :class:`CommandError`; to us that is a store we cannot use."""
    try:
        yield
    except CommandError as exc:
        raise LedgerUnavailable(
            f"could not migrate the state tables: {exc}", reason="ledger_migration_failed"
        ) from exc
