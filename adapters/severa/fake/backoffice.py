"""Customers and invoices changed "by hand": what people do in Severa's own UI, not through the API.

The connector only *reads* customers and invoices, so tests and the demo need another way to make
Severa-side changes happen: these functions, reached through :class:`FakeSevera`'s methods and the
admin API. Like the hand-made hour entries they make no API call (no quota, no fault injection),
and every change is stamped with the fake's clock — the row's change time and, for accounts, the
``UpdatedTS`` member, which the ``*ChangedSince`` operations read.

Values are seed-style (ISO dates, numbers as strings or numbers) and use Severa's member names.
What Severa fills itself is filled here too (GUIDs, the company of an account, an invoice's due
date, language, receiver, reference number and row amounts), and what it would refuse raises
:class:`ChangeRefused` with the reason; an unknown GUID raises :class:`KeyError`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from adapters.severa.fake.handlers import reference_number
from adapters.severa.fake.seed import INVOICE_NESTED, SeedError, coerce_record, coerce_value, sync_company
from adapters.severa.fake.store import CONTACT, Record, SeveraStore, Table
from adapters.severa.wsdl.spec import ComplexType

CENT: Final = Decimal("0.01")
DEFAULT_PAYMENT_TERM: Final = 14
FIRST_ACCOUNT_NUMBER: Final = 1000


class ChangeRefused(ValueError):
    """A change by hand that Severa would refuse; the message says why."""


def _new_guid() -> str:
    return str(uuid.uuid4())


def _changed(entity: ComplexType, current: Record, changes: Mapping[str, Any], where: str) -> Record:
    """*current* with *changes* (seed-style values) applied; the key cannot change."""
    record = dict(current)
    for name, value in changes.items():
        if name == "GUID":
            raise SeedError("GUID cannot be changed")
        try:
            member = entity.member(name)
        except KeyError:
            raise SeedError(f"{where}: {entity.name} has no member {name!r}") from None
        record[name] = coerce_value(member.type, value, f"{where}.{name}")
    return record


def _existing(table: Table, guid: str) -> Record:
    record = table.get(guid)
    if record is None:
        raise KeyError(f"no {table.entity.name.lower()} {guid}")
    return record


# -------------------------------------------------------------------------------------- customers


def _put_account(store: SeveraStore, account: Record, *, now: dt.datetime) -> Record:
    sync_company(store, account, at=now)
    account["UpdatedTS"] = now
    stored = store.accounts.put(account, at=now)
    stored["InsertTS"] = store.accounts.created_at(stored["GUID"])
    return stored


def add_customer(
    store: SeveraStore,
    values: Mapping[str, Any],
    *,
    now: dt.datetime,
    company: Mapping[str, Any] | None = None,
    head_office_address: Mapping[str, Any] | None = None,
    contact: Mapping[str, Any] | None = None,
) -> Record:
    """A new customer (account) with its company and, optionally, head-office address and contact.

    The company's members (``VatNumber``, ``Email`` …) may come in *company* or in *values*; Severa
    assigns the GUIDs and the next account number when they are not given.
    """
    account = coerce_record("Customer", values, "customer")
    if not account.get("Name"):
        raise ChangeRefused("Name is required.")
    account["GUID"] = account.get("GUID") or _new_guid()
    if account["GUID"] in store.accounts:
        raise ChangeRefused(f"customer {account['GUID']} already exists.")
    if company is not None:
        company_record = coerce_record("Company", company, "company")
        for name, value in company_record.items():
            if name == "GUID":
                account["CompanyGUID"] = account.get("CompanyGUID") or value
            elif value is not None and name in account:
                account[name] = value
    account["CompanyGUID"] = account.get("CompanyGUID") or _new_guid()
    if account.get("Number") is None:
        numbers = [record["Number"] for record in store.accounts if record["Number"] is not None]
        account["Number"] = max(numbers, default=FIRST_ACCOUNT_NUMBER - 1) + 1
    elif any(record["Number"] == account["Number"] for record in store.accounts):
        raise ChangeRefused(f"account number {account['Number']} is already in use.")
    if account.get("IsActive") is None:
        account["IsActive"] = True
    account["CurrencyCode"] = account.get("CurrencyCode") or "EUR"
    stored = _put_account(store, account, now=now)
    if head_office_address is not None:
        set_head_office_address(store, stored["GUID"], head_office_address, now=now)
    if contact is not None:
        add_contact(store, stored["GUID"], contact, now=now)
    return store.accounts[stored["GUID"]]


def change_customer(store: SeveraStore, guid: str, changes: Mapping[str, Any], *, now: dt.datetime) -> Record:
    """Change members of a customer (company members change its company too); ``UpdatedTS`` moves."""
    current = _existing(store.accounts, guid)
    account = _changed(store.accounts.entity, current, changes, "customer")
    if not account.get("Name"):
        raise ChangeRefused("Name is required.")
    for member in ("InsertTS", "UpdatedTS", "CompanyGUID"):
        if member in changes:
            raise ChangeRefused(f"{member} is Severa's to set.")
    return _put_account(store, account, now=now)


def set_head_office_address(
    store: SeveraStore, account_guid: str, values: Mapping[str, Any], *, now: dt.datetime
) -> Record:
    """Create the account's head-office address, or change the members given of the existing one.

    Changing an address is a change of the *address* (``CheckAddressChanges`` finds it), not of the
    account; making a new one the head office changes the account too (its ``HeadOfficeAddressGUID``).
    """
    account = _existing(store.accounts, account_guid)
    current = store.addresses.get(account["HeadOfficeAddressGUID"])
    if current is not None:
        return store.addresses.put(_changed(store.addresses.entity, current, values, "address"), at=now)
    address = coerce_record("Address", values, "address")
    address["GUID"] = address.get("GUID") or _new_guid()
    address["CompanyGUID"] = account["CompanyGUID"]
    for flag in ("IsBillingAddress", "IsPostalAddress", "IsVisitAddress"):
        if address.get(flag) is None:
            address[flag] = True
    stored = store.addresses.put(address, at=now)
    _put_account(store, {**account, "HeadOfficeAddressGUID": stored["GUID"]}, now=now)
    return stored


def add_contact(
    store: SeveraStore, account_guid: str, values: Mapping[str, Any], *, now: dt.datetime
) -> Record:
    """A new contact person of the account (``CheckContactChanges`` finds the account)."""
    _existing(store.accounts, account_guid)
    contact = coerce_record(CONTACT, values, "contact")
    contact["GUID"] = contact.get("GUID") or _new_guid()
    contact["AccountGUID"] = account_guid
    if contact.get("IsActive") is None:
        contact["IsActive"] = True
    return store.contacts.put(contact, at=now)


def change_contact(store: SeveraStore, guid: str, changes: Mapping[str, Any], *, now: dt.datetime) -> Record:
    current = _existing(store.contacts, guid)
    if "AccountGUID" in changes:
        raise ChangeRefused("a contact cannot move to another account.")
    return store.contacts.put(_changed(CONTACT, current, changes, "contact"), at=now)


# --------------------------------------------------------------------------------------- invoices


def _status(store: SeveraStore, name: str | None) -> Record:
    if name is None:
        defaults = [status for status in store.invoice_statuses if status["IsDefault"]]
        if not defaults:
            raise ChangeRefused("InvoiceStatus is required (no status is the default).")
        return defaults[0]
    for status in store.invoice_statuses:
        if status["Name"].casefold() == name.casefold():
            return status
    raise ChangeRefused(f"invoice status {name!r} does not exist.")


def _numbering_unit(invoice: Record) -> str | None:
    unit: str | None = invoice.get("InvoiceNumberingBusinessUnitGUID") or invoice.get("BusinessUnitGUID")
    return unit


def _complete_row(row: Record, index: int, invoice: Record) -> Record:
    """Fill what Severa computes for a row: its number, amounts and currency (VAT rounded to cents)."""
    row["GUID"] = row.get("GUID") or _new_guid()
    if not row.get("rowNumber"):
        row["rowNumber"] = index + 1
    quantity = row.get("deliveredQuantity")
    quantity = row["deliveredQuantity"] = Decimal(1) if quantity is None else quantity
    unit_price = row.get("unitPriceAmount") or Decimal(0)
    row["unitPriceAmount"] = unit_price
    if row.get("rowUnitPrice") is None:
        row["rowUnitPrice"] = unit_price
    excluded = row.get("rowVatExcludedAmount")
    if excluded is None:
        excluded = row["rowVatExcludedAmount"] = (quantity * unit_price).quantize(CENT, ROUND_HALF_UP)
    rate = row.get("rowVatRatePercent")
    if row.get("rowVatAmount") is None:
        vat = Decimal(0) if rate is None else excluded * rate / 100
        row["rowVatAmount"] = vat.quantize(CENT, ROUND_HALF_UP)
    if row.get("rowAmount") is None:
        row["rowAmount"] = excluded + row["rowVatAmount"]
    currency = invoice["CurrencyShortform"]
    for member in (
        "rowAmountCurrencyIdentifier",
        "rowVatCurrencyIdentifier",
        "rowVatExcludedCurrencyIdentifier",
        "unitPriceCurrencyIdentifier",
    ):
        row[member] = row.get(member) or currency
    for member in ("EventDate", "rowDeliveryDate"):
        if row.get(member) is None:
            row[member] = invoice["Date"]
    return row


def _complete_invoice(store: SeveraStore, invoice: Record) -> list[str]:
    """Check *invoice* as Severa would and fill what it fills; the problems found, if any."""
    problems: list[str] = []
    if invoice.get("Date") is None:
        problems.append("Date is required.")
    account = store.accounts.get(invoice.get("AccountGUID"))
    if account is None:
        problems.append(f"AccountGUID: customer '{invoice.get('AccountGUID')}' does not exist.")
    unit = invoice.get("BusinessUnitGUID")
    if unit is not None and unit not in store.business_units:
        problems.append(f"BusinessUnitGUID: business unit '{unit}' does not exist.")
    credited_guid = invoice.get("ReimburseInvoiceGUID")
    if credited_guid:
        credited = store.invoices.get(credited_guid)
        if credited is None or credited_guid == invoice["GUID"]:
            problems.append(f"ReimburseInvoiceGUID: invoice '{credited_guid}' does not exist.")
        elif credited["IsCreditNote"]:
            problems.append(f"ReimburseInvoiceGUID: invoice '{credited_guid}' is itself a credit note.")
    if invoice.get("CurrencyRate") is not None and invoice["CurrencyRate"] <= 0:
        problems.append("CurrencyRate must be greater than 0.")
    try:
        invoice["InvoiceStatus"] = _status(store, invoice.get("InvoiceStatus"))["Name"]
    except ChangeRefused as refused:
        problems.append(str(refused))
    number = invoice.get("Number")
    if number is not None:
        if number < 1:
            problems.append(f"Number {number} is not an invoice number.")
        for other in store.invoices:
            if (
                other["GUID"] != invoice["GUID"]
                and other["Number"] == number
                and _numbering_unit(other) == _numbering_unit(invoice)
            ):
                problems.append(f"Number {number} is already used by invoice '{other['GUID']}'.")
    if problems or account is None:
        return problems

    invoice["IsCreditNote"] = bool(credited_guid) or bool(invoice.get("IsCreditNote"))
    for flag in ("IsReimbursed", "IsTaxFree"):
        invoice[flag] = bool(invoice.get(flag))
    invoice["AccountName"] = invoice.get("AccountName") or account["Name"]
    if invoice.get("AccountNumber") is None:
        invoice["AccountNumber"] = account["Number"]
    if unit is not None and not invoice.get("InvoiceNumberingBusinessUnitGUID"):
        invoice["InvoiceNumberingBusinessUnitGUID"] = unit
    invoice["CurrencyShortform"] = invoice.get("CurrencyShortform") or account["CurrencyCode"] or "EUR"
    # The invoice's language is the customer's unless given (the fake's assumption, as for currency).
    invoice["LanguageCode"] = invoice.get("LanguageCode") or account["LanguageCode"]
    if invoice.get("CurrencyRate") is None:
        invoice["CurrencyRate"] = Decimal(1)
    if invoice.get("PaymentTerm") is None:
        invoice["PaymentTerm"] = account["PaymentTerm"] or DEFAULT_PAYMENT_TERM
    if invoice.get("EntryDate") is None:
        invoice["EntryDate"] = invoice["Date"]
    if invoice.get("DueDate") is None:
        invoice["DueDate"] = invoice["Date"] + dt.timedelta(days=invoice["PaymentTerm"])
    if number is not None and not invoice.get("ReferenceNumber"):
        invoice["ReferenceNumber"] = reference_number(number)
    invoice["PaymentStatus"] = invoice.get("PaymentStatus") or "Unpaid"
    address = store.addresses.get(account["HeadOfficeAddressGUID"])
    receiver = {
        "ReceiverCustomerName": account["Name"],
        "ReceiverVatNumber": account["VatNumber"],
        "ReceiverAddressline": address["Addressline"] if address else None,
        "ReceiverPostalCode": address["PostalCode"] if address else None,
        "ReceiverCity": address["City"] if address else None,
        "ReceiverCountry": address["CountryName"] if address else None,
    }
    for member, value in receiver.items():
        if invoice.get(member) is None:
            invoice[member] = value
    for member in INVOICE_NESTED:
        if invoice.get(member) is None:
            invoice[member] = {}
    invoice["InvoiceRows"] = [
        _complete_row(dict(row), index, invoice) for index, row in enumerate(invoice.get("InvoiceRows") or [])
    ]
    return []


def _put_invoice(store: SeveraStore, invoice: Record, *, now: dt.datetime) -> Record:
    problems = _complete_invoice(store, invoice)
    if problems:
        raise ChangeRefused(" ".join(problems))
    stored = store.invoices.put(invoice, at=now)
    credited = store.invoices.get(stored["ReimburseInvoiceGUID"])
    if credited is not None and not credited["IsReimbursed"]:
        store.invoices.put({**credited, "IsReimbursed": True}, at=now)
    return stored


def add_invoice(store: SeveraStore, values: Mapping[str, Any], *, now: dt.datetime) -> Record:
    """A new invoice with its rows (``InvoiceRows``: a list of InvoiceRow members).

    A credit note names the invoice it credits in ``ReimburseInvoiceGUID`` (its amounts are
    negative, as the caller gives them); that invoice becomes ``IsReimbursed``.
    """
    invoice = coerce_record("Invoice", values, "invoice")
    invoice["GUID"] = invoice.get("GUID") or _new_guid()
    if invoice["GUID"] in store.invoices:
        raise ChangeRefused(f"invoice {invoice['GUID']} already exists.")
    return _put_invoice(store, invoice, now=now)


def change_invoice(store: SeveraStore, guid: str, changes: Mapping[str, Any], *, now: dt.datetime) -> Record:
    """Change members of an invoice; ``InvoiceRows``, when given, replaces every row."""
    current = _existing(store.invoices, guid)
    invoice = _changed(store.invoices.entity, current, changes, "invoice")
    # What Severa derives follows what it derives from, unless the change sets it too.
    if {"Date", "PaymentTerm"} & set(changes) and "DueDate" not in changes:
        invoice["DueDate"] = None
    if "Number" in changes and "ReferenceNumber" not in changes:
        invoice["ReferenceNumber"] = None
    return _put_invoice(store, invoice, now=now)


def mark_invoice_status(store: SeveraStore, guid: str, status: str, *, now: dt.datetime) -> Record:
    """Move an invoice to *status*, with what that implies in Severa.

    A status that has invoice numbers gives an unnumbered invoice the numbering business unit's
    next number (and its reference number); a paid status marks it paid, on today's date unless a
    payment date is set.
    """
    invoice = dict(_existing(store.invoices, guid))
    target = _status(store, status)
    invoice["InvoiceStatus"] = target["Name"]
    if target["HasInvoiceNumber"] and invoice["Number"] is None:
        unit = store.business_units.get(_numbering_unit(invoice))
        used = [other["Number"] for other in store.invoices if other["Number"] is not None]
        number = (unit or {}).get("NextInvoiceNumber") or max(used, default=0) + 1
        while number in used:
            number += 1
        invoice["Number"] = number
        invoice["ReferenceNumber"] = None
        if unit is not None:
            store.business_units.put({**unit, "NextInvoiceNumber": number + 1}, at=now)
    if target["IsPaid"]:
        invoice["PaymentStatus"] = "Paid"
        if invoice["PaymentDate"] is None:
            invoice["PaymentDate"] = dt.datetime.combine(now.date(), dt.time())
    return _put_invoice(store, invoice, now=now)
