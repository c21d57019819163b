"""Customers, invoices and payments as JSON/YAML: the seed file's and the admin API's shape.

A seed document (``demo_seed.yaml`` is one)::

    customers:
      - {code: "1001", name: Acme Oy, business_id: 1234567-1, city: Helsinki,
         customeradditionalinformation: {yourdefaultreference: Aino}}
    invoices:
      - {customer_code: "1001", number: "20250", date: 2025-05-02, payment_term_net_days: 14,
         reference_number: "202508", status: open,
         lines: [{product_identifier: DEV, name: Development, unit_price: "100.00", quantity: 2,
                  vat_percent: "25.5", vat_code: KOMY}, {comment: "May 2025"}]}
    payments:
      - {invoice_number: "20250", sum: "251.00", date: 2025-05-10}

A customer's plain keys are ``customerbaseinformation`` members under their request names
(``name``, ``city``, ``isactive`` …; ``code`` and ``business_id`` are aliases of
``internalidentifier`` and ``externalidentifier``); the other sections are objects under their
names; ``dimensions`` is a list of ``[name, item]`` pairs. An invoice names its customer by
``customer_code`` or ``customer_key``; a line is a product line or ``{comment: …}``. Numbers may be
strings or numbers (strings keep decimals exact). Any record may carry ``changed_at`` (ISO time,
UTC when naive) to place it in time for the last-modified filters.

Loading is all or nothing: a broken document raises :class:`SeedError` naming the record, and the
store is untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TypeAlias

import yaml

from adapters.netvisor.fake.errors import NetvisorError
from adapters.netvisor.fake.store import (
    CUSTOMER_SECTIONS,
    CommentLine,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    LineDraft,
    NetvisorStore,
)

SeedSource: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | None
"""A ``.yaml``/``.yml``/``.json`` path, an already-loaded mapping, or ``None`` (empty company)."""

DEMO_SEED_PATH: Final = Path(__file__).with_name("demo_seed.yaml")

_ALIASES: Final = {"code": "internalidentifier", "business_id": "externalidentifier"}
_HEADER_FIELDS: Final = {
    "our_reference": "salesinvoiceourreference",
    "your_reference": "salesinvoiceyourreference",
    "private_comment": "salesinvoiceprivatecomment",
    "free_text_before_lines": "salesinvoicefreetextbeforelines",
    "free_text_after_lines": "salesinvoicefreetextafterlines",
}
_INVOICE_FIELDS: Final = {
    "customer_code",
    "customer_key",
    "number",
    "date",
    "due_date",
    "payment_term_net_days",
    "delivery_date",
    "reference_number",
    "status",
    "currency",
    "amount",
    "lines",
    "changed_at",
    *_HEADER_FIELDS,
}
_LINE_FIELDS: Final = {
    "product_identifier",
    "product_identifier_type",
    "name",
    "unit_price",
    "price_type",
    "vat_percent",
    "vat_code",
    "quantity",
    "discount_percent",
    "free_text",
    "vat_sum",
    "sum",
    "accounting_account",
}


class SeedError(ValueError):
    """A seed document or admin record the fake cannot load; the message says where."""


def read_seed(source: SeedSource) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read seed {path}: {exc}") from exc
    loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SeedError(f"seed {path} must be a mapping of sections")
    return loaded


def moment(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise SeedError(f"{where}: {value!r} is not an ISO date-time") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SeedError(f"{where}: {value!r} is not a date YYYY-MM-DD") from None


def decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise SeedError(f"{where}: {value!r} is not a number")
    try:
        return Decimal(str(value).replace(",", "."))
    except InvalidOperation:
        raise SeedError(f"{where}: {value!r} is not a number") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def customer_sections(
    data: Mapping[str, Any], where: str
) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """A customer object → (sections, dimensions); unknown keys are a :class:`SeedError`."""
    sections: dict[str, dict[str, str]] = {}
    dimensions: list[tuple[str, str]] = []
    base_members = CUSTOMER_SECTIONS["customerbaseinformation"]
    for key, value in data.items():
        name = _ALIASES.get(key, key)
        if name == "changed_at":
            continue
        if name == "dimensions":
            try:
                dimensions = [(_text(pair[0]), _text(pair[1])) for pair in value]
            except (TypeError, IndexError, KeyError):
                raise SeedError(f"{where}: dimensions must be a list of [name, item] pairs") from None
        elif name in base_members:
            sections.setdefault("customerbaseinformation", {})[name] = _text(value)
        elif name in CUSTOMER_SECTIONS:
            if not isinstance(value, Mapping):
                raise SeedError(f"{where}: {name} must be an object")
            unknown = set(value) - set(CUSTOMER_SECTIONS[name])
            if unknown:
                raise SeedError(f"{where}: unknown member(s) {sorted(unknown)} of {name}")
            sections.setdefault(name, {}).update({member: _text(v) for member, v in value.items()})
        else:
            raise SeedError(f"{where}: unknown customer member {key!r}")
    return sections, dimensions


def _line(data: Any, where: str) -> LineDraft | CommentLine:
    if not isinstance(data, Mapping):
        raise SeedError(f"{where}: a line must be an object")
    if set(data) == {"comment"}:
        return CommentLine(_text(data["comment"]))
    unknown = set(data) - _LINE_FIELDS
    if unknown:
        raise SeedError(f"{where}: unknown line field(s) {sorted(unknown)}")
    for required in ("name", "unit_price", "quantity", "vat_percent"):
        if required not in data:
            raise SeedError(f"{where}: a product line needs {required!r}")
    return LineDraft(
        product_identifier=_text(data.get("product_identifier", data["name"])),
        product_identifier_type=_text(data.get("product_identifier_type", "customer")),
        name=_text(data["name"]),
        unit_price=decimal(data["unit_price"], f"{where}.unit_price"),
        price_type=_text(data.get("price_type", "net")),
        vat_percent=decimal(data["vat_percent"], f"{where}.vat_percent"),
        vat_code=_text(data.get("vat_code", "KOMY")).upper(),
        quantity=decimal(data["quantity"], f"{where}.quantity"),
        discount_percent=decimal(data.get("discount_percent", 0), f"{where}.discount_percent"),
        free_text=_text(data.get("free_text")),
        vat_sum=decimal(data["vat_sum"], f"{where}.vat_sum") if "vat_sum" in data else None,
        sum=decimal(data["sum"], f"{where}.sum") if "sum" in data else None,
        accounting_account=_text(data.get("accounting_account")),
    )


def invoice_draft(data: Mapping[str, Any], where: str) -> InvoiceDraft:
    """An invoice object → :class:`InvoiceDraft`; unknown keys are a :class:`SeedError`."""
    unknown = set(data) - _INVOICE_FIELDS
    if unknown:
        raise SeedError(f"{where}: unknown invoice field(s) {sorted(unknown)}")
    if ("customer_code" in data) == ("customer_key" in data):
        raise SeedError(f"{where}: give exactly one of customer_code, customer_key")
    if "date" not in data:
        raise SeedError(f"{where}: 'date' is required")
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise SeedError(f"{where}: 'lines' must be a non-empty list")
    by_code = "customer_code" in data
    net_days = data.get("payment_term_net_days")
    return InvoiceDraft(
        invoice_date=date(data["date"], f"{where}.date"),
        customer_identifier=_text(data["customer_code" if by_code else "customer_key"]),
        customer_identifier_type="customer" if by_code else "netvisor",
        lines=[_line(line, f"{where}.lines[{number}]") for number, line in enumerate(lines)],
        status=_text(data.get("status", "open")).lower(),
        number=_text(data["number"]) if data.get("number") is not None else None,
        due_date=date(data["due_date"], f"{where}.due_date") if data.get("due_date") else None,
        payment_term_net_days=int(net_days) if net_days is not None else None,
        delivery_date=date(data["delivery_date"], f"{where}.delivery_date")
        if data.get("delivery_date")
        else None,
        reference_number=_text(data["reference_number"]) if data.get("reference_number") else None,
        amount=decimal(data["amount"], f"{where}.amount") if data.get("amount") is not None else None,
        currency=_text(data.get("currency", "EUR")),
        header={field: _text(data[key]) for key, field in _HEADER_FIELDS.items() if key in data},
    )


def invoice_values(invoice: Invoice) -> dict[str, Any]:
    """An invoice back in the admin API's shape (what :meth:`FakeNetvisor.change_invoice` merges into)."""
    lines: list[dict[str, Any]] = []
    for row in invoice.rows:
        if not isinstance(row, InvoiceLine):
            lines.append({"comment": row.comment})
            continue
        draft = row.draft
        line: dict[str, Any] = {
            "product_identifier": draft.product_identifier,
            "product_identifier_type": draft.product_identifier_type,
            "name": draft.name,
            "unit_price": draft.unit_price,
            "price_type": draft.price_type,
            "vat_percent": draft.vat_percent,
            "vat_code": draft.vat_code,
            "quantity": draft.quantity,
            "discount_percent": draft.discount_percent,
            "free_text": draft.free_text,
            "accounting_account": draft.accounting_account,
        }
        if draft.vat_sum is not None and draft.sum is not None:
            line.update(vat_sum=draft.vat_sum, sum=draft.sum)
        lines.append(line)
    values: dict[str, Any] = {
        "customer_key": invoice.customer_key,
        "number": invoice.number,
        "date": invoice.invoice_date,
        "due_date": invoice.due_date,
        "delivery_date": invoice.delivery_date,
        "reference_number": invoice.reference_number,
        "status": invoice.status,
        "currency": invoice.currency,
        "lines": lines,
    }
    if invoice.payment_term_net_days is not None:
        values["payment_term_net_days"] = invoice.payment_term_net_days
    if invoice.amount != sum((line.gross_sum for line in invoice.lines), Decimal(0)):
        values["amount"] = invoice.amount  # given explicitly, not the sum of the lines: keep it
    values.update(
        {key: invoice.header[field] for key, field in _HEADER_FIELDS.items() if field in invoice.header}
    )
    return values


