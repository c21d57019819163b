"""Netvisor's wire format: the resources, their query strings, request XML in the order Netvisor
enforces, and answers read defensively.

**Requests.** Netvisor validates request bodies against each resource's DTD, so element *order*
matters. Each resource has ONE order table below (:data:`CUSTOMER_ORDER`, :data:`SALES_INVOICE_ORDER`,
:data:`MATCH_CREDIT_NOTE_ORDER`): parent element → its children in the order the DTD wants them.
Builders collect the children they have in any order; :func:`_emit` writes them in the table's
order and refuses a child the table does not know, so the table is the only place order is decided.
Tables hold only what the builders can send; the comments above each name the DTD neighbours we
leave out and what is unverified. Names are lower case (Netvisor matches names case-insensitively
and its own examples use lower case). Amounts use a decimal point (accepted; responses use commas),
dates ``YYYY-MM-DD`` with ``format="ansi"``. An element is left out when its value is unknown: on an
edit Netvisor empties what is left out, which for an unknown value is the honest result, and an
empty *mandatory* element would be refused.

**Answers.** Parsed with a parser that resolves no entities, loads no DTD, reads nothing from the
network and refuses huge trees; a document with any DOCTYPE is refused outright (Netvisor never
sends one, and a DTD is how entity tricks travel). Names are matched case-insensitively
(``Netvisorkey``, ``Invoicedate``, ``SalesInvoiceReferencenumber`` are spelled that way by Netvisor),
amounts accept decimal commas, dates both ``YYYY-MM-DD`` and ``d.M.yyyy``. The size bound is applied
by the client while it reads (it never holds more than ``max_response_bytes``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Final, Literal
from urllib.parse import quote

from lxml import etree

from adapters.netvisor.vat import vat_code
from connector.errors import UnmappableRecord
from connector.ports import (
    AccountingCustomer,
    AccountingInvoice,
    AccountingInvoiceLine,
    AccountingInvoiceState,
)

# --------------------------------------------------------------------------------------------------
# Operations: what the client calls, named for metrics and messages
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One kind of request: ``label`` for metrics and messages, the ``resource`` (``<resource>.nv``),
    the HTTP method, and whether it can store something (``write``: its outcome matters if lost)."""

    label: str
    resource: str
    method: Literal["GET", "POST"]
    write: bool

    def __str__(self) -> str:
        return f"{self.resource}.nv ({self.label})"


class Ops:
    """Every request the adapter makes."""

    CUSTOMER_LIST: Final = Operation("customerlist", "customerlist", "GET", write=False)
    CUSTOMER_ADD: Final = Operation("customer.add", "customer", "POST", write=True)
    CUSTOMER_EDIT: Final = Operation("customer.edit", "customer", "POST", write=True)
    SALES_INVOICE_LIST: Final = Operation("salesinvoicelist", "salesinvoicelist", "GET", write=False)
    SALES_INVOICE_ADD: Final = Operation("salesinvoice.add", "salesinvoice", "POST", write=True)
    GET_SALES_INVOICE: Final = Operation("getsalesinvoice", "getsalesinvoice", "GET", write=False)
    MATCH_CREDIT_NOTE: Final = Operation("matchcreditnote", "matchcreditnote", "POST", write=True)
    SALES_PAYMENT_LIST: Final = Operation("salespaymentlist", "salespaymentlist", "GET", write=False)
    # The rights probes of adapters.netvisor.check: a POST without a method and with an empty
    # <root/>, which names no record and so cannot store anything.
    CUSTOMER_RIGHTS: Final = Operation("customer.rights", "customer", "POST", write=False)
    SALES_INVOICE_RIGHTS: Final = Operation("salesinvoice.rights", "salesinvoice", "POST", write=False)
    MATCH_CREDIT_NOTE_RIGHTS: Final = Operation(
        "matchcreditnote.rights", "matchcreditnote", "POST", write=False
    )


Query = Sequence[tuple[str, str]]

#: Characters left as they are in query values besides letters, digits and ``-._~``: ``:`` in
#: time stamps and ``,`` in id lists are legal in a query (RFC 3986) and read better in logs of
#: Netvisor's side. Everything else is percent-encoded once, here, and the URL is then sent and
#: signed exactly as built.
_QUERY_SAFE: Final = ":,"


