"""The fake Severa over real HTTP: contract, behaviour, quota and fault injection.

Most tests send envelopes built by zeep from the shipped WSDL through aiohttp (``severa_soap``),
so they can see the status, headers and raw faults; a few use a plain synchronous
``zeep.Client`` built from the fake's WSDL URL, as any integrator would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import requests
import structlog
import zeep
import zeep.exceptions
from lxml import etree

from adapters.severa.fake import DEMO_SEED_PATH, FakeSevera, FaultRule, HourEntryRefused, Phase, SeedError
from adapters.severa.fake.handlers import HANDLERS, NULL_WHEN_EMPTY
from adapters.severa.fake.soap import NS_SOAP_ENV, NS_WCF_ADDRESSING_NONE, NS_WCF_DISPATCHER, NS_XSI
from adapters.severa.wsdl.spec import DEFAULT_ADDRESS, NS_SERVICE, SPEC, Fault
from tests.fixtures.fake_severa import FAKE_SEVERA_TEST_KEY, SoapCaller, SoapReply, password_header

pytestmark = pytest.mark.integration

# From adapters/severa/fake/demo_seed.yaml
BU_HEL = "10000000-0000-4000-8000-000000000001"
AINO = "20000000-0000-4000-8000-000000000001"
MIKKO = "20000000-0000-4000-8000-000000000002"
PEKKA_INACTIVE = "20000000-0000-4000-8000-000000000006"
WT_DEV = "30000000-0000-4000-8000-000000000001"
WT_DESIGN = "30000000-0000-4000-8000-000000000002"
ACME = "40000000-0000-4000-8000-000000000001"
CASE_ACME = "50000000-0000-4000-8000-000000000001"
CASE_GLOBEX = "50000000-0000-4000-8000-000000000002"
PHASE_DEV_ACME = "60000000-0000-4000-8000-000000000102"
PHASE_FRONTEND = "60000000-0000-4000-8000-000000000103"
PHASE_LAUNCH_LOCKED = "60000000-0000-4000-8000-000000000105"
PHASE_DEV_GLOBEX = "60000000-0000-4000-8000-000000000202"
ENTRY_INVOICED = "80000000-0000-4000-8000-000000000001"
ENTRY_MIKKO = "80000000-0000-4000-8000-000000000002"
INVOICE_PAID = "70000000-0000-4000-8000-000000000001"

NOON = dt.datetime(2025, 6, 1, 12, 0, 30, tzinfo=dt.UTC)


def new_entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "UserGUID": AINO,
        "CaseGUID": CASE_ACME,
        "PhaseGUID": PHASE_FRONTEND,
        "WorkTypeGUID": WT_DEV,
        "EventDate": dt.datetime(2025, 6, 3),
        "Quantity": Decimal("7.5"),
        "Description": "Checkout page",
        "IsBillable": True,
    }
    entry.update(overrides)
    return entry


def assert_fault(reply: SoapReply, fault: Fault, caller: SoapCaller, *, code: str = "s:Client") -> str:
    """Assert *reply* is the typed fault WCF would send; return its description."""
    assert reply.status == 500
    assert reply.content_type.startswith("text/xml")
    info = reply.fault
    assert info is not None, reply.body
    assert info.code == code
    assert info.exception == fault.exception_name
    assert info.detail is not None
    assert etree.QName(info.detail).namespace == "http://schemas.datacontract.org/2004/07/Severa.API"
    description = info.detail_text("Description")
    assert description == info.message
    assert info.detail_text("Source")
    if fault.in_wsdl:  # the detail must parse with the WSDL's own element
        parsed = caller.fake.codec.parse_fault_detail(info.detail)
        assert parsed.Description == description
    assert description is not None
    return description


def nil_result(reply: SoapReply, operation: str) -> bool:
    """Whether the result element is ``xsi:nil`` on the wire (WCF's null)."""
    assert reply.envelope is not None
    result = reply.envelope.find(
        f"{{{NS_SOAP_ENV}}}Body/{{{NS_SERVICE}}}{operation}Response/{{{NS_SERVICE}}}{operation}Result"
    )
    assert result is not None
    return result.get(f"{{{NS_XSI}}}nil") == "true"


def admin(fake: FakeSevera, path: str) -> str:
    return f"{fake.admin_url}{path}"


# --------------------------------------------------------------------------------------------------


class TestWsdlAndPlainZeepClients:
    @pytest.mark.parametrize("suffix", ["/WSDL", "?wsdl", "?singleWsdl"])
    async def test_the_wsdl_is_served_with_the_fakes_own_address(
        self, fake_severa: FakeSevera, suffix: str
    ) -> None:
        async with aiohttp.ClientSession() as http, http.get(fake_severa.url + suffix) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/xml")
            body = await response.read()
        root = etree.fromstring(body)
        locations = {
            node.get("location") for node in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
        }
        assert locations == {fake_severa.url}
        assert DEFAULT_ADDRESS.encode() not in body

    async def test_a_plain_get_shows_the_service_page(self, fake_severa: FakeSevera) -> None:
        async with aiohttp.ClientSession() as http, http.get(fake_severa.url) as response:
            assert response.status == 200
            assert "text/html" in response.headers["Content-Type"]

    async def test_a_plain_zeep_client_built_from_the_wsdl_url_works(self, fake_severa: FakeSevera) -> None:
        def scenario() -> dict[str, Any]:
            client = zeep.Client(fake_severa.wsdl_url)  # type: ignore[no-untyped-call]
            key = [password_header(FAKE_SEVERA_TEST_KEY)]
            seen: dict[str, Any] = {"version": client.bind("API", "Severa.API.IAPI").GetVersion()}
            users = client.bind("API", "Severa.API.IUser")
            seen["user"] = users.GetUserByCode("AIVI", _soapheaders=key)
            with pytest.raises(zeep.exceptions.Fault) as wrong_key:
                users.GetUserByCode("AIVI", _soapheaders=[password_header("nope")])
            seen["wrong_key"] = wrong_key.value
            hours = client.bind("API", "Severa.API.IHourEntry")
            seen["added"] = hours.AddNewHourEntry(new_entry(), _soapheaders=key)
            with pytest.raises(zeep.exceptions.Fault) as too_many:
                hours.AddNewHourEntry(new_entry(Quantity=Decimal(1000)), _soapheaders=key)
            seen["too_many"] = too_many.value
            fake_severa.faults.http_error(503, times=1)
            with pytest.raises(zeep.exceptions.TransportError) as unavailable:
                users.GetUserByCode("AIVI", _soapheaders=key)
            seen["unavailable"] = unavailable.value
            fake_severa.faults.drop(times=1)
            with pytest.raises(requests.exceptions.ConnectionError):
                users.GetUserByCode("AIVI", _soapheaders=key)
            return seen

        seen = await asyncio.to_thread(scenario)
        assert seen["version"] == "fake-severa 1.0"
        assert seen["user"].GUID == AINO
        assert seen["wrong_key"].code == "s:Client"
        assert etree.QName(seen["wrong_key"].detail[0]).localname == "AuthenticationFailureException"
        assert seen["added"].GUID in fake_severa.store.hour_entries
        assert "Quantity" in seen["too_many"].message
        assert etree.QName(seen["too_many"].detail[0]).localname == "ValidationException"
        assert seen["unavailable"].status_code == 503


class TestAuthentication:
    @pytest.mark.parametrize("operation", ["GetVersion", "GetEntitySchemaVersion"])
    async def test_the_version_operations_need_no_key(self, severa_soap: SoapCaller, operation: str) -> None:
        reply = await severa_soap.call(operation, api_key=None)
        assert reply.status == 200
        assert reply.result

    @pytest.mark.parametrize(
        ("key", "says"),
        [
            pytest.param(None, "no API key", id="no key header at all"),
            pytest.param("wrong-key", "not valid", id="a wrong key"),
            pytest.param("", "not valid", id="an empty key"),
        ],
    )
    async def test_other_operations_refuse_a_missing_or_wrong_key(
        self, severa_soap: SoapCaller, key: str | None, says: str
    ) -> None:
        reply = await severa_soap.call("GetUserByCode", api_key=key, userCode="AIVI")
        assert says in assert_fault(reply, Fault.AUTHENTICATION_FAILURE, severa_soap)
        assert reply.quota is not None  # faults carry the quota headers too

    async def test_a_rotated_key_takes_effect_at_once(self, severa_soap: SoapCaller) -> None:
        severa_soap.fake.set_api_key("rotated-key-42")
        old = await severa_soap.call("GetUserByCode", userCode="AIVI")
        new = await severa_soap.call("GetUserByCode", api_key="rotated-key-42", userCode="AIVI")
        assert_fault(old, Fault.AUTHENTICATION_FAILURE, severa_soap)
        assert new.status == 200

    async def test_the_key_can_be_rotated_over_the_admin_api(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        async with severa_soap.session.post(
            admin(fake, "/api-key"), json={"api_key": "via-admin"}
        ) as response:
            assert response.status == 204
        assert (await severa_soap.call("GetAllWorkTypes", api_key="via-admin")).status == 200
        assert (await severa_soap.call("GetAllWorkTypes")).status == 500

    async def test_the_key_is_never_logged(self, severa_soap: SoapCaller) -> None:
        with structlog.testing.capture_logs() as logs:
            severa_soap.fake.set_api_key("secret-rotated-key")
            await severa_soap.call("GetAllWorkTypes", api_key="secret-rotated-key")
            await severa_soap.call("GetAllWorkTypes", api_key="another-secret")
        assert any(entry["event"] == "fake_severa.api_key_changed" for entry in logs)
        text = repr(logs)
        assert "secret-rotated-key" not in text
        assert "another-secret" not in text
        assert FAKE_SEVERA_TEST_KEY not in text


class TestSeededLookups:
    @pytest.mark.parametrize(
        ("operation", "arguments", "check"),
        [
            pytest.param(
                "GetUserByCode",
                {"userCode": "AIVI"},
                lambda r: r.GUID == AINO and r.Email == "aino.virtanen@example.com",
                id="a user is found by code",
            ),
            pytest.param(
                "GetUserByCode", {"userCode": "aivi"}, lambda r: r.GUID == AINO, id="user codes ignore case"
            ),
            pytest.param(
                "GetUserByGUID", {"userGUID": MIKKO}, lambda r: r.Code == "MIKO", id="a user by GUID"
            ),
            pytest.param(
                "GetUserByName",
                {"firstName": "Aino", "lastName": "Virtanen"},
                lambda r: r.GUID == AINO,
                id="a user by name",
            ),
            pytest.param(
                "GetAllUsers",
                {"businessUnitGUID": None, "includeInactive": False},
                lambda r: {u.Code for u in r} == {"AIVI", "MIKO", "SONI", "JUMA", "LAHA"},
                id="all active users",
            ),
            pytest.param(
                "GetAllUsers",
                {"businessUnitGUID": BU_HEL, "includeInactive": True},
                lambda r: {u.Code for u in r} == {"AIVI", "MIKO", "SONI", "PELA"},
                id="users of one business unit including inactive ones",
            ),
            pytest.param(
                "GetCaseByNumber",
                {"caseNumber": 10001},
                lambda r: r.GUID == CASE_ACME and r.AccountName == "Acme Oy" and r.CaseNumber == 10001,
                id="a case by number",
            ),
            pytest.param(
                "GetCaseByGUID", {"caseGuid": CASE_GLOBEX}, lambda r: r.CaseNumber == 10002, id="a case"
            ),
            pytest.param(
                "GetPhasesByCode",
                {"phaseCode": "DEV", "caseGUID": CASE_GLOBEX},
                lambda r: [p.GUID for p in r] == [PHASE_DEV_GLOBEX],
                id="phases by code are filtered by case",
            ),
            pytest.param(
                "GetPhasesByCode",
                {"phaseCode": "dev", "caseGUID": None},
                lambda r: len(r) == 3,
                id="phases by code without a case span all cases",
            ),
            pytest.param(
                "GetPhasesByCaseGUID",
                {"caseGUID": CASE_ACME},
                lambda r: [p.Code for p in r] == ["DESIGN", "DEV", "DEV-FE", "DEV-BE", "LAUNCH"],
                id="the phases of a case",
            ),
            pytest.param(
                "GetAllWorkTypes",
                {},
                lambda r: {w.Code for w in r} == {"DEV", "DES", "PM", "MEET"},
                id="all work types",
            ),
            pytest.param(
                "GetWorkTypesByPhaseGUID",
                {"phaseGUID": PHASE_FRONTEND},
                lambda r: len(r) == 4,
                id="work types of a phase",
            ),
            pytest.param(
                "GetHourEntriesByDateAndUserGUID",
                {
                    "businessUnitGUID": None,
                    "startdate": dt.datetime(2025, 6, 1),
                    "enddate": dt.datetime(2025, 6, 30),
                    "userGUID": MIKKO,
                },
                lambda r: [e.GUID for e in r] == [ENTRY_MIKKO],
                id="hour entries of a user in a date range",
            ),
            pytest.param(
                "GetHourEntryByGUID",
                {"hourEntryGUID": ENTRY_INVOICED},
                lambda r: r.IsReadOnly is True and r.Quantity == Decimal("7.5"),
                id="an hour entry by GUID",
            ),
            pytest.param(
                "GetAccountByNumber",
                {"accountNumber": 1001},
                lambda r: r.GUID == ACME,
                id="an account by number",
            ),
            pytest.param(
                "GetAccountByVatNumber",
                {"vatNumber": "2000002-4"},
                lambda r: r.Number == 1002,
                id="by VAT number",
            ),
            pytest.param(
                "GetCustomerByGUID",
                {"accountGuid": ACME},
                lambda r: r.VatNumber == "2000001-6" and r.eInvoiceAddress == "003720000016",
                id="a customer by GUID",
            ),
            pytest.param(
                "GetAllCustomers",
                {"options": 0, "startFromIndex": 1, "count": 1},
                lambda r: [c.Number for c in r] == [1002],
                id="customers are paged",
            ),
            pytest.param(
                "GetAllAccounts",
                {"options": ["None"], "startFromIndex": 0, "count": 500},
                lambda r: len(r) == 4,
                id="all active accounts, one placeholder AccountTiny each",
            ),
            pytest.param(
                "GetInvoiceByNumber",
                {"invoiceNumber": 20248, "businessUnitGUID": None},
                lambda r: r.GUID == INVOICE_PAID and r.InvoiceRows.InvoiceRow[0].rowAmount == Decimal(5271),
                id="an invoice by number with its rows",
            ),
            pytest.param(
                "GetInvoicesByStatus",
                {"businessUnitGUID": None, "status": "Sent", "options": 0, "maxInvoices": None},
                lambda r: [i.Number for i in r] == [20249, 20250, 20251, 20252],
                id="invoices by status",
            ),
            pytest.param(
                "GetAllInvoiceStatuses",
                {},
                lambda r: [s.Name for s in r] == ["Draft", "Sent", "Transferred", "Paid"],
                id="invoice statuses in sort order",
            ),
            pytest.param(
                "GetInvoicePdfByInvoiceGUID",
                {"invoiceGuid": INVOICE_PAID, "getAttachmentOnly": ["All"]},
                lambda r: r.startswith(b"%PDF-") and b"Invoice 20248" in r,
                id="an invoice PDF",
            ),
            pytest.param(
                "GetBusinessUnitByCode",
                {"businessUnitCode": "hel"},
                lambda r: r.GUID == BU_HEL,
                id="a business unit",
            ),
            pytest.param(
                "GetHourEntryPhasesByUserGUID",
                {"userGUID": AINO},
                lambda r: (
                    any(
                        node.Name == "Development"
                        and [c.Name for c in node.ChildPhases.PhaseTreeNode] == ["Frontend", "Backend"]
                        for node in r
                    )
                    and all(node.Name != "Launch" for node in r)
                ),
                id="bookable phase trees leave locked phases out",
            ),
        ],
    )
    async def test_seeded_data_is_found(
        self, severa_soap: SoapCaller, operation: str, arguments: dict[str, Any], check: Callable[[Any], bool]
    ) -> None:
        reply = await severa_soap.call(operation, **arguments)
        assert reply.status == 200, reply.body
        assert check(reply.result), reply.result

    @pytest.mark.parametrize(
        ("operation", "arguments"),
        [
            pytest.param("GetUserByCode", {"userCode": "NOBODY"}, id="GetUserByCode declares NotFound"),
            pytest.param("GetUserByGUID", {"userGUID": "missing"}, id="GetUserByGUID declares NotFound"),
            pytest.param("GetHourEntryByGUID", {"hourEntryGUID": "missing"}, id="GetHourEntryByGUID too"),
            pytest.param("GetPhaseByGUID", {"phaseGUID": "missing"}, id="GetPhaseByGUID too"),
            pytest.param(
                "GetWorkTypesByPhaseGUID", {"phaseGUID": "missing"}, id="an unknown phase's work types"
            ),
        ],
    )
    async def test_a_missing_entity_is_a_not_found_fault_where_declared(
        self, severa_soap: SoapCaller, operation: str, arguments: dict[str, Any]
    ) -> None:
        reply = await severa_soap.call(operation, **arguments)
        assert "was not found" in assert_fault(reply, Fault.NOT_FOUND, severa_soap)

    @pytest.mark.parametrize(
        ("operation", "arguments"),
        [
            pytest.param("GetCaseByNumber", {"caseNumber": 99999}, id="GetCaseByNumber declares no NotFound"),
            pytest.param("GetAccountByNumber", {"accountNumber": 4242}, id="GetAccountByNumber neither"),
            pytest.param(
                "GetBusinessUnitByCode", {"businessUnitCode": "XXX"}, id="GetBusinessUnitByCode neither"
            ),
        ],
    )
    async def test_a_missing_entity_is_null_where_no_not_found_is_declared(
        self, severa_soap: SoapCaller, operation: str, arguments: dict[str, Any]
    ) -> None:
        reply = await severa_soap.call(operation, **arguments)
        assert reply.status == 200
        assert nil_result(reply, operation)
        # zeep 4.3 turns a nil complex result into an object with every member None:
        assert reply.result.GUID is None

    async def test_some_empty_lists_are_null_and_others_are_empty(self, severa_soap: SoapCaller) -> None:
        null = await severa_soap.call("GetPhasesByCode", phaseCode="NOPE", caseGUID=CASE_ACME)
        empty = await severa_soap.call("GetPhasesByCaseGUID", caseGUID="no-such-case")
        assert "GetPhasesByCode" in NULL_WHEN_EMPTY
        assert nil_result(null, "GetPhasesByCode")
        assert not nil_result(empty, "GetPhasesByCaseGUID")
        # ...and zeep 4.3 reports them the other way round:
        assert null.result == []
        assert empty.result is None


class TestHourEntries:
    async def test_add_get_update_delete(self, severa_soap: SoapCaller) -> None:
        store = severa_soap.fake.store.hour_entries
        before = len(store)

        added = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry(GUID="client-chosen"))
        assert added.status == 200, added.body
        guid = added.result.GUID
        assert guid
        assert guid != "client-chosen"  # Severa assigns the GUID
        assert len(store) == before + 1
        assert store[guid]["Quantity"] == Decimal("7.5")
        assert added.result.AccountGUID == ACME  # derived from the case
        assert added.result.IsApproved is False
        assert added.result.IsReadOnly is False

        fetched = await severa_soap.call("GetHourEntryByGUID", hourEntryGUID=guid)
        assert fetched.result.Description == "Checkout page"
        assert fetched.result.EventDate == dt.datetime(2025, 6, 3)

        changed = new_entry(GUID=guid, Quantity=Decimal("2.25"), Description=None, IsApproved=True)
        updated = await severa_soap.call("UpdateHourEntry", hourEntryInfo=changed)
        assert updated.status == 200, updated.body
        assert updated.result.Quantity == Decimal("2.25")
        assert updated.result.Description is None  # an update replaces the whole entry
        assert updated.result.IsApproved is False  # Severa's to set, not the caller's
        assert store[guid]["Quantity"] == Decimal("2.25")

        deleted = await severa_soap.call("DeleteHourEntry", hourEntryGUID=guid)
        assert deleted.result is True
        assert guid not in store
        again = await severa_soap.call("DeleteHourEntry", hourEntryGUID=guid)
        assert again.result is False
        gone = await severa_soap.call("GetHourEntryByGUID", hourEntryGUID=guid)
        assert_fault(gone, Fault.NOT_FOUND, severa_soap)

    async def test_the_work_type_defaults_to_the_phases(self, severa_soap: SoapCaller) -> None:
        reply = await severa_soap.call(
            "AddNewHourEntry", hourEntryInfo=new_entry(PhaseGUID=PHASE_DEV_ACME, WorkTypeGUID=None)
        )
        assert reply.result.WorkTypeGUID == WT_DEV

    @pytest.mark.parametrize(
        ("quantity", "accepted"),
        [
            pytest.param(Decimal(1000), False, id="1000 hours is refused"),
            pytest.param(Decimal("999.01"), False, id="just over 999 is refused"),
            pytest.param(Decimal(0), False, id="zero is refused"),
            pytest.param(Decimal(-1), False, id="negative is refused"),
            pytest.param(Decimal(999), True, id="999 is the maximum"),
            pytest.param(Decimal("0.25"), True, id="a quarter hour is fine"),
        ],
    )
    async def test_quantity_must_be_positive_and_at_most_999(
        self, severa_soap: SoapCaller, quantity: Decimal, accepted: bool
    ) -> None:
        reply = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry(Quantity=quantity))
        if accepted:
            assert reply.status == 200, reply.body
        else:
            assert "Quantity" in assert_fault(reply, Fault.VALIDATION, severa_soap)

    @pytest.mark.parametrize(
        ("overrides", "says"),
        [
            pytest.param({"UserGUID": "nobody"}, "UserGUID: user 'nobody' does not exist", id="unknown user"),
            pytest.param({"UserGUID": PEKKA_INACTIVE}, "is inactive", id="inactive user"),
            pytest.param({"CaseGUID": "nocase"}, "CaseGUID: case 'nocase' does not exist", id="unknown case"),
            pytest.param(
                {"PhaseGUID": "nophase"}, "PhaseGUID: phase 'nophase' does not exist", id="unknown phase"
            ),
            pytest.param(
                {"PhaseGUID": PHASE_DEV_GLOBEX}, "does not belong to case", id="phase of another case"
            ),
            pytest.param({"PhaseGUID": PHASE_LAUNCH_LOCKED}, "is locked", id="locked phase"),
            pytest.param(
                {"WorkTypeGUID": "nowt"}, "WorkTypeGUID: work type 'nowt' does not exist", id="bad work type"
            ),
            pytest.param({"EventDate": None}, "EventDate is required", id="no event date"),
        ],
    )
    async def test_references_are_validated(
        self, severa_soap: SoapCaller, overrides: dict[str, Any], says: str
    ) -> None:
        before = len(severa_soap.fake.store.hour_entries)
        reply = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry(**overrides))
        assert says in assert_fault(reply, Fault.VALIDATION, severa_soap)
        assert len(severa_soap.fake.store.hour_entries) == before

    async def test_a_closed_case_takes_no_hours(self, severa_soap: SoapCaller) -> None:
        cases = severa_soap.fake.store.cases
        cases.put({**cases[CASE_ACME], "IsClosed": True}, at=NOON)
        reply = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry())
        assert "is closed" in assert_fault(reply, Fault.VALIDATION, severa_soap)

    @pytest.mark.parametrize("operation", ["UpdateHourEntry", "DeleteHourEntry"])
    async def test_a_read_only_entry_cannot_be_changed(self, severa_soap: SoapCaller, operation: str) -> None:
        if operation == "UpdateHourEntry":
            reply = await severa_soap.call(operation, hourEntryInfo=new_entry(GUID=ENTRY_INVOICED))
        else:
            reply = await severa_soap.call(operation, hourEntryGUID=ENTRY_INVOICED)
        assert "read-only" in assert_fault(reply, Fault.NO_PERMISSION, severa_soap)
        assert ENTRY_INVOICED in severa_soap.fake.store.hour_entries

    async def test_updating_an_unknown_entry_is_a_validation_fault(self, severa_soap: SoapCaller) -> None:
        reply = await severa_soap.call("UpdateHourEntry", hourEntryInfo=new_entry(GUID="no-such-entry"))
        assert "does not exist" in assert_fault(reply, Fault.VALIDATION, severa_soap)


