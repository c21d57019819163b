"""Pure mapping of a Severa invoice (``severa.invoice.ready``) to the neutral accounting invoice.

No I/O: the flow passes the event's invoice in and sends what comes out. What cannot be mapped
without guessing raises :class:`~connector.errors.UnmappableRecord` naming the event field
(``invoice.rows[1].vat_rate_percent``) and, in one line, what to fix; a parked invoice costs less
than a wrong one in the books. Every rule is table-tested in
``tests/unit/test_mapping_accounting_invoices.py``.

The rules, and why:

**Keys.** ``number`` is Severa's invoice number (accounting looks invoices up by it before every
create: there is no idempotency key). ``customer_code`` is Severa's customer number as digits, no
leading zero, as Severa's own accounting integration keys customers; an invoice whose customer has
no number cannot be keyed and is refused.

**Dates.** The explicit due date is sent and ``payment_term_days`` is derived from it
(``due_date - invoice_date``): the due date is what Severa printed and what the customer pays by,
while Severa's PaymentTerm may be a default the due date was later moved away from. A due date
before the invoice date is refused.

**Currency.** The base currency (EUR unless configured) has rate 1, and any other rate for it is
refused; a foreign currency keeps Severa's rate, which must be above 0 (Severa does not say in
which direction it is quoted; the adapter turns it into its system's convention).

**Reference number.** Blanks removed; a Finnish reference must pass its 7-3-1 check digit, an RF
reference its ISO 11649 mod-97 check (:mod:`connector.mapping.finnish`); otherwise refused, since
payments would never match. No reference at all is accepted: the accounting system then makes one,
and payments still match by invoice number.

**Rows.** A row without quantity and without any amount (a heading, a note) books nothing and is
left out: the port has no comment lines, and the invoice the customer sees is Severa's own. Every
other row becomes a line:

* Name: the article name, else the row's text, else the article code, else ``Row <n>``; cut to
  :data:`LINE_NAME_MAX` characters (the accounting system's limit is unverified; one constant to
  change). The row's text goes to the line's free text when the name came from the article.
* A negative unit price becomes a negative quantity at a positive price (what Netvisor wants and
  what a credit note looks like); the product, and so every sum, is unchanged.
* Quantity x unit price must give the row's amount excluding VAT within what rounding explains
  (half a cent, plus half a cent per unit for a unit price Severa rounded to cents): otherwise the
  price includes VAT or a discount the line cannot carry, and the line would contradict its sum.
* Severa's ``amount_including_vat`` of a row is not used: the notes do not define it. The header
  totals are Severa's TotalExcludingTax / TotalIncludingTax, which are defined.

**VAT.** Each row gets a :class:`~connector.ports.VatTreatment` and a percentage, decided in this
order (the event has no reverse-charge flag and no goods/services flag, so the rest of the invoice
has to speak; where it cannot, the row is refused rather than coded by guess):

1. A row whose Severa VAT code is in ``options.vat_codes`` gets that treatment; the table is the
   explicit word of whoever configured it.
2. Otherwise a rate above 0 is a domestic sale at that rate, refused on a tax-free invoice (the two
   contradict each other).
3. A 0 % row on a tax-free invoice is decided by the buyer's country: the receiver's address, else
   the country of the buyer's VAT number (``SE…`` is Sweden, a Finnish business id is Finland).
   Another EU member state: EU services (EU goods for articles listed in
   ``options.goods_articles``: Severa invoices work). Outside the EU: export. Finland: the event
   cannot tell domestic reverse charge (AVL 8 c §) from an exempt sale, so
   ``options.domestic_tax_free`` decides, or the row is refused. Åland, or a country the invoice
   does not show, or an address and a VAT number that disagree: refused.
4. A 0 % row on an invoice that is not tax free is a domestic 0 % sale (exempt, as Severa allows on
   a taxed invoice), unless the buyer is shown to be abroad: a foreign buyer at 0 % without the
   tax-free mark is an invoice whose reverse charge was forgotten, and is refused.

Then: a domestic rate must have been a Finnish rate within ``rate_lookback_days`` before the
invoice date (92 by default) or ``rate_lookahead_days`` after it (0): Finnish VAT follows the day
of the supply, not of the invoice, so 24 % on an invoice of 2024-09-10 for August's work is right,
while 24 % in 2026 or 23 % at any time since 2013 is a stale setting in Severa. Severa's row VAT
must match its rate within a cent; a treatment without VAT (reverse charge, export, no VAT) needs
0 % and no VAT on the row; EU reverse charge needs the buyer's EU VAT number on the invoice (the VAT
act requires it on the invoice, and the EU sales list is made of it).

**Rounding.** Sums are rounded to cents half up (away from zero), as Finnish invoicing and
Netvisor round: a credit note's -0.005 becomes -0.01, the exact mirror of its invoice's 0.01, which
half-even would not guarantee. The lines then add up to Severa's header totals to the cent: if
rounding each row leaves the lines' net (or VAT) total a few cents off Severa's, the cents are
given one each to the lines whose rounding moved them furthest the other way (largest remainder;
ties to the larger line, then the earlier row), and VAT cents only to lines that carry VAT. A
difference above one cent per line is more than rounding can explain (half a cent per row, plus
half a cent per row when Severa rounds its VAT per rate): the invoice is refused naming the total.

**Credit notes.** Severa's IsCreditNote decides; a credit note's total must be negative and an
ordinary invoice's must not (the port tells a credit note by its sign). ``credits_invoice_number``
is the credited invoice's number. A credit note that names no credited invoice is accepted
unmatched: it is a correct document on its own (a goodwill credit), accounting systems do not
match credit notes by themselves either, and an accountant can match it by hand. One that names
the credited invoice by GUID without its number is refused: Severa knows the match and the event
lost it. A credited invoice on an ordinary invoice is ignored (Severa's ReimburseInvoiceGUID might
just as well be the link from an original to its credit note).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.errors import UnmappableRecord
from connector.mapping.finnish import (
    EU_MEMBER_STATES,
    HOME_COUNTRY,
    SPLIT_VAT_TERRITORIES,
    country_code,
    country_of_vat_number,
    finnish_rate_between,
    finnish_rates_on,
    normalize_reference_number,
)
from connector.ports import AccountingInvoice, AccountingInvoiceLine, VatTreatment
from schemas.severa_events import SeveraInvoice, SeveraInvoiceRow

#: Longest line name sent. Netvisor's product name limit is unverified; change it here only.
LINE_NAME_MAX: Final = 200
#: Longest line free text sent (also unverified).
FREE_TEXT_MAX: Final = 500
#: What marks a cut name or text. ASCII: Netvisor's documented encoding, ISO-8859-15, has no "…".
CUT_MARK: Final = "..."
CENT: Final = Decimal("0.01")
_HALF_CENT: Final = Decimal("0.005")
_WHITESPACE_RE: Final = re.compile(r"\s+")
_EU_REVERSE_CHARGE: Final = frozenset({VatTreatment.EU_GOODS, VatTreatment.EU_SERVICES})


class InvoiceOptions(BaseModel):
    """What the deployment tells the invoice mapping; the defaults suit a Finnish services firm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_currency: str = Field(
        default="EUR",
        pattern=r"^[A-Z]{3}$",
        description="The accounting company's own currency (ISO 4217): its invoices have rate 1.",
    )
    vat_codes: dict[str, VatTreatment] = Field(
        default_factory=dict,
        description="Severa's row VAT code (rowVatCode, compared without case or surrounding blanks) -> "
        "treatment. A mapped code decides the row's treatment before any other rule.",
    )
    domestic_tax_free: VatTreatment | None = Field(
        default=None,
        description="The treatment of a 0 % row on a tax-free invoice to a Finnish buyer: "
        "domestic_reverse_charge (construction services, AVL 8 c §), domestic (an exempt sale at 0 %) "
        "or no_vat. Unset: such a row is refused, since the invoice does not say which it is.",
    )
    goods_articles: frozenset[str] = Field(
        default_factory=frozenset,
        description="Article identifiers (articleIdentifier, compared without case) that are goods: "
        "to another EU country they are EU goods, every other row EU services.",
    )
    rate_lookback_days: int = Field(
        default=92,
        ge=0,
        le=3660,
        description="A domestic VAT rate is accepted if it was a Finnish rate on the invoice date or up "
        "to this many days before (the rate follows the supply, which may precede the invoice).",
    )
    rate_lookahead_days: int = Field(
        default=0,
        ge=0,
        le=366,
        description="…or up to this many days after the invoice date (advance invoices for a supply "
        "after a rate change). 0: a rate not yet in force on the invoice date is refused.",
    )

    @field_validator("vat_codes")
    @classmethod
    def _fold_codes(cls, codes: dict[str, VatTreatment]) -> dict[str, VatTreatment]:
        folded = {_fold(code): treatment for code, treatment in codes.items()}
        if "" in folded:
            raise ValueError("a VAT code must not be blank")
        if len(folded) != len(codes):
            raise ValueError("VAT codes must differ by more than case and surrounding blanks")
        return folded

    @field_validator("goods_articles")
    @classmethod
    def _fold_articles(cls, articles: frozenset[str]) -> frozenset[str]:
        return frozenset(_fold(article) for article in articles)

    @field_validator("domestic_tax_free")
    @classmethod
    def _domestic(cls, treatment: VatTreatment | None) -> VatTreatment | None:
        allowed = {VatTreatment.DOMESTIC, VatTreatment.DOMESTIC_REVERSE_CHARGE, VatTreatment.NO_VAT}
        if treatment is not None and treatment not in allowed:
            raise ValueError(f"a Finnish buyer's tax-free row cannot be {treatment.value}")
        return treatment

    def treatment_for_code(self, code: str | None) -> VatTreatment | None:
        return self.vat_codes.get(_fold(code)) if code else None

    def is_goods(self, article_identifier: str | None) -> bool:
        return article_identifier is not None and _fold(article_identifier) in self.goods_articles


