"""The in-memory Severa answers the way the real adapter does, where the flow depends on it."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest

from adapters.severa.contract import Ops, SoapFault
from adapters.severa.faults import NOT_FOUND, classify_fault
from connector.errors import SeveraRejected
from connector.fakes import InMemorySevera
from connector.ports import NewHourEntry

ENTRY = NewHourEntry(
    user_guid="u-1",
    case_guid="c-1",
    phase_guid="p-1",
    work_type_guid="w-1",
    event_date=dt.date(2026, 11, 20),
    quantity=Decimal("7.50"),
    description="Wireframes",
    is_billable=True,
)


async def test_an_update_of_an_unknown_guid_is_refused_as_the_adapter_refuses_it() -> None:
    adapter = classify_fault(
        SoapFault("s:Client", "not found", NOT_FOUND, "no such entry"),
        Ops.UPDATE_HOUR_ENTRY,
        key_origin="the key",
        secret=None,
    )
    assert isinstance(adapter, SeveraRejected)
    with pytest.raises(SeveraRejected) as caught:
        await InMemorySevera().update_hour_entry(ENTRY.with_guid("gone"))
    fake = caught.value
    assert (fake.fault, fake.operation, fake.reason) == (adapter.fault, adapter.operation, adapter.reason)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


T = dt.datetime(2026, 11, 20, 10, 0, 59, 500_000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("since", "listed"),
    [
        pytest.param(T, True, id="an entry changed at the moment asked for is listed"),
        pytest.param(T + dt.timedelta(seconds=0.4), True, id="later in the same minute it is still listed"),
        pytest.param(
            T.replace(second=0, microsecond=0), True, id="from the start of its minute it is listed"
        ),
        pytest.param(T + dt.timedelta(seconds=1), False, id="from the next minute it is not listed"),
        pytest.param(
            (T + dt.timedelta(seconds=1)).astimezone(dt.timezone(dt.timedelta(hours=2))),
            False,
            id="a time with another offset is compared in UTC",
        ),
    ],
)
async def test_changed_since_matches_to_the_minute_like_severa(since: dt.datetime, listed: bool) -> None:
    severa = InMemorySevera(clock=Clock(T))
    added = await severa.add_hour_entry(ENTRY)
    assert [e.guid for e in await severa.get_hour_entries_changed_since(since)] == (
        [added.guid] if listed else []
    )


async def test_changed_since_lists_updates_and_forgets_deletes() -> None:
    clock = Clock(T - dt.timedelta(hours=1))
    severa = InMemorySevera(clock=clock)
    updated, deleted = await severa.add_hour_entry(ENTRY), await severa.add_hour_entry(ENTRY)
    clock.now = T
    await severa.update_hour_entry(replace(updated, quantity=Decimal("8.00")))
    await severa.delete_hour_entry(deleted.guid)
    assert [e.guid for e in await severa.get_hour_entries_changed_since(T)] == [updated.guid]


async def test_changed_since_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        await InMemorySevera().get_hour_entries_changed_since(dt.datetime(2026, 11, 20, 10, 0))
