"""The fake Severa's customers and invoices over real HTTP: ChangedSince, faults, the admin API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from adapters.severa.fake import FakeSevera
from adapters.severa.fake.backoffice import ChangeRefused
from adapters.severa.wsdl.spec import Fault
from tests.fixtures.fake_severa import SoapCaller, SoapReply
from tests.integration.test_fake_severa import ACME, INVOICE_PAID, nil_result
from tests.integration.test_fake_severa import assert_fault as assert_typed_fault

pytestmark = pytest.mark.integration

GLOBEX = "40000000-0000-4000-8000-000000000002"
FORMER = "40000000-0000-4000-8000-000000000005"
ACME_ADDRESS = "b0000000-0000-4000-8000-000000000001"
ACME_CONTACT = "c0000000-0000-4000-8000-000000000001"
INVOICE_DRAFT = "70000000-0000-4000-8000-000000000006"
CREDIT_NOTE = "70000000-0000-4000-8000-000000000004"
MISSING = "40000000-0000-4000-8000-0000000000ff"
UTC = dt.UTC


def assert_fault(reply: SoapReply, fault: Fault, caller: SoapCaller) -> str:
    """WCF sends GeneralFailure as a server fault, the others as client faults."""
    code = "s:Server" if fault is Fault.GENERAL_FAILURE else "s:Client"
    return assert_typed_fault(reply, fault, caller, code=code)


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2030, 3, 1, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def quiet(fake_severa: FakeSevera) -> FakeSevera:
    """The demo organisation with every customer, address and contact last changed in 2025."""
    store = fake_severa.store
    for table in (store.accounts, store.addresses, store.contacts):
        for key in list(table.keys()):
            table.touch(key, at=dt.datetime(2025, 1, 1, tzinfo=UTC))
    return fake_severa


async def changed(caller: SoapCaller, start: dt.datetime, options: int = 0) -> list[str]:
    reply = await caller.call("GetCustomersChangedSince", startDateTime=start, options=options)
    assert reply.status == 200, reply.body
    return [customer.GUID for customer in reply.result or []]


class TestCustomersChangedSince:
    @pytest.mark.parametrize(
        ("start", "found"),
        [
            pytest.param(at(10, 0, 30), True, id="a change at 10:00:59 is found from 10:00:30"),
            pytest.param(at(10, 0), True, id="from the start of its minute"),
            pytest.param(at(10, 1), False, id="not from the next minute"),
        ],
    )
    async def test_the_start_is_matched_to_the_minute(
        self, severa_soap: SoapCaller, quiet: FakeSevera, start: dt.datetime, found: bool
    ) -> None:
        quiet.clock = lambda: at(10, 0, 59)
        quiet.change_customer(ACME, {"Email": "billing@acme.example"})
        assert await changed(severa_soap, start) == ([ACME] if found else [])

    async def test_several_changes_in_one_minute_return_the_customer_once_with_the_last(
        self, severa_soap: SoapCaller, quiet: FakeSevera
    ) -> None:
        for second, email in ((5, "a@acme.example"), (40, "b@acme.example"), (55, "c@acme.example")):
            quiet.clock = lambda second=second: at(10, 0, second)  # type: ignore[misc]
            quiet.change_customer(ACME, {"Email": email})
        reply = await severa_soap.call("GetCustomersChangedSince", startDateTime=at(10, 0, 30), options=0)
        (customer,) = reply.result
        assert (customer.GUID, customer.Email) == (ACME, "c@acme.example")
        assert customer.UpdatedTS == at(10, 0, 55)

    async def test_inactive_customers_only_with_include_inactive(
        self, severa_soap: SoapCaller, quiet: FakeSevera
    ) -> None:
        quiet.clock = lambda: at(9, 0)
        quiet.change_customer(FORMER, {"Notes": "archived"})
        quiet.change_customer(GLOBEX, {"IsActive": False})
        assert await changed(severa_soap, at(9, 0)) == []
        assert await changed(severa_soap, at(9, 0), options=2) == [GLOBEX, FORMER]

    async def test_address_and_contact_changes_widen_changed_only_with_their_flags(
        self, severa_soap: SoapCaller, quiet: FakeSevera
    ) -> None:
        quiet.clock = lambda: at(11, 0)
        quiet.set_head_office_address(ACME, {"Addressline": "Uusikatu 2"})
        quiet.change_contact("c0000000-0000-4000-8000-000000000002", {"Phone": "+46 8 123 456"})
        nordic = "40000000-0000-4000-8000-000000000004"
        assert await changed(severa_soap, at(11, 0)) == []
        assert await changed(severa_soap, at(11, 0), options=64) == [ACME]
        assert await changed(severa_soap, at(11, 0), options=128) == [nordic]
        assert await changed(severa_soap, at(11, 0), options=224) == [ACME, nordic]
        assert await changed(severa_soap, at(11, 0), options=64 | 1) == []  # a new address is no new account

    async def test_the_accounts_operations_answer_the_same(
        self, severa_soap: SoapCaller, quiet: FakeSevera
    ) -> None:
        quiet.clock = lambda: at(12, 0, 10)
        quiet.set_head_office_address(ACME, {"PostalCode": "00180"})
        plain = await severa_soap.call("GetAccountsChangedSince", startDateTime=at(12, 0, 50), options=64)
        opts = await severa_soap.call(
            "GetAccountsChangedSinceOpts", startDateTime=at(12, 0, 50), options=["CheckAddressChanges"]
        )
        assert [account.GUID for account in plain.result] == [ACME]
        assert [account.GUID for account in opts.result] == [ACME]

    async def test_nothing_changed_is_an_empty_array_not_null(
        self, severa_soap: SoapCaller, quiet: FakeSevera
    ) -> None:
        reply = await severa_soap.call("GetCustomersChangedSince", startDateTime=at(0, 0), options=0)
        assert reply.status == 200
        assert not nil_result(reply, "GetCustomersChangedSince")

    async def test_an_option_that_is_no_flag_is_a_general_failure(self, severa_soap: SoapCaller) -> None:
        reply = await severa_soap.call("GetCustomersChangedSince", startDateTime=at(0, 0), options=16)
        assert "AccountGetOptions" in assert_fault(reply, Fault.GENERAL_FAILURE, severa_soap)


class TestCustomerLookups:
    async def test_the_head_office_address(self, severa_soap: SoapCaller) -> None:
        reply = await severa_soap.call("GetHeadOfficeAddressByAccountGUID", accountGUID=ACME)
        assert (reply.result.GUID, reply.result.City, reply.result.PostalCode) == (
            ACME_ADDRESS,
            "Helsinki",
            "00100",
        )

    @pytest.mark.parametrize(
        "account", [pytest.param(MISSING, id="an unknown account"), pytest.param(FORMER, id="no head office")]
    )
    async def test_no_head_office_is_null_as_no_not_found_is_declared(
        self, severa_soap: SoapCaller, account: str
    ) -> None:
        reply = await severa_soap.call("GetHeadOfficeAddressByAccountGUID", accountGUID=account)
        assert reply.status == 200
        assert nil_result(reply, "GetHeadOfficeAddressByAccountGUID")

    @pytest.mark.parametrize(
        ("operation", "arguments", "fault"),
        [
            pytest.param(
                "GetCustomerByGUID", {"accountGuid": MISSING}, Fault.NOT_FOUND, id="unknown customer"
            ),
            pytest.param("GetAccountByGUID", {"accountGuid": "acme"}, Fault.GENERAL_FAILURE, id="not a GUID"),
            pytest.param("GetCustomerByGUID", {"accountGuid": None}, Fault.GENERAL_FAILURE, id="no GUID"),
            pytest.param("GetInvoiceByGUID", {"invoiceGUID": MISSING}, Fault.NOT_FOUND, id="unknown invoice"),
            pytest.param(
                "GetInvoiceByNumber",
                {"invoiceNumber": 0, "businessUnitGUID": None},
                Fault.GENERAL_FAILURE,
                id="invoice number zero",
            ),
            pytest.param(
                "GetInvoicesByStatus",
                {"businessUnitGUID": None, "status": "Sent", "options": 0, "maxInvoices": -1},
                Fault.GENERAL_FAILURE,
                id="negative maxInvoices",
            ),
            pytest.param(
                "GetInvoicesByStatus",
                {"businessUnitGUID": None, "status": "Lost", "options": 0, "maxInvoices": None},
                Fault.NOT_FOUND,
                id="unknown status",
            ),
            pytest.param(
                "SetInvoiceStatus",
                {"invoiceGUID": MISSING, "status": "Paid"},
                Fault.NOT_FOUND,
                id="set on unknown",
            ),
        ],
    )
    async def test_faults_as_the_contract_lists_them(
        self, severa_soap: SoapCaller, operation: str, arguments: dict[str, Any], fault: Fault
    ) -> None:
        assert_fault(await severa_soap.call(operation, **arguments), fault, severa_soap)

    async def test_injected_faults_and_the_quota_apply(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        fake.faults.add(FaultRuleFor("GetCustomersChangedSince"))
        reply = await severa_soap.call("GetCustomersChangedSince", startDateTime=at(0, 0), options=0)
        assert_fault(reply, Fault.GENERAL_FAILURE, severa_soap)
        fake.quota.exhaust()
        reply = await severa_soap.call("GetInvoiceByGUID", invoiceGUID=INVOICE_PAID)
        assert reply.fault is not None
        assert reply.fault.exception == "QuotaLimitExceededException"


def FaultRuleFor(operation: str) -> Any:
    from adapters.severa.fake import FaultRule

    return FaultRule.from_json({"kind": "soap_fault", "operation": operation, "fault": "GeneralFailure"})


class TestInvoices:
    async def test_a_credit_note_names_the_invoice_it_credits(self, severa_soap: SoapCaller) -> None:
        credit = (await severa_soap.call("GetInvoiceByGUID", invoiceGUID=CREDIT_NOTE)).result
        original = (await severa_soap.call("GetInvoiceByGUID", invoiceGUID=INVOICE_PAID)).result
        assert (credit.IsCreditNote, credit.ReimburseInvoiceGUID) == (True, INVOICE_PAID)
        assert credit.InvoiceRows.InvoiceRow[0].rowAmount == Decimal("-658.88")
        assert original.IsReimbursed is True

    async def test_statuses_list_filter_and_change(self, severa_soap: SoapCaller) -> None:
        statuses = await severa_soap.call("GetAllInvoiceStatuses")
        assert [(s.Name, s.IsPaid) for s in statuses.result] == [
            ("Draft", False),
            ("Sent", False),
            ("Transferred", False),
            ("Paid", True),
        ]
        await severa_soap.call("SetInvoiceStatus", invoiceGUID=CREDIT_NOTE, status="paid")
        paid = await severa_soap.call(
            "GetInvoicesByStatus", businessUnitGUID=None, status="Paid", options=0, maxInvoices=1
        )
        assert [invoice.GUID for invoice in paid.result] == [INVOICE_PAID]
        paid = await severa_soap.call(
            "GetInvoicesByStatus", businessUnitGUID=None, status="Paid", options=0, maxInvoices=None
        )
        assert [invoice.GUID for invoice in paid.result] == [INVOICE_PAID, CREDIT_NOTE]

    async def test_set_invoice_number_gives_a_finnish_reference_and_refuses_a_used_number(
        self, severa_soap: SoapCaller
    ) -> None:
        await severa_soap.call(
            "SetInvoiceNumber",
            invoiceGUID=INVOICE_DRAFT,
            invoiceNumber=20253,
            referenceNumber=None,
            status="Sent",
        )
        draft = severa_soap.fake.store.invoices[INVOICE_DRAFT]
        assert (draft["Number"], draft["ReferenceNumber"], draft["InvoiceStatus"]) == (
            20253,
            "202536",
            "Sent",
        )
        reply = await severa_soap.call(
            "SetInvoiceNumber",
            invoiceGUID=INVOICE_DRAFT,
            invoiceNumber=20248,
            referenceNumber="1232",
            status=None,
        )
        assert "already used" in assert_fault(reply, Fault.GENERAL_FAILURE, severa_soap)

    async def test_log_entries_are_kept_and_duplicates_skipped_when_asked(
        self, severa_soap: SoapCaller
    ) -> None:
        fake = severa_soap.fake
        fake.clock = lambda: at(8, 0)
        entry: dict[str, Any] = {
            "invoiceGuid": INVOICE_PAID,
            "context": "acc",
            "text": "Booked",
            "source": "connector",
        }
        for ignore in (True, True, False):
            reply = await severa_soap.call(
                "AddNewInvoiceLogEntry", **entry, eventTimeUtc=None, ignoreDuplicates=ignore
            )
            assert reply.status == 200
        async with severa_soap.session.get(f"{fake.admin_url}/invoices/{INVOICE_PAID}/log") as response:
            logged = await response.json()
        assert [item["text"] for item in logged] == ["Booked", "Booked"]
        assert logged[0]["eventTimeUtc"] == str(at(8, 0))
        reply = await severa_soap.call(
            "AddNewInvoiceLogEntry", **{**entry, "text": None}, eventTimeUtc=None, ignoreDuplicates=False
        )
        assert_fault(reply, Fault.GENERAL_FAILURE, severa_soap)


class TestByHandOverTheAdminApi:
    async def test_a_customer_with_company_address_and_contact(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        fake.clock = lambda: at(14, 30, 15)
        body = {
            "Name": "Uusi Asiakas Oy",
            "PaymentTerm": 21,
            "Company": {"VatNumber": "2000004-0", "Email": "laskut@uusi.example"},
            "HeadOfficeAddress": {"Addressline": "Satamakatu 4", "PostalCode": "33200", "City": "Tampere"},
            "Contact": {"FirstName": "Ville", "LastName": "Koski"},
        }
        async with severa_soap.session.post(f"{fake.admin_url}/customers", json=body) as response:
            assert response.status == 201
            customer = await response.json()
        guid = customer["GUID"]
        assert (customer["Number"], customer["VatNumber"], customer["UpdatedTS"]) == (
            1005,
            "2000004-0",
            str(at(14, 30, 15)),
        )
        company = fake.store.companies[customer["CompanyGUID"]]
        assert company["HeadOfficeAddressGUID"] == customer["HeadOfficeAddressGUID"]
        assert await changed(severa_soap, at(14, 30, 59)) == [guid]
        address = await severa_soap.call("GetHeadOfficeAddressByAccountGUID", accountGUID=guid)
        assert address.result.City == "Tampere"

        fake.clock = lambda: at(15, 0)
        async with severa_soap.session.patch(
            f"{fake.admin_url}/customers/{guid}", json={"Website": "https://uusi.example"}
        ) as response:
            assert response.status == 200
        customer_reply = await severa_soap.call("GetCustomerByGUID", accountGuid=guid)
        assert customer_reply.result.UpdatedTS == at(15, 0)
        async with severa_soap.session.patch(
            f"{fake.admin_url}/customers/{MISSING}", json={"Notes": "x"}
        ) as response:
            assert response.status == 404

    async def test_an_invoice_with_rows_vat_rates_and_a_credit_note(self, severa_soap: SoapCaller) -> None:
        fake = severa_soap.fake
        body = {
            "AccountGUID": GLOBEX,
            "BusinessUnitGUID": "10000000-0000-4000-8000-000000000001",
            "Number": 20260,
            "Date": "2030-03-01",
            "InvoiceStatus": "Sent",
            "InvoiceRows": [
                {
                    "articleName": "Work",
                    "deliveredQuantity": "3",
                    "unitPriceAmount": "100",
                    "rowVatRatePercent": "25.5",
                },
                {
                    "articleName": "Lunch",
                    "deliveredQuantity": "2",
                    "unitPriceAmount": "12.35",
                    "rowVatRatePercent": "14",
                },
            ],
        }
        async with severa_soap.session.post(f"{fake.admin_url}/invoices", json=body) as response:
            assert response.status == 201
            invoice = await response.json()
        assert (invoice["DueDate"], invoice["ReferenceNumber"], invoice["ReceiverCity"]) == (
            "2030-03-31 00:00:00",
            "202604",
            "Turku",
        )
        rows = [
            (r["rowVatExcludedAmount"], r["rowVatAmount"], r["rowAmount"]) for r in invoice["InvoiceRows"]
        ]
        assert rows == [("300.00", "76.50", "376.50"), ("24.70", "3.46", "28.16")]
        credit = {
            **body,
            "Number": 20261,
            "ReimburseInvoiceGUID": invoice["GUID"],
            "InvoiceRows": [
                {
                    "articleName": "Work",
                    "deliveredQuantity": "-1",
                    "unitPriceAmount": "100",
                    "rowVatRatePercent": "25.5",
                }
            ],
        }
        async with severa_soap.session.post(f"{fake.admin_url}/invoices", json=credit) as response:
            assert response.status == 201
            note = await response.json()
        assert note["IsCreditNote"] is True
        assert fake.store.invoices[invoice["GUID"]]["IsReimbursed"] is True

        async with severa_soap.session.post(
            f"{fake.admin_url}/invoices/{note['GUID']}/status", json={"status": "Paid"}
        ) as response:
            assert response.status == 200
            assert (await response.json())["PaymentStatus"] == "Paid"
        async with severa_soap.session.post(
            f"{fake.admin_url}/invoices", json={**body, "ReimburseInvoiceGUID": MISSING}
        ) as response:
            assert response.status == 400
            assert "ReimburseInvoiceGUID" in (await response.json())["error"]

    def test_marking_a_draft_sent_numbers_it(self, fake_severa: FakeSevera) -> None:
        marked = fake_severa.mark_invoice_status(INVOICE_DRAFT, "Sent")
        assert (marked["Number"], marked["ReferenceNumber"]) == (20253, "202536")
        assert (
            fake_severa.store.business_units["10000000-0000-4000-8000-000000000001"]["NextInvoiceNumber"]
            == 20254
        )
        with pytest.raises(ChangeRefused, match="does not exist"):
            fake_severa.mark_invoice_status(INVOICE_DRAFT, "Lost")
        with pytest.raises(KeyError):
            fake_severa.change_invoice(MISSING, {"Title": "x"})


def business_id_is_valid(value: str) -> bool:
    """A Finnish business id (Y-tunnus) ``NNNNNNN-C``: weights 7-9-10-5-8-4-2, modulo 11."""
    digits, _, check = value.partition("-")
    if len(digits) != 7 or not digits.isdigit() or len(check) != 1:
        return False
    remainder = sum(int(d) * w for d, w in zip(digits, (7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return remainder != 1 and int(check) == (0 if remainder == 0 else 11 - remainder)


def test_the_demo_customers_have_valid_business_ids(fake_severa: FakeSevera) -> None:
    finnish = [a["VatNumber"] for a in fake_severa.store.accounts if not a["VatNumber"].startswith("SE")]
    assert finnish
    assert all(business_id_is_valid(number) for number in finnish), finnish
    assert not business_id_is_valid("2000001-7")


class TestPlaceholderShapes:
    """Members of types whose members the notes do not list come as the real service sends them:
    present (the real service fills them), not nil -- a client must meet them, and cope."""

    ENT = "{http://schemas.datacontract.org/2004/07/Severa.Entities.API}"
    NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

    @pytest.mark.parametrize(
        "values",
        [
            pytest.param(None, id="a seeded invoice"),
            pytest.param(
                {"AccountGUID": ACME, "Date": "2030-03-01", "InvoiceRows": []}, id="an invoice made by hand"
            ),
        ],
    )
    async def test_an_invoices_nested_members_are_present_and_empty(
        self, fake_severa: FakeSevera, severa_soap: SoapCaller, values: dict[str, Any] | None
    ) -> None:
        guid = INVOICE_PAID if values is None else fake_severa.add_invoice(values)["GUID"]
        reply = await severa_soap.call("GetInvoiceByGUID", invoiceGUID=guid)
        assert reply.status == 200, reply.body
        assert reply.envelope is not None
        (invoice,) = reply.envelope.iter("{http://soap.severa.com/}GetInvoiceByGUIDResult")
        for member in (
            "BuyerOrganization",
            "InvoiceConfig",
            "InvoiceDetails",
            "SellerContact",
            "SellerOrganization",
        ):
            node = invoice.find(f"{self.ENT}{member}")
            assert node is not None, f"{member} is left out"
            assert node.get(self.NIL) is None, f"{member} is nil"
            assert len(node) == 0, f"{member} has content the notes do not list"
            assert not (node.text or "").strip(), f"{member} has content the notes do not list"

    async def test_all_accounts_answers_one_present_account_tiny_per_account(
        self, fake_severa: FakeSevera, severa_soap: SoapCaller
    ) -> None:
        reply = await severa_soap.call("GetAllAccounts", options=["None"], startFromIndex=0, count=100)
        assert reply.status == 200, reply.body
        assert reply.envelope is not None
        items = list(reply.envelope.iter(f"{self.ENT}AccountTiny"))
        active = sum(1 for account in fake_severa.store.accounts if account["IsActive"])
        assert len(items) == active
        assert all(item.get(self.NIL) is None for item in items)
