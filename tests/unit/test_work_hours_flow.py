"""The work-hours flow against in-memory fakes of Severa and the ledger: the rules of "exactly once"."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pytest

from connector.bus import OutgoingMessage
from connector.errors import (
    Category,
    InvalidMessage,
    SeveraRejected,
    SeveraUnavailable,
    UnknownReference,
    VersionConflict,
)
from connector.fakes import InMemorySevera, not_found
from connector.flows.work_hours import ResultPublisher, WorkHoursFlow
from connector.mapping.references import ReferenceResolver
from connector.observability import Metrics
from connector.ports import NewHourEntry
from connector.processing import Delivery, Failure
from connector.state.memory import InMemoryLedger
from schemas.results import WorkHourFailed
from tests.factories import CASE, PHASE, USER, WORK_TYPE, event_dict, event_json, severa


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
    assert world.severa.calls["get_hour_entries_changed_since"] == 0


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


# -- the version comparison holds in every ledger state, a pending one included -------------------


@dataclass(frozen=True)
class Step:
    """One event of an entry's life, and what Severa does with its Add."""

    event_type: str
    version: int
    severa: Literal["answers", "refuses", "loses the answer"] = "answers"


C, U, D = "workhour.created", "workhour.updated", "workhour.deleted"


@pytest.mark.parametrize(
    ("steps", "outcomes", "hours_in_severa"),
    [
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "refuses"), Step(U, 2)],
            ["created", "deleted", "SeveraRejected", "stale"],
            [],
            id="a late update older than a delete stays ignored while a newer add is pending",
        ),
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "refuses"), Step(C, 1)],
            ["created", "deleted", "SeveraRejected", "stale"],
            [],
            id="a late create older than a delete stays ignored while a newer add is pending",
        ),
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "loses the answer"), Step(D, 3), Step(C, 4)],
            ["created", "deleted", "SeveraUnavailable", "deleted", "updated"],
            ["4.00"],
            id="the delete redelivered while a newer add is pending leaves the entry that add left",
        ),
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "refuses"), Step(C, 4)],
            ["created", "deleted", "SeveraRejected", "created"],
            ["4.00"],
            id="the pending version redelivered is added once Severa accepts it",
        ),
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "loses the answer"), Step(C, 4)],
            ["created", "deleted", "SeveraUnavailable", "updated"],
            ["4.00"],
            id="the pending version redelivered adopts the entry its lost answer left",
        ),
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "refuses"), Step(U, 5)],
            ["created", "deleted", "SeveraRejected", "created"],
            ["5.00"],
            id="a newer version than the pending one is added when the pending add did not land",
        ),
        pytest.param(
            [Step(C, 1), Step(D, 3), Step(C, 4, "loses the answer"), Step(U, 5)],
            ["created", "deleted", "SeveraUnavailable", "updated"],
            ["5.00"],
            id="a newer version than the pending one updates the entry the pending add left",
        ),
    ],
)
async def test_versions_are_compared_whatever_the_ledger_state(
    world: World, steps: list[Step], outcomes: list[str], hours_in_severa: list[str]
) -> None:
    identity = {"source": "tracker", "source_entry_id": "e-pending"}
    seen: list[str] = []
    for step in steps:
        if step.severa == "refuses":
            world.severa.failures["add_hour_entry"] = [
                SeveraRejected("Phase is locked", fault="Validation", operation="IHourEntry.AddNewHourEntry")
            ]
        elif step.severa == "loses the answer":
            world.severa.lose_answer_of_next_add = SeveraUnavailable("timeout", outcome_unknown=True)
        event = event_dict(
            **identity, event_type=step.event_type, version=step.version, hours=str(step.version)
        )
        before = len(world.outcomes())
        try:
            await world.handle(event)
        except (SeveraRejected, SeveraUnavailable) as exc:
            seen.append(type(exc).__name__)
        else:
            seen.extend(world.outcomes()[before:])
    assert seen == outcomes
    assert sorted(str(e.quantity) for e in world.severa.hour_entries.values()) == hours_in_severa


