"""The fake company's books, in memory: customers, sales invoices, payments, credit-note matches.

Records are dataclasses keyed by NetvisorKey. Each table numbers its own keys, from different
starting points (customers 101…, invoices 1001…, payments 5001…) so that a key used for the wrong
table names nothing instead of the wrong record.

What Netvisor does and the store does too:

* a customer's code (``internalidentifier``) is unique (:class:`~.behaviour.Behaviour` decides
  whether a second one is refused); ``type="automatic"`` takes the next free number;
* an edit replaces the whole record: what it leaves out is blank afterwards;
* an invoice without a number gets the next free one, without a reference number a generated
  Finnish one (from its NetvisorKey, with the 7-3-1 check digit); a given reference is checked
  (Finnish 7-3-1 or RF creditor reference);
* line sums: net = price * quantity * (1 - discount %), VAT on top (``type="net"``) or inside
  (``type="gross"``), each rounded to 2 decimals half away from zero; or the line's explicit
  VatSum/Sum (Sum includes VAT); the invoice sum is the given ``salesinvoiceamount`` or, when it is
  empty, the sum of the line sums;
* any status but ``unsent`` means the invoice has a voucher; ``open`` past its due date reads as
  ``overdue``; a payment lowers the open sum, and an invoice paid in full becomes ``paid``; every
  change moves the invoice's last-modified time.

Unverified, and how the store behaves: whether a product must exist in the product register (it
need not); whether ``salesinvoiceamount`` is checked against the lines (it is not); BankStatus of a
registered payment (``OK``).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from adapters.netvisor.fake import dtd
from adapters.netvisor.fake.behaviour import Behaviour, Duplicates
from adapters.netvisor.fake.errors import ErrorCode, NetvisorError, RefusalKind, invalid
from adapters.netvisor.fake.wire import round_cents

CUSTOMER_SECTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    section.name: section.child_names()
    for section in dtd.CUSTOMER.child("customer").children
    if section.name != "customerdimensiondetails"
}
"""Every customer section and its members, in DTD order (what an edit blanks when left out)."""

OPEN_STATUSES: Final = frozenset({"open", "overdue", "reminded", "requested", "collected"})
SETTABLE_STATUSES: Final = OPEN_STATUSES | {"paid", "creditloss"}
"""What ``updatesalesinvoicestatus.nv`` may set."""
INVOICE_STATUSES: Final = SETTABLE_STATUSES | {"unsent", "rejected"}
ZERO: Final = Decimal(0)


def blank_sections() -> dict[str, dict[str, str]]:
    return {section: dict.fromkeys(members, "") for section, members in CUSTOMER_SECTIONS.items()}


# ---------------------------------------------------------------------------- reference numbers


def finnish_reference(base: str) -> str:
    """*base* (3-19 digits) with its 7-3-1 check digit appended."""
    if not base.isdigit() or not 3 <= len(base) <= 19:
        raise ValueError(f"a reference number base is 3-19 digits, not {base!r}")
    weights = itertools.cycle((7, 3, 1))
    total = sum(int(digit) * weight for digit, weight in zip(reversed(base), weights, strict=False))
    return base + str((10 - total % 10) % 10)


def valid_reference(reference: str) -> bool:
    """A Finnish reference (4-20 digits, 7-3-1 check digit) or an RF creditor reference (ISO 11649)."""
    compact = reference.replace(" ", "").upper()
    if compact.isdigit():
        return 4 <= len(compact) <= 20 and finnish_reference(compact[:-1]) == compact
    if compact.startswith("RF") and 5 <= len(compact) <= 25 and compact.isalnum():
        rearranged = compact[4:] + compact[:4]
        digits = "".join(str(int(char, 36)) for char in rearranged)
        return int(digits) % 97 == 1
    return False


# ------------------------------------------------------------------------------------- records


@dataclass(slots=True)
class Customer:
    netvisor_key: int
    sections: dict[str, dict[str, str]]
    dimensions: list[tuple[str, str]]
    created_at: dt.datetime
    changed_at: dt.datetime

    @property
    def base(self) -> dict[str, str]:
        return self.sections["customerbaseinformation"]

    @property
    def code(self) -> str:
        return self.base["internalidentifier"]

    @property
    def name(self) -> str:
        return self.base["name"]

    @property
    def business_id(self) -> str:
        return self.base["externalidentifier"]

    def to_json(self) -> dict[str, Any]:
        return {
            "netvisor_key": self.netvisor_key,
            "code": self.code,
            "name": self.name,
            "sections": copy.deepcopy(self.sections),
            "dimensions": [list(pair) for pair in self.dimensions],
            "created_at": self.created_at.isoformat(),
            "changed_at": self.changed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class LineDraft:
    """One product line as a request (or the admin API) gives it."""

    product_identifier: str
    name: str
    unit_price: Decimal
    vat_percent: Decimal
    quantity: Decimal
    product_identifier_type: str = "customer"
    price_type: str = "net"
    vat_code: str = "KOMY"
    discount_percent: Decimal = ZERO
    free_text: str = ""
    vat_sum: Decimal | None = None
    sum: Decimal | None = None
    accounting_account: str = ""
    dimensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CommentLine:
    comment: str


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """A priced product line: the draft plus its sums (each rounded to cents)."""

    draft: LineDraft
    net_sum: Decimal
    vat_sum: Decimal
    gross_sum: Decimal


@dataclass(slots=True)
class InvoiceDraft:
    """A sales invoice as ``salesinvoice.nv`` (or the admin API) gives it; edit replaces with one."""

    invoice_date: dt.date
    customer_identifier: str
    lines: Sequence[LineDraft | CommentLine]
    customer_identifier_type: str = "customer"
    status: str = "open"
    number: str | None = None
    due_date: dt.date | None = None
    payment_term_net_days: int | None = None
    payment_term: str | None = None
    delivery_date: dt.date | None = None
    reference_number: str | None = None
    amount: Decimal | None = None
    currency: str = "EUR"
    currency_rate: Decimal | None = None
    header: Mapping[str, str] = field(default_factory=dict)
    """Every header element's text as given (``""`` for empty), shown back by ``getsalesinvoice.nv``."""


