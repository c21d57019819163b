"""The work-hours flow against in-memory fakes of Severa and the ledger: the rules of "exactly once"."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connector.bus import OutgoingMessage
from connector.errors import InvalidMessage, SeveraRejected, SeveraUnavailable, UnknownReference
from connector.fakes import InMemorySevera
from connector.flows.work_hours import ResultPublisher, WorkHoursFlow
from connector.mapping.references import ReferenceResolver
from connector.observability import Metrics
from connector.processing import Delivery
from connector.state.memory import InMemoryLedger
from tests.factories import event_dict, event_json, severa


class Published(list[tuple[str, OutgoingMessage]]):
    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        self.append((exchange, message))


class World:
    def __init__(self) -> None:
        self.severa: InMemorySevera = severa()
        self.ledger = InMemoryLedger()
        self.published = Published()
        self.flow = WorkHoursFlow(
            severa=self.severa,
            resolver=ReferenceResolver(self.severa),
            ledger=self.ledger,
            results=ResultPublisher(self.published, "results"),
            metrics=Metrics(),
        )

    async def handle(self, event: dict[str, Any], *, correlation_id: str | None = None) -> None:
        import json

        await self.flow.handle(
            Delivery(
                body=json.dumps(event).encode(),
                routing_key=event.get("event_type", "workhour.created"),
                exchange="workhours",
                message_id=event.get("event_id"),
                correlation_id=correlation_id,
            )
        )

    def outcomes(self) -> list[str]:
        import json

        return [
            json.loads(m.body)["outcome"] for _, m in self.published if m.routing_key == "workhour.synced"
        ]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    async with w.ledger:
        yield w


async def test_a_created_event_adds_one_hour_entry_and_reports_its_guid(world: World) -> None:
    event = event_dict(hours="7.5")
    await world.handle(event, correlation_id="corr-1")
    (entry,) = world.severa.hour_entries.values()
    assert str(entry.quantity) == "7.50"
    ((_, result),) = world.published
    assert result.routing_key == "workhour.synced"
    assert result.correlation_id == "corr-1"
    assert f'"severa_guid":"{entry.guid}"' in result.body.decode()


async def test_the_correlation_id_defaults_to_the_event_id(world: World) -> None:
    event = event_dict()
    await world.handle(event)
    assert world.published[0][1].correlation_id == event["event_id"]


async def test_a_redelivered_event_changes_nothing_and_costs_no_severa_call(world: World) -> None:
    event = event_dict()
    await world.handle(event)
    calls = sum(world.severa.calls.values())
    await world.handle(event)
    await world.handle(event)
    assert len(world.severa.hour_entries) == 1
    assert sum(world.severa.calls.values()) == calls
    assert world.outcomes() == ["created", "unchanged", "unchanged"]


async def test_an_update_changes_the_same_entry(world: World) -> None:
    created = event_dict(version=1, hours="7.5")
    await world.handle(created)
    await world.handle(
        {
            **created,
            "event_id": str(uuid.uuid4()),
            "event_type": "workhour.updated",
            "version": 2,
            "hours": "3",
        }
    )
    (entry,) = world.severa.hour_entries.values()
    assert str(entry.quantity) == "3.00"
    assert world.outcomes() == ["created", "updated"]


async def test_an_older_version_after_a_newer_one_is_ignored(world: World) -> None:
    newer = event_dict(version=5, hours="5")
    await world.handle(newer)
    await world.handle({**newer, "event_id": str(uuid.uuid4()), "version": 4, "hours": "4"})
    (entry,) = world.severa.hour_entries.values()
    assert str(entry.quantity) == "5.00"
    assert world.outcomes() == ["created", "stale"]


async def test_an_update_of_an_entry_never_seen_creates_it(world: World) -> None:
    await world.handle(event_dict(event_type="workhour.updated", version=3))
    assert len(world.severa.hour_entries) == 1
    assert world.outcomes() == ["created"]


async def test_a_delete_removes_the_entry_and_a_late_create_stays_ignored(world: World) -> None:
    created = event_dict(version=1)
    await world.handle(created)
    delete = {**created, "event_id": str(uuid.uuid4()), "event_type": "workhour.deleted", "version": 2}
    await world.handle(delete)
    assert world.severa.hour_entries == {}
    await world.handle({**created, "event_id": str(uuid.uuid4())})  # version 1 arrives again, late
    assert world.severa.hour_entries == {}
    assert world.outcomes() == ["created", "deleted", "stale"]


async def test_a_delete_of_an_entry_never_seen_leaves_a_tombstone(world: World) -> None:
    created = event_dict(version=1)
    await world.handle({**created, "event_type": "workhour.deleted", "version": 2})
    await world.handle(created)
    assert world.severa.hour_entries == {}
    assert world.outcomes() == ["deleted", "stale"]


async def test_a_delete_of_an_entry_already_gone_from_severa_succeeds(world: World) -> None:
    created = event_dict(version=1)
    await world.handle(created)
    world.severa.hour_entries.clear()  # someone deleted it in Severa's UI
    await world.handle(
        {**created, "event_id": str(uuid.uuid4()), "event_type": "workhour.deleted", "version": 2}
    )
    assert world.outcomes() == ["created", "deleted"]


async def test_an_add_whose_answer_was_lost_is_found_in_severa_not_repeated(world: World) -> None:
    event = event_dict()
    world.severa.lose_answer_of_next_add = SeveraUnavailable("timeout", outcome_unknown=True)
    with pytest.raises(SeveraUnavailable):
        await world.handle(event)
    assert len(world.severa.hour_entries) == 1  # it did land
    await world.handle(event)  # the redelivery
    assert len(world.severa.hour_entries) == 1
    assert world.severa.calls["add_hour_entry"] == 1
    assert world.outcomes() == ["updated"]


async def test_an_add_that_did_not_land_is_made_on_the_next_attempt(world: World) -> None:
    event = event_dict()
    world.severa.failures["add_hour_entry"] = [SeveraUnavailable("refused", outcome_unknown=False)]
    with pytest.raises(SeveraUnavailable):
        await world.handle(event)
    await world.handle(event)
    assert len(world.severa.hour_entries) == 1
    assert world.outcomes() == ["created"]


async def test_an_identical_entry_of_another_external_id_is_not_adopted(world: World) -> None:
    first = event_dict(source_entry_id="a")
    await world.handle(first)
    second = event_dict(source_entry_id="b")  # same person, day, hours and text: a second real entry
    world.severa.lose_answer_of_next_add = SeveraUnavailable("timeout", outcome_unknown=True)
    with pytest.raises(SeveraUnavailable):
        await world.handle(second)
    await world.handle(second)
    owners = await world.ledger.owners_of(list(world.severa.hour_entries))
    assert sorted(owners.values()) == ["tracker:a", "tracker:b"]
    assert len(world.severa.hour_entries) == 2


async def test_events_for_the_same_entry_never_race(world: World) -> None:
    base = event_dict(version=1)
    versions = [{**base, "event_id": str(uuid.uuid4()), "version": v, "hours": str(v)} for v in range(1, 21)]
    await asyncio.gather(*(world.handle(v) for v in reversed(versions)))
    (entry,) = world.severa.hour_entries.values()
    assert str(entry.quantity) == "20.00"
    assert world.severa.calls["add_hour_entry"] == 1


async def test_a_steady_stream_costs_about_one_severa_call_per_event(world: World) -> None:
    for _ in range(100):
        await world.handle(event_dict())
    assert sum(world.severa.calls.values()) / 100 <= 1.05


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"nope", InvalidMessage, id="not JSON"),
        pytest.param(event_json(user_code="NOBODY"), UnknownReference, id="unknown user"),
    ],
)
async def test_bad_events_raise_permanent_errors_and_write_nothing(
    world: World, body: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await world.flow.handle(Delivery(body=body, routing_key="workhour.created", exchange="workhours"))
    assert world.severa.hour_entries == {}
    assert await world.ledger.count() == 0


async def test_a_severa_refusal_leaves_the_ledger_pending_not_applied(world: World) -> None:
    world.severa.failures["add_hour_entry"] = [
        SeveraRejected("Quantity too large", fault="ValidationException", operation="AddNewHourEntry")
    ]
    event = event_dict()
    with pytest.raises(SeveraRejected):
        await world.handle(event)
    record = await world.ledger.get(f"{event['source']}:{event['source_entry_id']}")
    assert record is not None
    assert record.state == "pending"
