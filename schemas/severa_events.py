"""Severa change events: what the connector publishes when something changed in Severa.

Published with confirms to the ``severa.events`` topic exchange, routing key = ``event_type``
(``severa.customer.changed``, ``severa.invoice.ready``, ``severa.hourentry.changed``), JSON body,
``message_id`` = ``event_id``. Delivery is at least once: consumers de-duplicate on ``event_id``.

``event_id`` is not random. :func:`severa_event_id` derives it from the event type, the entity's
GUID and its change stamp (a UUIDv5 over ``"<event_type>:<guid>:<stamp>"`` in
:data:`EVENT_ID_NAMESPACE`), so a republish after a crash carries the same id and a new change of
the same entity a new one. Severa's invoices and hour entries carry no change stamp, so their stamp
is a fingerprint of the published content (:func:`content_stamp`): the same state gives the same id,
any changed value a new one. Customers carry ``UpdatedTS``, but Severa does not move it when only
the customer's address changes (``GetCustomersChangedSince`` finds such a customer only through its
``CheckAddressChanges`` flag), so a customer's stamp is both: ``UpdatedTS`` and the fingerprint of
the published customer (:func:`customer_stamp`).

Money, quantities and rates are decimal *strings* (``"1234.50"``): JSON has no decimal type, and a
JSON number goes through a binary float in most readers. A number is refused on read, a string is
kept exactly as written, trailing zeros included. Dates are ISO ``YYYY-MM-DD``; time stamps carry
an offset. Unknown fields are ignored (a newer connector does not break an older consumer); a wrong
type is refused (strict mode).

This module is pure: the poller that fills these models lives in ``connector/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from schemas.work_hours import Identity

SCHEMA_VERSION: Literal["1"] = "1"

SeveraEventType = Literal["severa.customer.changed", "severa.invoice.ready", "severa.hourentry.changed"]
CUSTOMER_CHANGED: Final = "severa.customer.changed"
INVOICE_READY: Final = "severa.invoice.ready"
HOURENTRY_CHANGED: Final = "severa.hourentry.changed"

#: The fixed namespace of every event id: ``uuid5(NAMESPACE_URL, "https://severa-connector/schemas/severa-events")``.
#: Never change it: every consumer's de-duplication depends on ids staying what they were.
EVENT_ID_NAMESPACE: Final = uuid.UUID("0d884a2e-4791-588d-9dac-3fc58579c6f0")

#: Largest hour-entry quantity Severa accepts (same limit as ``WorkHourEvent.hours``).
MAX_HOURS: Final = Decimal("999")

# --------------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------------

_DECIMAL_PATTERN: Final = r"^-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,10})?$"
_DECIMAL_RE: Final = re.compile(_DECIMAL_PATTERN)


def _decimal_from_string(value: object) -> Decimal:
    """A decimal from its string form (or a Decimal built in Python); never from a JSON number."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("must be a finite decimal")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(
            'must be a decimal string such as "1234.50" (JSON has no decimal type; a number would '
            "pass through a binary float)"
        )
    if not _DECIMAL_RE.fullmatch(text):
        raise ValueError(
            "must be a plain decimal string: an optional '-', up to 18 integer digits, up to 10 "
            "decimals, no exponent, no blanks, no thousands separator"
        )
    return Decimal(text)


def _decimal_to_string(value: Decimal) -> str:
    return format(value, "f")


