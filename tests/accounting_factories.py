"""Builders of Severa invoices, rows and customers as the change events carry them, for the
accounting mapping and flow tests: amounts are what Severa computes unless a test gives its own."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from connector.mapping.invoices import round_cents
from schemas.severa_events import (
    InvoiceCurrency,
    InvoiceCustomer,
    InvoiceReceiver,
    PostalAddress,
    SeveraCustomer,
    SeveraInvoice,
    SeveraInvoiceRow,
)

D = Decimal
INVOICE_GUID = uuid.UUID("70000000-0000-4000-8000-000000000001")
CREDITED_GUID = uuid.UUID("70000000-0000-4000-8000-000000000009")
ACCOUNT_GUID = uuid.UUID("40000000-0000-4000-8000-000000000001")
DATE = dt.date(2026, 11, 20)


def row(
    number: int = 1,
    *,
    quantity: str = "1",
    price: str = "100.00",
    rate: str | None = "25.5",
    net: str | None = None,
    vat: str | None = None,
    code: str | None = None,
    name: str | None = "Consulting",
    description: str | None = None,
    article: str | None = None,
    account: str | None = None,
) -> SeveraInvoiceRow:
    """A Severa row; its amounts are what Severa computes unless given."""
    net_amount = D(net) if net is not None else round_cents(D(quantity) * D(price))
    vat_amount = D(vat) if vat is not None else round_cents(net_amount * D(rate or 0) / 100)
    return SeveraInvoiceRow(
        row_number=number,
        article_identifier=article,
        article_name=name,
        description=description,
        quantity=D(quantity),
        unit_price=D(price),
        vat_rate_percent=D(rate) if rate is not None else None,
        vat_code=code,
        vat_amount=vat_amount,
        amount_excluding_vat=net_amount,
        amount_including_vat=net_amount + vat_amount,
        sales_account_number=account,
    )


def invoice(
    *rows: SeveraInvoiceRow,
    number: int = 10023,
    date: dt.date = DATE,
    due: dt.date | None = None,
    total_net: str | None = None,
    total_gross: str | None = None,
    currency: str = "EUR",
    rate: str = "1",
    business_id: str | None = "2000001-6",
    country: str | None = None,
    customer_number: int | None = 1001,
    **fields: Any,
) -> SeveraInvoice:
    """A Severa invoice whose totals are its rows' unless given."""
    rows = rows or (row(),)
    net = sum((r.amount_excluding_vat for r in rows), D(0))
    gross = net + sum((r.vat_amount for r in rows), D(0))
    values: dict[str, Any] = {
        "guid": INVOICE_GUID,
        "number": number,
        "invoice_date": date,
        "due_date": due or date + dt.timedelta(days=14),
        "entry_date": date,
        "status": "Ready",
        "is_credit_note": False,
        "reference_number": None,
        "currency": InvoiceCurrency(code=currency, rate=D(rate)),
        "total_excluding_vat": D(total_net) if total_net is not None else net,
        "total_including_vat": D(total_gross) if total_gross is not None else gross,
        "customer": InvoiceCustomer(
            account_guid=ACCOUNT_GUID, number=customer_number, name="Acme Oy", business_id=business_id
        ),
        "receiver": (
            InvoiceReceiver(address=PostalAddress(country_code=country)) if country is not None else None
        ),
        "rows": rows,
    }
    values.update(fields)
    return SeveraInvoice(**values)


CUSTOMER_GUID = uuid.UUID("40000000-0000-4000-8000-000000000001")
CUSTOMER_CREATED = dt.datetime(2020, 5, 4, 9, 30, tzinfo=dt.UTC)


def customer(
    *, country: str | None = "FI", country_name: str | None = None, address: bool = True, **fields: Any
) -> SeveraCustomer:
    values: dict[str, Any] = {
        "guid": CUSTOMER_GUID,
        "number": 1001,
        "name": "Acme Oy",
        "business_id": "2000001-6",
        "is_active": True,
        "language_code": "fi",
        "payment_term_days": 14,
        "email": "invoices@acme.example",
        "head_office_address": (
            PostalAddress(
                lines=("Esimerkkikatu 1", "PL 100"),
                postal_code="00100",
                city="Helsinki",
                country_code=country,
                country_name=country_name,
            )
            if address
            else None
        ),
        "created_at": CUSTOMER_CREATED,
    }
    values.update(fields)
    return SeveraCustomer(**values)
