"""The one migration mechanism of the connector's state: Alembic, run from code.

:func:`migrate` brings one **tree** of tables under one table prefix to the tree's newest
revision. Every state backend calls it from ``setup()``; no ``alembic.ini`` is involved, and the
revisions ship inside the package. A tree is a set of tables with revisions and a version table
of its own:

* :data:`STATE` -- the ledger and the poller's tables (:mod:`connector.state.schema`); revisions
  in ``versions/``, recorded in ``<prefix>alembic_version``;
* :data:`DEAD_LETTERS` -- the dead-letter store's tables (:mod:`connector.state.dlq_schema`);
  revisions in ``dlq_versions/``, recorded in ``<prefix>dlq_alembic_version``.

===========  ===================================================================================
``0001``     the ledger table as the first hand-written schema made it, and ``schema_version``
``0002``     the ledger's ``content_hash`` column; keys re-written to
             :func:`connector.state.identity.entry_key` (:func:`connector.state.ledger.rekey_plan`)
``0003``     the poller's tables: ``poller_cursor``, ``poller_seen``, ``poller_lease``
``0004``     PostgreSQL only: ``ledger_lock_get``, an entry's lock and its record in one round trip
``dlq0001``  the dead-letter store's tables as its hand-written schema (version 1) made them
``dlq0002``  the ``archived`` status of a dead letter; the pods' ``pod_heartbeats``
===========  ===================================================================================

**Why two trees rather than one.** On SQLite the dead-letter store is a database of its own (a
file beside the ledger's, open in several processes while the ledger's belongs to one pod); on
PostgreSQL it shares the ledger's database and table prefix. Each tree must migrate on its own --
a ledger-only database never grows dead-letter tables, a dead-letter file never grows a ledger --
and a connector of the previous release, which reads ``<prefix>alembic_version`` as one revision,
must still find exactly one row there when the store shares its database. One version table per
tree gives both; Alembic branches in one version table would give neither.

**Adopting tables made by the hand-written runners.** A tree without its version table but with a
``<prefix>schema_version`` row of its component (``ledger``, ``dlq``) was made by the runner of an
earlier release: the version found is stamped as the revision that is that version, step for step
(ledger 1 = ``0001``, 2 = ``0002``; dead-letter store 1 = ``dlq0001``), then the remaining
revisions run as usual. Nothing is re-created and no row is touched beyond what the revisions
themselves do. The ``schema_version`` rows are kept up to date by the revisions that change those
tables (:data:`~connector.state.schema.LEDGER_TABLE_VERSION`,
:data:`~connector.state.dlq_schema.DLQ_TABLE_VERSION`), so a connector of the previous release,
rolled back onto a migrated database, still finds the version it knows and neither migrates a
second time nor refuses to start. A revision we do not know, or a ``schema_version`` higher than
ours, means a newer connector has been here: :class:`~connector.state.ledger.LedgerUnavailable`
with reason ``ledger_schema_too_new`` (which the dead-letter store reports as its own
``dlq_store_schema_too_new``).

**One transaction, one migrator at a time.** Reading the revision, stamping and every revision's
steps run in a single transaction. On PostgreSQL, whose DDL is transactional, that transaction
first takes ``pg_advisory_xact_lock`` on the keys the hand-written runners took -- the ledger's
(:func:`connector.state.postgres.schema_lock_key`) for both trees, then the dead-letter store's
own for that tree -- so pods of the previous and this release starting together still migrate
one at a time, the two trees never race to create the ``schema_version`` table they share, and
pods starting together migrate once: the others wait, then find the head revision. On SQLite the
transaction starts with ``BEGIN IMMEDIATE`` (the write lock up front, as the hand-written runners
did; SQLite's DDL is transactional too), so a migration cut short leaves nothing behind and simply
runs again. Before any of that, a snapshot that takes no lock looks at the revision: a tree
already at its head (nearly every start) returns at once, so a reader such as ``dlq list`` never
waits behind a writer of the file, nor pods behind each other's advisory locks.

**One migration per event loop at a time.** Alembic's commands publish their environment
through the module-global ``alembic.context`` proxy. Under SQLAlchemy's asyncio bridge a
migration's ``run_sync`` gives the event loop back at every database call, so two migrations on
one loop (the ledger's and the dead-letter store's, which open together at start-up) would each
run with the other's environment half the time -- the wrong connection, a ``KeyError: 'config'``
once the other finishes. :func:`migrate` therefore holds a lock per event loop around the
migration. A process of the connector runs one loop; two loops in two threads of one process
migrating at the same moment would still share Alembic's global, and nothing here runs so.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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
from connector.state import sqlite_connection
from connector.state.dlq_schema import DLQ_TABLE_VERSION, dlq_metadata
from connector.state.ledger import LedgerUnavailable
from connector.state.schema import LEDGER_TABLE_VERSION, check_prefix, state_metadata

__all__ = [
    "DEAD_LETTERS",
    "HEAD",
    "LEGACY_LEDGER_REVISIONS",
    "READ_ONLY",
    "STATE",
    "Tree",
    "current_revision",
    "migrate",
    "recorded",
    "sqlite_begin_immediate",
    "version_table",
]

log = get_logger(__name__)

HEAD: Final = "0004"
"""The newest revision of the :data:`STATE` tree this code knows."""
LEGACY_LEDGER_REVISIONS: Final = {1: "0001", 2: "0002"}
"""The revision each ``schema_version`` of the hand-written ledger runners corresponds to."""

READ_ONLY: Final = "state_read_only"
"""Execution option: on an engine set up by :func:`sqlite_begin_immediate`, a connection with
``READ_ONLY=True`` begins with a plain (deferred) ``BEGIN`` -- a snapshot that takes no write lock,
so a reader never waits for, or holds up, another process's writer."""