def resource_url(root: str, resource: str, query: Query = ()) -> str:
    """``<root>/<resource>.nv?<query>``, each value percent-encoded exactly once."""
    url = f"{root}/{resource}.nv"
    if query:
        url += "?" + "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in query)
    return url


def format_timestamp_query(moment: dt.datetime) -> str:
    """``yyyy-MM-ddTHH:mm:ss`` as Netvisor's lastmodified / changedsince parameters take it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


# --------------------------------------------------------------------------------------------------
# Building requests
# --------------------------------------------------------------------------------------------------

#: customer.nv (method add / edit). Source: the resource's DTD as published with a public client
#: (root → customer → customerbaseinformation, customerfinvoicedetails?, customerdeliverydetails?,
#: customercontactdetails?, customeradditionalinformation?, [customerdimensiondetails?]), which a
#: second, newer client agrees with. We never send delivery, contact or dimension details.
#: customerbaseinformation's DTD neighbours we leave out: organizationunitnumber (after
#: externalidentifier), nameextension (after name), customergroupname, phonenumber, faxnumber
#: (after country), homepageuri (after email).
#: customeradditionalinformation: the two sources agree on comment, customeragreementidentifier,
#: customerreferencenumber, invoicinglanguage, …; we send only comment and invoicinglanguage.
#: defaultpaymentterm names a payment-term *record* (type netvisor|customer), not a number of
#: days, so a customer's payment term is not sent (every invoice carries its own due date).
CUSTOMER_ORDER: Final[Mapping[str, tuple[str, ...]]] = {
    "root": ("customer",),
    "customer": ("customerbaseinformation", "customerfinvoicedetails", "customeradditionalinformation"),
    "customerbaseinformation": (
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
    ),
    "customerfinvoicedetails": ("finvoiceaddress", "finvoiceroutercode"),
    "customeradditionalinformation": ("comment", "invoicinglanguage"),
}

#: salesinvoice.nv (method add). Source: the resource's DTD (salesinvoicenumber?, salesinvoicedate,
#: …, salesinvoicereferencenumber?, salesinvoiceamount, …, salesinvoicestatus, …,
#: salesinvoiceourreference?, salesinvoiceyourreference?, salesinvoiceprivatecomment?,
#: invoicingcustomeridentifier, …, paymenttermnetdays, …, invoicelines, …) and a newer public
#: client whose order is generated from the current DTD, which adds salesinvoiceduedate right after
#: salesinvoicedate (before salesinvoicevaluedate and salesinvoicedeliverydate; the older DTD has
#: no due date at all). Where salesinvoicedeliverydate sits relative to the due date is the one
#: point the sources disagree on; we never send a delivery date, so it does not matter here.
#: salesinvoiceprivatecomment precedes invoicingcustomeridentifier in every source.
#: Product lines: productidentifier, productname, productunitprice, [productunitpurchaseprice],
#: productvatpercentage, salesinvoiceproductlinequantity, [discountpercentage],
#: salesinvoiceproductlinefreetext, salesinvoiceproductlinevatsum, salesinvoiceproductlinesum,
#: accountingaccountsuggestion, [skipaccrual, dimension*] -- the same in both sources.
#: salesinvoiceproductlinesum is the line's sum *including* VAT: a getsalesinvoice answer published
#: with a public client shows 2 x 6,90 at 22 % as VatSum 3,04 and Sum 16,84 (= 13,80 + 3,04). So
#: net_sum + vat_sum is sent; both sums or neither, as the resource requires.
SALES_INVOICE_ORDER: Final[Mapping[str, tuple[str, ...]]] = {
    "root": ("salesinvoice",),
    "salesinvoice": (
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
    ),
    "invoicelines": ("invoiceline",),
    "invoiceline": ("salesinvoiceproductline",),
    "salesinvoiceproductline": (
        "productidentifier",
        "productname",
        "productunitprice",
        "productvatpercentage",
        "salesinvoiceproductlinequantity",
        "salesinvoiceproductlinefreetext",
        "salesinvoiceproductlinevatsum",
        "salesinvoiceproductlinesum",
        "accountingaccountsuggestion",
    ),
}

#: matchcreditnote.nv: root/matchcreditnote/(creditnotenetvisorkey, invoicenetvisorkey), as the
#: resource's documentation lists them.
MATCH_CREDIT_NOTE_ORDER: Final[Mapping[str, tuple[str, ...]]] = {
    "root": ("matchcreditnote",),
    "matchcreditnote": ("creditnotenetvisorkey", "invoicenetvisorkey"),
}

#: Netvisor's invoicing languages (``SE`` is its code for Swedish), by the port's ISO 639-1 code.
INVOICING_LANGUAGES: Final[Mapping[str, str]] = {"FI": "FI", "SV": "SE", "SE": "SE", "EN": "EN"}

# Characters XML 1.0 cannot carry at all (lxml refuses them too, with a less helpful message).
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CENT: Final = Decimal("0.01")


@dataclass(slots=True)
class _Node:
    name: str
    text: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[_Node] = field(default_factory=list)

    def add(self, name: str, text: str | None = None, **attrs: str) -> _Node:
        child = _Node(name, text, dict(attrs))
        self.children.append(child)
        return child

    def add_if(self, name: str, text: str | None, **attrs: str) -> None:
        """Add the element only when there is a value: an absent value is left out, never sent empty."""
        if text is not None and text != "":
            self.add(name, text, **attrs)


def _emit(node: _Node, order: Mapping[str, tuple[str, ...]]) -> etree._Element:
    element = etree.Element(node.name, node.attrs)
    if node.text is not None:
        element.text = node.text
    if node.children:
        allowed = order.get(node.name)
        if allowed is None:
            raise ValueError(f"the order table has no entry for <{node.name}>")
        position = {name: index for index, name in enumerate(allowed)}
        unknown = [child.name for child in node.children if child.name not in position]
        if unknown:
            raise ValueError(f"<{node.name}> may not contain {unknown} by the order table")
        # sorted() is stable: repeated elements (invoiceline) keep the order they were added in.
        for child in sorted(node.children, key=lambda child: position[child.name]):
            element.append(_emit(child, order))
    return element


def _serialise(root: _Node, order: Mapping[str, tuple[str, ...]]) -> bytes:
    return etree.tostring(_emit(root, order), encoding="UTF-8", xml_declaration=False)


def _text(value: str | None, field_name: str) -> str | None:
    """A value from a record as element text: stripped, ``None`` if blank, refused if XML cannot hold it."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _NOT_XML.search(value):
        raise UnmappableRecord(
            f"The {field_name} contains a control character XML cannot carry: remove it in Severa, "
            "then replay.",
            field=field_name,
        )
    return value


