"""The port's VAT treatments as Netvisor's vatcodes, from a table."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.netvisor.vat import NETVISOR_VAT_CODES, VAT_CODES, vat_code
from connector.errors import UnmappableRecord
from connector.ports import VatTreatment


@pytest.mark.parametrize(
    ("treatment", "percent", "code"),
    [
        pytest.param(VatTreatment.DOMESTIC, Decimal("25.5"), "KOMY", id="domestic sales at the general rate"),
        pytest.param(VatTreatment.DOMESTIC, Decimal("14"), "KOMY", id="domestic sales at 14 percent"),
        pytest.param(VatTreatment.DOMESTIC, Decimal("13.5"), "KOMY", id="domestic sales at 13.5 percent"),
        pytest.param(VatTreatment.DOMESTIC, Decimal("10"), "KOMY", id="domestic sales at 10 percent"),
        pytest.param(VatTreatment.DOMESTIC, Decimal("0"), "KOMY", id="domestic zero-rated sales"),
        pytest.param(
            VatTreatment.DOMESTIC_REVERSE_CHARGE,
            Decimal("0"),
            "RAMY",
            id="construction services reverse charge",
        ),
        pytest.param(VatTreatment.EU_GOODS, Decimal("0"), "EUMY", id="goods to another EU country"),
        pytest.param(VatTreatment.EU_SERVICES, Decimal("0"), "EUPM312", id="services to another EU country"),
        pytest.param(VatTreatment.OUTSIDE_EU, Decimal("0"), "MUUL", id="sales outside the EU"),
        pytest.param(VatTreatment.NO_VAT, Decimal("0.00"), "NONE", id="outside the scope of VAT"),
    ],
)
def test_vat_codes(treatment: VatTreatment, percent: Decimal, code: str) -> None:
    assert vat_code(treatment, percent) == code


def test_every_treatment_has_a_netvisor_code() -> None:
    assert set(VAT_CODES) == set(VatTreatment)
    assert set(VAT_CODES.values()) <= NETVISOR_VAT_CODES


@pytest.mark.parametrize(
    "treatment",
    [treatment for treatment in VatTreatment if treatment is not VatTreatment.DOMESTIC],
)
def test_a_zero_rated_treatment_with_vat_is_refused(treatment: VatTreatment) -> None:
    with pytest.raises(UnmappableRecord, match="zero-rated") as info:
        vat_code(treatment, Decimal("25.5"), field="invoice.lines[2].vat_percent")
    assert info.value.field == "invoice.lines[2].vat_percent"


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(UnmappableRecord, match="negative"):
        vat_code(VatTreatment.DOMESTIC, Decimal("-1"))
