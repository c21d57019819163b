"""The fake Netvisor's DTD tables and validator, from tables of bodies (no HTTP)."""

from __future__ import annotations

import pytest

from adapters.netvisor.fake import dtd
from adapters.netvisor.fake.errors import ErrorCode, NetvisorError, RefusalKind
from adapters.netvisor.fake.wire import parse_body

LINE = (
    "<invoiceline><salesinvoiceproductline>"
    '<productidentifier type="customer">DEV</productidentifier><productname>Dev</productname>'
    '<productunitprice type="net">10</productunitprice>'
    '<productvatpercentage vatcode="KOMY">25,5</productvatpercentage>'
    "<salesinvoiceproductlinequantity>1</salesinvoiceproductlinequantity>"
    "</salesinvoiceproductline></invoiceline>"
)


def invoice(header: str, lines: str = LINE) -> str:
    return f"<root><salesinvoice>{header}<invoicelines>{lines}</invoicelines></salesinvoice></root>"


MINIMAL_HEADER = (
    '<salesinvoicedate format="ansi">2025-06-01</salesinvoicedate><salesinvoiceamount/>'
    '<salesinvoicestatus type="netvisor">open</salesinvoicestatus>'
    '<invoicingcustomeridentifier type="customer">1</invoicingcustomeridentifier>'
    "<paymenttermnetdays>14</paymenttermnetdays>"
)


def check(schema: dtd.Node, body: str) -> None:
    dtd.validate(schema, parse_body(body.encode()))


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        pytest.param(
            dtd.CUSTOMER,
            "<root><customer><customerbaseinformation><name>A</name></customerbaseinformation></customer></root>",
            id="the smallest customer holds only a name",
        ),
        pytest.param(dtd.SALESINVOICE, invoice(MINIMAL_HEADER), id="the smallest invoice passes"),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(MINIMAL_HEADER.replace("<paymenttermnetdays>14</paymenttermnetdays>", ""))
            .replace(
                "<salesinvoiceamount/>",
                '<salesinvoiceduedate format="ansi">2025-06-15</salesinvoiceduedate>'
                '<salesinvoicedeliverydate format="ansi">2025-06-01</salesinvoicedeliverydate>'
                "<salesinvoicereferencenumber>1232</salesinvoicereferencenumber><salesinvoiceamount/>",
            )
            .replace("<salesinvoicedate", "<salesinvoicenumber>7</salesinvoicenumber><salesinvoicedate", 1),
            id="number, date, due date, delivery date, reference and amount in that order pass",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                MINIMAL_HEADER,
                LINE + "<invoiceline><salesinvoicecommentline><comment>c</comment></salesinvoicecommentline>"
                "</invoiceline>" + LINE,
            ),
            id="comment lines may come between product lines",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                MINIMAL_HEADER,
                LINE.replace(
                    "</salesinvoiceproductline>",
                    "<dimension><dimensionname>P</dimensionname><dimensionitem>X</dimensionitem></dimension>"
                    "<dimension><dimensionname>Q</dimensionname><dimensionitem>Y</dimensionitem></dimension>"
                    "</salesinvoiceproductline>",
                ),
            ),
            id="a repeatable dimension may repeat",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                MINIMAL_HEADER.replace(
                    "<salesinvoiceamount/>", "<salesinvoiceamount>12.50</salesinvoiceamount>"
                )
            ),
            id="an amount with a decimal point passes",
        ),
        pytest.param(
            dtd.MATCHCREDITNOTE,
            "<root><matchcreditnote><creditnotenetvisorkey>1</creditnotenetvisorkey>"
            "<invoicenetvisorkey>2</invoicenetvisorkey></matchcreditnote></root>",
            id="a credit-note match passes",
        ),
    ],
)
def test_valid_bodies_pass(schema: dtd.Node, body: str) -> None:
    check(schema, body)


