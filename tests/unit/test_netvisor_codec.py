"""Netvisor's wire format: request XML in the order tables' order, query strings, defensive parsing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import pytest
from lxml import etree

from adapters.netvisor.codec import (
    CUSTOMER_ORDER,
    MATCH_CREDIT_NOTE_ORDER,
    SALES_INVOICE_ORDER,
    MalformedAnswer,
    customer_xml,
    format_amount,
    invoice_state,
    match_credit_note_xml,
    parse_answer,
    parse_customer_list,
    parse_date,
    parse_decimal,
    parse_inserted_key,
    parse_sales_invoice_list,
    parse_sales_payment_list,
    resource_url,
    sales_invoice_xml,
)
from connector.errors import UnmappableRecord
from connector.ports import (
    AccountingAddress,
    AccountingCustomer,
    AccountingInvoice,
    AccountingInvoiceLine,
    AccountingInvoiceState,
    VatTreatment,
)

CUSTOMER = AccountingCustomer(
    code="1042",
    name="Oy Esimerkki & <Poika> Ab",
    business_id="1234567-8",
    address=AccountingAddress(
        street="Mannerheimintie 1",
        additional_line="PL 12",
        postal_code="00100",
        city="Helsinki",
        country_code="fi",
    ),
    email="info@example.fi",
    invoicing_email="laskut@example.fi",
    e_invoice_address="003712345678",
    e_invoice_operator="E204503",
    language="SV",
    payment_term_days=14,
    is_active=True,
    is_private_person=False,
    source_reference="severa:4f0c",
)

LINE = AccountingInvoiceLine(
    product_code="CONSULT",
    name="Konsultointi",
    quantity=Decimal("7.5"),
    unit_price=Decimal("120.00"),
    vat_percent=Decimal("25.5"),
    vat_treatment=VatTreatment.DOMESTIC,
    net_sum=Decimal("900.00"),
    vat_sum=Decimal("229.50"),
    free_text="Maaliskuu",
    account_suggestion="3000",
)
INVOICE = AccountingInvoice(
    number="20250042",
    customer_code="1042",
    invoice_date=dt.date(2025, 3, 31),
    due_date=dt.date(2025, 4, 14),
    payment_term_days=14,
    reference_number="12345 67897",
    currency_code="eur",
    currency_rate=None,
    total_including_vat=Decimal("1129.50"),
    total_vat=Decimal("229.50"),
    lines=(LINE,),
    our_reference="Aino",
    your_reference="PO-77",
    source_reference="severa:9d1e",
)


def tags(element: etree._Element) -> list[str]:
    return [child.tag for child in element if isinstance(child.tag, str)]


def assert_follows_table(element: etree._Element, order: Mapping[str, tuple[str, ...]]) -> None:
    """Every element's children appear in the order its table lists them (recursively)."""
    children = tags(element)
    if not children:
        return
    allowed = order[element.tag]
    positions = [allowed.index(name) for name in children]
    assert positions == sorted(positions), f"<{element.tag}> children out of order: {children}"
    for child in element:
        assert_follows_table(child, order)


# -- building ------------------------------------------------------------------------------------


def test_a_customer_is_written_in_the_dtd_order() -> None:
    root = etree.fromstring(customer_xml(CUSTOMER))
    assert root.tag == "root"
    assert tags(root) == ["customer"]
    customer = root[0]
    assert tags(customer) == [
        "customerbaseinformation",
        "customerfinvoicedetails",
        "customeradditionalinformation",
    ]
    # Written out by hand from the DTD, not derived from the table: the table itself can be wrong.
    assert tags(customer[0]) == [
        "internalidentifier",
        "externalidentifier",
        "name",
        "streetaddress",
        "additionaladdressline",
        "city",
        "postnumber",
        "country",
        "email",
        "isactive",
        "isprivatecustomer",
        "emailinvoicingaddress",
    ]
    assert tags(customer[1]) == ["finvoiceaddress", "finvoiceroutercode"]
    assert tags(customer[2]) == ["comment", "invoicinglanguage"]
    assert_follows_table(root, CUSTOMER_ORDER)