DEFAULT_INVOICE_OPTIONS: Final = InvoiceOptions()


def invoice_for_accounting(
    invoice: SeveraInvoice, *, options: InvoiceOptions = DEFAULT_INVOICE_OPTIONS
) -> AccountingInvoice:
    """The accounting invoice (or credit note) for a Severa invoice; the module docstring has the rules.

    Raises :class:`~connector.errors.UnmappableRecord` for what cannot be mapped without guessing.
    """
    refuse = _Refusal(invoice)
    customer_code = _customer_code(invoice, refuse)
    payment_term_days = _payment_term_days(invoice, refuse)
    currency_rate = _currency_rate(invoice, options, refuse)
    reference_number = _reference_number(invoice, refuse)
    credits_invoice_number = _credited_number(invoice, refuse)
    buyer = _Buyer.of(invoice)
    drafts = [
        _draft(row, index, invoice, options, buyer, refuse)
        for index, row in enumerate(invoice.rows)
        if not _is_text_row(row)
    ]
    if not drafts:
        raise refuse(
            "invoice.rows",
            "has no row with a quantity or an amount",
            "an invoice needs at least one priced row; correct it in Severa and replay",
            reason="invoice_without_lines",
        )
    total_net = _cents(invoice.total_excluding_vat)
    total_gross = _cents(invoice.total_including_vat)
    total_vat = total_gross - total_net
    net_sums = _fit_or_refuse(
        [d.net for d in drafts],
        total_net,
        eligible=range(len(drafts)),
        field="invoice.total_excluding_vat",
        what="excluding VAT",
        refuse=refuse,
    )
    vat_sums = _fit_or_refuse(
        [d.vat for d in drafts],
        total_vat,
        eligible=[i for i, d in enumerate(drafts) if d.rate > 0],
        field="invoice.total_including_vat",
        what="of VAT",
        refuse=refuse,
    )
    _check_sign(invoice, total_gross, refuse)
    lines = tuple(
        AccountingInvoiceLine(
            product_code=_clean(d.row.article_identifier),
            name=d.name,
            quantity=d.quantity,
            unit_price=d.unit_price,
            vat_percent=d.rate,
            vat_treatment=d.treatment,
            net_sum=net,
            vat_sum=vat,
            free_text=d.free_text,
            account_suggestion=_clean(d.row.sales_account_number),
        )
        for d, net, vat in zip(drafts, net_sums, vat_sums, strict=True)
    )
    return AccountingInvoice(
        number=str(invoice.number),
        customer_code=customer_code,
        invoice_date=invoice.invoice_date,
        due_date=invoice.due_date,
        payment_term_days=payment_term_days,
        reference_number=reference_number,
        currency_code=invoice.currency.code,
        currency_rate=currency_rate,
        total_including_vat=total_gross,
        total_vat=total_vat,
        lines=lines,
        our_reference=_clean(invoice.our_reference),
        your_reference=_clean(invoice.your_reference),
        credits_invoice_number=credits_invoice_number,
        source_reference=str(invoice.guid),
    )


