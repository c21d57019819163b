"""Pure mapping of a Severa customer (``severa.customer.changed``) to the neutral accounting customer.

No I/O. What cannot be mapped without guessing raises :class:`~connector.errors.UnmappableRecord`
naming the event field and, in one line, the fix. Table-tested in
``tests/unit/test_mapping_accounting_customers.py``.

The rules, and why:

* **Code**: Severa's customer number as digits, no leading zero. Severa's own accounting
  integration keys customers on it, and invoices name their customer by it; a customer without a
  number cannot be keyed and is refused (reason ``customer_without_number``, so a flow may treat
  it as "not yet").
* **Country**: the head-office address's ISO 3166-1 alpha-2 code, upper case. An address with a
  country name but no code is refused unless the name is Finland's: sent without a country, a
  foreign customer would be taken for a Finnish one.
* **Business id**: Severa keeps one free-text VatNumber for both. For a Finnish customer (country
  FI, or no country and no foreign VAT prefix) it must be a valid business id and is sent as
  ``1234567-8`` (``FI12345678`` and blanks are accepted; the check digit is verified, see
  :mod:`connector.mapping.finnish`). A customer abroad, or one without a country whose number has
  a foreign prefix (``SE…``), keeps its VAT number as is, upper case and without blanks: its format
  is its own country's business.
* **E-invoicing**: the address without blanks, upper case (OVT codes and IBANs are written so); the
  operator likewise when it is a code (digits, or a BIC), else as Severa holds it (a name).
* **Language**: Severa's language or culture code (``fi``, ``fi-FI``, ``sv-FI``, ``en-GB``) by its
  language part: Finnish, Swedish, English become ``FI``, ``SV``, ``EN``. Any other language is
  ``None`` without an error: it only chooses the language of documents the accounting system itself
  prints, and refusing a customer for it would hold back everything else about the customer.
* **Address**: the first street line, the others (and a region) joined into the additional line.
* **Other**: an inactive customer is sent inactive (not left out: its invoices still need it);
  Severa has no private-person flag, so none is private; Severa has no separate invoicing e-mail,
  so ``invoicing_email`` stays empty rather than turning the company's e-mail into an invoice
  channel.
"""

from __future__ import annotations

import re
from typing import Final

from connector.errors import UnmappableRecord
from connector.mapping.finnish import HOME_COUNTRY, country_code, normalize_business_id
from connector.ports import AccountingAddress, AccountingCustomer
from schemas.severa_events import EInvoiceAddress, PostalAddress, SeveraCustomer

_LANGUAGES: Final = {"fi": "FI", "fin": "FI", "sv": "SV", "swe": "SV", "en": "EN", "eng": "EN"}
_WHITESPACE_RE: Final = re.compile(r"\s+")
_FOREIGN_PREFIX_RE: Final = re.compile(r"(?!FI)[A-Z]{2}.*")
_OPERATOR_CODE_RE: Final = re.compile(r"\d+|[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")


def customer_for_accounting(customer: SeveraCustomer) -> AccountingCustomer:
    """The accounting customer for a Severa customer; the module docstring has the rules.

    Raises :class:`~connector.errors.UnmappableRecord` for what cannot be mapped without guessing.
    """
    refuse = _Refusal(customer)
    if customer.number is None:
        raise refuse(
            "customer.number",
            "the customer has no customer number, so accounting cannot key it",
            "give the customer a number in Severa and replay",
            reason="customer_without_number",
        )
    name = _clean(customer.name)
    if name is None:
        raise refuse(
            "customer.name",
            "the customer has no name",
            "name it in Severa and replay",
            reason="invalid_customer",
        )
    address = customer.head_office_address
    country = _country(address, refuse) if address is not None else None
    e_invoice = customer.e_invoice
    return AccountingCustomer(
        code=str(customer.number),
        name=name,
        business_id=_business_id(customer.business_id, country, refuse),
        address=_address(address, country) if address is not None else None,
        email=_clean(customer.email),
        invoicing_email=None,
        e_invoice_address=_compact(e_invoice.address) if e_invoice is not None else None,
        e_invoice_operator=_operator(e_invoice),
        language=invoicing_language(customer.language_code),
        payment_term_days=customer.payment_term_days,
        is_active=customer.is_active,
        is_private_person=False,
        source_reference=str(customer.guid),
    )


def invoicing_language(code: str | None) -> str | None:
    """``FI``, ``SV`` or ``EN`` from a language or culture code (``fi``, ``sv-FI``, ``en_GB``); else None."""
    if code is None:
        return None
    primary = re.split(r"[-_]", code.strip(), maxsplit=1)[0].casefold()
    return _LANGUAGES.get(primary)


def _country(address: PostalAddress, refuse: _Refusal) -> str | None:
    try:
        return country_code(address.country_code, address.country_name)
    except ValueError as exc:
        raise refuse(
            "customer.head_office_address.country_code",
            f"the head office address: {exc}",
            "choose the address's country in Severa and replay",
            reason="invalid_country",
        ) from None


def _business_id(text: str | None, country: str | None, refuse: _Refusal) -> str | None:
    compact = _compact(text)
    if compact is None:
        return None
    if country not in (None, HOME_COUNTRY):
        return compact
    if country is None and _FOREIGN_PREFIX_RE.fullmatch(compact):
        return compact
    try:
        return normalize_business_id(compact)
    except ValueError as exc:
        raise refuse(
            "customer.business_id",
            f"VatNumber {exc}; a Finnish customer's VatNumber must be its business id",
            "correct the customer's business id in Severa (or its country, if it is not Finnish) and replay",
            reason="invalid_business_id",
        ) from None


def _address(address: PostalAddress, country: str | None) -> AccountingAddress | None:
    lines = [line for line in (_clean(text) for text in address.lines) if line is not None]
    additional = [*lines[1:], *([region] if (region := _clean(address.region)) else [])]
    result = AccountingAddress(
        street=lines[0] if lines else None,
        additional_line=", ".join(additional) or None,
        postal_code=_clean(address.postal_code),
        city=_clean(address.city),
        country_code=country,
    )
    return None if result == AccountingAddress(None, None, None, None, None) else result


def _operator(e_invoice: EInvoiceAddress | None) -> str | None:
    if e_invoice is None:
        return None
    text = _clean(e_invoice.operator)
    if text is None:
        return None
    compact = _WHITESPACE_RE.sub("", text).upper()
    return compact if _OPERATOR_CODE_RE.fullmatch(compact) else text


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _compact(text: str | None) -> str | None:
    text = _clean(text)
    return _WHITESPACE_RE.sub("", text).upper() if text is not None else None


class _Refusal:
    """Builds the one-line :class:`UnmappableRecord` for one customer."""

    def __init__(self, customer: SeveraCustomer) -> None:
        self.guid = str(customer.guid)
        self.number = customer.number
        name = customer.name.strip()
        if customer.number is not None:
            self.label = f"Severa customer {customer.number} ({name or customer.guid})"
        else:
            self.label = f"Severa customer {name!r} ({customer.guid})"

    def __call__(self, field: str, problem: str, fix: str, *, reason: str) -> UnmappableRecord:
        return UnmappableRecord(
            f"{self.label}: {problem}; {fix}",
            field=field,
            reason=reason,
            customer_number=self.number,
            customer_guid=self.guid,
        )
