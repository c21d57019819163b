"""The poller's state: a cursor per entity kind, and the lease that lets exactly one poller poll.

Severa's API is passive, so the connector asks it what changed (:mod:`connector.flows.poller`).
Per entity kind a :class:`Cursor` says where the next poll starts and which changes inside the
overlap window were already published; across pods a lease with a fencing token makes one poller
the active one::

    token = await state.acquire(LEASE, holder, ttl)     # None: another pod's lease is live
    cursor = await state.load("invoices")               # after acquiring, never before
    ...                                                 # publish, with confirms
    await state.save(next_cursor, token=token)          # LeaseLost: another poller took over
    await state.renew(LEASE, holder, token, ttl)        # every poll, well inside the ttl
    await state.release(LEASE, holder, token)           # at shutdown

**Fencing.** Every :meth:`~PollerState.acquire` hands out a new token, strictly increasing per
lease name -- also when the holder takes its own lease again -- and :meth:`~PollerState.release`
moves the token on as well. :meth:`~PollerState.save` checks, in the transaction that writes the
cursor, that its token is still the lease's; a poller that lost the lease while a poll ran (a long
pause, a partition past the ttl) can then move the cursor neither back nor forward. A lease that
expired but that nobody took is still its holder's: renewing it and saving under it succeed,
because nobody else can have moved a cursor meanwhile.

**Clocks.** On PostgreSQL a lease's expiry is computed and compared with the server's ``now()``,
so pods whose clocks disagree still agree on who holds it. SQLite (one host) and the in-memory
fake use the ``clock`` they were given.

**Atomicity.** ``acquire`` is one ``INSERT … ON CONFLICT DO UPDATE … WHERE <expired or ours>
RETURNING`` statement: of two pods racing, PostgreSQL makes the second wait for the first one's
row and evaluates the condition against it, so only one gets a token. ``save`` first reads the
lease row ``FOR SHARE``: a takeover waits for a save in flight, and a save after a takeover finds
the new token. ``load`` reads the cursor and its seen set in one statement (one snapshot), and
``save`` replaces both in one transaction. On SQLite every transaction starts with ``BEGIN
IMMEDIATE`` (:func:`~connector.state.migrations.sqlite_begin_immediate`): one writer at a time.

**Change stamps** in :attr:`Cursor.seen` are opaque text, stored and read back verbatim: a
change time (write it with :func:`change_stamp`, so that one moment always reads the same), an
event id or a content hash -- whatever names one state of the entity.

The tables (``<prefix>poller_cursor``, ``<prefix>poller_seen``, ``<prefix>poller_lease``) are
those of :mod:`connector.state.schema`, created by :func:`connector.state.migrations.migrate` in
:meth:`~PollerState.setup`. This path runs once per poll, not once per message, so its statements
are SQLAlchemy Core on an async engine (aiosqlite, asyncpg).

=====================================  =========================================================
``sqlite:///relative/file.db``         :class:`SqlPollerState`, path relative to the working dir
``sqlite:////absolute/file.db``        :class:`SqlPollerState`, absolute path (four slashes)
``sqlite:///:memory:``                 :class:`SqlPollerState` in memory (tests, demos)
``postgresql://user@host:5432/db``     :class:`SqlPollerState` (``postgres://`` too)
``memory://``                          :class:`InMemoryPollerState` (tests, demos)
=====================================  =========================================================
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, Self, runtime_checkable
from urllib.parse import unquote, urlsplit

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from connector.errors import ConfigError, ConnectorError, SystemicError, TransientError
from connector.logging import get_logger, register_secret
from connector.state import sqlite_connection
from connector.state.ledger import LedgerUnavailable, check_text, utc_now
from connector.state.lifecycle import StoreLifecycle
from connector.state.migrations import migrate, sqlite_begin_immediate
from connector.state.schema import UtcTimestamp, check_prefix, state_metadata
from connector.state.urls import StateURL, parse_state_url

__all__ = [
    "DEFAULT_LEASE",
    "MAX_TTL_SECONDS",
    "BasePollerState",
    "Clock",
    "Cursor",
    "InMemoryPollerState",
    "InvalidPollerStateURL",
    "LeaseLost",
    "PollerState",
    "PollerStateUnavailable",
    "SqlPollerState",
    "change_stamp",
    "open_poller_state",
]

log = get_logger(__name__)

Clock = Callable[[], dt.datetime]
"""Returns the current time as an aware datetime."""

DEFAULT_LEASE: Final = "severa-poller"
"""The lease :meth:`PollerState.save` is fenced by unless told otherwise (the poller's lease)."""
MAX_STAMP_CHARS: Final = 100
"""Longest change stamp kept in the seen set (an ISO time, a UUID, a "sha256:" digest all fit)."""
MAX_TTL_SECONDS: Final = 86_400.0
"""Longest lease accepted: a day. A longer one would outlive any pod it is meant to replace."""
MAX_TOKEN: Final = 2**63 - 1
"""Fencing tokens are stored as signed 64-bit integers."""

_SQLITE_MEMORY: Final = ":memory:"


# --------------------------------------------------------------------------------------------------
# Errors


class LeaseLost(TransientError):
    """The lease named no longer carries the token given: another poller holds it, or it was released.

    Raised by :meth:`PollerState.save` instead of writing, so a poller that was overtaken cannot
    move the cursor. Transient: the poll ends, and the next one tries to acquire the lease again.
    """

    reason = "poller_lease_lost"


class PollerStateUnavailable(SystemicError):
    """The poller's state store cannot be used: unreachable, closed, or holding a newer schema.

    Systemic: no poll can succeed until it is back, so the poller backs off and tries again.
    """

    reason = "poller_state_unavailable"


class InvalidPollerStateURL(ConfigError, ValueError):
    """The state URL names no backend we have, or is malformed for the one it names."""

    reason = "invalid_poller_state_url"


# --------------------------------------------------------------------------------------------------
# The cursor


def change_stamp(value: dt.datetime | str) -> str:
    """The one text form of a change stamp: aware UTC, six fractional digits, ``+00:00``.

    Accepts an aware datetime or ISO 8601 text with an offset (``Z`` too); a stamp without a zone
    is refused (:class:`ValueError`) rather than guessed. Digits below the microsecond are dropped,
    as the stores keep microseconds.
    """
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a change stamp needs a time zone, got {value!r}")
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next poll of one entity kind starts, and what inside its overlap is old news.

    ``since`` is an aware datetime, normalised to UTC (``None``: never polled). ``seen`` holds the
    ``(guid, change stamp)`` pairs already published that the next, overlapping poll may return
    again; a stamp is a change time as :func:`change_stamp` writes it, or another text that names
    one state of the entity (an event id, a content hash).
    """

    kind: str
    since: dt.datetime | None
    seen: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        check_text("kind", self.kind)
        since: object = self.since  # checked as whatever it is at run time
        if since is not None:
            if not isinstance(since, dt.datetime):
                raise TypeError(f"since must be a datetime or None, got {since!r}")
            if since.tzinfo is None or since.utcoffset() is None:
                raise ValueError(f"since must be timezone-aware, got {since!r}")
            object.__setattr__(self, "since", since.astimezone(dt.UTC))
        seen: object = self.seen
        if not isinstance(seen, frozenset):
            object.__setattr__(self, "seen", frozenset(self.seen))
        for pair in self.seen:
            _check_seen(pair)


def _check_seen(pair: object) -> None:
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise ValueError(f"seen holds (guid, change stamp) pairs, got {pair!r}")
    guid, stamp = pair
    check_text("guid", guid)
    # A stamp is whatever names one state of the entity: a change time (change_stamp() writes
    # those), or -- where Severa gives none, as for invoices -- an event id or a content hash.
    check_text("change stamp", stamp)
    if len(stamp) > MAX_STAMP_CHARS:
        raise ValueError(f"change stamp of {guid!r} is longer than {MAX_STAMP_CHARS} characters")


# --------------------------------------------------------------------------------------------------
# The port


@runtime_checkable
class PollerState(Protocol):
    """Cursors per entity kind and named leases with fencing tokens (see the module docstring).

    Lifecycle: :meth:`setup` (or ``async with``) opens the store and creates the tables if
    missing; :meth:`aclose` is idempotent; a closed state cannot be reopened, and using it raises
    :class:`PollerStateUnavailable`. A store that cannot be reached raises
    :class:`PollerStateUnavailable` from every call; bad arguments raise :class:`ValueError`.
    """

    async def setup(self) -> None:
        """Connect and create the tables if missing (idempotent, safe from several pods)."""

    async def aclose(self) -> None:
        """Release connections; idempotent."""

    async def load(self, kind: str) -> Cursor:
        """The cursor of ``kind``; ``Cursor(kind, None, frozenset())`` if it was never saved."""

    async def save(self, cursor: Cursor, *, token: int, lease: str = DEFAULT_LEASE) -> None:
        """Replace ``cursor.kind``'s cursor and seen set, in one transaction, if ``token`` is
        still the fencing token of ``lease``; otherwise write nothing and raise :class:`LeaseLost`."""

    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> int | None:
        """Take lease ``name`` for ``ttl_seconds`` if it is free, expired or already ``holder``'s,
        and return its new fencing token (strictly increasing per name); ``None`` if another
        holder's lease is live."""

    async def renew(self, name: str, holder: str, token: int, ttl_seconds: float) -> bool:
        """Extend the lease to ``ttl_seconds`` from now; ``False`` if ``token`` is no longer its
        token (taken over after expiring, released, or re-acquired since)."""

    async def release(self, name: str, holder: str, token: int) -> None:
        """Give the lease up at once (its token moves on, so ``token`` saves nothing more); a no-op
        if ``token`` is no longer the lease's."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --------------------------------------------------------------------------------------------------
# Argument checks: a bad argument is a bug in the caller, not a store failure.


def check_token(token: int) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or not 1 <= token <= MAX_TOKEN:
        raise ValueError(f"a fencing token is an int in [1, 2**63-1], got {token!r}")
    return token


def check_ttl(ttl_seconds: float) -> float:
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int | float)
        or not math.isfinite(ttl_seconds)
        or not 0 < ttl_seconds <= MAX_TTL_SECONDS
    ):
        raise ValueError(f"ttl_seconds must be a number in (0, {MAX_TTL_SECONDS:g}], got {ttl_seconds!r}")
    return float(ttl_seconds)


def _aware(clock: Clock) -> dt.datetime:
    now = clock()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the clock must return aware datetimes, got {now!r}")
    return now.astimezone(dt.UTC)


# --------------------------------------------------------------------------------------------------
# Lifecycle and checks shared by the backends


class BasePollerState(StoreLifecycle):
    """Lifecycle and argument checks; backends implement the ``_``-prefixed hooks."""

    backend: str = "abstract"

    def _closed_error(self) -> Exception:
        return PollerStateUnavailable(
            f"the {self.backend} poller state is closed", reason="poller_state_closed"
        )

    async def load(self, kind: str) -> Cursor:
        check_text("kind", kind)
        self._check_open()
        return await self._load(kind)

    async def save(self, cursor: Cursor, *, token: int, lease: str = DEFAULT_LEASE) -> None:
        if not isinstance(cursor, Cursor):
            raise TypeError(f"save takes a Cursor, got {type(cursor).__name__}")
        check_token(token)
        check_text("lease", lease)
        self._check_open()
        await self._save(cursor, token, lease)

    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> int | None:
        check_text("name", name)
        check_text("holder", holder)
        ttl = check_ttl(ttl_seconds)
        self._check_open()
        return await self._acquire(name, holder, ttl)

    async def renew(self, name: str, holder: str, token: int, ttl_seconds: float) -> bool:
        check_text("name", name)
        check_text("holder", holder)
        check_token(token)
        ttl = check_ttl(ttl_seconds)
        self._check_open()
        return await self._renew(name, holder, token, ttl)

    async def release(self, name: str, holder: str, token: int) -> None:
        check_text("name", name)
        check_text("holder", holder)
        check_token(token)
        self._check_open()
        await self._release(name, holder, token)

    def _lease_lost(self, cursor: Cursor, token: int, lease: str) -> LeaseLost:
        return LeaseLost(
            f"refused to save the {cursor.kind!r} cursor: token {token} is no longer the fencing token "
            f"of lease {lease!r} (another poller took it over, or it was released)",
            kind=cursor.kind,
            lease=lease,
            token=token,
        )

    @abc.abstractmethod
    async def _load(self, kind: str) -> Cursor: ...

    @abc.abstractmethod
    async def _save(self, cursor: Cursor, token: int, lease: str) -> None: ...

    @abc.abstractmethod
    async def _acquire(self, name: str, holder: str, ttl: float) -> int | None: ...

    @abc.abstractmethod
    async def _renew(self, name: str, holder: str, token: int, ttl: float) -> bool: ...

    @abc.abstractmethod
    async def _release(self, name: str, holder: str, token: int) -> None: ...


# --------------------------------------------------------------------------------------------------
# In memory: the fake the poller's unit tests run against


@dataclass(slots=True)
class _Lease:
    holder: str
    token: int
    expires_at: dt.datetime


@dataclass(slots=True)
class _MemoryStore:
    cursors: dict[str, Cursor] = field(default_factory=dict)
    leases: dict[str, _Lease] = field(default_factory=dict)


class InMemoryPollerState(BasePollerState):
    """Dicts of cursors and leases, with the semantics of the SQL backends and a clock of your own.

    Every method runs without awaiting in between reading and writing, so each is atomic against
    the other tasks of the event loop. :meth:`peer` gives a second state object over the same
    store -- a second pod, for tests of two pollers. Nothing survives the process.
    """

    backend = "memory"

    def __init__(self, *, clock: Clock = utc_now, _store: _MemoryStore | None = None) -> None:
        super().__init__()
        self._clock = clock
        self._store = _MemoryStore() if _store is None else _store

    def peer(self, *, clock: Clock | None = None) -> InMemoryPollerState:
        """Another state object over this one's store (not yet set up), as a second pod sees it."""
        return InMemoryPollerState(clock=self._clock if clock is None else clock, _store=self._store)

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _load(self, kind: str) -> Cursor:
        return self._store.cursors.get(kind) or Cursor(kind, None, frozenset())

    async def _save(self, cursor: Cursor, token: int, lease: str) -> None:
        current = self._store.leases.get(lease)
        if current is None or current.token != token:
            raise self._lease_lost(cursor, token, lease)
        self._store.cursors[cursor.kind] = cursor

    async def _acquire(self, name: str, holder: str, ttl: float) -> int | None:
        now = _aware(self._clock)
        current = self._store.leases.get(name)
        if current is not None and current.expires_at > now and current.holder != holder:
            return None
        token = 1 if current is None else current.token + 1
        self._store.leases[name] = _Lease(holder, token, now + dt.timedelta(seconds=ttl))
        return token

    async def _renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        current = self._store.leases.get(name)
        if current is None or current.holder != holder or current.token != token:
            return False
        current.expires_at = _aware(self._clock) + dt.timedelta(seconds=ttl)
        return True

    async def _release(self, name: str, holder: str, token: int) -> None:
        current = self._store.leases.get(name)
        if current is not None and current.holder == holder and current.token == token:
            current.token += 1
            current.expires_at = _aware(self._clock)


# --------------------------------------------------------------------------------------------------
# SQLite and PostgreSQL, through SQLAlchemy Core


def _parse_url(url: str) -> StateURL:
    return parse_state_url(url, what="poller state", error=InvalidPollerStateURL)


# Failures that mean "the store cannot be used right now". Errors of our own making (a statement
# SQLAlchemy cannot compile) are left alone: they are bugs, not outages.
_UNAVAILABLE: Final = (
    sa.exc.DBAPIError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    sqlite3.Error,
    OSError,
    TimeoutError,
)


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy's text appends the statement and a link on further lines; the driver's is enough.
    inner = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()
    if isinstance(inner, ConnectorError):
        return text[0] if text else inner.reason
    return f"{type(inner).__name__}: {text[0]}" if text else type(inner).__name__


class SqlPollerState(BasePollerState):
    """The poller's state in the connector's state tables, on SQLite or PostgreSQL.

    ``table_prefix`` picks the set of tables; several connectors may share one database under
    different prefixes. ``None`` means the store's default, the prefix its ledger uses: ``""`` on
    SQLite, ``severa_connector_`` on PostgreSQL. ``clock`` is used only where the database has no
    clock of its own to share (SQLite); PostgreSQL's leases run on the server's ``now()``.
    ``command_timeout`` bounds connecting and each statement on PostgreSQL, and waiting for
    SQLite's write lock.
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str | None = None,
        clock: Clock = utc_now,
        command_timeout: float = 10.0,
        application_name: str = "severa-connector",
    ) -> None:
        super().__init__()
        target = _parse_url(url)
        if target.scheme == "memory":
            raise InvalidPollerStateURL("memory:// is InMemoryPollerState; use open_poller_state()")
        if isinstance(command_timeout, bool) or not command_timeout > 0:
            raise ValueError(f"command_timeout must be a positive number of seconds, got {command_timeout!r}")
        self._target = target
        self.backend = "postgres" if target.scheme == "postgresql" else "sqlite"
        if table_prefix is None:
            from connector.state.postgres import DEFAULT_TABLE_PREFIX

            table_prefix = DEFAULT_TABLE_PREFIX if self.backend == "postgres" else ""
        self.table_prefix = check_prefix(table_prefix)
        if self.backend == "postgres":
            from connector.state.postgres import describe_dsn

            self.where = describe_dsn(target.location)
            try:
                password = urlsplit(target.location).password
            except ValueError:
                password = None
            if password:
                register_secret(password)
                register_secret(unquote(password))
        else:
            self.where = target.location
        self._clock = clock
        self._command_timeout = float(command_timeout)
        self._application_name = application_name
        self._engine: AsyncEngine | None = None
        # SQLite takes one writer at a time anyway (BEGIN IMMEDIATE); queueing here rather than in
        # the busy handler keeps the wait out of command_timeout, and ':memory:' has one connection.
        self._serial: asyncio.Lock | None = asyncio.Lock() if self.backend == "sqlite" else None

        tables = state_metadata(self.table_prefix).tables
        self._cursors = tables[f"{self.table_prefix}poller_cursor"]
        self._seen = tables[f"{self.table_prefix}poller_seen"]
        self._leases = tables[f"{self.table_prefix}poller_lease"]

    # -- lifecycle ---------------------------------------------------------------------------------

    def _make_engine(self) -> AsyncEngine:
        if self.backend == "postgres":
            dsn = self._target.location

            # The DSN verbatim, as the ledger's pool connects: its query parameters stay
            # asyncpg's connection options and server settings.
            async def connect() -> Any:
                return await asyncpg.connect(
                    dsn,
                    command_timeout=self._command_timeout,
                    timeout=self._command_timeout,
                    server_settings={"application_name": self._application_name},
                )

            return create_async_engine(
                "postgresql+asyncpg://",
                async_creator=connect,
                # A poll and a renewal may overlap; nothing else runs here.
                pool_size=2,
                max_overflow=2,
                pool_timeout=self._command_timeout,
                pool_pre_ping=True,
            )
        path = self._target.location
        url = sa.URL.create("sqlite+aiosqlite", database=path)
        options: dict[str, Any] = {
            "connect_args": {"timeout": self._command_timeout, **sqlite_connection.FACTORY}
        }
        if path == _SQLITE_MEMORY:
            # One connection, or every connection would see a database of its own.
            options["poolclass"] = StaticPool
        engine = create_async_engine(url, **options)
        sqlite_begin_immediate(engine)
        return engine

    async def _open(self) -> None:
        engine = self._make_engine()
        try:
            with self._translating("create or upgrade its tables"):
                await migrate(engine, table_prefix=self.table_prefix)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        log.info(
            "poller_state.opened", backend=self.backend, where=self.where, table_prefix=self.table_prefix
        )

    async def _close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    # -- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError as exc:
            if not isinstance(exc, LedgerUnavailable):
                raise
            # From migrate(): a store it could not reach, or one holding a newer schema.
            if isinstance(exc.__cause__, _UNAVAILABLE):
                raise self._unavailable(action, exc.__cause__) from exc
            too_new = exc.reason == "ledger_schema_too_new"
            raise PollerStateUnavailable(
                f"the poller state store ({self.backend} {self.where}) could not {action}: {_one_line(exc)}",
                reason="poller_state_schema_too_new" if too_new else "poller_state_migration_failed",
            ) from exc
        except _UNAVAILABLE as exc:
            raise self._unavailable(action, exc) from exc

    def _unavailable(self, action: str, exc: BaseException) -> PollerStateUnavailable:
        return PollerStateUnavailable(
            f"the poller state store ({self.backend} {self.where}) could not {action}: "
            f"{_one_line(exc)}; check that the database is up and reachable",
            backend=self.backend,
            action=action,
        )

    @asynccontextmanager
    async def _transaction(self, action: str) -> AsyncIterator[AsyncConnection]:
        engine = self._engine
        if engine is None:
            raise PollerStateUnavailable(
                f"the {self.backend} poller state is closed", reason="poller_state_closed"
            )
        if self._serial is None:
            with self._translating(action):
                async with engine.begin() as conn:
                    yield conn
            return
        async with self._serial:
            with self._translating(action):
                async with engine.begin() as conn:
                    yield conn

    def _now(self) -> sa.ColumnElement[dt.datetime]:
        if self.backend == "postgres":
            return sa.func.now(type_=UtcTimestamp())
        return sa.literal(_aware(self._clock), UtcTimestamp())

    def _expiry(self, ttl: float) -> sa.ColumnElement[dt.datetime]:
        if self.backend == "postgres":
            return sa.func.now(type_=UtcTimestamp()) + sa.literal(dt.timedelta(seconds=ttl), sa.Interval())
        return sa.literal(_aware(self._clock) + dt.timedelta(seconds=ttl), UtcTimestamp())

    def _insert(self, table: sa.Table) -> pg_dialect.Insert | sqlite_dialect.Insert:
        return pg_dialect.insert(table) if self.backend == "postgres" else sqlite_dialect.insert(table)

    # -- cursors -----------------------------------------------------------------------------------

    async def _load(self, kind: str) -> Cursor:
        c, s = self._cursors, self._seen
        statement = (
            sa.select(c.c.cursor, s.c.guid, s.c.stamp)
            .select_from(c.outerjoin(s, s.c.kind == c.c.kind))
            .where(c.c.kind == kind)
        )
        async with self._transaction("load a cursor") as conn:
            rows = (await conn.execute(statement)).all()
        if not rows:
            return Cursor(kind, None, frozenset())
        seen = frozenset((str(guid), str(stamp)) for _, guid, stamp in rows if guid is not None)
        return Cursor(kind, rows[0][0], seen)

    async def _save(self, cursor: Cursor, token: int, lease: str) -> None:
        leases, cursors, seen = self._leases, self._cursors, self._seen
        fence = (
            sa.select(leases.c.fencing_token)
            .where(leases.c.name == lease, leases.c.fencing_token == token)
            .with_for_update(read=True)  # FOR SHARE: a takeover waits until this save is in
        )
        upsert = self._insert(cursors).values(kind=cursor.kind, cursor=cursor.since, updated_at=self._now())
        upsert = upsert.on_conflict_do_update(
            index_elements=[cursors.c.kind],
            set_={"cursor": upsert.excluded.cursor, "updated_at": upsert.excluded.updated_at},
        )
        rows = [{"kind": cursor.kind, "guid": guid, "stamp": stamp} for guid, stamp in sorted(cursor.seen)]
        async with self._transaction("save a cursor") as conn:
            if (await conn.execute(fence)).scalar_one_or_none() is None:
                raise self._lease_lost(cursor, token, lease)
            await conn.execute(upsert)
            await conn.execute(sa.delete(seen).where(seen.c.kind == cursor.kind))
            if rows:
                await conn.execute(sa.insert(seen), rows)

    # -- the lease ---------------------------------------------------------------------------------

    async def _acquire(self, name: str, holder: str, ttl: float) -> int | None:
        leases = self._leases
        insert = self._insert(leases).values(
            name=name, holder=holder, fencing_token=1, expires_at=self._expiry(ttl)
        )
        statement = insert.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={
                "holder": insert.excluded.holder,
                "fencing_token": leases.c.fencing_token + 1,
                "expires_at": insert.excluded.expires_at,
            },
            where=sa.or_(leases.c.expires_at <= self._now(), leases.c.holder == holder),
        ).returning(leases.c.fencing_token)
        async with self._transaction("acquire the lease") as conn:
            token = (await conn.execute(statement)).scalar_one_or_none()
        return None if token is None else int(token)

    async def _renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        leases = self._leases
        statement = (
            sa.update(leases)
            .where(leases.c.name == name, leases.c.holder == holder, leases.c.fencing_token == token)
            .values(expires_at=self._expiry(ttl))
            .returning(leases.c.fencing_token)
        )
        async with self._transaction("renew the lease") as conn:
            return (await conn.execute(statement)).scalar_one_or_none() is not None

    async def _release(self, name: str, holder: str, token: int) -> None:
        leases = self._leases
        statement = (
            sa.update(leases)
            .where(leases.c.name == name, leases.c.holder == holder, leases.c.fencing_token == token)
            .values(fencing_token=leases.c.fencing_token + 1, expires_at=self._now())
        )
        async with self._transaction("release the lease") as conn:
            await conn.execute(statement)


# --------------------------------------------------------------------------------------------------
# The factory


def open_poller_state(url: str, *, table_prefix: str | None = None) -> PollerState:
    """Build the poller state ``url`` names (not yet opened: use ``async with`` or ``setup()``).

    ``table_prefix`` as for :class:`SqlPollerState` (checked, then ignored, for ``memory://``).
    A URL that names no backend raises :class:`InvalidPollerStateURL`.
    """
    if table_prefix is not None:
        check_prefix(table_prefix)
    if _parse_url(url).scheme == "memory":
        return InMemoryPollerState()
    return SqlPollerState(url, table_prefix=table_prefix)