#: A decimal carried as a JSON string, exactly as written (``"10.50"`` stays ``"10.50"``).
DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_string),
    PlainSerializer(_decimal_to_string, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _DECIMAL_PATTERN,
            "description": "A decimal as a string: optional '-', up to 18 integer digits, up to 10 "
            "decimals, no exponent.",
        }
    ),
]


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _percent(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= Decimal(100):
        raise ValueError("must be a percentage from 0 to 100")
    return value


def _hours(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= MAX_HOURS:
        raise ValueError(f"must be from 0 to {MAX_HOURS} hours (Severa's limit)")
    return value


PositiveDecimalString = Annotated[DecimalString, AfterValidator(_positive)]
PercentString = Annotated[DecimalString, AfterValidator(_percent)]
HoursString = Annotated[DecimalString, AfterValidator(_hours)]

CurrencyCode = Annotated[str, StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")]
#: Free text from Severa: at least one character (the poller turns Severa's empty strings into null).
Text = Annotated[str, StringConstraints(min_length=1)]


def change_stamp(moment: dt.datetime) -> str:
    """The canonical text of a change stamp: UTC, microseconds, ``Z`` (``2026-11-20T10:00:00.000000Z``).

    The same instant always gives the same text, whatever offset it was written with.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a change stamp needs a time zone: attach Severa's (UTC) before deriving an id")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_stamp(entity: BaseModel) -> str:
    """The stamp of an entity Severa gives no change stamp for: ``sha256:`` + a hash of its content.

    The hash is over the entity's JSON form with sorted keys, no blanks and UTF-8 text, so the same
    state always gives the same stamp and any changed value another.
    """
    canonical = json.dumps(
        entity.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def customer_stamp(customer: SeveraCustomer) -> str:
    """The stamp of a customer's event id: ``<UpdatedTS>;sha256:<hex>``.

    ``UpdatedTS`` (``InsertTS`` for a customer never updated) as :func:`change_stamp` writes it, a
    ``;``, and the :func:`content_stamp` of the published customer. The fingerprint is there because
    Severa leaves ``UpdatedTS`` alone when only the head-office address changes: without it, such a
    change would carry the id of the state before it and consumers would drop it as a duplicate.
    """
    return f"{change_stamp(customer.stamp)};{content_stamp(customer)}"


def severa_event_id(event_type: SeveraEventType, guid: uuid.UUID, stamp: dt.datetime | str) -> uuid.UUID:
    """The deterministic id of the event for one state of one Severa entity.

    ``uuid5(EVENT_ID_NAMESPACE, f"{event_type}:{guid}:{stamp}")``, the GUID in lower-case canonical
    form and a datetime stamp as :func:`change_stamp` writes it. A republish of the same change
    (after a crash, a redelivery, a poll window overlapping the last one) gets the same id; a new
    change stamp, or a new content stamp, gets another.
    """
    text = change_stamp(stamp) if isinstance(stamp, dt.datetime) else stamp
    if not text:
        raise ValueError("an event id needs a non-empty stamp")
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type}:{guid}:{text}")


# --------------------------------------------------------------------------------------------------
# Shared parts
# --------------------------------------------------------------------------------------------------


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class SeveraSource(_Part):
    """Where the event comes from: which Severa, and which of its business units."""

    system: Literal["severa"] = Field(default="severa", description="Always 'severa'.")
    organization_id: Identity = Field(
        description="The deployment's configured identifier of the Severa organisation the API key "
        "belongs to (1-100 characters, compared exactly). Severa's API, as far as the notes go, names "
        "no organisation id of its own (User.OrganizationGUID exists, its meaning is not documented), "
        "so the id is set in the connector's configuration."
    )
    business_unit_guid: uuid.UUID | None = Field(
        default=None,
        description="The Severa business unit the entity belongs to: an invoice's BusinessUnitGUID. Null "
        "where Severa scopes the entity to the whole organisation (customers) or the change feed names no "
        "business unit (hour entries).",
    )


class PostalAddress(_Part):
    lines: tuple[Text, ...] = Field(
        default=(),
        max_length=3,
        description="Street address lines, first to last (Severa's Addressline, Addressline2, "
        "Addressline3; an invoice receiver has one, ReceiverAddressline). Empty lines are left out.",
    )
    postal_code: Text | None = Field(default=None, description="Severa's PostalCode, as entered.")
    city: Text | None = Field(default=None, description="Severa's City.")
    region: Text | None = Field(
        default=None, description="State or region: Severa's CountryRegionName or ReceiverState."
    )
    country_code: CountryCode | None = Field(
        default=None,
        description="ISO 3166-1 alpha-2, upper case (FI, SE). Severa's CountryCode; its format is not "
        "stated in the notes, so a value that is not two letters is left out here and kept in "
        "country_name.",
    )
    country_name: Text | None = Field(
        default=None,
        description="Severa's CountryName (customers) or ReceiverCountry (invoices, which the notes do not "
        "say is a name or a code), as Severa gives it.",
    )


class Contact(_Part):
    name: Text | None = Field(default=None, description="The contact person, where Severa names one.")
    email: Text | None = Field(
        default=None, description="E-mail address, as entered in Severa (not checked)."
    )
    phone: Text | None = Field(default=None, description="Phone number, as entered in Severa.")


class _Envelope(BaseModel):
    """The fields every Severa change event carries."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_version: Literal["1"] = Field(default=SCHEMA_VERSION, description="Contract version.")
    event_id: uuid.UUID = Field(
        description="Deterministic: uuid5(0d884a2e-4791-588d-9dac-3fc58579c6f0, "
        "'<event_type>:<guid>:<stamp>'). The same change republished has the same id: de-duplicate on "
        "it. Also the AMQP message_id."
    )
    event_type: SeveraEventType = Field(description="Also the routing key on the severa.events exchange.")
    occurred_at: AwareDatetime = Field(description="The change stamp; each event type says which.")
    published_at: AwareDatetime = Field(
        description="When this copy was published; differs between republishes of the same event."
    )
    source: SeveraSource


# --------------------------------------------------------------------------------------------------
# severa.customer.changed
# --------------------------------------------------------------------------------------------------


class EInvoiceAddress(_Part):
    address: Text = Field(
        description="Severa's eInvoiceAddress: the receiver's e-invoicing address (typically an OVT code "
        "or an IBAN), as entered."
    )
    operator: Text | None = Field(
        default=None,
        description="Severa's eInvoiceOperator. The notes do not say whether it holds the operator's "
        "code (what Netvisor's finvoiceroutercode needs, e.g. a BIC or an 0037… id) or its name; "
        "passed as Severa gives it.",
    )


class SeveraCustomer(_Part):
    """A Severa customer (account) as the accounting side needs it, without calling Severa again."""

    guid: uuid.UUID = Field(description="Severa's GUID of the customer (the account GUID).")
    number: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="Severa's customer Number (long?): the customer code, which Severa's own accounting "
        "integration keys the accounting system's customer on. Null while Severa has not numbered the "
        "customer; such a customer cannot be keyed in accounting yet.",
    )
    name: Text = Field(description="Severa's Name.")
    business_id: Text | None = Field(
        default=None,
        description="Severa's VatNumber: the Finnish business id (Y-tunnus, 1234567-8) or a VAT number "
        "(FI12345678); Severa has one free-text member for both, passed as entered, not checked.",
    )
    is_active: bool = Field(description="Severa's IsActive.")
    currency_code: CurrencyCode | None = Field(
        default=None, description="ISO 4217 (Severa's CurrencyCode); null when Severa gives none."
    )
    language_code: Text | None = Field(
        default=None,
        description="Severa's LanguageCode, the customer's invoicing language. Its format ('fi', 'fi-FI') "
        "is not stated in the notes; passed as Severa gives it.",
    )
    payment_term_days: int | None = Field(
        default=None,
        ge=0,
        description="Severa's PaymentTerm (int?). The notes give no unit; Severa shows payment terms as "
        "net days. Null: the customer has none of its own (Severa's business unit default applies).",
    )
    reverse_charge: bool | None = Field(
        default=None, description="Severa's ReverseCharge (bool?); the notes do not define it further."
    )
    email: Text | None = Field(default=None, description="Severa's Email of the customer (the company).")
    e_invoice: EInvoiceAddress | None = Field(
        default=None, description="E-invoicing address and operator; null when Severa has no address."
    )
    head_office_address: PostalAddress | None = Field(
        default=None,
        description="The customer's head-office address (Severa's GetHeadOfficeAddressByAccountGUID), "
        "which is also where bills go unless a case names its own billing address. Null when Severa "
        "has none.",
    )
    head_office_is_billing_address: bool | None = Field(
        default=None,
        description="Severa's IsBillingAddress of the head-office address; null when there is none.",
    )
    contact: Contact | None = Field(
        default=None,
        description="Where known. The notes list no members of Severa's Contact, so this holds the "
        "head-office address's Phone and the customer's Email; name stays null until Severa's contact "
        "is read.",
    )
    created_at: AwareDatetime = Field(description="Severa's InsertTS.")
    updated_at: AwareDatetime | None = Field(
        default=None,
        description="Severa's UpdatedTS, the change stamp; null for a customer never changed since it "
        "was created. Severa gives it without an offset and the notes do not name its zone; it is read "
        "as UTC, the zone of Severa's *ChangedSince parameters.",
    )

    @property
    def stamp(self) -> dt.datetime:
        """The change stamp: ``updated_at``, or ``created_at`` for a customer never updated."""
        return self.updated_at or self.created_at


class SeveraCustomerChanged(_Envelope):
    """A Severa customer was created or changed; the whole customer as it is now."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/severa-customer-changed.json"}
    )

    event_type: Literal["severa.customer.changed"] = Field(
        default=CUSTOMER_CHANGED, description="Also the routing key on the severa.events exchange."
    )
    occurred_at: AwareDatetime = Field(
        description="The customer's change stamp: Severa's UpdatedTS, or InsertTS for a customer never "
        "updated (customer.updated_at / created_at). Part of the event_id, together with a SHA-256 of "
        "the customer object: Severa does not move UpdatedTS when only the address changes, so such a "
        "change keeps occurred_at but has a new event_id."
    )
    customer: SeveraCustomer

    @classmethod
    def create(cls, customer: SeveraCustomer, *, source: SeveraSource, published_at: dt.datetime) -> Self:
        """The event for this state of the customer.

        ``occurred_at`` is its change stamp (``UpdatedTS``, else ``InsertTS``); the id comes from
        :func:`customer_stamp`, so a change of the address alone, which leaves ``UpdatedTS`` as it
        was, is a new event too.
        """
        return cls(
            event_id=severa_event_id(CUSTOMER_CHANGED, customer.guid, customer_stamp(customer)),
            occurred_at=customer.stamp,
            published_at=published_at,
            source=source,
            customer=customer,
        )


# --------------------------------------------------------------------------------------------------
# severa.invoice.ready
# --------------------------------------------------------------------------------------------------


class InvoiceCurrency(_Part):
    code: CurrencyCode = Field(description="ISO 4217 (Severa's CurrencyShortform).")
    rate: PositiveDecimalString = Field(
        description="Severa's CurrencyRate, > 0, as Severa gives it. The notes do not say in which direction "
        "it is quoted (base per foreign unit or foreign per base unit); in the base currency it is 1.",
    )


class CreditedInvoice(_Part):
    guid: uuid.UUID = Field(
        description="Severa's ReimburseInvoiceGUID: the invoice this credit note credits."
    )
    number: int | None = Field(
        default=None, ge=1, description="That invoice's number, when the connector could read it."
    )


class InvoiceCustomer(_Part):
    account_guid: uuid.UUID = Field(description="Severa's AccountGUID: the customer's GUID.")
    number: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Severa's AccountNumber: the customer code."
    )
    name: Text = Field(description="Severa's AccountName.")
    business_id: Text | None = Field(
        default=None,
        description="Severa's ReceiverVatNumber: the business id or VAT number as printed on the invoice.",
    )


class InvoiceReceiver(_Part):
    name: Text | None = Field(default=None, description="Severa's ReceiverCustomerName.")
    address: PostalAddress | None = Field(
        default=None,
        description="ReceiverAddressline, ReceiverPostalCode, ReceiverCity, ReceiverState, "
        "ReceiverCountry; null when the invoice has no receiver address (then the customer's own "
        "address applies).",
    )
    contact_name: Text | None = Field(default=None, description="Severa's ReceiverContactName.")
    contact_email: Text | None = Field(default=None, description="Severa's ReceiverContactEmail.")


class SeveraInvoiceRow(_Part):
    row_number: int = Field(ge=0, description="Severa's rowNumber: the row's position on the invoice.")
    guid: uuid.UUID | None = Field(default=None, description="Severa's GUID of the row.")
    article_identifier: Text | None = Field(
        default=None, description="Severa's articleIdentifier: the product or work type code."
    )
    article_name: Text | None = Field(default=None, description="Severa's articleName: what is sold.")
    description: Text | None = Field(default=None, description="Severa's rowFreeText.")
    quantity: DecimalString = Field(
        description="Severa's deliveredQuantity. Negative on a credit note when Severa writes it so; the "
        "notes do not say whether a credit note negates quantities or prices."
    )
    unit: Text | None = Field(default=None, description="Severa's quantityUnitCode (h, pcs, …), as entered.")
    unit_price: DecimalString = Field(
        description="Severa's rowUnitPrice (Severa also has unitPriceAmount; the notes do not tell the two "
        "apart). Whether it includes VAT is not stated; Netvisor needs to be told (net or gross)."
    )
    vat_rate_percent: PercentString | None = Field(
        default=None,
        description='Severa\'s rowVatRatePercent, 0 to 100, e.g. "25.5", "14", "0". Null when Severa '
        "gives none (rowVatRatePercent is nillable; the notes do not say when it is null).",
    )
    vat_code: Text | None = Field(default=None, description="Severa's rowVatCode, as Severa gives it.")
    vat_amount: DecimalString = Field(description="Severa's rowVatAmount.")
    amount_excluding_vat: DecimalString = Field(description="Severa's rowVatExcludedAmount.")
    amount_including_vat: DecimalString = Field(
        description="Severa's rowAmount. The notes do not define it; the Finvoice element it is named after "
        "(RowAmount) includes VAT."
    )
    sales_account_number: Text | None = Field(
        default=None,
        description="Severa's rowSalesAccountNumber: the bookkeeping sales account, where Severa gives one.",
    )
    case_guids: tuple[uuid.UUID, ...] = Field(default=(), description="Severa's CaseGUIDs of the row.")
    phase_guids: tuple[uuid.UUID, ...] = Field(default=(), description="Severa's PhaseGUIDs of the row.")


class SeveraInvoice(_Part):
    """A whole Severa invoice, header and rows, as it stood when it was found ready."""

    guid: uuid.UUID = Field(description="Severa's GUID of the invoice.")
    number: int = Field(
        ge=1,
        description="Severa's Number. Required: an invoice without a number is not ready (pick a status "
        "whose HasInvoiceNumber is true); accounting keys and de-duplicates invoices on it.",
    )
    invoice_date: dt.date = Field(
        description="Severa's Date, the day part as Severa gives it (no zone shift)."
    )
    due_date: dt.date = Field(description="Severa's DueDate.")
    entry_date: dt.date = Field(
        description="Severa's EntryDate. The notes do not define it (it may differ from the invoice date; "
        "Severa's UI calls it the entry date); passed as Severa gives it."
    )
    status: Text = Field(
        description="Severa's InvoiceStatus at the time it was found ready: the configured ready status."
    )
    is_credit_note: bool = Field(description="Severa's IsCreditNote.")
    credited_invoice: CreditedInvoice | None = Field(
        default=None,
        description="From Severa's ReimburseInvoiceGUID; the notes say no more than its name, which reads: "
        "on a credit note, the invoice it credits. Null when Severa gives none.",
    )
    reference_number: Text | None = Field(
        default=None,
        description="Severa's ReferenceNumber (Finnish reference or RF creditor reference), exactly as "
        "Severa gives it, blanks included: send it to accounting so that payments match.",
    )
    currency: InvoiceCurrency = Field(
        description="The invoice's currency. The notes do not say which currency the totals and row "
        "amounts are in; the rows' *CurrencyIdentifier members suggest the invoice's own."
    )
    total_excluding_vat: DecimalString = Field(
        description="The sum of the rows' amount_excluding_vat (Severa's rowVatExcludedAmount), not rounded; "
        "negative on a credit note. Severa's contract carries no invoice total: the API notes name "
        "TotalExcludingTax, the contract's Invoice member list does not."
    )
    total_including_vat: DecimalString = Field(
        description="The sum of the rows' amount_including_vat (Severa's rowAmount), not rounded; negative "
        "on a credit note. Severa's contract carries no invoice total: the API notes name TotalIncludingTax, "
        "the contract's Invoice member list does not."
    )
    is_tax_free: bool = Field(default=False, description="Severa's IsTaxFree.")
    payment_term_days: int | None = Field(
        default=None, ge=0, description="Severa's PaymentTerm (the notes give no unit; read as net days)."
    )
    language_code: Text | None = Field(
        default=None, description="Severa's LanguageCode, as Severa gives it: the invoice's language."
    )
    customer: InvoiceCustomer
    our_reference: Text | None = Field(default=None, description="Severa's OurReference.")
    your_reference: Text | None = Field(default=None, description="Severa's YourReference.")
    order_number: Text | None = Field(default=None, description="Severa's OrderNumber.")
    po_number: Text | None = Field(
        default=None,
        description="Severa's PoNumber; the notes do not say how it differs from OrderNumber.",
    )
    receiver: InvoiceReceiver | None = Field(
        default=None, description="Whom the invoice is addressed to; null when Severa names no receiver."
    )
    main_case_guid: uuid.UUID | None = Field(default=None, description="Severa's MainCaseGUID.")
    rows: tuple[SeveraInvoiceRow, ...] = Field(
        default=(),
        description="Severa's InvoiceRows in Severa's order. May be empty if Severa has none (accounting "
        "systems usually refuse such an invoice; that is theirs to report).",
    )

    @model_validator(mode="after")
    def _row_numbers_are_unique(self) -> Self:
        numbers = [row.row_number for row in self.rows]
        if len(numbers) != len(set(numbers)):
            raise ValueError("rows must have distinct row_number values")
        return self


class SeveraInvoiceReady(_Envelope):
    """A Severa invoice reached the configured ready status: the whole invoice, for accounting."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/severa-invoice-ready.json"}
    )

    event_type: Literal["severa.invoice.ready"] = Field(
        default=INVOICE_READY, description="Also the routing key on the severa.events exchange."
    )
    occurred_at: AwareDatetime = Field(
        description="When the connector first found the invoice in the ready status: Severa's invoice "
        "carries no change stamp. Not part of the event_id, which hashes the invoice's content."
    )
    invoice: SeveraInvoice

    @classmethod
    def create(
        cls,
        invoice: SeveraInvoice,
        *,
        source: SeveraSource,
        occurred_at: dt.datetime,
        published_at: dt.datetime,
    ) -> Self:
        """The event for this content of the invoice.

        Severa's invoice has no change stamp, so the id comes from :func:`content_stamp` of the
        invoice and ``occurred_at`` is when the connector first found it ready.
        """
        return cls(
            event_id=severa_event_id(INVOICE_READY, invoice.guid, content_stamp(invoice)),
            occurred_at=occurred_at,
            published_at=published_at,
            source=source,
            invoice=invoice,
        )


