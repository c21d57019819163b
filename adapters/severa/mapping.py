"""Severa entities (as zeep returns them) ↔ the port records of :mod:`connector.ports`.

Pure functions, no I/O. zeep gives attribute-style objects; a member the service left out or sent
as nil reads as ``None``. A record's identity fields (GUIDs) are required: an entity without them
is not something the core can act on, so :class:`EntityMismatch` is raised and the client reports
the reply as unusable.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from connector.ports import (
    Case,
    Customer,
    HourEntry,
    Invoice,
    InvoiceRow,
    InvoiceStatus,
    NewHourEntry,
    Phase,
    PostalAddress,
    User,
    WorkType,
)


class EntityMismatch(ValueError):
    """A Severa entity lacks a member the record needs, or has it in an unusable form."""


def _req_str(entity: Any, name: str) -> str:
    value = getattr(entity, name, None)
    if not isinstance(value, str) or not value:
        raise EntityMismatch(f"{_kind(entity)} has no {name}")
    return value


def _opt_str(entity: Any, name: str) -> str | None:
    value = getattr(entity, name, None)
    return value if isinstance(value, str) and value else None


def _bool(entity: Any, name: str) -> bool:
    return bool(getattr(entity, name, None))


def _kind(entity: Any) -> str:
    return type(entity).__name__


def as_list(result: Any) -> list[Any]:
    """A list result: zeep unwraps ``ArrayOfX`` to a list; Severa may send nil or nothing instead."""
    if result is None:
        return []
    if isinstance(result, list):
        return result
    raise EntityMismatch(f"expected a list, got {_kind(result)}")


def user_from_severa(entity: Any) -> User:
    return User(
        guid=_req_str(entity, "GUID"),
        code=_opt_str(entity, "Code"),
        email=_opt_str(entity, "Email"),
        first_name=_opt_str(entity, "FirstName"),
        last_name=_opt_str(entity, "LastName"),
        is_active=_bool(entity, "IsActive"),
    )


def case_from_severa(entity: Any) -> Case:
    number = getattr(entity, "CaseNumber", None)
    return Case(
        guid=_req_str(entity, "GUID"),
        number=int(number) if number is not None else None,
        name=_opt_str(entity, "Name"),
        is_closed=_bool(entity, "IsClosed"),
    )


def phase_from_severa(entity: Any) -> Phase:
    return Phase(
        guid=_req_str(entity, "GUID"),
        case_guid=_req_str(entity, "CaseGUID"),
        code=_opt_str(entity, "Code"),
        name=_opt_str(entity, "Name"),
        is_completed=_bool(entity, "IsCompleted"),
        is_locked=_bool(entity, "IsLocked"),
    )


def work_type_from_severa(entity: Any) -> WorkType:
    return WorkType(
        guid=_req_str(entity, "GUID"),
        code=_opt_str(entity, "Code"),
        name=_opt_str(entity, "Name"),
        is_active=_bool(entity, "IsActive"),
    )


def hour_entry_from_severa(entity: Any) -> HourEntry:
    event = getattr(entity, "EventDate", None)
    if not isinstance(event, dt.date):
        raise EntityMismatch("HourEntry has no EventDate")
    quantity = getattr(entity, "Quantity", None)
    if not isinstance(quantity, Decimal):
        raise EntityMismatch("HourEntry has no Quantity")
    return HourEntry(
        guid=_req_str(entity, "GUID"),
        user_guid=_req_str(entity, "UserGUID"),
        case_guid=_req_str(entity, "CaseGUID"),
        phase_guid=_req_str(entity, "PhaseGUID"),
        work_type_guid=_opt_str(entity, "WorkTypeGUID"),
        # Severa keeps EventDate as a dateTime at midnight (no zone): the date is what it means.
        event_date=event.date() if isinstance(event, dt.datetime) else event,
        quantity=quantity,
        description=_opt_str(entity, "Description"),
        is_billable=_bool(entity, "IsBillable"),
        invoice_guid=_opt_str(entity, "InvoiceGUID"),
    )


def _midnight(day: dt.date) -> dt.datetime:
    """Severa's EventDate is a dateTime; a date is sent as its midnight, without a zone, as WCF does."""
    return dt.datetime.combine(day, dt.time())


