"""The demo's accounting half: Severa invoices and customers out to a fake Netvisor, a payment back.

The demo organisation (``adapters/severa/fake/demo_seed.yaml``) has invoices in the "Sent" status,
which the demo names as the ready status: a normal invoice with several VAT rates, one in SEK, and
a credit note of an invoice that is already paid (so never transferred). Three more things go
wrong on purpose, one of each kind an accountant meets:

* an invoice whose reference number has a wrong check digit -- the mapping refuses it before
  anything is written (``invalid_reference_number``);
* an invoice dated in an accounting period that is locked in Netvisor (``accounting_period_locked``);
* the credit note, whose invoice is not in Netvisor and never will be: it waits on the retry ladder,
  then is parked saying which invoice to transfer first (``credited_invoice_missing``).

Once the good invoices are in Netvisor, the demo marks one of them paid there, as a bookkeeper
would, and waits for the payment to come back as Severa's payment date and "Paid" status.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from adapters.netvisor.fake.server import FakeNetvisor
from adapters.severa.fake.server import FakeSevera
from connector.logging import register_secret

READY_STATUS: Final = "Sent"
TRANSFERRED_STATUS: Final = "Transferred"
PAID_STATUS: Final = "Paid"
#: Netvisor's books are closed up to here: the demo's period-locked invoice is dated before it.
LOCKED_UNTIL: Final = dt.date(2024, 12, 31)
ORGANISATION_ID: Final = "1234567-8"


@dataclass(frozen=True, slots=True)
class NetvisorCredentials:
    customer_id: str
    customer_key: str
    partner_id: str
    partner_key: str
    organisation_id: str

    @classmethod
    def fresh(cls) -> NetvisorCredentials:
        """New keys each run, registered as secrets so no log line can show them."""
        credentials = cls(
            customer_id="demo-customer",
            customer_key=secrets.token_urlsafe(24),
            partner_id="demo-partner",
            partner_key=secrets.token_urlsafe(24),
            organisation_id=ORGANISATION_ID,
        )
        register_secret(credentials.customer_key)
        register_secret(credentials.partner_key)
        return credentials

    def as_settings(self) -> dict[str, str]:
        return {
            "customer_id": self.customer_id,
            "customer_key": self.customer_key,
            "partner_id": self.partner_id,
            "partner_key": self.partner_key,
            "organisation_id": self.organisation_id,
        }

    def fake(self) -> FakeNetvisor:
        """The fake Netvisor that accepts exactly these credentials."""
        return FakeNetvisor(
            customer_id=self.customer_id,
            customer_key=self.customer_key,
            partner_id=self.partner_id,
            partner_key=self.partner_key,
            organisation_id=self.organisation_id,
        )


@dataclass(frozen=True, slots=True)
class AccountingPlan:
    """What the demo expects of the accounting flows, worked out from the fake Severa's data."""

    good: tuple[int, ...]  # invoice numbers that must reach Netvisor
    parked: tuple[int, ...]  # invoice numbers that must end in the DLQ
    customers: int  # active customers that must reach Netvisor
    pay: int  # the invoice the demo marks paid in Netvisor


def prepare(fake: FakeSevera, books: FakeNetvisor) -> AccountingPlan:
    """Add the demo's bad invoices to the fake Severa and lock Netvisor's old periods."""
    books.behaviour.period_locked_until = LOCKED_UNTIL
    acme = next(a for a in fake.store.accounts if a.get("Name") == "Acme Oy")
    row = {
        "articleName": "Consulting",
        "deliveredQuantity": 2,
        "unitPriceAmount": 120,
        "rowVatRatePercent": 25.5,
    }
    bad_reference = fake.add_invoice(
        {
            "AccountGUID": acme["GUID"],
            "Date": dt.date.today().isoformat(),
            "Number": 20260,
            "ReferenceNumber": "202609",  # a wrong check digit: 20260 takes 4
            "InvoiceStatus": READY_STATUS,
            "InvoiceRows": [row],
        }
    )
    locked = fake.add_invoice(
        {
            "AccountGUID": acme["GUID"],
            "Date": "2024-12-15",
            "Number": 20261,
            "InvoiceStatus": READY_STATUS,
            "InvoiceRows": [row],
        }
    )
    ready = [i for i in fake.store.invoices if i.get("InvoiceStatus") == READY_STATUS and i.get("Number")]
    paid_numbers = {i["Number"] for i in fake.store.invoices if i.get("InvoiceStatus") == PAID_STATUS}
    stuck = [
        i["Number"]
        for i in ready
        if i.get("ReimburseInvoiceGUID")
        and fake.store.invoices[i["ReimburseInvoiceGUID"]]["Number"] in paid_numbers
    ]
    parked = (int(bad_reference["Number"]), int(locked["Number"]), *stuck)
    good = tuple(int(i["Number"]) for i in ready if int(i["Number"]) not in parked)
    customers = sum(1 for a in fake.store.accounts if a.get("IsActive") and a.get("Number") is not None)
    positive = [i for i in ready if int(i["Number"]) in good and not i.get("IsCreditNote")]
    return AccountingPlan(good=good, parked=parked, customers=customers, pay=int(positive[0]["Number"]))


