"""Finnish checks the accounting mapping relies on: business ids, reference numbers, VAT rates, countries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connector.mapping.finnish import (
    business_id_check_digit,
    country_code,
    country_of_vat_number,
    finnish_rate_between,
    finnish_rates_on,
    normalize_business_id,
    normalize_reference_number,
    reference_check_digit,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2000001-6", "2000001-6", id="a valid business id is kept"),
        pytest.param("1234567-1", "1234567-1", id="a business id whose remainder is 10 ends in 1"),
        pytest.param(" 2000001 - 6 ", "2000001-6", id="blanks are ignored"),
        pytest.param("FI20000016", "2000001-6", id="the Finnish VAT number becomes the business id"),
        pytest.param("fi20000016", "2000001-6", id="a lower-case FI prefix is accepted"),
        pytest.param("20000016", "2000001-6", id="eight digits without the dash get their dash"),
        pytest.param("123456-2", "0123456-2", id="an old six-digit id gets its leading zero"),
        pytest.param("0000000-0", "0000000-0", id="remainder 0 gives check digit 0"),
    ],
)
def test_business_ids_are_normalised(text: str, expected: str) -> None:
    assert normalize_business_id(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("2000001-7", "2000001-6 would be valid", id="a wrong check digit names the right one"),
        pytest.param("1234567-8", "1234567-1 would be valid", id="the common example id is not valid"),
        pytest.param("0000006-0", "no id starts 0000006", id="remainder 1 is never issued"),
        pytest.param("12345-6", "not a Finnish business id", id="too few digits"),
        pytest.param("FI1234567", "not a Finnish business id", id="a VAT number one digit short"),
        pytest.param("SE556677889901", "not a Finnish business id", id="a Swedish VAT number"),
        pytest.param("", "not a Finnish business id", id="an empty text"),
    ],
)
def test_invalid_business_ids_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_business_id(text)


def test_the_business_id_check_digit_follows_the_7_9_10_5_8_4_2_weights() -> None:
    # 2*7 + 1*2 = 16; 16 mod 11 = 5; 11 - 5 = 6
    assert business_id_check_digit("2000001") == 6
    assert business_id_check_digit("0000006") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("202484", "202484", id="a Finnish reference with its 7-3-1 check digit is kept"),
        pytest.param("20248 4", "202484", id="blanks are removed for sending"),
        pytest.param("1232", "1232", id="four digits are the shortest reference"),
        pytest.param("00001232", "00001232", id="leading zeros are kept as Severa printed them"),
        pytest.param("1" * 19 + "7", "1" * 19 + "7", id="twenty digits are the longest reference"),
        pytest.param("RF18539007547034", "RF18539007547034", id="an RF creditor reference passes mod 97"),
        pytest.param(
            "rf18 5390 0754 7034", "RF18539007547034", id="an RF reference is upper-cased and compacted"
        ),
        pytest.param("RF712348231", "RF712348231", id="an RF reference built on a Finnish one"),
    ],
)
def test_reference_numbers_are_validated_and_compacted(text: str, expected: str) -> None:
    assert normalize_reference_number(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("202485", "the last digit should be 4", id="a wrong check digit names the right one"),
        pytest.param("123", "4 to 20 digits", id="three digits are too short"),
        pytest.param("1" * 21, "4 to 20 digits", id="twenty-one digits are too long"),
        pytest.param("12A45", "4 to 20 digits", id="a letter in a Finnish reference"),
        pytest.param("RF19539007547034", "modulo 97", id="an RF reference with wrong check digits"),
        pytest.param("RF18", "RF creditor reference", id="an RF reference without a body"),
        pytest.param("RF18-5390", "RF creditor reference", id="an RF reference with a dash"),
    ],
)
def test_invalid_reference_numbers_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_reference_number(text)


def test_the_reference_check_digit_is_the_distance_to_the_next_ten() -> None:
    # 8*7 + 4*3 + 2*1 + 0*7 + 2*3 = 76 -> 80 - 76 = 4
    assert reference_check_digit("20248") == 4
    assert reference_check_digit("123") == 2


@pytest.mark.parametrize(
    ("rate", "day", "valid"),
    [
        pytest.param("24", dt.date(2024, 8, 31), True, id="24 percent on its last day"),
        pytest.param("24", dt.date(2024, 9, 1), False, id="24 percent the day 25.5 took over"),
        pytest.param("25.5", dt.date(2024, 9, 1), True, id="25.5 percent from 1 September 2024"),
        pytest.param("25.5", dt.date(2024, 8, 31), False, id="25.5 percent the day before it began"),
        pytest.param("14", dt.date(2025, 12, 31), True, id="14 percent on its last day"),
        pytest.param("14", dt.date(2026, 1, 1), False, id="14 percent after 13.5 took over"),
        pytest.param("13.5", dt.date(2026, 1, 1), True, id="13.5 percent from 2026"),
        pytest.param("13.50", dt.date(2026, 6, 1), True, id="trailing zeros do not matter"),
        pytest.param("10", dt.date(2026, 11, 20), True, id="10 percent still in force"),
        pytest.param("0", dt.date(1999, 1, 1), True, id="0 percent on any day"),
        pytest.param("23", dt.date(2026, 11, 20), False, id="23 percent ended in 2012"),
        pytest.param("23", dt.date(2012, 12, 31), True, id="23 percent on its last day"),
        pytest.param("25", dt.date(2025, 1, 1), False, id="25 percent was never a Finnish rate"),
    ],
)
def test_finnish_vat_rates_have_their_periods(rate: str, day: dt.date, valid: bool) -> None:
    assert finnish_rate_between(Decimal(rate), day, day) is valid


def test_a_rate_counts_if_it_was_in_force_on_any_day_of_the_window() -> None:
    assert finnish_rate_between(Decimal("24"), dt.date(2024, 6, 10), dt.date(2024, 9, 10))
    assert not finnish_rate_between(Decimal("24"), dt.date(2024, 9, 1), dt.date(2024, 12, 1))


def test_the_rates_in_force_are_listed_highest_first() -> None:
    assert finnish_rates_on(dt.date(2026, 11, 20)) == (
        Decimal("25.5"),
        Decimal("13.5"),
        Decimal("10"),
        Decimal("0"),
    )
    assert finnish_rates_on(dt.date(2024, 8, 1)) == (Decimal(24), Decimal(14), Decimal(10), Decimal(0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("SE556677889901", "SE", id="a Swedish VAT number is Swedish"),
        pytest.param("se 5566 7788 9901", "SE", id="blanks and case do not matter"),
        pytest.param("EL123456789", "GR", id="Greece's EL prefix is Greece"),
        pytest.param("ATU12345678", "AT", id="an Austrian number with its U"),
        pytest.param("FI20000016", "FI", id="a Finnish VAT number is Finnish"),
        pytest.param("2000001-6", "FI", id="a valid Finnish business id is Finnish"),
        pytest.param("GB123456789", None, id="a British number is not an EU one"),
        pytest.param("XI123456789", None, id="Northern Ireland's XI proves nothing"),
        pytest.param("NO123456789MVA", None, id="a Norwegian number is not an EU one"),
        pytest.param("556677-8899", None, id="a number without a prefix proves nothing"),
        pytest.param("2000001-7", None, id="an invalid Finnish business id proves nothing"),
    ],
)
def test_the_country_of_a_vat_number(text: str, expected: str | None) -> None:
    assert country_of_vat_number(text) == expected


@pytest.mark.parametrize(
    ("code", "name", "expected"),
    [
        pytest.param("FI", "Finland", "FI", id="the code wins"),
        pytest.param("se", None, "SE", id="a code is upper-cased"),
        pytest.param(None, "de", "DE", id="a two-letter name is a code"),
        pytest.param(None, "Suomi", "FI", id="Finland by its Finnish name"),
        pytest.param(None, "FINLAND", "FI", id="Finland by its English name in capitals"),
        pytest.param(None, None, None, id="no country at all"),
        pytest.param(" ", "", None, id="blanks are no country"),
    ],
)
def test_country_codes(code: str | None, name: str | None, expected: str | None) -> None:
    assert country_code(code, name) == expected


@pytest.mark.parametrize(
    ("code", "name"),
    [
        pytest.param(None, "Sverige", id="a foreign country's name without its code"),
        pytest.param("FIN", None, id="a three-letter code"),
    ],
)
def test_a_country_that_cannot_be_coded_is_refused(code: str | None, name: str | None) -> None:
    with pytest.raises(ValueError, match="ISO"):
        country_code(code, name)