class TestChangedSince:
    @pytest.fixture
    def users_at_noon(self, fake_severa: FakeSevera) -> FakeSevera:
        """Every user last changed on New Year's Day, except Aino at 12:00:30 UTC on 1 June 2025."""
        users = fake_severa.store.users
        for user in users:
            users.touch(user["GUID"], at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), created=True)
        users.touch(AINO, at=NOON)
        return fake_severa

    @pytest.mark.parametrize(
        ("start", "found"),
        [
            pytest.param(
                dt.datetime(2025, 6, 1, 12, 0, 45, tzinfo=dt.UTC), True, id="later in the same minute"
            ),
            pytest.param(
                dt.datetime(2025, 6, 1, 12, 0, 59, 999000, tzinfo=dt.UTC), True, id="end of the minute"
            ),
            pytest.param(dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC), True, id="start of the minute"),
            pytest.param(dt.datetime(2025, 6, 1, 11, 59, 59, tzinfo=dt.UTC), True, id="before the change"),
            pytest.param(dt.datetime(2025, 6, 1, 12, 1, tzinfo=dt.UTC), False, id="the next minute"),
            pytest.param(dt.datetime(2025, 6, 1, 12, 0, 50), True, id="a naive time is UTC"),
            pytest.param(
                dt.datetime(2025, 6, 1, 15, 0, 50, tzinfo=dt.timezone(dt.timedelta(hours=3))),
                True,
                id="an offset time is converted to UTC",
            ),
        ],
    )
    async def test_start_is_matched_to_the_minute(
        self, severa_soap: SoapCaller, users_at_noon: FakeSevera, start: dt.datetime, found: bool
    ) -> None:
        reply = await severa_soap.call(
            "GetUsersChangedSince", businessUnitGUID=None, startDateTime=start, options=0
        )
        assert reply.status == 200
        guids = [user.GUID for user in reply.result or []]
        assert guids == ([AINO] if found else [])

    async def test_new_only_looks_at_creation_time(
        self, severa_soap: SoapCaller, users_at_noon: FakeSevera
    ) -> None:
        start = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
        changed = await severa_soap.call(
            "GetUsersChangedSince", businessUnitGUID=None, startDateTime=start, options=0
        )
        new_only = await severa_soap.call(
            "GetUsersChangedSince", businessUnitGUID=None, startDateTime=start, options=1
        )
        assert [user.GUID for user in changed.result] == [AINO]
        assert not new_only.result

    async def test_inactive_entities_need_include_inactive(
        self, severa_soap: SoapCaller, users_at_noon: FakeSevera
    ) -> None:
        users_at_noon.store.users.touch(PEKKA_INACTIVE, at=NOON)
        start = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
        default = await severa_soap.call(
            "GetUsersChangedSince", businessUnitGUID=None, startDateTime=start, options=0
        )
        inactive = await severa_soap.call(
            "GetUsersChangedSince", businessUnitGUID=None, startDateTime=start, options=2
        )
        assert {user.GUID for user in default.result} == {AINO}
        assert {user.GUID for user in inactive.result} == {AINO, PEKKA_INACTIVE}

    async def test_writes_move_the_change_time(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        fake.clock = lambda: dt.datetime(2030, 1, 1, 8, 15, 10, tzinfo=dt.UTC)
        added = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry())
        since = await severa_soap.call(
            "GetHourEntriesChangedSince", startDate=dt.datetime(2030, 1, 1, 8, 15, 59)
        )
        assert [entry.GUID for entry in since.result] == [added.result.GUID]


