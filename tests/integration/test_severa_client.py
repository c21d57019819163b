"""SeveraClient against the fake Severa over real HTTP.

Every gateway method; every failure class with its category and ``outcome_unknown`` (checked
against what the fake's store shows really happened); key rotation through a key file; quota
headers and metrics; the key's secrecy on every error path; the contract on the wire (what we send
validates against the WSDL, what the fake answers too); limits; lifecycle; and the check command.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from lxml import etree
from prometheus_client import CollectorRegistry, generate_latest

from adapters.severa import client as client_module
from adapters.severa.check import CheckResult, run_checks
from adapters.severa.client import SeveraClient
from adapters.severa.config import SeveraClientConfig
from adapters.severa.contract import SOAP_ENV_NS, Operation, OperationRef, Ops, Reply
from adapters.severa.fake.faults import Phase as FaultPhase
from adapters.severa.fake.server import FakeSevera
from adapters.severa.wsdl.spec import Fault
from connector.errors import (
    Category,
    ConnectorError,
    PermanentError,
    SeveraAuthenticationFailed,
    SeveraQuotaExceeded,
    SeveraRejected,
    SeveraUnavailable,
    describe,
)
from connector.ports import HourEntry, NewHourEntry, SeveraGateway
from tests.unit.test_severa_contract import assert_valid_request, wsdl_schema

pytestmark = pytest.mark.integration

KEY = "KEY-must-not-leak-7f3a9c41e2"
NEW_KEY = "KEY-rotated-0b5d2e77aa90"  # same length: only content and inode tell them apart

USER = "6f1f1b0e-0000-4000-8000-000000000001"
INACTIVE_USER = "6f1f1b0e-0000-4000-8000-000000000002"
WORK_TYPE = "6f1f1b0e-0000-4000-8000-000000000010"
CASE = "6f1f1b0e-0000-4000-8000-000000000020"
PHASE = "6f1f1b0e-0000-4000-8000-000000000030"
DAY = dt.date(2025, 3, 4)

SEED: dict[str, Any] = {
    "users": [
        {
            "GUID": USER,
            "Code": "AIVI",
            "Email": "aino.virta@example.fi",
            "FirstName": "Aino",
            "LastName": "Virta",
            "IsActive": True,
        },
        {
            "GUID": INACTIVE_USER,
            "Code": "OLLI",
            "FirstName": "Olli",
            "LastName": "Lähtenyt",
            "IsActive": False,
        },
    ],
    "work_types": [{"GUID": WORK_TYPE, "Code": "DEV", "Name": "Development", "IsActive": True}],
    "cases": [{"GUID": CASE, "CaseNumber": 1042, "Name": "Website renewal", "IsClosed": False}],
    "phases": [
        {
            "GUID": PHASE,
            "CaseGUID": CASE,
            "Code": "BUILD",
            "Name": "Build",
            "IsCompleted": False,
            "IsLocked": False,
            "WorkTypeGUID": WORK_TYPE,
        }
    ],
    "invoice_statuses": [{"Name": "Sent", "IsActive": True}],
}


def make_config(url: str, **overrides: Any) -> SeveraClientConfig:
    fields: dict[str, Any] = {
        "url": url,
        "api_key": KEY,
        "timeout_seconds": 5.0,
        "connect_timeout_seconds": 2.0,
    }
    fields.update(overrides)
    fields["connect_timeout_seconds"] = min(fields["connect_timeout_seconds"], fields["timeout_seconds"])
    return SeveraClientConfig(**fields)


def new_entry(**changes: Any) -> NewHourEntry:
    fields: dict[str, Any] = {
        "user_guid": USER,
        "case_guid": CASE,
        "phase_guid": PHASE,
        "work_type_guid": WORK_TYPE,
        "event_date": DAY,
        "quantity": Decimal("1.5"),
        "description": "Sprint review",
        "is_billable": True,
    }
    fields.update(changes)
    return NewHourEntry(**fields)


@pytest.fixture
def fake(fake_severa: FakeSevera) -> FakeSevera:
    """The fake with our key and our organisation, whatever the shared fixture started it with."""
    fake_severa.set_api_key(KEY)
    fake_severa.load_seed(SEED)
    fake_severa.faults.clear()
    return fake_severa


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(fake: FakeSevera, registry: CollectorRegistry) -> AsyncIterator[SeveraClient]:
    async with SeveraClient(make_config(fake.url), registry=registry) as severa:
        yield severa


def stored_entries(fake: FakeSevera) -> list[dict[str, Any]]:
    return [dict(record) for record in fake.store.hour_entries]


# ---------------------------------------------------------------------------------------- gateway


class TestGateway:
    async def test_it_is_a_severa_gateway(self, client: SeveraClient) -> None:
        assert isinstance(client, SeveraGateway)

    async def test_get_version_needs_no_key(self, fake: FakeSevera, client: SeveraClient) -> None:
        fake.set_api_key("some-other-key")
        assert await client.get_version() == fake.store.version

    async def test_probe_with_a_good_key(self, fake: FakeSevera, client: SeveraClient) -> None:
        await client.probe()
        assert fake.calls["GetUserByCode"] == 1

    async def test_get_user_by_code(self, client: SeveraClient) -> None:
        user = await client.get_user_by_code("AIVI")
        assert user is not None
        assert (user.guid, user.code, user.email, user.first_name, user.last_name, user.is_active) == (
            USER,
            "AIVI",
            "aino.virta@example.fi",
            "Aino",
            "Virta",
            True,
        )
        assert await client.get_user_by_code("NOBODY") is None  # a NotFound fault

    async def test_get_all_users(self, client: SeveraClient) -> None:
        assert [user.guid for user in await client.get_all_users()] == [USER]
        everyone = await client.get_all_users(include_inactive=True)
        assert sorted(user.guid for user in everyone) == sorted([USER, INACTIVE_USER])
        assert {user.guid: user.is_active for user in everyone} == {USER: True, INACTIVE_USER: False}

    async def test_get_case_by_number(self, client: SeveraClient) -> None:
        case = await client.get_case_by_number(1042)
        assert case is not None
        assert (case.guid, case.number, case.name, case.is_closed) == (CASE, 1042, "Website renewal", False)
        assert await client.get_case_by_number(999_999) is None  # a nil result

    async def test_get_phases_by_code(self, client: SeveraClient) -> None:
        phases = await client.get_phases_by_code("BUILD", CASE)
        assert [(p.guid, p.case_guid, p.code, p.name, p.is_completed, p.is_locked) for p in phases] == [
            (PHASE, CASE, "BUILD", "Build", False, False)
        ]
        assert await client.get_phases_by_code("NOPE", CASE) == []  # a nil list

    async def test_get_all_work_types(self, client: SeveraClient) -> None:
        work_types = await client.get_all_work_types()
        assert [(w.guid, w.code, w.name, w.is_active) for w in work_types] == [
            (WORK_TYPE, "DEV", "Development", True)
        ]

    async def test_missing_hour_entries(self, client: SeveraClient) -> None:
        assert await client.get_hour_entry("6f1f1b0e-0000-4000-8000-0000000000ff") is None
        assert await client.get_hour_entries_by_user_and_date(USER, DAY, DAY) == []

    async def test_hour_entry_lifecycle(self, fake: FakeSevera, client: SeveraClient) -> None:
        start = dt.datetime(2025, 3, 4, 9, 0)
        added = await client.add_hour_entry(
            new_entry(start_time=start, end_time=start + dt.timedelta(minutes=90))
        )
        assert added.guid
        assert (added.user_guid, added.case_guid, added.phase_guid, added.work_type_guid) == (
            USER,
            CASE,
            PHASE,
            WORK_TYPE,
        )
        assert (added.event_date, added.quantity, added.description, added.is_billable) == (
            DAY,
            Decimal("1.5"),
            "Sprint review",
            True,
        )
        stored = fake.store.hour_entries[added.guid]
        assert stored["EventDate"].replace(tzinfo=None) == dt.datetime(2025, 3, 4)
        assert stored["Quantity"] == Decimal("1.5")

        assert await client.get_hour_entry(added.guid) == added
        assert await client.get_hour_entries_by_user_and_date(USER, DAY, DAY) == [added]
        assert (
            await client.get_hour_entries_by_user_and_date(
                USER, DAY + dt.timedelta(days=1), DAY.replace(day=28)
            )
            == []
        )

        changed = HourEntry(
            guid=added.guid,
            user_guid=USER,
            case_guid=CASE,
            phase_guid=PHASE,
            work_type_guid=WORK_TYPE,
            event_date=DAY,
            quantity=Decimal("2.25"),
            description=None,
            is_billable=False,
        )
        updated = await client.update_hour_entry(changed)
        assert updated == changed
        stored = fake.store.hour_entries[added.guid]
        assert (stored["Quantity"], stored["Description"], stored["IsBillable"]) == (
            Decimal("2.25"),
            None,
            False,
        )
        # Update replaces the whole entry in Severa: the members the record lacks survive the merge.
        assert stored["StartTime"] is not None
        assert stored["StartTime"].replace(tzinfo=None) == start

        assert await client.delete_hour_entry(added.guid) is True
        assert await client.get_hour_entry(added.guid) is None
        assert await client.delete_hour_entry(added.guid) is False

    async def test_update_of_an_unknown_entry_is_rejected_without_writing(
        self, fake: FakeSevera, client: SeveraClient
    ) -> None:
        ghost = HourEntry(
            "6f1f1b0e-0000-4000-8000-0000000000ee", USER, CASE, PHASE, None, DAY, Decimal(1), None, True
        )
        with pytest.raises(SeveraRejected) as info:
            await client.update_hour_entry(ghost)
        assert (info.value.fault, info.value.operation) == ("NotFound", "IHourEntry.UpdateHourEntry")
        assert fake.calls["UpdateHourEntry"] == 0

    async def test_the_escape_hatch_reaches_any_operation(self, client: SeveraClient) -> None:
        statuses = await client.call(Ops.GET_ALL_INVOICE_STATUSES)
        assert [status.Name for status in statuses] == ["Sent"]


# --------------------------------------------------------------------------------------- failures


ADD = "AddNewHourEntry"
READ = "GetUserByCode"


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2030, 1, 1, hour, minute, second, tzinfo=dt.UTC)


class TestHourEntriesChangedSince:
    @pytest.fixture
    def two_entries(self, fake: FakeSevera, client: SeveraClient) -> Callable[[], Awaitable[tuple[str, str]]]:
        """One entry typed by hand at 08:14:30 UTC, one added through the client at 08:15:10 UTC."""

        async def make() -> tuple[str, str]:
            fake.clock = lambda: at(8, 14, 30)
            typed = fake.enter_hour_entry(
                {
                    "UserGUID": USER,
                    "CaseGUID": CASE,
                    "PhaseGUID": PHASE,
                    "EventDate": "2025-03-04",
                    "Quantity": "1.5",
                    "Description": "Sprint review",
                }
            )
            fake.clock = lambda: at(8, 15, 10)
            added = await client.add_hour_entry(new_entry())
            return typed["GUID"], added.guid

        return make

    @pytest.mark.parametrize(
        ("since", "expect"),
        [
            pytest.param(at(8, 15, 59), {"added"}, id="later in the minute of the change finds it"),
            pytest.param(at(8, 14), {"typed", "added"}, id="an earlier minute finds both"),
            pytest.param(at(8, 16), set(), id="the next minute finds nothing"),
            pytest.param(
                dt.datetime(2030, 1, 1, 10, 15, 59, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                {"added"},
                id="another offset is the same instant in UTC",
            ),
        ],
    )
    async def test_entries_changed_at_or_after_the_minute(
        self,
        client: SeveraClient,
        two_entries: Callable[[], Awaitable[tuple[str, str]]],
        since: dt.datetime,
        expect: set[str],
    ) -> None:
        typed, added = await two_entries()
        names = {typed: "typed", added: "added"}
        found = await client.get_hour_entries_changed_since(since)
        assert {names[entry.guid] for entry in found} == expect
        assert all(isinstance(entry, HourEntry) for entry in found)

    async def test_an_entry_changed_by_hand_moves_forward(
        self, fake: FakeSevera, client: SeveraClient, two_entries: Callable[[], Awaitable[tuple[str, str]]]
    ) -> None:
        typed, _ = await two_entries()
        fake.clock = lambda: at(9, 0, 5)
        fake.edit_hour_entry(typed, {"Quantity": "2.25"})
        found = await client.get_hour_entries_changed_since(at(9, 0, 30))
        assert [(entry.guid, entry.quantity) for entry in found] == [(typed, Decimal("2.25"))]

    async def test_the_floored_minute_goes_out_as_utc(self, canned: CannedSevera) -> None:
        canned.body = _soap(
            "<GetHourEntriesChangedSinceResponse xmlns='http://soap.severa.com/'>"
            "<GetHourEntriesChangedSinceResult/></GetHourEntriesChangedSinceResponse>"
        )
        since = dt.datetime(2030, 1, 1, 10, 15, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        async with SeveraClient(make_config(canned.url), registry=None) as severa:
            assert await severa.get_hour_entries_changed_since(since) == []
        (request,) = canned.requests
        (start,) = etree.fromstring(request).iter("{*}startDate")
        assert start.text == "2030-01-01T08:15:00Z"

    async def test_a_naive_time_is_refused_before_anything_is_sent(
        self, fake: FakeSevera, client: SeveraClient
    ) -> None:
        with pytest.raises(ValueError, match="aware"):
            await client.get_hour_entries_changed_since(dt.datetime(2030, 1, 1, 8, 15))
        assert fake.calls["GetHourEntriesChangedSince"] == 0


async def add(client: SeveraClient) -> object:
    return await client.add_hour_entry(new_entry())


async def read(client: SeveraClient) -> object:
    return await client.get_user_by_code("AIVI")


class TestFaults:
    @pytest.mark.parametrize(
        ("fault", "operation", "call", "expected", "category", "outcome_unknown"),
        [
            pytest.param(
                Fault.VALIDATION,
                ADD,
                add,
                SeveraRejected,
                Category.PERMANENT,
                None,
                id="validation: rejected",
            ),
            pytest.param(
                Fault.NO_PERMISSION,
                ADD,
                add,
                SeveraRejected,
                Category.PERMANENT,
                None,
                id="no permission: rejected",
            ),
            pytest.param(
                Fault.NOT_FOUND,
                ADD,
                add,
                SeveraRejected,
                Category.PERMANENT,
                None,
                id="not found on a write: rejected",
            ),
            pytest.param(
                Fault.GENERAL_FAILURE,
                ADD,
                add,
                SeveraUnavailable,
                Category.TRANSIENT,
                True,
                id="general failure on a write: transient, outcome unknown",
            ),
            pytest.param(
                Fault.GENERAL_FAILURE,
                READ,
                read,
                SeveraUnavailable,
                Category.TRANSIENT,
                False,
                id="general failure on a read: transient",
            ),
            pytest.param(
                Fault.AUTHENTICATION_FAILURE,
                ADD,
                add,
                SeveraAuthenticationFailed,
                Category.SYSTEMIC,
                None,
                id="authentication failure: systemic",
            ),
            pytest.param(
                Fault.QUOTA_LIMIT_EXCEEDED,
                READ,
                read,
                SeveraQuotaExceeded,
                Category.SYSTEMIC,
                None,
                id="quota fault: systemic",
            ),
            pytest.param(
                Fault.TOS_NOT_APPROVED,
                READ,
                read,
                SeveraAuthenticationFailed,
                Category.SYSTEMIC,
                None,
                id="terms of service not approved: systemic",
            ),
        ],
    )
    async def test_typed_faults(
        self,
        fake: FakeSevera,
        client: SeveraClient,
        fault: Fault,
        operation: str,
        call: Callable[[SeveraClient], Awaitable[object]],
        expected: type[ConnectorError],
        category: Category,
        outcome_unknown: bool | None,
    ) -> None:
        fake.faults.soap_fault(fault, operation=operation, times=1)
        with pytest.raises(expected) as info:
            await call(client)
        error = info.value
        assert type(error) is expected
        assert error.category is category
        assert operation in error.message
        if outcome_unknown is not None:
            assert isinstance(error, SeveraUnavailable)
            assert error.outcome_unknown is outcome_unknown
        assert fake.calls[operation] == 1

    async def test_not_found_on_a_look_up_is_none(self, fake: FakeSevera, client: SeveraClient) -> None:
        fake.faults.soap_fault(Fault.NOT_FOUND, operation=READ, times=1)
        assert await read(client) is None

    async def test_severas_own_validation_names_the_problem(self, client: SeveraClient) -> None:
        with pytest.raises(SeveraRejected) as info:
            await client.add_hour_entry(new_entry(quantity=Decimal(1000)))
        message = info.value.message
        assert message.startswith("Severa rejected AddNewHourEntry: ")
        assert "Quantity" in message
        assert message.endswith("(ValidationException)")
        assert (info.value.fault, info.value.reason) == ("Validation", "severa_validation")

    async def test_a_wrong_key_is_systemic_and_names_the_setting(
        self, fake: FakeSevera, client: SeveraClient
    ) -> None:
        fake.set_api_key("regenerated-in-severa")
        with pytest.raises(SeveraAuthenticationFailed) as info:
            await client.probe()
        assert info.value.category is Category.SYSTEMIC
        assert "Severa refused the API key (AuthenticationFailureException)" in info.value.message
        assert "SEVERA_CONNECTOR_SEVERA__API_KEY" in info.value.message
        assert "a regenerated key invalidates the old one" in info.value.message

    async def test_a_key_refused_for_writes_only_is_systemic_and_names_the_right(
        self, fake: FakeSevera, client: SeveraClient
    ) -> None:
        """The probe and look-ups pass, AddNewHourEntry is refused: every write would fail alike."""
        fake.faults.soap_fault(Fault.AUTHENTICATION_FAILURE, operation=ADD)
        await client.probe()
        assert await client.get_user_by_code("AIVI") is not None
        with pytest.raises(SeveraAuthenticationFailed) as info:
            await client.add_hour_entry(new_entry())
        error = info.value
        assert error.category is Category.SYSTEMIC
        assert (error.reason, error.context["operation"]) == (
            "severa_authentication_failed",
            "IHourEntry.AddNewHourEntry",
        )
        assert "if look-ups still succeed, the key's user lacks the right to write HourEntry records" in (
            error.message
        )
        # What the fake answered names both fixes, and it reaches the message.
        assert (
            "Severa said: Access denied to IHourEntry.AddNewHourEntry: the API key's user lacks the right "
            "to write HourEntry records, or the API key was regenerated." in error.message
        )
        assert stored_entries(fake) == []

    async def test_a_megabyte_of_fault_text_is_cut(self, fake: FakeSevera, client: SeveraClient) -> None:
        fake.faults.soap_fault(Fault.VALIDATION, "Quantity is wrong. " * 55_189, operation=ADD, times=1)
        with pytest.raises(SeveraRejected) as info:
            await client.add_hour_entry(new_entry())
        message = info.value.message
        assert message.startswith("Severa rejected AddNewHourEntry: Quantity is wrong. ")
        assert len(message) < 1000
        assert "…[truncated]" in message

    async def test_an_exhausted_quota_is_systemic(self, fake: FakeSevera, client: SeveraClient) -> None:
        fake.quota.exhaust()
        with pytest.raises(SeveraQuotaExceeded) as info:
            await client.get_all_work_types()
        assert info.value.category is Category.SYSTEMIC
        assert "00:00 UTC" in info.value.message
        assert client.quota is not None
        assert client.quota.used > client.quota.quota
        assert client.quota.remaining == 0


class TestTransport:
    """``outcome_unknown`` is checked against the store: True exactly where the write may have landed."""

    @pytest.mark.parametrize(
        ("inject", "reason", "outcome_unknown", "landed"),
        [
            pytest.param(
                lambda fake: fake.faults.http_error(503, operation=ADD, times=1),
                "severa_http_error",
                False,
                False,
                id="503 before the write: not handled, outcome known",
            ),
            pytest.param(
                lambda fake: fake.faults.http_error(502, operation=ADD, times=1, phase=FaultPhase.AFTER),
                "severa_http_error",
                True,
                True,
                id="502 after the write: landed, outcome unknown",
            ),
            pytest.param(
                lambda fake: fake.faults.drop(operation=ADD, times=1),
                "severa_connection_lost",
                True,
                False,
                id="dropped before the write: cannot tell, outcome unknown",
            ),
            pytest.param(
                lambda fake: fake.faults.drop(operation=ADD, times=1, phase=FaultPhase.AFTER),
                "severa_connection_lost",
                True,
                True,
                id="dropped after the write: landed, outcome unknown",
            ),
            pytest.param(
                lambda fake: fake.faults.latency(1.0, operation=ADD, times=1, phase=FaultPhase.AFTER),
                "severa_timeout",
                True,
                True,
                id="answer later than the timeout: landed, outcome unknown",
            ),
        ],
    )
    async def test_add_hour_entry_without_answer(
        self,
        fake: FakeSevera,
        registry: CollectorRegistry,
        inject: Callable[[FakeSevera], object],
        reason: str,
        outcome_unknown: bool,
        landed: bool,
    ) -> None:
        inject(fake)
        async with SeveraClient(make_config(fake.url, timeout_seconds=0.3), registry=registry) as severa:
            with pytest.raises(SeveraUnavailable) as info:
                await severa.add_hour_entry(new_entry())
        error = info.value
        assert error.category is Category.TRANSIENT
        assert error.reason == reason
        assert error.outcome_unknown is outcome_unknown
        assert "AddNewHourEntry" in error.message
        assert bool(stored_entries(fake)) is landed

    async def test_a_slow_read_times_out_with_a_known_outcome(self, fake: FakeSevera) -> None:
        fake.faults.latency(1.0, operation=READ, times=1)
        async with SeveraClient(make_config(fake.url, timeout_seconds=0.3), registry=None) as severa:
            with pytest.raises(SeveraUnavailable) as info:
                await severa.get_user_by_code("AIVI")
        assert (info.value.reason, info.value.outcome_unknown) == ("severa_timeout", False)

    async def test_connection_refused_means_not_sent(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # Nobody listens on the port any more.
        async with SeveraClient(make_config(f"http://127.0.0.1:{port}/API.svc"), registry=None) as severa:
            with pytest.raises(SeveraUnavailable) as info:
                await severa.add_hour_entry(new_entry())
        assert (info.value.reason, info.value.outcome_unknown) == ("severa_connect_failed", False)
        assert "was not sent" in info.value.message


class CannedSevera:
    """A stand-in server answering every POST with one canned response (for what the fake won't send)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.content_type = "text/xml"
        self.truncate = False  # promise the whole body, send half of it, hang up
        self.requests: list[bytes] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> CannedSevera:
        app = web.Application()
        app.router.add_post("/API.svc", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/API.svc"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.read())
        if not self.truncate:
            return web.Response(status=self.status, body=self.body, content_type=self.content_type)
        response = web.StreamResponse(status=self.status)
        response.content_type = self.content_type
        response.content_length = len(self.body)
        await response.prepare(request)
        await response.write(self.body[: len(self.body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response


@pytest.fixture
async def canned() -> AsyncIterator[CannedSevera]:
    async with CannedSevera() as server:
        yield server


def _soap(body: str, header: str = "") -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP_ENV_NS}"><s:Header>{header}</s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


class TestUnreadableAnswers:
    @pytest.mark.parametrize(
        ("status", "body", "call", "reason", "outcome_unknown"),
        [
            pytest.param(200, b"OK", add, "severa_bad_reply", True, id="200 with text after a write"),
            pytest.param(
                200, b"<html>maintenance</html>", read, "severa_bad_reply", False, id="200 with HTML"
            ),
            pytest.param(
                200,
                b'<!DOCTYPE s:Envelope [<!ENTITY x "y">]>' + _soap("<x>&x;</x>"),
                read,
                "severa_bad_reply",
                False,
                id="a reply with a DTD is refused",
            ),
            pytest.param(
                200, _soap("<unexpected/>"), read, "severa_bad_reply", False, id="the wrong body element"
            ),
            pytest.param(
                502, b"<html>Bad Gateway</html>", add, "severa_http_error", True, id="502 page on a write"
            ),
            pytest.param(
                500, _soap(""), add, "severa_http_error", True, id="500 with an envelope but no fault"
            ),
        ],
    )
    async def test_unreadable(
        self,
        canned: CannedSevera,
        status: int,
        body: bytes,
        call: Callable[[SeveraClient], Awaitable[object]],
        reason: str,
        outcome_unknown: bool,
    ) -> None:
        canned.status, canned.body = status, body
        async with SeveraClient(make_config(canned.url), registry=None) as severa:
            with pytest.raises(SeveraUnavailable) as info:
                await call(severa)
        assert (info.value.reason, info.value.outcome_unknown) == (reason, outcome_unknown)

    async def test_a_connection_dropped_mid_answer_leaves_a_write_unknown(self, canned: CannedSevera) -> None:
        canned.body, canned.truncate = _soap("<AddNewHourEntryResponse/>" + " " * 4000), True
        async with SeveraClient(make_config(canned.url), registry=None) as severa:
            with pytest.raises(SeveraUnavailable) as info:
                await severa.add_hour_entry(new_entry())
        assert (info.value.reason, info.value.outcome_unknown) == ("severa_connection_lost", True)

    async def test_a_forbidden_proxy_is_systemic(self, canned: CannedSevera) -> None:
        canned.status, canned.body, canned.content_type = 403, b"Forbidden", "text/plain"
        async with SeveraClient(make_config(canned.url), registry=None) as severa:
            with pytest.raises(SeveraAuthenticationFailed, match="HTTP 403"):
                await severa.probe()

    async def test_an_oversized_answer_is_refused(self, fake: FakeSevera) -> None:
        async with SeveraClient(make_config(fake.url, max_response_bytes=1024), registry=None) as severa:
            with pytest.raises(SeveraUnavailable, match="larger than the") as info:
                await severa.get_all_users(include_inactive=True)
        assert info.value.reason == "severa_bad_reply"

    async def test_a_request_that_cannot_be_built_is_permanent_and_not_sent(
        self, fake: FakeSevera, client: SeveraClient
    ) -> None:
        with pytest.raises(PermanentError) as info:
            await client.call(Ops.GET_USER_BY_CODE, userCode="X", bogus=1)
        assert info.value.reason == "severa_request_invalid"
        assert fake.calls[READ] == 0


# ------------------------------------------------------------------------------------ key rotation


def k8s_secret(directory: Path, key: str, generation: int) -> Path:
    """Write a Secret the way kubelet does: a timestamped dir, ``..data`` flipped atomically."""
    data = directory / f"..2025_0{generation}"
    data.mkdir()
    (data / "api-key").write_text(key + "\n")
    link = directory / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, directory / "..data")
    if not (directory / "api-key").is_symlink():
        (directory / "api-key").symlink_to("..data/api-key")
    return directory / "api-key"


class TestKeyRotation:
    async def test_a_rotated_key_file_is_used_without_a_new_client(
        self, fake: FakeSevera, tmp_path: Path
    ) -> None:
        key_file = k8s_secret(tmp_path, KEY, 1)
        config = make_config(fake.url, api_key=None, api_key_file=key_file)
        async with SeveraClient(config, registry=None) as severa:
            await severa.probe()
            fake.set_api_key(NEW_KEY)  # regenerated in Severa: the old key stops at once
            k8s_secret(tmp_path, NEW_KEY, 2)  # and the Secret is updated
            await severa.probe()
            assert fake.calls["GetUserByCode"] == 2

    async def test_every_key_in_use_is_announced_for_log_redaction(
        self, fake: FakeSevera, tmp_path: Path
    ) -> None:
        key_file = k8s_secret(tmp_path, KEY, 1)
        announced: list[str] = []
        config = make_config(fake.url, api_key=None, api_key_file=key_file)
        async with SeveraClient(config, registry=None, on_key_loaded=announced.append) as severa:
            assert announced == [KEY]  # before anything could be logged
            await severa.probe()
            fake.set_api_key(NEW_KEY)
            k8s_secret(tmp_path, NEW_KEY, 2)
            await severa.probe()
            await severa.probe()
        assert announced == [KEY, NEW_KEY]

    async def test_calls_fail_until_the_file_follows_then_recover(
        self, fake: FakeSevera, tmp_path: Path
    ) -> None:
        key_file = tmp_path / "api-key"
        key_file.write_text(KEY)
        config = make_config(fake.url, api_key=None, api_key_file=key_file)
        async with SeveraClient(config, registry=None) as severa:
            fake.set_api_key(NEW_KEY)
            with pytest.raises(SeveraAuthenticationFailed) as info:
                await severa.probe()
            assert str(key_file) in info.value.message
            replacement = tmp_path / "api-key.new"
            replacement.write_text(NEW_KEY)
            os.replace(replacement, key_file)
            await severa.probe()


# -------------------------------------------------------------------------------- quota & metrics


class TestQuotaAndMetrics:
    async def test_the_quota_reading_follows_every_answer(
        self, fake: FakeSevera, client: SeveraClient, registry: CollectorRegistry
    ) -> None:
        assert client.quota is None
        fake.quota.set(limit=5000, used=1200)
        await client.get_all_work_types()
        assert client.quota is not None
        assert (client.quota.quota, client.quota.used, client.quota.remaining) == (5000, 1201, 3799)
        assert await client.get_user_by_code("NOBODY") is None  # faults carry the headers too
        assert client.quota.used == 1202
        assert registry.get_sample_value("severa_quota_limit_calls") == 5000
        assert registry.get_sample_value("severa_quota_used_calls") == 1202

    async def test_the_quota_is_absent_until_severa_reported_it(
        self, fake: FakeSevera, canned: CannedSevera, registry: CollectorRegistry
    ) -> None:
        """0/0 would read as a spent quota; no series at all reads as "not known yet"."""

        def exported() -> list[str]:
            return [
                line for line in generate_latest(registry).decode().splitlines() if "severa_quota" in line
            ]

        canned.body = _soap(
            "<GetVersionResponse xmlns='http://soap.severa.com/'><GetVersionResult>1"
            "</GetVersionResult></GetVersionResponse>"
        )
        async with SeveraClient(make_config(canned.url), registry=registry) as severa:
            assert exported() == []
            await severa.get_version()  # an answer without the quota headers
            assert exported() == []
            assert registry.get_sample_value("severa_quota_limit_calls") is None
        fake.quota.set(limit=5000, used=10)
        async with SeveraClient(make_config(fake.url), registry=registry) as severa:
            await severa.get_version()
        assert registry.get_sample_value("severa_quota_limit_calls") == 5000
        assert registry.get_sample_value("severa_quota_used_calls") == 11

    async def test_calls_are_counted_by_operation_and_outcome(
        self, fake: FakeSevera, client: SeveraClient, registry: CollectorRegistry
    ) -> None:
        await client.get_all_work_types()
        await client.get_user_by_code("NOBODY")
        fake.faults.soap_fault(Fault.VALIDATION, operation=ADD, times=1)
        with pytest.raises(SeveraRejected):
            await client.add_hour_entry(new_entry())

        def calls(operation: str, outcome: str) -> float | None:
            return registry.get_sample_value(
                "severa_calls_total", {"operation": operation, "outcome": outcome}
            )

        assert calls("IWorkType.GetAllWorkTypes", "ok") == 1
        assert calls("IUser.GetUserByCode", "not_found") == 1
        assert calls("IHourEntry.AddNewHourEntry", "severa_validation") == 1
        count = registry.get_sample_value(
            "severa_call_duration_seconds_count", {"operation": "IWorkType.GetAllWorkTypes"}
        )
        assert count == 1

    async def test_two_clients_share_one_registry(
        self, fake: FakeSevera, registry: CollectorRegistry
    ) -> None:
        async with (
            SeveraClient(make_config(fake.url), registry=registry) as one,
            SeveraClient(make_config(fake.url), registry=registry) as two,
        ):
            await one.get_all_work_types()
            await two.get_all_work_types()
        assert (
            registry.get_sample_value(
                "severa_calls_total", {"operation": "IWorkType.GetAllWorkTypes", "outcome": "ok"}
            )
            == 2
        )


# --------------------------------------------------------------------------------------- secrecy


class TestSecrecy:
    async def test_the_key_never_appears_in_errors_logs_or_metrics(
        self,
        fake: FakeSevera,
        registry: CollectorRegistry,
        canned: CannedSevera,
        caplog: pytest.LogCaptureFixture,
        tmp_path: Path,
    ) -> None:
        caplog.set_level(logging.DEBUG)  # zeep, aiohttp and everything else at their chattiest
        for name in ("zeep", "zeep.transports", "zeep.wsdl", "aiohttp"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        errors: list[BaseException] = []

        async def provoke(call: Awaitable[object]) -> None:
            try:
                await call
            except ConnectorError as exc:
                errors.append(exc)
            else:
                pytest.fail("the call was expected to fail")

        with structlog.testing.capture_logs() as logs:
            key_file = tmp_path / "key"
            key_file.write_text(KEY)
            config = make_config(fake.url, api_key=None, api_key_file=key_file, timeout_seconds=0.3)
            async with SeveraClient(config, registry=registry) as severa:
                await severa.probe()  # a success is logged too
                for fault in Fault:
                    fake.faults.soap_fault(fault, operation=ADD, times=1)
                    await provoke(severa.add_hour_entry(new_entry()))
                # A server that echoes the key back in its fault text.
                fake.faults.soap_fault(Fault.VALIDATION, f"The key {KEY} is odd", operation=ADD, times=1)
                await provoke(severa.add_hour_entry(new_entry()))
                fake.faults.soap_fault(Fault.GENERAL_FAILURE, f"Boom for {KEY}", operation=READ, times=1)
                await provoke(severa.get_user_by_code("AIVI"))
                await provoke(severa.add_hour_entry(new_entry(quantity=Decimal(5000))))
                fake.faults.http_error(503, operation=ADD, times=1)
                await provoke(severa.add_hour_entry(new_entry()))
                fake.faults.drop(operation=ADD, times=1, phase=FaultPhase.AFTER)
                await provoke(severa.add_hour_entry(new_entry()))
                fake.faults.latency(1.0, operation=ADD, times=1)
                await provoke(severa.add_hour_entry(new_entry()))
                await provoke(severa.call(Ops.GET_USER_BY_CODE, bogus=True))
                fake.quota.exhaust()
                await provoke(severa.probe())
                fake.quota.reset()
                fake.set_api_key(NEW_KEY)
                await provoke(severa.probe())
                repr_of_client = repr(severa)
            await provoke(severa.probe())  # closed

            for body in (b"garbage", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'):
                canned.body = body
                async with SeveraClient(make_config(canned.url), registry=None) as other:
                    await provoke(other.add_hour_entry(new_entry()))
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            async with SeveraClient(make_config(f"http://127.0.0.1:{port}/x"), registry=None) as other:
                await provoke(other.probe())

        assert len(errors) == len(Fault) + 13
        assert {type(error) for error in errors} >= {
            SeveraRejected,
            SeveraUnavailable,
            SeveraAuthenticationFailed,
            SeveraQuotaExceeded,
            PermanentError,
        }
        for error in errors:
            rendered = [
                str(error),
                repr(error),
                repr(describe(error)),
                "".join(traceback.format_exception(error)),  # the whole chain of causes
            ]
            for text in rendered:
                assert KEY not in text, f"{type(error).__name__}: key leaked"
                assert NEW_KEY not in text
        assert any("[redacted]" in str(error) for error in errors)
        assert logs, "the client logged nothing: this test would prove nothing"
        assert KEY not in repr(logs)
        # zeep and aiohttp at DEBUG: zeep's transport (which logs whole envelopes) is never used.
        assert KEY not in caplog.text
        assert KEY not in repr_of_client
        assert KEY.encode() not in generate_latest(registry)


# -------------------------------------------------------------------------------------- contract


class TestContractOnTheWire:
    async def test_every_request_validates_and_every_answer_matches_the_wsdl(
        self, fake: FakeSevera, client: SeveraClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sent: list[tuple[OperationRef, bytes]] = []
        answers: list[Reply] = []
        build, parse = Operation.build, client_module.parse_reply

        def spy_build(self: Operation, params: Any, api_key: str | None) -> bytes:
            envelope = build(self, params, api_key)
            sent.append((self.ref, envelope))
            return envelope

        def spy_parse(content: bytes) -> Reply:
            reply = parse(content)
            answers.append(reply)
            return reply

        monkeypatch.setattr(Operation, "build", spy_build)
        monkeypatch.setattr(client_module, "parse_reply", spy_parse)

        await client.get_version()
        await client.probe()
        await client.get_user_by_code("AIVI")
        await client.get_all_users()
        await client.get_case_by_number(1042)
        await client.get_phases_by_code("BUILD", CASE)
        await client.get_all_work_types()
        added = await client.add_hour_entry(new_entry(start_time=dt.datetime(2025, 3, 4, 9), end_time=None))
        await client.get_hour_entry(added.guid)
        await client.get_hour_entries_by_user_and_date(USER, DAY, DAY)
        await client.update_hour_entry(
            HourEntry(added.guid, USER, CASE, PHASE, WORK_TYPE, DAY, Decimal(3), "changed", False)
        )
        await client.delete_hour_entry(added.guid)

        gateway_ops = {
            Ops.GET_VERSION,
            Ops.GET_USER_BY_CODE,
            Ops.GET_ALL_USERS,
            Ops.GET_CASE_BY_NUMBER,
            Ops.GET_PHASES_BY_CODE,
            Ops.GET_ALL_WORK_TYPES,
            Ops.ADD_HOUR_ENTRY,
            Ops.GET_HOUR_ENTRY_BY_GUID,
            Ops.GET_HOUR_ENTRIES_BY_DATE_AND_USER,
            Ops.UPDATE_HOUR_ENTRY,
            Ops.DELETE_HOUR_ENTRY,
        }
        assert {ref for ref, _ in sent} == gateway_ops
        for ref, envelope in sent:
            assert_valid_request(envelope, ref)
        schema = wsdl_schema()
        assert len(answers) == len(sent)
        for reply in answers:
            assert reply.fault is None or reply.fault.detail_type == "NotFoundException"
            assert (reply.quota, reply.used_quota) != (None, None)
            body = reply.envelope.find(f"{{{SOAP_ENV_NS}}}Body")
            assert body is not None
            assert schema.validate(etree.ElementTree(body[0])) or reply.fault is not None, schema.error_log


# -------------------------------------------------------------------------------- limits & life


class TestLimits:
    async def _elapsed(self, fake: FakeSevera, calls: int, **config: Any) -> float:
        async with SeveraClient(make_config(fake.url, **config), registry=None) as severa:
            started = time.perf_counter()
            await asyncio.gather(*(severa.get_all_work_types() for _ in range(calls)))
            return time.perf_counter() - started

    async def test_concurrency_is_bounded(self, fake: FakeSevera) -> None:
        fake.faults.latency(0.2, operation="GetAllWorkTypes")
        bounded = await self._elapsed(fake, 6, max_concurrency=2)
        unbounded = await self._elapsed(fake, 6, max_concurrency=6)
        assert bounded >= 0.55  # three waves of two
        assert unbounded < bounded - 0.2
        assert fake.calls["GetAllWorkTypes"] == 12

    async def test_the_rate_is_limited(self, fake: FakeSevera) -> None:
        elapsed = await self._elapsed(fake, 8, rate_limit_per_second=5.0)
        assert elapsed >= 0.5  # a burst of five, then three more at 5/s


class TestLifecycle:
    async def test_close_is_idempotent_and_final(self, fake: FakeSevera) -> None:
        severa = SeveraClient(make_config(fake.url), registry=None)
        await severa.get_all_work_types()  # opens on first use
        await severa.aclose()
        await severa.aclose()
        assert severa.closed
        with pytest.raises(SeveraUnavailable) as info:
            await severa.get_all_work_types()
        assert (info.value.reason, info.value.outcome_unknown) == ("severa_client_closed", False)
        assert fake.calls["GetAllWorkTypes"] == 1
        with pytest.raises(RuntimeError, match="closed"):
            async with severa:
                pass

    async def test_closing_an_unused_client(self, fake: FakeSevera) -> None:
        severa = SeveraClient(make_config(fake.url), registry=None)
        await severa.aclose()
        assert severa.closed


# ------------------------------------------------------------------------------------------ check


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


class TestCheck:
    async def test_all_ok_with_a_good_key(self, fake: FakeSevera) -> None:
        results = await run_checks(make_config(fake.url))
        assert [r.name for r in results] == [
            "WSDL contract loaded",
            "Endpoint reachable",
            "API key accepted",
            "Can read users",
            "Can read cases",
            "Can read hour entries",
            "Can read invoices",
            "Quota left",
        ]
        failed = [r for r in results if not r.ok]
        assert failed == []
        assert all(r.fix is None and not r.skipped for r in results)
        assert by_name(results)["Can read users"].detail == "Active users visible to the key's user: 1."

    async def test_a_wrong_key_names_the_setting_and_skips_what_depends_on_it(self, fake: FakeSevera) -> None:
        fake.set_api_key("regenerated-in-severa")
        results = by_name(await run_checks(make_config(fake.url)))
        assert results["Endpoint reachable"].ok
        key = results["API key accepted"]
        assert not key.ok
        assert key.fix is not None
        assert "SEVERA_CONNECTOR_SEVERA__API_KEY" in key.fix
        for name in ("Can read users", "Can read cases", "Can read hour entries", "Can read invoices"):
            assert results[name].skipped
            assert not results[name].ok
            assert "because the key was refused" in results[name].detail
        assert results["Quota left"].ok  # the refusal still carried the quota headers
        assert KEY not in repr(results)

    async def test_an_unreachable_endpoint(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        results = await run_checks(make_config(f"http://127.0.0.1:{port}/API.svc"))
        assert [r.ok for r in results] == [True] + [False] * 7
        assert results[1].fix is not None
        assert "SEVERA_CONNECTOR_SEVERA__URL" in results[1].fix
        assert all(r.skipped and "endpoint did not answer" in r.detail for r in results[2:])

    async def test_an_unreadable_key_file(self, fake: FakeSevera, tmp_path: Path) -> None:
        results = by_name(
            await run_checks(make_config(fake.url, api_key=None, api_key_file=tmp_path / "absent"))
        )
        assert results["Endpoint reachable"].ok
        assert not results["API key accepted"].ok
        assert results["API key accepted"].fix is not None
        assert "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE" in results["API key accepted"].fix
        assert results["Can read users"].skipped

    async def test_almost_no_quota_left_fails(self, fake: FakeSevera) -> None:
        fake.quota.set(limit=1000, used=993)
        results = by_name(await run_checks(make_config(fake.url)))
        quota = results["Quota left"]
        assert not quota.ok
        assert quota.fix is not None
        assert "of 1000 calls left" in quota.detail
