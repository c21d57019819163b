"""Severa customer → accounting customer: code, business id, country, e-invoicing, language."""

from __future__ import annotations

import pytest

from connector.errors import Category, UnmappableRecord
from connector.mapping.customers import customer_for_accounting, invoicing_language
from connector.ports import AccountingAddress
from schemas.severa_events import EInvoiceAddress, PostalAddress, SeveraCustomer
from tests.accounting_factories import CUSTOMER_GUID, customer

GUID = CUSTOMER_GUID


def refusal(severa_customer: SeveraCustomer) -> UnmappableRecord:
    with pytest.raises(UnmappableRecord) as caught:
        customer_for_accounting(severa_customer)
    error = caught.value
    assert error.category is Category.PERMANENT
    assert "\n" not in error.message
    assert error.message.startswith("Severa customer ")
    assert error.message.endswith("replay")
    return error


def test_a_finnish_customer_is_mapped_whole() -> None:
    result = customer_for_accounting(
        customer(e_invoice=EInvoiceAddress(address="0037 2000 0016", operator="003721291126"))
    )
    assert result.code == "1001"
    assert result.name == "Acme Oy"
    assert result.business_id == "2000001-6"
    assert result.address == AccountingAddress(
        street="Esimerkkikatu 1",
        additional_line="PL 100",
        postal_code="00100",
        city="Helsinki",
        country_code="FI",
    )
    assert result.email == "invoices@acme.example"
    assert result.invoicing_email is None
    assert (result.e_invoice_address, result.e_invoice_operator) == ("003720000016", "003721291126")
    assert result.language == "FI"
    assert result.payment_term_days == 14
    assert result.is_active
    assert not result.is_private_person
    assert result.source_reference == str(GUID)


@pytest.mark.parametrize(
    ("business_id", "country", "expected"),
    [
        pytest.param("2000001-6", "FI", "2000001-6", id="a valid Finnish business id is kept"),
        pytest.param("FI 2000 0016", "FI", "2000001-6", id="a Finnish VAT number becomes the business id"),
        pytest.param("123456-2", "FI", "0123456-2", id="an old six-digit id gets its leading zero"),
        pytest.param("2000001-6", None, "2000001-6", id="without a country the id is checked as Finnish"),
        pytest.param("se 5566 7788 9901", "SE", "SE556677889901", id="a foreign VAT number is compacted"),
        pytest.param(
            "SE556677889901", None, "SE556677889901", id="a foreign prefix without a country is foreign"
        ),
        pytest.param(
            "CHE-123.456.789 MWST", "CH", "CHE-123.456.789MWST", id="a Swiss number keeps its marks"
        ),
        pytest.param("12345", "US", "12345", id="abroad any number is its country's business"),
        pytest.param(None, "FI", None, id="no business id stays empty"),
        pytest.param("  ", "FI", None, id="a blank business id is no business id"),
    ],
)
def test_business_ids(business_id: str | None, country: str | None, expected: str | None) -> None:
    assert customer_for_accounting(customer(business_id=business_id, country=country)).business_id == expected


@pytest.mark.parametrize(
    ("business_id", "country", "text"),
    [
        pytest.param("2000001-7", "FI", "2000001-6 would be valid", id="a wrong check digit"),
        pytest.param(
            "1234567", "FI", "not a Finnish business id", id="a business id without its check digit"
        ),
        pytest.param("0000006-0", "FI", "no id starts 0000006", id="remainder 1 is never issued"),
        pytest.param("SE556677889901", "FI", "not a Finnish business id", id="a Swedish number for a Finn"),
        pytest.param("2000001-7", None, "2000001-6 would be valid", id="a bad id without a country"),
    ],
)
def test_invalid_finnish_business_ids_are_refused(business_id: str, country: str | None, text: str) -> None:
    error = refusal(customer(business_id=business_id, country=country))
    assert error.field == "customer.business_id"
    assert error.reason == "invalid_business_id"
    assert text in error.message
    assert error.message.startswith("Severa customer 1001 (Acme Oy): VatNumber ")