# --------------------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------------------


def round_cents(value: Decimal) -> Decimal:
    """``value`` in cents, half away from zero (Finnish commercial rounding): 0.005 → 0.01, -0.005 → -0.01."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


_cents = round_cents


class CentsUnexplained(ValueError):
    """Rounded amounts miss their total by more cents than rounding can explain."""

    def __init__(self, rounded_sum: Decimal, total: Decimal, limit: Decimal) -> None:
        super().__init__(f"the amounts add up to {rounded_sum}, the total is {total} (at most {limit} apart)")
        self.rounded_sum = rounded_sum
        self.total = total
        self.limit = limit


def fit_to_total(
    amounts: Sequence[Decimal], total: Decimal, *, eligible: Sequence[int]
) -> tuple[Decimal, ...]:
    """``amounts`` rounded to cents so that they add up to ``total`` exactly (largest remainder).

    Each amount is rounded half up; the cents still missing (or too many) go one each to the
    ``eligible`` positions whose rounding moved them furthest the other way, ties to the larger
    amount, then the earlier position. No amount moves by more than one cent from its own rounding,
    so more missing cents than eligible positions raises :class:`CentsUnexplained`.
    """
    rounded = [round_cents(amount) for amount in amounts]
    missing = round_cents(total) - sum(rounded, Decimal(0))
    steps = int(missing / CENT)
    if steps == 0:
        return tuple(rounded)
    if abs(steps) > len(eligible):
        raise CentsUnexplained(sum(rounded, Decimal(0)), round_cents(total), CENT * len(eligible))
    direction = 1 if steps > 0 else -1
    order = sorted(
        eligible,
        key=lambda i: (-direction * (amounts[i] - rounded[i]), -abs(amounts[i]), i),
    )
    for position in order[: abs(steps)]:
        rounded[position] += direction * CENT
    return tuple(rounded)


def _fit_or_refuse(
    amounts: list[Decimal],
    total: Decimal,
    *,
    eligible: Sequence[int],
    field: str,
    what: str,
    refuse: _Refusal,
) -> tuple[Decimal, ...]:
    try:
        return fit_to_total(amounts, total, eligible=eligible)
    except CentsUnexplained as exc:
        lines = len(eligible)
        raise refuse(
            field,
            f"the rows add up to {exc.rounded_sum} {what} but the invoice's totals give {exc.total}, "
            f"more than rounding explains (at most {exc.limit} over {lines} "
            f"{'line' if lines == 1 else 'lines'})",
            "correct the invoice's rows or totals in Severa and replay",
            reason="amounts_disagree",
        ) from exc


# --------------------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------------------


def _customer_code(invoice: SeveraInvoice, refuse: _Refusal) -> str:
    if invoice.customer.number is None:
        raise refuse(
            "invoice.customer.number",
            f"the customer {invoice.customer.name!r} has no customer number, so accounting cannot key it",
            "give the customer a number in Severa and replay",
            reason="customer_without_number",
        )
    return str(invoice.customer.number)


def _payment_term_days(invoice: SeveraInvoice, refuse: _Refusal) -> int:
    days = (invoice.due_date - invoice.invoice_date).days
    if days < 0:
        raise refuse(
            "invoice.due_date",
            f"the due date {invoice.due_date} is before the invoice date {invoice.invoice_date}",
            "correct the invoice's due date in Severa and replay",
            reason="invalid_due_date",
        )
    return days


def _currency_rate(invoice: SeveraInvoice, options: InvoiceOptions, refuse: _Refusal) -> Decimal:
    code, rate = invoice.currency.code, invoice.currency.rate
    if code == options.base_currency:
        if rate != 1:
            raise refuse(
                "invoice.currency.rate",
                f"the currency rate is {rate} for {code}, the base currency, whose rate is 1",
                "correct the invoice's currency rate in Severa and replay",
                reason="invalid_currency_rate",
            )
        return Decimal(1)
    if not rate > 0:
        raise refuse(
            "invoice.currency.rate",
            f"an invoice in {code} needs a currency rate above 0, not {rate}",
            "set the invoice's currency rate in Severa and replay",
            reason="invalid_currency_rate",
        )
    return rate


def _reference_number(invoice: SeveraInvoice, refuse: _Refusal) -> str | None:
    text = _clean(invoice.reference_number)
    if text is None:
        return None
    try:
        return normalize_reference_number(text)
    except ValueError as exc:
        raise refuse(
            "invoice.reference_number",
            f"the reference number {exc}",
            "correct the invoice's reference number in Severa and replay",
            reason="invalid_reference_number",
        ) from None


def _credited_number(invoice: SeveraInvoice, refuse: _Refusal) -> str | None:
    credited = invoice.credited_invoice
    if not invoice.is_credit_note or credited is None:
        return None
    if credited.number is None:
        raise refuse(
            "invoice.credited_invoice.number",
            f"the credit note credits Severa invoice {credited.guid}, but the event lacks its number",
            "set invoice.credited_invoice.number to that invoice's number in the dead letter and replay",
            reason="credited_invoice_unknown",
        )
    return str(credited.number)


def _check_sign(invoice: SeveraInvoice, total: Decimal, refuse: _Refusal) -> None:
    if invoice.is_credit_note and total >= 0:
        raise refuse(
            "invoice.total_including_vat",
            f"the credit note's total is {total}; a credit note's total must be negative",
            "correct the credit note's rows in Severa (negative quantities) and replay",
            reason="invalid_credit_note",
        )
    if not invoice.is_credit_note and total < 0:
        raise refuse(
            "invoice.is_credit_note",
            f"the invoice's total is {total} but it is not a credit note",
            "make it a credit note of the invoice it credits in Severa and replay",
            reason="invalid_credit_note",
        )


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draft:
    """A row on its way to a line: everything decided except the cents."""

    row: SeveraInvoiceRow
    name: str
    free_text: str | None
    quantity: Decimal
    unit_price: Decimal
    rate: Decimal
    treatment: VatTreatment
    net: Decimal
    vat: Decimal


def _is_text_row(row: SeveraInvoiceRow) -> bool:
    """A heading or a note: no quantity and no amount, so nothing to book."""
    return row.quantity == 0 and row.amount_excluding_vat == 0 and row.vat_amount == 0


def _draft(
    row: SeveraInvoiceRow,
    index: int,
    invoice: SeveraInvoice,
    options: InvoiceOptions,
    buyer: _Buyer,
    refuse: _Refusal,
) -> _Draft:
    at = _Row(refuse, row, index)
    quantity, unit_price = row.quantity, row.unit_price
    if unit_price < 0:
        quantity, unit_price = -quantity, -unit_price
    product = quantity * unit_price
    if abs(product - row.amount_excluding_vat) > _HALF_CENT * (1 + abs(quantity)):
        raise at(
            "unit_price",
            f"quantity {row.quantity} x unit price {row.unit_price} is {round_cents(product)}, but the row's "
            f"amount excluding VAT is {row.amount_excluding_vat} (a price including VAT or a discount "
            "cannot be carried)",
            "correct the row's quantity, price or amount in Severa and replay",
            reason="amounts_disagree",
        )
    treatment, rate = _vat(row, at, invoice, options, buyer)
    name, free_text = _line_texts(row)
    return _Draft(
        row=row,
        name=name,
        free_text=free_text,
        quantity=quantity,
        unit_price=unit_price,
        rate=rate,
        treatment=treatment,
        net=row.amount_excluding_vat,
        vat=row.vat_amount,
    )


def _line_texts(row: SeveraInvoiceRow) -> tuple[str, str | None]:
    """The line's name and free text (see the module docstring)."""
    article = _one_line(row.article_name)
    description = _clean(row.description)
    name = article or _one_line(description) or _one_line(row.article_identifier) or f"Row {row.row_number}"
    free_text = description if article is not None and description not in (None, article) else None
    return _cut(name, LINE_NAME_MAX), _cut(free_text, FREE_TEXT_MAX) if free_text is not None else None


