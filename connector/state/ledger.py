"""The idempotency ledger port: what the work-hours flow remembers about each external entry.

Severa's ``AddHourEntry`` is not idempotent and RabbitMQ delivers at least once, so "exactly once in
effect" rests on this ledger. Per external id (:func:`connector.state.identity.entry_key` of the
source and its entry id: ``"<escaped source>:<entry id>"``) it records the highest version applied
or deleted, the Severa GUID written for it, a hash of the content applied, and -- between the
moment the flow decides to call ``Add`` and the moment the GUID is known -- a *pending* mark with
a fingerprint of what was sent. A crash or timeout inside that window leaves the pending mark behind; the next
delivery sees it and looks in Severa for the entry (matching the fingerprint, with a GUID that
:meth:`Ledger.owners_of` says nobody else owns) and takes it with :meth:`Ledger.claim` instead of
adding a duplicate. The flow::

    async with ledger.lock(x):                       # one task in one pod per external id
        rec = await ledger.get(x)
        if rec and rec.state != "pending" and rec.version >= v: skip
        ...
        await ledger.mark_pending(x, v, fingerprint)  # before the non-idempotent Add
        guid = await severa.add(...)
        await ledger.mark_applied(x, v, guid, content_hash=h)

The lock is per external id, so it cannot stop two *different* entries whose events look alike
(same user, day, case, phase, work type, hours, description) from recovering at once and both
taking one of their landed Adds: checking with :meth:`Ledger.owners_of` and then writing the GUID
are two steps. :meth:`Ledger.claim` is the one step that is atomic across external ids: it writes
the GUID only if no other live record holds it, and says whether it did.

Backends (sibling modules) all honour the same contract, held to it by one parametrised test
class (``tests/integration/test_ledger.py``):

* :class:`connector.state.memory.InMemoryLedger` -- the fake for flow unit tests;
* :class:`connector.state.sqlite.SqliteLedger` -- embedded default, one pod only;
* :class:`connector.state.postgres.PostgresLedger` -- several pods.

The reference semantics of the writes live here as pure functions (:func:`pending`,
:func:`applied`, :func:`claimed`, :func:`deleted`); the in-memory fake uses them directly and the
SQL backends restate them as single-statement upserts, so each write is atomic on its own even
outside a lock (PostgreSQL's claim adds a per-GUID lock in front of its statement; see there).

The SQL backends' tables are described once in :mod:`connector.state.schema` and created and
upgraded by one mechanism, :func:`connector.state.migrations.migrate` (Alembic). Their per-event
statements stay hand-written SQL on the bare drivers (sqlite3, asyncpg): run through
SQLAlchemy Core on an async engine, the ledger cycle measured 20-50 % fewer cycles per second
(``bench/ledger.py --core``), and it is the path every message takes.

A lock that is lost while held (PostgreSQL: the session holding it died) makes every further call
made under it fail with :class:`LedgerLockLost` rather than write unguarded; how each backend
notices is stated in its module.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, runtime_checkable

from connector.errors import SystemicError, TransientError
from connector.logging import get_logger
from connector.state.identity import legacy_entry_key
from connector.state.lifecycle import StoreLifecycle
from connector.state.locks import KeyedLock

log = get_logger(__name__)

LedgerState = Literal["pending", "applied", "deleted"]
LEDGER_STATES: Final[tuple[LedgerState, ...]] = ("pending", "applied", "deleted")

# Versions are stored as SQL BIGINT / SQLite INTEGER: both are signed 64-bit.
MAX_VERSION: Final = 2**63 - 1
DEFAULT_LOCK_TIMEOUT: Final = 30.0
"""Seconds a task waits for an external id's lock before giving up with :class:`LedgerLockTimeout`.

Long enough to outwait a slow Severa round trip of the current holder, short enough that a stuck
holder turns into a retried message instead of a consumer that silently stops making progress.
"""
MIN_POOL_SIZE: Final = 2
"""Smallest connection pool a pooled backend accepts.

