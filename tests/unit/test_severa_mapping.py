"""Severa entities ↔ port records, from tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.severa.mapping import (
    EntityMismatch,
    as_list,
    case_from_severa,
    customer_from_severa,
    hour_entry_from_severa,
    hour_entry_to_severa,
    invoice_from_severa,
    invoice_status_from_severa,
    new_hour_entry_to_severa,
    phase_from_severa,
    user_from_severa,
    work_type_from_severa,
)
from connector.ports import Case, HourEntry, NewHourEntry, Phase, User, WorkType


def entity(**members: Any) -> SimpleNamespace:
    return SimpleNamespace(**members)


@pytest.mark.parametrize(
    ("convert", "severa", "record"),
    [
        pytest.param(
            user_from_severa,
            entity(GUID="u1", Code="AIVI", Email="a@x.fi", FirstName="Aino", LastName="Virta", IsActive=True),
            User("u1", "AIVI", "a@x.fi", "Aino", "Virta", True),
            id="a user with every member",
        ),
        pytest.param(
            user_from_severa,
            entity(GUID="u2", Code=None, Email="", FirstName=None, LastName=None, IsActive=None),
            User("u2", None, None, None, None, False),
            id="a user with nils and empty strings",
        ),
        pytest.param(
            case_from_severa,
            entity(GUID="c1", CaseNumber=1042, Name="Website", IsClosed=False),
            Case("c1", 1042, "Website", False),
            id="a case",
        ),
        pytest.param(
            case_from_severa,
            entity(GUID="c2", CaseNumber=None, Name=None, IsClosed=True),
            Case("c2", None, None, True),
            id="a closed case without number",
        ),
        pytest.param(
            phase_from_severa,
            entity(GUID="p1", CaseGUID="c1", Code="DEV", Name="Build", IsCompleted=False, IsLocked=True),
            Phase("p1", "c1", "DEV", "Build", False, True),
            id="a locked phase",
        ),
        pytest.param(
            work_type_from_severa,
            entity(GUID="w1", Code="DES", Name="Design", IsActive=True),
            WorkType("w1", "DES", "Design", True),
            id="a work type",
        ),
        pytest.param(
            hour_entry_from_severa,
            entity(
                GUID="h1",
                UserGUID="u1",
                CaseGUID="c1",
                PhaseGUID="p1",
                WorkTypeGUID="w1",
                EventDate=dt.datetime(2025, 3, 4),
                Quantity=Decimal("7.5"),
                Description="Sprint review",
                IsBillable=True,
            ),
            HourEntry(
                "h1", "u1", "c1", "p1", "w1", dt.date(2025, 3, 4), Decimal("7.5"), "Sprint review", True
            ),
            id="an hour entry: EventDate midnight becomes the date",
        ),
    ],
)
def test_from_severa(convert: Any, severa: SimpleNamespace, record: object) -> None:
    assert convert(severa) == record


@pytest.mark.parametrize(
    ("convert", "severa", "missing"),
    [
        pytest.param(user_from_severa, entity(GUID=None), "GUID", id="a user without GUID"),
        pytest.param(phase_from_severa, entity(GUID="p", CaseGUID=""), "CaseGUID", id="a phase without case"),
        pytest.param(
            hour_entry_from_severa,
            entity(GUID="h", EventDate=None, Quantity=Decimal(1)),
            "EventDate",
            id="an hour entry without date",
        ),
        pytest.param(
            hour_entry_from_severa,
            entity(GUID="h", EventDate=dt.datetime(2025, 1, 1), Quantity=None),
            "Quantity",
            id="an hour entry without quantity",
        ),
    ],
)
def test_entities_without_identity_are_refused(convert: Any, severa: SimpleNamespace, missing: str) -> None:
    with pytest.raises(EntityMismatch, match=missing):
        convert(severa)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, [], id="nil is an empty list"),
        pytest.param([], [], id="an empty array is an empty list"),
        pytest.param([1, 2], [1, 2], id="a list stays a list"),
    ],
)
def test_as_list(value: Any, expected: list[Any]) -> None:
    assert as_list(value) == expected


def test_as_list_refuses_a_single_entity() -> None:
    with pytest.raises(EntityMismatch):
        as_list(entity(GUID="x"))


NEW = NewHourEntry(
    user_guid="u1",
    case_guid="c1",
    phase_guid="p1",
    work_type_guid="w1",
    event_date=dt.date(2025, 3, 4),
    quantity=Decimal("1.25"),
    description=None,
    is_billable=False,
)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            NEW,
            {
                "CaseGUID": "c1",
                "EventDate": dt.datetime(2025, 3, 4, 0, 0),
                "IsBillable": False,
                "PhaseGUID": "p1",
                "Quantity": Decimal("1.25"),
                "UserGUID": "u1",
                "WorkTypeGUID": "w1",
            },
            id="the minimum: EventDate as midnight, no description, no times",
        ),
        pytest.param(
            replace(
                NEW,
                description="Pairing",
                start_time=dt.datetime(2025, 3, 4, 9, 0),
                end_time=dt.datetime(2025, 3, 4, 10, 15),
            ),
            {
                "CaseGUID": "c1",
                "Description": "Pairing",
                "EndTime": dt.datetime(2025, 3, 4, 10, 15),
                "EventDate": dt.datetime(2025, 3, 4, 0, 0),
                "IsBillable": False,
                "PhaseGUID": "p1",
                "Quantity": Decimal("1.25"),
                "StartTime": dt.datetime(2025, 3, 4, 9, 0),
                "UserGUID": "u1",
                "WorkTypeGUID": "w1",
            },
            id="description and start/end times are sent when given",
        ),
    ],
)
def test_new_hour_entry_to_severa(entry: NewHourEntry, expected: dict[str, Any]) -> None:
    assert new_hour_entry_to_severa(entry) == expected


def test_hour_entry_to_severa_carries_the_guid() -> None:
    entry = HourEntry("h1", "u1", "c1", "p1", None, dt.date(2025, 3, 4), Decimal(2), "x", True)
    assert hour_entry_to_severa(entry) == {
        "CaseGUID": "c1",
        "Description": "x",
        "EventDate": dt.datetime(2025, 3, 4),
        "GUID": "h1",
        "IsBillable": True,
        "PhaseGUID": "p1",
        "Quantity": Decimal(2),
        "UserGUID": "u1",
    }


# -- customers and invoices ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severa", "expected"),
    [
        pytest.param(
            entity(GUID="a1", Name="Acme Oy", UpdatedTS=dt.datetime(2030, 1, 1, 10, 0), IsActive=True),
            {
                "updated_at": dt.datetime(2030, 1, 1, 10, 0, tzinfo=dt.UTC),
                "is_active": True,
                "vat_number": None,
            },
            id="a naive UpdatedTS is read as UTC",
        ),
        pytest.param(
            entity(
                GUID="a1",
                Name="Acme Oy",
                UpdatedTS=dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                VatNumber="2000001-6",
                IsActive=False,
            ),
            {
                "updated_at": dt.datetime(2030, 1, 1, 10, 0, tzinfo=dt.UTC),
                "is_active": False,
                "vat_number": "2000001-6",
            },
            id="an offset UpdatedTS is converted to UTC",
        ),
    ],
)
def test_customers(severa: SimpleNamespace, expected: dict[str, Any]) -> None:
    customer = customer_from_severa(severa)
    assert {name: getattr(customer, name) for name in expected} == expected


def test_a_customer_without_a_name_is_unusable() -> None:
    with pytest.raises(EntityMismatch, match="Name"):
        customer_from_severa(entity(GUID="a1", Name=None))


def invoice_entity(**members: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "GUID": "i1",
        "AccountGUID": "a1",
        "Date": dt.datetime(2030, 1, 2),
        "DueDate": dt.datetime(2030, 1, 16),
        "CurrencyRate": Decimal(1),
        "PaymentTerm": 14,
        "IsCreditNote": False,
        "InvoiceRows": None,
    }
    fields.update(members)
    return entity(**fields)


def row(number: int, excluded: str, vat: str, rate: str | None) -> SimpleNamespace:
    return entity(
        GUID=f"r{number}",
        rowNumber=number,
        rowVatExcludedAmount=Decimal(excluded),
        rowVatAmount=Decimal(vat),
        rowAmount=Decimal(excluded) + Decimal(vat),
        rowVatRatePercent=None if rate is None else Decimal(rate),
        deliveredQuantity=Decimal(1),
        unitPriceAmount=Decimal(excluded),
        EventDate=dt.datetime(2030, 1, 1),
    )


@pytest.mark.parametrize(
    ("severa", "rates", "totals", "credited"),
    [
        pytest.param(
            invoice_entity(), [], (Decimal(0), Decimal(0), Decimal(0)), None, id="no rows at all (nil)"
        ),
        pytest.param(
            invoice_entity(
                InvoiceRows=entity(InvoiceRow=[row(2, "100", "14.00", "14"), row(1, "200", "51.00", "25.5")])
            ),
            [Decimal("25.5"), Decimal(14)],
            (Decimal(300), Decimal("65.00"), Decimal("365.00")),
            None,
            id="rows wrapped in ArrayOfInvoiceRow, sorted by row number",
        ),
        pytest.param(
            invoice_entity(
                IsCreditNote=True, ReimburseInvoiceGUID="i0", InvoiceRows=[row(1, "-10", "0", None)]
            ),
            [None],
            (Decimal(-10), Decimal(0), Decimal(-10)),
            "i0",
            id="a credit note names the invoice it credits",
        ),
    ],
)
def test_invoices(
    severa: SimpleNamespace,
    rates: list[Decimal | None],
    totals: tuple[Decimal, Decimal, Decimal],
    credited: str | None,
) -> None:
    invoice = invoice_from_severa(severa)
    assert (invoice.date, invoice.due_date) == (dt.date(2030, 1, 2), dt.date(2030, 1, 16))
    assert [r.vat_rate_percent for r in invoice.rows] == rates
    assert (invoice.total_excluding_vat, invoice.total_vat, invoice.total_including_vat) == totals
    assert invoice.credited_invoice_guid == credited


@pytest.mark.parametrize(
    ("members", "missing"),
    [
        pytest.param({"Date": None}, "Date", id="no date"),
        pytest.param({"AccountGUID": None}, "AccountGUID", id="no account"),
    ],
)
def test_an_invoice_without_identity_or_date_is_unusable(members: dict[str, Any], missing: str) -> None:
    with pytest.raises(EntityMismatch, match=missing):
        invoice_from_severa(invoice_entity(**members))


def test_an_invoice_carries_its_entry_date_customer_code_references_and_receiver() -> None:
    invoice = invoice_from_severa(
        invoice_entity(
            EntryDate=dt.datetime(2030, 1, 3),
            AccountNumber=1042,
            LanguageCode="fi-FI",
            OrderNumber="ORD-5",
            PoNumber="",
            ReceiverCustomerName="Acme Oy",
            ReceiverAddressline="PL 12",
            ReceiverPostalCode="00101",
            ReceiverCity="Helsinki",
            ReceiverState=None,
            ReceiverCountry="Finland",
            ReceiverContactName="Maija",
            ReceiverContactEmail="maija@acme.example",
        )
    )
    assert (invoice.entry_date, invoice.account_number, invoice.language_code) == (
        dt.date(2030, 1, 3),
        1042,
        "fi-FI",
    )
    assert (invoice.order_number, invoice.po_number) == ("ORD-5", None)
    assert (
        invoice.receiver_name,
        invoice.receiver_address_line,
        invoice.receiver_postal_code,
        invoice.receiver_city,
        invoice.receiver_state,
        invoice.receiver_country,
        invoice.receiver_contact_name,
        invoice.receiver_contact_email,
    ) == ("Acme Oy", "PL 12", "00101", "Helsinki", None, "Finland", "Maija", "maija@acme.example")


@pytest.mark.parametrize(
    ("members", "unit_price"),
    [
        pytest.param(
            {"rowUnitPrice": Decimal("90"), "unitPriceAmount": Decimal("100")},
            Decimal("90"),
            id="the unit price is rowUnitPrice, as the event contract names it",
        ),
        pytest.param(
            {"unitPriceAmount": Decimal("100")},
            Decimal("100"),
            id="a row without rowUnitPrice falls back on unitPriceAmount",
        ),
    ],
)
def test_an_invoice_row_carries_its_article_code_cases_phases_and_unit_price(
    members: dict[str, Any], unit_price: Decimal
) -> None:
    severa = row(1, "100", "25.50", "25.5")
    del severa.unitPriceAmount
    for name, value in {
        **members,
        "articleIdentifier": "DEV",
        "CaseGUIDs": entity(string=["c1"]),
        "PhaseGUIDs": entity(string=[]),
    }.items():
        setattr(severa, name, value)
    (converted,) = invoice_from_severa(invoice_entity(InvoiceRows=[severa])).rows
    assert (converted.article_identifier, converted.case_guids, converted.phase_guids) == ("DEV", ("c1",), ())
    assert converted.unit_price == unit_price


def test_an_hour_entry_carries_the_invoice_severa_put_it_on() -> None:
    members = {
        "GUID": "h1",
        "UserGUID": "u1",
        "CaseGUID": "c1",
        "PhaseGUID": "p1",
        "EventDate": dt.datetime(2025, 3, 4),
        "Quantity": Decimal("7.5"),
        "IsBillable": True,
    }
    assert hour_entry_from_severa(entity(**members, InvoiceGUID="i1")).invoice_guid == "i1"
    assert hour_entry_from_severa(entity(**members, InvoiceGUID=None)).invoice_guid is None


def test_invoice_statuses() -> None:
    status = invoice_status_from_severa(entity(Name="Paid", SortOrder=3, IsPaid=True, IsSent=True))
    assert (status.name, status.sort_order, status.is_paid, status.is_default) == ("Paid", 3, True, False)