# --------------------------------------------------------------------------------------------------
# VAT
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Buyer:
    """Where the invoice's buyer is, as far as the invoice shows it (see rule 3 of the docstring)."""

    country: str | None
    #: The event field the country was read from, for messages.
    source: str
    vat_number: str | None
    vat_country: str | None
    #: Why the country cannot be told (address and VAT number disagree, a name without a code).
    problem: str | None

    @classmethod
    def of(cls, invoice: SeveraInvoice) -> _Buyer:
        vat_number = _compact(invoice.customer.business_id)
        vat_country = country_of_vat_number(vat_number) if vat_number else None
        address = invoice.receiver.address if invoice.receiver is not None else None
        address_country: str | None = None
        problem: str | None = None
        if address is not None:
            try:
                address_country = country_code(address.country_code, address.country_name)
            except ValueError as exc:
                # A country name without a code is no evidence against the VAT number's country.
                problem = None if vat_country else f"the receiver's country: {exc}"
        if address_country and vat_country and address_country != vat_country:
            problem = (
                f"the receiver's country {address_country} and the VAT number {vat_number!r} "
                f"({vat_country}) disagree"
            )
        if address_country:
            return cls(
                address_country, "invoice.receiver.address.country_code", vat_number, vat_country, problem
            )
        if problem is None and vat_country:
            return cls(vat_country, "invoice.customer.business_id", vat_number, vat_country, None)
        return cls(None, "invoice.receiver.address.country_code", vat_number, vat_country, problem)

    @property
    def known(self) -> str | None:
        """The country when the invoice shows it without contradiction."""
        return self.country if self.problem is None else None