_SCRIPT_LOCATION: Final = Path(__file__).resolve().parent
_TRANSACTIONAL: Final = {"postgresql": "READ COMMITTED", "sqlite": "SERIALIZABLE"}


def _state_lock_keys(table_prefix: str) -> tuple[int, ...]:
    from connector.state.postgres import schema_lock_key

    return (schema_lock_key(table_prefix),)


def _dead_letter_lock_keys(table_prefix: str) -> tuple[int, ...]:
    from connector.state.postgres import advisory_key, schema_lock_key

    # The ledger's key first (the schema_version table is shared), then the key the dead-letter
    # store's hand-written runner took, so that runner and this one never migrate at once.
    return (schema_lock_key(table_prefix), advisory_key(table_prefix, "dlq", purpose=b"sc-dlq-schema"))


@dataclass(frozen=True, slots=True)
class Tree:
    """Tables that migrate together: their revisions, their version table, their hand-written past."""

    name: str
    """What messages call the tables: "state", "dead-letter"."""
    location: str
    """The directory of the tree's revisions, inside this package."""
    head: str
    version_table: str
    """The name of the tree's Alembic version table, after the table prefix."""
    component: str
    """The ``schema_version`` component the hand-written runner of these tables wrote."""
    legacy_revisions: Mapping[int, str]
    """The revision each ``schema_version`` of that runner corresponds to."""
    table_version: int
    """The highest ``schema_version`` of ``component`` this code knows; higher is a newer connector."""
    metadata: Callable[[str], sa.MetaData]
    lock_keys: Callable[[str], tuple[int, ...]]
    """PostgreSQL advisory-lock keys a migration of the tree holds, taken in this order."""


STATE: Final = Tree(
    name="state",
    location="versions",
    head=HEAD,
    version_table="alembic_version",
    component="ledger",
    legacy_revisions=LEGACY_LEDGER_REVISIONS,
    table_version=LEDGER_TABLE_VERSION,
    metadata=state_metadata,
    lock_keys=_state_lock_keys,
)
DEAD_LETTERS: Final = Tree(
    name="dead-letter",
    location="dlq_versions",
    head="dlq0002",
    version_table="dlq_alembic_version",
    component="dlq",
    legacy_revisions={1: "dlq0001"},
    table_version=DLQ_TABLE_VERSION,
    metadata=dlq_metadata,
    lock_keys=_dead_letter_lock_keys,
)


def version_table(table_prefix: str, tree: Tree = STATE) -> str:
    return f"{table_prefix}{tree.version_table}"


async def migrate(engine: AsyncEngine | str, *, table_prefix: str = "", tree: Tree = STATE) -> None:
    """Create or upgrade the tables of ``tree`` under ``table_prefix`` to its head revision.

    ``engine`` is an async engine (``sqlite+aiosqlite``, ``postgresql+asyncpg``) or its URL; an
    engine made here from a URL is disposed of before returning. Safe to call from several
    processes at once (see the module docstring). Raises
    :class:`~connector.state.ledger.LedgerUnavailable` when the store fails or holds a newer schema.
    """
    check_prefix(table_prefix)
    owned = isinstance(engine, str)
    target = _engine_for(engine) if isinstance(engine, str) else engine
    if target.dialect.name not in _TRANSACTIONAL:
        raise ValueError(f"the state tables live in SQLite or PostgreSQL, not {target.dialect.name}")
    if target.dialect.name == "sqlite":
        sqlite_begin_immediate(target)
    isolation = _TRANSACTIONAL[target.dialect.name]
    try:
        async with _migration_lock():
            async with target.connect() as look:
                # Almost every start finds the head: a snapshot says so without the write lock
                # (SQLite) or the advisory locks (PostgreSQL) that a writer holding them would
                # make it wait for -- a read-only ``dlq list`` beside a busy pod, say.
                await look.execution_options(isolation_level=isolation, **{READ_ONLY: True})
                if await look.run_sync(_at_head, table_prefix, tree):
                    return
            async with target.connect() as conn:
                # Whatever the engine's default (an AUTOCOMMIT engine would never send the BEGIN
                # and COMMIT the single migration transaction depends on).
                await conn.execution_options(isolation_level=isolation)
                await conn.run_sync(_upgrade, table_prefix, tree)
    except sa.exc.SQLAlchemyError as exc:
        raise LedgerUnavailable(
            f"could not migrate the {tree.name} tables {table_prefix}* ({target.dialect.name}): "
            f"{type(exc).__name__}: {exc}",
            reason="ledger_migration_failed",
        ) from exc
    finally:
        if owned:
            await target.dispose()


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _engine_for(url: str) -> AsyncEngine:
    """An engine of :func:`migrate`'s own; SQLite's closes its connection without keeping locks."""
    is_sqlite = sa.make_url(url).get_backend_name() == "sqlite"
    return create_async_engine(
        url, poolclass=NullPool, connect_args=dict(sqlite_connection.FACTORY) if is_sqlite else {}
    )


