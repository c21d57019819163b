"""The customer an invoice names, for when the invoice reaches accounting before its customer.

An invoice must name a customer the accounting system knows. Severa's customer event normally
comes first, but not always: a customer created before the connector was started, or an invoice
polled in the same minute. Rather than parking the invoice, the invoice flow adds the customer from
what the invoice itself says (number, name, business id, receiver address and contact, payment
term, language), through the very mapping the customer flow uses -- so the same checks apply and
the customer's own event, when it comes, writes every detail over it.
"""

from __future__ import annotations

import datetime as dt

from connector.mapping.customers import customer_for_accounting
from connector.ports import AccountingCustomer
from schemas.severa_events import Contact, SeveraCustomer, SeveraInvoice


def customer_from_invoice(invoice: SeveraInvoice, *, seen_at: dt.datetime) -> AccountingCustomer:
    """The invoice's customer as :func:`customer_for_accounting` would map it; pure.

    ``seen_at`` (the invoice event's time) stands in for the customer's creation time, which the
    invoice does not carry and the accounting record does not need.
    """
    receiver = invoice.receiver
    contact = None
    if receiver is not None and (receiver.contact_name or receiver.contact_email):
        contact = Contact(name=receiver.contact_name, email=receiver.contact_email)
    customer = SeveraCustomer(
        guid=invoice.customer.account_guid,
        number=invoice.customer.number,
        name=invoice.customer.name,
        business_id=invoice.customer.business_id,
        is_active=True,
        currency_code=invoice.currency.code,
        language_code=invoice.language_code,
        payment_term_days=invoice.payment_term_days,
        head_office_address=receiver.address if receiver is not None else None,
        contact=contact,
        created_at=seen_at,
    )
    return customer_for_accounting(customer)