def _vat(
    row: SeveraInvoiceRow, at: _Row, invoice: SeveraInvoice, options: InvoiceOptions, buyer: _Buyer
) -> tuple[VatTreatment, Decimal]:
    """The row's treatment and VAT percentage, rules 1-4 of the module docstring, then the checks."""
    rate = row.vat_rate_percent
    if rate is None:
        if row.vat_amount != 0:
            raise at(
                "vat_rate_percent",
                f"the row has VAT {row.vat_amount} but no VAT rate",
                "give the row its VAT rate in Severa and replay",
                reason="invalid_vat",
            )
        rate = Decimal(0)
    rate = _plain(rate)
    mapped = options.treatment_for_code(row.vat_code)
    if mapped is not None:
        treatment = mapped
    elif rate > 0:
        treatment = VatTreatment.DOMESTIC
    elif invoice.is_tax_free:
        treatment = _tax_free_treatment(row, at, options, buyer)
    else:
        treatment = VatTreatment.DOMESTIC
        country = buyer.known
        if country is not None and country != HOME_COUNTRY:
            raise at(
                "vat_rate_percent",
                f"the row has 0 % VAT for a buyer in {country}, but the invoice is not tax free",
                "mark the invoice tax free (reverse charge or export) or give the row its VAT in Severa, "
                "or map the row's VAT code, and replay",
                reason="ambiguous_vat",
            )
    if treatment is VatTreatment.DOMESTIC:
        _check_domestic(row, rate, at, invoice, options)
        return treatment, rate
    _check_without_vat(row, rate, treatment, at, buyer, mapped is not None)
    return treatment, Decimal(0)


