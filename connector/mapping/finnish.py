"""Finnish facts the accounting mapping checks against: business ids, reference numbers, VAT rates.

Pure functions, no I/O. Each check returns the value in the form accounting systems keep it, or
raises :class:`ValueError` whose text says what is wrong (the invoice and customer mappings turn it
into an :class:`~connector.errors.UnmappableRecord` naming the Severa field). Tested in
``tests/unit/test_mapping_accounting_finnish.py``.

* **Business id** (Y-tunnus, ``1234567-8``): seven digits, a dash and a check digit. The check digit
  is the sum of the digits weighted 7, 9, 10, 5, 8, 4, 2, modulo 11: remainder 0 gives 0, remainder 1
  is never issued (no such id exists), any other remainder *r* gives 11 - *r*. A Finnish VAT number
  ``FI12345678`` is the same id without its dash, and an old six-digit id gets its leading zero.
* **Reference number** (viitenumero): 4 to 20 digits, the last one a check digit over the others
  weighted 7, 3, 1 from the right: the distance from their sum up to the next multiple of ten.
  Printed in groups of five; sent without blanks. Or an **RF creditor reference** (ISO 11649):
  ``RF``, two check digits and up to 21 letters or digits; with the first four characters moved to
  the end and each letter written as a number (A = 10 … Z = 35), the number modulo 97 is 1.
* **VAT rates**: the general and reduced rates Finland has had since 2010, each with its period.
  The rate of a sale follows when the goods were delivered or the service performed, not the
  invoice date, which is why the mapping accepts a rate that was in force within a window before
  the invoice date (see :func:`finnish_rate_between`).
* **EU member states**, as Finnish VAT sees them: another member state's VAT-registered buyer
  reverses the charge; anything outside is export.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

# --------------------------------------------------------------------------------------------------
# Business id (Y-tunnus)
# --------------------------------------------------------------------------------------------------

_BUSINESS_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2)
_BUSINESS_ID_RE: Final = re.compile(r"(\d{6,7})-(\d)")
_BUSINESS_ID_UNDASHED_RE: Final = re.compile(r"(?:FI)?(\d{7})(\d)")
_BLANKS_RE: Final = re.compile(r"\s+")


def business_id_check_digit(digits: str) -> int | None:
    """The check digit of a business id's seven digits, or ``None`` when no id can have them.

    ``None`` is remainder 1, which the Finnish Patent and Registration Office never issues.
    """
    if len(digits) != len(_BUSINESS_ID_WEIGHTS) or not digits.isdigit():
        raise ValueError(f"a business id has 7 digits before its check digit, not {digits!r}")
    remainder = sum(int(d) * w for d, w in zip(digits, _BUSINESS_ID_WEIGHTS, strict=True)) % 11
    if remainder == 1:
        return None
    return 0 if remainder == 0 else 11 - remainder


def normalize_business_id(text: str) -> str:
    """A Finnish business id as ``1234567-8``, its check digit verified.

    Accepted spellings: ``1234567-8``, the old six-digit ``123456-7`` (the register pads it with a
    leading zero), ``12345678`` and the VAT number form ``FI12345678``; blanks are ignored. Anything
    else, or a wrong check digit, raises :class:`ValueError`.
    """
    compact = _BLANKS_RE.sub("", text).upper()
    if match := _BUSINESS_ID_RE.fullmatch(compact):
        digits, check = match.group(1).rjust(7, "0"), match.group(2)
    elif match := _BUSINESS_ID_UNDASHED_RE.fullmatch(compact):
        digits, check = match.group(1), match.group(2)
    else:
        raise ValueError(f"{text!r} is not a Finnish business id of the form 1234567-8")
    expected = business_id_check_digit(digits)
    if expected is None:
        raise ValueError(f"{text!r} cannot be a Finnish business id: no id starts {digits}")
    if int(check) != expected:
        raise ValueError(f"{text!r} fails its check digit: {digits}-{expected} would be valid")
    return f"{digits}-{check}"


def is_finnish_business_id(text: str) -> bool:
    """Whether ``text`` is a valid Finnish business id in one of the spellings accepted above."""
    try:
        normalize_business_id(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Reference numbers
# --------------------------------------------------------------------------------------------------

_REFERENCE_WEIGHTS: Final = (7, 3, 1)
_FINNISH_REFERENCE_RE: Final = re.compile(r"\d{4,20}")
_RF_REFERENCE_RE: Final = re.compile(r"RF\d{2}[0-9A-Z]{1,21}")


def reference_check_digit(base: str) -> int:
    """The 7-3-1 check digit of a Finnish reference's base digits (3 to 19 of them)."""
    if not base.isdigit() or not 3 <= len(base) <= 19:
        raise ValueError(f"a reference number's base is 3 to 19 digits, not {base!r}")
    weighted = sum(int(d) * _REFERENCE_WEIGHTS[i % 3] for i, d in enumerate(reversed(base)))
    return -weighted % 10