def settings_for(books: FakeNetvisor, credentials: NetvisorCredentials) -> dict[str, Any]:
    """The accounting part of the demo's connector settings (the production defaults otherwise)."""
    return {
        "poller": {"interval_seconds": 0.5, "invoice_status": READY_STATUS, "organization_id": "demo-org"},
        "accounting": {
            "system": "netvisor",
            "severa_transferred_status": TRANSFERRED_STATUS,
            "severa_paid_status": PAID_STATUS,
            "payments_interval_seconds": 0.5,
        },
        "netvisor": {
            "base_url": books.url,
            "default_product_code": "SERVICES",
            "retry_backoff_seconds": 0.1,
            "retry_backoff_max_seconds": 0.5,
            **credentials.as_settings(),
        },
    }


def transferred(fake: FakeSevera, books: FakeNetvisor, plan: AccountingPlan) -> bool:
    numbers = {invoice.number for invoice in books.store.invoices.values()}
    statuses = {i.get("Number"): i.get("InvoiceStatus") for i in fake.store.invoices}
    return (
        all(str(n) in numbers and statuses.get(n) in (TRANSFERRED_STATUS, PAID_STATUS) for n in plan.good)
        and len(books.store.customers) >= plan.customers
    )


def pay(books: FakeNetvisor, plan: AccountingPlan) -> None:
    """A bookkeeper matches the bank statement: the invoice is paid in full today."""
    invoice = next(i for i in books.store.invoices.values() if i.number == str(plan.pay))
    books.mark_invoice_paid(invoice.netvisor_key)


def payment_back(fake: FakeSevera, plan: AccountingPlan) -> bool:
    invoice = next(i for i in fake.store.invoices if i.get("Number") == plan.pay)
    return invoice.get("InvoiceStatus") == PAID_STATUS and invoice.get("PaymentDate") is not None


def print_accounting(console: Console, fake: FakeSevera, books: FakeNetvisor) -> None:
    table = Table(title="Invoices in (fake) Netvisor", title_justify="left")
    for column in ("number", "customer", "date", "total", "currency", "reference", "status"):
        table.add_column(column)
    for invoice in books.store.invoices.values():
        table.add_row(
            invoice.number,
            f"{invoice.customer_code} {invoice.customer_name}",
            invoice.invoice_date.isoformat(),
            f"{invoice.amount:.2f}",
            invoice.currency,
            invoice.reference_number,
            invoice.status,
        )
    console.print(table)
    severa = Table(title="Invoice statuses in (fake) Severa", title_justify="left")
    for column in ("number", "customer", "total", "status", "paid on"):
        severa.add_column(column)
    for record in fake.store.invoices:
        if record.get("Number") is None:
            continue
        total = sum(
            (
                Decimal(str(r.get("rowVatExcludedAmount") or 0)) + Decimal(str(r.get("rowVatAmount") or 0))
                for r in record.get("InvoiceRows") or []
            ),
            Decimal(0),
        )
        paid = record.get("PaymentDate")
        severa.add_row(
            str(record["Number"]),
            str(record.get("AccountName") or ""),
            f"{total:.2f} {record.get('CurrencyShortform') or ''}",
            str(record.get("InvoiceStatus")),
            paid.date().isoformat() if isinstance(paid, dt.datetime) else str(paid or ""),
        )
    console.print(severa)