@pytest.mark.parametrize(
    ("country", "country_name", "expected"),
    [
        pytest.param("SE", "Sweden", "SE", id="the head office's code"),
        pytest.param(None, "Suomi", "FI", id="Finland by name"),
        pytest.param(None, "de", "DE", id="a code in the name field"),
        pytest.param(None, None, None, id="no country"),
    ],
)
def test_countries_come_from_the_head_office(
    country: str | None, country_name: str | None, expected: str | None
) -> None:
    result = customer_for_accounting(customer(country=country, country_name=country_name, business_id=None))
    assert result.address is not None
    assert result.address.country_code == expected


def test_a_foreign_country_without_its_code_is_refused() -> None:
    error = refusal(customer(country=None, country_name="Sverige"))
    assert error.field == "customer.head_office_address.country_code"
    assert error.reason == "invalid_country"
    assert "the country 'Sverige' has no ISO code" in error.message


def test_a_customer_without_a_head_office_has_no_address() -> None:
    assert customer_for_accounting(customer(address=False)).address is None


def test_an_empty_head_office_is_no_address() -> None:
    result = customer_for_accounting(customer(head_office_address=PostalAddress(), business_id=None))
    assert result.address is None


def test_more_address_lines_and_a_region_join_the_additional_line() -> None:
    address = PostalAddress(
        lines=("1 Main Street", "Suite 100", "Building B"), city="Springfield", region="IL", country_code="US"
    )
    result = customer_for_accounting(customer(head_office_address=address, business_id=None))
    assert result.address == AccountingAddress(
        street="1 Main Street",
        additional_line="Suite 100, Building B, IL",
        postal_code=None,
        city="Springfield",
        country_code="US",
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("fi", "FI", id="Finnish"),
        pytest.param("fi-FI", "FI", id="a Finnish culture"),
        pytest.param("sv", "SV", id="Swedish"),
        pytest.param("sv-FI", "SV", id="Finland-Swedish"),
        pytest.param("en-GB", "EN", id="British English"),
        pytest.param("en_US", "EN", id="an underscore culture"),
        pytest.param("EN", "EN", id="upper case"),
        pytest.param("swe", "SV", id="a three-letter code"),
        pytest.param("de-DE", None, id="German is not an invoicing language: none, no error"),
        pytest.param(None, None, id="no language"),
    ],
)
def test_invoicing_languages(code: str | None, expected: str | None) -> None:
    assert invoicing_language(code) == expected
    assert customer_for_accounting(customer(language_code=code)).language == expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        pytest.param("0037 2129 1126", "003721291126", id="an operator id is compacted"),
        pytest.param("ndeafihh", "NDEAFIHH", id="a BIC is upper-cased"),
        pytest.param(" Maventa ", "Maventa", id="an operator name is kept as written"),
        pytest.param(None, None, id="no operator"),
    ],
)
def test_e_invoice_operators(operator: str | None, expected: str | None) -> None:
    e_invoice = EInvoiceAddress(address="fi21 1234 5600 0007 85", operator=operator)
    result = customer_for_accounting(customer(e_invoice=e_invoice))
    assert result.e_invoice_address == "FI2112345600000785"
    assert result.e_invoice_operator == expected


def test_no_e_invoice_address_means_no_operator_either() -> None:
    result = customer_for_accounting(customer(e_invoice=None))
    assert (result.e_invoice_address, result.e_invoice_operator) == (None, None)


def test_an_inactive_customer_is_sent_inactive() -> None:
    assert not customer_for_accounting(customer(is_active=False)).is_active


def test_a_customer_without_a_number_is_refused() -> None:
    error = refusal(customer(number=None))
    assert error.field == "customer.number"
    assert error.reason == "customer_without_number"
    assert error.message == (
        f"Severa customer 'Acme Oy' ({GUID}): the customer has no customer number, so accounting cannot "
        "key it; give the customer a number in Severa and replay"
    )


def test_a_customer_number_has_no_leading_zero() -> None:
    assert customer_for_accounting(customer(number=42)).code == "42"


def test_a_name_is_sent_without_surrounding_blanks() -> None:
    assert customer_for_accounting(customer(name="  Acme Oy ")).name == "Acme Oy"


def test_a_blank_name_is_refused() -> None:
    error = refusal(customer(name="   "))
    assert error.field == "customer.name"