One connection stays checked out for the whole Severa call of each entry being locked; with a
single connection, a probe or any call outside a lock would wait for that call to finish.
"""


class LedgerUnavailable(SystemicError):
    """The ledger's store cannot be used: unreachable, closed, or holding a schema we do not know.

    Systemic because every message would fail the same way; consuming pauses until
    :meth:`Ledger.probe` succeeds again.
    """

    reason = "ledger_unavailable"


class LedgerLockTimeout(TransientError):
    """Waited longer than the lock timeout for an external id's lock.

    Another task or pod is working on the same entry; the message is worth retrying a little
    later. Waiting for a pooled connection is never reported this way: a pool that cannot serve us
    is :class:`LedgerUnavailable`, because it stalls every entry, not just this one.

    Still timing out after the in-process retries, it is escalated to :class:`LedgerUnavailable`
    (systemic: pause and probe) instead of climbing the retry ladder into the DLQ -- in a slow-Severa
    brownout every holder is slow, and the messages waiting behind them are not at fault.
    """

    reason = "ledger_lock_timeout"
    escalates_to = LedgerUnavailable


class LedgerLockLost(TransientError):
    """The lock on an external id was lost while held, so a call made under it was refused.

    Raised instead of writing when the store can no longer vouch that we hold the entry (for
    PostgreSQL: the session that held the advisory lock is gone, and another pod may have taken
    the entry since). The write is refused, not done unguarded; the message is retried, and the
    retry re-reads the ledger under a fresh lock -- finding the pending mark if an ``Add`` was
    sent. Transient: one lost session says nothing about the next.
    """

    reason = "ledger_lock_lost"


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """What the ledger knows about one external entry.

    ``version`` is the highest version applied or tombstoned (0 while the entry has only ever been
    pending). ``severa_guid`` is kept when a later version goes pending and after a delete, for
    audit; use :attr:`active_guid` to decide whether there is a live Severa entry to update.
    ``pending_version`` and ``fingerprint`` are set only while ``state == "pending"``: the version
    whose ``Add`` may or may not have landed, and the flow's opaque JSON description of what was
    sent, used to recognise that entry in Severa afterwards. ``content_hash`` is the flow's opaque
    hash of the content of ``version`` as applied (``None`` if none was given, and for records
    written before the ledger kept it); like the GUID it survives a later pending mark and a
    delete, so that a redelivered version with different content can be told from a duplicate.
    """

    external_id: str
    version: int
    state: LedgerState
    severa_guid: str | None
    pending_version: int | None
    fingerprint: str | None
    updated_at: dt.datetime
    content_hash: str | None

    @property
    def active_guid(self) -> str | None:
        """The GUID of the Severa entry this record stands for, if it should still exist.

        ``None`` for tombstones (their GUID was deleted in Severa) and for pending records (an
        ``Add`` may have created a *new* entry: the flow must look it up by fingerprint).
        """
        return self.severa_guid if self.state == "applied" else None


@runtime_checkable
class Ledger(Protocol):
    """The idempotency ledger, keyed by external id.

    Writes are atomic and durable when they return (what "durable" means per backend is stated in
    its module). They do not enforce version ordering themselves: callers hold :meth:`lock` and
    compare versions first, exactly as in the module docstring.

    Lifecycle: :meth:`setup` (or ``async with``) opens the store and creates the tables if missing;
    :meth:`aclose` is idempotent; a closed ledger cannot be reopened, and using it raises
    :class:`LedgerUnavailable`.
    """

    async def setup(self) -> None:
        """Connect and create the schema if it is missing (idempotent, safe from several pods)."""

    async def probe(self) -> None:
        """One cheap round trip to the store; raises :class:`LedgerUnavailable` if it fails."""

    async def get(self, external_id: str) -> LedgerRecord | None:
        """The record for ``external_id``, or ``None`` if the ledger has never seen it."""

    def lock(self, external_id: str) -> AbstractAsyncContextManager[None]:
        """Hold ``external_id`` exclusively against every task in this process and, where the
        backend is shared, every other process or pod; other ids are never blocked.

        Not re-entrant. Raises :class:`LedgerLockTimeout` if the lock is not obtained within the
        backend's ``lock_timeout`` because someone else holds it, and :class:`LedgerUnavailable`
        if the store cannot even give us the means to ask (no pooled connection in that time).
        Calls made inside the block raise :class:`LedgerLockLost` once the lock is lost while
        held; nothing is written unguarded.
        """

    async def mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        """Record that ``version`` is about to be added to Severa, described by ``fingerprint``.

        Creates the record (``version`` 0) if missing; keeps an existing ``version``,
        ``severa_guid`` and ``content_hash``.
        """

    async def mark_applied(
        self, external_id: str, version: int, severa_guid: str, *, content_hash: str | None = None
    ) -> None:
        """Record that ``version`` is in Severa as ``severa_guid``, with content ``content_hash``.

        State becomes ``applied``, ``version`` becomes ``max(existing, version)``, ``content_hash``
        is stored as given (``None`` clears it), and the pending version and fingerprint are
        cleared.
        """

    async def claim(
        self, external_id: str, version: int, severa_guid: str, *, content_hash: str | None = None
    ) -> bool:
        """Take ``severa_guid`` for ``external_id``, unless another entry holds it; say whether it did.

        In one atomic step, across every external id (and every pod, where the store is shared):
        if no *other* record in state ``applied`` or ``pending`` holds ``severa_guid``, the record
        becomes what :meth:`mark_applied` would write with ``content_hash=None`` -- state
        ``applied``, ``version`` ``max(existing, version)``, the GUID set, pending data cleared --
        and ``True`` is returned; otherwise nothing changes and the answer is ``False``. Creates the
        record if missing. A recovery passes no hash: the content that landed is that of the
        pending version, not necessarily of the event at hand. This is how a recovery adopts a
        landed ``Add`` (see the module docstring), and how the write after our own ``Add`` records
        it (with the event's hash): a twin entry recovering at that moment may have claimed it.
        """

    async def mark_deleted(self, external_id: str, version: int) -> None:
        """Tombstone ``external_id`` at ``version`` so that a late, older "created" is ignored.

        Works for an id never seen before (delete overtook create). ``version`` becomes
        ``max(existing, version)``; the GUID and content hash are kept for audit; pending data is
        cleared.
        """

    async def owners_of(self, guids: Collection[str]) -> dict[str, str]:
        """Map each of ``guids`` held by an applied or pending record to that record's external id.

        GUIDs nobody holds (and those only held by tombstones) are absent from the result.
        """

    async def count(self) -> int:
        """Number of records, whatever their state."""

    async def aclose(self) -> None:
        """Release connections, files and locks; idempotent."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --------------------------------------------------------------------------------------------------
# Reference semantics of the writes. The SQL backends' upserts must agree with these.


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pending(
    previous: LedgerRecord | None, external_id: str, version: int, fingerprint: str, now: dt.datetime
) -> LedgerRecord:
    return LedgerRecord(
        external_id=external_id,
        version=previous.version if previous else 0,
        state="pending",
        severa_guid=previous.severa_guid if previous else None,
        pending_version=version,
        fingerprint=fingerprint,
        updated_at=now,
        content_hash=previous.content_hash if previous else None,
    )


def applied(
    previous: LedgerRecord | None,
    external_id: str,
    version: int,
    severa_guid: str,
    now: dt.datetime,
    *,
    content_hash: str | None = None,
) -> LedgerRecord:
    return LedgerRecord(
        external_id=external_id,
        version=max(previous.version, version) if previous else version,
        state="applied",
        severa_guid=severa_guid,
        pending_version=None,
        fingerprint=None,
        updated_at=now,
        content_hash=content_hash,
    )


def claimed(
    records: Mapping[str, LedgerRecord],
    external_id: str,
    version: int,
    severa_guid: str,
    now: dt.datetime,
    content_hash: str | None = None,
) -> LedgerRecord | None:
    """The record :meth:`Ledger.claim` writes for ``external_id`` given all ``records`` (keyed by
    external id), or ``None`` if another applied or pending record holds ``severa_guid``."""
    for record in records.values():
        if (
            record.external_id != external_id
            and record.severa_guid == severa_guid
            and record.state != "deleted"
        ):
            return None
    return applied(
        records.get(external_id), external_id, version, severa_guid, now, content_hash=content_hash
    )


def deleted(previous: LedgerRecord | None, external_id: str, version: int, now: dt.datetime) -> LedgerRecord:
    return LedgerRecord(
        external_id=external_id,
        version=max(previous.version, version) if previous else version,
        state="deleted",
        severa_guid=previous.severa_guid if previous else None,
        pending_version=None,
        fingerprint=None,
        updated_at=now,
        content_hash=previous.content_hash if previous else None,
    )


def resolve_owners(pairs: Collection[tuple[str, str]]) -> dict[str, str]:
    """Turn ``(guid, external_id)`` pairs into the :meth:`Ledger.owners_of` answer.

    Two live records claiming one GUID means a recovery once picked an entry it did not create;
    the smallest external id wins so that every backend and every call answer alike, and the
    conflict is logged because an operator has to look at it.
    """
    owners: dict[str, str] = {}
    for guid, external_id in sorted(pairs):
        current = owners.setdefault(guid, external_id)
        if current != external_id:
            log.warning("ledger.guid_claimed_twice", severa_guid=guid, kept=current, other=external_id)
    return owners


# --------------------------------------------------------------------------------------------------
# Argument checks shared by the backends: a bad argument is a bug in the caller, not a store failure.


def check_text(name: str, value: str) -> None:
    """Non-empty text every backend can store: PostgreSQL refuses NUL and unpaired surrogates.

    Checked here rather than left to the store so that such a value is one bad message
    (``ValueError``: permanent) on every backend, not a store failure that pauses consumption.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid Unicode text: {value!r}") from exc


def check_external_id(external_id: str) -> None:
    check_text("external_id", external_id)


def check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version must be an int in [0, 2**63-1], got {version!r}")


def check_lock_timeout(lock_timeout: float) -> float:
    if not lock_timeout > 0:
        raise ValueError(f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}")
    return float(lock_timeout)


def check_pool_size(pool_size: int) -> int:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < MIN_POOL_SIZE:
        raise ValueError(f"pool_size must be an int >= {MIN_POOL_SIZE}, got {pool_size!r}")
    return pool_size


def as_state(value: object) -> LedgerState:
    for state in LEDGER_STATES:
        if value == state:
            return state
    raise LedgerUnavailable(f"the ledger store holds an unknown state {value!r}", reason="ledger_corrupt")


# --------------------------------------------------------------------------------------------------
# Lifecycle shared by the backends.


class BaseLedger(StoreLifecycle):
    """Lifecycle, argument checks and the process-local lock; backends add storage.

    Subclasses implement the ``_``-prefixed hooks; the public methods validate arguments and the
    lifecycle state first so every backend refuses misuse the same way.
    """

    backend: str = "abstract"

    def __init__(self, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self._lock_timeout = check_lock_timeout(lock_timeout)
        self._local_locks = KeyedLock()
        super().__init__()

    @property
    def lock_timeout(self) -> float:
        """Seconds :meth:`lock` waits before raising :class:`LedgerLockTimeout`."""
        return self._lock_timeout

    # -- lifecycle (connector.state.lifecycle) ---------------------------------------------------

    def _closed_error(self) -> Exception:
        return LedgerUnavailable(f"the {self.backend} ledger is closed", reason="ledger_closed")

    # -- public operations -------------------------------------------------------------------------

    async def probe(self) -> None:
        self._check_open()
        await self._probe()

    async def get(self, external_id: str) -> LedgerRecord | None:
        check_external_id(external_id)
        self._check_open()
        return await self._get(external_id)

    def lock(self, external_id: str) -> AbstractAsyncContextManager[None]:
        check_external_id(external_id)
        return self._locked(external_id)

    async def mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        check_external_id(external_id)
        check_version(version)
        check_text("fingerprint", fingerprint)
        self._check_open()
        await self._mark_pending(external_id, version, fingerprint)

    async def mark_applied(
        self, external_id: str, version: int, severa_guid: str, *, content_hash: str | None = None
    ) -> None:
        check_external_id(external_id)
        check_version(version)
        check_text("severa_guid", severa_guid)
        if content_hash is not None:
            check_text("content_hash", content_hash)
        self._check_open()
        await self._mark_applied(external_id, version, severa_guid, content_hash)

    async def claim(
        self, external_id: str, version: int, severa_guid: str, *, content_hash: str | None = None
    ) -> bool:
        check_external_id(external_id)
        check_version(version)
        check_text("severa_guid", severa_guid)
        if content_hash is not None:
            check_text("content_hash", content_hash)
        self._check_open()
        return await self._claim(external_id, version, severa_guid, content_hash)

    async def mark_deleted(self, external_id: str, version: int) -> None:
        check_external_id(external_id)
        check_version(version)
        self._check_open()
        await self._mark_deleted(external_id, version)

    async def owners_of(self, guids: Collection[str]) -> dict[str, str]:
        if isinstance(guids, str):  # a str is a Collection[str] too: one GUID, read as characters
            raise TypeError("owners_of takes a collection of GUIDs, not a single string")
        wanted = set(guids)
        for guid in wanted:
            check_text("guid", guid)
        self._check_open()
        if not wanted:
            return {}
        return await self._owners_of(wanted)

    async def count(self) -> int:
        self._check_open()
        return await self._count()

    # -- locking -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, external_id: str) -> AsyncIterator[None]:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        try:
            await self._local_locks.acquire(external_id, timeout=self._lock_timeout)
        except TimeoutError as exc:
            raise self._lock_timeout_error(external_id, "another task in this process holds it") from exc
        try:
            # Tasks of this process now queue above; only one per id reaches the shared store.
            async with self._shared_lock(external_id, deadline):
                yield
        finally:
            self._local_locks.release(external_id)

    @asynccontextmanager
    async def _shared_lock(self, external_id: str, deadline: float) -> AsyncIterator[None]:
        """Exclusion across processes; nothing to do for stores only one process may use."""
        yield

    def _lock_timeout_error(self, external_id: str, why: str) -> LedgerLockTimeout:
        return LedgerLockTimeout(
            f"gave up waiting {self._lock_timeout:g}s for the ledger lock on {external_id!r}: {why}",
            external_id=external_id,
            backend=self.backend,
        )

    # -- storage hooks -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def _probe(self) -> None: ...

    @abc.abstractmethod
    async def _get(self, external_id: str) -> LedgerRecord | None: ...

    @abc.abstractmethod
    async def _mark_pending(self, external_id: str, version: int, fingerprint: str) -> None: ...

    @abc.abstractmethod
    async def _mark_applied(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> None: ...

    @abc.abstractmethod
    async def _claim(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> bool: ...

    @abc.abstractmethod
    async def _mark_deleted(self, external_id: str, version: int) -> None: ...

    @abc.abstractmethod
    async def _owners_of(self, guids: Collection[str]) -> dict[str, str]: ...

    @abc.abstractmethod
    async def _count(self) -> int: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._lifecycle.value}>"


class Row(Protocol):
    """A database row addressable by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def record_from_row(row: Row, updated_at: dt.datetime) -> LedgerRecord:
    """Build a record from a database row; the backend converts ``updated_at`` itself."""
    pending_version = row["pending_version"]
    return LedgerRecord(
        external_id=str(row["external_id"]),
        version=int(row["version"]),
        state=as_state(row["state"]),
        severa_guid=None if row["severa_guid"] is None else str(row["severa_guid"]),
        pending_version=None if pending_version is None else int(pending_version),
        fingerprint=None if row["fingerprint"] is None else str(row["fingerprint"]),
        updated_at=updated_at,
        content_hash=None if row["content_hash"] is None else str(row["content_hash"]),
    )


# --------------------------------------------------------------------------------------------------
# Schema version 2 (revision 0002 in connector.state.migrations): re-keying rows written with the
# old join. Operators find the ambiguous old keys with ``external_id LIKE '%:%:%'``.


def rekey_plan(old_keys: Iterable[str]) -> list[tuple[str, str]]:
    """``(old, new)`` for each old key whose new key differs, in an order safe to apply one by one.

    The mapping is injective, so the re-keyed set has no duplicates, but a single row's ``UPDATE``
    can still meet a row not yet moved (``a%b:x`` -> ``a%25b:x`` while ``a%25b:x`` still waits to
    become ``a%2525b:x``). A new key is always longer than its old one, so moving the longest old
    keys first means every target is free when its turn comes.
    """
    plan = [(old, new) for old in old_keys if (new := legacy_entry_key(old)) != old]
    plan.sort(key=lambda pair: (-len(pair[0]), pair[0]))
    return plan


def log_rekeyed(backend: str, rekeyed: int, ambiguous: int) -> None:
    """Report what schema version 2 did; a warning if some old keys were ambiguous."""
    if ambiguous:
        log.warning(
            "ledger.ambiguous_keys_rekeyed",
            backend=backend,
            ambiguous=ambiguous,
            rekeyed=rekeyed,
            assumption="the old key's first ':' ended the source",
            find_them="external_id LIKE '%:%:%'",
        )
    else:
        log.info("ledger.keys_rekeyed", backend=backend, rekeyed=rekeyed)