@dataclass(slots=True)
class Invoice:
    netvisor_key: int
    number: str
    invoice_date: dt.date
    due_date: dt.date
    delivery_date: dt.date | None
    reference_number: str
    amount: Decimal
    open_sum: Decimal
    currency: str
    currency_rate: Decimal | None
    status: str
    customer_key: int
    customer_code: str
    customer_name: str
    rows: list[InvoiceLine | CommentLine]
    header: dict[str, str]
    payment_term_net_days: int | None
    created_at: dt.datetime
    changed_at: dt.datetime

    @property
    def has_voucher(self) -> bool:
        return self.status != "unsent"

    @property
    def lines(self) -> list[InvoiceLine]:
        return [row for row in self.rows if isinstance(row, InvoiceLine)]

    def substatus(self, today: dt.date) -> str:
        """The detailed status: ``open`` past its due date with money owed reads ``overdue``."""
        if self.status == "open" and self.due_date < today and self.open_sum > 0:
            return "overdue"
        return self.status

    def main_status(self) -> str:
        """The list's status: every open-like status is ``open``."""
        return "open" if self.status in OPEN_STATUSES else self.status

    def to_json(self) -> dict[str, Any]:
        return {
            "netvisor_key": self.netvisor_key,
            "number": self.number,
            "invoice_date": self.invoice_date.isoformat(),
            "due_date": self.due_date.isoformat(),
            "delivery_date": self.delivery_date.isoformat() if self.delivery_date else None,
            "reference_number": self.reference_number,
            "amount": str(self.amount),
            "open_sum": str(self.open_sum),
            "currency": self.currency,
            "status": self.status,
            "customer_key": self.customer_key,
            "customer_code": self.customer_code,
            "customer_name": self.customer_name,
            "lines": [
                {
                    "product_identifier": row.draft.product_identifier,
                    "name": row.draft.name,
                    "unit_price": str(row.draft.unit_price),
                    "price_type": row.draft.price_type,
                    "quantity": str(row.draft.quantity),
                    "vat_percent": str(row.draft.vat_percent),
                    "vat_code": row.draft.vat_code,
                    "net_sum": str(row.net_sum),
                    "vat_sum": str(row.vat_sum),
                    "sum": str(row.gross_sum),
                }
                if isinstance(row, InvoiceLine)
                else {"comment": row.comment}
                for row in self.rows
            ],
            "created_at": self.created_at.isoformat(),
            "changed_at": self.changed_at.isoformat(),
        }