def _rf_is_valid(reference: str) -> bool:
    rearranged = reference[4:] + reference[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def normalize_reference_number(text: str) -> str:
    """A payment reference without blanks, its check digit(s) verified.

    A Finnish reference (4 to 20 digits, 7-3-1 check digit) or an RF creditor reference (ISO 11649,
    mod 97; letters upper-cased). Leading zeros of a Finnish reference are kept: banks ignore them,
    and the reference must stay what Severa printed so that payments match. Raises
    :class:`ValueError` saying what is wrong (and, for a Finnish reference, which check digit its
    base would have).
    """
    compact = _BLANKS_RE.sub("", text).upper()
    if compact.startswith("RF"):
        if not _RF_REFERENCE_RE.fullmatch(compact):
            raise ValueError(
                f"{text!r} is not an RF creditor reference (RF, two check digits, 1 to 21 letters or digits)"
            )
        if not _rf_is_valid(compact):
            raise ValueError(f"{text!r} fails its RF check digits (ISO 11649, modulo 97)")
        return compact
    if not _FINNISH_REFERENCE_RE.fullmatch(compact):
        raise ValueError(
            f"{text!r} is neither a Finnish reference number (4 to 20 digits) nor an RF reference"
        )
    expected = reference_check_digit(compact[:-1])
    if int(compact[-1]) != expected:
        raise ValueError(f"{text!r} fails its check digit (7-3-1): the last digit should be {expected}")
    return compact


# --------------------------------------------------------------------------------------------------
# VAT rates
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VatRatePeriod:
    """A Finnish VAT rate and the days it was in force, both ends included (``until`` None: still)."""

    rate: Decimal
    since: dt.date
    until: dt.date | None

    def overlaps(self, start: dt.date, end: dt.date) -> bool:
        return self.since <= end and (self.until is None or self.until >= start)


#: Finland's general and reduced VAT rates since July 2010. 0 % (exempt and zero-rated sales) is
#: valid on every day and not listed. Sources: the Finnish Tax Administration's rate announcements
#: (24 → 25.5 % on 1 September 2024; 14 → 13.5 % on 1 January 2026).
FINNISH_VAT_RATES: Final[tuple[VatRatePeriod, ...]] = (
    VatRatePeriod(Decimal("23"), dt.date(2010, 7, 1), dt.date(2012, 12, 31)),
    VatRatePeriod(Decimal("13"), dt.date(2010, 7, 1), dt.date(2012, 12, 31)),
    VatRatePeriod(Decimal("9"), dt.date(2010, 7, 1), dt.date(2012, 12, 31)),
    VatRatePeriod(Decimal("24"), dt.date(2013, 1, 1), dt.date(2024, 8, 31)),
    VatRatePeriod(Decimal("14"), dt.date(2013, 1, 1), dt.date(2025, 12, 31)),
    VatRatePeriod(Decimal("10"), dt.date(2013, 1, 1), None),
    VatRatePeriod(Decimal("25.5"), dt.date(2024, 9, 1), None),
    VatRatePeriod(Decimal("13.5"), dt.date(2026, 1, 1), None),
)


def finnish_rates_on(day: dt.date) -> tuple[Decimal, ...]:
    """The Finnish VAT rates in force on ``day``, highest first, 0 % last."""
    rates = sorted((p.rate for p in FINNISH_VAT_RATES if p.overlaps(day, day)), reverse=True)
    return (*rates, Decimal(0))


def finnish_rate_between(rate: Decimal, start: dt.date, end: dt.date) -> bool:
    """Whether ``rate`` was a Finnish VAT rate on any day from ``start`` to ``end`` (both included).

    A window rather than one day because the rate follows the supply (delivery or completion of
    the work), which may lie before the invoice date; the event gives no delivery date per row.
    """
    if rate == 0:
        return True
    return any(p.rate == rate and p.overlaps(start, end) for p in FINNISH_VAT_RATES)


# --------------------------------------------------------------------------------------------------
# Countries
# --------------------------------------------------------------------------------------------------

HOME_COUNTRY: Final = "FI"

#: The EU's member states (ISO 3166-1 alpha-2), Finland included, as of 2020-02-01 (the UK left).
EU_MEMBER_STATES: Final = frozenset(
    {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
        "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
    }
)  # fmt: skip

#: Territories whose VAT treatment depends on what is sold, which the mapping cannot tell from an
#: invoice row: Åland is outside the EU VAT area for goods but inside Finland's VAT for services.
SPLIT_VAT_TERRITORIES: Final = frozenset({"AX"})

_VAT_PREFIX_RE: Final = re.compile(r"([A-Z]{2})[0-9A-Z+*.]{2,13}")


def country_of_vat_number(text: str) -> str | None:
    """The EU member state a VAT number (or a Finnish business id) belongs to, if it shows one.

    ``FI12345678`` and a valid ``1234567-8`` give ``FI``, ``SE556677889901`` gives ``SE``, Greece's
    ``EL…`` gives ``GR``. A number without an EU prefix (``GB…``, ``NO…MVA``, ``XI…``) gives
    ``None``: outside the EU a prefix proves nothing.
    """
    compact = _BLANKS_RE.sub("", text).upper()
    if is_finnish_business_id(compact):
        return HOME_COUNTRY
    match = _VAT_PREFIX_RE.fullmatch(compact)
    if match is None:
        return None
    prefix = "GR" if match.group(1) == "EL" else match.group(1)
    return prefix if prefix in EU_MEMBER_STATES else None


#: Names of Finland as Severa users type them (Finnish, Swedish, English, German, French), for an
#: address that has a country name but no code.
_FINLAND_NAMES: Final = frozenset({"suomi", "finland", "finnland", "finlande"})


def country_code(code: str | None, name: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code (upper case) from an address's code or name; ``None`` if neither.

    The code when there is one; else a two-letter name (some systems put the code there) or one of
    Finland's names. Any other name raises :class:`ValueError`: a foreign country sent as no
    country would be taken for Finland.
    """
    if code and code.strip():
        text = code.strip().upper()
        if not re.fullmatch(r"[A-Z]{2}", text):
            raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
        return text
    if not name or not name.strip():
        return None
    text = name.strip()
    if re.fullmatch(r"[A-Za-z]{2}", text):
        return text.upper()
    if text.casefold() in _FINLAND_NAMES:
        return HOME_COUNTRY
    raise ValueError(f"the country {name!r} has no ISO code")
