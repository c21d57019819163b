"""The port's neutral :class:`~connector.ports.VatTreatment` as Netvisor's ``vatcode`` attribute.

Netvisor's sales codes (from its DTD's list ``NONE KOOS EUOS EUUO EUPO 100 KOMY EUMY EUUM EUPM312
EUPM309 MUUL EVTO EVPO RAMY RAOS EVRO``; the purchase codes KOOS/EUOS/EUUO/EUPO/RAOS/EV* never go
on a sales invoice). The numbers in EUPM312 and EUPM309 are fields of the Finnish periodic VAT
return: 312 = sales of services to other EU countries (the general rule, AVL 65 §, which also go
to the EU sales list), 309 = zero-rate turnover. A service sold to a VAT-registered EU buyer who
reverses the charge is therefore EUPM312.

Verified by two sources: the code list itself. Not verified against Netvisor's own documentation
(no source at hand states each code's meaning): KOMY = domestic sales, EUMY = EU sales of goods
(field 311), EUPM312 = EU sales of services (field 312), MUUL = sales outside the EU, RAMY = sales
of construction services under the domestic reverse charge (field 318), NONE = no VAT handling.
An accountant can confirm them in Netvisor (Settings → VAT codes) before go-live.

Every treatment other than DOMESTIC is zero-rated on the invoice: a non-zero rate with one of
them is a contradiction the adapter refuses rather than books (which of the two is wrong cannot
be told here).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from connector.errors import UnmappableRecord
from connector.ports import VatTreatment

#: VatTreatment → Netvisor vatcode, one row per treatment (unit-tested as a table).
VAT_CODES: Final[Mapping[VatTreatment, str]] = MappingProxyType(
    {
        VatTreatment.DOMESTIC: "KOMY",
        VatTreatment.DOMESTIC_REVERSE_CHARGE: "RAMY",
        VatTreatment.EU_GOODS: "EUMY",
        # The brief's first guess was EUPM309 (zero-rate turnover); the VAT return fields make the
        # general-rule B2B service sale EUPM312. Unverified against Netvisor's documentation.
        VatTreatment.EU_SERVICES: "EUPM312",
        VatTreatment.OUTSIDE_EU: "MUUL",
        VatTreatment.NO_VAT: "NONE",
    }
)

#: Netvisor's whole list, for validating what comes back (and for tests).
NETVISOR_VAT_CODES: Final = frozenset(
    {"NONE", "KOOS", "EUOS", "EUUO", "EUPO", "100", "KOMY", "EUMY", "EUUM", "EUPM312", "EUPM309"}
    | {"MUUL", "EVTO", "EVPO", "RAMY", "RAOS", "EVRO"}
)

_ZERO = Decimal(0)


def vat_code(treatment: VatTreatment, vat_percent: Decimal, *, field: str = "vat_percent") -> str:
    """The vatcode for a line taxed as ``treatment`` at ``vat_percent``.

    Raises :class:`~connector.errors.UnmappableRecord` (naming ``field``) for a negative rate, or a
    non-zero rate with a zero-rated treatment.
    """
    if vat_percent < _ZERO:
        raise UnmappableRecord(
            f"A VAT rate of {vat_percent} % is negative: correct the row's VAT rate in Severa.", field=field
        )
    if treatment is not VatTreatment.DOMESTIC and vat_percent != _ZERO:
        raise UnmappableRecord(
            f"A row taxed as {treatment.value} carries VAT at {vat_percent} %, but that treatment is "
            "zero-rated on the invoice: correct the row's VAT rate, or the customer's VAT treatment, "
            "in Severa (or the VAT mapping table), then replay.",
            field=field,
        )
    return VAT_CODES[treatment]