def format_amount(value: Decimal, *, places: Decimal | None = None) -> str:
    """A decimal with a point and no exponent (``1E+2`` → ``100``); ``-0`` becomes ``0``.

    With ``places`` the value must already be exact to it (a sum the mapping rounded): it is written
    with that many decimals, never rounded here, so a sum that does not add up is not hidden.
    """
    if places is not None:
        quantised = value.quantize(places)
        if quantised != value:
            raise ValueError(f"{value} has more decimals than {places}")
        value = quantised
    if value == 0:
        value = abs(value)
    return format(value, "f")


def format_date(day: dt.date) -> str:
    return day.isoformat()


def _flag(value: bool) -> str:
    return "1" if value else "0"


def customer_xml(customer: AccountingCustomer) -> bytes:
    """The body of ``customer.nv?method=add|edit``: every detail of ``customer``.

    On an edit Netvisor empties what the body leaves out, so this always describes the whole record.
    """
    root = _Node("root")
    record = root.add("customer")
    base = record.add("customerbaseinformation")
    code = _text(customer.code, "customer.code")
    name = _text(customer.name, "customer.name")
    if code is None:
        raise UnmappableRecord(
            "The customer has no customer code: set its number in Severa.", field="customer.code"
        )
    if name is None:
        raise UnmappableRecord("The customer has no name: set it in Severa.", field="customer.name")
    base.add("internalidentifier", code)
    base.add_if("externalidentifier", _text(customer.business_id, "customer.business_id"))
    base.add("name", name)
    address = customer.address
    if address is not None:
        base.add_if("streetaddress", _text(address.street, "customer.address.street"))
        base.add_if(
            "additionaladdressline", _text(address.additional_line, "customer.address.additional_line")
        )
        base.add_if("city", _text(address.city, "customer.address.city"))
        base.add_if("postnumber", _text(address.postal_code, "customer.address.postal_code"))
        country = _text(address.country_code, "customer.address.country_code")
        if country is not None:
            base.add("country", country.upper(), type="ISO-3166")
    base.add_if("email", _text(customer.email, "customer.email"))
    base.add("isactive", _flag(customer.is_active))
    base.add("isprivatecustomer", _flag(customer.is_private_person))
    base.add_if("emailinvoicingaddress", _text(customer.invoicing_email, "customer.invoicing_email"))

    e_invoice = _text(customer.e_invoice_address, "customer.e_invoice_address")
    operator = _text(customer.e_invoice_operator, "customer.e_invoice_operator")
    if e_invoice is not None or operator is not None:
        finvoice = record.add("customerfinvoicedetails")
        finvoice.add_if("finvoiceaddress", e_invoice)
        finvoice.add_if("finvoiceroutercode", operator)

    comment = _text(customer.source_reference, "customer.source_reference")
    language = _text(customer.language, "customer.language")
    if comment is not None or language is not None:
        additional = record.add("customeradditionalinformation")
        additional.add_if("comment", comment)
        if language is not None:
            netvisor_language = INVOICING_LANGUAGES.get(language.upper())
            if netvisor_language is None:
                raise UnmappableRecord(
                    f"Netvisor invoices in Finnish, Swedish or English only, not {language!r}: set the "
                    "customer's invoicing language in Severa to FI, SV or EN.",
                    field="customer.language",
                )
            additional.add("invoicinglanguage", netvisor_language, type="ISO-3166")
    return _serialise(root, CUSTOMER_ORDER)


