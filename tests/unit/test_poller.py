"""The poller's rules, on fakes of its ports: overlap, de-duplication, publish before save, budget, lease."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any

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
from connector.flows.severa_feeds import ADDRESS_TRUSTED_FOR, CustomerFeed
from connector.ports import Customer, HourEntry, Invoice, PostalAddress

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


# --------------------------------------------------------------------------------------------------
# Customers: an address change alone is a change; the look-ups it takes stay within the budget


ORG = "acme-severa"
EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def _guid(n: int) -> str:
    return f"3f2b8c1e-0000-4000-8000-{n:012d}"


@dataclass
class FakeCustomers:
    """Severa's customers as :class:`~connector.ports.SeveraChanges` sees them.

    ``GetCustomersChangedSince`` matches to the minute and, with the address flag, also names a
    customer whose head-office address changed since; changing the address alone leaves the
    customer's ``UpdatedTS`` as it was -- the behaviour the customer feed must cope with.
    """

    clock: Clock
    customers: dict[str, Customer] = field(default_factory=dict)
    addresses: dict[str, PostalAddress] = field(default_factory=dict)
    changed_at: dict[str, dt.datetime] = field(default_factory=dict)
    address_changed_at: dict[str, dt.datetime] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def add(self, n: int) -> str:
        guid, now = _guid(n), self.clock()
        self.customers[guid] = Customer(
            guid=guid,
            name=f"Customer {n}",
            number=1000 + n,
            company_guid=None,
            vat_number="1234567-8",
            email=None,
            website=None,
            currency_code="EUR",
            language_code="fi",
            payment_term_days=14,
            reverse_charge=None,
            e_invoice_address=None,
            e_invoice_operator=None,
            head_office_address_guid=_guid(10_000 + n),
            is_active=True,
            is_internal=False,
            inserted_at=now,
            updated_at=now,
        )
        self.changed_at[guid] = now
        self.move(guid, f"Esimerkkikatu {n}", stamp=False)
        return guid

    def rename(self, guid: str, name: str) -> None:
        now = self.clock()
        self.customers[guid] = replace(self.customers[guid], name=name, updated_at=now)
        self.changed_at[guid] = now

    def move(self, guid: str, line: str, *, stamp: bool = True) -> None:
        """A new street address for the head office; the customer itself is untouched."""
        address_guid = self.customers[guid].head_office_address_guid
        assert address_guid is not None
        self.addresses[guid] = PostalAddress(
            guid=address_guid,
            lines=(line,),
            postal_code="00100",
            city="Helsinki",
            country_code="FI",
            country_name=None,
            is_billing=True,
            is_postal=True,
            is_visit=True,
        )
        if stamp:
            self.address_changed_at[guid] = self.clock()

    async def get_customers_changed_since(
        self, since: dt.datetime, *, include_inactive: bool = False, include_address_changes: bool = True
    ) -> list[Customer]:
        cutoff = since.replace(second=0, microsecond=0)
        return [
            customer
            for guid, customer in self.customers.items()
            if self.changed_at[guid] >= cutoff
            or (include_address_changes and self.address_changed_at.get(guid, EPOCH) >= cutoff)
        ]

    async def get_head_office_address(self, account_guid: str) -> PostalAddress | None:
        self.lookups.append(account_guid)
        return self.addresses.get(account_guid)

    async def get_invoices_by_status(
        self, status: str, *, business_unit_guid: str | None = None, max_invoices: int | None = None
    ) -> list[Invoice]:
        raise AssertionError("not a customer call")

    async def get_hour_entries_changed_since(self, since: dt.datetime) -> list[HourEntry]:
        raise AssertionError("not a customer call")

    async def get_invoice(self, guid: str) -> Invoice | None:
        raise AssertionError("not a customer call")


class Events(list[dict[str, Any]]):
    """The bodies published, decoded: what a consumer of severa.customer.changed receives."""

    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        body = json.loads(message.body)
        assert message.message_id == body["event_id"]
        self.append(body)

    def lines(self, guid: str) -> list[list[str]]:
        return [b["customer"]["head_office_address"]["lines"] for b in self if b["customer"]["guid"] == guid]


def customer_poller(
    severa: FakeCustomers, state: FakeState, events: Events, clock: Clock, *, budget: int = 200
) -> Poller:
    feed = CustomerFeed(severa, exchange="severa.events", organization_id=ORG, clock=clock)
    return Poller(
        feeds=[feed],
        state=state,  # type: ignore[arg-type]  # FakeCursor stands in for the Cursor protocol
        cursor=FakeCursor,
        publish=events,
        holder="pod-a",
        clock=clock,
        max_calls_per_poll=budget,
    )


async def test_an_address_change_alone_is_published_once_as_a_new_event() -> None:
    clock = Clock()
    severa, state, events = FakeCustomers(clock), FakeState(), Events()
    guid = severa.add(1)
    p = customer_poller(severa, state, events, clock)
    await p.poll_once()
    assert events.lines(guid) == [["Esimerkkikatu 1"]]

    clock.now += dt.timedelta(minutes=5)
    severa.move(guid, "Aleksanterinkatu 5")  # UpdatedTS stays where it was
    for _ in range(4):
        clock.now += dt.timedelta(seconds=40)
        await p.poll_once()

    assert events.lines(guid) == [["Esimerkkikatu 1"], ["Aleksanterinkatu 5"]]
    first, moved = events
    assert moved["event_id"] != first["event_id"]  # consumers de-duplicating on it keep the change
    assert moved["occurred_at"] == first["occurred_at"]  # Severa's UpdatedTS did not move


async def test_an_address_change_right_after_a_look_up_is_found_by_a_later_poll() -> None:
    clock = Clock()
    severa, state, events = FakeCustomers(clock), FakeState(), Events()
    guid = severa.add(1)
    p = customer_poller(severa, state, events, clock)
    await p.poll_once()  # reads the address at T0
    clock.now += dt.timedelta(seconds=5)
    severa.move(guid, "Aleksanterinkatu 5")  # inside the trust of that read
    for _ in range(8):
        clock.now += dt.timedelta(seconds=5)
        await p.poll_once()  # the first of these rely on the read of T0, the later ones read again
    assert events.lines(guid) == [["Esimerkkikatu 1"], ["Aleksanterinkatu 5"]]


async def test_customers_the_overlap_returns_again_are_not_published_again_nor_looked_up_every_poll() -> None:
    clock = Clock()
    severa, state, events = FakeCustomers(clock), FakeState(), Events()
    guids = [severa.add(n) for n in range(10)]
    p = customer_poller(severa, state, events, clock)
    await p.poll_once()
    polls = 30
    for _ in range(polls):  # a short interval: the overlap minute returns all ten on every poll
        clock.now += dt.timedelta(seconds=2)
        await p.poll_once()
    assert len(events) == 10
    looked_up = collections.Counter(severa.lookups)
    assert set(looked_up) == set(guids)
    # Each read is trusted for half the overlap: a minute of two-second polls costs each customer
    # a few look-ups, not one per poll.
    assert max(looked_up.values()) <= 3, looked_up


async def test_a_poll_that_ran_out_of_budget_does_not_pay_again_for_what_it_looked_up() -> None:
    clock = Clock()
    severa, state, events = FakeCustomers(clock), FakeState(), Events()
    guids = [severa.add(n) for n in range(30)]
    p = customer_poller(severa, state, events, clock, budget=5)  # the list and 4 look-ups a poll
    results = []
    for _ in range(12):
        clock.now += dt.timedelta(minutes=2)  # longer than any read is trusted
        calls = len(severa.lookups)
        polled = await p.poll_once()
        assert polled is not None
        results.append(polled[0].complete)
        assert len(severa.lookups) - calls <= 4
    assert sorted(b["customer"]["guid"] for b in events) == sorted(guids)  # each once
    assert results[:7] == [False] * 7  # 30 look-ups at 4 a poll: seven polls that run out...
    assert results[7] is True  # ...then one that finishes, relying on what the others read
    assert state.cursors["customers"].since is not None


async def test_a_poll_that_relies_on_an_earlier_read_holds_the_cursor_back_to_where_it_reaches() -> None:
    clock = Clock()
    severa, state, events = FakeCustomers(clock), FakeState(), Events()
    guids = [severa.add(n) for n in range(4)]
    p = customer_poller(severa, state, events, clock, budget=3)  # the list and 2 look-ups a poll
    await p.poll_once()  # reads customers 0 and 1 at T0, runs out of budget
    read_at = clock.now
    clock.now += dt.timedelta(minutes=1)
    severa.move(guids[0], "Aleksanterinkatu 5")  # after that read
    clock.now += dt.timedelta(minutes=4)
    second = await p.poll_once()  # reads 2 and 3; no budget left to read 0 and 1 again
    assert second is not None
    assert second[0].complete
    # Not this poll's start: the next fetch must reach back before the change of customer 0.
    assert state.cursors["customers"].since == read_at + ADDRESS_TRUSTED_FOR
    clock.now += dt.timedelta(minutes=1)
    await p.poll_once()
    assert events.lines(guids[0]) == [["Esimerkkikatu 0"], ["Aleksanterinkatu 5"]]
    assert len(events) == 5


async def test_a_renamed_customer_is_one_event_and_its_old_state_is_not_published_again() -> None:
    clock = Clock()
    severa, state, events = FakeCustomers(clock), FakeState(), Events()
    guid = severa.add(1)
    p = customer_poller(severa, state, events, clock)
    await p.poll_once()
    clock.now += dt.timedelta(seconds=10)
    severa.rename(guid, "Renamed Oy")
    for _ in range(5):
        clock.now += dt.timedelta(seconds=20)
        await p.poll_once()
    assert [b["customer"]["name"] for b in events] == ["Customer 1", "Renamed Oy"]
