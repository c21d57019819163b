"""The change poller: Severa's API is passive, so the connector asks it what changed and publishes it.

One poll, per feed (customers, invoices, hour entries …), holding the poller lease::

    cursor = load(kind)                      since + the (guid, stamp) pairs already published
    changes = feed.fetch(since - 1 min)      Severa matches ChangedSince to the minute: overlap
    for each change not in cursor.seen:      (guid, stamp) de-duplicates the overlap
        publish it, confirmed by the broker  BEFORE the cursor moves: a crash in between
                                             republishes (same event id), never skips
    save(cursor', token)                     fenced by the lease token: a poller that lost its
                                             lease cannot move the cursor

Two kinds of feed:

* ``changed_since`` (customers, hour entries): the cursor's ``since`` advances to the time the
  fetch *started* (a change made while the poll runs is caught by the next one), or less far
  when the feed relied on an earlier poll's reads (:attr:`Fetched.advance_until`), and ``seen``
  keeps the pairs that the next, overlapping fetch can return again;
* ``snapshot`` (invoices in the configured "ready" status, the way Severa's own accounting
  integration picks them): everything in the status is fetched; ``seen`` is the set currently in
  it, so an invoice published once is not published again while it waits to be transferred, and
  one that changed (a new content stamp) is.

A poll has a call budget (``poller.max_calls_per_poll``), counted before each Severa call: when it
is spent the poll stops where it is, publishes what it has, and saves a cursor that skips
nothing (``since`` does not advance; what was published is remembered in ``seen``); the next poll
goes on. Exactly one poller polls at a time across pods: the lease in the state store, renewed
every poll, with a fencing token (:mod:`connector.state.poller_state`). Systemic errors (a refused
key, a spent quota) end the poll without moving the cursor and back off like the consumers'
circuit does; so does Severa failing transiently (5xx, dropped connections) for
``OUTAGE_AFTER_FAILED_POLLS`` polls in a row, reported as :class:`~connector.errors.SeveraOutage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from connector.bus import OutgoingMessage
from connector.errors import ConnectorError, SystemicError, TransientError, describe, outage_behind
from connector.logging import get_logger

log = get_logger(__name__)

#: Severa matches ``*ChangedSince`` to the minute: every fetch reaches back this far.
OVERLAP = dt.timedelta(minutes=1)
#: Polls in a row that fail transiently (Severa answering 5xx, dropping connections) before the
#: failure counts as an outage: the poller pauses, backs off and reports it, as a systemic error.
OUTAGE_AFTER_FAILED_POLLS = 3


class FeedMode(enum.StrEnum):
    CHANGED_SINCE = "changed_since"
    SNAPSHOT = "snapshot"


class BudgetSpent(ConnectorError):
    """The poll's call budget is spent; the poll stops here and the next one goes on."""

    reason = "poller_budget_spent"


@dataclass(slots=True)
class CallBudget:
    """Severa calls one poll may make; feeds spend from it *before* each call."""

    limit: int
    spent: int = 0

    @property
    def remaining(self) -> int:
        """Calls still allowed: for a feed that may do optional calls without stopping the poll."""
        return self.limit - self.spent

    def spend(self, calls: int = 1) -> None:
        if self.spent + calls > self.limit:
            raise BudgetSpent(f"the poll's budget of {self.limit} Severa calls is spent")
        self.spent += calls


@dataclass(frozen=True, slots=True)
class Change:
    """One entity's change, ready to publish: its identity, change stamp and event message."""

    guid: str
    stamp: str
    #: None for a change already seen (reported so it stays remembered) or one that cannot be
    #: published (logged by the feed; remembered so that it is not retried every poll).
    message: OutgoingMessage | None
    exchange: str


@dataclass(slots=True)
class Fetched:
    """What a feed got before it finished or its budget ran out.

    ``advance_until`` caps how far a complete fetch may move the cursor's ``since`` (None: up to
    the poll's start, as usual). A feed sets it when it relied on something it read in an earlier
    poll instead of reading it again -- the customer feed's head-office look-ups -- so that the
    next fetch still reaches back to what that earlier read cannot have seen.
    """

    changes: list[Change] = field(default_factory=list)
    complete: bool = True
    advance_until: dt.datetime | None = None

    def cap_advance(self, moment: dt.datetime) -> None:
        """Let the cursor advance to ``moment`` at most (the earliest of all caps holds)."""
        if self.advance_until is None or moment < self.advance_until:
            self.advance_until = moment