def apply_seed(store: NetvisorStore, document: Mapping[str, Any], *, now: dt.datetime) -> None:
    """Load *document* into *store* (which the caller discards if this raises)."""
    unknown = set(document) - {"customers", "invoices", "payments"}
    if unknown:
        raise SeedError(f"unknown seed section(s) {sorted(unknown)}; known: customers, invoices, payments")
    try:
        for number, data in enumerate(document.get("customers") or []):
            where = f"customers[{number}]"
            sections, dimensions = customer_sections(_mapping(data, where), where)
            customer = store.add_customer(sections, dimensions, now=now)
            if "changed_at" in data:
                customer.created_at = customer.changed_at = moment(data["changed_at"], where)
        for number, data in enumerate(document.get("invoices") or []):
            where = f"invoices[{number}]"
            invoice = store.add_invoice(invoice_draft(_mapping(data, where), where), now=now)
            if "changed_at" in data:
                invoice.created_at = invoice.changed_at = moment(data["changed_at"], where)
        for number, data in enumerate(document.get("payments") or []):
            where = f"payments[{number}]"
            _seed_payment(store, _mapping(data, where), where, now)
    except NetvisorError as exc:
        raise SeedError(f"seed refused: {exc.status_text}") from exc


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise SeedError(f"{where} must be an object")
    return data


def _seed_payment(store: NetvisorStore, data: Mapping[str, Any], where: str, now: dt.datetime) -> None:
    unknown = set(data) - {"invoice_number", "invoice_key", "sum", "date", "name", "changed_at"}
    if unknown:
        raise SeedError(f"{where}: unknown payment field(s) {sorted(unknown)}")
    if "invoice_key" in data:
        key = int(data["invoice_key"])
    else:
        matches = [
            i.netvisor_key for i in store.invoices.values() if i.number == _text(data.get("invoice_number"))
        ]
        if len(matches) != 1:
            raise SeedError(f"{where}: invoice_number must name exactly one invoice")
        key = matches[0]
    when = moment(data["changed_at"], where) if "changed_at" in data else now
    store.register_payment(
        key,
        now=when,
        date=date(data["date"], f"{where}.date") if "date" in data else when.date(),
        amount=decimal(data["sum"], f"{where}.sum") if "sum" in data else None,
        name=_text(data["name"]) if "name" in data else None,
    )
