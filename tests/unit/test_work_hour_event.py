"""The WorkHourEvent contract: what producers may send, and what is refused with which message."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.errors import InvalidMessage
from connector.flows.work_hours import parse_event
from tests.factories import event_json


def test_a_complete_event_parses_with_decimal_hours_and_external_id() -> None:
    event = parse_event(event_json(hours="7.5", source="tracker", source_entry_id="e-1"))
    assert event.hours == Decimal("7.5")
    assert event.external_id == "tracker:e-1"


def test_unknown_fields_are_tolerated() -> None:
    assert parse_event(event_json(added_in_a_later_version={"x": 1})).user_code == "JDOE"


def test_hours_may_be_a_json_number() -> None:
    assert parse_event(event_json(hours=8)).hours == Decimal(8)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"hours": "1000"}, "hours", id="more than 999 hours is refused (Severa's limit)"),
        pytest.param({"hours": "0"}, "hours", id="zero hours is refused"),
        pytest.param({"hours": "1.234"}, "hours", id="more than two decimals is refused"),
        pytest.param({"hours": True}, "hours", id="a boolean is not hours"),
        pytest.param({"billable": "yes"}, "billable", id="a string is not a boolean"),
        pytest.param({"case_number": "1001"}, "case_number", id="a case number must be a number"),
        pytest.param({"event_id": "not-a-uuid"}, "event_id", id="event id must be a uuid"),
        pytest.param(
            {"occurred_at": "2026-11-20T16:30:00"}, "occurred_at", id="a time without offset is ambiguous"
        ),
        pytest.param({"date": "20.11.2026"}, "date", id="dates are ISO 8601"),
        pytest.param(
            {"user_code": None, "user_email": None}, "user_code or user_email", id="someone must be named"
        ),
        pytest.param({"phase_code": None}, "phase_code", id="a created entry needs its phase"),
        pytest.param(
            {"user_email": "not-an-email", "user_code": None}, "user_email", id="e-mail must look like one"
        ),
        pytest.param({"schema_version": "2"}, "schema_version", id="an unknown contract version is refused"),
        pytest.param({"event_type": "workhour.exploded"}, "event_type", id="unknown event types are refused"),
    ],
)
def test_schema_violations_name_the_field(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_event(event_json(**overrides))
    assert caught.value.reason == "schema_violation"
    assert expected in caught.value.message


def test_a_delete_needs_only_its_identity() -> None:
    body = (
        b'{"event_id": "6f1c1f4e-8d53-4a8a-9d7e-0d1f2b3c4d5e", "event_type": "workhour.deleted",'
        b' "occurred_at": "2026-11-20T10:00:00Z", "source": "tracker", "source_entry_id": "e-1",'
        b' "version": 3}'
    )
    event = parse_event(body)
    assert (event.event_type, event.version, event.hours) == ("workhour.deleted", 3, None)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="broken JSON"),
        pytest.param(b"", id="empty body"),
        pytest.param(b"\xff\xfe", id="not even UTF-8"),
    ],
)
def test_bodies_that_are_not_json_are_refused_as_such(body: bytes) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_event(body)
    assert caught.value.reason == "invalid_json"
    assert "not valid JSON" in caught.value.message


def test_a_json_array_is_a_schema_violation_not_a_crash() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_event(b"[1, 2]")
    assert caught.value.reason == "schema_violation"