def _tax_free_treatment(
    row: SeveraInvoiceRow, at: _Row, options: InvoiceOptions, buyer: _Buyer
) -> VatTreatment:
    map_hint = (
        f"map VAT code {row.vat_code!r} in the invoice mapping options (vat_codes)"
        if row.vat_code
        else "give the row a VAT code in Severa and map it in the invoice mapping options (vat_codes)"
    )
    if buyer.problem is not None or buyer.country is None:
        problem = (
            buyer.problem or "neither the receiver's country nor an EU VAT number shows where the buyer is"
        )
        raise at(
            buyer.source,
            f"the invoice is tax free, but {problem}",
            f"enter the customer's VAT number or country in Severa, or {map_hint}, and replay",
            reason="ambiguous_vat",
        )
    country = buyer.country
    if country == HOME_COUNTRY:
        if options.domestic_tax_free is None:
            raise at(
                "invoice.is_tax_free",
                "the invoice is tax free for a Finnish buyer, which is domestic reverse charge or an exempt "
                "sale, and the invoice does not say which",
                f"set domestic_tax_free in the invoice mapping options, or {map_hint}, and replay",
                reason="ambiguous_vat",
            )
        return options.domestic_tax_free
    if country in SPLIT_VAT_TERRITORIES:
        raise at(
            buyer.source,
            f"the invoice is tax free for a buyer in {country}, whose VAT depends on whether goods or "
            "services are sold",
            f"{map_hint} and replay",
            reason="ambiguous_vat",
        )
    if country in EU_MEMBER_STATES:
        return VatTreatment.EU_GOODS if options.is_goods(row.article_identifier) else VatTreatment.EU_SERVICES
    return VatTreatment.OUTSIDE_EU


