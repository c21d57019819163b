"""The connector end to end: real RabbitMQ, the fake Severa over real SOAP/HTTP, the real service.

Each test publishes events the way an external system would and watches what comes out: hour
entries in Severa, result events, dead letters with their reasons, readiness.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest

from adapters.severa.fake.server import FakeSevera
from connector.service import ConnectorService
from connector.topology import Names
from schemas.dead_letter import DeadLetterHeaders
from tests.factories import SEED_USER_GUID, event_dict
from tests.harness import (
    SEVERA_KEY,
    Broker,
    broker_view,
    connector_settings,
    running_connector,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(listening_broker: Broker) -> Broker:
    """These tests observe result events, so they listen as a source system would (its own queue
    bound to the results exchange); test_production_topology.py runs with nothing bound."""
    return listening_broker


KEY = SEVERA_KEY


@pytest.fixture
async def connector(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path
) -> AsyncIterator[ConnectorService]:
    settings = connector_settings(
        amqp_url=amqp_url, names=topology, severa_url=severa.url, api_key=KEY, state_dir=tmp_path
    )
    async with running_connector(settings) as service:
        yield service


def hour_entries(severa: FakeSevera) -> list[dict[str, object]]:
    return list(severa.store.hour_entries)


async def dead_letters(broker: Broker, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    await wait_until(
        lambda: len(broker.results.failed) >= count, what=f"{count} workhour.failed results", timeout=15
    )
    taken = await broker.drain_dlq()
    assert len(taken) == count, f"expected {count} dead letters, found {len(taken)}"
    return taken


async def test_a_good_event_lands_in_severa_and_is_reported_synced(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    event = event_dict(hours="7.5", description="Wireframes")
    await broker.publish_event(event, correlation_id="corr-42")
    await broker.results.wait_for(1)

    (entry,) = hour_entries(severa)
    assert entry["UserGUID"] == SEED_USER_GUID
    assert str(entry["Quantity"]) in {"7.5", "7.50"}
    assert entry["Description"] == "Wireframes"
    (synced,) = broker.results.synced
    assert synced["event_id"] == event["event_id"]
    assert synced["severa_guid"] == entry["GUID"]
    assert synced["outcome"] == "created"
    assert synced["_correlation_id"] == "corr-42"


async def test_redelivered_and_replayed_events_do_not_duplicate(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    event = event_dict()
    for _ in range(3):
        await broker.publish_event(event)
    await broker.results.wait_for(3)
    assert len(hour_entries(severa)) == 1
    assert sorted(r["outcome"] for r in broker.results.synced) == ["created", "unchanged", "unchanged"]


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        pytest.param(b"{this is not json", "invalid_json", "not valid JSON", id="bad JSON"),
        pytest.param(
            json.dumps(event_dict(hours="lots")).encode(), "schema_violation", "hours", id="schema violation"
        ),
        pytest.param(
            json.dumps(event_dict(user_code="NOBODY")).encode(),
            "unknown_user",
            "no user with code 'NOBODY'",
            id="unknown user",
        ),
        pytest.param(
            json.dumps(event_dict(phase_code="NOPE")).encode(), "unknown_phase", "'NOPE'", id="unknown phase"
        ),
    ],
)
async def test_bad_events_are_dead_lettered_with_a_readable_reason(
    connector: ConnectorService, broker: Broker, severa: FakeSevera, body: bytes, reason: str, says: str
) -> None:
    message_id = str(uuid.uuid4())
    await broker.publish(body, message_id=message_id, correlation_id="corr-bad")
    (dead,) = await dead_letters(broker, 1)

    assert dead.body == body  # the original, untouched
    assert dead.message_id == message_id
    assert dead.correlation_id == "corr-bad"
    headers = DeadLetterHeaders.from_amqp(dict(dead.headers))
    assert headers is not None
    assert headers.category == "permanent"
    assert headers.reason == reason
    assert says in headers.message
    assert headers.original_queue == connector.names.workhours_queue
    assert headers.original_routing_key == "workhour.created"
    assert headers.attempts == 1
    assert hour_entries(severa) == []
    assert broker.results.failed[0]["reason"] == reason


async def test_the_queue_keeps_flowing_past_bad_events(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    await broker.publish(b"garbage")
    await broker.publish_event(event_dict(user_code="NOBODY"))
    good = [event_dict() for _ in range(5)]
    for event in good:
        await broker.publish_event(event)
    await broker.results.wait_for(7)
    assert len(hour_entries(severa)) == 5
    assert len(broker.results.failed) == 2


async def test_a_severa_validation_fault_is_dead_lettered_at_once(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    severa.faults.soap_fault(
        "ValidationException", "Quantity must not exceed 999", operation="AddNewHourEntry", times=1
    )
    await broker.publish_event(event_dict())
    (dead,) = await dead_letters(broker, 1)
    headers = DeadLetterHeaders.from_amqp(dict(dead.headers))
    assert headers is not None
    assert headers.category == "permanent"
    assert headers.reason == "severa_validation"
    assert "Quantity must not exceed 999" in headers.message
    assert severa.calls["AddNewHourEntry"] == 1  # not retried


async def test_a_wrong_key_pauses_the_connector_without_dead_lettering_and_resumes(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    severa.set_api_key("a-regenerated-key")  # Severa no longer accepts the connector's key
    event = event_dict()
    await broker.publish_event(event)
    await wait_until(lambda: connector.circuit.is_open, what="the circuit to open")
    port = connector._health.bound_port if connector._health else None
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as response:
        assert response.status == 503
        body = await response.json()
    assert any("key" in reason.lower() for reason in body["reasons"]), body
    assert hour_entries(severa) == []
    assert await broker.depth(connector.names.workhours_dlq) == 0

    severa.set_api_key(KEY)  # the key works again (e.g. the old key was restored)
    await broker.results.wait_for(1, timeout=20)
    assert broker.results.synced[0]["event_id"] == event["event_id"]
    assert len(hour_entries(severa)) == 1
    assert broker.results.failed == []
    await wait_until(lambda: connector.readiness().ready, what="readiness")


async def test_a_transient_severa_failure_is_retried_in_process(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    severa.faults.http_error(503, operation="AddNewHourEntry", times=2)
    await broker.publish_event(event_dict())
    await broker.results.wait_for(1)
    assert broker.results.synced[0]["outcome"] == "created"
    assert len(hour_entries(severa)) == 1


async def test_an_add_whose_answer_is_lost_is_not_duplicated(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    from adapters.severa.fake.faults import Phase

    severa.faults.drop(operation="AddNewHourEntry", times=1, phase=Phase.AFTER)  # landed, answer lost
    await broker.publish_event(event_dict())
    await broker.results.wait_for(1)
    assert len(hour_entries(severa)) == 1
    assert severa.calls["AddNewHourEntry"] == 1


async def test_a_rotated_key_file_is_picked_up_without_restart(
    amqp_url: str, topology: Names, severa: FakeSevera, broker: Broker, tmp_path: Path
) -> None:
    key_file = tmp_path / "severa-api-key"
    key_file.write_text(KEY + "\n")
    settings = connector_settings(
        amqp_url=amqp_url,
        names=topology,
        severa_url=severa.url,
        api_key=KEY,
        state_dir=tmp_path,
        severa={"api_key": None, "api_key_file": str(key_file)},
    )
    async with running_connector(settings) as connector:
        severa.set_api_key("regenerated-in-severa-ui")  # the old key dies at once
        first = event_dict()
        await broker.publish_event(first)
        await wait_until(lambda: connector.circuit.is_open, what="the circuit to open on the dead key")
        assert await broker.depth(topology.workhours_dlq) == 0

        new_file = tmp_path / "severa-api-key.new"  # as Kubernetes does: write aside, swap in
        new_file.write_text("regenerated-in-severa-ui")
        new_file.replace(key_file)
        await broker.results.wait_for(1, timeout=20)
        await broker.publish_event(event_dict())
        await broker.results.wait_for(2)
    assert [r["outcome"] for r in broker.results.synced] == ["created", "created"]
    assert broker.results.failed == []
    assert len(hour_entries(severa)) == 2


async def test_an_exhausted_quota_pauses_without_losing_or_dead_lettering(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    severa.quota.exhaust()
    events = [event_dict() for _ in range(10)]
    for event in events:
        await broker.publish_event(event)
    await wait_until(lambda: connector.circuit.is_open, what="the circuit to open on quota")
    assert not connector.readiness().ready
    assert hour_entries(severa) == []

    severa.quota.reset()  # the UTC day turned
    await broker.results.wait_for(10, timeout=30)
    assert sorted(r["event_id"] for r in broker.results.synced) == sorted(e["event_id"] for e in events)
    assert broker.results.failed == []
    assert await broker.depth(connector.names.workhours_dlq) == 0
    assert len(hour_entries(severa)) == 10


async def test_a_consumer_cancelled_by_the_broker_is_noticed_and_restored(
    connector: ConnectorService,
    broker: Broker,
    severa: FakeSevera,
    amqp_connection: aio_pika.abc.AbstractConnection,
) -> None:
    await broker.channel.queue_delete(connector.names.workhours_queue)  # an operator's mistake
    await wait_until(lambda: not connector.readiness().ready, what="not-ready after the cancel")
    assert "cancelled the consumer" in " ".join(connector.readiness().reasons)

    await wait_until(lambda: connector.readiness().ready, timeout=15, what="the consumer restored")
    await broker.publish_event(event_dict())
    await broker.results.wait_for(1)
    assert len(hour_entries(severa)) == 1
    # Restored once: the broker sees exactly one consumer (not ours plus a library-restored twin).
    assert await broker_view(amqp_connection, connector.names.workhours_queue) == (1, 0)


async def test_a_write_refused_for_authentication_while_probes_pass_is_held_never_dead_lettered(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    """The API user may read but not write hour entries: systemic, so held -- as the docs promise."""
    rule = severa.faults.soap_fault("AuthenticationFailure", operation="AddNewHourEntry")
    events = [event_dict() for _ in range(3)]
    for event in events:
        await broker.publish_event(event)
    await wait_until(lambda: severa.calls["AddNewHourEntry"] >= 8, timeout=30, what="several trials")
    assert await broker.depth(connector.names.workhours_dlq) == 0
    assert broker.results.failed == []
    assert hour_entries(severa) == []
    severa.faults.remove(rule.id)  # the right is granted
    await broker.results.wait_for(3, timeout=30)
    assert sorted(r["event_id"] for r in broker.results.synced) == sorted(e["event_id"] for e in events)
    assert broker.results.failed == []
    assert len(hour_entries(severa)) == 3
    assert await broker.depth(connector.names.workhours_dlq) == 0


async def test_a_lost_add_never_adopts_an_identical_entry_a_person_typed_by_hand_before(
    connector: ConnectorService, broker: Broker, severa: FakeSevera
) -> None:
    """The Add never reached Severa and its answer is lost; a person's twin from earlier exists."""
    import datetime as dt

    from adapters.severa.fake.faults import Phase
    from tests.factories import SEED_CASE_GUID, SEED_PHASE_GUID, SEED_WORK_TYPE_GUID

    event = event_dict(hours="7.5", description="Wireframes")
    real_clock = severa.clock
    severa.clock = lambda: real_clock() - dt.timedelta(minutes=10)  # typed ten minutes ago
    twin = severa.enter_hour_entry(
        {
            "UserGUID": SEED_USER_GUID,
            "CaseGUID": SEED_CASE_GUID,
            "PhaseGUID": SEED_PHASE_GUID,
            "WorkTypeGUID": SEED_WORK_TYPE_GUID,
            "EventDate": event["date"],
            "Quantity": event["hours"],
            "Description": event["description"],
        }
    )
    severa.clock = real_clock
    severa.faults.drop(operation="AddNewHourEntry", times=1, phase=Phase.BEFORE)  # never landed
    await broker.publish_event(event)
    await broker.results.wait_for(1)
    [result] = broker.results.synced
    assert result["severa_guid"] != twin["GUID"], "the person's entry was taken over"
    assert len(hour_entries(severa)) == 2
    assert severa.calls["GetHourEntriesChangedSince"] >= 1  # the lost Add was looked for