def new_hour_entry_to_severa(entry: NewHourEntry) -> dict[str, Any]:
    """The ``hourEntryInfo`` argument of AddNewHourEntry.

    Only members we set are sent: Severa fills AccountGUID, prices and flags itself and ignores
    IsApproved on writes.
    """
    fields: dict[str, Any] = {
        "CaseGUID": entry.case_guid,
        "EventDate": _midnight(entry.event_date),
        "IsBillable": entry.is_billable,
        "PhaseGUID": entry.phase_guid,
        "Quantity": entry.quantity,
        "UserGUID": entry.user_guid,
        "WorkTypeGUID": entry.work_type_guid,
    }
    if entry.description is not None:
        fields["Description"] = entry.description
    if entry.start_time is not None:
        fields["StartTime"] = entry.start_time
    if entry.end_time is not None:
        fields["EndTime"] = entry.end_time
    return fields


def hour_entry_to_severa(entry: HourEntry) -> dict[str, Any]:
    """The ``hourEntryInfo`` argument of UpdateHourEntry (the GUID says which entry)."""
    fields: dict[str, Any] = {
        "CaseGUID": entry.case_guid,
        "EventDate": _midnight(entry.event_date),
        "GUID": entry.guid,
        "IsBillable": entry.is_billable,
        "PhaseGUID": entry.phase_guid,
        "Quantity": entry.quantity,
        "UserGUID": entry.user_guid,
    }
    if entry.work_type_guid is not None:
        fields["WorkTypeGUID"] = entry.work_type_guid
    if entry.description is not None:
        fields["Description"] = entry.description
    return fields


def hour_entry_update(current: Any, entry: HourEntry) -> dict[str, Any]:
    """The ``hourEntryInfo`` of UpdateHourEntry: Severa's ``current`` entity with the record applied.

    UpdateHourEntry replaces the whole entry (a member left out becomes null). Starting from the
    stored entity keeps what the record does not hold (StartTime, EndTime, InvoiceDescription,
    TaskGUID, OverTimeGUID …). The record's description is applied as is (None clears it); a
    record without work type keeps the stored one.
    """
    members: dict[str, Any] = {name: current[name] for name in current}
    members.update(hour_entry_to_severa(entry))
    members["Description"] = entry.description
    return members


# -- customers and invoices ----------------------------------------------------------------------