def _check_domestic(
    row: SeveraInvoiceRow, rate: Decimal, at: _Row, invoice: SeveraInvoice, options: InvoiceOptions
) -> None:
    if rate > 0 and invoice.is_tax_free:
        raise at(
            "vat_rate_percent",
            f"the invoice is tax free but the row has VAT {rate} %",
            "clear the invoice's tax-free mark or the row's VAT in Severa and replay",
            reason="invalid_vat",
        )
    start = invoice.invoice_date - dt.timedelta(days=options.rate_lookback_days)
    end = invoice.invoice_date + dt.timedelta(days=options.rate_lookahead_days)
    if not finnish_rate_between(rate, start, end):
        in_force = ", ".join(str(r) for r in finnish_rates_on(invoice.invoice_date))
        raise at(
            "vat_rate_percent",
            f"VAT {rate} % is not a Finnish rate on {invoice.invoice_date} (in force: {in_force} %; a "
            f"rate that ended counts for {options.rate_lookback_days} days more)",
            "fix the row's VAT in Severa and replay",
            reason="invalid_vat",
        )
    expected = row.amount_excluding_vat * rate / 100
    if (rate == 0 and row.vat_amount != 0) or abs(row.vat_amount - expected) > CENT:
        raise at(
            "vat_amount",
            f"the row's VAT {row.vat_amount} is not {rate} % of its {row.amount_excluding_vat} "
            f"({round_cents(expected)})",
            "correct the row's VAT in Severa and replay",
            reason="amounts_disagree",
        )