def test_customer_values_are_escaped_and_typed() -> None:
    body = customer_xml(CUSTOMER)
    assert b"Oy Esimerkki &amp; &lt;Poika&gt; Ab" in body
    assert not body.startswith(b"<?xml")
    base = etree.fromstring(body).find("customer/customerbaseinformation")
    assert base is not None
    assert base.findtext("name") == "Oy Esimerkki & <Poika> Ab"
    country = base.find("country")
    assert country is not None
    assert (country.text, country.get("type")) == ("FI", "ISO-3166")
    assert (base.findtext("isactive"), base.findtext("isprivatecustomer")) == ("1", "0")
    language = etree.fromstring(body).find("customer/customeradditionalinformation/invoicinglanguage")
    assert language is not None
    assert language.text == "SE"  # Netvisor's code for Swedish


def test_a_minimal_customer_leaves_unknown_details_out_rather_than_empty() -> None:
    minimal = dataclasses.replace(
        CUSTOMER,
        business_id=None,
        address=None,
        email=None,
        invoicing_email=None,
        e_invoice_address=None,
        e_invoice_operator=None,
        language=None,
        source_reference=None,
    )
    root = etree.fromstring(customer_xml(minimal))
    assert tags(root[0]) == ["customerbaseinformation"]
    assert tags(root[0][0]) == ["internalidentifier", "name", "isactive", "isprivatecustomer"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"name": "  "}, "customer.name", id="a customer without a name is refused"),
        pytest.param({"code": ""}, "customer.code", id="a customer without a code is refused"),
        pytest.param({"language": "DE"}, "customer.language", id="a language Netvisor cannot invoice in"),
        pytest.param({"email": "a\x00b@example.fi"}, "customer.email", id="a control character"),
    ],
)
def test_unmappable_customers_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(UnmappableRecord) as info:
        customer_xml(dataclasses.replace(CUSTOMER, **change))  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_sales_invoice_is_written_in_the_dtd_order() -> None:
    root = etree.fromstring(sales_invoice_xml(INVOICE))
    header = root.find("salesinvoice")
    assert header is not None
    assert tags(header) == [
        "salesinvoicenumber",
        "salesinvoicedate",
        "salesinvoiceduedate",
        "salesinvoicereferencenumber",
        "salesinvoiceamount",
        "salesinvoicestatus",
        "salesinvoiceourreference",
        "salesinvoiceyourreference",
        "salesinvoiceprivatecomment",
        "invoicingcustomeridentifier",
        "paymenttermnetdays",
        "invoicelines",
    ]
    line = header.find("invoicelines/invoiceline/salesinvoiceproductline")
    assert line is not None
    assert tags(line) == [
        "productidentifier",
        "productname",
        "productunitprice",
        "productvatpercentage",
        "salesinvoiceproductlinequantity",
        "salesinvoiceproductlinefreetext",
        "salesinvoiceproductlinevatsum",
        "salesinvoiceproductlinesum",
        "accountingaccountsuggestion",
    ]
    assert_follows_table(root, SALES_INVOICE_ORDER)


def test_sales_invoice_values_attributes_and_decimals() -> None:
    header = etree.fromstring(sales_invoice_xml(INVOICE)).find("salesinvoice")
    assert header is not None

    def element(path: str) -> etree._Element:
        found = header.find(path)
        assert found is not None, path
        return found

    assert element("salesinvoicenumber").text == "20250042"
    assert (element("salesinvoicedate").text, element("salesinvoicedate").get("format")) == (
        "2025-03-31",
        "ansi",
    )
    assert element("salesinvoiceduedate").text == "2025-04-14"
    assert element("salesinvoicereferencenumber").text == "1234567897"  # grouping spaces removed
    amount = element("salesinvoiceamount")
    assert (amount.text, dict(amount.items())) == ("1129.50", {"iso4217currencycode": "EUR"})
    assert (element("salesinvoicestatus").text, element("salesinvoicestatus").get("type")) == (
        "open",
        "netvisor",
    )
    customer = element("invoicingcustomeridentifier")
    assert (customer.text, customer.get("type")) == ("1042", "customer")
    assert element("salesinvoiceprivatecomment").text == "severa:9d1e"
    assert element("paymenttermnetdays").text == "14"
    line = element("invoicelines/invoiceline/salesinvoiceproductline")
    assert (line.findtext("productidentifier"), line.find("productidentifier").get("type")) == (  # type: ignore[union-attr]
        "CONSULT",
        "customer",
    )
    price = line.find("productunitprice")
    vat = line.find("productvatpercentage")
    assert price is not None
    assert vat is not None
    assert (price.text, price.get("type")) == ("120.00", "net")
    assert (vat.text, vat.get("vatcode")) == ("25.5", "KOMY")
    assert line.findtext("salesinvoiceproductlinequantity") == "7.5"
    assert line.findtext("salesinvoiceproductlinevatsum") == "229.50"
    # The line sum includes VAT (Netvisor's own answers: VatSum 3,04 + net 13,80 = Sum 16,84).
    assert line.findtext("salesinvoiceproductlinesum") == "1129.50"


