"""Pure mapping rules from a work-hour event to the hour entry Severa should hold."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connector.errors import InvalidMessage
from connector.flows.work_hours import parse_event
from connector.mapping.hour_entries import (
    DESCRIPTION_MAX,
    ResolvedReferences,
    normalize_description,
    normalize_hours,
    to_new_hour_entry,
)
from tests.factories import CASE, PHASE, USER, WORK_TYPE, event_json

REFS = ResolvedReferences(user=USER, case=CASE, phase=PHASE, work_type=WORK_TYPE)


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        pytest.param(Decimal("7.5"), Decimal("7.50"), id="two decimals are kept"),
        pytest.param(Decimal("8"), Decimal("8.00"), id="whole hours get two decimals"),
        pytest.param(Decimal("0.005"), Decimal("0.01"), id="half a hundredth rounds up"),
        pytest.param(Decimal("999"), Decimal("999.00"), id="999 is Severa's maximum and allowed"),
    ],
)
def test_hours_are_normalised_to_hundredths(hours: Decimal, expected: Decimal) -> None:
    assert normalize_hours(hours) == expected
    assert normalize_hours(hours).as_tuple().exponent == -2


@pytest.mark.parametrize(
    "hours",
    [
        pytest.param(Decimal("999.01"), id="above Severa's 999"),
        pytest.param(Decimal("0.004"), id="rounds to zero"),
        pytest.param(Decimal("-1"), id="negative"),
    ],
)
def test_hours_outside_severa_limits_are_invalid(hours: Decimal) -> None:
    with pytest.raises(InvalidMessage, match="hours must be"):
        normalize_hours(hours)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, None, id="no description stays none"),
        pytest.param("  ", None, id="blank becomes none"),
        pytest.param("  Wireframes \n", "Wireframes", id="surrounding whitespace is trimmed"),
        pytest.param("x" * DESCRIPTION_MAX, "x" * DESCRIPTION_MAX, id="exactly the limit is kept"),
        pytest.param(
            "x" * (DESCRIPTION_MAX + 5),
            "x" * (DESCRIPTION_MAX - 1) + "…",
            id="longer is cut with an ellipsis",
        ),
    ],
)
def test_descriptions_are_trimmed_to_severa_length(text: str | None, expected: str | None) -> None:
    assert normalize_description(text) == expected


def test_an_event_maps_to_an_hour_entry_with_resolved_guids() -> None:
    event = parse_event(
        event_json(hours="7.5", date="2026-11-20", billable=False, description=" Wireframes ")
    )
    entry = to_new_hour_entry(event, REFS)
    assert entry.user_guid == USER.guid
    assert entry.case_guid == CASE.guid
    assert entry.phase_guid == PHASE.guid
    assert entry.work_type_guid == WORK_TYPE.guid
    assert entry.event_date == dt.date(2026, 11, 20)
    assert entry.quantity == Decimal("7.50")
    assert entry.description == "Wireframes"
    assert entry.is_billable is False


def test_the_work_date_is_the_workers_date_not_shifted_by_occurred_at_time_zone() -> None:
    event = parse_event(event_json(date="2026-11-20", occurred_at="2026-11-20T23:30:00-08:00"))
    assert to_new_hour_entry(event, REFS).event_date == dt.date(2026, 11, 20)
