"""Ports: what the core needs from the outside world, as typed Protocols and plain records.

The core (flows, mapping, retry policy, DLQ) talks only to these. ``adapters/severa`` implements
:class:`SeveraGateway` with zeep + aiohttp; tests may implement it in memory. Records are frozen
dataclasses holding only the Severa fields the connector uses; adapters fill them from Severa's
entities and must translate every failure into :mod:`connector.errors`.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class User:
    guid: str
    code: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class Case:
    guid: str
    number: int | None
    name: str | None
    is_closed: bool


@dataclass(frozen=True, slots=True)
class Phase:
    guid: str
    case_guid: str
    code: str | None
    name: str | None
    is_completed: bool
    is_locked: bool


@dataclass(frozen=True, slots=True)
class WorkType:
    guid: str
    code: str | None
    name: str | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class NewHourEntry:
    """An hour entry to be written; Severa assigns the GUID."""

    user_guid: str
    case_guid: str
    phase_guid: str
    work_type_guid: str
    event_date: dt.date
    quantity: Decimal
    description: str | None
    is_billable: bool
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None

    def with_guid(self, guid: str) -> HourEntry:
        """The entry as Severa holds it under ``guid``."""
        return HourEntry(
            guid=guid,
            user_guid=self.user_guid,
            case_guid=self.case_guid,
            phase_guid=self.phase_guid,
            work_type_guid=self.work_type_guid,
            event_date=self.event_date,
            quantity=self.quantity,
            description=self.description,
            is_billable=self.is_billable,
        )


@dataclass(frozen=True, slots=True)
class HourEntry:
    """An hour entry as Severa holds it."""

    guid: str
    user_guid: str
    case_guid: str
    phase_guid: str
    work_type_guid: str | None
    event_date: dt.date
    quantity: Decimal
    description: str | None
    is_billable: bool
    #: Severa's InvoiceGUID: the invoice the entry is on (None: on none yet). Severa sets it.
    invoice_guid: str | None = None


@dataclass(frozen=True, slots=True)
class QuotaReading:
    """Severa's ``Quota`` / ``UsedQuota`` response headers as last seen."""

    quota: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.quota - self.used, 0)


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """A customer's address in Severa (the head office, for the customers the connector reads)."""

    guid: str
    lines: tuple[str, ...]
    postal_code: str | None
    city: str | None
    country_code: str | None
    country_name: str | None
    is_billing: bool
    is_postal: bool
    is_visit: bool


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer (Severa account with its company's members).

    ``vat_number`` is Severa's ``VatNumber`` as typed: Finnish organisations keep their business id
    (``1234567-8``) there, foreign ones their EU VAT number. ``updated_at`` is Severa's
    ``UpdatedTS`` (UTC), what ``*ChangedSince`` compares.
    """

    guid: str
    name: str
    number: int | None
    company_guid: str | None
    vat_number: str | None
    email: str | None
    website: str | None
    currency_code: str | None
    language_code: str | None
    payment_term_days: int | None
    reverse_charge: bool | None
    e_invoice_address: str | None
    e_invoice_operator: str | None
    head_office_address_guid: str | None
    is_active: bool
    is_internal: bool | None
    inserted_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One invoice row; amounts in the invoice's currency, VAT as Severa computed it."""

    guid: str
    number: int
    article_name: str | None
    description: str | None
    delivery_date: dt.date | None
    quantity: Decimal
    unit_code: str | None
    unit_price: Decimal
    amount_excluding_vat: Decimal
    vat_rate_percent: Decimal | None
    vat_amount: Decimal
    amount_including_vat: Decimal
    vat_code: str | None
    sales_account_number: str | None
    #: Severa's articleIdentifier (product or work type code), CaseGUIDs and PhaseGUIDs.
    article_identifier: str | None = None
    case_guids: tuple[str, ...] = ()
    phase_guids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice with its rows. A credit note has ``is_credit_note`` and names the invoice it
    credits in ``credited_invoice_guid`` (Severa's ``ReimburseInvoiceGUID``); its amounts are negative."""

    guid: str
    number: int | None
    status: str | None
    payment_status: str | None
    title: str | None
    account_guid: str
    account_name: str | None
    business_unit_guid: str | None
    main_case_guid: str | None
    date: dt.date
    due_date: dt.date
    payment_date: dt.date | None
    payment_term_days: int
    currency_code: str | None
    currency_rate: Decimal
    reference_number: str | None
    our_reference: str | None
    your_reference: str | None
    receiver_vat_number: str | None
    is_credit_note: bool
    credited_invoice_guid: str | None
    is_tax_free: bool
    rows: tuple[InvoiceRow, ...]
    #: Severa's EntryDate, AccountNumber (the customer code), LanguageCode, OrderNumber, PoNumber.
    entry_date: dt.date | None = None
    account_number: int | None = None
    language_code: str | None = None
    order_number: str | None = None
    po_number: str | None = None
    #: Whom the invoice is addressed to: Severa's Receiver* members, as printed on the invoice.
    receiver_name: str | None = None
    receiver_address_line: str | None = None
    receiver_postal_code: str | None = None
    receiver_city: str | None = None
    receiver_state: str | None = None
    receiver_country: str | None = None
    receiver_contact_name: str | None = None
    receiver_contact_email: str | None = None

    @property
    def total_excluding_vat(self) -> Decimal:
        return sum((row.amount_excluding_vat for row in self.rows), Decimal(0))

    @property
    def total_vat(self) -> Decimal:
        return sum((row.vat_amount for row in self.rows), Decimal(0))

    @property
    def total_including_vat(self) -> Decimal:
        return sum((row.amount_including_vat for row in self.rows), Decimal(0))


@dataclass(frozen=True, slots=True)
class InvoiceStatus:
    """One of the organisation's invoice statuses (invoices name theirs by ``name``)."""

    name: str
    description: str | None
    sort_order: int
    is_active: bool
    is_default: bool
    has_invoice_number: bool
    is_sent: bool
    is_waiting_payment: bool
    is_paid: bool
    is_read_only: bool


@runtime_checkable
class SeveraGateway(Protocol):
    """The Severa operations the connector uses.

    Look-ups return ``None`` when Severa has no such record, whichever way Severa says so (a
    NotFound fault, a null, an empty list). Every other failure raises a
    :class:`connector.errors.ConnectorError` subclass.
    """

    async def get_version(self) -> str:
        """``IAPI.GetVersion``: needs no key; a cheap connectivity check."""

    async def probe(self) -> None:
        """One cheap authenticated call; raises the classified error if Severa is not usable."""

    async def get_user_by_code(self, code: str) -> User | None: ...

    async def get_all_users(self, *, include_inactive: bool = False) -> list[User]: ...

    async def get_case_by_number(self, number: int) -> Case | None: ...

    async def get_phases_by_code(self, phase_code: str, case_guid: str) -> list[Phase]: ...

    async def get_all_work_types(self) -> list[WorkType]: ...

    async def get_hour_entry(self, guid: str) -> HourEntry | None: ...

    async def get_hour_entries_by_user_and_date(
        self, user_guid: str, start: dt.date, end: dt.date
    ) -> list[HourEntry]:
        """Entries of one user in a date range; used to find out whether an Add whose answer
        was lost actually landed."""

    async def get_hour_entries_changed_since(self, since: dt.datetime) -> list[HourEntry]:
        """``GetHourEntriesChangedSince``: every entry added or changed at or after ``since``.

        ``since`` is an aware UTC datetime. Severa matches it to the minute, so the adapter floors
        it to the start of its minute and the answer may include entries changed up to a minute
        before ``since``. HourEntry has no creation time: this is the only way to tell an entry our
        lost Add created from a twin a person typed earlier, so only that recovery path calls it.
        """

    async def add_hour_entry(self, entry: NewHourEntry) -> HourEntry: ...

    async def update_hour_entry(self, entry: HourEntry) -> HourEntry: ...

    async def delete_hour_entry(self, guid: str) -> bool: ...

    @property
    def quota(self) -> QuotaReading | None:
        """The last quota headers seen, if any."""

    async def aclose(self) -> None: ...


@runtime_checkable
class SeveraChanges(Protocol):
    """What the change poller reads from Severa (:mod:`connector.flows.severa_feeds`).

    A port of its own: the poller needs none of the work-hours writes, and the work-hours flow none
    of these reads. :class:`adapters.severa.client.SeveraClient` implements both.
    """

    async def get_customers_changed_since(
        self, since: dt.datetime, *, include_inactive: bool = False, include_address_changes: bool = True
    ) -> list[Customer]: ...

    async def get_head_office_address(self, account_guid: str) -> PostalAddress | None: ...

    async def get_invoices_by_status(
        self, status: str, *, business_unit_guid: str | None = None, max_invoices: int | None = None
    ) -> list[Invoice]: ...

    async def get_hour_entries_changed_since(self, since: dt.datetime) -> list[HourEntry]: ...

    async def get_invoice(self, guid: str) -> Invoice | None:
        """One invoice by GUID: the number of an invoice a credit note credits, once it left the
        ready status."""


# --------------------------------------------------------------------------------------------------
# Severa's invoice write-backs (the accounting flows tell Severa what became of an invoice)
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class SeveraInvoicing(Protocol):
    """The Severa writes the accounting flows make on an invoice after the accounting side acted.

    Each is safe to repeat with the same arguments (a status or a payment date set twice ends the
    same), except the log entry, which the flows write only after checking the status.
    """

    async def get_invoice(self, guid: str) -> Invoice | None: ...

    async def get_invoice_by_number(self, number: int) -> Invoice | None: ...

    async def set_invoice_status(self, guid: str, status: str) -> None: ...

    async def set_invoice_payment_date(self, guid: str, date: dt.date | None) -> None: ...

    async def add_invoice_log_entry(self, invoice_guid: str, text: str) -> None:
        """Add a line to the invoice's log; a line already there is not added again."""


# --------------------------------------------------------------------------------------------------
# Accounting: a neutral port. Netvisor is the first adapter (adapters/netvisor); another accounting
# system is another adapter, not a rewrite. No field here is named after one system's wire format.
# --------------------------------------------------------------------------------------------------


class VatTreatment(enum.StrEnum):
    """How a sales line is taxed, in the words of the Finnish VAT act rather than one system's codes.

    The adapter turns each into its system's code (Netvisor: KOMY, RAMY, EUMY, EUPM309, MUUL, NONE).
    """

    #: Domestic sale with VAT at the line's rate (25.5 %, 14 %, 13.5 %, 10 % or 0 %).
    DOMESTIC = "domestic"
    #: Domestic reverse charge (construction services, AVL 8 c §): no VAT on the invoice.
    DOMESTIC_REVERSE_CHARGE = "domestic_reverse_charge"
    #: Goods sold to a VAT-registered buyer in another EU country (zero-rated intra-EU supply).
    EU_GOODS = "eu_goods"
    #: Services sold to a VAT-registered buyer in another EU country (buyer reverses the charge).
    EU_SERVICES = "eu_services"
    #: Sales outside the EU (export of goods or services): zero-rated.
    OUTSIDE_EU = "outside_eu"
    #: Outside the scope of VAT (no VAT handling at all).
    NO_VAT = "no_vat"


@dataclass(frozen=True, slots=True)
class AccountingAddress:
    street: str | None
    additional_line: str | None
    postal_code: str | None
    city: str | None
    #: ISO 3166-1 alpha-2.
    country_code: str | None


@dataclass(frozen=True, slots=True)
class AccountingCustomer:
    """A customer as the accounting system keeps it, keyed by ``code`` (Severa's customer number).

    Every detail is sent on every write: accounting systems such as Netvisor empty what an edit
    leaves out, so a record is always written whole.
    """

    code: str
    name: str
    #: Finnish business id ``1234567-8`` (validated by the mapping) or a foreign VAT number.
    business_id: str | None
    address: AccountingAddress | None
    email: str | None
    invoicing_email: str | None
    e_invoice_address: str | None
    e_invoice_operator: str | None
    #: ISO 639-1, upper case (FI, SV, EN).
    language: str | None
    payment_term_days: int | None
    is_active: bool
    is_private_person: bool
    #: Where the record came from (Severa's GUID), kept in a comment field for people.
    source_reference: str | None = None


@dataclass(frozen=True, slots=True)
class AccountingCustomerRef:
    """A customer found in (or written to) the accounting system; ``key`` is that system's id."""

    key: str
    code: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class AccountingInvoiceLine:
    """One sales line. Sums are rounded to cents by the mapping and add up to the invoice totals."""

    product_code: str | None
    name: str
    quantity: Decimal
    #: Net unit price in the invoice currency, positive (a credit note's quantity is negative).
    unit_price: Decimal
    vat_percent: Decimal
    vat_treatment: VatTreatment
    #: Net (excluding VAT) and VAT sums of the line, 2 decimals, signed.
    net_sum: Decimal
    vat_sum: Decimal
    free_text: str | None = None
    account_suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class AccountingInvoice:
    """A sales invoice (or credit note) to create. ``number`` is the source's invoice number and
    the key it is looked up by before every create, since accounting APIs give no idempotency key."""

    number: str
    customer_code: str
    invoice_date: dt.date
    due_date: dt.date
    payment_term_days: int | None
    #: Finnish or RF reference number, check digit validated by the mapping.
    reference_number: str | None
    currency_code: str
    currency_rate: Decimal | None
    total_including_vat: Decimal
    total_vat: Decimal
    lines: tuple[AccountingInvoiceLine, ...]
    our_reference: str | None = None
    your_reference: str | None = None
    #: The number of the invoice a credit note credits (matched after both exist).
    credits_invoice_number: str | None = None
    #: Where the record came from (Severa's GUID), kept in a private comment for people.
    source_reference: str | None = None

    @property
    def is_credit_note(self) -> bool:
        return self.total_including_vat < 0


class AccountingInvoiceState(enum.StrEnum):
    """Where an invoice stands in accounting, in neutral terms."""

    UNSENT = "unsent"
    OPEN = "open"
    OVERDUE = "overdue"
    PAID = "paid"
    CREDIT_LOSS = "credit_loss"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class AccountingInvoiceRef:
    """An invoice found in (or written to) the accounting system."""

    key: str
    number: str
    customer_code: str | None
    reference_number: str | None
    total_including_vat: Decimal | None
    open_sum: Decimal | None
    state: AccountingInvoiceState


@dataclass(frozen=True, slots=True)
class AccountingPayment:
    """An invoice the accounting system now holds as paid, with the day it was paid."""

    invoice_key: str
    invoice_number: str | None
    reference_number: str | None
    paid_on: dt.date
    amount: Decimal | None
    #: The accounting system's last-modified time of the invoice, for the poller's cursor.
    modified_at: dt.datetime | None


@runtime_checkable
class AccountingGateway(Protocol):
    """The accounting operations the connector uses.

    Look-ups return ``None`` when nothing matches exactly (a prefix match is not a match). Every
    failure raises one of :mod:`connector.errors`' accounting errors: ``AccountingRejected`` (and
    ``AccountingPeriodLocked``) for data the system refuses, ``AccountingUnavailable`` for what may
    pass later, ``AccountingAuthenticationFailed`` / ``AccountingNoAccess`` for systemic refusals.
    A write whose answer was lost raises ``AccountingUnavailable(outcome_unknown=True)``: the caller
    looks before it writes again.
    """

    async def probe(self) -> None:
        """One cheap authenticated read; raises the classified error if the system is not usable."""

    async def find_customer(self, code: str) -> AccountingCustomerRef | None: ...

    async def add_customer(self, customer: AccountingCustomer) -> AccountingCustomerRef: ...

    async def update_customer(self, key: str, customer: AccountingCustomer) -> AccountingCustomerRef:
        """Write every detail of ``customer`` over the record ``key`` (what is left out is emptied)."""

    async def find_invoice(self, number: str) -> AccountingInvoiceRef | None: ...

    async def add_invoice(self, invoice: AccountingInvoice) -> AccountingInvoiceRef:
        """Create the invoice in the state "open, sent elsewhere" (Severa sends its own invoices)."""

    async def match_credit_note(self, credit_note_key: str, invoice_key: str) -> None: ...

    async def list_paid_invoices(self, modified_since: dt.datetime) -> list[AccountingPayment]:
        """Invoices that are paid and were modified at or after ``modified_since`` (aware UTC)."""

    async def aclose(self) -> None: ...