def test_a_foreign_currency_invoice_carries_its_rate() -> None:
    invoice = dataclasses.replace(INVOICE, currency_code="SEK", currency_rate=Decimal("11.4321"))
    amount = etree.fromstring(sales_invoice_xml(invoice)).find("salesinvoice/salesinvoiceamount")
    assert amount is not None
    assert dict(amount.items()) == {"iso4217currencycode": "SEK", "currencyrate": "11.4321"}


def test_a_credit_note_keeps_its_signs() -> None:
    credit = dataclasses.replace(
        INVOICE,
        number="20250043",
        total_including_vat=Decimal("-1129.50"),
        total_vat=Decimal("-229.50"),
        lines=(
            dataclasses.replace(
                LINE, quantity=Decimal("-7.5"), net_sum=Decimal("-900.00"), vat_sum=Decimal("-229.50")
            ),
        ),
    )
    header = etree.fromstring(sales_invoice_xml(credit)).find("salesinvoice")
    assert header is not None
    assert header.findtext("salesinvoiceamount") == "-1129.50"
    line = header.find("invoicelines/invoiceline/salesinvoiceproductline")
    assert line is not None
    assert line.findtext("productunitprice") == "120.00"
    assert line.findtext("salesinvoiceproductlinequantity") == "-7.5"
    assert line.findtext("salesinvoiceproductlinesum") == "-1129.50"


def test_net_days_that_disagree_with_the_due_date_are_not_sent() -> None:
    invoice = dataclasses.replace(INVOICE, payment_term_days=30)
    header = etree.fromstring(sales_invoice_xml(invoice)).find("salesinvoice")
    assert header is not None
    assert header.find("paymenttermnetdays") is None
    assert header.findtext("salesinvoiceduedate") == "2025-04-14"


def test_several_lines_keep_their_order() -> None:
    second = dataclasses.replace(LINE, name="Matkat", product_code="TRAVEL")
    invoice = dataclasses.replace(INVOICE, lines=(LINE, second, LINE))
    lines = etree.fromstring(sales_invoice_xml(invoice)).findall(
        "salesinvoice/invoicelines/invoiceline/salesinvoiceproductline"
    )
    assert [line.findtext("productname") for line in lines] == ["Konsultointi", "Matkat", "Konsultointi"]


def test_the_default_product_code_fills_a_missing_one() -> None:
    invoice = dataclasses.replace(INVOICE, lines=(dataclasses.replace(LINE, product_code=None),))
    with pytest.raises(UnmappableRecord) as info:
        sales_invoice_xml(invoice)
    assert info.value.field == "invoice.lines[0].product_code"
    assert "default_product_code" in info.value.message
    line = etree.fromstring(sales_invoice_xml(invoice, default_product_code="GENERIC")).find(
        "salesinvoice/invoicelines/invoiceline/salesinvoiceproductline"
    )
    assert line is not None
    assert line.findtext("productidentifier") == "GENERIC"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        pytest.param(
            dataclasses.replace(LINE, net_sum=Decimal("900.001")),
            "invoice.lines[0].net_sum + vat_sum",
            id="a sum not rounded to cents is refused, never rounded here",
        ),
        pytest.param(
            dataclasses.replace(LINE, vat_treatment=VatTreatment.EU_SERVICES),
            "invoice.lines[0].vat_percent",
            id="a zero-rated treatment with VAT on the row is a contradiction",
        ),
    ],
)
def test_unmappable_invoice_lines_name_the_field(line: AccountingInvoiceLine, field: str) -> None:
    with pytest.raises(UnmappableRecord) as info:
        sales_invoice_xml(dataclasses.replace(INVOICE, lines=(line,)))
    assert info.value.field == field


