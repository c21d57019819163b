"""The content hash of a work-hour event: what tells a producer's retry from a change under one version."""

from __future__ import annotations

from typing import Any

import pytest

from connector.flows.work_hours import content_hash, parse_event
from tests.factories import event_json

BASE: dict[str, Any] = {
    "event_id": "6f1c1f4e-8d53-4a8a-9d7e-0d1f2b3c4d5e",
    "source_entry_id": "e-1",
    "version": 3,
}


def _hash(**overrides: Any) -> str | None:
    return content_hash(parse_event(event_json(**{**BASE, **overrides})))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(
            {"event_id": "0d9b4c1e-1111-4a8a-9d7e-0d1f2b3c4d5e"}, id="another event id hashes alike"
        ),
        pytest.param({"occurred_at": "2026-11-21T08:00:00Z"}, id="another occurrence time hashes alike"),
        pytest.param({"event_type": "workhour.updated"}, id="an update of the same content hashes alike"),
        pytest.param({"hours": "7.50"}, id="hours with a trailing zero hash alike"),
        pytest.param({"hours": 7.5}, id="hours as a JSON number hash alike"),
        pytest.param({"description": "  Wireframes\n"}, id="a padded description hashes alike"),
        pytest.param({"user_code": " JDOE"}, id="a padded user code hashes alike"),
    ],
)
def test_what_does_not_reach_severa_does_not_change_the_hash(overrides: dict[str, Any]) -> None:
    assert _hash(**overrides) == _hash()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"hours": "8"}, id="other hours change the hash"),
        pytest.param({"date": "2026-11-21"}, id="another day changes the hash"),
        pytest.param({"description": "Wireframes v2"}, id="another description changes the hash"),
        pytest.param({"description": None}, id="dropping the description changes the hash"),
        pytest.param({"billable": False}, id="billability changes the hash"),
        pytest.param({"phase_code": "DEV"}, id="another phase changes the hash"),
        pytest.param({"work_type_code": "OLD"}, id="another work type changes the hash"),
        pytest.param({"case_number": 1002}, id="another case changes the hash"),
        pytest.param(
            {"user_code": None, "user_email": "jane.doe@example.com"},
            id="naming the user otherwise changes it",
        ),
    ],
)
def test_what_severa_would_hold_changes_the_hash(overrides: dict[str, Any]) -> None:
    assert _hash(**overrides) != _hash()


def test_a_delete_asks_severa_to_hold_nothing() -> None:
    assert _hash(event_type="workhour.deleted") is None


def test_the_hash_never_changes_across_releases() -> None:
    # Ledgers keep these hashes; a new formula would turn every later redelivery into a conflict.
    assert _hash() == "sha256:778efbbfca3c5adf8f9ec4ab21734bf91b69957ea51a471137e1d47bd2c9efd9"