@dataclass(slots=True)
class Payment:
    netvisor_key: int
    invoice_key: int
    date: dt.date
    sum: Decimal
    name: str
    reference_number: str
    invoice_number: str
    foreign_currency_amount: Decimal | None
    bank_status: str
    created_at: dt.datetime
    changed_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "netvisor_key": self.netvisor_key,
            "invoice_key": self.invoice_key,
            "date": self.date.isoformat(),
            "sum": str(self.sum),
            "name": self.name,
            "reference_number": self.reference_number,
            "invoice_number": self.invoice_number,
            "foreign_currency_amount": (
                str(self.foreign_currency_amount) if self.foreign_currency_amount is not None else None
            ),
            "bank_status": self.bank_status,
            "changed_at": self.changed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class CreditNoteMatch:
    credit_note_key: int
    invoice_key: int
    sum: Decimal
    matched_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "credit_note_key": self.credit_note_key,
            "invoice_key": self.invoice_key,
            "sum": str(self.sum),
            "matched_at": self.matched_at.isoformat(),
        }


def price_line(draft: LineDraft) -> InvoiceLine:
    """A line's net, VAT and gross sums, rounded as Netvisor rounds them."""
    if draft.vat_sum is not None and draft.sum is not None:
        vat = round_cents(draft.vat_sum)
        gross = round_cents(draft.sum)
        return InvoiceLine(draft, gross - vat, vat, gross)
    rate = draft.vat_percent / 100
    base = draft.unit_price * draft.quantity * (1 - draft.discount_percent / 100)
    if draft.price_type == "gross":
        gross = round_cents(base)
        net = round_cents(gross / (1 + rate))
        return InvoiceLine(draft, net, gross - net, gross)
    net = round_cents(base)
    vat = round_cents(net * rate)
    return InvoiceLine(draft, net, vat, net + vat)


# --------------------------------------------------------------------------------------- store


