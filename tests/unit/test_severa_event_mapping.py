"""Pure mapping rules from Severa's port records to the Severa change events."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from connector.errors import Category, PermanentError
from connector.mapping.severa_events import (
    InvoiceNotReady,
    UnpublishableRecord,
    country,
    customer_changed,
    hour_entry_changed,
    invoice_ready,
)
from connector.ports import Customer, HourEntry, Invoice, InvoiceRow, PostalAddress
from schemas.severa_events import (
    SeveraCustomerChanged,
    SeveraHourEntryChanged,
    SeveraInvoiceReady,
    change_stamp,
    content_stamp,
    customer_stamp,
    parse_severa_event,
    severa_event_id,
)

ORG = "acme-severa"
PUBLISHED = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
OBSERVED = dt.datetime(2026, 11, 20, 11, 59, tzinfo=dt.UTC)

CUSTOMER_GUID = "3f2b8c1e-0a4d-4e6b-9c51-7d2e1f0a9b31"
ADDRESS_GUID = "3f2b8c1e-0000-4000-8000-00000000a001"
INVOICE_GUID = "3f2b8c1e-0000-4000-8000-00000000b001"
CREDITED_GUID = "3f2b8c1e-0000-4000-8000-00000000b000"
BUSINESS_UNIT_GUID = "3f2b8c1e-0000-4000-8000-00000000c001"
CASE_GUID = "3f2b8c1e-0000-4000-8000-00000000d001"
ENTRY_GUID = "3f2b8c1e-0000-4000-8000-00000000e001"
USER_GUID = "3f2b8c1e-0000-4000-8000-00000000f001"
PHASE_GUID = "3f2b8c1e-0000-4000-8000-00000000f101"
WORK_TYPE_GUID = "3f2b8c1e-0000-4000-8000-00000000f201"

HEAD_OFFICE = PostalAddress(
    guid=ADDRESS_GUID,
    lines=("Mannerheimintie 1", "", "PL 12"),
    postal_code="00100",
    city="Helsinki",
    country_code="fi",
    country_name="Finland",
    is_billing=True,
    is_postal=True,
    is_visit=False,
)

CUSTOMER = Customer(
    guid=CUSTOMER_GUID,
    name="Acme Oy",
    number=1042,
    company_guid=None,
    vat_number="1234567-8",
    email="billing@acme.example",
    website=None,
    currency_code="EUR",
    language_code="fi-FI",
    payment_term_days=14,
    reverse_charge=False,
    e_invoice_address="003712345678",
    e_invoice_operator="003721291126",
    head_office_address_guid=ADDRESS_GUID,
    is_active=True,
    is_internal=False,
    inserted_at=dt.datetime(2025, 1, 2, 8, 0, tzinfo=dt.UTC),
    updated_at=dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
)


def _row(number: int, rate: str | None, excluding: str, vat: str, **overrides: Any) -> InvoiceRow:
    row = InvoiceRow(
        guid=f"3f2b8c1e-0000-4000-8000-0000000010{number:02d}",
        number=number,
        article_name="Consulting",
        description="November",
        delivery_date=dt.date(2026, 11, 30),
        quantity=Decimal("10"),
        unit_code="h",
        unit_price=Decimal(excluding) / 10,
        amount_excluding_vat=Decimal(excluding),
        vat_rate_percent=Decimal(rate) if rate is not None else None,
        vat_amount=Decimal(vat),
        amount_including_vat=Decimal(excluding) + Decimal(vat),
        vat_code=None,
        sales_account_number="3000",
    )
    return dataclasses.replace(row, **overrides)


ROWS = (
    _row(1, "25.50", "1000.00", "255.00"),
    _row(2, "14", "200.00", "28.00"),
    _row(3, "0", "50.00", "0.00"),
)

INVOICE = Invoice(
    guid=INVOICE_GUID,
    number=20261,
    status="Ready for accounting",
    payment_status=None,
    title="November",
    account_guid=CUSTOMER_GUID,
    account_name="Acme Oy",
    business_unit_guid=BUSINESS_UNIT_GUID,
    main_case_guid=CASE_GUID,
    date=dt.date(2026, 11, 30),
    due_date=dt.date(2026, 12, 14),
    payment_date=None,
    payment_term_days=14,
    currency_code="EUR",
    currency_rate=Decimal("1"),
    reference_number="RF18 5390 0754 7034",
    our_reference="Jane Doe",
    your_reference="PO-77",
    receiver_vat_number="FI12345678",
    is_credit_note=False,
    credited_invoice_guid=None,
    is_tax_free=False,
    rows=ROWS,
    entry_date=dt.date(2026, 11, 27),
)

CREDIT_NOTE = dataclasses.replace(
    INVOICE,
    guid="3f2b8c1e-0000-4000-8000-00000000b002",
    number=20262,
    is_credit_note=True,
    credited_invoice_guid=CREDITED_GUID,
    rows=(
        _row(
            1,
            "25.5",
            "-1000.00",
            "-255.00",
            quantity=Decimal("-10"),
            unit_price=Decimal("100.00"),
        ),
    ),
)

ENTRY = HourEntry(
    guid=ENTRY_GUID,
    user_guid=USER_GUID,
    case_guid=CASE_GUID,
    phase_guid=PHASE_GUID,
    work_type_guid=WORK_TYPE_GUID,
    event_date=dt.date(2026, 11, 20),
    quantity=Decimal("7.50"),
    description="Wireframes",
    is_billable=True,
)


def _customer_event(customer: Customer = CUSTOMER, head_office: PostalAddress | None = HEAD_OFFICE) -> Any:
    return customer_changed(customer, head_office=head_office, organization_id=ORG, published_at=PUBLISHED)


def _invoice_event(invoice: Invoice = INVOICE, credited_number: int | None = None) -> Any:
    return invoice_ready(
        invoice,
        credited_number=credited_number,
        organization_id=ORG,
        observed_at=OBSERVED,
        published_at=PUBLISHED,
    )


def _entry_event(entry: HourEntry = ENTRY, invoice_guid: str | None = None) -> Any:
    return hour_entry_changed(
        dataclasses.replace(entry, invoice_guid=invoice_guid) if invoice_guid is not None else entry,
        organization_id=ORG,
        observed_at=OBSERVED,
        published_at=PUBLISHED,
    )


# --------------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------------


def test_a_customer_with_a_head_office_carries_its_address_billing_flag_and_contact() -> None:
    event = _customer_event()
    customer = event.customer
    assert isinstance(event, SeveraCustomerChanged)
    assert customer.guid == uuid.UUID(CUSTOMER_GUID)
    assert (customer.number, customer.name, customer.business_id) == (1042, "Acme Oy", "1234567-8")
    assert (customer.currency_code, customer.language_code, customer.payment_term_days) == (
        "EUR",
        "fi-FI",
        14,
    )
    assert customer.e_invoice is not None
    assert (customer.e_invoice.address, customer.e_invoice.operator) == ("003712345678", "003721291126")
    address = customer.head_office_address
    assert address is not None
    assert address.lines == ("Mannerheimintie 1", "PL 12")
    assert (address.postal_code, address.city) == ("00100", "Helsinki")
    assert (address.country_code, address.country_name) == ("FI", "Finland")
    assert customer.head_office_is_billing_address is True
    assert customer.contact is not None
    assert (customer.contact.name, customer.contact.email) == (None, "billing@acme.example")
    assert event.source.business_unit_guid is None
    assert event.source.organization_id == ORG


def test_a_customer_without_a_head_office_has_no_address_and_no_billing_flag() -> None:
    event = _customer_event(dataclasses.replace(CUSTOMER, head_office_address_guid=None), head_office=None)
    assert event.customer.head_office_address is None
    assert event.customer.head_office_is_billing_address is None


def test_the_customer_event_id_follows_the_documented_rule() -> None:
    event = _customer_event()
    stamp = customer_stamp(event.customer)
    assert stamp == f"2026-11-20T10:00:00.000000Z;{content_stamp(event.customer)}"
    assert event.event_id == severa_event_id("severa.customer.changed", uuid.UUID(CUSTOMER_GUID), stamp)
    assert event.occurred_at == CUSTOMER.updated_at


def test_a_customer_whose_address_alone_changed_has_a_new_event_id_and_the_same_occurred_at() -> None:
    before = _customer_event()
    moved = _customer_event(head_office=dataclasses.replace(HEAD_OFFICE, lines=("Aleksanterinkatu 5",)))
    assert moved.event_id != before.event_id
    assert moved.occurred_at == before.occurred_at


@pytest.mark.parametrize(
    ("inserted_at", "updated_at", "expected"),
    [
        pytest.param(
            dt.datetime(2025, 1, 2, 8, 0),
            dt.datetime(2026, 11, 20, 10, 0),
            dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
            id="a stamp without a zone is read as utc",
        ),
        pytest.param(
            dt.datetime(2025, 1, 2, 8, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
            id="a stamp with an offset is written in utc",
        ),
        pytest.param(
            dt.datetime(2025, 1, 2, 8, 0, tzinfo=dt.UTC),
            None,
            dt.datetime(2025, 1, 2, 8, 0, tzinfo=dt.UTC),
            id="a customer never updated is stamped with its insert time",
        ),
    ],
)
def test_the_customer_change_stamp_is_updated_ts_or_insert_ts_in_utc(
    inserted_at: dt.datetime, updated_at: dt.datetime | None, expected: dt.datetime
) -> None:
    event = _customer_event(dataclasses.replace(CUSTOMER, inserted_at=inserted_at, updated_at=updated_at))
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset() == dt.timedelta(0)
    assert customer_stamp(event.customer).startswith(change_stamp(expected) + ";sha256:")


def test_a_customers_empty_strings_are_sent_as_null() -> None:
    blank = dataclasses.replace(
        CUSTOMER,
        vat_number="",
        email="",
        currency_code="",
        language_code="",
        e_invoice_address="",
        e_invoice_operator="",
    )
    address = dataclasses.replace(
        HEAD_OFFICE, lines=("", "", ""), postal_code="", city="", country_code="", country_name=""
    )
    customer = _customer_event(blank, address).customer
    assert customer.business_id is None
    assert customer.email is None
    assert customer.currency_code is None
    assert customer.language_code is None
    assert customer.e_invoice is None
    assert customer.contact is None
    assert customer.head_office_address is not None
    assert customer.head_office_address.model_dump() == {
        "lines": (),
        "postal_code": None,
        "city": None,
        "region": None,
        "country_code": None,
        "country_name": None,
    }
    assert '""' not in _customer_event(blank, address).model_dump_json()


def test_text_is_passed_as_severa_holds_it_blanks_included() -> None:
    invoice = _invoice_event(dataclasses.replace(INVOICE, reference_number=" 1232 ")).invoice
    assert invoice.reference_number == " 1232 "


@pytest.mark.parametrize(
    ("code", "name", "expected"),
    [
        pytest.param("fi", "Finland", ("FI", "Finland"), id="a two letter code is upper cased"),
        pytest.param("SE", None, ("SE", None), id="a code without a name stays a code"),
        pytest.param("FIN", "Finland", (None, "Finland"), id="a three letter code is left out"),
        pytest.param("Suomi", None, (None, "Suomi"), id="a name in the code member becomes the name"),
        pytest.param("", "", (None, None), id="empty members are null"),
        pytest.param(None, None, (None, None), id="no country is none"),
    ],
)
def test_a_country_code_is_kept_only_when_it_is_two_letters(
    code: str | None, name: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert country(code, name) == expected


# --------------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------------


def test_an_invoice_with_several_vat_rates_keeps_each_row_and_adds_the_totals() -> None:
    event = _invoice_event()
    invoice = event.invoice
    assert isinstance(event, SeveraInvoiceReady)
    assert invoice.number == 20261
    assert (invoice.invoice_date, invoice.due_date) == (dt.date(2026, 11, 30), dt.date(2026, 12, 14))
    assert invoice.status == "Ready for accounting"
    assert (invoice.currency.code, invoice.currency.rate) == ("EUR", Decimal("1"))
    assert invoice.customer.account_guid == uuid.UUID(CUSTOMER_GUID)
    assert (invoice.customer.name, invoice.customer.business_id) == ("Acme Oy", "FI12345678")
    assert invoice.main_case_guid == uuid.UUID(CASE_GUID)
    assert invoice.credited_invoice is None
    assert invoice.entry_date == dt.date(2026, 11, 27)  # Severa's EntryDate, not the invoice date
    assert [row.row_number for row in invoice.rows] == [1, 2, 3]
    body = event.model_dump(mode="json")["invoice"]
    assert [row["vat_rate_percent"] for row in body["rows"]] == ["25.5", "14", "0"]
    assert [row["vat_amount"] for row in body["rows"]] == ["255.00", "28.00", "0.00"]
    assert [row["amount_including_vat"] for row in body["rows"]] == ["1255.00", "228.00", "50.00"]
    assert (body["total_excluding_vat"], body["total_including_vat"]) == ("1250.00", "1533.00")
    assert event.occurred_at == OBSERVED
    assert event.source.business_unit_guid == uuid.UUID(BUSINESS_UNIT_GUID)


def test_an_invoice_carries_severas_header_members_the_accounting_side_needs() -> None:
    invoice = dataclasses.replace(
        INVOICE,
        account_number=1042,
        language_code="fi-FI",
        order_number="ORD-5",
        po_number="PO-9",
    )
    event = _invoice_event(invoice).invoice
    assert (event.customer.number, event.language_code, event.order_number, event.po_number) == (
        1042,
        "fi-FI",
        "ORD-5",
        "PO-9",
    )


def test_the_rows_carry_their_article_code_cases_and_phases() -> None:
    row = dataclasses.replace(
        ROWS[0], article_identifier="DEV", case_guids=(CASE_GUID,), phase_guids=(PHASE_GUID, PHASE_GUID)
    )
    (event_row,) = _invoice_event(dataclasses.replace(INVOICE, rows=(row,))).invoice.rows
    assert event_row.article_identifier == "DEV"
    assert event_row.case_guids == (uuid.UUID(CASE_GUID),)
    assert event_row.phase_guids == (uuid.UUID(PHASE_GUID), uuid.UUID(PHASE_GUID))


RECEIVER = {
    "receiver_name": "Acme Oy Laskutus",
    "receiver_address_line": "PL 12",
    "receiver_postal_code": "00101",
    "receiver_city": "Helsinki",
    "receiver_state": "Uusimaa",
    "receiver_country": "FI",
    "receiver_contact_name": "Maija",
    "receiver_contact_email": "maija@acme.example",
}


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param(
            RECEIVER,
            {
                "name": "Acme Oy Laskutus",
                "address": {
                    "lines": ["PL 12"],
                    "postal_code": "00101",
                    "city": "Helsinki",
                    "region": "Uusimaa",
                    "country_code": "FI",
                    "country_name": None,
                },
                "contact_name": "Maija",
                "contact_email": "maija@acme.example",
            },
            id="the receiver members become the receiver with its one address line",
        ),
        pytest.param(
            {**RECEIVER, "receiver_country": "Finland"},
            {
                "name": "Acme Oy Laskutus",
                "address": {
                    "lines": ["PL 12"],
                    "postal_code": "00101",
                    "city": "Helsinki",
                    "region": "Uusimaa",
                    "country_code": None,
                    "country_name": "Finland",
                },
                "contact_name": "Maija",
                "contact_email": "maija@acme.example",
            },
            id="a receiver country that is not two letters is its name",
        ),
        pytest.param(
            {"receiver_name": "Acme Oy", "receiver_address_line": ""},
            {"name": "Acme Oy", "address": None, "contact_name": None, "contact_email": None},
            id="a receiver without address members has no address",
        ),
        pytest.param({key: "" for key in RECEIVER}, None, id="an invoice naming no receiver has none"),
    ],
)
def test_the_receiver_is_whom_severa_addressed_the_invoice_to(
    members: dict[str, str], expected: dict[str, Any] | None
) -> None:
    event = _invoice_event(dataclasses.replace(INVOICE, **members))
    assert event.model_dump(mode="json")["invoice"]["receiver"] == expected


def test_an_invoice_without_its_entry_date_is_refused_rather_than_guessed() -> None:
    with pytest.raises(UnpublishableRecord) as caught:
        _invoice_event(dataclasses.replace(INVOICE, entry_date=None))
    assert caught.value.field == "invoice.entry_date"


def test_a_row_naming_a_case_that_is_no_guid_is_refused_naming_it() -> None:
    row = dataclasses.replace(ROWS[0], case_guids=(CASE_GUID, "case-7"))
    with pytest.raises(UnpublishableRecord) as caught:
        _invoice_event(dataclasses.replace(INVOICE, rows=(row,)))
    assert caught.value.field == "invoice.rows[0].case_guids[1]"


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        pytest.param(Decimal("25.50"), "25.5", id="trailing zeros of a rate are dropped"),
        pytest.param(Decimal("24.00"), "24", id="a whole rate has no decimals"),
        pytest.param(Decimal("10"), "10", id="ten stays ten rather than an exponent"),
        pytest.param(Decimal("0.00"), "0", id="a zero rate is zero"),
        pytest.param(None, None, id="a row without a rate has none"),
    ],
)
def test_a_vat_rate_is_written_as_its_percent(rate: Decimal | None, expected: str | None) -> None:
    invoice = dataclasses.replace(INVOICE, rows=(dataclasses.replace(ROWS[0], vat_rate_percent=rate),))
    assert (
        _invoice_event(invoice).model_dump(mode="json")["invoice"]["rows"][0]["vat_rate_percent"] == expected
    )


def test_money_keeps_severas_decimals_unrounded() -> None:
    row = dataclasses.replace(ROWS[0], unit_price=Decimal("11.4925"), amount_excluding_vat=Decimal("114.925"))
    body = _invoice_event(dataclasses.replace(INVOICE, rows=(row,))).model_dump(mode="json")["invoice"]
    assert body["rows"][0]["unit_price"] == "11.4925"
    assert body["rows"][0]["amount_excluding_vat"] == "114.925"
    assert body["total_excluding_vat"] == "114.925"


@pytest.mark.parametrize(
    ("credited_number", "expected_number"),
    [
        pytest.param(20250, 20250, id="a credit note names the invoice it credits and its number"),
        pytest.param(None, None, id="a credit note whose credited invoice was not read has no number"),
    ],
)
def test_a_credit_note_names_its_credited_invoice(
    credited_number: int | None, expected_number: int | None
) -> None:
    event = _invoice_event(CREDIT_NOTE, credited_number)
    invoice = event.invoice
    assert invoice.is_credit_note is True
    assert invoice.credited_invoice is not None
    assert invoice.credited_invoice.guid == uuid.UUID(CREDITED_GUID)
    assert invoice.credited_invoice.number == expected_number
    body = event.model_dump(mode="json")["invoice"]
    assert (body["total_excluding_vat"], body["total_including_vat"]) == ("-1000.00", "-1255.00")
    assert body["rows"][0]["quantity"] == "-10"


@pytest.mark.parametrize(
    ("code", "rate", "expected_code"),
    [
        pytest.param("SEK", Decimal("11.4925"), "SEK", id="a foreign currency keeps its code and rate"),
        pytest.param("usd", Decimal("1.0825"), "USD", id="a lower case currency code is upper cased"),
    ],
)
def test_a_foreign_currency_invoice_carries_its_currency(
    code: str, rate: Decimal, expected_code: str
) -> None:
    event = _invoice_event(dataclasses.replace(INVOICE, currency_code=code, currency_rate=rate))
    assert event.invoice.currency.code == expected_code
    assert event.model_dump(mode="json")["invoice"]["currency"]["rate"] == format(rate, "f")
    # Amounts are in the invoice's currency as Severa gives them, not converted.
    assert event.invoice.total_excluding_vat == INVOICE.total_excluding_vat


def test_an_invoices_empty_strings_are_sent_as_null() -> None:
    blank_row = dataclasses.replace(
        ROWS[0], article_name="", description="", unit_code="", vat_code="", sales_account_number=""
    )
    blank = dataclasses.replace(
        INVOICE,
        reference_number="",
        our_reference="",
        your_reference="",
        receiver_vat_number="",
        main_case_guid="",
        business_unit_guid="",
        rows=(blank_row,),
    )
    event = _invoice_event(blank)
    invoice = event.invoice
    assert (invoice.reference_number, invoice.our_reference, invoice.your_reference) == (None, None, None)
    assert invoice.customer.business_id is None
    assert invoice.main_case_guid is None
    assert event.source.business_unit_guid is None
    row = invoice.rows[0]
    assert (row.article_name, row.description, row.unit, row.vat_code, row.sales_account_number) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert '""' not in event.model_dump_json()


def test_an_invoice_without_a_number_is_not_ready() -> None:
    with pytest.raises(InvoiceNotReady, match=r"invoice\.number is missing") as caught:
        _invoice_event(dataclasses.replace(INVOICE, number=None))
    assert caught.value.field == "invoice.number"
    assert caught.value.reason == "invoice_not_ready"
    assert isinstance(caught.value, UnpublishableRecord)
    assert caught.value.category is Category.PERMANENT


@pytest.mark.parametrize(
    ("invoice", "credited_number", "field"),
    [
        pytest.param(
            dataclasses.replace(INVOICE, number=0), None, "invoice.number", id="an invoice numbered zero"
        ),
        pytest.param(
            dataclasses.replace(INVOICE, status=""), None, "invoice.status", id="an invoice without a status"
        ),
        pytest.param(
            dataclasses.replace(INVOICE, currency_code=None),
            None,
            "invoice.currency.code",
            id="an invoice without a currency",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, currency_code="EURO"),
            None,
            "invoice.currency.code",
            id="an invoice whose currency is not iso 4217",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, currency_rate=Decimal(0)),
            None,
            "invoice.currency.rate",
            id="an invoice with a zero currency rate",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, account_name=""),
            None,
            "invoice.customer.name",
            id="an invoice without its customer's name",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, account_guid="acme"),
            None,
            "invoice.customer.account_guid",
            id="an invoice whose customer guid is not a guid",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, rows=(dataclasses.replace(ROWS[0], vat_rate_percent=Decimal(120)),)),
            None,
            "invoice.rows[0].vat_rate_percent",
            id="a row whose vat rate is above 100 percent",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, rows=(ROWS[0], dataclasses.replace(ROWS[1], number=-1))),
            None,
            "invoice.rows[1].row_number",
            id="a row with a negative row number",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, rows=(ROWS[0], dataclasses.replace(ROWS[1], number=1))),
            None,
            "invoice",
            id="two rows with the same row number",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, rows=(dataclasses.replace(ROWS[0], quantity=Decimal("1E+20")),)),
            None,
            "invoice.rows[0].quantity",
            id="a quantity beyond 18 integer digits",
        ),
        pytest.param(
            dataclasses.replace(INVOICE, credited_invoice_guid="20250"),
            None,
            "invoice.credited_invoice.guid",
            id="a credited invoice named by something else than its guid",
        ),
        pytest.param(
            INVOICE,
            20250,
            "invoice.credited_invoice.number",
            id="a credited number without a credited invoice",
        ),
        pytest.param(
            CREDIT_NOTE, 0, "invoice.credited_invoice.number", id="a credited invoice numbered zero"
        ),
    ],
)
def test_an_invoice_the_contract_cannot_carry_is_refused_naming_the_field(
    invoice: Invoice, credited_number: int | None, field: str
) -> None:
    with pytest.raises(UnpublishableRecord) as caught:
        _invoice_event(invoice, credited_number)
    assert caught.value.field == field
    assert field in caught.value.message
    assert invoice.guid in caught.value.message
    assert not isinstance(caught.value, InvoiceNotReady)


# --------------------------------------------------------------------------------------------------
# Hour entries
# --------------------------------------------------------------------------------------------------


def test_an_hour_entry_is_carried_as_severa_holds_it() -> None:
    event = _entry_event()
    entry = event.hour_entry
    assert isinstance(event, SeveraHourEntryChanged)
    assert (entry.guid, entry.user_guid, entry.case_guid, entry.phase_guid, entry.work_type_guid) == tuple(
        uuid.UUID(guid) for guid in (ENTRY_GUID, USER_GUID, CASE_GUID, PHASE_GUID, WORK_TYPE_GUID)
    )
    assert (entry.date, entry.description, entry.billable) == (dt.date(2026, 11, 20), "Wireframes", True)
    assert event.model_dump(mode="json")["hour_entry"]["quantity"] == "7.50"
    assert (entry.invoiced, entry.invoice_guid, entry.user_code, entry.case_number) == (
        False,
        None,
        None,
        None,
    )
    assert event.source.business_unit_guid is None


def test_an_hour_entry_on_an_invoice_is_invoiced() -> None:
    entry = _entry_event(invoice_guid=INVOICE_GUID).hour_entry
    assert (entry.invoiced, entry.invoice_guid) == (True, uuid.UUID(INVOICE_GUID))


def test_an_hour_entry_carries_the_user_code_and_case_number_where_the_service_gives_them() -> None:
    event = hour_entry_changed(
        ENTRY,
        organization_id=ORG,
        observed_at=OBSERVED,
        published_at=PUBLISHED,
        user_code="JDOE",
        case_number=1001,
    )
    assert (event.hour_entry.user_code, event.hour_entry.case_number) == ("JDOE", 1001)


def test_an_hour_entrys_empty_strings_are_sent_as_null() -> None:
    entry = _entry_event(dataclasses.replace(ENTRY, description="", work_type_guid="")).hour_entry
    assert (entry.description, entry.work_type_guid) == (None, None)


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        pytest.param(
            dataclasses.replace(ENTRY, quantity=Decimal("999.01")),
            "hour_entry.quantity",
            id="more hours than severa's 999",
        ),
        pytest.param(
            dataclasses.replace(ENTRY, user_guid="u-1"),
            "hour_entry.user_guid",
            id="a user guid that is not one",
        ),
        pytest.param(
            dataclasses.replace(ENTRY, phase_guid=""),
            "hour_entry.phase_guid",
            id="an entry without its phase",
        ),
    ],
)
def test_an_hour_entry_the_contract_cannot_carry_is_refused_naming_the_field(
    entry: HourEntry, field: str
) -> None:
    with pytest.raises(UnpublishableRecord) as caught:
        _entry_event(entry)
    assert caught.value.field == field


# --------------------------------------------------------------------------------------------------
# Customers refused, and what every event shares
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "head_office", "field"),
    [
        pytest.param(
            dataclasses.replace(CUSTOMER, inserted_at=None),
            HEAD_OFFICE,
            "customer.created_at",
            id="a customer without its insert time",
        ),
        pytest.param(
            dataclasses.replace(CUSTOMER, name=""),
            HEAD_OFFICE,
            "customer.name",
            id="a customer without a name",
        ),
        pytest.param(
            dataclasses.replace(CUSTOMER, currency_code="€"),
            HEAD_OFFICE,
            "customer.currency_code",
            id="a customer whose currency is not iso 4217",
        ),
        pytest.param(
            dataclasses.replace(CUSTOMER, payment_term_days=-1),
            HEAD_OFFICE,
            "customer.payment_term_days",
            id="a customer with a negative payment term",
        ),
        pytest.param(
            CUSTOMER,
            dataclasses.replace(HEAD_OFFICE, guid="3f2b8c1e-0000-4000-8000-00000000a999"),
            "customer.head_office_address",
            id="an address that is not the customer's head office",
        ),
        pytest.param(
            CUSTOMER,
            dataclasses.replace(HEAD_OFFICE, lines=("1", "2", "3", "4")),
            "customer.head_office_address.lines",
            id="an address with more than three lines",
        ),
    ],
)
def test_a_customer_the_contract_cannot_carry_is_refused_naming_the_field(
    customer: Customer, head_office: PostalAddress, field: str
) -> None:
    with pytest.raises(UnpublishableRecord) as caught:
        _customer_event(customer, head_office)
    assert caught.value.field == field
    assert caught.value.context["field"] == field


@pytest.mark.parametrize(
    ("build", "field"),
    [
        pytest.param(
            lambda: customer_changed(
                CUSTOMER, head_office=None, organization_id=" acme", published_at=PUBLISHED
            ),
            "source.organization_id",
            id="an organisation id with a leading blank",
        ),
        pytest.param(
            lambda: hour_entry_changed(
                ENTRY,
                organization_id=ORG,
                observed_at=dt.datetime(2026, 11, 20, 12, 0),
                published_at=PUBLISHED,
            ),
            "occurred_at",
            id="an observation time without a zone",
        ),
        pytest.param(
            lambda: invoice_ready(
                INVOICE,
                credited_number=None,
                organization_id=ORG,
                observed_at=OBSERVED,
                published_at=dt.datetime(2026, 11, 20, 12, 0),
            ),
            "published_at",
            id="a publication time without a zone",
        ),
    ],
)
def test_an_envelope_the_contract_cannot_carry_is_refused_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(PermanentError) as caught:
        build()
    assert isinstance(caught.value, UnpublishableRecord)
    assert caught.value.field == field


def _later() -> dt.datetime:
    return PUBLISHED + dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("build", "changed"),
    [
        pytest.param(
            lambda: _customer_event(),
            lambda: _customer_event(dataclasses.replace(CUSTOMER, updated_at=_later(), name="Acme Group Oy")),
            id="a customer changes its id with its updated stamp",
        ),
        pytest.param(
            lambda: _invoice_event(),
            lambda: _invoice_event(dataclasses.replace(INVOICE, due_date=dt.date(2026, 12, 31))),
            id="an invoice changes its id with its due date",
        ),
        pytest.param(
            lambda: _invoice_event(),
            lambda: _invoice_event(
                dataclasses.replace(
                    INVOICE, rows=(*ROWS[:2], dataclasses.replace(ROWS[2], vat_amount=Decimal(1)))
                )
            ),
            id="an invoice changes its id with one row's vat amount",
        ),
        pytest.param(
            lambda: _invoice_event(CREDIT_NOTE, None),
            lambda: _invoice_event(CREDIT_NOTE, 20250),
            id="a credit note changes its id once its credited number is known",
        ),
        pytest.param(
            lambda: _entry_event(),
            lambda: _entry_event(dataclasses.replace(ENTRY, quantity=Decimal("8.00"))),
            id="an hour entry changes its id with its hours",
        ),
        pytest.param(
            lambda: _entry_event(),
            lambda: _entry_event(invoice_guid=INVOICE_GUID),
            id="an hour entry changes its id once it is invoiced",
        ),
    ],
)
def test_the_event_id_is_the_same_for_the_same_record_and_new_for_a_changed_one(
    build: Any, changed: Any
) -> None:
    first, again, other = build(), build(), changed()
    assert first.event_id == again.event_id
    assert first.event_id != other.event_id
    assert first.event_id.version == 5


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda when: customer_changed(
                CUSTOMER, head_office=HEAD_OFFICE, organization_id=ORG, published_at=when
            ),
            id="a republished customer keeps its id",
        ),
        pytest.param(
            lambda when: invoice_ready(
                INVOICE, credited_number=None, organization_id=ORG, observed_at=when, published_at=when
            ),
            id="an invoice seen again at a later poll keeps its id",
        ),
        pytest.param(
            lambda when: hour_entry_changed(ENTRY, organization_id=ORG, observed_at=when, published_at=when),
            id="an hour entry seen again at a later poll keeps its id",
        ),
    ],
)
def test_the_event_id_does_not_depend_on_when_it_was_seen_or_published(build: Any) -> None:
    assert build(PUBLISHED).event_id == build(_later()).event_id


def test_the_content_ids_hash_the_published_entity() -> None:
    invoice_event = _invoice_event()
    assert invoice_event.event_id == severa_event_id(
        "severa.invoice.ready", invoice_event.invoice.guid, content_stamp(invoice_event.invoice)
    )
    entry_event = _entry_event()
    assert entry_event.event_id == severa_event_id(
        "severa.hourentry.changed", entry_event.hour_entry.guid, content_stamp(entry_event.hour_entry)
    )


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _customer_event(), id="a customer with a head office"),
        pytest.param(lambda: _customer_event(head_office=None), id="a customer without a head office"),
        pytest.param(lambda: _invoice_event(), id="an invoice with several vat rates"),
        pytest.param(lambda: _invoice_event(CREDIT_NOTE, 20250), id="a credit note"),
        pytest.param(
            lambda: _invoice_event(
                dataclasses.replace(INVOICE, currency_code="SEK", currency_rate=Decimal("11.4925"))
            ),
            id="a foreign currency invoice",
        ),
        pytest.param(lambda: _entry_event(), id="an hour entry"),
        pytest.param(lambda: _entry_event(invoice_guid=INVOICE_GUID), id="an invoiced hour entry"),
    ],
)
def test_every_event_round_trips_through_its_json(build: Any) -> None:
    event: BaseModel = build()
    body = event.model_dump_json()
    assert type(event).model_validate_json(body) == event
    assert parse_severa_event(body) == event