class ChangeFeed(Protocol):
    """One kind of Severa entity the poller publishes (built in :mod:`connector.flows.severa_feeds`)."""

    @property
    def kind(self) -> str: ...

    @property
    def mode(self) -> FeedMode: ...

    async def fetch(
        self,
        since: dt.datetime | None,
        budget: CallBudget,
        into: Fetched,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        """Append the changes since ``since`` (None: everything) to ``into``; spend the budget
        before each call, and spend nothing more on a change already in ``seen`` (the overlap, or
        what an earlier poll that ran out of budget published) beyond the list that named it --
        unless the list cannot tell it from a new change (customers: an address change leaves
        ``UpdatedTS`` alone); then spend a bounded amount, and where an earlier poll's read is
        relied on instead, cap ``into.advance_until`` so the next fetch reaches back before it.
        May stop early by raising :class:`BudgetSpent` (``into`` keeps what it has)."""


class Cursor(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def since(self) -> dt.datetime | None: ...

    @property
    def seen(self) -> frozenset[tuple[str, str]]: ...


class CursorFactory(Protocol):
    def __call__(
        self, *, kind: str, since: dt.datetime | None, seen: frozenset[tuple[str, str]]
    ) -> Cursor: ...


class PollerStatePort(Protocol):
    """What the poller needs of its state store (:mod:`connector.state.poller_state`)."""

    async def load(self, kind: str) -> Cursor: ...

    async def save(self, cursor: Cursor, *, token: int) -> None: ...

    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> int | None: ...

    async def renew(self, name: str, holder: str, token: int, ttl_seconds: float) -> bool: ...

    async def release(self, name: str, holder: str, token: int) -> None: ...


PublishFn = Callable[[str, OutgoingMessage], Awaitable[None]]
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class PollResult:
    kind: str
    published: int
    skipped: int
    complete: bool


async def _to_the_end(step: Awaitable[None]) -> bool:
    """Run ``step`` to its end even if the poll is cancelled (stopped) meanwhile; True if it was.

    What ``step`` raises is raised; if it fails after a stop, the cancellation is raised instead.
    """
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])  # bounded: publishes and state calls have timeouts of their own
        if task.cancelled() or task.exception() is not None:
            raise
        return True
    return False