def _opt_int(entity: Any, name: str) -> int | None:
    value = getattr(entity, name, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntityMismatch(f"{_kind(entity)}.{name} is not an integer")
    return value


def _opt_bool(entity: Any, name: str) -> bool | None:
    value = getattr(entity, name, None)
    return value if isinstance(value, bool) else None


def _decimal(entity: Any, name: str, *, default: Decimal | None = None) -> Decimal:
    value = getattr(entity, name, None)
    if isinstance(value, Decimal):
        return value
    if value is None and default is not None:
        return default
    raise EntityMismatch(f"{_kind(entity)} has no {name}")


def _opt_decimal(entity: Any, name: str) -> Decimal | None:
    value = getattr(entity, name, None)
    return value if isinstance(value, Decimal) else None


def _utc(entity: Any, name: str) -> dt.datetime | None:
    """A Severa timestamp as an aware UTC datetime: Severa keeps them in UTC, and WCF sends them
    without a zone (naive) or with one, depending on how the value was stored."""
    value = getattr(entity, name, None)
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _date(entity: Any, name: str) -> dt.date | None:
    """A Severa date (a dateTime at midnight, without a zone): the date is what it means."""
    value = getattr(entity, name, None)
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else None


def _req_date(entity: Any, name: str) -> dt.date:
    value = _date(entity, name)
    if value is None:
        raise EntityMismatch(f"{_kind(entity)} has no {name}")
    return value


def customer_from_severa(entity: Any) -> Customer:
    """A ``Customer`` (or an ``Account``, which lacks the company members: those read as None)."""
    name = _opt_str(entity, "Name")
    if name is None:
        raise EntityMismatch(f"{_kind(entity)} has no Name")
    return Customer(
        guid=_req_str(entity, "GUID"),
        name=name,
        number=_opt_int(entity, "Number"),
        company_guid=_opt_str(entity, "CompanyGUID"),
        vat_number=_opt_str(entity, "VatNumber"),
        email=_opt_str(entity, "Email"),
        website=_opt_str(entity, "Website"),
        currency_code=_opt_str(entity, "CurrencyCode"),
        language_code=_opt_str(entity, "LanguageCode"),
        payment_term_days=_opt_int(entity, "PaymentTerm"),
        reverse_charge=_opt_bool(entity, "ReverseCharge"),
        e_invoice_address=_opt_str(entity, "eInvoiceAddress"),
        e_invoice_operator=_opt_str(entity, "eInvoiceOperator"),
        head_office_address_guid=_opt_str(entity, "HeadOfficeAddressGUID"),
        is_active=_bool(entity, "IsActive"),
        is_internal=_opt_bool(entity, "IsInternal"),
        inserted_at=_utc(entity, "InsertTS"),
        updated_at=_utc(entity, "UpdatedTS"),
    )


def address_from_severa(entity: Any) -> PostalAddress:
    lines = tuple(
        line for line in (_opt_str(entity, f"Addressline{n}") for n in ("", "2", "3")) if line is not None
    )
    return PostalAddress(
        guid=_req_str(entity, "GUID"),
        lines=lines,
        postal_code=_opt_str(entity, "PostalCode"),
        city=_opt_str(entity, "City"),
        country_code=_opt_str(entity, "CountryCode"),
        country_name=_opt_str(entity, "CountryName"),
        is_billing=_bool(entity, "IsBillingAddress"),
        is_postal=_bool(entity, "IsPostalAddress"),
        is_visit=_bool(entity, "IsVisitAddress"),
    )


def _strings(entity: Any, name: str) -> tuple[str, ...]:
    """A ``string[]`` member: zeep leaves the nested ``ArrayOfstring`` wrapped (``.string``)."""
    value = getattr(entity, name, None)
    items = value if value is None or isinstance(value, list) else getattr(value, "string", None)
    return tuple(item for item in as_list(items) if isinstance(item, str) and item)


def _unit_price(entity: Any) -> Decimal:
    """Severa's ``rowUnitPrice``, which the event contract names; a row without it (a service that
    leaves it out) falls back on ``unitPriceAmount``, the other member the notes do not tell apart."""
    value = _opt_decimal(entity, "rowUnitPrice")
    return value if value is not None else _decimal(entity, "unitPriceAmount", default=Decimal(0))


def invoice_row_from_severa(entity: Any) -> InvoiceRow:
    number = _opt_int(entity, "rowNumber")
    return InvoiceRow(
        guid=_req_str(entity, "GUID"),
        number=number if number is not None else 0,
        article_name=_opt_str(entity, "articleName"),
        description=_opt_str(entity, "rowFreeText"),
        delivery_date=_date(entity, "rowDeliveryDate") or _date(entity, "EventDate"),
        quantity=_decimal(entity, "deliveredQuantity", default=Decimal(0)),
        unit_code=_opt_str(entity, "quantityUnitCode"),
        unit_price=_unit_price(entity),
        amount_excluding_vat=_decimal(entity, "rowVatExcludedAmount"),
        vat_rate_percent=_opt_decimal(entity, "rowVatRatePercent"),
        vat_amount=_decimal(entity, "rowVatAmount", default=Decimal(0)),
        amount_including_vat=_decimal(entity, "rowAmount"),
        vat_code=_opt_str(entity, "rowVatCode"),
        sales_account_number=_opt_str(entity, "rowSalesAccountNumber"),
        article_identifier=_opt_str(entity, "articleIdentifier"),
        case_guids=_strings(entity, "CaseGUIDs"),
        phase_guids=_strings(entity, "PhaseGUIDs"),
    )


def _rows(value: Any) -> list[Any]:
    """``InvoiceRows``: zeep leaves a nested ``ArrayOfInvoiceRow`` wrapped (``.InvoiceRow``)."""
    if value is None or isinstance(value, list):
        return as_list(value)
    return as_list(getattr(value, "InvoiceRow", None))


def invoice_from_severa(entity: Any) -> Invoice:
    payment_term = _opt_int(entity, "PaymentTerm")
    rows = [invoice_row_from_severa(row) for row in _rows(getattr(entity, "InvoiceRows", None)) if row]
    return Invoice(
        guid=_req_str(entity, "GUID"),
        number=_opt_int(entity, "Number"),
        status=_opt_str(entity, "InvoiceStatus"),
        payment_status=_opt_str(entity, "PaymentStatus"),
        title=_opt_str(entity, "Title"),
        account_guid=_req_str(entity, "AccountGUID"),
        account_name=_opt_str(entity, "AccountName"),
        business_unit_guid=_opt_str(entity, "BusinessUnitGUID"),
        main_case_guid=_opt_str(entity, "MainCaseGUID"),
        date=_req_date(entity, "Date"),
        due_date=_req_date(entity, "DueDate"),
        payment_date=_date(entity, "PaymentDate"),
        payment_term_days=payment_term if payment_term is not None else 0,
        currency_code=_opt_str(entity, "CurrencyShortform"),
        currency_rate=_decimal(entity, "CurrencyRate", default=Decimal(1)),
        reference_number=_opt_str(entity, "ReferenceNumber"),
        our_reference=_opt_str(entity, "OurReference"),
        your_reference=_opt_str(entity, "YourReference"),
        receiver_vat_number=_opt_str(entity, "ReceiverVatNumber"),
        is_credit_note=_bool(entity, "IsCreditNote"),
        credited_invoice_guid=_opt_str(entity, "ReimburseInvoiceGUID"),
        is_tax_free=_bool(entity, "IsTaxFree"),
        rows=tuple(sorted(rows, key=lambda row: row.number)),
        entry_date=_date(entity, "EntryDate"),
        account_number=_opt_int(entity, "AccountNumber"),
        language_code=_opt_str(entity, "LanguageCode"),
        order_number=_opt_str(entity, "OrderNumber"),
        po_number=_opt_str(entity, "PoNumber"),
        receiver_name=_opt_str(entity, "ReceiverCustomerName"),
        receiver_address_line=_opt_str(entity, "ReceiverAddressline"),
        receiver_postal_code=_opt_str(entity, "ReceiverPostalCode"),
        receiver_city=_opt_str(entity, "ReceiverCity"),
        receiver_state=_opt_str(entity, "ReceiverState"),
        receiver_country=_opt_str(entity, "ReceiverCountry"),
        receiver_contact_name=_opt_str(entity, "ReceiverContactName"),
        receiver_contact_email=_opt_str(entity, "ReceiverContactEmail"),
    )


def invoice_status_from_severa(entity: Any) -> InvoiceStatus:
    sort_order = _opt_int(entity, "SortOrder")
    return InvoiceStatus(
        name=_req_str(entity, "Name"),
        description=_opt_str(entity, "Description"),
        sort_order=sort_order if sort_order is not None else 0,
        is_active=_bool(entity, "IsActive"),
        is_default=_bool(entity, "IsDefault"),
        has_invoice_number=_bool(entity, "HasInvoiceNumber"),
        is_sent=_bool(entity, "IsSent"),
        is_waiting_payment=_bool(entity, "IsWaitingPayment"),
        is_paid=_bool(entity, "IsPaid"),
        is_read_only=_bool(entity, "IsReadOnly"),
    )