class TestHourEntriesByHand:
    """Entries a person types into Severa: no API call, but the same change time ChangedSince reads."""

    TYPED: dict[str, Any] = {
        "UserGUID": AINO,
        "CaseGUID": CASE_ACME,
        "PhaseGUID": PHASE_FRONTEND,
        "EventDate": "2025-06-03",
        "Quantity": "7.5",
        "Description": "Typed in by hand",
    }

    @staticmethod
    async def changed_since(caller: SoapCaller, start: dt.datetime) -> list[str]:
        reply = await caller.call("GetHourEntriesChangedSince", startDate=start)
        assert reply.status == 200
        return [entry.GUID for entry in reply.result or []]

    async def test_entered_edited_and_deleted_through_the_admin_api(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        http = severa_soap.session
        fake.clock = lambda: dt.datetime(2030, 1, 1, 9, 30, 5, tzinfo=dt.UTC)
        async with http.post(admin(fake, "/hour-entries"), json=self.TYPED) as response:
            assert response.status == 201
            typed = await response.json()
        guid = typed["GUID"]
        assert (typed["Quantity"], typed["WorkTypeGUID"]) == ("7.5", WT_DEV)  # filled in as Add does
        assert typed["AccountGUID"] == ACME
        assert fake.store.hour_entries.changed_at(guid) == dt.datetime(2030, 1, 1, 9, 30, 5, tzinfo=dt.UTC)
        assert await self.changed_since(severa_soap, dt.datetime(2030, 1, 1, 9, 30, 59)) == [guid]
        assert fake.calls["AddNewHourEntry"] == 0

        fake.clock = lambda: dt.datetime(2030, 1, 1, 10, 0, 1, tzinfo=dt.UTC)
        async with http.patch(admin(fake, f"/hour-entries/{guid}"), json={"Quantity": "3"}) as response:
            assert response.status == 200
            edited = await response.json()
        assert (edited["Quantity"], edited["Description"]) == ("3", "Typed in by hand")
        assert await self.changed_since(severa_soap, dt.datetime(2030, 1, 1, 10, 0)) == [guid]
        assert await self.changed_since(severa_soap, dt.datetime(2030, 1, 1, 10, 1)) == []

        async with http.delete(admin(fake, f"/hour-entries/{guid}")) as response:
            assert response.status == 204
        async with http.delete(admin(fake, f"/hour-entries/{guid}")) as response:
            assert response.status == 404
        assert guid not in await self.changed_since(severa_soap, dt.datetime(2020, 1, 1))

    @pytest.mark.parametrize(
        ("method", "path", "body", "status", "error"),
        [
            pytest.param(
                "POST",
                "/hour-entries",
                {**TYPED, "Quantity": "1000"},
                400,
                "Validation: Quantity must be greater than 0",
                id="an entry Severa would refuse",
            ),
            pytest.param(
                "POST", "/hour-entries", {**TYPED, "Hours": 1}, 400, "no member(s)", id="an unknown member"
            ),
            pytest.param(
                "PATCH",
                f"/hour-entries/{ENTRY_MIKKO}",
                {"Mood": "good"},
                400,
                "no member",
                id="unknown member",
            ),
            pytest.param(
                "PATCH",
                "/hour-entries/no-such-entry",
                {"Quantity": "1"},
                404,
                "no hour entry",
                id="unknown entry",
            ),
            pytest.param(
                "PATCH",
                f"/hour-entries/{ENTRY_INVOICED}",
                {"Quantity": "1"},
                400,
                "read-only",
                id="an invoiced entry cannot be edited",
            ),
        ],
    )
    async def test_what_severa_would_refuse_is_refused(
        self, severa_soap: SoapCaller, method: str, path: str, body: dict[str, Any], status: int, error: str
    ) -> None:
        fake = severa_soap.fake
        before = {entry["GUID"]: dict(entry) for entry in fake.store.hour_entries}
        async with severa_soap.session.request(method, admin(fake, path), json=body) as response:
            assert response.status == status
            assert error in (await response.json())["error"]
        assert {entry["GUID"]: dict(entry) for entry in fake.store.hour_entries} == before

    async def test_in_process_too(self, fake_severa: FakeSevera) -> None:
        fake_severa.clock = lambda: dt.datetime(2030, 2, 1, 12, 0, tzinfo=dt.UTC)
        typed = fake_severa.enter_hour_entry(self.TYPED)
        assert fake_severa.store.hour_entries.changed_at(typed["GUID"]) == fake_severa.clock()
        with pytest.raises(HourEntryRefused, match="Validation"):
            fake_severa.enter_hour_entry({**self.TYPED, "Quantity": "0"})
        assert fake_severa.remove_hour_entry(typed["GUID"]) is True
        assert fake_severa.remove_hour_entry(typed["GUID"]) is False


class TestQuota:
    async def test_every_answer_carries_the_quota_headers_and_every_call_counts(
        self, severa_soap: SoapCaller
    ) -> None:
        first = await severa_soap.call("GetVersion", api_key=None)
        fault = await severa_soap.call("GetUserByCode", userCode="NOBODY")
        third = await severa_soap.call("GetAllWorkTypes")
        assert first.quota is not None
        assert fault.quota is not None
        assert third.quota is not None
        quota, used = first.quota
        assert quota == 100_000
        assert [fault.quota[1], third.quota[1]] == [used + 1, used + 2]

    async def test_over_quota_every_call_faults_until_the_utc_day_turns(
        self, severa_soap: SoapCaller
    ) -> None:
        fake = severa_soap.fake
        today = dt.datetime(2025, 6, 1, 23, 59, tzinfo=dt.UTC)
        fake.clock = lambda: today
        fake.quota.set(limit=2, used=0)
        assert (await severa_soap.call("GetAllWorkTypes")).status == 200
        assert (await severa_soap.call("GetAllWorkTypes")).status == 200
        over = await severa_soap.call("GetAllWorkTypes")
        assert assert_fault(over, Fault.QUOTA_LIMIT_EXCEEDED, severa_soap) == "Quota limit reached"
        assert over.quota == (2, 3)
        version = await severa_soap.call("GetVersion", api_key=None)
        assert_fault(version, Fault.QUOTA_LIMIT_EXCEEDED, severa_soap)

        fake.clock = lambda: today + dt.timedelta(minutes=1)  # 00:00 UTC the next day
        after_midnight = await severa_soap.call("GetAllWorkTypes")
        assert after_midnight.status == 200
        assert after_midnight.quota == (2, 1)

    async def test_the_quota_can_be_exhausted_over_the_admin_api(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        async with severa_soap.session.post(admin(fake, "/quota"), json={"exhaust": True}) as response:
            assert response.status == 200
            assert (await response.json())["used"] == 100_000
        assert_fault(await severa_soap.call("GetAllWorkTypes"), Fault.QUOTA_LIMIT_EXCEEDED, severa_soap)


class TestFaultInjection:
    async def test_latency_delays_the_answer(self, severa_soap: SoapCaller) -> None:
        rule = severa_soap.fake.faults.latency(0.3, operation="GetAllWorkTypes")
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await severa_soap.call("GetAllWorkTypes")
        assert reply.status == 200
        assert loop.time() - started >= 0.3
        await severa_soap.call("GetAllUsers", businessUnitGUID=None, includeInactive=False)
        assert rule.fired == 1  # only the named operation is delayed

    async def test_latency_longer_than_the_client_timeout_times_the_client_out(
        self, severa_soap: SoapCaller
    ) -> None:
        severa_soap.fake.faults.latency(1.0, operation="GetAllWorkTypes")
        with pytest.raises(asyncio.TimeoutError):
            await severa_soap.call("GetAllWorkTypes", timeout=0.2)

    async def test_latency_after_the_write_loses_the_answer_but_not_the_entry(
        self, severa_soap: SoapCaller
    ) -> None:
        store = severa_soap.fake.store.hour_entries
        before = len(store)
        severa_soap.fake.faults.latency(1.0, operation="AddNewHourEntry", phase=Phase.AFTER)
        with pytest.raises(asyncio.TimeoutError):
            await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry(), timeout=0.3)
        assert len(store) == before + 1  # the outcome the client could not see

    @pytest.mark.parametrize(
        ("phase", "lands"),
        [
            pytest.param(Phase.BEFORE, False, id="before the write"),
            pytest.param(Phase.AFTER, True, id="after it"),
        ],
    )
    async def test_http_503_with_a_non_xml_body(
        self, severa_soap: SoapCaller, phase: Phase, lands: bool
    ) -> None:
        store = severa_soap.fake.store.hour_entries
        before = len(store)
        severa_soap.fake.faults.http_error(503, operation="AddNewHourEntry", phase=phase)
        reply = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry())
        assert reply.status == 503
        assert reply.content_type.startswith("text/plain")
        assert reply.envelope is None
        with pytest.raises(etree.XMLSyntaxError):
            etree.fromstring(reply.body)
        assert len(store) == before + (1 if lands else 0)
        assert severa_soap.fake.calls["AddNewHourEntry"] == 1

    @pytest.mark.parametrize(
        ("phase", "lands"),
        [
            pytest.param(Phase.BEFORE, False, id="before the write"),
            pytest.param(Phase.AFTER, True, id="after it"),
        ],
    )
    async def test_a_dropped_connection(self, severa_soap: SoapCaller, phase: Phase, lands: bool) -> None:
        store = severa_soap.fake.store.hour_entries
        before = len(store)
        severa_soap.fake.faults.drop(operation="AddNewHourEntry", phase=phase, times=1)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry())
        assert len(store) == before + (1 if lands else 0)
        assert severa_soap.fake.calls["AddNewHourEntry"] == 1
        assert (await severa_soap.call("GetAllWorkTypes")).status == 200  # the service lives on

    @pytest.mark.parametrize(
        ("fault", "code"),
        [
            pytest.param(Fault.VALIDATION, "s:Client", id="ValidationException"),
            pytest.param(Fault.NOT_FOUND, "s:Client", id="NotFoundException"),
            pytest.param(Fault.NO_PERMISSION, "s:Client", id="NoPermissionException"),
            pytest.param(Fault.AUTHENTICATION_FAILURE, "s:Client", id="AuthenticationFailureException"),
            pytest.param(
                Fault.GENERAL_FAILURE, "s:Server", id="GeneralFailureException is the server's fault"
            ),
            pytest.param(Fault.QUOTA_LIMIT_EXCEEDED, "s:Client", id="QuotaLimitExceededException"),
        ],
    )
    async def test_typed_soap_faults(self, severa_soap: SoapCaller, fault: Fault, code: str) -> None:
        severa_soap.fake.faults.soap_fault(fault, "injected for a test", operation="GetAllWorkTypes")
        reply = await severa_soap.call("GetAllWorkTypes")
        assert assert_fault(reply, fault, severa_soap, code=code) == "injected for a test"

    async def test_the_exception_name_is_accepted_too(self, severa_soap: SoapCaller) -> None:
        rule = severa_soap.fake.faults.soap_fault("ValidationException", operation="GetAllWorkTypes")
        assert rule.fault is Fault.VALIDATION

    async def test_wrong_key_and_quota_exhausted_look_like_the_real_thing(
        self, severa_soap: SoapCaller
    ) -> None:
        faults = severa_soap.fake.faults
        faults.wrong_key(operation="GetAllWorkTypes", times=1)
        faults.quota_exhausted(operation="GetAllWorkTypes", times=1)
        wrong_key = await severa_soap.call("GetAllWorkTypes")
        quota = await severa_soap.call("GetAllWorkTypes")
        assert "not valid" in assert_fault(wrong_key, Fault.AUTHENTICATION_FAILURE, severa_soap)
        assert assert_fault(quota, Fault.QUOTA_LIMIT_EXCEEDED, severa_soap) == "Quota limit reached"
        assert (await severa_soap.call("GetAllWorkTypes")).status == 200

    async def test_a_key_refused_on_one_operation_says_what_to_fix(self, severa_soap: SoapCaller) -> None:
        """Only AddNewHourEntry is refused: the description names the missing right and the other cause."""
        severa_soap.fake.faults.soap_fault(Fault.AUTHENTICATION_FAILURE, operation="AddNewHourEntry")
        assert (await severa_soap.call("GetUserByCode", userCode="AIVI")).status == 200
        refused = await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry())
        assert assert_fault(refused, Fault.AUTHENTICATION_FAILURE, severa_soap) == (
            "Access denied to IHourEntry.AddNewHourEntry: the API key's user lacks the right to write "
            "HourEntry records, or the API key was regenerated."
        )
        assert severa_soap.fake.calls["AddNewHourEntry"] == 1
        assert (await severa_soap.call("GetAllWorkTypes")).status == 200

    async def test_the_next_n_calls(self, severa_soap: SoapCaller) -> None:
        rule = severa_soap.fake.faults.http_error(503, times=2)
        statuses = [(await severa_soap.call("GetAllWorkTypes")).status for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert rule.fired == 2
        assert severa_soap.fake.faults.rules == []

    async def test_a_probability_is_reproducible_from_the_seed(self, severa_soap: SoapCaller) -> None:
        faults = severa_soap.fake.faults

        async def pattern() -> list[int]:
            faults.clear()
            faults.reseed()
            faults.http_error(503, probability=0.5)
            return [(await severa_soap.call("GetAllWorkTypes")).status for _ in range(40)]

        first, second = await pattern(), await pattern()
        assert first == second
        assert 5 < first.count(503) < 35
        assert set(first) == {200, 503}

    @pytest.mark.parametrize("probability", [0.0, 1.0])
    async def test_probability_zero_never_and_one_always(
        self, severa_soap: SoapCaller, probability: float
    ) -> None:
        severa_soap.fake.faults.http_error(503, probability=probability)
        statuses = {(await severa_soap.call("GetAllWorkTypes")).status for _ in range(5)}
        assert statuses == ({503} if probability else {200})

    async def test_latency_stacks_with_an_error(self, severa_soap: SoapCaller) -> None:
        faults = severa_soap.fake.faults
        faults.latency(0.2, times=1)
        faults.http_error(502, times=1)
        started = asyncio.get_running_loop().time()
        reply = await severa_soap.call("GetAllWorkTypes")
        assert reply.status == 502
        assert asyncio.get_running_loop().time() - started >= 0.2

    @pytest.mark.parametrize(
        ("rule", "message"),
        [
            pytest.param(
                {"kind": "drop", "operation": "NoSuchOperation"}, "unknown operation", id="unknown op"
            ),
            pytest.param({"kind": "drop", "probability": 2}, "probability", id="probability above one"),
            pytest.param({"kind": "drop", "times": 0}, "times", id="zero times"),
            pytest.param({"kind": "latency"}, "seconds", id="latency without seconds"),
            pytest.param({"kind": "soap_fault", "fault": "Oops"}, "unknown fault", id="unknown fault"),
            pytest.param({"kind": "explode"}, "explode", id="unknown kind"),
            pytest.param({"kind": "drop", "id": 7}, "unknown field", id="a field that is not settable"),
        ],
    )
    def test_impossible_rules_are_refused(self, rule: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            FaultRule.from_json(rule)


class TestAdminApi:
    @pytest.mark.parametrize(
        ("rule", "expect"),
        [
            pytest.param({"kind": "http_error", "status": 503, "times": 1}, 503, id="a 503"),
            pytest.param({"kind": "http_error", "status": 500, "body": "boom"}, 500, id="a 500"),
            pytest.param({"kind": "drop", "times": 1}, "drop", id="a dropped connection"),
            pytest.param(
                {"kind": "soap_fault", "fault": "NotFound", "times": 1}, Fault.NOT_FOUND, id="NotFound"
            ),
            pytest.param(
                {"kind": "soap_fault", "fault": "ValidationException"},
                Fault.VALIDATION,
                id="ValidationException",
            ),
            pytest.param({"kind": "wrong_key"}, Fault.AUTHENTICATION_FAILURE, id="a wrong key"),
            pytest.param({"kind": "quota_exhausted"}, Fault.QUOTA_LIMIT_EXCEEDED, id="quota exhausted"),
            pytest.param(
                {"kind": "drop", "operation": "AddNewHourEntry"},
                200,
                id="a rule for another operation stays away",
            ),
        ],
    )
    async def test_every_fault_kind_can_be_injected_over_http(
        self, severa_soap: SoapCaller, rule: dict[str, Any], expect: int | str | Fault
    ) -> None:
        fake = severa_soap.fake
        async with severa_soap.session.post(admin(fake, "/faults"), json=rule) as response:
            assert response.status == 201
            created = await response.json()
        assert created["id"] > 0
        assert created["kind"] == rule["kind"]
        if expect == "drop":
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await severa_soap.call("GetAllWorkTypes")
        elif isinstance(expect, Fault):
            assert_fault(await severa_soap.call("GetAllWorkTypes"), expect, severa_soap)
        else:
            assert (await severa_soap.call("GetAllWorkTypes")).status == expect

    async def test_latency_over_http(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        rule = {"kind": "latency", "seconds": 0.25, "operation": "GetAllWorkTypes", "times": 1}
        async with severa_soap.session.post(admin(fake, "/faults"), json=rule) as response:
            assert response.status == 201
        started = asyncio.get_running_loop().time()
        assert (await severa_soap.call("GetAllWorkTypes")).status == 200
        assert asyncio.get_running_loop().time() - started >= 0.25

    async def test_next_n_and_probability_over_http(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        rules = [
            {"kind": "http_error", "status": 502, "times": 2, "operation": "GetAllWorkTypes"},
            {"kind": "http_error", "status": 503, "probability": 0.5, "operation": "GetAllUsers"},
        ]
        async with severa_soap.session.post(admin(fake, "/faults"), json=rules) as response:
            assert response.status == 201
            assert [rule["times"] for rule in await response.json()] == [2, None]
        statuses = [(await severa_soap.call("GetAllWorkTypes")).status for _ in range(3)]
        assert statuses == [502, 502, 200]
        mixed = {
            (await severa_soap.call("GetAllUsers", businessUnitGUID=None, includeInactive=False)).status
            for _ in range(30)
        }
        assert mixed == {200, 503}

    async def test_rules_can_be_listed_and_removed(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        http = severa_soap.session
        first = fake.faults.drop(operation="GetVersion")
        fake.faults.http_error(503, operation="GetVersion")
        async with http.get(admin(fake, "/faults")) as response:
            assert [rule["kind"] for rule in await response.json()] == ["drop", "http_error"]
        async with http.delete(admin(fake, f"/faults/{first.id}")) as response:
            assert response.status == 204
        async with http.delete(admin(fake, f"/faults/{first.id}")) as response:
            assert response.status == 404
        assert [rule.kind.value for rule in fake.faults.rules] == ["http_error"]
        async with http.delete(admin(fake, "/faults")) as response:
            assert response.status == 204
        assert fake.faults.rules == []

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"{not json", id="not JSON"),
            pytest.param(b'{"kind": "drop", "operation": "Nope"}', id="an unknown operation"),
            pytest.param(
                b'[{"kind": "drop"}, {"kind": "drop", "probability": -1}]', id="one bad rule in a list"
            ),
            pytest.param(b'"drop"', id="not an object"),
        ],
    )
    async def test_bad_rules_are_a_400_and_add_nothing(self, severa_soap: SoapCaller, body: bytes) -> None:
        fake = severa_soap.fake
        async with severa_soap.session.post(
            admin(fake, "/faults"), data=body, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"]
        assert fake.faults.rules == []

    async def test_state_reset_and_call_counters(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        http = severa_soap.session
        await severa_soap.call("AddNewHourEntry", hourEntryInfo=new_entry())
        await severa_soap.call("GetAllWorkTypes", api_key="wrong")
        fake.faults.latency(0.1)
        async with http.get(admin(fake, "/state")) as response:
            state = await response.json()
        assert state["calls"] == {"AddNewHourEntry": 1, "GetAllWorkTypes": 1}
        assert state["store"]["hour_entries"] == 4
        assert state["quota"]["used"] == 2
        assert len(state["faults"]) == 1
        assert FAKE_SEVERA_TEST_KEY not in repr(state)

        async with http.post(admin(fake, "/reset")) as response:
            assert response.status == 204
        assert fake.calls == {}
        assert len(fake.store.hour_entries) == 3
        assert fake.faults.rules == []
        assert fake.quota.used == 0

        await severa_soap.call("GetAllWorkTypes")
        async with http.delete(admin(fake, "/calls")) as response:
            assert response.status == 204
        assert fake.calls == {}

    async def test_a_seed_can_replace_or_extend_the_store(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        http = severa_soap.session
        seed = {"users": [{"GUID": "u-1", "Code": "SOLO", "IsActive": True}]}
        async with http.post(admin(fake, "/seed"), json=seed) as response:
            assert response.status == 200
            assert (await response.json())["users"] == 1
        assert [user["Code"] for user in fake.store.users] == ["SOLO"]
        assert len(fake.store.cases) == 0

        more = {"work_types": [{"GUID": "w-1", "Code": "X", "IsActive": True, "IsProductive": True}]}
        async with http.post(admin(fake, "/seed?replace=false"), json=more) as response:
            assert response.status == 200
        assert len(fake.store.users) == 1
        assert len(fake.store.work_types) == 1

        fake.reset()  # back to the last replacing seed
        assert [user["Code"] for user in fake.store.users] == ["SOLO"]
        assert len(fake.store.work_types) == 0

        bad = {
            "work_types": [{"GUID": "w-2", "Code": "Y"}],
            "hour_entries": [{"GUID": "h-1", "UserGUID": "ghost", "Quantity": 1}],
        }
        for replace in ("true", "false"):
            async with http.post(admin(fake, f"/seed?replace={replace}"), json=bad) as response:
                assert response.status == 400
                assert "UserGUID 'ghost' is not in users" in (await response.json())["error"]
            # a bad seed changes nothing, not even the parts of it that were fine
            assert [user["Code"] for user in fake.store.users] == ["SOLO"]
            assert len(fake.store.work_types) == 0

    async def test_quota_limit_and_use_can_be_set(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        async with severa_soap.session.post(admin(fake, "/quota"), json={"limit": 10, "used": 9}) as response:
            assert await response.json() == {"limit": 10, "used": 9, "exceeded": False}
        assert (await severa_soap.call("GetAllWorkTypes")).quota == (10, 10)
        assert_fault(await severa_soap.call("GetAllWorkTypes"), Fault.QUOTA_LIMIT_EXCEEDED, severa_soap)


class TestProtocol:
    async def test_an_unknown_soap_action_is_action_not_supported(self, severa_soap: SoapCaller) -> None:
        body = severa_soap.envelope("GetAllWorkTypes")
        reply = await severa_soap.post(
            body, soap_action='"http://soap.severa.com/IHourEntry/NoSuchOperation"'
        )
        assert reply.status == 500
        assert reply.envelope is not None
        code = reply.envelope.find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault/faultcode")
        assert code is not None
        assert code.text == "a:ActionNotSupported"
        assert code.nsmap["a"] == NS_WCF_ADDRESSING_NONE
        assert reply.fault is not None
        assert "http://soap.severa.com/IHourEntry/NoSuchOperation" in reply.fault.message
        assert severa_soap.fake.calls == {}
        assert severa_soap.fake.quota.used == 0

    @pytest.mark.parametrize(
        "action",
        [
            pytest.param('"http://soap.severa.com/IWorkType/GetAllWorkTypes"', id="quoted"),
            pytest.param("http://soap.severa.com/IWorkType/GetAllWorkTypes", id="unquoted"),
            pytest.param(' "http://soap.severa.com/IWorkType/GetAllWorkTypes" ', id="with blanks"),
        ],
    )
    async def test_the_soap_action_routes_quoted_or_not(self, severa_soap: SoapCaller, action: str) -> None:
        reply = await severa_soap.post(severa_soap.envelope("GetAllWorkTypes"), soap_action=action)
        assert reply.status == 200
        assert severa_soap.fake.calls["GetAllWorkTypes"] == 1

    async def test_a_missing_soap_action_is_action_not_supported(self, severa_soap: SoapCaller) -> None:
        reply = await severa_soap.post(severa_soap.envelope("GetAllWorkTypes"), soap_action=None)
        assert reply.fault is not None
        assert reply.fault.code == "a:ActionNotSupported"

    async def test_a_body_that_does_not_match_the_action_is_a_deserialization_fault(
        self, severa_soap: SoapCaller
    ) -> None:
        body = severa_soap.envelope("GetAllWorkTypes")
        reply = await severa_soap.post(body, soap_action="http://soap.severa.com/IUser/GetUserByCode")
        assert reply.status == 500
        assert reply.fault is not None
        assert reply.fault.code == "a:DeserializationFailed"
        assert reply.envelope is not None
        assert reply.envelope.find(f".//{{{NS_SOAP_ENV}}}Fault/faultcode").nsmap["a"] == NS_WCF_DISPATCHER  # type: ignore[union-attr]

    async def test_an_element_the_contract_does_not_know_is_a_deserialization_fault(
        self, severa_soap: SoapCaller
    ) -> None:
        body = severa_soap.envelope("GetUserByCode", userCode="AIVI")
        tampered = body.replace(b"</ns0:GetUserByCode>", b"<ns0:extra>1</ns0:extra></ns0:GetUserByCode>")
        assert tampered != body
        reply = await severa_soap.post(tampered, soap_action="http://soap.severa.com/IUser/GetUserByCode")
        assert reply.fault is not None
        assert reply.fault.code == "a:DeserializationFailed"

    async def test_only_text_xml_is_accepted(self, severa_soap: SoapCaller) -> None:
        reply = await severa_soap.post(
            severa_soap.envelope("GetAllWorkTypes"),
            soap_action="http://soap.severa.com/IWorkType/GetAllWorkTypes",
            content_type="application/soap+xml; charset=utf-8",
        )
        assert reply.status == 415

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"<s:Envelope", id="not well-formed"),
            pytest.param(
                b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>&b;</s:Body></s:Envelope>',
                id="a DTD with entities",
            ),
        ],
    )
    async def test_malformed_xml_and_dtds_are_a_bad_request(
        self, severa_soap: SoapCaller, body: bytes
    ) -> None:
        reply = await severa_soap.post(body, soap_action="http://soap.severa.com/IAPI/GetVersion")
        assert reply.status == 400
        assert b"aaaa" not in reply.body

    async def test_a_soap_12_envelope_is_a_version_mismatch(self, severa_soap: SoapCaller) -> None:
        body = severa_soap.envelope("GetVersion").replace(
            NS_SOAP_ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope"
        )
        reply = await severa_soap.post(body, soap_action="http://soap.severa.com/IAPI/GetVersion")
        assert reply.fault is not None
        assert reply.fault.code == "s:VersionMismatch"

    async def test_a_must_understand_header_nobody_understands_is_refused(
        self, severa_soap: SoapCaller
    ) -> None:
        header = etree.Element("{urn:example}Unknown")
        header.set(f"{{{NS_SOAP_ENV}}}mustUnderstand", "1")
        body = severa_soap.fake.codec.build_request(SPEC.operation("GetVersion"), [header])
        reply = await severa_soap.post(body, soap_action="http://soap.severa.com/IAPI/GetVersion")
        assert reply.fault is not None
        assert reply.fault.code == "s:MustUnderstand"

    async def test_a_bug_in_the_fake_is_an_internal_service_fault_and_is_recorded(
        self, severa_soap: SoapCaller, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(ctx: Any) -> list[dict[str, Any]]:
            raise RuntimeError("bug")

        monkeypatch.setitem(HANDLERS, "GetAllWorkTypes", broken)
        reply = await severa_soap.call("GetAllWorkTypes")
        assert reply.status == 500
        assert reply.fault is not None
        assert reply.fault.code == "a:InternalServiceFault"
        fake = severa_soap.fake
        assert [str(error) for error in fake.internal_errors] == ["bug"]
        fake.internal_errors.clear()  # seen; the fixture would otherwise fail the test at teardown

    async def test_an_operation_the_fake_does_not_implement_is_a_general_failure(
        self, severa_soap: SoapCaller
    ) -> None:
        assert "AddNewCase" not in HANDLERS
        reply = await severa_soap.call("AddNewCase", caseInfo={"Name": "x"})
        assert "not implemented" in assert_fault(reply, Fault.GENERAL_FAILURE, severa_soap, code="s:Server")


# Arguments that let every implemented operation answer (success or a fault it declares).
EVERY_OPERATION: dict[str, dict[str, Any]] = {
    "GetVersion": {},
    "GetEntitySchemaVersion": {},
    "GetHourEntryByGUID": {"hourEntryGUID": ENTRY_MIKKO},
    "GetHourEntriesByDate": {"businessUnitGUID": BU_HEL, "startdate": None, "enddate": None},
    "GetHourEntriesByDateAndUserGUID": {
        "businessUnitGUID": None,
        "startdate": None,
        "enddate": None,
        "userGUID": AINO,
    },
    "GetHourEntriesByDateAndUser": {
        "businessUnitGUID": None,
        "startdate": None,
        "enddate": None,
        "userGUID": "x",
    },
    "GetHourEntriesByCaseGUID": {"caseGuid": CASE_ACME, "startDate": None, "endDate": None},
    "GetInvoicedHourEntriesByCaseGUID": {"caseGuid": CASE_ACME},
    "GetHourEntriesChangedSince": {"startDate": dt.datetime(2020, 1, 1)},
    "AddNewHourEntry": {"hourEntryInfo": new_entry()},
    "UpdateHourEntry": {"hourEntryInfo": new_entry(GUID=ENTRY_MIKKO)},
    "DeleteHourEntry": {"hourEntryGUID": ENTRY_MIKKO},
    "GetAllUsers": {"businessUnitGUID": None, "includeInactive": True},
    "GetUserByName": {"firstName": "Juha", "lastName": "Mäkinen"},
    "GetUserByGUID": {"userGUID": AINO},
    "GetUsersByGUIDs": {"userGUIDs": {"string": [AINO, "missing", MIKKO]}},
    "GetUserByCode": {"userCode": "JUMA"},
    "GetUsersChangedSince": {
        "businessUnitGUID": BU_HEL,
        "startDateTime": dt.datetime(2020, 1, 1),
        "options": 3,
    },
    "DisableUser": {"userGUID": MIKKO},
    "EnableUser": {"userGUID": PEKKA_INACTIVE},
    "GetAllCases": {"businessUnitGUID": None},
    "GetCaseByGUID": {"caseGuid": CASE_ACME},
    "GetCaseByNumber": {"caseNumber": 10003},
    "GetCasesByAccountGUID": {"businessUnitGUID": None, "accountGuid": ACME},
    "GetCasesChangedSince": {
        "businessUnitGUID": None,
        "startDateTime": dt.datetime(2020, 1, 1),
        "options": 0,
    },
    "GetPhaseByGUID": {"phaseGUID": PHASE_DEV_ACME},
    "GetPhasesByCaseGUID": {"caseGUID": CASE_GLOBEX},
    "GetPhasesByCode": {"phaseCode": "DESIGN", "caseGUID": CASE_ACME},
    "GetHourEntryPhasesByUserGUID": {"userGUID": MIKKO},
    "GetPhasesChangedSince": {
        "businessUnitGUID": BU_HEL,
        "startDateTime": dt.datetime(2020, 1, 1),
        "options": 0,
    },
    "GetWorkTypeByHourGUID": {"hourGUID": ENTRY_MIKKO},
    "GetWorkTypeByGUID": {"workTypeGUID": WT_DESIGN},
    "GetWorkTypesByPhaseGUID": {"phaseGUID": PHASE_DEV_GLOBEX},
    "GetAllWorkTypes": {},
    "GetWorkTypesChangedSince": {"startDateTime": dt.datetime(2020, 1, 1), "options": 2},
    "GetAccountByName": {"accountName": "globex ab"},
    "GetAccountByNumber": {"accountNumber": 1000},
    "GetAccountByGUID": {"accountGuid": ACME},
    "GetAccountByVatNumber": {"vatNumber": "FI20000001"},
    "GetAccountsByCompanyGUID": {"companyGuid": "a0000000-0000-4000-8000-000000000001"},
    "GetAccountsByInsertDate": {"insertStartDate": dt.datetime(2020, 1, 1), "insertEndDate": None},
    "GetAccountsChangedSinceOpts": {"startDateTime": dt.datetime(2020, 1, 1), "options": ["NewOnly"]},
    "GetAccountsChangedSince": {"startDateTime": dt.datetime(2020, 1, 1), "options": 0},
    "GetAllAccounts": {"options": ["IncludeInactive", "ExcludeNotNumbered"], "startFromIndex": 0, "count": 2},
    "GetCustomerByGUID": {"accountGuid": ACME},
    "GetCustomersChangedSince": {"startDateTime": dt.datetime(2020, 1, 1), "options": 0},
    "GetAllCustomers": {"options": 0, "startFromIndex": 0, "count": 100},
    "GetInvoiceByGUID": {"invoiceGUID": INVOICE_PAID},
    "GetInvoiceByNumber": {"invoiceNumber": 20249, "businessUnitGUID": BU_HEL},
    "GetInvoicesByDate": {
        "businessUnitGUID": None,
        "startDate": dt.datetime(2025, 1, 1),
        "endDate": dt.datetime(2025, 12, 31),
        "options": 0,
    },
    "GetInvoicesByDateAndStatus": {
        "businessUnitGUID": None,
        "startDate": None,
        "endDate": None,
        "status": "paid",
        "options": 0,
    },
    "GetInvoicesByStatus": {"businessUnitGUID": BU_HEL, "status": "Draft", "options": 0, "maxInvoices": 5},
    "GetInvoicesByStatusAndBusinessUnit": {"status": "Sent", "businessUnitGUID": None},
    "SetInvoiceStatus": {"invoiceGUID": INVOICE_PAID, "status": "Sent"},
    "SetInvoicePaymentDate": {"invoiceGUID": INVOICE_PAID, "paymentDate": dt.datetime(2025, 2, 15)},
    "SetInvoiceNumber": {
        "invoiceGUID": "70000000-0000-4000-8000-000000000006",
        "invoiceNumber": 20300,
        "referenceNumber": None,
        "status": "Sent",
    },
    "AddNewInvoiceLogEntry": {
        "invoiceGuid": INVOICE_PAID,
        "context": "accounting",
        "text": "Sent to accounting",
        "source": "severa-connector",
        "eventTimeUtc": None,
        "ignoreDuplicates": True,
    },
    "GetHeadOfficeAddressByAccountGUID": {"accountGUID": ACME},
    "GetInvoicePdf": {
        "invoiceNumber": 20249,
        "invoiceNumberingBusinessUnitGUID": BU_HEL,
        "getAttachmentOnly": ["AttachmentOnly"],
    },
    "GetInvoicePdfByInvoiceGUID": {"invoiceGuid": INVOICE_PAID, "getAttachmentOnly": ["All"]},
    "GetAllInvoiceStatuses": {},
    "GetBusinessUnitByGUID": {"businessUnitGuid": BU_HEL},
    "GetBusinessUnitByCode": {"businessUnitCode": "TRE"},
    "GetBusinessUnitHierarchy": {"rootBusinessUnitGuid": BU_HEL, "options": 0},
    "GetBusinessUnitsChangedSince": {
        "businessUnitGUID": BU_HEL,
        "startDateTime": dt.datetime(2020, 1, 1),
        "options": 0,
    },
}


class TestEveryOperation:
    def test_the_table_covers_every_implemented_operation(self) -> None:
        assert set(EVERY_OPERATION) == set(HANDLERS)

    @pytest.mark.parametrize("operation", sorted(EVERY_OPERATION))
    async def test_answers_within_its_contract(self, severa_soap: SoapCaller, operation: str) -> None:
        reply = await severa_soap.call(operation, **EVERY_OPERATION[operation])
        fault = reply.fault
        if fault is not None:  # a fault is fine only if the operation declares it
            declared = {f.exception_name for f in SPEC.operation(operation).faults}
            assert fault.exception in declared, (fault.code, fault.message)
        else:
            assert reply.status == 200, reply.body
            assert reply.quota is not None


class TestSeedAndLifecycle:
    @pytest.mark.parametrize(
        ("seed", "message"),
        [
            pytest.param({"people": []}, "unknown seed section 'people'", id="an unknown section"),
            pytest.param(
                {"users": [{"GUID": "u", "Kode": "X"}]}, "no member(s) ['Kode']", id="an unknown member"
            ),
            pytest.param(
                {"users": [{"GUID": "u", "IsActive": "yes"}]}, "users[0].IsActive", id="a wrong type"
            ),
            pytest.param({"users": [{"Code": "X"}]}, "non-empty GUID", id="a record without a key"),
            pytest.param(
                {"phases": [{"GUID": "p", "CaseGUID": "c"}]},
                "CaseGUID 'c' is not in cases",
                id="a dangling reference",
            ),
        ],
    )
    def test_a_broken_seed_is_refused_with_its_location(self, seed: dict[str, Any], message: str) -> None:
        with pytest.raises(SeedError) as error:
            FakeSevera(api_key="k", seed=seed)
        assert message in str(error.value)

    def test_the_demo_seed_is_the_default_and_empty_means_empty(self) -> None:
        assert len(FakeSevera(api_key="k").store.users) == 6
        assert len(FakeSevera(api_key="k", seed=DEMO_SEED_PATH).store.cases) == 3
        assert FakeSevera(api_key="k", seed={}).store.counts() == dict.fromkeys(
            FakeSevera(api_key="k", seed={}).store.counts(), 0
        )

    async def test_close_is_idempotent_and_a_closed_fake_stays_closed(self) -> None:
        fake = FakeSevera(api_key="k", seed={})
        with pytest.raises(RuntimeError, match="not running"):
            _ = fake.url
        async with fake:
            url = fake.url
            assert url.endswith("/webservice/S3/API.svc")
        await fake.close()
        with pytest.raises(RuntimeError, match="closed"):
            await fake.start()
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientConnectionError):
                await http.get(url)
