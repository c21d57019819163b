"""The Severa change-event contracts: what a consumer may rely on, and how event ids are derived."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.severa_events import (
    EVENT_ID_NAMESPACE,
    SeveraCustomer,
    SeveraCustomerChanged,
    SeveraEvent,
    SeveraHourEntry,
    SeveraHourEntryChanged,
    SeveraInvoice,
    SeveraInvoiceReady,
    SeveraSource,
    change_stamp,
    content_stamp,
    customer_stamp,
    parse_severa_event,
    severa_event_id,
)

CUSTOMER_GUID = "3f2b8c1e-0a4d-4e6b-9c51-7d2e1f0a9b31"
INVOICE_GUID = "8e1d2c3b-4a5f-4e6d-8c7b-9a0b1c2d3e4f"
CREDITED_GUID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
ENTRY_GUID = "c0ffee00-1234-4abc-8def-0123456789ab"
PUBLISHED = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
SOURCE = SeveraSource(organization_id="acme-oy")


def envelope(event_type: str, **overrides: Any) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "event_id": "6f1c1f4e-8d53-4a8a-9d7e-0d1f2b3c4d5e",
        "event_type": event_type,
        "occurred_at": "2026-11-20T10:00:00Z",
        "published_at": "2026-11-20T10:00:05+02:00",
        "source": {"system": "severa", "organization_id": "acme-oy"},
        **overrides,
    }


def customer(**overrides: Any) -> dict[str, Any]:
    return {
        "guid": CUSTOMER_GUID,
        "number": 1042,
        "name": "Esimerkki Oy",
        "business_id": "1234567-8",
        "is_active": True,
        "currency_code": "EUR",
        "language_code": "fi",
        "payment_term_days": 14,
        "e_invoice": {"address": "003712345678", "operator": "003721291126"},
        "head_office_address": {
            "lines": ["Mannerheimintie 1 A"],
            "postal_code": "00100",
            "city": "Helsinki",
            "country_code": "FI",
        },
        "head_office_is_billing_address": True,
        "contact": {"email": "laskut@esimerkki.fi", "phone": "+358 40 123 4567"},
        "created_at": "2024-01-02T08:00:00Z",
        "updated_at": "2026-11-20T10:00:00Z",
        **overrides,
    }


def row(number: int, **overrides: Any) -> dict[str, Any]:
    return {
        "row_number": number,
        "article_name": "Design work",
        "quantity": "10",
        "unit": "h",
        "unit_price": "100.00",
        "vat_rate_percent": "25.5",
        "vat_code": "KOMY",
        "vat_amount": "255.00",
        "amount_excluding_vat": "1000.00",
        "amount_including_vat": "1255.00",
        "sales_account_number": "3000",
        "case_guids": ["0b0b0b0b-0000-4000-8000-000000000001"],
        "phase_guids": ["0c0c0c0c-0000-4000-8000-000000000002"],
        **overrides,
    }


def invoice(**overrides: Any) -> dict[str, Any]:
    return {
        "guid": INVOICE_GUID,
        "number": 20260042,
        "invoice_date": "2026-11-20",
        "due_date": "2026-12-04",
        "entry_date": "2026-11-20",
        "status": "Ready for accounting",
        "is_credit_note": False,
        "reference_number": "20260 04212",
        "currency": {"code": "EUR", "rate": "1"},
        "total_excluding_vat": "1000.00",
        "total_including_vat": "1255.00",
        "customer": {"account_guid": CUSTOMER_GUID, "number": 1042, "name": "Esimerkki Oy"},
        "our_reference": "Maija Meikäläinen",
        "your_reference": "Matti",
        "order_number": "PO-77",
        "receiver": {
            "name": "Esimerkki Oy",
            "address": {"lines": ["PL 12"], "postal_code": "00101", "city": "Helsinki", "country_code": "FI"},
        },
        "rows": [row(1)],
        **overrides,
    }


def hour_entry(**overrides: Any) -> dict[str, Any]:
    return {
        "guid": ENTRY_GUID,
        "user_guid": "0a0a0a0a-0000-4000-8000-00000000000a",
        "case_guid": "0b0b0b0b-0000-4000-8000-000000000001",
        "phase_guid": "0c0c0c0c-0000-4000-8000-000000000002",
        "work_type_guid": "0d0d0d0d-0000-4000-8000-000000000003",
        "date": "2026-11-19",
        "quantity": "7.50",
        "description": "Sprint review",
        "billable": True,
        "invoiced": False,
        **overrides,
    }


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


# --------------------------------------------------------------------------------------------------
# Valid events
# --------------------------------------------------------------------------------------------------


def test_a_complete_customer_parses() -> None:
    event = SeveraCustomerChanged.model_validate_json(
        body(envelope("severa.customer.changed", customer=customer()))
    )
    assert event.customer.number == 1042
    assert event.customer.head_office_address is not None
    assert event.customer.head_office_address.country_code == "FI"
    assert event.customer.stamp == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def test_a_credit_note_names_the_invoice_it_credits_and_carries_negative_sums() -> None:
    credit = invoice(
        is_credit_note=True,
        credited_invoice={"guid": CREDITED_GUID, "number": 20260017},
        total_excluding_vat="-1000.00",
        total_including_vat="-1255.00",
        rows=[
            row(
                1,
                quantity="-10",
                vat_amount="-255.00",
                amount_excluding_vat="-1000.00",
                amount_including_vat="-1255.00",
            )
        ],
    )
    event = SeveraInvoiceReady.model_validate_json(body(envelope("severa.invoice.ready", invoice=credit)))
    assert event.invoice.is_credit_note
    assert event.invoice.credited_invoice is not None
    assert event.invoice.credited_invoice.guid == uuid.UUID(CREDITED_GUID)
    assert event.invoice.credited_invoice.number == 20260017
    assert event.invoice.total_including_vat == Decimal("-1255.00")
    assert event.invoice.rows[0].quantity == Decimal(-10)


def test_the_credited_invoice_number_may_be_unknown() -> None:
    credit = invoice(is_credit_note=True, credited_invoice={"guid": CREDITED_GUID})
    event = SeveraInvoiceReady.model_validate_json(body(envelope("severa.invoice.ready", invoice=credit)))
    assert event.invoice.credited_invoice is not None
    assert event.invoice.credited_invoice.number is None


def test_a_foreign_currency_invoice_keeps_its_code_and_rate_exactly() -> None:
    foreign = invoice(currency={"code": "SEK", "rate": "11.4925"}, total_excluding_vat="12000.00")
    event = SeveraInvoiceReady.model_validate_json(body(envelope("severa.invoice.ready", invoice=foreign)))
    assert (event.invoice.currency.code, event.invoice.currency.rate) == ("SEK", Decimal("11.4925"))
    assert json.loads(event.model_dump_json())["invoice"]["currency"] == {"code": "SEK", "rate": "11.4925"}


def test_rows_may_have_several_vat_rates() -> None:
    rows = [
        row(1, vat_rate_percent="25.5", vat_amount="255.00", amount_including_vat="1255.00"),
        row(2, vat_rate_percent="14", vat_amount="140.00", amount_including_vat="1140.00"),
        row(3, vat_rate_percent="10", vat_amount="100.00", amount_including_vat="1100.00"),
        row(4, vat_rate_percent="0", vat_code="EUMY", vat_amount="0.00", amount_including_vat="1000.00"),
        row(5, vat_rate_percent=None, vat_code=None, vat_amount="0", amount_including_vat="1000.00"),
    ]
    event = SeveraInvoiceReady.model_validate_json(
        body(envelope("severa.invoice.ready", invoice=invoice(rows=rows)))
    )
    assert [r.vat_rate_percent for r in event.invoice.rows] == [
        Decimal("25.5"),
        Decimal(14),
        Decimal(10),
        Decimal(0),
        None,
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"receiver": None}, id="an invoice without a receiver is valid"),
        pytest.param({"receiver": {"name": "Esimerkki Oy"}}, id="a receiver without an address is valid"),
        pytest.param(
            {"receiver": {"name": "X", "address": {}}}, id="an address with every part missing is valid"
        ),
        pytest.param({"reference_number": None, "our_reference": None}, id="references are optional"),
        pytest.param({"rows": []}, id="an invoice without rows is the accounting side's problem"),
    ],
)
def test_optional_invoice_parts_may_be_missing(overrides: dict[str, Any]) -> None:
    data = invoice(**overrides)
    event = SeveraInvoiceReady.model_validate_json(body(envelope("severa.invoice.ready", invoice=data)))
    assert event.invoice.number == 20260042


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"head_office_address": None, "head_office_is_billing_address": None}, id="no address"),
        pytest.param({"contact": None, "e_invoice": None}, id="no contact and no e-invoicing address"),
        pytest.param({"number": None}, id="a customer Severa has not numbered yet"),
        pytest.param({"updated_at": None}, id="a customer never updated since it was created"),
        pytest.param({"business_id": None, "currency_code": None, "language_code": None}, id="sparse"),
    ],
)
def test_optional_customer_parts_may_be_missing(overrides: dict[str, Any]) -> None:
    event = SeveraCustomerChanged.model_validate_json(
        body(envelope("severa.customer.changed", customer=customer(**overrides)))
    )
    assert event.customer.name == "Esimerkki Oy"


def test_an_invoiced_hour_entry_names_its_invoice() -> None:
    data = hour_entry(invoiced=True, invoice_guid=INVOICE_GUID)
    event = SeveraHourEntryChanged.model_validate_json(
        body(envelope("severa.hourentry.changed", hour_entry=data))
    )
    assert event.hour_entry.invoice_guid == uuid.UUID(INVOICE_GUID)
    assert event.hour_entry.quantity == Decimal("7.50")


def test_unknown_fields_are_ignored_at_every_level() -> None:
    data = invoice(added_later=1, currency={"code": "EUR", "rate": "1", "name": "euro"})
    data["rows"][0]["row_discount"] = "5"
    event = SeveraInvoiceReady.model_validate_json(
        body(envelope("severa.invoice.ready", invoice=data, trace={"id": "x"}))
    )
    assert "added_later" not in event.invoice.model_dump()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            envelope("severa.customer.changed", customer=customer()), SeveraCustomerChanged, id="customer"
        ),
        pytest.param(envelope("severa.invoice.ready", invoice=invoice()), SeveraInvoiceReady, id="invoice"),
        pytest.param(
            envelope("severa.hourentry.changed", hour_entry=hour_entry()),
            SeveraHourEntryChanged,
            id="hour entry",
        ),
    ],
)
def test_a_body_is_read_by_its_event_type(data: dict[str, Any], expected: type[BaseModel]) -> None:
    assert type(parse_severa_event(body(data))) is expected


def test_a_body_of_another_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="event_type"):
        parse_severa_event(body(envelope("workhour.created")))


# --------------------------------------------------------------------------------------------------
# Refused
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"total_including_vat": 1255.0}, "total_including_vat", id="money as a JSON number is refused"
        ),
        pytest.param(
            {"total_including_vat": 1255}, "total_including_vat", id="money as a JSON integer is refused"
        ),
        pytest.param(
            {"total_excluding_vat": "1e3"}, "total_excluding_vat", id="money with an exponent is refused"
        ),
        pytest.param(
            {"total_excluding_vat": "1 000,00"}, "total_excluding_vat", id="money in local format is refused"
        ),
        pytest.param({"total_excluding_vat": "NaN"}, "total_excluding_vat", id="not a number is not money"),
        pytest.param({"total_excluding_vat": ""}, "total_excluding_vat", id="an empty string is not money"),
        pytest.param(
            {"currency": {"code": "eur", "rate": "1"}}, "currency.code", id="currency codes are upper case"
        ),
        pytest.param(
            {"currency": {"code": "EURO", "rate": "1"}}, "currency.code", id="currency codes have 3 letters"
        ),
        pytest.param(
            {"currency": {"code": "EUR", "rate": "0"}}, "currency.rate", id="a zero rate is refused"
        ),
        pytest.param(
            {"currency": {"code": "EUR", "rate": "-1"}}, "currency.rate", id="a negative rate is refused"
        ),
        pytest.param({"number": None}, "number", id="an invoice without a number is not ready"),
        pytest.param({"number": "20260042"}, "number", id="a number must be a JSON number"),
        pytest.param({"invoice_date": "20.11.2026"}, "invoice_date", id="dates are ISO 8601"),
        pytest.param({"due_date": None}, "due_date", id="the due date is required"),
        pytest.param({"is_credit_note": "false"}, "is_credit_note", id="a string is not a boolean"),
        pytest.param(
            {"credited_invoice": {"number": 1}},
            "credited_invoice.guid",
            id="a credited invoice needs its GUID",
        ),
        pytest.param({"guid": "INV-1"}, "guid", id="a GUID must be a GUID"),
        pytest.param({"rows": [row(1), row(1)]}, "row_number", id="two rows with one number are refused"),
        pytest.param(
            {"rows": [row(1, vat_rate_percent="125")]}, "vat_rate_percent", id="VAT over 100 % is refused"
        ),
        pytest.param(
            {"rows": [row(1, vat_rate_percent=25.5)]}, "vat_rate_percent", id="a VAT rate is a string"
        ),
        pytest.param({"rows": [row(1, unit_price=None)]}, "unit_price", id="a row needs its unit price"),
        pytest.param(
            {"receiver": {"address": {"country_code": "FIN"}}},
            "country_code",
            id="country codes have 2 letters",
        ),
        pytest.param(
            {"receiver": {"address": {"lines": ["a", "b", "c", "d"]}}},
            "lines",
            id="at most three address lines",
        ),
        pytest.param({"status": ""}, "status", id="an empty status is refused"),
    ],
)
def test_invoice_violations_name_the_field(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SeveraInvoiceReady.model_validate_json(
            body(envelope("severa.invoice.ready", invoice=invoice(**overrides)))
        )
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            envelope("severa.customer.changed", customer=customer(), schema_version="2"),
            "schema_version",
            id="an unknown contract version is refused",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(), occurred_at="2026-11-20T10:00:00"),
            "occurred_at",
            id="a time without offset is ambiguous",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(updated_at="2026-11-20T10:00:00")),
            "updated_at",
            id="Severa's stamp must carry its zone",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(), source={"system": "netvisor"}),
            "source",
            id="the source is Severa",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(), source={"organization_id": " acme"}),
            "organization_id",
            id="the organisation id is compared exactly, so edge blanks are refused",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(is_active=1)),
            "is_active",
            id="a number is not a boolean",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(number="1042")),
            "number",
            id="the customer code is a number",
        ),
        pytest.param(
            envelope("severa.customer.changed", customer=customer(e_invoice={"operator": "003721291126"})),
            "e_invoice.address",
            id="an e-invoicing operator without an address is refused",
        ),
        pytest.param(
            envelope("severa.hourentry.changed", hour_entry=hour_entry(quantity="1000")),
            "quantity",
            id="more than 999 hours is refused",
        ),
        pytest.param(
            envelope("severa.hourentry.changed", hour_entry=hour_entry(quantity=7.5)),
            "quantity",
            id="hours are a decimal string too",
        ),
        pytest.param(
            envelope("severa.hourentry.changed", hour_entry=hour_entry(invoiced=True)),
            "invoiced",
            id="invoiced without an invoice is refused",
        ),
        pytest.param(
            envelope("severa.hourentry.changed", hour_entry=hour_entry(invoice_guid=INVOICE_GUID)),
            "invoiced",
            id="an invoice without the invoiced flag is refused",
        ),
        pytest.param(
            envelope("severa.invoice.ready", hour_entry=hour_entry()),
            "invoice",
            id="an invoice event needs its invoice",
        ),
    ],
)
def test_envelope_and_entity_violations_name_the_field(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_severa_event(body(data))
    assert expected in str(caught.value)


# --------------------------------------------------------------------------------------------------
# Money round-trips as strings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        pytest.param("1255.00", id="trailing zeros are kept"),
        pytest.param("-1255.10", id="a negative amount is kept"),
        pytest.param("0", id="zero is kept"),
        pytest.param("0.0000000001", id="ten decimals are kept"),
        pytest.param("999999999999999999.99", id="eighteen integer digits are kept"),
    ],
)
def test_money_round_trips_as_the_same_string(amount: str) -> None:
    data = envelope("severa.invoice.ready", invoice=invoice(total_including_vat=amount))
    event = SeveraInvoiceReady.model_validate_json(body(data))
    written = json.loads(event.model_dump_json())
    assert written["invoice"]["total_including_vat"] == amount
    assert SeveraInvoiceReady.model_validate_json(event.model_dump_json()) == event


def test_every_decimal_is_written_as_a_string() -> None:
    event = SeveraInvoiceReady.model_validate_json(body(envelope("severa.invoice.ready", invoice=invoice())))
    written = json.loads(event.model_dump_json())
    first = written["invoice"]["rows"][0]
    decimals = [written["invoice"]["currency"]["rate"], written["invoice"]["total_excluding_vat"]]
    decimals += [first[name] for name in ("quantity", "unit_price", "vat_rate_percent", "vat_amount")]
    assert all(isinstance(value, str) for value in decimals)


def test_a_decimal_built_in_python_is_written_without_an_exponent() -> None:
    built = SeveraInvoice.model_validate_json(body(invoice())).model_copy(
        update={"total_excluding_vat": Decimal("1E+3")}
    )
    assert json.loads(built.model_dump_json())["total_excluding_vat"] == "1000"


# --------------------------------------------------------------------------------------------------
# Event ids
# --------------------------------------------------------------------------------------------------


def test_the_namespace_is_the_documented_one() -> None:
    assert (
        uuid.uuid5(uuid.NAMESPACE_URL, "https://severa-connector/schemas/severa-events") == EVENT_ID_NAMESPACE
    )


def test_the_event_id_is_a_uuid5_over_type_guid_and_stamp() -> None:
    guid = uuid.UUID(CUSTOMER_GUID)
    stamp = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    expected = uuid.uuid5(
        EVENT_ID_NAMESPACE, f"severa.customer.changed:{CUSTOMER_GUID}:2026-11-20T10:00:00.000000Z"
    )
    assert severa_event_id("severa.customer.changed", guid, stamp) == expected
    assert expected.version == 5


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            id="the same instant written with another offset gives the same id",
        ),
        pytest.param(
            dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
            "2026-11-20T10:00:00.000000Z",
            id="a datetime and its canonical text give the same id",
        ),
    ],
)
def test_equal_stamps_give_equal_ids(first: dt.datetime | str, second: dt.datetime | str) -> None:
    guid = uuid.UUID(CUSTOMER_GUID)
    assert severa_event_id("severa.customer.changed", guid, first) == severa_event_id(
        "severa.customer.changed", guid, second
    )


def test_a_stamp_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        change_stamp(dt.datetime(2026, 11, 20, 10, 0))


def test_an_empty_stamp_is_refused() -> None:
    with pytest.raises(ValueError, match="stamp"):
        severa_event_id("severa.invoice.ready", uuid.UUID(INVOICE_GUID), "")


def test_the_guid_is_canonical_in_the_id_whatever_case_severa_writes() -> None:
    upper = SeveraCustomer.model_validate_json(body(customer(guid=CUSTOMER_GUID.upper())))
    lower = SeveraCustomer.model_validate_json(body(customer()))
    assert SeveraCustomerChanged.create(upper, source=SOURCE, published_at=PUBLISHED).event_id == (
        SeveraCustomerChanged.create(lower, source=SOURCE, published_at=PUBLISHED).event_id
    )


def _customer_event(published_at: dt.datetime = PUBLISHED, **overrides: Any) -> SeveraCustomerChanged:
    entity = SeveraCustomer.model_validate_json(body(customer(**overrides)))
    return SeveraCustomerChanged.create(entity, source=SOURCE, published_at=published_at)


def _invoice_event(published_at: dt.datetime = PUBLISHED, **overrides: Any) -> SeveraInvoiceReady:
    entity = SeveraInvoice.model_validate_json(body(invoice(**overrides)))
    return SeveraInvoiceReady.create(
        entity, source=SOURCE, occurred_at=published_at, published_at=published_at
    )


def _entry_event(published_at: dt.datetime = PUBLISHED, **overrides: Any) -> SeveraHourEntryChanged:
    entity = SeveraHourEntry.model_validate_json(body(hour_entry(**overrides)))
    return SeveraHourEntryChanged.create(
        entity, source=SOURCE, occurred_at=published_at, published_at=published_at
    )


LATER = PUBLISHED + dt.timedelta(hours=3)


@pytest.mark.parametrize(
    ("first", "republished"),
    [
        pytest.param(_customer_event(), _customer_event(LATER), id="a customer republished after a crash"),
        pytest.param(_invoice_event(), _invoice_event(LATER), id="an invoice found ready again"),
        pytest.param(
            _entry_event(), _entry_event(LATER), id="an hour entry read again in an overlapping window"
        ),
    ],
)
def test_a_republish_of_the_same_change_has_the_same_event_id(
    first: SeveraEvent, republished: SeveraEvent
) -> None:
    assert first.event_id == republished.event_id
    assert first.published_at != republished.published_at


@pytest.mark.parametrize(
    ("first", "changed"),
    [
        pytest.param(
            _customer_event(),
            _customer_event(updated_at="2026-11-20T10:01:00Z"),
            id="a customer with a new UpdatedTS",
        ),
        pytest.param(
            _customer_event(updated_at=None),
            _customer_event(),
            id="a customer updated for the first time (InsertTS, then UpdatedTS)",
        ),
        pytest.param(
            _customer_event(),
            _customer_event(head_office_address={"lines": ["Aleksanterinkatu 5"], "city": "Helsinki"}),
            id="a customer whose address alone changed (Severa keeps its UpdatedTS)",
        ),
        pytest.param(
            _invoice_event(),
            _invoice_event(total_including_vat="1255.01"),
            id="an invoice whose total changed",
        ),
        pytest.param(
            _invoice_event(), _invoice_event(rows=[row(1, description="fixed")]), id="an invoice row text"
        ),
        pytest.param(_entry_event(), _entry_event(quantity="8"), id="an hour entry with other hours"),
        pytest.param(
            _entry_event(),
            _entry_event(invoiced=True, invoice_guid=INVOICE_GUID),
            id="an hour entry that was invoiced",
        ),
    ],
)
def test_a_new_change_has_a_new_event_id(first: SeveraEvent, changed: SeveraEvent) -> None:
    assert first.event_id != changed.event_id


def test_event_types_never_share_an_id_for_one_guid_and_stamp() -> None:
    guid, stamp = uuid.UUID(INVOICE_GUID), "sha256:00"
    ids = {
        severa_event_id(kind, guid, stamp) for kind in ("severa.invoice.ready", "severa.hourentry.changed")
    }
    assert len(ids) == 2


def test_a_customer_event_takes_its_change_stamp_as_occurred_at() -> None:
    event = _customer_event()
    assert event.occurred_at == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    assert event.event_id == severa_event_id(
        "severa.customer.changed",
        event.customer.guid,
        f"2026-11-20T10:00:00.000000Z;{content_stamp(event.customer)}",
    )
    assert _customer_event(updated_at=None).occurred_at == dt.datetime(2024, 1, 2, 8, 0, tzinfo=dt.UTC)


#: The example of docs/severa-events.md ("Event ids"): the smallest customer the contract carries.
DOCUMENTED_CUSTOMER = {
    "guid": CUSTOMER_GUID,
    "name": "Esimerkki Oy",
    "is_active": True,
    "created_at": "2024-01-02T08:00:00Z",
    "updated_at": "2026-11-20T10:00:00Z",
}


def test_the_customer_event_id_is_the_documented_example() -> None:
    entity = SeveraCustomer.model_validate_json(json.dumps(DOCUMENTED_CUSTOMER))
    stamp = (
        "2026-11-20T10:00:00.000000Z;sha256:00e6cfe8011316e19885ab42c43725db9d3d35ac392ab3208194bd278d713d3a"
    )
    assert customer_stamp(entity) == stamp
    event = SeveraCustomerChanged.create(entity, source=SOURCE, published_at=PUBLISHED)
    assert event.event_id == uuid.UUID("44a7d361-8e0e-58f1-91da-b6e0d3a4f65b")
    assert event.event_id == uuid.uuid5(
        EVENT_ID_NAMESPACE, f"severa.customer.changed:{CUSTOMER_GUID}:{stamp}"
    )


def test_the_content_stamp_does_not_depend_on_the_key_order_of_the_input() -> None:
    data = invoice()
    reordered = dict(reversed(list(copy.deepcopy(data).items())))
    one = SeveraInvoice.model_validate_json(body(data))
    other = SeveraInvoice.model_validate_json(body(reordered))
    assert content_stamp(one) == content_stamp(other)
    assert content_stamp(one).startswith("sha256:")


def test_an_event_survives_the_wire_with_its_id() -> None:
    event = _invoice_event()
    again = parse_severa_event(event.model_dump_json())
    assert again == event
    assert again.event_id == severa_event_id(
        "severa.invoice.ready", event.invoice.guid, content_stamp(event.invoice)
    )
