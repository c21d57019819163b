"""The poller's rules, on fakes of its ports: overlap, de-duplication, publish before save, budget, lease."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

import pytest

from connector.bus import OutgoingMessage, PublishFailed
from connector.errors import SeveraAuthenticationFailed, SeveraOutage, SeveraUnavailable, SystemicError
from connector.flows.poller import (
    OUTAGE_AFTER_FAILED_POLLS,
    OVERLAP,
    CallBudget,
    Change,
    FeedMode,
    Fetched,
    Poller,
)

T0 = dt.datetime(2026, 12, 1, 10, 0, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class FakeCursor:
    kind: str
    since: dt.datetime | None
    seen: frozenset[tuple[str, str]]


@dataclass
class FakeState:
    cursors: dict[str, FakeCursor] = field(default_factory=dict)
    holder: str | None = None
    token: int = 0
    saves: int = 0

    async def load(self, kind: str) -> FakeCursor:
        return self.cursors.get(kind, FakeCursor(kind, None, frozenset()))

    async def save(self, cursor: FakeCursor, *, token: int) -> None:
        assert token == self.token, "a stale token must never save"
        self.cursors[cursor.kind] = cursor
        self.saves += 1

    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> int | None:
        if self.holder not in (None, holder):
            return None
        self.holder = holder
        self.token += 1
        return self.token

    async def renew(self, name: str, holder: str, token: int, ttl_seconds: float) -> bool:
        return self.holder == holder and token == self.token

    async def release(self, name: str, holder: str, token: int) -> None:
        if self.holder == holder and token == self.token:
            self.holder = None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class FakeFeed:
    """Severa's view: (guid, stamp, changed_at); fetch returns what changed at or after the minute."""

    kind: str = "customers"
    mode: FeedMode = FeedMode.CHANGED_SINCE
    entities: dict[str, tuple[str, dt.datetime]] = field(default_factory=dict)
    calls_per_fetch: int = 1
    asked: list[dt.datetime | None] = field(default_factory=list)

    def change(self, guid: str, stamp: str, at: dt.datetime) -> None:
        self.entities[guid] = (stamp, at)

    async def fetch(
        self,
        since: dt.datetime | None,
        budget: CallBudget,
        into: Fetched,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        self.asked.append(since)
        budget.spend()
        floor = None if since is None else since.replace(second=0, microsecond=0)
        for guid, (stamp, at) in sorted(self.entities.items(), key=lambda kv: kv[1][1]):
            if floor is None or at >= floor or self.mode is FeedMode.SNAPSHOT:
                if (guid, stamp) not in seen:
                    for _ in range(self.calls_per_fetch - 1):
                        budget.spend()  # e.g. one head-office look-up per customer
                into.changes.append(
                    Change(
                        guid,
                        stamp,
                        OutgoingMessage(body=f"{guid}@{stamp}".encode(), routing_key=self.kind),
                        "ev",
                    )
                )


class Published(list[str]):
    fail_after: int | None = None

    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        if self.fail_after is not None and len(self) >= self.fail_after:
            raise PublishFailed("no confirm")
        self.append(message.body.decode())


def poller(feed: FakeFeed, state: FakeState, published: Published, clock: Clock, **kw: object) -> Poller:
    return Poller(
        feeds=[feed],
        state=state,  # type: ignore[arg-type]  # FakeCursor stands in for the Cursor protocol
        cursor=FakeCursor,
        publish=published,
        holder=str(kw.pop("holder", "pod-a")),
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


async def test_every_change_is_published_once_across_overlapping_polls() -> None:
    feed, state, published, clock = FakeFeed(), FakeState(), Published(), Clock()
    p = poller(feed, state, published, clock)
    feed.change("a", "s1", T0)
    feed.change("b", "s1", T0 + dt.timedelta(seconds=20))  # the same minute
    await p.poll_once()
    clock.now = T0 + dt.timedelta(seconds=25)
    feed.change("a", "s2", T0 + dt.timedelta(seconds=24))  # changed again inside the minute
    await p.poll_once()
    clock.now = T0 + dt.timedelta(minutes=5)
    await p.poll_once()  # nothing new: the overlap returns a and b again, both skipped
    assert published == ["a@s1", "b@s1", "a@s2"]
    assert feed.asked[1] == T0 - OVERLAP  # each fetch reaches a minute back from the last start


async def test_a_change_made_while_a_poll_runs_is_caught_by_the_next_one() -> None:
    feed, state, published, clock = FakeFeed(), FakeState(), Published(), Clock()
    p = poller(feed, state, published, clock)
    await p.poll_once()  # started at T0, nothing yet
    feed.change("late", "s1", T0 - dt.timedelta(seconds=5))  # committed in Severa during that poll
    clock.now = T0 + dt.timedelta(minutes=1)
    await p.poll_once()
    assert published == ["late@s1"]


async def test_a_failed_publish_never_advances_the_cursor_past_it() -> None:
    feed, state, published, clock = FakeFeed(), FakeState(), Published(), Clock()
    p = poller(feed, state, published, clock)
    for n in range(5):
        feed.change(f"e{n}", "s1", T0)
    published.fail_after = 2
    with pytest.raises(PublishFailed):
        await p.poll_once()
    assert state.cursors["customers"].since is None  # not advanced
    published.fail_after = None
    clock.now = T0 + dt.timedelta(minutes=1)
    await p.poll_once()
    assert published == [f"e{n}@s1" for n in range(5)]  # the first two not again


async def test_a_spent_budget_stops_the_poll_and_the_next_one_goes_on() -> None:
    feed, state, published, clock = FakeFeed(calls_per_fetch=2), FakeState(), Published(), Clock()
    p = poller(feed, state, published, clock, max_calls_per_poll=4)  # 1 list + 1 per entity: 3 fit
    for n in range(8):
        feed.change(f"e{n}", "s1", T0 + dt.timedelta(seconds=n))
    first = await p.poll_once()
    assert first is not None
    assert not first[0].complete
    assert len(published) == 3
    assert state.cursors["customers"].since is None  # not advanced: nothing skipped
    for _ in range(4):
        clock.now += dt.timedelta(minutes=1)
        await p.poll_once()
    assert sorted(published) == sorted(f"e{n}@s1" for n in range(8))
    assert len(published) == 8


async def test_snapshot_feeds_publish_what_is_ready_once_and_again_when_it_changes() -> None:
    feed = FakeFeed(kind="invoices", mode=FeedMode.SNAPSHOT)
    state, published, clock = FakeState(), Published(), Clock()
    p = poller(feed, state, published, clock)
    feed.change("inv-1", "h1", T0)
    feed.change("inv-2", "h1", T0)
    await p.poll_once()
    await p.poll_once()  # still waiting to be transferred: not again
    feed.change("inv-2", "h2", T0)  # corrected in Severa while ready
    del feed.entities["inv-1"]  # transferred: left the status
    await p.poll_once()
    feed.change("inv-1", "h1", T0)  # put back to ready by a person
    await p.poll_once()
    assert published == ["inv-1@h1", "inv-2@h1", "inv-2@h2", "inv-1@h1"]


async def test_only_the_lease_holder_polls() -> None:
    feed, state, clock = FakeFeed(), FakeState(), Clock()
    feed.change("a", "s1", T0)
    first, second = Published(), Published()
    a = poller(feed, state, first, clock, holder="pod-a")
    b = poller(feed, state, second, clock, holder="pod-b")
    assert await a.poll_once() is not None
    assert await b.poll_once() is None  # standby
    await a.release()
    clock.now += dt.timedelta(minutes=1)
    assert await b.poll_once() is not None  # takes over where a left off
    assert first == ["a@s1"]
    assert second == []


async def test_a_systemic_error_moves_no_cursor() -> None:
    feed, state, published, clock = FakeFeed(), FakeState(), Published(), Clock()

    async def refused(
        since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        raise SeveraAuthenticationFailed("key refused")

    feed.fetch = refused  # type: ignore[method-assign]
    p = poller(feed, state, published, clock)
    with pytest.raises(SeveraAuthenticationFailed):
        await p.poll_once()
    assert "customers" not in state.cursors


class GatedPublished(Published):
    """Publishes that wait for ``gate``: a stop can arrive while a confirm is outstanding."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        self.waiting.set()
        await self.gate.wait()
        await super().__call__(exchange, message)


async def test_a_stop_during_a_publish_waits_for_its_confirm_and_remembers_it() -> None:
    feed, state, published, clock = FakeFeed(), FakeState(), GatedPublished(), Clock()
    feed.change("a", "s1", T0)
    p = poller(feed, state, published, clock)
    polling = asyncio.create_task(p.poll_once())
    await published.waiting.wait()
    polling.cancel()  # the service stopping while the broker has not confirmed yet
    await asyncio.sleep(0)
    published.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await polling
    assert state.cursors["customers"].seen == {("a", "s1")}
    await poller(feed, state, published, clock).poll_once()  # restarted
    assert published == ["a@s1"]  # not published again


class GatedState(FakeState):
    gate: asyncio.Event
    saving: asyncio.Event

    async def save(self, cursor: FakeCursor, *, token: int) -> None:
        self.saving.set()
        await self.gate.wait()
        await super().save(cursor, token=token)


async def test_a_stop_during_the_cursor_save_does_not_roll_it_back() -> None:
    feed, published, clock = FakeFeed(), Published(), Clock()
    state = GatedState()
    state.gate, state.saving = asyncio.Event(), asyncio.Event()
    feed.change("a", "s1", T0)
    polling = asyncio.create_task(poller(feed, state, published, clock).poll_once())
    await state.saving.wait()
    polling.cancel()
    await asyncio.sleep(0)
    state.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await polling
    assert state.cursors["customers"].seen == {("a", "s1")}
    state.saving.clear()
    await poller(feed, state, published, clock).poll_once()  # restarted
    assert published == ["a@s1"]


@pytest.mark.parametrize(
    ("failing_polls", "paused"),
    [
        pytest.param(1, False, id="one failed poll is a blip, retried at the interval"),
        pytest.param(OUTAGE_AFTER_FAILED_POLLS, True, id="failing poll after poll is an outage"),
    ],
)
async def test_severa_failing_poll_after_poll_pauses_the_poller_as_an_outage(
    failing_polls: int, paused: bool
) -> None:
    feed, state, published, clock = FakeFeed(), FakeState(), Published(), Clock()
    attempts = 0
    stop = asyncio.Event()

    async def unavailable(
        since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == failing_polls:
            stop.set()
        raise SeveraUnavailable("Severa answered HTTP 503")

    feed.fetch = unavailable  # type: ignore[method-assign]
    p = poller(feed, state, published, clock, interval_seconds=0.001, backoff_max_seconds=0.001)
    await asyncio.wait_for(p.run(stop), 5)
    assert isinstance(p.last_error, SeveraOutage if paused else SeveraUnavailable)
    assert isinstance(p.last_error, SystemicError) is paused
    assert "customers" not in state.cursors