def sales_invoice_xml(invoice: AccountingInvoice, *, default_product_code: str | None = None) -> bytes:
    """The body of ``salesinvoice.nv?method=add`` for ``invoice`` (status ``open``: sent elsewhere).

    Line sums and VAT sums are sent explicitly (Netvisor would round its own), and the total is
    given, so what Netvisor books is exactly what Severa invoiced.
    """
    if not invoice.lines:
        raise UnmappableRecord("The invoice has no rows: Netvisor needs at least one.", field="invoice.lines")
    root = _Node("root")
    header = root.add("salesinvoice")
    number = _text(invoice.number, "invoice.number")
    customer_code = _text(invoice.customer_code, "invoice.customer_code")
    if number is None:
        raise UnmappableRecord(
            "The invoice has no number: Severa must number it first.", field="invoice.number"
        )
    if customer_code is None:
        raise UnmappableRecord("The invoice names no customer code.", field="invoice.customer_code")
    header.add("salesinvoicenumber", number)
    header.add("salesinvoicedate", format_date(invoice.invoice_date), format="ansi")
    header.add("salesinvoiceduedate", format_date(invoice.due_date), format="ansi")
    reference = _text(invoice.reference_number, "invoice.reference_number")
    if reference is not None:
        # Printed references are grouped in fives; Netvisor matches payments on the digits.
        header.add("salesinvoicereferencenumber", "".join(reference.split()))
    amount_attrs = {"iso4217currencycode": invoice.currency_code.strip().upper()}
    if invoice.currency_rate is not None:
        amount_attrs["currencyrate"] = format_amount(invoice.currency_rate)
    header.add(
        "salesinvoiceamount", _sum(invoice.total_including_vat, "invoice.total_including_vat"), **amount_attrs
    )
    header.add("salesinvoicestatus", "open", type="netvisor")
    header.add_if("salesinvoiceourreference", _text(invoice.our_reference, "invoice.our_reference"))
    header.add_if("salesinvoiceyourreference", _text(invoice.your_reference, "invoice.your_reference"))
    header.add_if("salesinvoiceprivatecomment", _text(invoice.source_reference, "invoice.source_reference"))
    header.add("invoicingcustomeridentifier", customer_code, type="customer")
    # Netvisor wants one of paymentterm, paymenttermnetdays and salesinvoiceduedate; which one wins
    # when two disagree is unverified, so the net days go along only when they agree with the due
    # date (the due date is what Severa printed on the invoice).
    days = invoice.payment_term_days
    if days is not None and invoice.invoice_date + dt.timedelta(days=days) == invoice.due_date:
        header.add("paymenttermnetdays", str(days))
    lines = header.add("invoicelines")
    for index, line in enumerate(invoice.lines):
        _product_line(lines.add("invoiceline"), line, index, default_product_code)
    return _serialise(root, SALES_INVOICE_ORDER)