class Poller:
    """Polls every feed under the lease; :meth:`poll_once` is one round, :meth:`run` the loop."""

    LEASE = "severa-poller"

    def __init__(
        self,
        *,
        feeds: Sequence[ChangeFeed],
        state: PollerStatePort,
        cursor: CursorFactory,
        publish: PublishFn,
        holder: str,
        interval_seconds: float = 60.0,
        max_calls_per_poll: int = 200,
        lease_ttl_seconds: float | None = None,
        backoff_max_seconds: float = 600.0,
        clock: Clock = utc_now,
        on_feed_polled: Callable[[str], None] | None = None,
    ) -> None:
        self._feeds = tuple(feeds)
        self._state = state
        self._cursor = cursor
        self._publish = publish
        self._holder = holder
        self._interval = interval_seconds
        self._max_calls = max_calls_per_poll
        # Long enough to outlive a poll and a missed renewal; short enough that a dead pod's
        # lease is taken over within a few intervals.
        self._lease_ttl = lease_ttl_seconds or max(3 * interval_seconds, 30.0)
        self._backoff_max = backoff_max_seconds
        self._clock = clock
        #: Told the feed's kind after its cursor is saved: the metrics' "last success" per feed.
        self._on_feed_polled = on_feed_polled
        self._token: int | None = None
        self.last_error: ConnectorError | None = None
        self.last_poll_at: dt.datetime | None = None
        self.polls = 0

    @property
    def active(self) -> bool:
        """This poller holds the lease (it is the one that polls)."""
        return self._token is not None

    async def acquire(self) -> bool:
        """Take or keep the lease; False while another poller holds it."""
        if self._token is not None:
            if await self._state.renew(self.LEASE, self._holder, self._token, self._lease_ttl):
                return True
            log.warning("poller_lease_lost", holder=self._holder)
            self._token = None
        self._token = await self._state.acquire(self.LEASE, self._holder, self._lease_ttl)
        if self._token is not None:
            log.info("poller_lease_acquired", holder=self._holder, token=self._token)
        return self._token is not None

    async def release(self) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            await self._state.release(self.LEASE, self._holder, token)

    async def poll_once(self) -> list[PollResult] | None:
        """One round over every feed if this poller holds the lease; None when it does not."""
        if not await self.acquire():
            return None
        assert self._token is not None
        budget = CallBudget(self._max_calls)
        results = []
        for feed in self._feeds:
            results.append(await self._poll_feed(feed, budget, self._token))
            if budget.spent >= budget.limit:
                break  # the rest waits for the next poll; nothing is skipped
        self.polls += 1
        self.last_poll_at = self._clock()
        return results

    async def _poll_feed(self, feed: ChangeFeed, budget: CallBudget, token: int) -> PollResult:
        cursor = await self._state.load(feed.kind)
        started = self._clock()
        since = None if cursor.since is None else cursor.since - OVERLAP
        fetched = Fetched()
        try:
            await feed.fetch(since, budget, fetched, cursor.seen)
        except BudgetSpent:
            fetched.complete = False
            log.info("poller_budget_spent", kind=feed.kind, calls=budget.spent)
        seen = set(cursor.seen)
        published = skipped = 0
        try:
            for change in fetched.changes:
                key = (change.guid, change.stamp)
                if key in seen or change.message is None:
                    seen.add(key)
                    skipped += 1
                    continue
                # Confirmed, or it raises; a stop meanwhile waits for the confirm, so that a
                # message already out is remembered rather than published again.
                stopped = await _to_the_end(self._publish(change.exchange, change.message))
                seen.add(key)
                published += 1
                if stopped:
                    raise asyncio.CancelledError
        finally:
            # Whatever was confirmed is remembered, even when a publish failed midway: the next
            # poll starts from the same ``since`` and skips only what is really out. A stop
            # arriving meanwhile does not roll the save back.
            if await _to_the_end(
                self._state.save(self._next_cursor(feed, cursor, fetched, seen, started), token=token)
            ):
                raise asyncio.CancelledError
        log.info(
            "poller_feed_polled",
            kind=feed.kind,
            published=published,
            skipped=skipped,
            complete=fetched.complete,
            calls=budget.spent,
        )
        if self._on_feed_polled is not None:
            self._on_feed_polled(feed.kind)
        return PollResult(feed.kind, published, skipped, fetched.complete)

    def _next_cursor(
        self,
        feed: ChangeFeed,
        cursor: Cursor,
        fetched: Fetched,
        seen: set[tuple[str, str]],
        started: dt.datetime,
    ) -> Cursor:
        fetched_keys = {(c.guid, c.stamp) for c in fetched.changes}
        if feed.mode is FeedMode.SNAPSHOT:
            if fetched.complete:
                # What left the status is forgotten: should it come back, it is published again.
                seen &= fetched_keys
            return self._cursor(kind=feed.kind, since=started, seen=frozenset(seen))
        published_everything = fetched.complete and fetched_keys <= seen
        if not published_everything:
            return self._cursor(kind=feed.kind, since=cursor.since, seen=frozenset(seen))
        # The next fetch reaches back to since - OVERLAP and may return these pairs again. A feed
        # that relied on an earlier poll's reads holds ``since`` back (never behind where it was).
        since = started
        if fetched.advance_until is not None and fetched.advance_until < since:
            since = (
                fetched.advance_until if cursor.since is None else max(fetched.advance_until, cursor.since)
            )
        return self._cursor(kind=feed.kind, since=since, seen=frozenset(seen & fetched_keys))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every interval until ``stop``; back off on systemic errors, never die of one."""
        delay = self._interval
        failed_polls = 0
        while not stop.is_set():
            try:
                await self.poll_once()
            except (TransientError, ConnectorError) as exc:
                failed_polls += 1
                # A transient failure that outlives a few polls is an outage (Severa down): pause
                # and back off like a systemic error, instead of retrying every interval unseen.
                systemic = exc if isinstance(exc, SystemicError) else None
                if systemic is None and failed_polls >= OUTAGE_AFTER_FAILED_POLLS:
                    systemic = outage_behind(exc)
                if systemic is not None:
                    self.last_error = systemic
                    delay = min(max(delay * 2, self._interval), self._backoff_max)
                    log.warning("poller_paused", **describe(systemic), retry_in_s=delay)
                else:
                    self.last_error = exc
                    log.warning("poller_poll_failed", **describe(exc), retry_in_s=self._interval)
                    delay = self._interval
            else:
                self.last_error = None
                failed_polls = 0
                delay = self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)  # the poll interval, or stop
        await self.release()
