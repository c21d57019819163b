"""Reference resolution: the right Severa records, clear errors, and few Severa calls."""

from __future__ import annotations

import pytest

from connector.errors import UnknownReference
from connector.flows.work_hours import parse_event
from connector.mapping.references import ReferenceResolver
from connector.mapping.table import MappingTable
from tests.factories import CASE, PHASE, USER, WORK_TYPE, event_json, severa


async def test_an_event_resolves_to_its_user_case_phase_and_work_type() -> None:
    refs = await ReferenceResolver(severa()).resolve(parse_event(event_json()))
    assert (refs.user, refs.case, refs.phase, refs.work_type) == (USER, CASE, PHASE, WORK_TYPE)


async def test_a_steady_stream_costs_no_lookups_after_the_first_event() -> None:
    fake = severa()
    resolver = ReferenceResolver(fake)
    for _ in range(50):
        await resolver.resolve(parse_event(event_json()))
    assert sum(fake.calls.values()) == 4  # user, case, phase, work types: once each


async def test_a_user_is_found_by_email_when_no_code_is_given() -> None:
    refs = await ReferenceResolver(severa()).resolve(
        parse_event(event_json(user_code=None, user_email="Jane.Doe@Example.com"))
    )
    assert refs.user == USER


async def test_misses_are_not_cached_so_a_fixed_reference_is_seen_at_once() -> None:
    fake = severa()
    resolver = ReferenceResolver(fake)
    with pytest.raises(UnknownReference):
        await resolver.resolve(parse_event(event_json(user_code="NEWBIE")))
    fake.users["u-9"] = USER.__class__(
        guid="u-9", code="NEWBIE", email=None, first_name=None, last_name=None, is_active=True
    )
    refs = await resolver.resolve(parse_event(event_json(user_code="NEWBIE")))
    assert refs.user.guid == "u-9"


async def test_the_mapping_table_translates_external_codes() -> None:
    table = MappingTable(
        users={"jane": "JDOE"}, cases={"77": 1001}, phases={"design": "DES"}, work_types={"dev": "DEV"}
    )
    refs = await ReferenceResolver(severa(), table).resolve(
        parse_event(event_json(user_code="jane", case_number=77, phase_code="design", work_type_code="dev"))
    )
    assert (refs.user, refs.case, refs.phase, refs.work_type) == (USER, CASE, PHASE, WORK_TYPE)


@pytest.mark.parametrize(
    ("overrides", "reason", "says"),
    [
        pytest.param(
            {"user_code": "NOBODY"}, "unknown_user", "no user with code 'NOBODY'", id="unknown user code"
        ),
        pytest.param(
            {"user_code": None, "user_email": "who@example.com"},
            "unknown_user",
            "e-mail",
            id="unknown e-mail",
        ),
        pytest.param({"user_code": "GONE"}, "unknown_user", "inactive", id="inactive user"),
        pytest.param({"case_number": 4242}, "unknown_case", "no case number 4242", id="unknown case"),
        pytest.param({"case_number": 1002}, "unknown_case", "closed", id="closed case"),
        pytest.param({"phase_code": "XXX"}, "unknown_phase", "no phase with code 'XXX'", id="unknown phase"),
        pytest.param({"work_type_code": "NOPE"}, "unknown_work_type", "no work type", id="unknown work type"),
        pytest.param({"work_type_code": "OLD"}, "unknown_work_type", "inactive", id="inactive work type"),
    ],
)
async def test_unknown_references_say_what_is_missing_and_how_to_fix_it(
    overrides: dict[str, object], reason: str, says: str
) -> None:
    with pytest.raises(UnknownReference) as caught:
        await ReferenceResolver(severa()).resolve(parse_event(event_json(**overrides)))
    assert caught.value.reason == reason
    assert says in caught.value.message


async def test_a_mapped_code_that_is_still_unknown_names_both_codes() -> None:
    resolver = ReferenceResolver(severa(), MappingTable(work_types={"dev": "DEVX"}))
    with pytest.raises(UnknownReference, match=r"'DEVX' \(mapped from 'dev'\)"):
        await resolver.resolve(parse_event(event_json(work_type_code="dev")))
