"""``SeveraClient``'s customer and invoice reads (and the two invoice writes) against the fake."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from adapters.severa.client import SeveraClient
from adapters.severa.fake import FakeSevera
from connector.errors import SeveraRejected
from connector.ports import PostalAddress
from tests.fixtures.fake_severa import FAKE_SEVERA_TEST_KEY
from tests.integration.test_severa_client import make_config

pytestmark = pytest.mark.integration

ACME = "40000000-0000-4000-8000-000000000001"
FORMER = "40000000-0000-4000-8000-000000000005"
INVOICE_PAID = "70000000-0000-4000-8000-000000000001"
CREDIT_NOTE = "70000000-0000-4000-8000-000000000004"
INVOICE_SEK = "70000000-0000-4000-8000-000000000005"
INVOICE_DRAFT = "70000000-0000-4000-8000-000000000006"


@pytest.fixture
async def client(fake_severa: FakeSevera) -> AsyncIterator[SeveraClient]:
    config = make_config(fake_severa.url, api_key=FAKE_SEVERA_TEST_KEY)
    async with SeveraClient(config, registry=CollectorRegistry()) as severa:
        yield severa


async def test_customers_changed_since_floor_the_minute_and_skip_inactive(
    fake_severa: FakeSevera, client: SeveraClient
) -> None:
    fake_severa.clock = lambda: dt.datetime(2030, 5, 1, 10, 0, 59, tzinfo=dt.UTC)
    fake_severa.change_customer(ACME, {"Notes": "key account"})
    fake_severa.change_customer(FORMER, {"Notes": "gone"})
    since = dt.datetime(2030, 5, 1, 13, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    found = await client.get_customers_changed_since(since)
    assert [customer.guid for customer in found] == [ACME]
    (acme,) = found
    assert (acme.name, acme.vat_number, acme.number, acme.payment_term_days) == (
        "Acme Oy",
        "2000001-6",
        1001,
        14,
    )
    assert acme.updated_at == dt.datetime(2030, 5, 1, 10, 0, 59, tzinfo=dt.UTC)
    with_inactive = await client.get_customers_changed_since(since, include_inactive=True)
    assert [customer.guid for customer in with_inactive] == [ACME, FORMER]
    with pytest.raises(ValueError, match="aware"):
        await client.get_customers_changed_since(dt.datetime(2030, 5, 1))


async def test_an_address_change_returns_the_customer(fake_severa: FakeSevera, client: SeveraClient) -> None:
    fake_severa.clock = lambda: dt.datetime(2030, 5, 2, 9, 0, tzinfo=dt.UTC)
    fake_severa.set_head_office_address(ACME, {"Addressline2": None})
    since = dt.datetime(2030, 5, 2, 9, 0, tzinfo=dt.UTC)
    assert [c.guid for c in await client.get_customers_changed_since(since)] == [ACME]
    assert await client.get_customers_changed_since(since, include_address_changes=False) == []


async def test_the_head_office_address(client: SeveraClient) -> None:
    assert await client.get_head_office_address(ACME) == PostalAddress(
        guid="b0000000-0000-4000-8000-000000000001",
        lines=("Esimerkkikatu 1", "PL 100"),
        postal_code="00100",
        city="Helsinki",
        country_code="FI",
        country_name="Finland",
        is_billing=True,
        is_postal=True,
        is_visit=True,
    )
    assert await client.get_head_office_address(FORMER) is None


async def test_invoices_by_status_with_rows_vat_currency_and_credit_notes(client: SeveraClient) -> None:
    sent = {invoice.guid: invoice for invoice in await client.get_invoices_by_status("Sent")}
    assert set(sent) == {
        "70000000-0000-4000-8000-000000000002",
        "70000000-0000-4000-8000-000000000003",
        CREDIT_NOTE,
        INVOICE_SEK,
    }
    several = sent["70000000-0000-4000-8000-000000000003"]
    assert [row.vat_rate_percent for row in several.rows] == [Decimal("25.5"), Decimal(14), Decimal(0)]
    assert (several.total_excluding_vat, several.total_vat, several.total_including_vat) == (
        Decimal("1318.00"),
        Decimal("204.32"),
        Decimal("1522.32"),
    )
    assert (several.date, several.due_date, several.reference_number) == (
        dt.date(2025, 6, 2),
        dt.date(2025, 6, 16),
        "202507",
    )
    credit = sent[CREDIT_NOTE]
    assert (credit.is_credit_note, credit.credited_invoice_guid, credit.total_including_vat) == (
        True,
        INVOICE_PAID,
        Decimal("-658.88"),
    )
    sek = sent[INVOICE_SEK]
    assert (sek.currency_code, sek.currency_rate, sek.is_tax_free) == ("SEK", Decimal("11.2"), True)
    assert len(await client.get_invoices_by_status("Sent", max_invoices=2)) == 2
    assert await client.get_invoices_by_status("No such status") == []


async def test_statuses_and_the_two_writes(fake_severa: FakeSevera, client: SeveraClient) -> None:
    statuses = await client.get_all_invoice_statuses()
    assert [(s.name, s.is_paid, s.has_invoice_number) for s in statuses] == [
        ("Draft", False, False),
        ("Sent", False, True),
        ("Transferred", False, True),
        ("Paid", True, True),
    ]
    await client.set_invoice_status(INVOICE_SEK, "Paid")
    await client.set_invoice_payment_date(INVOICE_SEK, dt.date(2030, 6, 1))
    (paid_sek,) = [i for i in await client.get_invoices_by_status("Paid") if i.guid == INVOICE_SEK]
    assert paid_sek.payment_date == dt.date(2030, 6, 1)
    await client.set_invoice_payment_date(INVOICE_SEK, None)
    assert fake_severa.store.invoices[INVOICE_SEK]["PaymentDate"] is None
    with pytest.raises(SeveraRejected) as rejected:
        await client.set_invoice_status("70000000-0000-4000-8000-0000000000ff", "Paid")
    assert rejected.value.fault == "NotFound"


async def test_an_invoice_carries_what_the_ready_event_needs_from_severa(
    fake_severa: FakeSevera, client: SeveraClient
) -> None:
    case, phase = "50000000-0000-4000-8000-000000000001", "60000000-0000-4000-8000-000000000103"
    guid = fake_severa.add_invoice(
        {
            "AccountGUID": ACME,
            "Date": "2030-03-01",
            "EntryDate": "2030-03-04",
            "Number": 30001,
            "InvoiceStatus": "Sent",
            "OrderNumber": "ORD-5",
            "PoNumber": "PO-9",
            "ReceiverState": "Uusimaa",
            "ReceiverContactName": "Maija Meikäläinen",
            "ReceiverContactEmail": "laskut@acme.example",
            "InvoiceRows": [
                {
                    "articleIdentifier": "DEV",
                    "articleName": "Development",
                    "deliveredQuantity": 2,
                    "unitPriceAmount": 100,
                    "CaseGUIDs": [case],
                    "PhaseGUIDs": [phase],
                }
            ],
        }
    )["GUID"]
    (invoice,) = [i for i in await client.get_invoices_by_status("Sent") if i.guid == guid]
    assert (invoice.date, invoice.entry_date) == (dt.date(2030, 3, 1), dt.date(2030, 3, 4))
    assert (invoice.account_number, invoice.language_code) == (1001, "fi")  # Acme's, as Severa fills them
    assert (invoice.order_number, invoice.po_number) == ("ORD-5", "PO-9")
    assert (
        invoice.receiver_name,
        invoice.receiver_address_line,
        invoice.receiver_postal_code,
        invoice.receiver_city,
        invoice.receiver_state,
        invoice.receiver_country,
        invoice.receiver_contact_name,
        invoice.receiver_contact_email,
    ) == (
        "Acme Oy",
        "Esimerkkikatu 1",
        "00100",
        "Helsinki",
        "Uusimaa",
        "Finland",
        "Maija Meikäläinen",
        "laskut@acme.example",
    )
    (row,) = invoice.rows
    assert (row.article_identifier, row.case_guids, row.phase_guids) == ("DEV", (case,), (phase,))
    assert row.unit_price == Decimal(100)


async def test_an_hour_entry_names_the_invoice_it_is_on(client: SeveraClient) -> None:
    entries = {
        entry.guid: entry
        for entry in await client.get_hour_entries_changed_since(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    }
    assert entries["80000000-0000-4000-8000-000000000001"].invoice_guid == INVOICE_PAID
    assert entries["80000000-0000-4000-8000-000000000002"].invoice_guid is None


async def test_the_write_backs_read_an_invoice_and_log_a_line_once(
    fake_severa: FakeSevera, client: SeveraClient
) -> None:
    guid = "70000000-0000-4000-8000-000000000002"
    invoice = await client.get_invoice(guid)
    assert invoice is not None
    assert invoice.number is not None
    by_number = await client.get_invoice_by_number(invoice.number)
    assert by_number is not None
    assert by_number.guid == guid
    assert await client.get_invoice("70000000-0000-4000-8000-0000000000ff") is None
    assert await client.get_invoice_by_number(987654) is None
    for _ in range(2):  # a redelivered write-back
        await client.add_invoice_log_entry(guid, "Transferred to netvisor (id 1802)")
    texts = [entry.get("Text") or entry.get("text") for entry in fake_severa.store.invoice_log[guid]]
    assert texts.count("Transferred to netvisor (id 1802)") == 1
