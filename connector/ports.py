"""Ports: what the core needs from the outside world, as typed Protocols and plain records.

The core (flows, mapping, retry policy, DLQ) talks only to these. ``adapters/severa`` implements
:class:`SeveraGateway` with zeep + aiohttp; tests may implement it in memory. Records are frozen
dataclasses holding only the Severa fields the connector uses; adapters fill them from Severa's
entities and must translate every failure into :mod:`connector.errors`.
"""

from __future__ import annotations

import datetime as dt
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
