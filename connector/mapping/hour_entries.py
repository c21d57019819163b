"""Pure conversion of a work-hour event into the hour entry Severa should hold.

No I/O here: references are resolved beforehand (:mod:`connector.mapping.references`) and passed
in, so every rule below is table-tested in ``tests/unit/test_mapping_hour_entries.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from connector.errors import InvalidMessage
from connector.ports import Case, NewHourEntry, Phase, User, WorkType
from schemas.work_hours import MAX_HOURS, WorkHourEvent

#: Severa's description column is long but not unbounded; longer text is cut with an ellipsis so the
#: write never fails for a cosmetic reason.
DESCRIPTION_MAX = 2000
_HOURS_STEP = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class ResolvedReferences:
    """The Severa records an event refers to."""

    user: User
    case: Case
    phase: Phase
    work_type: WorkType


def normalize_hours(hours: Decimal) -> Decimal:
    """Hours as Severa stores them: two decimals, within (0, 999]."""
    value = hours.quantize(_HOURS_STEP, rounding=ROUND_HALF_UP)
    if not Decimal(0) < value <= MAX_HOURS:
        raise InvalidMessage(f"hours must be > 0 and <= {MAX_HOURS}, got {hours}", reason="invalid_hours")
    return value


def normalize_description(text: str | None, limit: int = DESCRIPTION_MAX) -> str | None:
    """Trim whitespace, turn blank into None, cut to ``limit`` characters."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def to_new_hour_entry(event: WorkHourEvent, refs: ResolvedReferences) -> NewHourEntry:
    """The hour entry to add for a created/updated event."""
    if event.date is None or event.hours is None:
        raise InvalidMessage(f"{event.event_type} needs date and hours", reason="invalid_message")
    return NewHourEntry(
        user_guid=refs.user.guid,
        case_guid=refs.case.guid,
        phase_guid=refs.phase.guid,
        work_type_guid=refs.work_type.guid,
        event_date=event.date,
        quantity=normalize_hours(event.hours),
        description=normalize_description(event.description),
        is_billable=event.billable,
    )