def _check_without_vat(
    row: SeveraInvoiceRow,
    rate: Decimal,
    treatment: VatTreatment,
    at: _Row,
    buyer: _Buyer,
    mapped: bool,
) -> None:
    why = (
        f"VAT code {row.vat_code!r} is mapped to {treatment.value}"
        if mapped
        else f"the row is {treatment.value}"
    )
    if rate != 0 or row.vat_amount != 0:
        raise at(
            "vat_rate_percent",
            f"{why}, which carries no VAT, but the row has VAT {rate} % ({row.vat_amount})",
            "correct the row's VAT (or the VAT code mapping) and replay",
            reason="invalid_vat",
        )
    country = buyer.known
    if country is not None and not _fits(treatment, country):
        raise at(
            "vat_code",
            f"{why}, which does not fit a buyer in {country}",
            "correct the VAT code mapping or the customer's country and replay",
            reason="invalid_vat",
        )
    if treatment in _EU_REVERSE_CHARGE:
        vat_country = buyer.vat_country
        if buyer.vat_number is None or vat_country is None or vat_country == HOME_COUNTRY:
            shown = f"{buyer.vat_number!r} is not one" if buyer.vat_number else "the invoice carries none"
            raise at(
                "invoice.customer.business_id",
                f"{why}, an EU reverse charge needing the buyer's EU VAT number, and {shown}",
                "enter the customer's VAT number (with its country prefix) in Severa and replay",
                reason="invalid_vat",
            )


def _fits(treatment: VatTreatment, country: str) -> bool:
    """Whether a treatment without VAT can apply to a buyer in ``country``."""
    if treatment in _EU_REVERSE_CHARGE:
        return country in EU_MEMBER_STATES and country != HOME_COUNTRY
    if treatment is VatTreatment.OUTSIDE_EU:
        return country not in EU_MEMBER_STATES
    if treatment is VatTreatment.DOMESTIC_REVERSE_CHARGE:
        return country == HOME_COUNTRY or country in SPLIT_VAT_TERRITORIES
    return True


# --------------------------------------------------------------------------------------------------
# Text and refusals
# --------------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return text.strip().casefold()


def _clean(text: str | None) -> str | None:
    """Text without surrounding blanks; blank is ``None``."""
    if text is None:
        return None
    text = text.strip()
    return text or None


def _one_line(text: str | None) -> str | None:
    """Text with every run of blanks and line breaks as one space (a name is one line)."""
    text = _clean(text)
    return _WHITESPACE_RE.sub(" ", text) if text is not None else None


def _compact(text: str | None) -> str | None:
    """An identifier without any blanks, upper case."""
    text = _clean(text)
    return _WHITESPACE_RE.sub("", text).upper() if text is not None else None


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARK)].rstrip() + CUT_MARK


def _plain(rate: Decimal) -> Decimal:
    """A rate without trailing zeros (``25.50`` → ``25.5``, ``24.00`` → ``24``): the same value."""
    return Decimal(format(rate.normalize(), "f"))


class _Refusal:
    """Builds the one-line :class:`UnmappableRecord` for one invoice."""

    def __init__(self, invoice: SeveraInvoice) -> None:
        self.number = invoice.number
        self.guid = str(invoice.guid)
        self.label = f"Severa {'credit note' if invoice.is_credit_note else 'invoice'} {invoice.number}"

    def __call__(
        self, field: str, problem: str, fix: str, *, reason: str, row: SeveraInvoiceRow | None = None
    ) -> UnmappableRecord:
        where = self.label if row is None else f"{self.label} row {row.row_number}"
        return UnmappableRecord(
            f"{where}: {problem}; {fix}",
            field=field,
            reason=reason,
            invoice_number=self.number,
            invoice_guid=self.guid,
        )


class _Row:
    """The refusal for one row: fields relative to the row (``vat_amount``) or absolute (``invoice.…``)."""

    def __init__(self, refuse: _Refusal, row: SeveraInvoiceRow, index: int) -> None:
        self.refuse = refuse
        self.row = row
        self.index = index

    def __call__(self, field: str, problem: str, fix: str, *, reason: str) -> UnmappableRecord:
        path = field if field.startswith("invoice.") else f"invoice.rows[{self.index}].{field}"
        return self.refuse(path, problem, fix, reason=reason, row=self.row)
