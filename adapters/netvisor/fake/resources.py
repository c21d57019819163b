"""The ``.nv`` resources the fake serves: query parsing, body mapping, store calls, answer shapes.

==============================  ======  ========================================================
resource                        method  what
==============================  ======  ========================================================
``customerlist.nv``             GET     ``keyword`` (prefix of name, code or business id; case-
                                        insensitive; overrides ``changedsince``), ``changedsince``,
                                        ``customercodelist`` (≤ 100) → ``Customerlist/Customer*``
``getcustomer.nv``              GET     ``id`` or ``idlist`` (≤ 500); unknown → INVALID_DATA
``customer.nv``                 POST    ``method=add|edit`` (``&id=`` for edit); body per
                                        :data:`.dtd.CUSTOMER`; add answers ``InsertedDataIdentifier``
``salesinvoice.nv``             POST    ``method=add|edit``; body per :data:`.dtd.SALESINVOICE`
``salesinvoicelist.nv``         GET     ``invoicesabovenetvisorkey``, ``begininvoicedate``,
                                        ``endinvoicedate``, ``invoicenumber``, ``invoicestatus``,
                                        ``lastmodifiedstart``, ``lastmodifiedend``, ``customercode``,
                                        ``customernetvisorkey``; lowest key first, at most
                                        ``list_page_size``
``getsalesinvoice.nv``          GET     ``netvisorkey`` (unknown → OK with ``<SalesInvoice />``) or
                                        ``netvisorkeylist`` (≤ 500) → ``SalesInvoices/SalesInvoice*``
``updatesalesinvoicestatus.nv`` POST    query only: ``netvisorkey`` or ``netvisorkeylist`` (≤ 100),
                                        ``status``; a body is ignored
``salespaymentlist.nv``         GET     ``abovenetvisorkey``, ``begindate``, ``enddate``,
                                        ``lastmodifiedstart``, ``lastmodifiedend``,
                                        ``invoicenetvisorkey``, ``invoicenumber``
``matchcreditnote.nv``          POST    body per :data:`.dtd.MATCHCREDITNOTE`
==============================  ======  ========================================================

Query parameter names are matched case-insensitively (the service runs on ASP.NET, whose query
strings are); unknown parameters are ignored, as there. Date-time parameters take
``YYYY-MM-DD`` or ``YYYY-MM-DDThh:mm:ss`` in the company's local time (Europe/Helsinki; unverified:
our notes give no zone). ``replyoption`` and ``includemodifiedpayments`` are accepted and change
nothing: registering a payment already moves the invoice's last-modified time.

Answer element names keep the service's documented casing quirks: ``Customerlist``,
``Netvisorkey`` (customer list), ``Invoicedate`` (invoice list), ``SalesInvoiceReferencenumber``,
``productidentifier`` (getsalesinvoice) and ``AdditionalStreetAddress`` for the request's
``additionaladdressline``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from lxml import etree

from adapters.netvisor.fake import dtd
from adapters.netvisor.fake.errors import RefusalKind, invalid
from adapters.netvisor.fake.store import (
    OPEN_STATUSES,
    CommentLine,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    LineDraft,
    NetvisorStore,
    Payment,
)
from adapters.netvisor.fake.wire import amount, ansi, finnish_date, inserted, number, parse_decimal, sub

MAX_CUSTOMER_CODES: Final = 100
MAX_GET_KEYS: Final = 500
MAX_STATUS_KEYS: Final = 100
LIST_STATUSES: Final = frozenset({"open", "overdue", "paid", "unsent", "creditloss", "rejected"})


@dataclass(frozen=True, slots=True)
class Context:
    """One request as the handlers see it (query names lowered, body validated)."""

    store: NetvisorStore
    now: dt.datetime
    zone: dt.tzinfo
    base_url: str
    query: Mapping[str, str]
    body: etree._Element | None

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(self.zone).date()


Handler = Callable[[Context], list[etree._Element]]


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    method: str
    handler: Handler
    schema: dtd.Node | None = None
    """The body's DTD table; ``None``: the body is not read (GETs and query-only POSTs)."""
    writes: bool = False