def _product_line(
    parent: _Node, line: AccountingInvoiceLine, index: int, default_product_code: str | None
) -> None:
    where = f"invoice.lines[{index}]"
    row = parent.add("salesinvoiceproductline")
    product = _text(line.product_code, f"{where}.product_code") or default_product_code
    if product is None:
        raise UnmappableRecord(
            f"Row {index + 1} has no product code and no default is configured: Netvisor needs a product "
            "on every row. Set the product code on the Severa row (work type / product), or configure "
            "the Netvisor default_product_code, then replay.",
            field=f"{where}.product_code",
        )
    name = _text(line.name, f"{where}.name")
    if name is None:
        raise UnmappableRecord(f"Row {index + 1} has no description.", field=f"{where}.name")
    row.add("productidentifier", product, type="customer")
    row.add("productname", name)
    row.add("productunitprice", format_amount(line.unit_price), type="net")
    code = vat_code(line.vat_treatment, line.vat_percent, field=f"{where}.vat_percent")
    row.add("productvatpercentage", format_amount(line.vat_percent), vatcode=code)
    row.add("salesinvoiceproductlinequantity", format_amount(line.quantity))
    row.add_if("salesinvoiceproductlinefreetext", _text(line.free_text, f"{where}.free_text"))
    row.add("salesinvoiceproductlinevatsum", _sum(line.vat_sum, f"{where}.vat_sum"))
    # The line's sum *including* VAT (see SALES_INVOICE_ORDER).
    row.add("salesinvoiceproductlinesum", _sum(line.net_sum + line.vat_sum, f"{where}.net_sum + vat_sum"))
    row.add_if("accountingaccountsuggestion", _text(line.account_suggestion, f"{where}.account_suggestion"))


def _sum(value: Decimal, field_name: str) -> str:
    try:
        return format_amount(value, places=_CENT)
    except ValueError:
        raise UnmappableRecord(
            f"The {field_name} {value} is not rounded to cents: the mapping must round sums to 2 decimals.",
            field=field_name,
        ) from None


def match_credit_note_xml(credit_note_key: str, invoice_key: str) -> bytes:
    """The body of ``matchcreditnote.nv``."""
    root = _Node("root")
    match = root.add("matchcreditnote")
    match.add("creditnotenetvisorkey", credit_note_key.strip())
    match.add("invoicenetvisorkey", invoice_key.strip())
    return _serialise(root, MATCH_CREDIT_NOTE_ORDER)


def empty_root_xml() -> bytes:
    """``<root/>``: the body of a rights probe, naming no record."""
    return _serialise(_Node("root"), {})


# --------------------------------------------------------------------------------------------------
# Reading answers
# --------------------------------------------------------------------------------------------------


class MalformedAnswer(ValueError):
    """The body is not a Netvisor answer we can read (not XML, a DOCTYPE, a missing status, …)."""


@dataclass(frozen=True, slots=True)
class ResponseStatus:
    """``ResponseStatus``: ``OK``, or ``FAILED`` plus ``CODE :: human text`` in a second Status."""

    ok: bool
    code: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    root: etree._Element
    status: ResponseStatus


_XML_DECLARATION: Final = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml\s", re.IGNORECASE)
_CODE: Final = re.compile(r"^[A-Z][A-Z_]+$")


def _parser() -> etree.XMLParser:
    # A parser per document: lxml parsers keep state (error log) and are not safe to share
    # across threads; building one costs microseconds.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_answer(body: bytes, *, charset: str | None = None) -> Answer:
    """The document and its status; :class:`MalformedAnswer` for anything that is not a readable answer.

    ``charset`` (the HTTP Content-Type's) decodes a body without an XML declaration; a declaration,
    when present, is what counts (ISO-8859-15 is Netvisor's documented encoding, UTF-8 common).
    """
    if not body.strip():
        raise MalformedAnswer("an empty body")
    try:
        if (
            charset
            and not _XML_DECLARATION.match(body)
            and charset.lower().replace("_", "-") not in ("utf-8", "utf8")
        ):
            root = etree.fromstring(body.decode(charset), _parser())
        else:
            root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, LookupError, UnicodeDecodeError) as exc:
        raise MalformedAnswer(f"not well-formed XML ({exc})") from None
    docinfo = root.getroottree().docinfo
    # lxml-stubs lack ``doctype`` and ``system_url``; both are real DocInfo attributes.
    doctype: str = getattr(docinfo, "doctype", "") or ""
    system_url: str | None = getattr(docinfo, "system_url", None)
    if doctype or system_url or docinfo.public_id or docinfo.internalDTD is not None:
        raise MalformedAnswer("a document with a DOCTYPE (refused: Netvisor never sends one)")
    return Answer(root=root, status=_status(root))