def _migration_lock() -> asyncio.Lock:
    """The lock that keeps this event loop's migrations one at a time (see the module docstring)."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
    return lock


def sqlite_begin_immediate(engine: AsyncEngine) -> None:
    """Make ``engine``'s transactions real SQLite transactions that take the write lock at once.

    Python's sqlite3 module opens a transaction only before DML, so DDL would run in autocommit
    and a migration cut short would leave half a schema. SQLAlchemy's documented remedy: leave
    the driver in autocommit and emit ``BEGIN`` ourselves -- ``IMMEDIATE``, so that reading the
    revision and migrating are one step against any other writer of the file. A connection with
    the :data:`READ_ONLY` execution option begins a deferred transaction instead.
    """
    sync_engine = engine.sync_engine
    if event.contains(sync_engine, "begin", _begin_immediate):
        return
    event.listen(sync_engine, "connect", _driver_autocommit)
    event.listen(sync_engine, "begin", _begin_immediate)


def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def current_revision(connection: Connection, table_prefix: str, tree: Tree = STATE) -> str | None:
    """The revision of ``tree`` recorded under ``table_prefix``, ``None`` if Alembic has not been here."""
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table(table_prefix, tree)}
    )
    return context.get_current_revision()


def recorded(connection: Connection, table_prefix: str, tree: Tree) -> bool:
    """Whether the tables of ``tree`` exist under ``table_prefix``, as this code or a hand-written
    runner of an earlier release left them; reads only, so a caller may ask before creating anything."""
    versioned = sa.inspect(connection).has_table(version_table(table_prefix, tree))
    if versioned and current_revision(connection, table_prefix, tree) is not None:
        return True
    return _legacy_version(connection, table_prefix, tree.component) is not None


def _config(connection: Connection, table_prefix: str, tree: Tree) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    # One directory per tree; split on os.pathsep, never on the spaces an install path may hold.
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(_SCRIPT_LOCATION / tree.location))
    config.attributes["connection"] = connection
    config.attributes["table_prefix"] = table_prefix
    config.attributes["tree"] = tree
    return config


def _at_head(connection: Connection, table_prefix: str, tree: Tree) -> bool:
    """Whether ``tree`` is at its head revision and no newer release has been here; reads only."""
    with connection.begin():
        if current_revision(connection, table_prefix, tree) != tree.head:
            return False
        legacy = _legacy_version(connection, table_prefix, tree.component)
        return legacy is None or legacy <= tree.table_version


def _upgrade(connection: Connection, table_prefix: str, tree: Tree) -> None:
    with connection.begin():
        if connection.dialect.name == "postgresql":
            for key in tree.lock_keys(table_prefix):
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        config = _config(connection, table_prefix, tree)
        script = ScriptDirectory.from_config(config)
        current = current_revision(connection, table_prefix, tree)
        legacy = _legacy_version(connection, table_prefix, tree.component)
        if legacy is not None and legacy > tree.table_version:
            raise _too_new(table_prefix, tree, f"{tree.component} schema version {legacy}")
        if current is None and legacy is not None:
            if legacy not in tree.legacy_revisions:
                raise LedgerUnavailable(
                    f"the {tree.name} tables {table_prefix}* record {tree.component} schema version "
                    f"{legacy}, which no release wrote: restore a backup",
                    reason="ledger_migration_failed",
                )
            current = tree.legacy_revisions[legacy]
            with _commands():
                command.stamp(config, current)
            log.info(
                "state.schema_adopted",
                tree=tree.name,
                table_prefix=table_prefix,
                schema_version=legacy,
                revision=current,
            )
        elif current is not None and not _known(script, current):
            raise _too_new(table_prefix, tree, f"revision {current!r}")
        if current == tree.head:
            return
        with _commands():
            command.upgrade(config, tree.head)
        log.info(
            "state.schema_migrated", tree=tree.name, table_prefix=table_prefix, old=current, new=tree.head
        )


def _legacy_version(connection: Connection, table_prefix: str, component: str) -> int | None:
    name = f"{table_prefix}schema_version"
    if not sa.inspect(connection).has_table(name):
        return None
    versions = sa.table(name, sa.column("component"), sa.column("version"))
    found = connection.execute(
        sa.select(versions.c.version).where(versions.c.component == component)
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


def _too_new(table_prefix: str, tree: Tree, what: str) -> LedgerUnavailable:
    return LedgerUnavailable(
        f"the {tree.name} tables {table_prefix}* hold {what}, newer than this connector understands "
        f"(it knows up to revision {tree.head}): upgrade the connector",
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