# ---------------------------------------------------------------------------------- query values


def _key(text: str, name: str) -> int:
    if not text.strip().isdigit():
        raise invalid(f"Parameter '{name}' must be a NetvisorKey (digits), not '{text}'.")
    return int(text.strip())


def _keys(ctx: Context, single: str, many: str, limit: int) -> tuple[list[int], bool]:
    """Keys from ``single`` or a comma-separated ``many``; the flag says the list form was used."""
    if single in ctx.query:
        return [_key(ctx.query[single], single)], False
    if many in ctx.query:
        items = [item for item in ctx.query[many].split(",") if item.strip()]
        if not items:
            raise invalid(f"Parameter '{many}' is empty.")
        if len(items) > limit:
            raise invalid(f"Parameter '{many}' takes at most {limit} keys, not {len(items)}.")
        return [_key(item, many) for item in items], True
    raise invalid(f"Parameter '{single}' or '{many}' is required.")


def _date(ctx: Context, name: str) -> dt.date | None:
    text = ctx.query.get(name, "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise invalid(f"Parameter '{name}' must be a date YYYY-MM-DD, not '{text}'.") from None


def _moment(ctx: Context, name: str, *, end: bool = False) -> dt.datetime | None:
    """A local date-time parameter; a bare date as an end of range means the end of that day."""
    text = ctx.query.get(name, "").strip()
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"Parameter '{name}' must be YYYY-MM-DDThh:mm:ss, not '{text}'.") from None
    if end and len(text) == 10:
        moment += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    return moment.replace(tzinfo=ctx.zone) if moment.tzinfo is None else moment


def _in_range(moment: dt.datetime, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    return (start is None or moment >= start) and (end is None or moment <= end)


def _method(ctx: Context) -> str:
    method = ctx.query.get("method", "").strip().lower()
    if method not in ("add", "edit"):
        raise invalid("Parameter 'method' is missing or invalid: it must be 'add' or 'edit'.")
    return method


def _body(ctx: Context) -> etree._Element:
    if ctx.body is None:  # the server validates a body for every resource with a schema
        raise invalid("The request has no XML body.", RefusalKind.MALFORMED)
    return ctx.body


# ------------------------------------------------------------------------------------ customers

_CUSTOMER_ANSWER: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "customerbaseinformation": (
        ("internalidentifier", "InternalIdentifier"),
        ("externalidentifier", "ExternalIdentifier"),
        ("organizationunitnumber", "OrganizationUnitNumber"),
        ("name", "Name"),
        ("nameextension", "NameExtension"),
        ("streetaddress", "StreetAddress"),
        ("additionaladdressline", "AdditionalStreetAddress"),
        ("city", "City"),
        ("postnumber", "PostNumber"),
        ("country", "Country"),
        ("customergroupname", "CustomerGroupName"),
        ("phonenumber", "PhoneNumber"),
        ("faxnumber", "FaxNumber"),
        ("email", "Email"),
        ("homepageuri", "HomePageUri"),
        ("isactive", "IsActive"),
        ("isprivatecustomer", "IsPrivateCustomer"),
        ("emailinvoicingaddress", "EmailInvoicingAddress"),
    ),
    "customerfinvoicedetails": (
        ("finvoiceaddress", "FinvoiceAddress"),
        ("finvoiceroutercode", "FinvoiceRouterCode"),
    ),
    "customerdeliverydetails": (
        ("deliveryname", "DeliveryName"),
        ("deliverystreetaddress", "DeliveryStreetAddress"),
        ("deliverycity", "DeliveryCity"),
        ("deliverypostnumber", "DeliveryPostNumber"),
        ("deliverycountry", "DeliveryCountry"),
    ),
    "customercontactdetails": (
        ("contactname", "ContactName"),
        ("contactperson", "ContactPerson"),
        ("contactpersonemail", "ContactPersonEmail"),
        ("contactpersonphone", "ContactPersonPhone"),
    ),
    "customeradditionalinformation": (
        ("comment", "Comment"),
        ("customeragreementidentifier", "CustomerAgreementIdentifier"),
        ("customerreferencenumber", "CustomerReferenceNumber"),
        ("invoicinglanguage", "InvoicingLanguage"),
        ("invoiceprintchannelformat", "InvoicePrintChannelFormat"),
        ("yourdefaultreference", "YourDefaultReference"),
        ("defaulttextbeforeinvoicelines", "DefaultTextBeforeInvoiceLines"),
        ("defaulttextafterinvoicelines", "DefaultTextAfterInvoiceLines"),
        ("defaultpaymentterm", "DefaultPaymentTerm"),
        ("defaultsecondname", "DefaultSecondName"),
        ("paymentinterest", "PaymentInterest"),
        ("balancelimit", "BalanceLimit"),
    ),
}
_SECTION_ANSWER: Final = {
    "customerbaseinformation": "CustomerBaseInformation",
    "customerfinvoicedetails": "CustomerFinvoiceDetails",
    "customerdeliverydetails": "CustomerDeliveryDetails",
    "customercontactdetails": "CustomerContactDetails",
    "customeradditionalinformation": "CustomerAdditionalInformation",
}
_FLAG_DEFAULTS: Final = {"isactive": "1", "isprivatecustomer": "0"}
"""A blank flag reads as Netvisor's default (a customer is active, not private, unless told)."""