def _status(root: etree._Element) -> ResponseStatus:
    block = child(root, "responsestatus")
    if block is None:
        raise MalformedAnswer(f"no ResponseStatus under <{local_name(root)}>")
    texts = [(element.text or "").strip() for element in children(block, "status")]
    if not texts:
        raise MalformedAnswer("a ResponseStatus without Status")
    if texts[0].upper() == "OK":
        return ResponseStatus(ok=True, code=None, text="")
    code: str | None = None
    text = ""
    for detail in texts[1:]:
        head, separator, tail = detail.partition("::")
        if separator:
            code, text = head.strip().upper() or None, tail.strip()
        elif _CODE.match(detail.strip()):
            code = detail.strip()
        else:
            text = detail
        break
    if code is None and texts[0].upper() not in ("FAILED", "FAIL", "ERROR"):
        # Not OK and not FAILED: an answer we do not understand; keep what it said.
        text = text or texts[0]
    return ResponseStatus(ok=False, code=code, text=text)


# -- case-insensitive navigation ------------------------------------------------------------------


def local_name(element: etree._Element) -> str:
    tag: object = element.tag
    if not isinstance(tag, str):  # comments and processing instructions (the parser drops them)
        return ""
    return etree.QName(tag).localname.lower()


def children(element: etree._Element, name: str) -> Iterator[etree._Element]:
    """The child elements named ``name`` (compared in lower case)."""
    for item in element:
        if local_name(item) == name:
            yield item


def child(element: etree._Element, *names: str) -> etree._Element | None:
    """The first child named any of ``names`` (alternatives cover Netvisor's variant spellings)."""
    for item in element:
        if local_name(item) in names:
            return item
    return None


def text_of(element: etree._Element, *names: str) -> str | None:
    """The stripped text of the first such child; ``None`` when absent or empty."""
    found = child(element, *names)
    if found is None:
        return None
    text = (found.text or "").strip()
    return text or None


def parse_decimal(text: str) -> Decimal:
    """``123,45``, ``123.45``, ``-1 234,50``; where both separators occur, the last one is decimal."""
    cleaned = re.sub(r"[\s\u00a0\u202f]", "", text)
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    else:
        cleaned = cleaned.replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    return value