async def test_a_stale_event_leaves_the_pending_mark_for_the_newer_add(world: World) -> None:
    identity = {"source": "tracker", "source_entry_id": "e-pending"}
    await world.handle(event_dict(**identity, version=1))
    await world.handle(event_dict(**identity, event_type=D, version=3))
    world.severa.failures["add_hour_entry"] = [
        SeveraRejected("Phase is locked", fault="Validation", operation="IHourEntry.AddNewHourEntry")
    ]
    with pytest.raises(SeveraRejected):
        await world.handle(event_dict(**identity, version=4))
    adds = world.severa.calls["add_hour_entry"]
    await world.handle(event_dict(**identity, event_type=U, version=2))
    record = await world.ledger.get("tracker:e-pending")
    assert record is not None
    assert (record.state, record.version, record.pending_version) == ("pending", 3, 4)
    assert world.severa.calls["add_hour_entry"] == adds


# -- the same version with other content is a conflict, not a duplicate ----------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"hours": "8"}, "version_conflict", id="other hours under the same version conflict"),
        pytest.param(
            {"description": "Wireframes, second round"},
            "version_conflict",
            id="another description under the same version conflicts",
        ),
        pytest.param(
            {"event_type": "workhour.deleted"},
            "version_conflict",
            id="a delete under the applied version conflicts",
        ),
        pytest.param(
            {"occurred_at": "2026-11-21T08:00:00+02:00"},
            "unchanged",
            id="a producer retry with a new event id and time is a duplicate",
        ),
        pytest.param({"hours": "7.50"}, "unchanged", id="the same hours written differently are a duplicate"),
        pytest.param(
            {"event_type": "workhour.updated", "description": "  Wireframes "},
            "unchanged",
            id="an update with the same content and a padded description is a duplicate",
        ),
    ],
)
async def test_the_same_version_with_a_new_event_id_is_compared_by_content(
    world: World, overrides: dict[str, Any], expected: str
) -> None:
    first = event_dict(version=3, hours="7.5", description="Wireframes")
    await world.handle(first)
    (before,) = world.severa.hour_entries.values()
    again = {**first, "event_id": str(uuid.uuid4()), **overrides}
    if expected == "version_conflict":
        with pytest.raises(VersionConflict) as caught:
            await world.handle(again)
        assert caught.value.reason == "version_conflict"
        assert caught.value.category is Category.PERMANENT
        assert "higher version" in caught.value.message
    else:
        await world.handle(again)
        assert world.outcomes()[-1] == expected
    assert list(world.severa.hour_entries.values()) == [before]


async def test_a_record_without_a_content_hash_keeps_answering_unchanged(world: World) -> None:
    first = event_dict(version=2, hours="7.5")
    await world.handle(first)
    external_id = f"{first['source']}:{first['source_entry_id']}"
    record = await world.ledger.get(external_id)
    assert record is not None
    assert record.severa_guid is not None
    await world.ledger.mark_applied(external_id, 2, record.severa_guid)  # as a ledger from before hashes
    await world.handle({**first, "event_id": str(uuid.uuid4()), "hours": "8"})
    assert world.outcomes() == ["created", "unchanged"]


# -- identity: two entries that differ in any way stay two entries ---------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(("hx:a0", "b"), ("hx", "a0:b"), id="a colon moved from the source to the entry id"),
        pytest.param(("a%3Ab", "c"), ("a:b", "c"), id="a source spelling out an escaped colon"),
        pytest.param(("tracker", "E-1"), ("tracker", "e-1"), id="entry ids differing only in case"),
        pytest.param(
            ("tracker", "caf\u00e9"), ("tracker", "cafe\u0301"), id="composed and decomposed accents"
        ),
        pytest.param(("tracker", "e\u00a01"), ("tracker", "e 1"), id="a no-break space and a space"),
        pytest.param(
            ("s" * 100, "x" * 99 + "1"), ("s" * 100, "x" * 99 + "2"), id="maximal ids differing last"
        ),
    ],
)
async def test_entries_that_differ_only_in_their_identity_get_two_severa_entries(
    world: World, one: tuple[str, str], other: tuple[str, str]
) -> None:
    for source, entry_id in (one, other):
        await world.handle(event_dict(source=source, source_entry_id=entry_id))
    assert world.outcomes() == ["created", "created"]
    assert len(world.severa.hour_entries) == 2
    assert await world.ledger.count() == 2


async def test_results_name_the_identity_as_sent_and_the_encoded_key(world: World) -> None:
    await world.handle(event_dict(source="hx:a0", source_entry_id="b:1"))
    ((_, message),) = world.published
    result = json.loads(message.body)
    assert (result["source"], result["source_entry_id"], result["external_id"]) == (
        "hx:a0",
        "b:1",
        "hx%3Aa0:b:1",
    )