def test_an_invoice_without_rows_is_refused() -> None:
    with pytest.raises(UnmappableRecord):
        sales_invoice_xml(dataclasses.replace(INVOICE, lines=()))


def test_a_credit_note_match() -> None:
    root = etree.fromstring(match_credit_note_xml("1002", " 1001 "))
    assert tags(root) == ["matchcreditnote"]
    assert [(child.tag, child.text) for child in root[0]] == [
        ("creditnotenetvisorkey", "1002"),
        ("invoicenetvisorkey", "1001"),
    ]
    assert_follows_table(root, MATCH_CREDIT_NOTE_ORDER)


@pytest.mark.parametrize(
    ("value", "places", "expected"),
    [
        pytest.param(Decimal("1E+2"), None, "100", id="no exponent"),
        pytest.param(Decimal("-0.00"), Decimal("0.01"), "0.00", id="negative zero loses its sign"),
        pytest.param(Decimal("12.5"), Decimal("0.01"), "12.50", id="cents are written out"),
        pytest.param(Decimal("0.3333"), None, "0.3333", id="a unit price keeps its precision"),
    ],
)
def test_amounts_have_a_decimal_point(value: Decimal, places: Decimal | None, expected: str) -> None:
    assert format_amount(value, places=places) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param((), "https://nv.example/customerlist.nv", id="no query"),
        pytest.param(
            [("customercodelist", "1042")],
            "https://nv.example/customerlist.nv?customercodelist=1042",
            id="plain",
        ),
        pytest.param(
            [("keyword", "Oy Å & B+C/#?")],
            "https://nv.example/customerlist.nv?keyword=Oy%20%C3%85%20%26%20B%2BC%2F%23%3F",
            id="reserved characters and non-ASCII are percent-encoded once",
        ),
        pytest.param(
            [("lastmodifiedstart", "2025-03-01T10:00:00"), ("idlist", "1,2")],
            "https://nv.example/customerlist.nv?lastmodifiedstart=2025-03-01T10:00:00&idlist=1,2",
            id="colons and commas stay",
        ),
    ],
)
def test_resource_urls(query: list[tuple[str, str]], expected: str) -> None:
    assert resource_url("https://nv.example", "customerlist", query) == expected


# -- parsing -------------------------------------------------------------------------------------


def test_a_failure_has_two_status_siblings() -> None:
    answer = parse_answer(
        b"<Root><ResponseStatus><Status>FAILED</Status>"
        b"<Status>INVALID_DATA :: Data form incorrect:. Customer not found with Netvisor identifier: 123"
        b"</Status>"
        b"<TimeStamp>01.01.2018 12:00:00</TimeStamp></ResponseStatus></Root>"
    )
    assert not answer.status.ok
    assert answer.status.code == "INVALID_DATA"
    assert answer.status.text == "Data form incorrect:. Customer not found with Netvisor identifier: 123"


def test_an_ok_answer_in_any_casing() -> None:
    answer = parse_answer(b"<root><responsestatus><status>ok</status></responsestatus></root>")
    assert answer.status.ok


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        pytest.param(
            b"<Root><ResponseStatus><Status>FAILED</Status><Status>SYSTEM_MAINTANANCE</Status></ResponseStatus></Root>",
            "SYSTEM_MAINTANANCE",
            "",
            id="a bare code",
        ),
        pytest.param(
            b"<Root><ResponseStatus><Status>FAILED</Status><Status>something odd</Status>"
            b"</ResponseStatus></Root>",
            None,
            "something odd",
            id="text without a code",
        ),
        pytest.param(
            b"<Root><ResponseStatus><Status>FAILED</Status></ResponseStatus></Root>",
            None,
            "",
            id="no second status",
        ),
        pytest.param(
            b"<Root><ResponseStatus><Status>FAILED</Status>"
            b"<Status>period_lock::Kausi lukittu :: 2025</Status></ResponseStatus></Root>",
            "PERIOD_LOCK",
            "Kausi lukittu :: 2025",
            id="the first separator splits, the code is upper-cased",
        ),
    ],
)
def test_failure_shapes(body: bytes, code: str | None, text: str) -> None:
    status = parse_answer(body).status
    assert (status.ok, status.code, status.text) == (False, code, text)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(b"", "empty", id="an empty body"),
        pytest.param(b"<html><body>Bad gateway", "well-formed", id="not XML"),
        pytest.param(b"<Root><Other/></Root>", "ResponseStatus", id="no status block"),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE Root [<!ENTITY x "OK">]>'
            b"<Root><ResponseStatus><Status>&x;</Status></ResponseStatus></Root>",
            "DOCTYPE",
            id="an internal DTD is refused",
        ),
        pytest.param(
            b'<!DOCTYPE Root SYSTEM "http://evil.example/x.dtd">'
            b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus></Root>",
            "DOCTYPE",
            id="an external DTD is refused without being fetched",
        ),
        pytest.param(
            b'<!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Root><ResponseStatus><Status>&c;</Status>'
            b"</ResponseStatus></Root>",
            "DOCTYPE",
            id="entity expansion never happens",
        ),
    ],
)
def test_malformed_answers_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedAnswer, match=problem):
        parse_answer(body)