def customer_from_xml(body: etree._Element) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]], bool]:
    """(sections, dimensions, automatic code?) of a validated ``customer.nv`` body."""
    customer = body.find("customer")
    assert customer is not None  # validated
    sections: dict[str, dict[str, str]] = {}
    dimensions: list[tuple[str, str]] = []
    automatic = False
    for section in customer:
        if section.tag == "customerdimensiondetails":
            dimensions = [
                (_text(item.find("dimensionname")), _text(item.find("dimensionitem"))) for item in section
            ]
            continue
        sections[str(section.tag)] = {str(member.tag): _text(member) for member in section}
        identifier = section.find("internalidentifier")
        if identifier is not None and identifier.get("type", "").lower() == "automatic":
            automatic = True  # the next free number, whatever the element holds
    return sections, dimensions, automatic


def _text(element: etree._Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _render_customer(ctx: Context, customer: Customer) -> etree._Element:
    root = etree.Element("Customer")
    for section, members in _CUSTOMER_ANSWER.items():
        part = sub(root, _SECTION_ANSWER[section])
        if section == "customerbaseinformation":
            sub(part, "NetvisorKey", str(customer.netvisor_key))
        values = customer.sections[section]
        for member, tag in members:
            value = values[member] or _FLAG_DEFAULTS.get(member, "")
            if member in ("country", "deliverycountry"):
                sub(part, tag, value, type="ISO-3166")
            else:
                sub(part, tag, value)
    if customer.dimensions:
        details = sub(root, "CustomerDimensionDetails")
        for name, item in customer.dimensions:
            dimension = sub(details, "Dimension")
            sub(dimension, "DimensionName", name)
            sub(dimension, "DimensionItem", item)
    return root


def customer_list(ctx: Context) -> list[etree._Element]:
    customers = sorted(ctx.store.customers.values(), key=lambda c: c.netvisor_key)
    keyword = ctx.query.get("keyword", "").strip().lower()
    if keyword:
        customers = [
            c
            for c in customers
            if any(v.lower().startswith(keyword) for v in (c.name, c.code, c.business_id))
        ]
    else:
        since = _moment(ctx, "changedsince")
        if since is not None:
            customers = [c for c in customers if c.changed_at >= since]
    if "customercodelist" in ctx.query:
        codes = {code.strip() for code in ctx.query["customercodelist"].split(",") if code.strip()}
        if len(codes) > MAX_CUSTOMER_CODES:
            raise invalid(f"Parameter 'customercodelist' takes at most {MAX_CUSTOMER_CODES} codes.")
        customers = [c for c in customers if c.code in codes]
    listing = etree.Element("Customerlist")
    for customer in customers:
        item = sub(listing, "Customer")
        sub(item, "Netvisorkey", str(customer.netvisor_key))
        sub(item, "Name", customer.name)
        sub(item, "Code", customer.code)
        sub(item, "OrganisationIdentifier", customer.business_id)
        group = customer.base["customergroupname"]
        sub(item, "CustomerGroupID", ctx.store.group_id(group))
        sub(item, "CustomerGroupName", group)
        sub(item, "Uri", f"{ctx.base_url}/getcustomer.nv?id={customer.netvisor_key}")
    return [listing]


def get_customer(ctx: Context) -> list[etree._Element]:
    keys, as_list = _keys(ctx, "id", "idlist", MAX_GET_KEYS)
    customers = [ctx.store.customer(key) for key in keys]
    if not as_list:
        return [_render_customer(ctx, customers[0])]
    wrapper = etree.Element("Customers")
    for customer in customers:
        wrapper.append(_render_customer(ctx, customer))
    return [wrapper]


def customer_write(ctx: Context) -> list[etree._Element]:
    method = _method(ctx)
    sections, dimensions, automatic = customer_from_xml(_body(ctx))
    if method == "add":
        added = ctx.store.add_customer(sections, dimensions, now=ctx.now, automatic_code=automatic)
        return [inserted(added.netvisor_key)]
    if "id" not in ctx.query:
        raise invalid("Parameter 'id' is required to edit a customer.")
    ctx.store.edit_customer(
        _key(ctx.query["id"], "id"), sections, dimensions, now=ctx.now, automatic_code=automatic
    )
    return []


# ------------------------------------------------------------------------------------- invoices


def _decimal(element: etree._Element | None) -> Decimal | None:
    text = _text(element)
    return parse_decimal(text) if text else None


def _xml_date(element: etree._Element | None) -> dt.date | None:
    text = _text(element)
    return dt.date.fromisoformat(text) if text else None


def _line_from_xml(line: etree._Element) -> LineDraft:
    identifier = line.find("productidentifier")
    price = line.find("productunitprice")
    vat = line.find("productvatpercentage")
    assert identifier is not None  # validated
    assert price is not None
    assert vat is not None
    return LineDraft(
        product_identifier=_text(identifier),
        product_identifier_type=identifier.get("type", "").lower(),
        name=_text(line.find("productname")),
        unit_price=parse_decimal(_text(price)),
        price_type=price.get("type", "net").lower(),
        vat_percent=parse_decimal(_text(vat)),
        vat_code=vat.get("vatcode", "").upper(),
        quantity=parse_decimal(_text(line.find("salesinvoiceproductlinequantity"))),
        discount_percent=_decimal(line.find("salesinvoiceproductlinediscountpercentage")) or Decimal(0),
        free_text=_text(line.find("salesinvoiceproductlinefreetext")),
        vat_sum=_decimal(line.find("salesinvoiceproductlinevatsum")),
        sum=_decimal(line.find("salesinvoiceproductlinesum")),
        accounting_account=_text(line.find("accountingaccountsuggestion")),
        dimensions=tuple(
            (_text(item.find("dimensionname")), _text(item.find("dimensionitem")))
            for item in line.iter("dimension")
        ),
    )


def invoice_draft_from_xml(body: etree._Element) -> InvoiceDraft:
    """The draft of a validated ``salesinvoice.nv`` body."""
    invoice = body.find("salesinvoice")
    assert invoice is not None  # validated
    header = {str(child.tag): _text(child) for child in invoice if len(child) == 0}
    lines: list[LineDraft | CommentLine] = []
    for row in invoice.iterfind("invoicelines/invoiceline"):
        content = row[0]
        if content.tag == "salesinvoiceproductline":
            lines.append(_line_from_xml(content))
        else:
            lines.append(CommentLine(_text(content.find("comment"))))
    amount_element = invoice.find("salesinvoiceamount")
    customer = invoice.find("invoicingcustomeridentifier")
    date = _xml_date(invoice.find("salesinvoicedate"))
    assert amount_element is not None  # validated
    assert customer is not None
    assert date is not None
    rate = amount_element.get("currencyrate", "").strip()
    net_days = header.get("paymenttermnetdays", "")
    return InvoiceDraft(
        invoice_date=date,
        customer_identifier=_text(customer),
        customer_identifier_type=customer.get("type", "").lower(),
        lines=lines,
        status=header["salesinvoicestatus"].lower(),
        number=header.get("salesinvoicenumber") or None,
        due_date=_xml_date(invoice.find("salesinvoiceduedate")),
        payment_term_net_days=int(net_days) if net_days else None,
        payment_term=header.get("paymentterm") or None,
        delivery_date=_xml_date(invoice.find("salesinvoicedeliverydate")),
        reference_number=header.get("salesinvoicereferencenumber") or None,
        amount=_decimal(amount_element),
        currency=amount_element.get("iso4217currencycode", "EUR").strip() or "EUR",
        currency_rate=parse_decimal(rate) if rate else None,
        header=header,
    )


def sales_invoice_write(ctx: Context) -> list[etree._Element]:
    method = _method(ctx)
    draft = invoice_draft_from_xml(_body(ctx))
    if method == "add":
        return [inserted(ctx.store.add_invoice(draft, now=ctx.now).netvisor_key)]
    if "id" not in ctx.query:
        raise invalid("Parameter 'id' is required to edit a sales invoice.")
    ctx.store.edit_invoice(_key(ctx.query["id"], "id"), draft, now=ctx.now)
    return []


def _status_matches(invoice: Invoice, wanted: str, today: dt.date) -> bool:
    if wanted == "open":
        return invoice.status in OPEN_STATUSES
    if wanted == "overdue":
        return invoice.substatus(today) == "overdue"
    return invoice.status == wanted


def sales_invoice_list(ctx: Context) -> list[etree._Element]:
    invoices = sorted(ctx.store.invoices.values(), key=lambda i: i.netvisor_key)
    if "invoicesabovenetvisorkey" in ctx.query:
        above = _key(ctx.query["invoicesabovenetvisorkey"], "invoicesabovenetvisorkey")
        invoices = [i for i in invoices if i.netvisor_key > above]
    begin, end = _date(ctx, "begininvoicedate"), _date(ctx, "endinvoicedate")
    invoices = [
        i
        for i in invoices
        if (begin is None or i.invoice_date >= begin) and (end is None or i.invoice_date <= end)
    ]
    if ctx.query.get("invoicenumber", "").strip():
        invoices = [i for i in invoices if i.number == ctx.query["invoicenumber"].strip()]
    wanted = ctx.query.get("invoicestatus", "").strip().lower()
    if wanted:
        if wanted not in LIST_STATUSES:
            raise invalid(f"Parameter 'invoicestatus' must be one of {', '.join(sorted(LIST_STATUSES))}.")
        invoices = [i for i in invoices if _status_matches(i, wanted, ctx.today)]
    start, stop = _moment(ctx, "lastmodifiedstart"), _moment(ctx, "lastmodifiedend", end=True)
    invoices = [i for i in invoices if _in_range(i.changed_at, start, stop)]
    if ctx.query.get("customercode", "").strip():
        invoices = [i for i in invoices if i.customer_code == ctx.query["customercode"].strip()]
    if "customernetvisorkey" in ctx.query:
        customer_key = _key(ctx.query["customernetvisorkey"], "customernetvisorkey")
        invoices = [i for i in invoices if i.customer_key == customer_key]
    listing = etree.Element("SalesInvoiceList")
    for invoice in invoices[: ctx.store.behaviour.list_page_size]:
        item = sub(listing, "SalesInvoice")
        sub(item, "NetvisorKey", str(invoice.netvisor_key))
        sub(item, "InvoiceNumber", invoice.number)
        sub(item, "Invoicedate", ansi(invoice.invoice_date), format="ansi")
        sub(item, "InvoiceDueDate", ansi(invoice.due_date), format="ansi")
        sub(
            item,
            "InvoiceStatus",
            invoice.main_status(),
            substatus=invoice.substatus(ctx.today),
            isincollection="1" if invoice.status == "collected" else "0",
        )
        sub(item, "CustomerCode", invoice.customer_code)
        sub(item, "CustomerName", invoice.customer_name)
        sub(item, "ReferenceNumber", invoice.reference_number)
        sub(item, "InvoiceSum", amount(invoice.amount))
        sub(item, "OpenSum", amount(invoice.open_sum))
        sub(item, "Uri", f"{ctx.base_url}/getsalesinvoice.nv?netvisorkey={invoice.netvisor_key}")
    return [listing]


def _render_line(row: InvoiceLine | CommentLine) -> etree._Element:
    wrapper = etree.Element("InvoiceLine")
    if isinstance(row, CommentLine):
        comment = sub(wrapper, "SalesInvoiceCommentLine")
        sub(comment, "Comment", row.comment)
        return wrapper
    draft = row.draft
    line = sub(wrapper, "SalesInvoiceProductLine")
    sub(line, "productidentifier", draft.product_identifier, type=draft.product_identifier_type)
    sub(line, "ProductName", draft.name)
    sub(line, "ProductUnitPrice", number(draft.unit_price), type=draft.price_type)
    sub(line, "ProductVatPercentage", number(draft.vat_percent), vatcode=draft.vat_code)
    sub(line, "SalesInvoiceProductLineQuantity", number(draft.quantity))
    sub(line, "SalesInvoiceProductLineDiscountPercentage", number(draft.discount_percent))
    sub(line, "SalesInvoiceProductLineFreeText", draft.free_text)
    sub(line, "SalesInvoiceProductLineVatSum", amount(row.vat_sum))
    sub(line, "SalesInvoiceProductLineSum", amount(row.gross_sum))
    sub(line, "AccountingAccountSuggestion", draft.accounting_account)
    for name, item in draft.dimensions:
        dimension = sub(line, "Dimension")
        sub(dimension, "DimensionName", name)
        sub(dimension, "DimensionItem", item)
    return wrapper


def _render_invoice(ctx: Context, invoice: Invoice) -> etree._Element:
    root = etree.Element("SalesInvoice")
    header = invoice.header
    sub(root, "SalesInvoiceNetvisorKey", str(invoice.netvisor_key))
    sub(root, "SalesInvoiceNumber", invoice.number)
    sub(root, "SalesInvoiceDate", ansi(invoice.invoice_date), format="ansi")
    sub(root, "SalesInvoiceDeliveryDate", ansi(invoice.delivery_date), format="ansi")
    sub(root, "SalesInvoiceDueDate", ansi(invoice.due_date), format="ansi")
    sub(root, "SalesInvoiceReferencenumber", invoice.reference_number)
    sub(root, "SalesInvoiceAmount", amount(invoice.amount), iso4217currencycode=invoice.currency)
    sub(root, "InvoiceStatus", invoice.substatus(ctx.today).capitalize(), status=invoice.substatus(ctx.today))
    for tag in (
        "SalesInvoiceFreeTextBeforeLines",
        "SalesInvoiceFreeTextAfterLines",
        "SalesInvoiceOurReference",
        "SalesInvoiceYourReference",
        "SalesInvoicePrivateComment",
    ):
        sub(root, tag, header.get(tag.lower(), ""))
    sub(root, "InvoicingCustomerIdentifier", invoice.customer_code)
    sub(root, "InvoicingCustomerNetvisorKey", str(invoice.customer_key))
    sub(root, "InvoicingCustomerName", invoice.customer_name)
    days = invoice.payment_term_net_days
    sub(
        root,
        "PaymentTermNetDays",
        str(days if days is not None else (invoice.due_date - invoice.invoice_date).days),
    )
    lines = sub(root, "InvoiceLines")
    for row in invoice.rows:
        lines.append(_render_line(row))
    return root


def get_sales_invoice(ctx: Context) -> list[etree._Element]:
    keys, as_list = _keys(ctx, "netvisorkey", "netvisorkeylist", MAX_GET_KEYS)
    found = [ctx.store.invoices.get(key) for key in keys]
    if not as_list:
        invoice = found[0]
        # Netvisor answers an unknown key with OK and an empty element, not with a failure.
        return [_render_invoice(ctx, invoice) if invoice is not None else etree.Element("SalesInvoice")]
    wrapper = etree.Element("SalesInvoices")
    for invoice in found:
        if invoice is not None:
            wrapper.append(_render_invoice(ctx, invoice))
    return [wrapper]


def update_sales_invoice_status(ctx: Context) -> list[etree._Element]:
    keys, _ = _keys(ctx, "netvisorkey", "netvisorkeylist", MAX_STATUS_KEYS)
    status = ctx.query.get("status", "").strip().lower()
    if not status:
        raise invalid("Parameter 'status' is required.")
    ctx.store.set_invoice_status(keys, status, now=ctx.now)
    return []


def sales_payment_list(ctx: Context) -> list[etree._Element]:
    payments: list[Payment] = sorted(ctx.store.payments.values(), key=lambda p: p.netvisor_key)
    if "abovenetvisorkey" in ctx.query:
        above = _key(ctx.query["abovenetvisorkey"], "abovenetvisorkey")
        payments = [p for p in payments if p.netvisor_key > above]
    begin, end = _date(ctx, "begindate"), _date(ctx, "enddate")
    payments = [p for p in payments if (begin is None or p.date >= begin) and (end is None or p.date <= end)]
    start, stop = _moment(ctx, "lastmodifiedstart"), _moment(ctx, "lastmodifiedend", end=True)
    payments = [p for p in payments if _in_range(p.changed_at, start, stop)]
    if "invoicenetvisorkey" in ctx.query:
        invoice_key = _key(ctx.query["invoicenetvisorkey"], "invoicenetvisorkey")
        payments = [p for p in payments if p.invoice_key == invoice_key]
    if ctx.query.get("invoicenumber", "").strip():
        payments = [p for p in payments if p.invoice_number == ctx.query["invoicenumber"].strip()]
    listing = etree.Element("SalesPaymentList")
    for payment in payments:
        item = sub(listing, "SalesPayment")
        sub(item, "NetvisorKey", str(payment.netvisor_key))
        sub(item, "Name", payment.name)
        sub(item, "Date", finnish_date(payment.date))
        sub(item, "Sum", amount(payment.sum))
        sub(item, "ReferenceNumber", payment.reference_number)
        foreign = payment.foreign_currency_amount
        sub(item, "ForeignCurrencyAmount", amount(foreign) if foreign is not None else None)
        sub(item, "InvoiceNumber", payment.invoice_number)
        sub(item, "BankStatus", payment.bank_status)
    return [listing]


def match_credit_note(ctx: Context) -> list[etree._Element]:
    match = _body(ctx).find("matchcreditnote")
    assert match is not None  # validated
    credit = int(_text(match.find("creditnotenetvisorkey")))
    invoice = int(_text(match.find("invoicenetvisorkey")))
    ctx.store.match_credit_note(credit, invoice, now=ctx.now)
    return []


RESOURCES: Final[Mapping[str, Resource]] = {
    resource.name: resource
    for resource in (
        Resource("customerlist.nv", "GET", customer_list),
        Resource("getcustomer.nv", "GET", get_customer),
        Resource("customer.nv", "POST", customer_write, dtd.CUSTOMER, writes=True),
        Resource("salesinvoice.nv", "POST", sales_invoice_write, dtd.SALESINVOICE, writes=True),
        Resource("salesinvoicelist.nv", "GET", sales_invoice_list),
        Resource("getsalesinvoice.nv", "GET", get_sales_invoice),
        Resource("updatesalesinvoicestatus.nv", "POST", update_sales_invoice_status, writes=True),
        Resource("salespaymentlist.nv", "GET", sales_payment_list),
        Resource("matchcreditnote.nv", "POST", match_credit_note, dtd.MATCHCREDITNOTE, writes=True),
    )
}
"""Every resource the fake serves, by lower-case name."""