class NetvisorStore:
    """One company's data. Methods raise :class:`NetvisorError` exactly where Netvisor refuses."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.customers: dict[int, Customer] = {}
        self.invoices: dict[int, Invoice] = {}
        self.payments: dict[int, Payment] = {}
        self.credit_note_matches: list[CreditNoteMatch] = []
        self._customer_keys = itertools.count(101)
        self._invoice_keys = itertools.count(1001)
        self._payment_keys = itertools.count(5001)
        self._group_ids: dict[str, int] = {}

    def clear(self) -> None:
        self.customers.clear()
        self.invoices.clear()
        self.payments.clear()
        self.credit_note_matches.clear()
        self._customer_keys = itertools.count(101)
        self._invoice_keys = itertools.count(1001)
        self._payment_keys = itertools.count(5001)
        self._group_ids.clear()

    def take_contents(self, other: NetvisorStore) -> None:
        """Replace everything with *other*'s records and key counters (an all-or-nothing seed load)."""
        self.customers = other.customers
        self.invoices = other.invoices
        self.payments = other.payments
        self.credit_note_matches = other.credit_note_matches
        self._customer_keys = other._customer_keys
        self._invoice_keys = other._invoice_keys
        self._payment_keys = other._payment_keys
        self._group_ids = other._group_ids

    def counts(self) -> dict[str, int]:
        return {
            "customers": len(self.customers),
            "invoices": len(self.invoices),
            "payments": len(self.payments),
            "credit_note_matches": len(self.credit_note_matches),
        }

    # ---------------------------------------------------------------------------- customers

    def group_id(self, name: str) -> str:
        """A customer group's id (groups exist by name in the fake)."""
        if not name:
            return ""
        return str(self._group_ids.setdefault(name, len(self._group_ids) + 1))

    def customer(self, key: int) -> Customer:
        found = self.customers.get(key)
        if found is None:
            raise invalid(f"Customer not found with Netvisor identifier: {key}", RefusalKind.NOT_FOUND)
        return found

    def customer_by_code(self, code: str) -> Customer | None:
        for customer in self.customers.values():
            if customer.code == code:
                return customer
        return None

    def _next_customer_code(self) -> str:
        numbers = [int(c.code) for c in self.customers.values() if c.code.isdigit()]
        return str(max(numbers, default=0) + 1)

    def _check_code(self, code: str, own_key: int | None) -> None:
        if not code or self.behaviour.duplicate_customer_code is Duplicates.ACCEPT:
            return
        holder = self.customer_by_code(code)
        if holder is not None and holder.netvisor_key != own_key:
            raise NetvisorError(
                ErrorCode.DUPLICATE_DATA,
                f"Customer with customer code {code} already exists "
                f"(Netvisor identifier {holder.netvisor_key})",
                RefusalKind.DUPLICATE,
            )

    def _complete(
        self, sections: Mapping[str, Mapping[str, str]], *, automatic_code: bool, own_key: int | None
    ) -> dict[str, dict[str, str]]:
        complete = blank_sections()
        for section, members in sections.items():
            if section not in complete:
                raise ValueError(f"unknown customer section {section!r}")
            for member, value in members.items():
                if member not in complete[section]:
                    raise ValueError(f"unknown member {member!r} of {section}")
                complete[section][member] = value
        base = complete["customerbaseinformation"]
        if not base["name"]:
            raise invalid("Mandatory element 'name' must not be empty.", RefusalKind.MANDATORY)
        if automatic_code:
            current = self.customers.get(own_key) if own_key is not None else None
            base["internalidentifier"] = (
                current.code if current and current.code else self._next_customer_code()
            )
        self._check_code(base["internalidentifier"], own_key)
        return complete

    def add_customer(
        self,
        sections: Mapping[str, Mapping[str, str]],
        dimensions: Iterable[tuple[str, str]] = (),
        *,
        now: dt.datetime,
        automatic_code: bool = False,
    ) -> Customer:
        complete = self._complete(sections, automatic_code=automatic_code, own_key=None)
        key = next(self._customer_keys)
        customer = Customer(key, complete, list(dimensions), now, now)
        self.customers[key] = customer
        return customer

    def edit_customer(
        self,
        key: int,
        sections: Mapping[str, Mapping[str, str]],
        dimensions: Iterable[tuple[str, str]] = (),
        *,
        now: dt.datetime,
        automatic_code: bool = False,
    ) -> Customer:
        """Replace the customer's data; members and sections left out become blank."""
        customer = self.customer(key)
        customer.sections = self._complete(sections, automatic_code=automatic_code, own_key=key)
        customer.dimensions = list(dimensions)
        customer.changed_at = now
        return customer

    def change_customer(
        self, key: int, changes: Mapping[str, Mapping[str, str]], *, now: dt.datetime
    ) -> Customer:
        """Change some members and keep the rest (what a person does in Netvisor's UI)."""
        customer = self.customer(key)
        merged = copy.deepcopy(customer.sections)
        for section, members in changes.items():
            merged.setdefault(section, {}).update(members)
        customer.sections = self._complete(merged, automatic_code=False, own_key=key)
        customer.changed_at = now
        return customer

    # ----------------------------------------------------------------------------- invoices

    def invoice(self, key: int) -> Invoice:
        found = self.invoices.get(key)
        if found is None:
            raise invalid(f"Sales invoice not found with Netvisor identifier: {key}", RefusalKind.NOT_FOUND)
        return found

    def _resolve_customer(self, identifier: str, kind: str) -> Customer:
        if kind == "netvisor":
            if not identifier.isdigit() or int(identifier) not in self.customers:
                raise invalid(
                    f"Customer not found with Netvisor identifier: {identifier}", RefusalKind.NOT_FOUND
                )
            return self.customers[int(identifier)]
        found = self.customer_by_code(identifier)
        if found is None:
            raise invalid(f"Customer not found with customer code: {identifier}", RefusalKind.NOT_FOUND)
        return found

    def _next_invoice_number(self) -> str:
        numbers = [int(i.number) for i in self.invoices.values() if i.number.isdigit()]
        return str(max(numbers, default=0) + 1)

    def _build(self, draft: InvoiceDraft, key: int, now: dt.datetime, previous: Invoice | None) -> Invoice:
        locked = self.behaviour.period_locked_until
        if locked is not None and draft.invoice_date <= locked:
            raise NetvisorError(
                ErrorCode.PERIOD_LOCK,
                f"Accounting period is locked until {locked.isoformat()}; invoice date "
                f"{draft.invoice_date.isoformat()} falls in it",
                RefusalKind.PERIOD_LOCK,
            )
        if draft.status not in INVOICE_STATUSES:
            raise invalid(f"Unknown sales invoice status: {draft.status}")
        customer = self._resolve_customer(draft.customer_identifier, draft.customer_identifier_type)
        number = draft.number or (previous.number if previous else self._next_invoice_number())
        if draft.number and self.behaviour.duplicate_invoice_number is Duplicates.REFUSE:
            for other in self.invoices.values():
                if other.number == draft.number and other.netvisor_key != key:
                    raise NetvisorError(
                        ErrorCode.DUPLICATE_DATA,
                        f"Sales invoice with invoice number {draft.number} already exists",
                        RefusalKind.DUPLICATE,
                    )
        if draft.reference_number:
            reference = draft.reference_number.replace(" ", "")
            if not valid_reference(reference):
                raise invalid(f"Invalid reference number: {draft.reference_number}")
        else:
            reference = finnish_reference(str(1000 + key))
        rows: list[InvoiceLine | CommentLine] = [
            price_line(row) if isinstance(row, LineDraft) else row for row in draft.lines
        ]
        priced = [row for row in rows if isinstance(row, InvoiceLine)]
        if not priced:
            raise invalid("An invoice needs at least one product line.", RefusalKind.MANDATORY)
        amount = (
            round_cents(draft.amount)
            if draft.amount is not None
            else sum((r.gross_sum for r in priced), ZERO)
        )
        if draft.due_date is not None:
            due = draft.due_date
        else:
            # paymentterm names a term in Netvisor's register; the fake takes it as 14 days net.
            days = draft.payment_term_net_days if draft.payment_term_net_days is not None else 14
            due = draft.invoice_date + dt.timedelta(days=days)
        settled = (previous.amount - previous.open_sum) if previous else ZERO
        return Invoice(
            netvisor_key=key,
            number=number,
            invoice_date=draft.invoice_date,
            due_date=due,
            delivery_date=draft.delivery_date,
            reference_number=reference,
            amount=amount,
            open_sum=amount - settled,
            currency=draft.currency.upper() or "EUR",
            currency_rate=draft.currency_rate,
            status=draft.status,
            customer_key=customer.netvisor_key,
            customer_code=customer.code,
            customer_name=draft.header.get("invoicingcustomername") or customer.name,
            rows=rows,
            header=dict(draft.header),
            payment_term_net_days=draft.payment_term_net_days,
            created_at=previous.created_at if previous else now,
            changed_at=now,
        )

    def add_invoice(self, draft: InvoiceDraft, *, now: dt.datetime) -> Invoice:
        key = next(self._invoice_keys)
        invoice = self._build(draft, key, now, None)
        self.invoices[key] = invoice
        return invoice

    def edit_invoice(self, key: int, draft: InvoiceDraft, *, now: dt.datetime) -> Invoice:
        """Replace the whole invoice (payments already registered stay against it)."""
        previous = self.invoice(key)
        invoice = self._build(draft, key, now, previous)
        self.invoices[key] = invoice
        return invoice

    def set_invoice_status(self, keys: Sequence[int], status: str, *, now: dt.datetime) -> list[Invoice]:
        """``updatesalesinvoicestatus.nv``: all keys must exist; ``paid`` leaves nothing open."""
        if status not in SETTABLE_STATUSES:
            raise invalid(f"Unknown sales invoice status: {status}")
        invoices = [self.invoice(key) for key in keys]
        for invoice in invoices:
            invoice.status = status
            if status == "paid":
                invoice.open_sum = ZERO
            invoice.changed_at = now
        return invoices

    def register_payment(
        self,
        key: int,
        *,
        now: dt.datetime,
        date: dt.date,
        amount: Decimal | None = None,
        name: str | None = None,
        foreign_currency_amount: Decimal | None = None,
        bank_status: str = "OK",
    ) -> Payment:
        """A customer's payment against an invoice (``amount`` defaults to what is still open)."""
        invoice = self.invoice(key)
        paid = round_cents(invoice.open_sum if amount is None else amount)
        if paid <= 0:
            raise ValueError(f"a payment must be positive (invoice {key} has {invoice.open_sum} open)")
        payment = Payment(
            netvisor_key=next(self._payment_keys),
            invoice_key=key,
            date=date,
            sum=paid,
            name=name if name is not None else invoice.customer_name,
            reference_number=invoice.reference_number,
            invoice_number=invoice.number,
            foreign_currency_amount=foreign_currency_amount,
            bank_status=bank_status,
            created_at=now,
            changed_at=now,
        )
        self.payments[payment.netvisor_key] = payment
        invoice.open_sum -= paid
        if invoice.open_sum <= 0:
            invoice.status = "paid"
        invoice.changed_at = now
        return payment

    def match_credit_note(
        self, credit_note_key: int, invoice_key: int, *, now: dt.datetime
    ) -> CreditNoteMatch:
        """``matchcreditnote.nv``: both sent or open (with vouchers), same currency, a credit note's
        total negative; the invoice's open sum drops by the credit note's, which is then settled."""
        credit = self.invoice(credit_note_key)
        invoice = self.invoice(invoice_key)
        if credit_note_key == invoice_key:
            raise invalid("A credit note cannot be matched to itself.")
        if not credit.has_voucher or not invoice.has_voucher:
            raise invalid("Both the credit note and the invoice must be sent or open (have vouchers).")
        if credit.currency != invoice.currency:
            raise invalid(f"Currencies differ: credit note {credit.currency}, invoice {invoice.currency}.")
        if credit.amount >= 0:
            raise invalid(
                f"Sales invoice {credit_note_key} is not a credit note (its total is not negative)."
            )
        if credit.open_sum == 0:
            raise invalid(f"Credit note {credit_note_key} has already been matched.")
        applied = -credit.open_sum
        invoice.open_sum -= applied
        credit.open_sum = ZERO
        credit.status = "paid"
        if invoice.open_sum <= 0:
            invoice.status = "paid"
        credit.changed_at = invoice.changed_at = now
        match = CreditNoteMatch(credit_note_key, invoice_key, applied, now)
        self.credit_note_matches.append(match)
        return match