@pytest.mark.parametrize(
    ("schema", "body", "kind", "words"),
    [
        pytest.param(
            dtd.CUSTOMER,
            "<rooty/>",
            RefusalKind.UNKNOWN_ELEMENT,
            "root",
            id="another root element is unknown",
        ),
        pytest.param(
            dtd.CUSTOMER,
            "<root><customer><customerbaseinformation><name>A<b/></name></customerbaseinformation></customer></root>",
            RefusalKind.UNKNOWN_ELEMENT,
            "cannot contain child element 'b'",
            id="a text element holding an element is refused",
        ),
        pytest.param(
            dtd.CUSTOMER,
            "<root>text<customer><customerbaseinformation><name>A</name></customerbaseinformation></customer></root>",
            RefusalKind.INVALID_VALUE,
            "cannot contain text",
            id="a container holding text is refused",
        ),
        pytest.param(
            dtd.CUSTOMER,
            "<root><customer><customerbaseinformation><name>A</name><isactive>yes</isactive>"
            "</customerbaseinformation></customer></root>",
            RefusalKind.INVALID_VALUE,
            "isactive",
            id="a flag other than 0 or 1 is refused",
        ),
        pytest.param(
            dtd.CUSTOMER,
            "<root><customer><customerbaseinformation><name>A</name><country>FI</country>"
            "</customerbaseinformation></customer></root>",
            RefusalKind.MANDATORY,
            "type",
            id="a country without its ISO-3166 type is refused",
        ),
        pytest.param(
            dtd.CUSTOMER,
            f"<root><customer><customerbaseinformation><name>{'x' * 251}</name>"
            "</customerbaseinformation></customer></root>",
            RefusalKind.INVALID_VALUE,
            "longer than 250",
            id="a name over the length limit is refused",
        ),
        pytest.param(
            dtd.CUSTOMER,
            "<root><customer><customerbaseinformation colour='red'><name>A</name></customerbaseinformation>"
            "</customer></root>",
            RefusalKind.INVALID_VALUE,
            "colour",
            id="an undeclared attribute is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(MINIMAL_HEADER.replace('type="customer"', 'type="email"')),
            RefusalKind.INVALID_VALUE,
            "email",
            id="an unknown customer identifier type is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(MINIMAL_HEADER, "<invoiceline/>"),
            RefusalKind.MANDATORY,
            "invoiceline",
            id="an empty invoice line is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                MINIMAL_HEADER,
                "<invoiceline>"
                + LINE.removeprefix("<invoiceline>").removesuffix("</invoiceline>")
                + "<salesinvoicecommentline><comment>c</comment></salesinvoicecommentline></invoiceline>",
            ),
            RefusalKind.ORDERING,
            "exactly one",
            id="an invoice line holding two lines is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(MINIMAL_HEADER, ""),
            RefusalKind.MANDATORY,
            "invoiceline",
            id="no invoice line at all is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                MINIMAL_HEADER,
                LINE.replace(
                    "</salesinvoiceproductlinequantity>",
                    "</salesinvoiceproductlinequantity><salesinvoiceproductlinevatsum>1</salesinvoiceproductlinevatsum>",
                ),
            ),
            RefusalKind.MANDATORY,
            "salesinvoiceproductlinesum",
            id="a VAT sum without the line sum is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(MINIMAL_HEADER.replace("2025-06-01", "2025-02-30")),
            RefusalKind.INVALID_VALUE,
            "2025-02-30",
            id="an impossible date is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                MINIMAL_HEADER.replace(
                    "<salesinvoiceamount/>", "<salesinvoiceamount>1 000,00</salesinvoiceamount>"
                )
            ),
            RefusalKind.INVALID_VALUE,
            "1 000,00",
            id="an amount with a thousands separator is refused",
        ),
        pytest.param(
            dtd.SALESINVOICE,
            invoice(
                "<salesinvoicenumber>INV-1</salesinvoicenumber>" + MINIMAL_HEADER,
            ),
            RefusalKind.INVALID_VALUE,
            "INV-1",
            id="an invoice number that is not digits is refused",
        ),
        pytest.param(
            dtd.MATCHCREDITNOTE,
            "<root><matchcreditnote><invoicenetvisorkey>2</invoicenetvisorkey></matchcreditnote></root>",
            RefusalKind.MANDATORY,
            "creditnotenetvisorkey",
            id="a match without its credit note is refused",
        ),
    ],
)
def test_invalid_bodies_are_refused_with_their_kind(
    schema: dtd.Node, body: str, kind: RefusalKind, words: str
) -> None:
    with pytest.raises(NetvisorError) as caught:
        check(schema, body)

    assert caught.value.code is ErrorCode.INVALID_DATA
    assert caught.value.refusal is kind
    assert words in caught.value.text
    assert caught.value.text.startswith("Data form incorrect:. ")


