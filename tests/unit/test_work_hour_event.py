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
        pytest.param({"version": 2**63}, "version", id="a version beyond a signed 64-bit integer is refused"),
        pytest.param({"version": 0}, "version", id="versions start at one"),
        pytest.param({"source": "tracker "}, "source", id="a trailing blank in the source is refused"),
        pytest.param(
            {"source_entry_id": " e-1"}, "source_entry_id", id="a leading blank in the entry id is refused"
        ),
        pytest.param(
            {"source_entry_id": "e-1\n"},
            "source_entry_id",
            id="a trailing newline in the entry id is refused",
        ),
        pytest.param(
            {"source_entry_id": "e-1\u3000"},
            "source_entry_id",
            id="an ideographic space at the end is refused",
        ),
        pytest.param({"source": "track\x00er"}, "source", id="a NUL inside the source is refused"),
        pytest.param(
            {"source_entry_id": "e\x1b[1m"},
            "source_entry_id",
            id="an escape character in the entry id is refused",
        ),
        pytest.param({"source_entry_id": ""}, "source_entry_id", id="an empty entry id is refused"),
        pytest.param({"source": "s" * 101}, "source", id="a source over 100 characters is refused"),
        pytest.param(
            {"source_entry_id": "\u00e9" * 101},
            "source_entry_id",
            id="an entry id over 100 characters is refused",
        ),
    ],
)
def test_schema_violations_name_the_field(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_event(event_json(**overrides))
    assert caught.value.reason == "schema_violation"
    assert expected in caught.value.message


def test_the_largest_signed_64_bit_version_is_accepted() -> None:
    assert parse_event(event_json(version=2**63 - 1)).version == 2**63 - 1


@pytest.mark.parametrize(
    ("source", "source_entry_id"),
    [
        pytest.param("s" * 100, "x" * 100, id="100 characters each are accepted"),
        pytest.param("trä cker", "e 1", id="inner blanks and accents are kept"),
        pytest.param("Tracker", "cafe\u0301", id="case and decomposed accents are kept as sent"),
        pytest.param(
            "\U0001f600" * 100, "\U0001f600", id="100 characters outside the basic plane are accepted"
        ),
    ],
)
def test_identity_fields_are_kept_exactly_as_sent(source: str, source_entry_id: str) -> None:
    event = parse_event(event_json(source=source, source_entry_id=source_entry_id))
    assert (event.source, event.source_entry_id) == (source, source_entry_id)


def test_look_up_codes_are_still_trimmed() -> None:
    event = parse_event(event_json(user_code=" JDOE ", phase_code="DES\t", work_type_code=" DEV"))
    assert (event.user_code, event.phase_code, event.work_type_code) == ("JDOE", "DES", "DEV")


def test_the_external_id_escapes_the_source_so_identities_never_share_it() -> None:
    one = parse_event(event_json(source="hx:a0", source_entry_id="b"))
    other = parse_event(event_json(source="hx", source_entry_id="a0:b"))
    assert (one.external_id, other.external_id) == ("hx%3Aa0:b", "hx:a0:b")


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