# --------------------------------------------------------------------------------------------------
# severa.hourentry.changed
# --------------------------------------------------------------------------------------------------


class SeveraHourEntry(_Part):
    """An hour entry as Severa holds it now."""

    guid: uuid.UUID = Field(description="Severa's GUID of the hour entry.")
    user_guid: uuid.UUID = Field(description="Severa's UserGUID: who worked.")
    user_code: Text | None = Field(
        default=None, description="Severa's user code, where the service gives it (newer services do)."
    )
    case_guid: uuid.UUID = Field(description="Severa's CaseGUID.")
    case_number: int | None = Field(
        default=None,
        ge=1,
        description="Severa's case number, where the service gives it (newer services do).",
    )
    phase_guid: uuid.UUID = Field(description="Severa's PhaseGUID.")
    work_type_guid: uuid.UUID | None = Field(
        default=None, description="Severa's WorkTypeGUID; null when Severa gives none."
    )
    date: dt.date = Field(
        description="Severa's EventDate: the day worked, as Severa gives it (no zone shift)."
    )
    quantity: HoursString = Field(description="Severa's Quantity: hours, 0 to 999 (Severa's limit).")
    description: Text | None = Field(default=None, description="Severa's Description, as Severa holds it.")
    billable: bool = Field(description="Severa's IsBillable.")
    invoiced: bool = Field(description="True when the entry is on an invoice (invoice_guid is set).")
    invoice_guid: uuid.UUID | None = Field(
        default=None,
        description="Severa's InvoiceGUID: the invoice the entry is on, whatever that invoice's status.",
    )

    @model_validator(mode="after")
    def _invoiced_matches_the_invoice(self) -> Self:
        if self.invoiced != (self.invoice_guid is not None):
            raise ValueError("invoiced must be true exactly when invoice_guid is set")
        return self