def test_a_missing_element_given_later_counts_as_ordering_not_as_missing() -> None:
    body = invoice(
        MINIMAL_HEADER.replace(
            '<salesinvoicestatus type="netvisor">open</salesinvoicestatus>'
            '<invoicingcustomeridentifier type="customer">1</invoicingcustomeridentifier>',
            '<invoicingcustomeridentifier type="customer">1</invoicingcustomeridentifier>'
            '<salesinvoicestatus type="netvisor">open</salesinvoicestatus>',
        )
    )

    with pytest.raises(NetvisorError) as caught:
        check(dtd.SALESINVOICE, body)

    assert caught.value.refusal is RefusalKind.ORDERING
    assert "'salesinvoicestatus' must come before 'invoicingcustomeridentifier'" in caught.value.text


def test_the_unknown_element_message_lists_what_may_come_next() -> None:
    body = invoice(
        MINIMAL_HEADER.replace("<salesinvoiceamount/>", "<salesinvoicetotal/><salesinvoiceamount/>")
    )

    with pytest.raises(NetvisorError) as caught:
        check(dtd.SALESINVOICE, body)

    assert "salesinvoicetotal" in caught.value.text
    assert "salesinvoiceduedate" in caught.value.text  # allowed after the date
    assert "salesinvoiceamount" in caught.value.text  # the next mandatory one ends the list


def test_the_documented_header_order_is_the_table_order() -> None:
    names = dtd.SALESINVOICE.child("salesinvoice").child_names()
    documented = [
        "salesinvoicenumber",
        "salesinvoicedate",
        "salesinvoiceduedate",
        "salesinvoicedeliverydate",
        "salesinvoicereferencenumber",
        "salesinvoiceamount",
        "salesinvoicestatus",
        "invoicingcustomeridentifier",
        "paymentterm",
        "paymenttermnetdays",
        "invoicelines",
    ]

    assert [name for name in names if name in documented] == documented


def test_the_customer_base_information_order_is_the_vendors() -> None:
    assert dtd.CUSTOMER.find("customer/customerbaseinformation").child_names() == (
        "internalidentifier",
        "externalidentifier",
        "organizationunitnumber",
        "name",
        "nameextension",
        "streetaddress",
        "additionaladdressline",
        "city",
        "postnumber",
        "country",
        "customergroupname",
        "phonenumber",
        "faxnumber",
        "email",
        "homepageuri",
        "isactive",
        "isprivatecustomer",
        "emailinvoicingaddress",
    )


def test_every_vat_code_of_the_notes_is_known() -> None:
    notes = "NONE KOOS EUOS EUUO EUPO 100 KOMY EUMY EUUM EUPM312 EUPM309 MUUL EVTO EVPO RAMY RAOS EVRO"

    assert frozenset(notes.split()) == dtd.VAT_CODES


def test_names_are_unique_among_siblings_in_every_table() -> None:
    def walk(node: dtd.Node) -> None:
        names = node.child_names()
        assert len(names) == len(set(names)), node.name
        for child in node.children:
            walk(child)

    for table in (dtd.CUSTOMER, dtd.SALESINVOICE, dtd.MATCHCREDITNOTE):
        walk(table)