# -- a lost Add never adopts an entry that existed before it ---------------------------------------


def _type_by_hand(world: World, event: dict[str, Any], *, at: dt.datetime) -> str:
    """Put into Severa the entry a person typed at ``at``, identical to what ``event`` asks for."""
    twin = NewHourEntry(
        user_guid=USER.guid,
        case_guid=CASE.guid,
        phase_guid=PHASE.guid,
        work_type_guid=WORK_TYPE.guid,
        event_date=dt.date.fromisoformat(event["date"]),
        quantity=Decimal(event["hours"]).quantize(Decimal("0.01")),
        description=event["description"],
        is_billable=True,
    ).with_guid("typed-by-hand")
    world.severa.hour_entries[twin.guid] = twin
    world.severa.changed_at[twin.guid] = at
    return twin.guid


async def test_a_lost_add_that_did_not_land_adds_beside_a_hand_made_twin(world: World) -> None:
    event = event_dict()
    twin = _type_by_hand(world, event, at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    world.severa.failures["add_hour_entry"] = [SeveraUnavailable("timeout", outcome_unknown=True)]
    with pytest.raises(SeveraUnavailable):
        await world.handle(event)
    await world.handle(event)
    assert world.outcomes() == ["created"]
    assert len(world.severa.hour_entries) == 2
    assert await world.ledger.owners_of([twin]) == {}


async def test_a_lost_add_that_landed_is_adopted_rather_than_the_hand_made_twin(world: World) -> None:
    event = event_dict()
    twin = _type_by_hand(world, event, at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    world.severa.lose_answer_of_next_add = SeveraUnavailable("timeout", outcome_unknown=True)
    with pytest.raises(SeveraUnavailable):
        await world.handle(event)
    (landed,) = set(world.severa.hour_entries) - {twin}
    await world.handle(event)
    assert world.outcomes() == ["updated"]
    assert len(world.severa.hour_entries) == 2
    record = await world.ledger.get(f"{event['source']}:{event['source_entry_id']}")
    assert record is not None
    assert record.severa_guid == landed


# -- twins: two entries that look alike, both with a lost Add, recovering at once -----------------

TWIN_IDS = ("e-af85d804", "e-a163c6d1")


async def _land_both_twins_unanswered(world: World) -> tuple[list[dict[str, Any]], set[str]]:
    """Two external entries with identical content, each left pending with its Add landed (as a
    SIGKILL after both Adds would leave them); their events and the two landed GUIDs."""
    twins = [event_dict(source_entry_id=entry_id) for entry_id in TWIN_IDS]
    for twin in twins:
        world.severa.lose_answer_of_next_add = SeveraUnavailable("killed", outcome_unknown=True)
        with pytest.raises(SeveraUnavailable):
            await world.handle(twin)
    landed = set(world.severa.hour_entries)
    assert len(landed) == 2
    for entry_id in TWIN_IDS:
        record = await world.ledger.get(f"tracker:{entry_id}")
        assert record is not None
        assert record.state == "pending"
    return twins, landed


def _hold_severa_writes_until_both_arrive(world: World, *operations: str) -> None:
    """Make ``operations`` wait until two calls have arrived, as a slow Severa would: each twin
    has then chosen its entry before either has recorded the choice."""
    barrier = asyncio.Barrier(2)
    for name in operations:
        original: Callable[..., Awaitable[Any]] = getattr(world.severa, name)

        async def held(*args: Any, _original: Callable[..., Awaitable[Any]] = original) -> Any:
            await barrier.wait()
            return await _original(*args)

        setattr(world.severa, name, held)


async def test_twins_recovering_at_once_adopt_one_landed_add_each(world: World) -> None:
    twins, landed = await _land_both_twins_unanswered(world)
    _hold_severa_writes_until_both_arrive(world, "update_hour_entry")

    async with asyncio.timeout(5):
        await asyncio.gather(*(world.handle(twin) for twin in twins))

    guids = set()
    for entry_id in TWIN_IDS:
        record = await world.ledger.get(f"tracker:{entry_id}")
        assert record is not None
        assert record.state == "applied"
        guids.add(record.severa_guid)
    assert guids == landed, "each twin must own one of the two landed entries, not both the same"
    owners = await world.ledger.owners_of(landed)
    assert sorted(owners.values()) == sorted(f"tracker:{entry_id}" for entry_id in TWIN_IDS)
    assert world.outcomes() == ["updated", "updated"]
    assert world.severa.calls["add_hour_entry"] == 2


async def test_a_twin_deleted_while_the_other_recovers_leaves_the_other_its_entry(world: World) -> None:
    (first, second), landed = await _land_both_twins_unanswered(world)
    _hold_severa_writes_until_both_arrive(world, "delete_hour_entry", "update_hour_entry")
    delete_first = {**first, "event_id": str(uuid.uuid4()), "event_type": D, "version": 2}

    async with asyncio.timeout(5):
        await asyncio.gather(world.handle(delete_first), world.handle(second))

    (kept,) = world.severa.hour_entries
    assert kept in landed
    assert await world.ledger.owners_of(landed) == {kept: f"tracker:{TWIN_IDS[1]}"}
    tombstone = await world.ledger.get(f"tracker:{TWIN_IDS[0]}")
    assert tombstone is not None
    assert (tombstone.state, tombstone.version) == ("deleted", 2)
    assert sorted(world.outcomes()) == ["deleted", "updated"]


@pytest.mark.parametrize(
    "later",
    [
        pytest.param({"event_type": U, "hours": "3"}, id="an older update after a newer lost add is stale"),
        pytest.param({"event_type": D}, id="an older delete after a newer lost add is stale"),
    ],
)
async def test_an_event_older_than_the_add_it_recovers_is_stale(world: World, later: dict[str, Any]) -> None:
    # The claim records the pending version, whose content is what landed: an event older than
    # it must neither overwrite that content nor delete it, and the Add's own redelivery is done.
    identity = {"source": "tracker", "source_entry_id": "e-pending"}
    await world.handle(event_dict(**identity, version=1))
    await world.handle(event_dict(**identity, event_type=D, version=2))
    world.severa.lose_answer_of_next_add = SeveraUnavailable("timeout", outcome_unknown=True)
    added = event_dict(**identity, version=5, hours="5")
    with pytest.raises(SeveraUnavailable):
        await world.handle(added)

    await world.handle(event_dict(**identity, **{"version": 3, **later}))
    await world.handle({**added, "event_id": str(uuid.uuid4())})

    assert world.outcomes() == ["created", "deleted", "stale", "unchanged"]
    assert [str(e.quantity) for e in world.severa.hour_entries.values()] == ["5.00"]
    record = await world.ledger.get("tracker:e-pending")
    assert record is not None
    assert (record.state, record.version) == ("applied", 5)


# -- deletes, against the fake's refusals shaped as the adapter's ----------------------------------


async def test_a_delete_that_severa_answers_with_not_found_is_already_done(world: World) -> None:
    created = event_dict(version=1)
    await world.handle(created)
    (guid,) = world.severa.hour_entries
    world.severa.failures["delete_hour_entry"] = [not_found("DeleteHourEntry", guid)]
    await world.handle({**created, "event_id": str(uuid.uuid4()), "event_type": D, "version": 2})
    assert world.outcomes() == ["created", "deleted"]
    record = await world.ledger.get(f"{created['source']}:{created['source_entry_id']}")
    assert record is not None
    assert record.state == "deleted"


async def test_a_delete_that_severa_refuses_otherwise_is_not_recorded(world: World) -> None:
    created = event_dict(version=1)
    await world.handle(created)
    world.severa.failures["delete_hour_entry"] = [
        SeveraRejected("read-only", fault="NoPermission", operation="IHourEntry.DeleteHourEntry")
    ]
    with pytest.raises(SeveraRejected):
        await world.handle({**created, "event_id": str(uuid.uuid4()), "event_type": D, "version": 2})
    record = await world.ledger.get(f"{created['source']}:{created['source_entry_id']}")
    assert record is not None
    assert record.state == "applied"
    assert len(world.severa.hour_entries) == 1


# -- every parked message gets a failed result the producer can match ------------------------------


def _failure() -> Failure:
    now = dt.datetime.now(dt.UTC)
    return Failure(InvalidMessage("bad", reason="invalid_json"), 1, now, now)


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, {}, id="lists nested past the recursion limit"),
        pytest.param(b"\xff\xfe{\x00", {}, id="bytes that are not UTF-8"),
        pytest.param(b'["not", "an", "object"]', {}, id="a JSON array"),
        pytest.param(
            b'{"event_id": "6f1c1f4e-8d53-4a8a-9d7e-0d1f2b3c4d5e", "source": {"x": 1}, "source_entry_id": 7}',
            {"event_id": "6f1c1f4e-8d53-4a8a-9d7e-0d1f2b3c4d5e"},
            id="an object whose identity fields are not strings",
        ),
        pytest.param(
            b'{"event_id": [1], "source": "hx:a0", "source_entry_id": "b"}',
            {"source": "hx:a0", "source_entry_id": "b", "external_id": "hx%3Aa0:b"},
            id="an object with a broken event id and a source holding a colon",
        ),
        pytest.param(
            b'{"source": "\\ud800", "source_entry_id": "b"}',
            {"source_entry_id": "b"},
            id="an object whose source is a lone surrogate",
        ),
    ],
)
async def test_every_parked_body_gets_a_failed_result_with_the_message_ids(
    world: World, body: bytes, ids: dict[str, str]
) -> None:
    delivery = Delivery(
        body=body, routing_key=C, exchange="workhours", message_id="msg-1", correlation_id="corr-1"
    )
    await world.flow.notify_failure(delivery, _failure())
    ((_, message),) = world.published
    assert message.routing_key == "workhour.failed"
    assert message.correlation_id == "corr-1"
    result = WorkHourFailed.model_validate_json(message.body)
    assert (result.message_id, result.correlation_id, result.reason) == ("msg-1", "corr-1", "invalid_json")
    named = {
        key: str(value)
        for key, value in result.model_dump(
            include={"event_id", "source", "source_entry_id", "external_id"}
        ).items()
        if value is not None
    }
    assert named == ids


