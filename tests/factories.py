"""Builders for test data: one valid event and the Severa records it refers to."""

from __future__ import annotations

import json
import uuid
from typing import Any

from connector.fakes import InMemorySevera
from connector.ports import Case, Phase, User, WorkType

USER = User(
    guid="u-1", code="JDOE", email="jane.doe@example.com", first_name="Jane", last_name="Doe", is_active=True
)
INACTIVE_USER = User(
    guid="u-2", code="GONE", email="gone@example.com", first_name="G", last_name="One", is_active=False
)
CASE = Case(guid="c-1", number=1001, name="Website", is_closed=False)
CLOSED_CASE = Case(guid="c-2", number=1002, name="Old", is_closed=True)
PHASE = Phase(guid="p-1", case_guid="c-1", code="DES", name="Design", is_completed=False, is_locked=False)
WORK_TYPE = WorkType(guid="w-1", code="DEV", name="Development", is_active=True)
INACTIVE_WORK_TYPE = WorkType(guid="w-2", code="OLD", name="Old", is_active=False)


def severa() -> InMemorySevera:
    return InMemorySevera(
        users=[USER, INACTIVE_USER],
        cases=[CASE, CLOSED_CASE],
        phases=[PHASE],
        work_types=[WORK_TYPE, INACTIVE_WORK_TYPE],
    )


def event_dict(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_version": "1",
        "event_id": str(uuid.uuid4()),
        "event_type": "workhour.created",
        "occurred_at": "2026-11-20T16:30:00+02:00",
        "source": "tracker",
        "source_entry_id": f"e-{uuid.uuid4().hex[:8]}",
        "version": 1,
        "user_code": "JDOE",
        "case_number": 1001,
        "phase_code": "DES",
        "work_type_code": "DEV",
        "date": "2026-11-20",
        "hours": "7.5",
        "description": "Wireframes",
        "billable": True,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def event_json(**overrides: Any) -> bytes:
    return json.dumps(event_dict(**overrides)).encode()


# The same organisation for the fake Severa *service* (Severa member names, as on the wire).
SEED_USER_GUID = "7d3c1e52-0000-4000-8000-000000000001"
SEED_CASE_GUID = "7d3c1e52-0000-4000-8000-000000000101"
SEED_PHASE_GUID = "7d3c1e52-0000-4000-8000-000000000201"
SEED_LOCKED_PHASE_GUID = "7d3c1e52-0000-4000-8000-000000000202"
SEED_WORK_TYPE_GUID = "7d3c1e52-0000-4000-8000-000000000301"

SEVERA_SEED: dict[str, Any] = {
    "users": [
        {
            "GUID": SEED_USER_GUID,
            "Code": "JDOE",
            "Email": "jane.doe@example.com",
            "FirstName": "Jane",
            "LastName": "Doe",
            "IsActive": True,
        },
        {
            "GUID": "7d3c1e52-0000-4000-8000-000000000002",
            "Code": "MMEI",
            "Email": "matti.meikalainen@example.com",
            "FirstName": "Matti",
            "LastName": "Meikäläinen",
            "IsActive": True,
        },
    ],
    "work_types": [
        {"GUID": SEED_WORK_TYPE_GUID, "Code": "DEV", "Name": "Development", "IsActive": True},
    ],
    "cases": [
        {"GUID": SEED_CASE_GUID, "CaseNumber": 1001, "Name": "Website", "IsClosed": False},
    ],
    "phases": [
        {"GUID": SEED_PHASE_GUID, "CaseGUID": SEED_CASE_GUID, "Code": "DES", "Name": "Design"},
    ],
}