def test_an_iso_8859_15_answer_is_read() -> None:
    body = (
        '<?xml version="1.0" encoding="ISO-8859-15"?>'
        "<Root><ResponseStatus><Status>OK</Status></ResponseStatus>"
        "<Customerlist><Customer><Netvisorkey>7</Netvisorkey><Name>Äijälä €</Name><Code>1</Code></Customer>"
        "</Customerlist></Root>"
    ).encode("iso-8859-15")
    assert parse_customer_list(parse_answer(body))[0].name == "Äijälä €"
    # Without a declaration, the HTTP charset decides.
    undeclared = body.split(b"?>", 1)[1]
    assert parse_customer_list(parse_answer(undeclared, charset="ISO-8859-15"))[0].name == "Äijälä €"


def test_a_customer_list_with_the_quirky_casing() -> None:
    answer = parse_answer(
        b"<Root><ResponseStatus><Status>OK</Status><TimeStamp>01.01.2018 12:00:00</TimeStamp>"
        b"</ResponseStatus>"
        b"<Customerlist>"
        b"<Customer><Netvisorkey>165</Netvisorkey><Name>Matti</Name><Code>10</Code>"
        b"<OrganisationIdentifier>1234567-8</OrganisationIdentifier><CustomerGroupID/><Uri>u</Uri></Customer>"
        b"<Customer><NetvisorKey>166</NetvisorKey><Name>Maija</Name><Code>100</Code></Customer>"
        b"</Customerlist></Root>"
    )
    rows = parse_customer_list(answer)
    assert [(row.key, row.code, row.name, row.business_id) for row in rows] == [
        ("165", "10", "Matti", "1234567-8"),
        ("166", "100", "Maija", None),
    ]


