"""Pure conversion of Severa's records (:mod:`connector.ports`) into the Severa change events.

No I/O here: the poller reads the records and passes them in, and these functions build the events
exactly as ``docs/severa-events.md`` describes them. The event ids and ``occurred_at`` come from the
models' ``create(...)`` constructors (:mod:`schemas.severa_events`), so the id rule lives in one
place. Every rule below is table-tested in ``tests/unit/test_severa_event_mapping.py``.

What the mapping normalises, as the contract asks:

* Severa's empty strings become ``None`` (a text field is never ``""``); other text is passed as
  Severa holds it, blanks included.
* Currency codes are upper-cased and must then be ISO 4217 (three letters). A country code is kept
  when it is two letters (upper-cased); any other value goes to ``country_name`` when that is empty.
* Money and quantities are passed as Severa gives them (the models write them as decimal strings);
  a VAT rate is written without trailing zeros (``"25.5"``, ``"14"``, ``"0"``), which changes no value.
* Severa's time stamps without a zone are read as UTC, and all are written in UTC.

A record the contract cannot carry (an invoice without a number, a GUID that is not one, a VAT rate
above 100) raises :class:`UnpublishableRecord` naming the field; an invoice without its number
raises the subclass :class:`InvoiceNotReady`, which the poller may treat as "not yet" rather than
as a fault.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Final

from pydantic import ValidationError

from connector.errors import PermanentError
from connector.ports import Customer, HourEntry, Invoice, InvoiceRow, PostalAddress
from schemas import severa_events as events

_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")
_COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")
#: Severa's address entity has three lines (``Addressline``, ``Addressline2``, ``Addressline3``).
_MAX_ADDRESS_LINES: Final = 3


class UnpublishableRecord(PermanentError):
    """A Severa record the event contract cannot carry: a member is missing or out of range.

    ``entity`` is the record kind (``customer``, ``invoice``, ``hour_entry``), ``guid`` its Severa
    GUID as the record holds it, ``field`` the event field that cannot be filled
    (``invoice.rows[2].vat_rate_percent``).
    """

    reason = "unpublishable_record"

    def __init__(self, message: str, *, entity: str, guid: str, field: str, **context: Any) -> None:
        super().__init__(message, entity=entity, guid=guid, field=field, **context)
        self.entity = entity
        self.guid = guid
        self.field = field


class InvoiceNotReady(UnpublishableRecord):
    """An invoice without its number: not ready for accounting, so not published (yet)."""

    reason = "invoice_not_ready"


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


def customer_changed(
    customer: Customer,
    *,
    head_office: PostalAddress | None,
    organization_id: str,
    published_at: dt.datetime,
) -> events.SeveraCustomerChanged:
    """The ``severa.customer.changed`` event for this state of ``customer``.

    ``head_office`` is the customer's head-office address (``GetHeadOfficeAddressByAccountGUID``),
    or ``None`` when Severa has none. ``occurred_at`` is ``UpdatedTS``, or ``InsertTS`` for a
    customer never updated; the event id also covers the published content, the address included,
    because Severa does not move ``UpdatedTS`` when only the address changes.
    """
    refuse = _Refusal("customer", customer.guid)
    if (
        head_office is not None
        and customer.head_office_address_guid
        and head_office.guid.lower() != customer.head_office_address_guid.lower()
    ):
        raise refuse(
            "customer.head_office_address",
            f"is address {head_office.guid}, but the customer's head office is "
            f"{customer.head_office_address_guid}",
        )
    if customer.inserted_at is None:
        raise refuse("customer.created_at", "is missing: Severa gave no InsertTS")
    email = _text(customer.email)
    e_invoice_address = _text(customer.e_invoice_address)
    address = (
        _address(head_office, refuse, "customer.head_office_address") if head_office is not None else None
    )
    with refuse.on_invalid("customer"):
        model = events.SeveraCustomer(
            guid=refuse.guid_of("customer.guid", customer.guid),
            number=customer.number,
            name=refuse.required_text("customer.name", customer.name),
            business_id=_text(customer.vat_number),
            is_active=customer.is_active,
            currency_code=refuse.currency("customer.currency_code", customer.currency_code),
            language_code=_text(customer.language_code),
            payment_term_days=customer.payment_term_days,
            reverse_charge=customer.reverse_charge,
            email=email,
            e_invoice=(
                events.EInvoiceAddress(address=e_invoice_address, operator=_text(customer.e_invoice_operator))
                if e_invoice_address is not None
                else None
            ),
            head_office_address=address,
            head_office_is_billing_address=head_office.is_billing if head_office is not None else None,
            # The head-office address's Phone belongs here too; the port record does not carry it.
            contact=events.Contact(email=email) if email is not None else None,
            created_at=_utc(customer.inserted_at),
            updated_at=_utc(customer.updated_at) if customer.updated_at is not None else None,
        )
    source = _source(organization_id, None, refuse)
    with refuse.on_invalid(""):
        return events.SeveraCustomerChanged.create(model, source=source, published_at=published_at)


def invoice_ready(
    invoice: Invoice,
    *,
    credited_number: int | None,
    organization_id: str,
    observed_at: dt.datetime,
    published_at: dt.datetime,
) -> events.SeveraInvoiceReady:
    """The ``severa.invoice.ready`` event for this content of ``invoice``.

    ``credited_number`` is the number of the invoice a credit note credits, when the poller could
    read it (``None`` otherwise, and for an invoice that credits none). ``observed_at`` is when the
    connector first found the invoice ready; the event id hashes the invoice's content.

    Raises :class:`InvoiceNotReady` for an invoice without its number.
    """
    refuse = _Refusal("invoice", invoice.guid)
    if invoice.number is None:
        raise InvoiceNotReady(
            f"invoice {invoice.guid} cannot be published: invoice.number is missing; an invoice "
            "without its number is not ready for accounting",
            entity="invoice",
            guid=invoice.guid,
            field="invoice.number",
        )
    credited_guid = refuse.optional_guid_of("invoice.credited_invoice.guid", invoice.credited_invoice_guid)
    if credited_guid is None and credited_number is not None:
        raise refuse(
            "invoice.credited_invoice.number",
            f"is {credited_number}, but the invoice names no credited invoice (ReimburseInvoiceGUID)",
        )
    currency_code = refuse.currency("invoice.currency.code", invoice.currency_code)
    if currency_code is None:
        raise refuse("invoice.currency.code", "is missing: Severa gave no CurrencyShortform")
    if invoice.entry_date is None:
        raise refuse("invoice.entry_date", "is missing: Severa gave no EntryDate")
    with refuse.on_invalid("invoice.credited_invoice"):
        credited = (
            events.CreditedInvoice(guid=credited_guid, number=credited_number)
            if credited_guid is not None
            else None
        )
    with refuse.on_invalid("invoice.currency"):
        currency = events.InvoiceCurrency(code=currency_code, rate=invoice.currency_rate)
    with refuse.on_invalid("invoice.customer"):
        customer = events.InvoiceCustomer(
            account_guid=refuse.guid_of("invoice.customer.account_guid", invoice.account_guid),
            number=invoice.account_number,
            name=refuse.required_text("invoice.customer.name", invoice.account_name),
            business_id=_text(invoice.receiver_vat_number),
        )
    receiver = _receiver(invoice, refuse)
    rows = tuple(_row(row, index, refuse) for index, row in enumerate(invoice.rows))
    with refuse.on_invalid("invoice"):
        model = events.SeveraInvoice(
            guid=refuse.guid_of("invoice.guid", invoice.guid),
            number=invoice.number,
            invoice_date=invoice.date,
            due_date=invoice.due_date,
            entry_date=invoice.entry_date,
            status=refuse.required_text("invoice.status", invoice.status),
            is_credit_note=invoice.is_credit_note,
            credited_invoice=credited,
            reference_number=_text(invoice.reference_number),
            currency=currency,
            # Severa's contract has no invoice totals (the API notes name TotalExcludingTax and
            # TotalIncludingTax, the contract's Invoice does not): the sums of Severa's row amounts.
            total_excluding_vat=invoice.total_excluding_vat,
            total_including_vat=invoice.total_including_vat,
            is_tax_free=invoice.is_tax_free,
            payment_term_days=invoice.payment_term_days,
            language_code=_text(invoice.language_code),
            customer=customer,
            our_reference=_text(invoice.our_reference),
            your_reference=_text(invoice.your_reference),
            order_number=_text(invoice.order_number),
            po_number=_text(invoice.po_number),
            receiver=receiver,
            main_case_guid=refuse.optional_guid_of("invoice.main_case_guid", invoice.main_case_guid),
            rows=rows,
        )
    business_unit = refuse.optional_guid_of("source.business_unit_guid", invoice.business_unit_guid)
    source = _source(organization_id, business_unit, refuse)
    with refuse.on_invalid(""):
        return events.SeveraInvoiceReady.create(
            model,
            source=source,
            occurred_at=observed_at,
            published_at=published_at,
        )


def hour_entry_changed(
    entry: HourEntry,
    *,
    organization_id: str,
    observed_at: dt.datetime,
    published_at: dt.datetime,
    user_code: str | None = None,
    case_number: int | None = None,
) -> events.SeveraHourEntryChanged:
    """The ``severa.hourentry.changed`` event for this content of ``entry``.

    ``invoiced`` follows from the entry's InvoiceGUID (``None``: on no invoice). ``user_code`` and
    ``case_number`` are passed where the service gives them (the contract's HourEntry has neither).
    ``observed_at`` is when the connector first saw this state; the event id hashes the entry's
    content.
    """
    refuse = _Refusal("hour_entry", entry.guid)
    invoice = refuse.optional_guid_of("hour_entry.invoice_guid", entry.invoice_guid)
    with refuse.on_invalid("hour_entry"):
        model = events.SeveraHourEntry(
            guid=refuse.guid_of("hour_entry.guid", entry.guid),
            user_guid=refuse.guid_of("hour_entry.user_guid", entry.user_guid),
            user_code=_text(user_code),
            case_guid=refuse.guid_of("hour_entry.case_guid", entry.case_guid),
            case_number=case_number,
            phase_guid=refuse.guid_of("hour_entry.phase_guid", entry.phase_guid),
            work_type_guid=refuse.optional_guid_of("hour_entry.work_type_guid", entry.work_type_guid),
            date=entry.event_date,
            quantity=entry.quantity,
            description=_text(entry.description),
            billable=entry.is_billable,
            invoiced=invoice is not None,
            invoice_guid=invoice,
        )
    source = _source(organization_id, None, refuse)
    with refuse.on_invalid(""):
        return events.SeveraHourEntryChanged.create(
            model,
            source=source,
            occurred_at=observed_at,
            published_at=published_at,
        )


# --------------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------------


def _row(row: InvoiceRow, index: int, refuse: _Refusal) -> events.SeveraInvoiceRow:
    prefix = f"invoice.rows[{index}]"
    with refuse.on_invalid(prefix):
        return events.SeveraInvoiceRow(
            row_number=row.number,
            guid=refuse.optional_guid_of(f"{prefix}.guid", row.guid),
            article_identifier=_text(row.article_identifier),
            article_name=_text(row.article_name),
            description=_text(row.description),
            quantity=row.quantity,
            unit=_text(row.unit_code),
            unit_price=row.unit_price,
            vat_rate_percent=_rate(row.vat_rate_percent),
            vat_code=_text(row.vat_code),
            vat_amount=row.vat_amount,
            amount_excluding_vat=row.amount_excluding_vat,
            amount_including_vat=row.amount_including_vat,
            sales_account_number=_text(row.sales_account_number),
            case_guids=_guids(row.case_guids, refuse, f"{prefix}.case_guids"),
            phase_guids=_guids(row.phase_guids, refuse, f"{prefix}.phase_guids"),
        )


def _guids(values: tuple[str, ...], refuse: _Refusal, field: str) -> tuple[uuid.UUID, ...]:
    return tuple(refuse.guid_of(f"{field}[{index}]", value) for index, value in enumerate(values))


def _receiver(invoice: Invoice, refuse: _Refusal) -> events.InvoiceReceiver | None:
    """Severa's Receiver* members: whom the invoice is addressed to, as printed on it.

    ``ReceiverCountry`` may be a name or a code (the notes do not say): :func:`country` decides.
    No receiver member at all is ``None``; no address member is a receiver without an address.
    """
    line = _text(invoice.receiver_address_line)
    country_code, country_name = country(invoice.receiver_country, None)
    parts = (line, invoice.receiver_postal_code, invoice.receiver_city, invoice.receiver_state)
    has_address = any(_text(part) for part in parts) or country_code or country_name
    with refuse.on_invalid("invoice.receiver"):
        address = (
            events.PostalAddress(
                lines=(line,) if line is not None else (),
                postal_code=_text(invoice.receiver_postal_code),
                city=_text(invoice.receiver_city),
                region=_text(invoice.receiver_state),
                country_code=country_code,
                country_name=country_name,
            )
            if has_address
            else None
        )
        receiver = events.InvoiceReceiver(
            name=_text(invoice.receiver_name),
            address=address,
            contact_name=_text(invoice.receiver_contact_name),
            contact_email=_text(invoice.receiver_contact_email),
        )
    if receiver == events.InvoiceReceiver():
        return None
    return receiver


def _address(address: PostalAddress, refuse: _Refusal, field: str) -> events.PostalAddress:
    lines = tuple(line for line in address.lines if line)
    if len(lines) > _MAX_ADDRESS_LINES:
        raise refuse(f"{field}.lines", f"has {len(lines)} lines; the contract carries at most 3")
    country_code, country_name = country(address.country_code, address.country_name)
    with refuse.on_invalid(field):
        return events.PostalAddress(
            lines=lines,
            postal_code=_text(address.postal_code),
            city=_text(address.city),
            country_code=country_code,
            country_name=country_name,
        )


def _source(
    organization_id: str, business_unit_guid: uuid.UUID | None, refuse: _Refusal
) -> events.SeveraSource:
    with refuse.on_invalid("source"):
        return events.SeveraSource(organization_id=organization_id, business_unit_guid=business_unit_guid)


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def country(code: str | None, name: str | None) -> tuple[str | None, str | None]:
    """``(country_code, country_name)`` from Severa's two members.

    A two-letter code is the ISO 3166-1 alpha-2 code (upper-cased); any other value is left out of
    ``country_code`` and kept as the name when Severa gives no name.
    """
    name = _text(name)
    text = code.strip().upper() if code else ""
    if _COUNTRY_RE.fullmatch(text):
        return text, name
    return None, name if name is not None else _text(code)


def _text(value: str | None) -> str | None:
    """Severa's text as it holds it; its empty string is ``None``."""
    return value if value else None


def _rate(value: Decimal | None) -> Decimal | None:
    """A VAT rate without trailing zeros (``25.50`` → ``25.5``, ``24.00`` → ``24``): the same value."""
    if value is None or not value.is_finite():
        return value
    return Decimal(format(value.normalize(), "f"))


def _utc(moment: dt.datetime) -> dt.datetime:
    """A Severa time stamp in UTC; one without a zone is read as UTC, as Severa keeps them."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


class _Refusal:
    """Builds the :class:`UnpublishableRecord` for one record, naming the field that failed."""

    def __init__(self, entity: str, guid: str) -> None:
        self.entity = entity
        self.guid = guid

    def __call__(self, field: str, problem: str) -> UnpublishableRecord:
        return UnpublishableRecord(
            f"{self.entity} {self.guid} cannot be published: {field} {problem}",
            entity=self.entity,
            guid=self.guid,
            field=field,
        )

    @contextmanager
    def on_invalid(self, prefix: str) -> Iterator[None]:
        """Turn the models' validation error into one naming the event field (``prefix`` + its loc)."""
        try:
            yield
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
            field = f"{prefix}{loc}" if prefix else loc.lstrip(".")
            raise self(field, f"is not valid: {error['msg']}") from exc

    def required_text(self, field: str, value: str | None) -> str:
        text = _text(value)
        if text is None:
            raise self(field, "is missing: Severa gave no value or an empty one")
        return text

    def guid_of(self, field: str, value: str) -> uuid.UUID:
        guid = self.optional_guid_of(field, value)
        if guid is None:
            raise self(field, "is missing: Severa gave no GUID")
        return guid

    def optional_guid_of(self, field: str, value: str | None) -> uuid.UUID | None:
        if not value:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            raise self(field, f"is not a GUID: {value!r}") from None

    def currency(self, field: str, value: str | None) -> str | None:
        if not value:
            return None
        code = value.strip().upper()
        if not _CURRENCY_RE.fullmatch(code):
            raise self(field, f"is not an ISO 4217 currency code: {value!r}")
        return code
