"""Severa entities (as zeep returns them) ↔ the port records of :mod:`connector.ports`.

Pure functions, no I/O. zeep gives attribute-style objects; a member the service left out or sent
as nil reads as ``None``. A record's identity fields (GUIDs) are required: an entity without them
is not something the core can act on, so :class:`EntityMismatch` is raised and the client reports
the reply as unusable.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from connector.ports import Case, HourEntry, NewHourEntry, Phase, User, WorkType


class EntityMismatch(ValueError):
    """A Severa entity lacks a member the record needs, or has it in an unusable form."""


def _req_str(entity: Any, name: str) -> str:
    value = getattr(entity, name, None)
    if not isinstance(value, str) or not value:
        raise EntityMismatch(f"{_kind(entity)} has no {name}")
    return value


def _opt_str(entity: Any, name: str) -> str | None:
    value = getattr(entity, name, None)
    return value if isinstance(value, str) and value else None


def _bool(entity: Any, name: str) -> bool:
    return bool(getattr(entity, name, None))


def _kind(entity: Any) -> str:
    return type(entity).__name__


def as_list(result: Any) -> list[Any]:
    """A list result: zeep unwraps ``ArrayOfX`` to a list; Severa may send nil or nothing instead."""
    if result is None:
        return []
    if isinstance(result, list):
        return result
    raise EntityMismatch(f"expected a list, got {_kind(result)}")


def user_from_severa(entity: Any) -> User:
    return User(
        guid=_req_str(entity, "GUID"),
        code=_opt_str(entity, "Code"),
        email=_opt_str(entity, "Email"),
        first_name=_opt_str(entity, "FirstName"),
        last_name=_opt_str(entity, "LastName"),
        is_active=_bool(entity, "IsActive"),
    )


def case_from_severa(entity: Any) -> Case:
    number = getattr(entity, "CaseNumber", None)
    return Case(
        guid=_req_str(entity, "GUID"),
        number=int(number) if number is not None else None,
        name=_opt_str(entity, "Name"),
        is_closed=_bool(entity, "IsClosed"),
    )


def phase_from_severa(entity: Any) -> Phase:
    return Phase(
        guid=_req_str(entity, "GUID"),
        case_guid=_req_str(entity, "CaseGUID"),
        code=_opt_str(entity, "Code"),
        name=_opt_str(entity, "Name"),
        is_completed=_bool(entity, "IsCompleted"),
        is_locked=_bool(entity, "IsLocked"),
    )


def work_type_from_severa(entity: Any) -> WorkType:
    return WorkType(
        guid=_req_str(entity, "GUID"),
        code=_opt_str(entity, "Code"),
        name=_opt_str(entity, "Name"),
        is_active=_bool(entity, "IsActive"),
    )


def hour_entry_from_severa(entity: Any) -> HourEntry:
    event = getattr(entity, "EventDate", None)
    if not isinstance(event, dt.date):
        raise EntityMismatch("HourEntry has no EventDate")
    quantity = getattr(entity, "Quantity", None)
    if not isinstance(quantity, Decimal):
        raise EntityMismatch("HourEntry has no Quantity")
    return HourEntry(
        guid=_req_str(entity, "GUID"),
        user_guid=_req_str(entity, "UserGUID"),
        case_guid=_req_str(entity, "CaseGUID"),
        phase_guid=_req_str(entity, "PhaseGUID"),
        work_type_guid=_opt_str(entity, "WorkTypeGUID"),
        # Severa keeps EventDate as a dateTime at midnight (no zone): the date is what it means.
        event_date=event.date() if isinstance(event, dt.datetime) else event,
        quantity=quantity,
        description=_opt_str(entity, "Description"),
        is_billable=_bool(entity, "IsBillable"),
    )


def _midnight(day: dt.date) -> dt.datetime:
    """Severa's EventDate is a dateTime; a date is sent as its midnight, without a zone, as WCF does."""
    return dt.datetime.combine(day, dt.time())


def new_hour_entry_to_severa(entry: NewHourEntry) -> dict[str, Any]:
    """The ``hourEntryInfo`` argument of AddNewHourEntry.

    Only members we set are sent: Severa fills AccountGUID, prices and flags itself and ignores
    IsApproved on writes.
    """
    fields: dict[str, Any] = {
        "CaseGUID": entry.case_guid,
        "EventDate": _midnight(entry.event_date),
        "IsBillable": entry.is_billable,
        "PhaseGUID": entry.phase_guid,
        "Quantity": entry.quantity,
        "UserGUID": entry.user_guid,
        "WorkTypeGUID": entry.work_type_guid,
    }
    if entry.description is not None:
        fields["Description"] = entry.description
    if entry.start_time is not None:
        fields["StartTime"] = entry.start_time
    if entry.end_time is not None:
        fields["EndTime"] = entry.end_time
    return fields


def hour_entry_to_severa(entry: HourEntry) -> dict[str, Any]:
    """The ``hourEntryInfo`` argument of UpdateHourEntry (the GUID says which entry)."""
    fields: dict[str, Any] = {
        "CaseGUID": entry.case_guid,
        "EventDate": _midnight(entry.event_date),
        "GUID": entry.guid,
        "IsBillable": entry.is_billable,
        "PhaseGUID": entry.phase_guid,
        "Quantity": entry.quantity,
        "UserGUID": entry.user_guid,
    }
    if entry.work_type_guid is not None:
        fields["WorkTypeGUID"] = entry.work_type_guid
    if entry.description is not None:
        fields["Description"] = entry.description
    return fields


def hour_entry_update(current: Any, entry: HourEntry) -> dict[str, Any]:
    """The ``hourEntryInfo`` of UpdateHourEntry: Severa's ``current`` entity with the record applied.

    UpdateHourEntry replaces the whole entry (a member left out becomes null). Starting from the
    stored entity keeps what the record does not hold (StartTime, EndTime, InvoiceDescription,
    TaskGUID, OverTimeGUID …). The record's description is applied as is (None clears it); a
    record without work type keeps the stored one.
    """
    members: dict[str, Any] = {name: current[name] for name in current}
    members.update(hour_entry_to_severa(entry))
    members["Description"] = entry.description
    return members