_DMY: Final = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_YMD: Final = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_date(text: str) -> dt.date:
    """``2014-02-07`` (ansi) or ``7.2.2014`` (d.M.yyyy); a time after the date is ignored."""
    day = text.strip().replace("T", " ").split(" ", 1)[0]
    if match := _YMD.match(day):
        year, month, dom = (int(part) for part in match.groups())
    elif match := _DMY.match(day):
        dom, month, year = (int(part) for part in match.groups())
    else:
        raise ValueError(f"not a date: {text!r}")
    return dt.date(year, month, dom)


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One ``Customerlist/Customer``."""

    key: str
    code: str | None
    name: str | None
    business_id: str | None


@dataclass(frozen=True, slots=True)
class SalesInvoiceRow:
    """One ``SalesInvoiceList/SalesInvoice``."""

    key: str
    number: str | None
    invoice_date: dt.date | None
    due_date: dt.date | None
    state: AccountingInvoiceState
    customer_code: str | None
    reference_number: str | None
    total: Decimal | None
    open_sum: Decimal | None


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """One ``SalesPayment`` of ``salespaymentlist.nv``."""

    key: str
    paid_on: dt.date | None
    amount: Decimal | None
    reference_number: str | None
    invoice_number: str | None


def _records(answer: Answer, container: str, item: str) -> Iterable[etree._Element]:
    """The ``item`` elements inside ``container`` (no container: none), or directly under the root."""
    holder = child(answer.root, container)
    if holder is not None:
        return list(children(holder, item))
    return list(children(answer.root, item))


def _required_key(record: etree._Element, what: str) -> str:
    key = text_of(record, "netvisorkey")
    if key is None:
        raise MalformedAnswer(f"a {what} without NetvisorKey")
    return key


def _amount(text: str | None) -> Decimal | None:
    return None if text is None else parse_decimal(text)


def parse_customer_list(answer: Answer) -> list[CustomerRow]:
    rows = []
    try:
        for record in _records(answer, "customerlist", "customer"):
            rows.append(
                CustomerRow(
                    key=_required_key(record, "customer"),
                    code=text_of(record, "code"),
                    name=text_of(record, "name"),
                    business_id=text_of(record, "organisationidentifier", "organizationidentifier"),
                )
            )
    except ValueError as exc:
        raise MalformedAnswer(f"an unreadable customer list ({exc})") from None
    return rows


_STATES: Final[Mapping[str, AccountingInvoiceState]] = {
    "unsent": AccountingInvoiceState.UNSENT,
    "open": AccountingInvoiceState.OPEN,
    "overdue": AccountingInvoiceState.OVERDUE,
    "reminded": AccountingInvoiceState.OPEN,
    "requested": AccountingInvoiceState.OPEN,
    "collected": AccountingInvoiceState.OPEN,
    "paid": AccountingInvoiceState.PAID,
    "creditloss": AccountingInvoiceState.CREDIT_LOSS,
}


def invoice_state(status: str | None, substatus: str | None = None) -> AccountingInvoiceState:
    """Netvisor's InvoiceStatus (and its ``substatus`` attribute) in the port's words."""
    state = _STATES.get((status or "").strip().lower(), AccountingInvoiceState.OTHER)
    if state is AccountingInvoiceState.OPEN and (substatus or "").strip().lower() == "overdue":
        return AccountingInvoiceState.OVERDUE
    return state


def parse_sales_invoice_list(answer: Answer) -> list[SalesInvoiceRow]:
    rows = []
    try:
        for record in _records(answer, "salesinvoicelist", "salesinvoice"):
            status = child(record, "invoicestatus")
            invoice_date = text_of(record, "invoicedate")
            due_date = text_of(record, "invoiceduedate", "invcoiceduedate")
            rows.append(
                SalesInvoiceRow(
                    key=_required_key(record, "sales invoice"),
                    number=text_of(record, "invoicenumber"),
                    invoice_date=parse_date(invoice_date) if invoice_date else None,
                    due_date=parse_date(due_date) if due_date else None,
                    state=invoice_state(
                        (status.text or "") if status is not None else None,
                        status.get("substatus") if status is not None else None,
                    ),
                    customer_code=text_of(record, "customercode"),
                    reference_number=text_of(record, "referencenumber"),
                    total=_amount(text_of(record, "invoicesum")),
                    open_sum=_amount(text_of(record, "opensum")),
                )
            )
    except ValueError as exc:
        raise MalformedAnswer(f"an unreadable sales invoice list ({exc})") from None
    return rows


def parse_sales_payment_list(answer: Answer) -> list[PaymentRow]:
    rows = []
    try:
        for record in _records(answer, "salespaymentlist", "salespayment"):
            paid_on = text_of(record, "date", "paymentdate")
            rows.append(
                PaymentRow(
                    key=_required_key(record, "sales payment"),
                    paid_on=parse_date(paid_on) if paid_on else None,
                    amount=_amount(text_of(record, "sum")),
                    reference_number=text_of(record, "referencenumber"),
                    invoice_number=text_of(record, "invoicenumber"),
                )
            )
    except ValueError as exc:
        raise MalformedAnswer(f"an unreadable sales payment list ({exc})") from None
    return rows


def parse_inserted_key(answer: Answer) -> str:
    """The NetvisorKey an add answered with (``Replies/InsertedDataIdentifier``)."""
    replies = child(answer.root, "replies")
    key = text_of(replies, "inserteddataidentifier") if replies is not None else None
    if key is None:
        key = text_of(answer.root, "inserteddataidentifier")
    if key is None:
        raise MalformedAnswer("an add answered OK without Replies/InsertedDataIdentifier")
    return key


def parse_sales_invoice_status(answer: Answer) -> str | None:
    """The status of the one invoice ``getsalesinvoice.nv?netvisorkey=`` answered (lower case), or
    ``None`` for the empty ``<SalesInvoice/>`` Netvisor answers an unknown key with.

    ``InvoiceStatus`` carries the detailed status in its ``status`` attribute and a display text
    as its content; the attribute is preferred.
    """
    invoice = child(answer.root, "salesinvoice")
    if invoice is None:
        return None
    status = child(invoice, "invoicestatus")
    if status is None:
        return None
    value = status.get("status") or status.get("Status") or (status.text or "")
    return value.strip().lower() or None
