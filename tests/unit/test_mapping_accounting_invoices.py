"""Severa invoice → accounting invoice: VAT, cents, currency, references, dates, credit notes, rows."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest

from connector.errors import Category, UnmappableRecord
from connector.mapping.invoices import (
    LINE_NAME_MAX,
    CentsUnexplained,
    InvoiceOptions,
    fit_to_total,
    invoice_for_accounting,
    round_cents,
)
from connector.ports import AccountingInvoice, VatTreatment
from schemas.severa_events import (
    CreditedInvoice,
    InvoiceCurrency,
    SeveraInvoice,
    SeveraInvoiceRow,
)
from tests.accounting_factories import CREDITED_GUID, DATE, INVOICE_GUID, invoice, row

D = Decimal


def refusal(severa_invoice: SeveraInvoice, options: InvoiceOptions | None = None) -> UnmappableRecord:
    with pytest.raises(UnmappableRecord) as caught:
        invoice_for_accounting(severa_invoice, options=options or InvoiceOptions())
    error = caught.value
    assert error.category is Category.PERMANENT
    assert "\n" not in error.message, "a refusal is one line"
    assert error.message.startswith("Severa "), error.message
    assert "replay" in error.message, "a refusal says what to do"
    return error


def assert_adds_up(result: AccountingInvoice, severa_invoice: SeveraInvoice) -> None:
    net = sum((line.net_sum for line in result.lines), D(0))
    vat = sum((line.vat_sum for line in result.lines), D(0))
    assert net == round_cents(severa_invoice.total_excluding_vat)
    assert net + vat == result.total_including_vat == round_cents(severa_invoice.total_including_vat)
    assert vat == result.total_vat
    for line in result.lines:
        assert line.net_sum.as_tuple().exponent == -2
        assert line.vat_sum.as_tuple().exponent == -2


# --------------------------------------------------------------------------------------------------
# VAT
# --------------------------------------------------------------------------------------------------

SWEDISH = "SE556677889901"
CONSTRUCTION = InvoiceOptions(vat_codes={"AVL8c": VatTreatment.DOMESTIC_REVERSE_CHARGE})


@pytest.mark.parametrize(
    ("severa_invoice", "options", "treatment", "percent"),
    [
        pytest.param(
            invoice(row(rate="25.5")), None, VatTreatment.DOMESTIC, "25.5", id="25.5 percent is domestic"
        ),
        pytest.param(
            invoice(row(rate="25.50")), None, VatTreatment.DOMESTIC, "25.5", id="trailing zeros are dropped"
        ),
        pytest.param(
            invoice(row(rate="14"), date=dt.date(2025, 6, 2)),
            None,
            VatTreatment.DOMESTIC,
            "14",
            id="14 percent is domestic in 2025",
        ),
        pytest.param(
            invoice(row(rate="13.5")),
            None,
            VatTreatment.DOMESTIC,
            "13.5",
            id="13.5 percent is domestic in 2026",
        ),
        pytest.param(invoice(row(rate="10")), None, VatTreatment.DOMESTIC, "10", id="10 percent is domestic"),
        pytest.param(
            invoice(row(rate="0")),
            None,
            VatTreatment.DOMESTIC,
            "0",
            id="0 percent to a Finn is a domestic 0 sale",
        ),
        pytest.param(
            invoice(row(rate="24"), date=dt.date(2024, 8, 30)),
            None,
            VatTreatment.DOMESTIC,
            "24",
            id="24 percent before September 2024",
        ),
        pytest.param(
            invoice(row(rate="24"), date=dt.date(2024, 9, 10)),
            None,
            VatTreatment.DOMESTIC,
            "24",
            id="24 percent ten days after the change is August's work",
        ),
        pytest.param(
            invoice(row(rate="14"), date=dt.date(2026, 3, 2)),
            None,
            VatTreatment.DOMESTIC,
            "14",
            id="14 percent in March 2026 is December's work",
        ),
        pytest.param(
            invoice(row(rate="13.5"), date=dt.date(2025, 12, 20)),
            InvoiceOptions(rate_lookahead_days=31),
            VatTreatment.DOMESTIC,
            "13.5",
            id="13.5 percent ahead of 2026 with a lookahead for advance invoices",
        ),
        pytest.param(
            invoice(row(rate="25.5"), country="SE"),
            None,
            VatTreatment.DOMESTIC,
            "25.5",
            id="Finnish VAT charged to a foreign buyer stays domestic",
        ),
        pytest.param(
            invoice(row(rate="0", code="RC"), is_tax_free=True, business_id=SWEDISH),
            None,
            VatTreatment.EU_SERVICES,
            "0",
            id="a tax-free invoice to a Swedish VAT number is EU services",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id=SWEDISH, country="SE"),
            None,
            VatTreatment.EU_SERVICES,
            "0",
            id="a Swedish address and VAT number agree",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id="EL123456789"),
            None,
            VatTreatment.EU_SERVICES,
            "0",
            id="a Greek EL VAT number is an EU buyer",
        ),
        pytest.param(
            invoice(row(rate="0", article="WIDGET"), is_tax_free=True, business_id="DE123456789"),
            InvoiceOptions(goods_articles=frozenset({"widget"})),
            VatTreatment.EU_GOODS,
            "0",
            id="a goods article to Germany is EU goods",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id=None, country="US"),
            None,
            VatTreatment.OUTSIDE_EU,
            "0",
            id="a tax-free invoice to the United States is export",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id="GB123456789", country="GB"),
            None,
            VatTreatment.OUTSIDE_EU,
            "0",
            id="Britain is outside the EU",
        ),
        pytest.param(
            invoice(row(rate="0", code="avl8c "), is_tax_free=True),
            CONSTRUCTION,
            VatTreatment.DOMESTIC_REVERSE_CHARGE,
            "0",
            id="a mapped VAT code decides, whatever its case",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True),
            InvoiceOptions(domestic_tax_free=VatTreatment.DOMESTIC_REVERSE_CHARGE),
            VatTreatment.DOMESTIC_REVERSE_CHARGE,
            "0",
            id="a Finnish tax-free invoice follows domestic_tax_free",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True),
            InvoiceOptions(domestic_tax_free=VatTreatment.DOMESTIC),
            VatTreatment.DOMESTIC,
            "0",
            id="domestic_tax_free may declare exempt domestic sales",
        ),
        pytest.param(
            invoice(row(rate=None)), None, VatTreatment.DOMESTIC, "0", id="no rate and no VAT is 0 percent"
        ),
        pytest.param(
            invoice(row(rate="0", code="X"), country="SE", business_id=SWEDISH),
            InvoiceOptions(vat_codes={"x": VatTreatment.NO_VAT}),
            VatTreatment.NO_VAT,
            "0",
            id="a code mapped to no VAT needs no tax-free mark",
        ),
    ],
)
def test_vat_treatments(
    severa_invoice: SeveraInvoice,
    options: InvoiceOptions | None,
    treatment: VatTreatment,
    percent: str,
) -> None:
    result = invoice_for_accounting(severa_invoice, options=options or InvoiceOptions())
    [line] = result.lines
    assert line.vat_treatment is treatment
    assert line.vat_percent == D(percent)
    assert str(line.vat_percent) == percent


@pytest.mark.parametrize(
    ("severa_invoice", "options", "field", "reason", "text"),
    [
        pytest.param(
            invoice(row(2, rate="23", vat="23.00")),
            None,
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "Severa invoice 10023 row 2: VAT 23 % is not a Finnish rate on 2026-11-20 "
            "(in force: 25.5, 13.5, 10, 0 %",
            id="23 percent is not a Finnish rate in 2026",
        ),
        pytest.param(
            invoice(row(rate="24")),
            None,
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "VAT 24 % is not a Finnish rate on 2026-11-20",
            id="24 percent in late 2026 is a stale setting",
        ),
        pytest.param(
            invoice(row(rate="25.5"), date=dt.date(2024, 8, 20)),
            None,
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "VAT 25.5 % is not a Finnish rate on 2024-08-20",
            id="25.5 percent before September 2024",
        ),
        pytest.param(
            invoice(row(rate="13.5"), date=dt.date(2025, 12, 20)),
            None,
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "VAT 13.5 % is not a Finnish rate on 2025-12-20",
            id="13.5 percent before 2026 without a lookahead",
        ),
        pytest.param(
            invoice(row(rate="24"), date=dt.date(2024, 12, 20)),
            InvoiceOptions(rate_lookback_days=30),
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "a rate that ended counts for 30 days more",
            id="a shorter lookback refuses an older rate",
        ),
        pytest.param(
            invoice(row(rate="25.5"), is_tax_free=True),
            None,
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "the invoice is tax free but the row has VAT 25.5 %",
            id="a tax-free invoice with VAT on a row contradicts itself",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True),
            None,
            "invoice.is_tax_free",
            "ambiguous_vat",
            "domestic reverse charge or an exempt sale",
            id="a tax-free invoice to a Finn is ambiguous without domestic_tax_free",
        ),
        pytest.param(
            invoice(row(rate="0", code="RC"), is_tax_free=True, business_id=None),
            None,
            "invoice.receiver.address.country_code",
            "ambiguous_vat",
            "or map VAT code 'RC' in the invoice mapping options (vat_codes), and replay",
            id="a tax-free invoice that shows no country",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id="SE556677889901", country="DE"),
            None,
            "invoice.receiver.address.country_code",
            "ambiguous_vat",
            "the receiver's country DE and the VAT number 'SE556677889901' (SE) disagree",
            id="an address and a VAT number that disagree",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id=None, country="AX"),
            None,
            "invoice.receiver.address.country_code",
            "ambiguous_vat",
            "buyer in AX",
            id="Aaland depends on goods or services",
        ),
        pytest.param(
            invoice(row(rate="0"), business_id=SWEDISH),
            None,
            "invoice.rows[0].vat_rate_percent",
            "ambiguous_vat",
            "0 % VAT for a buyer in SE, but the invoice is not tax free",
            id="0 percent to a Swede on an invoice not tax free is a forgotten reverse charge",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id=None, country="DE"),
            None,
            "invoice.customer.business_id",
            "invalid_vat",
            "needing the buyer's EU VAT number, and the invoice carries none",
            id="EU reverse charge without the buyer's VAT number",
        ),
        pytest.param(
            invoice(row(rate="0"), is_tax_free=True, business_id="556677-8899", country="SE"),
            None,
            "invoice.customer.business_id",
            "invalid_vat",
            "'556677-8899' is not one",
            id="EU reverse charge with a number that is not an EU VAT number",
        ),
        pytest.param(
            invoice(row(rate="25.5", code="EU"), business_id=SWEDISH),
            InvoiceOptions(vat_codes={"EU": VatTreatment.EU_SERVICES}),
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "VAT code 'EU' is mapped to eu_services, which carries no VAT, but the row has VAT 25.5 %",
            id="a code mapped to reverse charge on a row with VAT",
        ),
        pytest.param(
            invoice(row(rate="0", code="EXPORT"), business_id=SWEDISH),
            InvoiceOptions(vat_codes={"EXPORT": VatTreatment.OUTSIDE_EU}),
            "invoice.rows[0].vat_code",
            "invalid_vat",
            "does not fit a buyer in SE",
            id="a code mapped to export for a buyer inside the EU",
        ),
        pytest.param(
            invoice(row(rate="0", code="AVL8c"), business_id=SWEDISH),
            CONSTRUCTION,
            "invoice.rows[0].vat_code",
            "invalid_vat",
            "does not fit a buyer in SE",
            id="domestic reverse charge for a Swedish buyer",
        ),
        pytest.param(
            invoice(row(quantity="10", price="100", rate="25.5", vat="240.00")),
            None,
            "invoice.rows[0].vat_amount",
            "amounts_disagree",
            "the row's VAT 240.00 is not 25.5 % of its 1000.00 (255.00)",
            id="a VAT amount that is not the rate of the net",
        ),
        pytest.param(
            invoice(row(rate="0", vat="0.01")),
            None,
            "invoice.rows[0].vat_amount",
            "amounts_disagree",
            "is not 0 % of",
            id="a cent of VAT on a 0 percent row",
        ),
        pytest.param(
            invoice(row(rate=None, vat="25.50")),
            None,
            "invoice.rows[0].vat_rate_percent",
            "invalid_vat",
            "the row has VAT 25.50 but no VAT rate",
            id="VAT without a rate",
        ),
    ],
)
def test_vat_that_cannot_be_decided_is_refused(
    severa_invoice: SeveraInvoice,
    options: InvoiceOptions | None,
    field: str,
    reason: str,
    text: str,
) -> None:
    error = refusal(severa_invoice, options)
    assert error.field == field
    assert error.reason == reason
    assert text in error.message


def test_the_options_refuse_a_foreign_treatment_for_finnish_tax_free_rows() -> None:
    with pytest.raises(ValueError, match="cannot be eu_services"):
        InvoiceOptions(domestic_tax_free=VatTreatment.EU_SERVICES)


def test_the_options_refuse_codes_that_differ_only_in_case() -> None:
    with pytest.raises(ValueError, match="differ by more than case"):
        InvoiceOptions(vat_codes={"RC": VatTreatment.EU_SERVICES, "rc ": VatTreatment.NO_VAT})


def test_the_options_load_from_plain_configuration() -> None:
    options = InvoiceOptions.model_validate(
        {"vat_codes": {"RC": "eu_services"}, "domestic_tax_free": "domestic_reverse_charge"}
    )
    assert options.treatment_for_code(" rc") is VatTreatment.EU_SERVICES
    assert options.domestic_tax_free is VatTreatment.DOMESTIC_REVERSE_CHARGE


# --------------------------------------------------------------------------------------------------
# Cents
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amounts", "total", "eligible", "expected"),
    [
        pytest.param(["10.00", "20.50"], "30.50", [0, 1], ["10.00", "20.50"], id="cents are left alone"),
        pytest.param(["0.125"], "0.13", [0], ["0.13"], id="half a cent rounds up, not to even"),
        pytest.param(["-0.125"], "-0.13", [0], ["-0.13"], id="a negative half cent rounds away from zero"),
        pytest.param(
            ["10.005", "10.005", "10.005"],
            "30.015",
            [0, 1, 2],
            ["10.00", "10.01", "10.01"],
            id="naive rounding drifts a cent up and the first tied line gives it back",
        ),
        pytest.param(
            ["-10.005", "-10.005", "-10.005"],
            "-30.015",
            [0, 1, 2],
            ["-10.00", "-10.01", "-10.01"],
            id="a credit note's drift mirrors its invoice's",
        ),
        pytest.param(
            ["1.004", "2.003", "3.002"],
            "6.01",
            [0, 1, 2],
            ["1.01", "2.00", "3.00"],
            id="the largest remainder gets the missing cent",
        ),
        pytest.param(
            ["2.004", "5.004"], "7.01", [0, 1], ["2.00", "5.01"], id="a tie goes to the larger amount"
        ),
        pytest.param(
            ["0.00", "0.03", "0.03", "0.03"],
            "0.08",
            [1, 2, 3],
            ["0.00", "0.02", "0.03", "0.03"],
            id="only eligible positions move",
        ),
        pytest.param(
            ["1.00", "1.00"], "2.02", [0, 1], ["1.01", "1.01"], id="one cent per line is still rounding"
        ),
    ],
)
def test_amounts_fit_their_total_to_the_cent(
    amounts: list[str], total: str, eligible: list[int], expected: list[str]
) -> None:
    fitted = fit_to_total([D(a) for a in amounts], D(total), eligible=eligible)
    assert fitted == tuple(D(e) for e in expected)
    assert sum(fitted, D(0)) == round_cents(D(total))


@pytest.mark.parametrize(
    ("amounts", "total", "eligible"),
    [
        pytest.param(["1.00", "1.00"], "2.03", [0, 1], id="more than a cent per line"),
        pytest.param(["0.00", "1.00"], "1.02", [1], id="more cents than eligible lines"),
        pytest.param(["0.00"], "0.01", [], id="a cent with no line to carry it"),
    ],
)
def test_differences_rounding_cannot_explain_are_refused(
    amounts: list[str], total: str, eligible: list[int]
) -> None:
    with pytest.raises(CentsUnexplained):
        fit_to_total([D(a) for a in amounts], D(total), eligible=eligible)


def test_severa_vat_rounded_per_rate_is_met_to_the_cent() -> None:
    # Severa rounds each row's VAT (0.0255 -> 0.03) but its total per rate (0.30 * 25.5 % = 0.0765 -> 0.08).
    rows = [row(n, quantity="1", price="0.10", vat="0.0255") for n in (1, 2, 3)]
    severa_invoice = invoice(*rows, total_net="0.30", total_gross="0.38")
    result = invoice_for_accounting(severa_invoice)
    assert [line.vat_sum for line in result.lines] == [D("0.02"), D("0.03"), D("0.03")]
    assert result.total_vat == D("0.08")
    assert_adds_up(result, severa_invoice)


def test_vat_cents_never_land_on_a_line_without_vat() -> None:
    rows = (
        row(1, price="1000.00", rate="0", name="Exempt training"),
        row(2, price="0.10", vat="0.0255"),
        row(3, price="0.10", vat="0.0255"),
    )
    result = invoice_for_accounting(invoice(*rows, total_net="1000.20", total_gross="1000.25"))
    assert [line.vat_sum for line in result.lines] == [D("0.00"), D("0.02"), D("0.03")]


def test_severa_net_amounts_with_fractions_of_cents_meet_the_header() -> None:
    rows = [row(n, quantity="1.5", price="6.67", net="10.005", vat="2.551275") for n in (1, 2, 3)]
    severa_invoice = invoice(*rows, total_net="30.02", total_gross="37.67")
    result = invoice_for_accounting(severa_invoice)
    assert [line.net_sum for line in result.lines] == [D("10.00"), D("10.01"), D("10.01")]
    assert_adds_up(result, severa_invoice)


@pytest.mark.parametrize(
    ("total_net", "total_gross", "field", "text"),
    [
        pytest.param(
            "250.00",
            "313.75",
            "invoice.total_excluding_vat",
            "the rows add up to 200.00 excluding VAT but the invoice's totals give 250.00",
            id="a header net total the rows do not reach",
        ),
        pytest.param(
            "200.00",
            "252.00",
            "invoice.total_including_vat",
            "the rows add up to 51.00 of VAT but the invoice's totals give 52.00, more than rounding "
            "explains (at most 0.02 over 2 lines)",
            id="a header VAT more than a cent per line away",
        ),
    ],
)
def test_totals_rounding_cannot_explain_are_refused(
    total_net: str, total_gross: str, field: str, text: str
) -> None:
    error = refusal(invoice(row(1), row(2), total_net=total_net, total_gross=total_gross))
    assert error.field == field
    assert error.reason == "amounts_disagree"
    assert text in error.message


def test_generated_invoices_add_up_to_the_cent() -> None:
    """A few hundred invoices as Severa might compute them: lines always meet the header exactly."""
    generator = random.Random(20261120)
    rates = [D("25.5"), D("13.5"), D("10"), D("0")]
    for case in range(400):
        rows: list[SeveraInvoiceRow] = []
        credit = generator.random() < 0.25
        sign = -1 if credit else 1
        for number in range(1, generator.randint(1, 12) + 1):
            quantity = D(generator.randint(1, 20000)) / D(10) ** generator.randint(0, 3)
            price = D(generator.randint(1, 2_000_000)) / D(10) ** generator.randint(2, 4)
            rate = generator.choice(rates)
            exact_net = sign * quantity * price
            net = exact_net if generator.random() < 0.5 else round_cents(exact_net)
            exact_vat = net * rate / 100
            vat = round_cents(exact_vat) if generator.random() < 0.5 else exact_vat.quantize(D("0.0001"))
            rows.append(
                SeveraInvoiceRow(
                    row_number=number,
                    article_name=f"Article {number}",
                    quantity=sign * quantity,
                    unit_price=price,
                    vat_rate_percent=rate,
                    vat_amount=vat,
                    amount_excluding_vat=net,
                    amount_including_vat=net + vat,
                )
            )
        style = generator.choice(["rows rounded", "sum rounded", "vat per rate"])
        if style == "rows rounded":
            total_net = sum((round_cents(r.amount_excluding_vat) for r in rows), D(0))
            total_vat = sum((round_cents(r.vat_amount) for r in rows), D(0))
        elif style == "sum rounded":
            total_net = round_cents(sum((r.amount_excluding_vat for r in rows), D(0)))
            total_vat = round_cents(sum((r.vat_amount for r in rows), D(0)))
        else:
            total_net = round_cents(sum((r.amount_excluding_vat for r in rows), D(0)))
            total_vat = sum(
                (
                    round_cents(
                        sum((r.amount_excluding_vat for r in rows if r.vat_rate_percent == rate), D(0))
                        * rate
                        / 100
                    )
                    for rate in rates
                ),
                D(0),
            )
        severa_invoice = invoice(
            *rows,
            number=10000 + case,
            total_net=str(total_net),
            total_gross=str(total_net + total_vat),
            is_credit_note=credit,
        )
        result = invoice_for_accounting(severa_invoice)
        assert_adds_up(result, severa_invoice)
        for line, source in zip(result.lines, rows, strict=True):
            assert abs(line.net_sum - round_cents(source.amount_excluding_vat)) <= D("0.01"), case
            assert abs(line.vat_sum - round_cents(source.vat_amount)) <= D("0.01"), case
            assert line.unit_price >= 0
            assert (line.quantity < 0) is credit
            if line.vat_percent == 0:
                assert line.vat_sum == 0, case


# --------------------------------------------------------------------------------------------------
# Currency, reference number, dates, customer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severa_invoice", "options", "code", "rate"),
    [
        pytest.param(invoice(), None, "EUR", "1", id="euros have rate 1"),
        pytest.param(invoice(rate="1.000000"), None, "EUR", "1", id="a rate of 1 with decimals is 1"),
        pytest.param(
            invoice(row(rate="0"), currency="SEK", rate="11.2", business_id=SWEDISH, is_tax_free=True),
            None,
            "SEK",
            "11.2",
            id="Swedish crowns keep Severa's rate",
        ),
        pytest.param(
            invoice(currency="SEK", rate="1"),
            InvoiceOptions(base_currency="SEK"),
            "SEK",
            "1",
            id="the configured base currency has rate 1",
        ),
    ],
)
def test_currencies(
    severa_invoice: SeveraInvoice, options: InvoiceOptions | None, code: str, rate: str
) -> None:
    result = invoice_for_accounting(severa_invoice, options=options or InvoiceOptions())
    assert result.currency_code == code
    assert result.currency_rate == D(rate)


def test_the_base_currency_at_another_rate_is_refused() -> None:
    error = refusal(invoice(rate="11.2"))
    assert error.field == "invoice.currency.rate"
    assert error.reason == "invalid_currency_rate"
    assert "the currency rate is 11.2 for EUR, the base currency, whose rate is 1" in error.message


def test_a_foreign_currency_without_a_rate_is_refused() -> None:
    # The event model refuses a rate <= 0 on parsing; the mapping does not rely on it.
    currency = InvoiceCurrency.model_construct(code="USD", rate=D(0))
    error = refusal(invoice().model_copy(update={"currency": currency}))
    assert error.field == "invoice.currency.rate"
    assert "an invoice in USD needs a currency rate above 0, not 0" in error.message


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        pytest.param(None, None, id="no reference lets accounting make one"),
        pytest.param("100230", "100230", id="a valid Finnish reference is sent"),
        pytest.param("10023 0", "100230", id="a printed reference is sent without blanks"),
        pytest.param("RF18 5390 0754 7034", "RF18539007547034", id="an RF reference is sent compacted"),
    ],
)
def test_reference_numbers(reference: str | None, expected: str | None) -> None:
    assert invoice_for_accounting(invoice(reference_number=reference)).reference_number == expected


@pytest.mark.parametrize(
    ("reference", "text"),
    [
        pytest.param("100233", "the last digit should be 0", id="a wrong check digit"),
        pytest.param("RF19 5390 0754 7034", "modulo 97", id="a wrong RF check"),
        pytest.param("INV-10023", "neither a Finnish reference", id="an invoice number is no reference"),
    ],
)
def test_invalid_reference_numbers_are_refused(reference: str, text: str) -> None:
    error = refusal(invoice(reference_number=reference))
    assert error.field == "invoice.reference_number"
    assert error.reason == "invalid_reference_number"
    assert text in error.message
    assert error.message.endswith("correct the invoice's reference number in Severa and replay")


@pytest.mark.parametrize(
    ("due", "severa_term", "expected"),
    [
        pytest.param(DATE + dt.timedelta(days=14), 14, 14, id="the term is the days to the due date"),
        pytest.param(DATE + dt.timedelta(days=16), 14, 16, id="a moved due date wins over Severa's term"),
        pytest.param(DATE, 0, 0, id="due on the invoice date is a term of 0"),
    ],
)
def test_the_due_date_is_sent_and_the_term_derived(due: dt.date, severa_term: int, expected: int) -> None:
    result = invoice_for_accounting(invoice(due=due, payment_term_days=severa_term))
    assert result.due_date == due
    assert result.payment_term_days == expected


def test_a_due_date_before_the_invoice_date_is_refused() -> None:
    error = refusal(invoice(due=DATE - dt.timedelta(days=1)))
    assert error.field == "invoice.due_date"
    assert error.message == (
        "Severa invoice 10023: the due date 2026-11-19 is before the invoice date 2026-11-20; "
        "correct the invoice's due date in Severa and replay"
    )


def test_the_customer_code_is_the_severa_customer_number() -> None:
    result = invoice_for_accounting(invoice(customer_number=1001))
    assert result.customer_code == "1001"
    assert result.number == "10023"
    assert result.source_reference == str(INVOICE_GUID)


def test_an_invoice_whose_customer_has_no_number_is_refused() -> None:
    error = refusal(invoice(customer_number=None))
    assert error.field == "invoice.customer.number"
    assert error.reason == "customer_without_number"
    assert "the customer 'Acme Oy' has no customer number" in error.message


# --------------------------------------------------------------------------------------------------
# Credit notes
# --------------------------------------------------------------------------------------------------


def credit_note(*rows: SeveraInvoiceRow, credited: CreditedInvoice | None, **fields: Any) -> SeveraInvoice:
    return invoice(*rows, number=20251, is_credit_note=True, credited_invoice=credited, **fields)


CREDITS_20248 = CreditedInvoice(guid=CREDITED_GUID, number=20248)


@pytest.mark.parametrize(
    "credit_row",
    [
        pytest.param(row(quantity="-5", price="105"), id="Severa negates the quantity"),
        pytest.param(row(quantity="5", price="-105"), id="Severa negates the price"),
    ],
)
def test_a_credit_note_has_negative_quantities_and_sums_at_a_positive_price(
    credit_row: SeveraInvoiceRow,
) -> None:
    result = invoice_for_accounting(credit_note(credit_row, credited=CREDITS_20248))
    [line] = result.lines
    assert line.quantity == D(-5)
    assert line.unit_price == D(105)
    assert line.net_sum == D("-525.00")
    # -525 * 25.5 % = -133.875: half up rounds away from zero, the mirror of the invoice's 133.88
    assert line.vat_sum == D("-133.88")
    assert result.total_including_vat == D("-658.88")
    assert result.is_credit_note
    assert result.credits_invoice_number == "20248"


def test_a_credit_note_that_names_no_credited_invoice_goes_unmatched() -> None:
    result = invoice_for_accounting(credit_note(row(quantity="-1"), credited=None))
    assert result.is_credit_note
    assert result.credits_invoice_number is None


def test_a_credit_note_whose_credited_invoice_lacks_its_number_is_refused() -> None:
    error = refusal(credit_note(row(quantity="-1"), credited=CreditedInvoice(guid=CREDITED_GUID)))
    assert error.field == "invoice.credited_invoice.number"
    assert error.reason == "credited_invoice_unknown"
    assert error.message.startswith(
        f"Severa credit note 20251: the credit note credits Severa invoice {CREDITED_GUID}"
    )


def test_a_credit_note_with_a_positive_total_is_refused() -> None:
    error = refusal(credit_note(row(quantity="1"), credited=CREDITS_20248))
    assert error.field == "invoice.total_including_vat"
    assert error.reason == "invalid_credit_note"


def test_an_ordinary_invoice_with_a_negative_total_is_refused() -> None:
    error = refusal(invoice(row(quantity="-1")))
    assert error.field == "invoice.is_credit_note"
    assert "the invoice's total is -125.50 but it is not a credit note" in error.message


def test_an_ordinary_invoice_ignores_a_credited_invoice() -> None:
    result = invoice_for_accounting(invoice(credited_invoice=CREDITS_20248))
    assert result.credits_invoice_number is None
    assert not result.is_credit_note


def test_a_discount_row_on_an_invoice_is_a_negative_quantity_at_a_positive_price() -> None:
    result = invoice_for_accounting(
        invoice(row(1, price="1000"), row(2, quantity="1", price="-100", name="Discount"))
    )
    discount = result.lines[1]
    assert (discount.quantity, discount.unit_price, discount.net_sum) == (D(-1), D(100), D("-100.00"))
    assert result.total_including_vat == D("1129.50")


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def test_text_rows_book_nothing_and_are_left_out() -> None:
    heading = row(1, quantity="0", price="0", rate=None, name=None, description="Work in November")
    result = invoice_for_accounting(invoice(heading, row(2)))
    assert [line.name for line in result.lines] == ["Consulting"]


def test_an_invoice_of_text_rows_only_is_refused() -> None:
    heading = row(1, quantity="0", price="0", rate=None, name="Heading")
    error = refusal(invoice(heading))
    assert error.field == "invoice.rows"
    assert error.reason == "invoice_without_lines"


def test_a_free_row_with_a_quantity_is_kept() -> None:
    result = invoice_for_accounting(invoice(row(1, quantity="2", price="0", name="Included support"), row(2)))
    assert [(line.name, line.net_sum) for line in result.lines] == [
        ("Included support", D("0.00")),
        ("Consulting", D("100.00")),
    ]


@pytest.mark.parametrize(
    ("severa_row", "name", "free_text"),
    [
        pytest.param(row(name="Development"), "Development", None, id="the article name names the line"),
        pytest.param(
            row(name="Development", description="Checkout API\nand tests"),
            "Development",
            "Checkout API\nand tests",
            id="the row text goes to the free text",
        ),
        pytest.param(
            row(name=None, description="  Checkout API\n and tests "),
            "Checkout API and tests",
            None,
            id="without an article the row text names the line on one line",
        ),
        pytest.param(row(name=None, article="DEV"), "DEV", None, id="then the article code"),
        pytest.param(row(7, name=None), "Row 7", None, id="then the row number"),
        pytest.param(
            row(name="Same", description="Same"), "Same", None, id="a text equal to the name is not repeated"
        ),
        pytest.param(
            row(name="x" * (LINE_NAME_MAX + 10)),
            "x" * (LINE_NAME_MAX - 3) + "...",
            None,
            id="a long name is cut to the limit with a mark",
        ),
        pytest.param(
            row(name="x" * LINE_NAME_MAX), "x" * LINE_NAME_MAX, None, id="a name of the limit is kept"
        ),
    ],
)
def test_line_names(severa_row: SeveraInvoiceRow, name: str, free_text: str | None) -> None:
    [line] = invoice_for_accounting(invoice(severa_row)).lines
    assert line.name == name
    assert len(line.name) <= LINE_NAME_MAX
    assert line.free_text == free_text


def test_a_line_carries_the_article_code_and_sales_account() -> None:
    [line] = invoice_for_accounting(invoice(row(article="DEV", account="3000"))).lines
    assert (line.product_code, line.account_suggestion) == ("DEV", "3000")


@pytest.mark.parametrize(
    ("severa_row", "accepted"),
    [
        pytest.param(
            row(quantity="3", price="33.333", net="100.00"), True, id="a price with fractions of cents"
        ),
        pytest.param(
            row(quantity="3", price="33.33", net="100.00"), True, id="a price Severa rounded to cents"
        ),
        pytest.param(row(quantity="3", price="33.33", net="125.50"), False, id="a price including VAT"),
        pytest.param(
            row(quantity="10", price="100", net="900.00"), False, id="a discount the line cannot carry"
        ),
        pytest.param(row(quantity="0", price="100", net="100.00"), False, id="an amount without a quantity"),
    ],
)
def test_quantity_times_price_must_give_the_row_amount(severa_row: SeveraInvoiceRow, accepted: bool) -> None:
    if accepted:
        invoice_for_accounting(invoice(severa_row))
        return
    error = refusal(invoice(severa_row))
    assert error.field == "invoice.rows[0].unit_price"
    assert error.reason == "amounts_disagree"


# --------------------------------------------------------------------------------------------------
# Whole invoices, as in the demo organisation
# --------------------------------------------------------------------------------------------------


def test_an_invoice_with_three_vat_rates() -> None:
    severa_invoice = invoice(
        row(1, quantity="6", price="120", rate="25.5", code="25.5", name="Design workshop", account="3000"),
        row(2, quantity="8", price="18.50", rate="14", code="14", name="Workshop catering"),
        row(3, quantity="1", price="450", rate="0", code="0", name="Accessibility training (VAT exempt)"),
        number=20250,
        date=dt.date(2025, 6, 2),
        due=dt.date(2025, 6, 16),
        reference_number="202507",
        our_reference=" Juha Mäkinen ",
        your_reference="Kaisa Laine",
    )
    result = invoice_for_accounting(severa_invoice)
    assert [(line.vat_percent, line.net_sum, line.vat_sum) for line in result.lines] == [
        (D("25.5"), D("720.00"), D("183.60")),
        (D("14"), D("148.00"), D("20.72")),
        (D("0"), D("450.00"), D("0.00")),
    ]
    assert {line.vat_treatment for line in result.lines} == {VatTreatment.DOMESTIC}
    assert (result.total_including_vat, result.total_vat) == (D("1522.32"), D("204.32"))
    assert (result.number, result.reference_number, result.payment_term_days) == ("20250", "202507", 14)
    assert (result.our_reference, result.your_reference) == ("Juha Mäkinen", "Kaisa Laine")
    assert_adds_up(result, severa_invoice)


def test_a_reverse_charged_invoice_in_swedish_crowns() -> None:
    severa_invoice = invoice(
        row(1, quantity="12", price="1400", rate="0", code="RC", name="Integration review"),
        number=20252,
        date=dt.date(2025, 6, 5),
        due=dt.date(2025, 7, 5),
        currency="SEK",
        rate="11.2",
        business_id=SWEDISH,
        customer_number=1003,
        is_tax_free=True,
        reference_number="202523",
    )
    result = invoice_for_accounting(severa_invoice)
    [line] = result.lines
    assert (line.vat_treatment, line.vat_percent, line.net_sum, line.vat_sum) == (
        VatTreatment.EU_SERVICES,
        D(0),
        D("16800.00"),
        D("0.00"),
    )
    assert (result.currency_code, result.currency_rate, result.customer_code) == ("SEK", D("11.2"), "1003")
    assert (result.total_including_vat, result.total_vat) == (D("16800.00"), D("0.00"))