def test_an_empty_list_may_omit_its_container() -> None:
    answer = parse_answer(b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus></Root>")
    assert parse_customer_list(answer) == []
    assert parse_sales_invoice_list(answer) == []


def test_a_sales_invoice_list_with_decimal_commas_and_dates() -> None:
    answer = parse_answer(
        b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus><SalesInvoiceList>"
        b"<SalesInvoice><NetvisorKey>165</NetvisorKey><InvoiceNumber>5</InvoiceNumber>"
        b'<Invoicedate format="ansi">2013-11-09</Invoicedate><InvoiceDueDate>23.11.2013</InvoiceDueDate>'
        b'<InvoiceStatus substatus="overdue">open</InvoiceStatus><CustomerCode>MM</CustomerCode>'
        b"<ReferenceNumber>1070</ReferenceNumber><InvoiceSum>1 123,45</InvoiceSum><OpenSum>45,67</OpenSum>"
        b"</SalesInvoice>"
        b"<SalesInvoice><NetvisorKey>166</NetvisorKey><InvoiceNumber>6</InvoiceNumber>"
        b"<InvoiceStatus>Paid</InvoiceStatus><InvoiceSum>-10,00</InvoiceSum><OpenSum>0</OpenSum></SalesInvoice>"
        b"</SalesInvoiceList></Root>"
    )
    first, second = parse_sales_invoice_list(answer)
    assert first.invoice_date == dt.date(2013, 11, 9)
    assert first.due_date == dt.date(2013, 11, 23)
    assert first.state is AccountingInvoiceState.OVERDUE
    assert (first.total, first.open_sum) == (Decimal("1123.45"), Decimal("45.67"))
    assert (first.customer_code, first.reference_number) == ("MM", "1070")
    assert second.state is AccountingInvoiceState.PAID
    assert second.total == Decimal("-10.00")


def test_a_payment_list() -> None:
    answer = parse_answer(
        b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus><SalesPaymentList><SalesPayment>"
        b"<NetvisorKey>165</NetvisorKey><Name>Matti</Name><Date>7.2.2014</Date><Sum>250</Sum>"
        b"<ReferenceNumber>1094</ReferenceNumber><ForeignCurrencyAmount/><InvoiceNumber>1</InvoiceNumber>"
        b"<BankStatus>OK</BankStatus></SalesPayment></SalesPaymentList></Root>"
    )
    (payment,) = parse_sales_payment_list(answer)
    assert (
        payment.key,
        payment.paid_on,
        payment.amount,
        payment.invoice_number,
        payment.reference_number,
    ) == (
        "165",
        dt.date(2014, 2, 7),
        Decimal("250"),
        "1",
        "1094",
    )


def test_an_unreadable_amount_is_a_malformed_answer() -> None:
    answer = parse_answer(
        b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus><SalesInvoiceList><SalesInvoice>"
        b"<NetvisorKey>1</NetvisorKey><InvoiceSum>12,3,4x</InvoiceSum></SalesInvoice></SalesInvoiceList></Root>"
    )
    with pytest.raises(MalformedAnswer, match="sales invoice list"):
        parse_sales_invoice_list(answer)


def test_the_inserted_key() -> None:
    answer = parse_answer(
        b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus>"
        b"<Replies><InsertedDataIdentifier>1802</InsertedDataIdentifier></Replies></Root>"
    )
    assert parse_inserted_key(answer) == "1802"
    with pytest.raises(MalformedAnswer):
        parse_inserted_key(parse_answer(b"<Root><ResponseStatus><Status>OK</Status></ResponseStatus></Root>"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("123,45", Decimal("123.45"), id="a decimal comma"),
        pytest.param("123.45", Decimal("123.45"), id="a decimal point"),
        pytest.param("-1 234,50", Decimal("-1234.50"), id="a thousands space"),
        pytest.param("1.234,50", Decimal("1234.50"), id="dots as thousands"),
        pytest.param("1,234.50", Decimal("1234.50"), id="commas as thousands"),
        pytest.param("0", Decimal("0"), id="zero"),
    ],
)
def test_decimals(text: str, expected: Decimal) -> None:
    assert parse_decimal(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "NaN", "Infinity", "1,2,3"])
def test_not_decimals(text: str) -> None:
    with pytest.raises(ValueError, match="amount"):
        parse_decimal(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2014-02-07", dt.date(2014, 2, 7), id="ansi"),
        pytest.param("7.2.2014", dt.date(2014, 2, 7), id="d.M.yyyy"),
        pytest.param("07.02.2014 12:00:00", dt.date(2014, 2, 7), id="a time stamp's date"),
        pytest.param("2014-02-07T12:00:00", dt.date(2014, 2, 7), id="an ISO time stamp's date"),
    ],
)
def test_dates(text: str, expected: dt.date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["2014/02/07", "31.2.2014", "yesterday"])
def test_not_dates(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the date library's or ours
        parse_date(text)


@pytest.mark.parametrize(
    ("status", "substatus", "expected"),
    [
        pytest.param("open", None, AccountingInvoiceState.OPEN, id="open"),
        pytest.param("open", "overdue", AccountingInvoiceState.OVERDUE, id="open but overdue"),
        pytest.param("reminded", None, AccountingInvoiceState.OPEN, id="reminded is still open"),
        pytest.param("PAID", None, AccountingInvoiceState.PAID, id="paid, in capitals"),
        pytest.param("unsent", None, AccountingInvoiceState.UNSENT, id="unsent"),
        pytest.param("creditloss", None, AccountingInvoiceState.CREDIT_LOSS, id="credit loss"),
        pytest.param("archived", None, AccountingInvoiceState.OTHER, id="anything else"),
        pytest.param(None, None, AccountingInvoiceState.OTHER, id="no status"),
    ],
)
def test_invoice_states(status: str | None, substatus: str | None, expected: AccountingInvoiceState) -> None:
    assert invoice_state(status, substatus) is expected