async def test_a_failed_result_without_a_correlation_id_falls_back_to_the_message_id(world: World) -> None:
    delivery = Delivery(body=b"\xff", routing_key=C, exchange="workhours", message_id="msg-1")
    await world.flow.notify_failure(delivery, _failure())
    ((_, message),) = world.published
    assert message.correlation_id == "msg-1"
    assert WorkHourFailed.model_validate_json(message.body).correlation_id is None


async def test_a_message_id_that_is_not_valid_unicode_is_mended_not_lost(world: World) -> None:
    delivery = Delivery(body=b"{", routing_key=C, exchange="workhours", message_id="msg-\ud800")
    await world.flow.notify_failure(delivery, _failure())
    ((_, message),) = world.published
    assert WorkHourFailed.model_validate_json(message.body).message_id == "msg-\\ud800"


async def test_a_twin_recovering_while_the_other_adds_leaves_each_its_own_entry(world: World) -> None:
    """A's Add landed unanswered; B adds its identical entry, and before B records it A recovers --
    and picks B's new entry. B must then take the one A's Add created, not share one with A."""
    first, second = (event_dict(source_entry_id=entry_id) for entry_id in TWIN_IDS)
    world.severa.lose_answer_of_next_add = SeveraUnavailable("killed", outcome_unknown=True)
    with pytest.raises(SeveraUnavailable):
        await world.handle(first)
    add = world.severa.add_hour_entry
    look_up = world.severa.get_hour_entries_by_user_and_date

    async def newest_first(*args: Any) -> list[Any]:
        return list(reversed(await look_up(*args)))

    async def add_then_the_twin_recovers(entry: Any) -> Any:
        added = await add(entry)
        world.severa.add_hour_entry = add  # type: ignore[method-assign]
        world.severa.get_hour_entries_by_user_and_date = newest_first  # type: ignore[method-assign]
        await world.handle(first)  # A recovers now and claims B's entry, the newest candidate
        world.severa.get_hour_entries_by_user_and_date = look_up  # type: ignore[method-assign]
        return added

    world.severa.add_hour_entry = add_then_the_twin_recovers  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await world.handle(second)

    landed = set(world.severa.hour_entries)
    assert len(landed) == 2
    owners = await world.ledger.owners_of(landed)
    assert sorted(owners.values()) == sorted(f"tracker:{entry_id}" for entry_id in TWIN_IDS)
    for entry_id in TWIN_IDS:
        record = await world.ledger.get(f"tracker:{entry_id}")
        assert record is not None
        assert record.state == "applied"
