"""The dead-letter store port, and :func:`open_store` that picks a backend from a URL.

=====================================  =========================================================
``sqlite:///relative/file.db``         :class:`~connector.dlq.sqlite.SqliteStore` (one host;
``sqlite:////absolute/file.db``        several processes on it are fine: WAL + busy timeout)
``sqlite:///:memory:``                 in memory (tests; the store lives as long as the object)
``postgresql://user@host:5432/db``     :class:`~connector.dlq.postgres.PostgresStore`: several
                                       operators / pods share one store
=====================================  =========================================================

Which backend: a store is where dead letters *are* once ingested (they leave the queue), so every
operator must see the same store. One operator host → SQLite is enough. Operators on several
machines, or commands run inside several pods → PostgreSQL, or one operator would ingest dead
letters into a file the others never see.

Both backends are :class:`~connector.dlq.sql.SqlStore`: SQLAlchemy Core statements on the state
layer the ledger and the poller use (:mod:`connector.state`) -- its URL parser, its store
lifecycle, and its one migration runner, under which the store's tables are a tree of their own
(:data:`connector.state.migrations.DEAD_LETTERS`).

Concurrency contract, whatever the backend: every write is one transaction; :meth:`claim` is a
single conditional ``UPDATE`` so two replays (two operators, two pods) can never both send a row;
a run's liveness is a lock held for as long as the process lives (``flock`` for SQLite, a session
advisory lock for PostgreSQL), so a SIGKILLed replay's rows are recognised as orphans at once,
without leases to wait out.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal, Self

from connector.dlq.grouping import GroupBy
from connector.dlq.records import (
    DeadLetterRecord,
    Group,
    PodHeartbeat,
    ReplayRun,
    RunStatus,
    Status,
    StoreEvent,
)
from connector.dlq.selection import Filter, ReplayCandidate
from connector.errors import ConfigError, SystemicError
from connector.state.urls import parse_state_url
from schemas.dlq import DlqAuditRecord


class StoreUnavailable(SystemicError):
    """The dead-letter store cannot be used: unreachable, locked too long, or a schema we do not know."""

    reason = "dlq_store_unavailable"


class StoreMissing(ConfigError):
    """The store does not exist and was opened with ``create=False`` (exit code 2).

    Only the ingesters create a store; a command pointed at a store nobody ingests into would show
    an empty world, so it is told, not given a fresh empty store.
    """

    reason = "dlq_store_missing"


class InvalidStoreURL(ConfigError, ValueError):
    """The dead-letter store URL names no backend we have (exit code 2)."""

    reason = "invalid_dlq_store_url"


class DeadLetterStore(abc.ABC):
    """Dead letters, their history, replay runs and audit records.

    Lifecycle as for the ledger (:class:`~connector.state.lifecycle.StoreLifecycle`): :meth:`setup`
    (or ``async with``) opens the store and migrates the schema; :meth:`aclose` is idempotent; a
    closed store is not reopened, and using it raises :class:`StoreUnavailable`.
    """

    backend: str = "abstract"

    @abc.abstractmethod
    async def setup(self) -> None: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.setup()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- ingest ------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def add(
        self,
        records: Sequence[DeadLetterRecord],
        *,
        kind: Literal["ingested", "imported"] = "ingested",
        operator: str | None = None,
        audit_id: str | None = None,
    ) -> list[str]:
        """Insert the records whose id is new, in one transaction; return those ids.

        Existing ids are left untouched: re-ingesting a redelivered copy is a no-op.
        """

    # -- queries -----------------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, dead_letter_id: str) -> DeadLetterRecord | None: ...

    @abc.abstractmethod
    async def resolve(self, prefix: str, *, limit: int = 5) -> list[str]:
        """Ids starting with ``prefix`` (up to ``limit``), for git-style short ids."""

    @abc.abstractmethod
    async def find(
        self, selection: Filter, *, limit: int | None = None, offset: int = 0
    ) -> list[DeadLetterRecord]:
        """Matching rows in ingest order (the DLQ's order)."""

    @abc.abstractmethod
    async def count(self, selection: Filter) -> int: ...

    @abc.abstractmethod
    async def groups(self, selection: Filter, by: GroupBy) -> list[Group]:
        """Matching rows grouped on ``by``, biggest group first."""

    @abc.abstractmethod
    async def candidates(self, selection: Filter) -> list[ReplayCandidate]:
        """What replay eligibility needs of each matching row, in ingest order (no bodies)."""

    @abc.abstractmethod
    async def load(self, ids: Sequence[str]) -> list[DeadLetterRecord]:
        """The rows with these ids, in the order given (missing ids are left out)."""

    @abc.abstractmethod
    async def related(self, record: DeadLetterRecord) -> list[DeadLetterRecord]:
        """Every other failure of the same message: same message_id, or linked by replays."""

    @abc.abstractmethod
    async def events(self, dead_letter_id: str) -> list[StoreEvent]: ...

    # -- replay ------------------------------------------------------------------------------------

    @abc.abstractmethod
    def run_lock(self, replay_id: str) -> AbstractAsyncContextManager[None]:
        """Held for as long as replay ``replay_id`` runs; freed by the OS or server if it dies."""

    @abc.abstractmethod
    async def start_run(self, run: ReplayRun) -> None:
        """Record a run (call while holding its :meth:`run_lock`)."""

    @abc.abstractmethod
    async def live_runs(self) -> set[str]:
        """Runs still alive; runs recorded as running whose lock is free are marked interrupted."""

    @abc.abstractmethod
    async def claim(self, ids: Sequence[str], *, replay_id: str, again: bool, now: dt.datetime) -> list[str]:
        """Atomically move the eligible ones of ``ids`` to ``replaying`` under ``replay_id``.

        Eligible as in :func:`connector.dlq.selection.plan_replay`, re-checked inside the
        statement: another run may have taken a row since the plan was made.
        """

    @abc.abstractmethod
    async def mark_replayed(
        self,
        targets: Mapping[str, str],
        *,
        replay_id: str,
        operator: str,
        audit_id: str | None,
        now: dt.datetime,
    ) -> None:
        """The broker confirmed these (id → queue): ``replayed``, counters and history updated."""

    @abc.abstractmethod
    async def release(
        self,
        errors: Mapping[str, str],
        *,
        replay_id: str,
        operator: str,
        audit_id: str | None,
        now: dt.datetime,
    ) -> None:
        """Publishing these failed (id → error): back to ``parked`` with the error kept."""

    @abc.abstractmethod
    async def finish_run(
        self, replay_id: str, *, status: RunStatus, replayed: int, failed: int, now: dt.datetime
    ) -> None: ...

    @abc.abstractmethod
    async def run(self, replay_id: str) -> ReplayRun | None: ...

    # -- edit, purge, audit ------------------------------------------------------------------------

    @abc.abstractmethod
    async def edit(
        self,
        dead_letter_id: str,
        body: bytes,
        *,
        operator: str,
        audit_id: str,
        detail: Mapping[str, object],
        now: dt.datetime,
    ) -> DeadLetterRecord:
        """Replace the body (the first edit keeps the original in ``original_body``)."""

    @abc.abstractmethod
    async def purge(self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime) -> list[str]:
        """Drop the bodies of these rows (unless being replayed) and mark them purged; return ids."""

    @abc.abstractmethod
    async def archive(
        self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime
    ) -> list[str]:
        """Set these rows aside (``parked``/``replayed`` → ``archived``, body kept); return ids."""

    @abc.abstractmethod
    async def restore(
        self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime
    ) -> list[str]:
        """Put archived rows back: ``replayed`` if they ever were, else ``parked``; return ids."""

    @abc.abstractmethod
    async def run_progress(self, replay_id: str) -> dict[Status, int]:
        """How many rows claimed by run ``replay_id`` are in each status now (live progress)."""

    @abc.abstractmethod
    async def record_audit(self, record: DlqAuditRecord) -> None: ...

    @abc.abstractmethod
    async def audits(self, *, limit: int = 50) -> list[DlqAuditRecord]:
        """The latest audit records, newest first."""

    # -- pods --------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def beat(self, heartbeat: PodHeartbeat, *, forget_before: dt.datetime | None = None) -> None:
        """Write this pod's row (insert or replace); drop rows of pods silent since ``forget_before``."""

    @abc.abstractmethod
    async def pods(self) -> list[PodHeartbeat]:
        """Every pod's last heartbeat, by pod name."""


def open_store(url: str, *, table_prefix: str | None = None, create: bool = True) -> DeadLetterStore:
    """Build the store ``url`` names (not yet opened). Messages never repeat the URL (passwords).

    The URL is read by :func:`connector.state.urls.parse_state_url`, as the ledger's is, except
    that ``memory://`` is no store here (``sqlite:///:memory:`` is). ``table_prefix`` applies to
    PostgreSQL (default ``severa_connector_``); a SQLite store is a file of its own, unprefixed.
    ``create=False``: :meth:`~DeadLetterStore.setup` raises :class:`StoreMissing` instead of
    creating a store (a SQLite file, or PostgreSQL tables) that is not there yet.
    """
    target = parse_state_url(url, what="dead-letter store", error=InvalidStoreURL, memory=False)
    if target.scheme == "sqlite":
        from connector.dlq.sqlite import SqliteStore

        return SqliteStore(target.location, create=create)
    from connector.dlq.postgres import DEFAULT_TABLE_PREFIX, PostgresStore

    return PostgresStore(target.location, table_prefix=table_prefix or DEFAULT_TABLE_PREFIX, create=create)
