"""In-memory fakes of the accounting port and of Severa's invoice write-backs, for flow unit tests.

:class:`InMemoryAccounting` implements :class:`connector.ports.AccountingGateway` with dicts and
counts calls per method. It can lose the answer of the next write after storing it
(:attr:`lose_next_answer`), which is how a flow's look-up-before-write is tested without HTTP. It is
not the fake Netvisor *service* (``adapters/netvisor/fake``), which speaks Netvisor's XML over HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace

from connector.errors import AccountingRejected, AccountingUnavailable
from connector.ports import (
    AccountingCustomer,
    AccountingCustomerRef,
    AccountingInvoice,
    AccountingInvoiceRef,
    AccountingInvoiceState,
    AccountingPayment,
    Invoice,
)


@dataclass
class StoredInvoice:
    key: str
    invoice: AccountingInvoice
    state: AccountingInvoiceState = AccountingInvoiceState.OPEN
    paid_on: dt.date | None = None
    modified_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    matched_to: str | None = None


class InMemoryAccounting:
    """An accounting system in dicts; see the module docstring."""

    def __init__(self) -> None:
        self.customers: dict[str, tuple[str, AccountingCustomer]] = {}  # code → (key, record)
        self.invoices: dict[str, StoredInvoice] = {}  # key → invoice
        self.calls: Counter[str] = Counter()
        self.lose_next_answer = False
        self._next_key = 1000

    def _key(self) -> str:
        self._next_key += 1
        return str(self._next_key)

    def _lost(self, operation: str) -> None:
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise AccountingUnavailable(f"{operation}: the answer was lost", outcome_unknown=True)

    async def probe(self) -> None:
        self.calls["probe"] += 1

    async def find_customer(self, code: str) -> AccountingCustomerRef | None:
        self.calls["find_customer"] += 1
        found = self.customers.get(code)
        return None if found is None else AccountingCustomerRef(key=found[0], code=code, name=found[1].name)

    async def add_customer(self, customer: AccountingCustomer) -> AccountingCustomerRef:
        self.calls["add_customer"] += 1
        if customer.code in self.customers:
            key = self.customers[customer.code][0]  # adopted, as the adapter does on a duplicate
        else:
            key = self._key()
            self.customers[customer.code] = (key, customer)
        self._lost("add_customer")
        return AccountingCustomerRef(key=key, code=customer.code, name=customer.name)

    async def update_customer(self, key: str, customer: AccountingCustomer) -> AccountingCustomerRef:
        self.calls["update_customer"] += 1
        codes = [code for code, (k, _) in self.customers.items() if k == key]
        if not codes:
            raise AccountingRejected(f"no customer {key}", code="INVALID_DATA", operation="update_customer")
        del self.customers[codes[0]]
        self.customers[customer.code] = (key, customer)
        return AccountingCustomerRef(key=key, code=customer.code, name=customer.name)

    def _ref(self, stored: StoredInvoice) -> AccountingInvoiceRef:
        invoice = stored.invoice
        return AccountingInvoiceRef(
            key=stored.key,
            number=invoice.number,
            customer_code=invoice.customer_code,
            reference_number=invoice.reference_number,
            total_including_vat=invoice.total_including_vat,
            open_sum=None if stored.state is AccountingInvoiceState.PAID else invoice.total_including_vat,
            state=stored.state,
        )

    async def find_invoice(self, number: str) -> AccountingInvoiceRef | None:
        self.calls["find_invoice"] += 1
        for stored in self.invoices.values():
            if stored.invoice.number == number:
                return self._ref(stored)
        return None

    async def add_invoice(self, invoice: AccountingInvoice) -> AccountingInvoiceRef:
        self.calls["add_invoice"] += 1
        if invoice.customer_code not in self.customers:
            raise AccountingRejected(
                f"customer {invoice.customer_code} not found", code="INVALID_DATA", operation="add_invoice"
            )
        stored = StoredInvoice(key=self._key(), invoice=invoice)
        self.invoices[stored.key] = stored
        self._lost("add_invoice")
        return self._ref(stored)

    async def match_credit_note(self, credit_note_key: str, invoice_key: str) -> None:
        self.calls["match_credit_note"] += 1
        self.invoices[credit_note_key].matched_to = invoice_key

    async def list_paid_invoices(self, modified_since: dt.datetime) -> list[AccountingPayment]:
        self.calls["list_paid_invoices"] += 1
        return [
            AccountingPayment(
                invoice_key=stored.key,
                invoice_number=stored.invoice.number,
                reference_number=stored.invoice.reference_number,
                paid_on=stored.paid_on,
                amount=stored.invoice.total_including_vat,
                modified_at=stored.modified_at,
            )
            for stored in self.invoices.values()
            if stored.paid_on is not None and stored.modified_at >= modified_since
        ]

    def mark_paid(self, key: str, paid_on: dt.date, *, at: dt.datetime | None = None) -> None:
        """What a bookkeeper does when the bank statement comes in."""
        stored = self.invoices[key]
        stored.state = AccountingInvoiceState.PAID
        stored.paid_on = paid_on
        stored.modified_at = at or dt.datetime.now(dt.UTC)

    async def aclose(self) -> None:
        return None


class InMemorySeveraInvoicing:
    """Severa's invoices as the write-back flow sees them; log lines de-duplicated as Severa does."""

    def __init__(self, invoices: list[Invoice] | None = None) -> None:
        self.invoices: dict[str, Invoice] = {invoice.guid: invoice for invoice in invoices or []}
        self.log: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()

    async def get_invoice(self, guid: str) -> Invoice | None:
        self.calls["get_invoice"] += 1
        return self.invoices.get(guid)

    async def get_invoice_by_number(self, number: int) -> Invoice | None:
        self.calls["get_invoice_by_number"] += 1
        return next((i for i in self.invoices.values() if i.number == number), None)

    async def set_invoice_status(self, guid: str, status: str) -> None:
        self.calls["set_invoice_status"] += 1
        self.invoices[guid] = replace(self.invoices[guid], status=status)

    async def set_invoice_payment_date(self, guid: str, date: dt.date | None) -> None:
        self.calls["set_invoice_payment_date"] += 1
        self.invoices[guid] = replace(self.invoices[guid], payment_date=date)

    async def add_invoice_log_entry(self, invoice_guid: str, text: str) -> None:
        self.calls["add_invoice_log_entry"] += 1
        lines = self.log.setdefault(invoice_guid, [])
        if text not in lines:
            lines.append(text)