class SeveraHourEntryChanged(_Envelope):
    """A Severa hour entry was created or changed; the whole entry as it is now."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/severa-hourentry-changed.json"}
    )

    event_type: Literal["severa.hourentry.changed"] = Field(
        default=HOURENTRY_CHANGED, description="Also the routing key on the severa.events exchange."
    )
    occurred_at: AwareDatetime = Field(
        description="When the connector first saw this state of the entry: Severa's hour entry carries no "
        "change stamp. Not part of the event_id, which hashes the entry's content."
    )
    hour_entry: SeveraHourEntry

    @classmethod
    def create(
        cls,
        hour_entry: SeveraHourEntry,
        *,
        source: SeveraSource,
        occurred_at: dt.datetime,
        published_at: dt.datetime,
    ) -> Self:
        """The event for this content of the entry.

        Severa's hour entry has no change stamp, so the id comes from :func:`content_stamp` of the
        entry and ``occurred_at`` is when the connector first saw this state.
        """
        return cls(
            event_id=severa_event_id(HOURENTRY_CHANGED, hour_entry.guid, content_stamp(hour_entry)),
            occurred_at=occurred_at,
            published_at=published_at,
            source=source,
            hour_entry=hour_entry,
        )


SeveraEvent = SeveraCustomerChanged | SeveraInvoiceReady | SeveraHourEntryChanged

#: Each event type's model, for a consumer that dispatches on the routing key or ``event_type``.
EVENT_MODELS: Final[
    dict[str, type[SeveraCustomerChanged] | type[SeveraInvoiceReady] | type[SeveraHourEntryChanged]]
] = {
    CUSTOMER_CHANGED: SeveraCustomerChanged,
    INVOICE_READY: SeveraInvoiceReady,
    HOURENTRY_CHANGED: SeveraHourEntryChanged,
}


def parse_severa_event(body: bytes | str) -> SeveraEvent:
    """Read one event body, choosing the model by its ``event_type`` (raises pydantic's ValidationError)."""
    data: Any = json.loads(body)
    event_type = data.get("event_type") if isinstance(data, dict) else None
    model = EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise ValueError(f"not a Severa change event: event_type {event_type!r}")
    return model.model_validate_json(body)
