"""Element order and mandatory elements of each request body, as Netvisor's DTDs enforce them.

**One table per resource** (:data:`CUSTOMER`, :data:`SALESINVOICE`, :data:`MATCHCREDITNOTE`): a
tree of :class:`Node` whose children are listed *in the only order Netvisor accepts*. Element and
attribute names are matched in lower case (the parser lowers them: Netvisor treats names
case-insensitively). :func:`validate` walks a request body against its table and raises
:class:`~.errors.NetvisorError` (``INVALID_DATA``) naming the element that is out of order,
missing, unknown or malformed, with the refusal kind to count.

Where the order comes from, and what is **unverified**:

* customer: the vendor's order as in our API notes; the sections after ``customerbaseinformation``
  and the members of ``customeradditionalinformation`` after ``yourdefaultreference`` follow the
  customer DTD as reproduced by two public client libraries (they agree).
* salesinvoice header: our notes give the required fields but not the full order. The order here is
  the one a 2025 public client library generates from Netvisor's DTD and that an independent
  integration sends (``…date, …duedate, …deliverydate, …referencenumber, …amount``). Note that it
  puts ``salesinvoiceduedate`` *before* ``salesinvoicedeliverydate``; an older copy of the DTD
  has no due date at all. Unverified against the live service.
* which attributes are mandatory: the DTD gives defaults for ``format="ansi"``,
  ``type="netvisor"`` and ``type="ISO-3166"``; the fake *requires* them, as our notes write every
  example with them (stricter than the service can only make a client safer).
* ``salesinvoicestatus`` values: only ``unsent`` and ``open`` are accepted on add/edit.
* ``salesinvoicenumber`` must be digits (Netvisor numbers invoices); unverified.
* field lengths: :data:`FIELD_LENGTHS` (generous guesses, unverified).
* elements the fake does not model (voucher lines, accruals, attachments, custom tags, sub-lines,
  a few rarely used header fields) are *unknown* here and refused, although the service knows them.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from lxml import etree

from adapters.netvisor.fake.errors import RefusalKind, invalid

VAT_CODES: Final = frozenset(
    {
        *("NONE", "KOOS", "EUOS", "EUUO", "EUPO", "100", "KOMY", "EUMY", "EUUM"),
        *("EUPM312", "EUPM309", "MUUL", "EVTO", "EVPO", "RAMY", "RAOS", "EVRO"),
    }
)
"""``productvatpercentage vatcode=…`` values (KOMY: domestic sales)."""

FIELD_LENGTHS: Final[Mapping[str, int]] = MappingProxyType(
    {
        # unverified: the vendor publishes no limits; these are generous so that only nonsense fails.
        "internalidentifier": 50,
        "externalidentifier": 50,
        "organizationunitnumber": 50,
        "name": 250,
        "nameextension": 250,
        "streetaddress": 250,
        "additionaladdressline": 250,
        "city": 250,
        "postnumber": 50,
        "customergroupname": 250,
        "phonenumber": 100,
        "faxnumber": 100,
        "email": 250,
        "homepageuri": 250,
        "emailinvoicingaddress": 250,
        "finvoiceaddress": 100,
        "finvoiceroutercode": 50,
        "comment": 2000,
        "salesinvoicenumber": 20,
        "salesinvoicereferencenumber": 25,
        "salesinvoiceourreference": 250,
        "salesinvoiceyourreference": 250,
        "salesinvoiceprivatecomment": 4000,
        "salesinvoicefreetextbeforelines": 4000,
        "salesinvoicefreetextafterlines": 4000,
        "invoicingcustomername": 250,
        "productidentifier": 100,
        "productname": 250,
        "salesinvoiceproductlinefreetext": 1000,
    }
)


class Value(enum.Enum):
    """How a leaf's text must look."""

    TEXT = "text"
    DATE = "date"  # YYYY-MM-DD
    DECIMAL = "decimal"  # 123.45 or 123,45, optional minus
    INTEGER = "integer"
    DIGITS = "digits"  # unsigned integer
    FLAG = "flag"  # 0 or 1


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute: whether it must be there and which values it takes (case-insensitive)."""

    required: bool = False
    values: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """One element of a resource's DTD. Build tables with :func:`el` and :func:`leaf`."""

    name: str
    children: tuple[Node, ...] = ()
    required: bool = False
    repeats: bool = False
    choice: bool = False
    """Exactly one of the children (a DTD ``(a | b)``) instead of a sequence."""
    value: Value = Value.TEXT
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    allowed: frozenset[str] | None = None
    """Allowed texts (compared in lower case)."""
    may_be_empty: bool = False
    """A required leaf that may be given empty (``salesinvoiceamount``: Netvisor sums it)."""
    one_of: tuple[tuple[str, ...], ...] = ()
    """Groups of relative paths of which at least one must be present and non-empty."""
    together: tuple[tuple[str, ...], ...] = ()
    """Groups of child names that are given all together or not at all."""

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def child(self, name: str) -> Node:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"{self.name} has no child {name!r}")

    def find(self, path: str) -> Node:
        """The node at a ``/``-separated path below this one."""
        node = self
        for part in path.split("/"):
            node = node.child(part)
        return node

    def child_names(self) -> tuple[str, ...]:
        return tuple(child.name for child in self.children)


def el(
    name: str,
    *children: Node,
    required: bool = False,
    repeats: bool = False,
    choice: bool = False,
    one_of: tuple[tuple[str, ...], ...] = (),
    together: tuple[tuple[str, ...], ...] = (),
) -> Node:
    """A container element whose children come in the order given."""
    return Node(
        name, children, required=required, repeats=repeats, choice=choice, one_of=one_of, together=together
    )


def leaf(
    name: str,
    value: Value = Value.TEXT,
    *,
    required: bool = False,
    attrs: Mapping[str, Attr] | None = None,
    allowed: Sequence[str] | None = None,
    may_be_empty: bool = False,
) -> Node:
    """A text element."""
    return Node(
        name,
        required=required,
        value=value,
        attrs=MappingProxyType(dict(attrs or {})),
        allowed=frozenset(item.lower() for item in allowed) if allowed is not None else None,
        may_be_empty=may_be_empty,
    )


def _values(*values: str) -> frozenset[str]:
    return frozenset(value.lower() for value in values)


ANSI: Final = {"format": Attr(required=True, values=_values("ansi"))}
ISO_3166: Final = {"type": Attr(required=True, values=_values("ISO-3166"))}
ISO_3166_OPTIONAL: Final = {"type": Attr(values=_values("ISO-3166"))}
IDENTIFIER_TYPE: Final = {"type": Attr(values=_values("netvisor", "customer"))}


def _dimension() -> Node:
    return el(
        "dimension", leaf("dimensionname", required=True), leaf("dimensionitem", required=True), repeats=True
    )


# ---------------------------------------------------------------------------------- customer.nv

CUSTOMER: Final = el(
    "root",
    el(
        "customer",
        el(
            "customerbaseinformation",
            leaf("internalidentifier", attrs={"type": Attr(values=_values("automatic"))}),
            leaf("externalidentifier"),
            leaf("organizationunitnumber"),
            leaf("name", required=True),  # "the smallest valid body holds only name"
            leaf("nameextension"),
            leaf("streetaddress"),
            leaf("additionaladdressline"),
            leaf("city"),
            leaf("postnumber"),
            leaf("country", attrs=ISO_3166),
            leaf("customergroupname"),
            leaf("phonenumber"),
            leaf("faxnumber"),
            leaf("email"),
            leaf("homepageuri"),
            leaf("isactive", Value.FLAG),
            leaf("isprivatecustomer", Value.FLAG),
            leaf("emailinvoicingaddress"),
            required=True,
        ),
        el("customerfinvoicedetails", leaf("finvoiceaddress"), leaf("finvoiceroutercode")),
        el(
            "customerdeliverydetails",
            leaf("deliveryname"),
            leaf("deliverystreetaddress"),
            leaf("deliverycity"),
            leaf("deliverypostnumber"),
            leaf("deliverycountry", attrs=ISO_3166),
        ),
        el(
            "customercontactdetails",
            leaf("contactname"),
            leaf("contactperson"),
            leaf("contactpersonemail"),
            leaf("contactpersonphone"),
        ),
        el(
            "customeradditionalinformation",
            leaf("comment"),
            leaf("customeragreementidentifier"),
            leaf("customerreferencenumber"),
            leaf("invoicinglanguage", attrs=ISO_3166_OPTIONAL),
            leaf(
                "invoiceprintchannelformat", attrs={"type": Attr(required=True, values=_values("netvisor"))}
            ),
            leaf("yourdefaultreference"),
            leaf("defaulttextbeforeinvoicelines"),
            leaf("defaulttextafterinvoicelines"),
            leaf("defaultpaymentterm", attrs=IDENTIFIER_TYPE),
            leaf("defaultsecondname", attrs=IDENTIFIER_TYPE),
            leaf("paymentinterest", Value.DECIMAL),
            leaf("balancelimit", Value.DECIMAL),
        ),
        el("customerdimensiondetails", _dimension()),
        required=True,
    ),
    required=True,
)

# -------------------------------------------------------------------------------- salesinvoice.nv

_PRODUCT_LINE: Final = el(
    "salesinvoiceproductline",
    leaf(
        "productidentifier",
        required=True,
        attrs={
            "type": Attr(
                required=True, values=_values("netvisor", "customer", "primaryeancode", "secondaryeancode")
            )
        },
    ),
    leaf("productname", required=True),
    leaf(
        "productunitprice", Value.DECIMAL, required=True, attrs={"type": Attr(True, _values("net", "gross"))}
    ),
    leaf("productunitpurchaseprice", Value.DECIMAL, attrs={"type": Attr(True, _values("net"))}),
    leaf(
        "productvatpercentage",
        Value.DECIMAL,
        required=True,
        attrs={"vatcode": Attr(True, _values(*VAT_CODES))},
    ),
    leaf("salesinvoiceproductlinequantity", Value.DECIMAL, required=True),
    leaf("salesinvoiceproductlinediscountpercentage", Value.DECIMAL),
    leaf("salesinvoiceproductlinefreetext"),
    leaf("salesinvoiceproductlinevatsum", Value.DECIMAL),
    leaf("salesinvoiceproductlinesum", Value.DECIMAL),
    leaf("salesinvoiceproductlineinventoryid"),
    leaf("accountingaccountsuggestion"),
    _dimension(),
    leaf("provisionpercentage", Value.DECIMAL),
    leaf("productunitname"),
    leaf("deliverydate", Value.DATE, attrs=ANSI),
    leaf("ordernumber"),
    together=(("salesinvoiceproductlinevatsum", "salesinvoiceproductlinesum"),),
)

SALESINVOICE: Final = el(
    "root",
    el(
        "salesinvoice",
        leaf("salesinvoicenumber", Value.DIGITS),
        leaf("salesinvoicedate", Value.DATE, required=True, attrs=ANSI),
        leaf("salesinvoiceeventdate", Value.DATE, attrs=ANSI),
        leaf("salesinvoiceduedate", Value.DATE, attrs=ANSI),
        leaf("salesinvoicevaluedate", Value.DATE, attrs=ANSI),
        leaf("salesinvoicedeliverydate", Value.DATE, attrs=ANSI),
        leaf("salesinvoicereferencenumber"),
        leaf(
            "salesinvoiceamount",
            Value.DECIMAL,
            required=True,
            may_be_empty=True,
            attrs={
                "iso4217currencycode": Attr(),
                "currencyrate": Attr(),
                "pricetype": Attr(values=_values("net", "gross")),
            },
        ),
        leaf("selleridentifier", attrs={"type": Attr(values=_values("netvisor", "name"))}),
        leaf("sellername"),
        leaf("invoicetype"),
        leaf(
            "salesinvoicestatus",
            required=True,
            attrs={"type": Attr(required=True, values=_values("netvisor"))},
            allowed=("unsent", "open"),
        ),
        leaf("salesinvoicefreetextbeforelines"),
        leaf("salesinvoicefreetextafterlines"),
        leaf("salesinvoiceourreference"),
        leaf("salesinvoiceyourreference"),
        leaf("salesinvoiceprivatecomment"),
        leaf(
            "invoicingcustomeridentifier",
            required=True,
            attrs={"type": Attr(True, _values("netvisor", "customer")), "contactpersonid": Attr()},
        ),
        leaf("invoicingcustomername"),
        leaf("invoicingcustomernameextension"),
        leaf("invoicingcustomeraddressline"),
        leaf("invoicingcustomeradditionaladdressline"),
        leaf("invoicingcustomerpostnumber"),
        leaf("invoicingcustomertown"),
        leaf("invoicingcustomercountrycode", attrs=ISO_3166_OPTIONAL),
        leaf("deliveryaddressname"),
        leaf("deliveryaddressline"),
        leaf("deliveryaddresspostnumber"),
        leaf("deliveryaddresstown"),
        leaf("deliveryaddresscountrycode", attrs=ISO_3166_OPTIONAL),
        leaf("deliverymethod"),
        leaf("deliveryterm"),
        leaf("salesinvoicetaxhandlingtype"),
        leaf("paymentterm", attrs=IDENTIFIER_TYPE),
        leaf("paymenttermnetdays", Value.DIGITS),
        leaf("paymenttermcashdiscountdays", Value.DIGITS),
        leaf(
            "paymenttermcashdiscount", Value.DECIMAL, attrs={"type": Attr(True, _values("percentage", "sum"))}
        ),
        leaf("expectpartialpayments", Value.FLAG),
        leaf("overridevouchersalesreceivablesaccountnumber"),
        leaf("salesinvoiceagreementidentifier"),
        leaf("printchannelformat", attrs={"type": Attr(True, _values("netvisor", "customer"))}),
        leaf("secondname", attrs=IDENTIFIER_TYPE),
        leaf("ordernumber"),
        el(
            "invoicelines",
            el(
                "invoiceline",
                _PRODUCT_LINE,
                el("salesinvoicecommentline", leaf("comment", required=True)),
                required=True,
                repeats=True,
                choice=True,
            ),
            required=True,
            one_of=(("invoiceline/salesinvoiceproductline",),),
        ),
        required=True,
        one_of=(("paymenttermnetdays", "salesinvoiceduedate", "paymentterm"),),
    ),
    required=True,
)

# ----------------------------------------------------------------------------- matchcreditnote.nv

MATCHCREDITNOTE: Final = el(
    "root",
    el(
        "matchcreditnote",
        leaf("creditnotenetvisorkey", Value.DIGITS, required=True),
        leaf("invoicenetvisorkey", Value.DIGITS, required=True),
        required=True,
    ),
    required=True,
)


# ------------------------------------------------------------------------------------ validation

_DECIMAL: Final = re.compile(r"-?\d+(?:[.,]\d+)?")
_INTEGER: Final = re.compile(r"-?\d+")
_DIGITS: Final = re.compile(r"\d+")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def validate(schema: Node, root: etree._Element) -> None:
    """Check a parsed body (lower-case names) against *schema*; :class:`NetvisorError` if it fails."""
    if root.tag != schema.name:
        raise invalid(
            f"The root element must be '{schema.name}', not '{root.tag}'.", RefusalKind.UNKNOWN_ELEMENT
        )
    _check(schema, root, schema.name)


def _check(spec: Node, element: etree._Element, path: str) -> None:
    _check_attributes(spec, element, path)
    if spec.is_leaf:
        for child in element:
            raise invalid(
                f"The element '{path}' cannot contain child element '{child.tag}'.",
                RefusalKind.UNKNOWN_ELEMENT,
            )
        _check_text(spec, element, path)
        return
    if (element.text or "").strip() or any((child.tail or "").strip() for child in element):
        raise invalid(f"The element '{path}' cannot contain text.", RefusalKind.INVALID_VALUE)
    if spec.choice:
        _check_choice(spec, element, path)
    else:
        _check_sequence(spec, element, path)
    for child in element:
        _check(spec.child(str(child.tag)), child, f"{path}/{child.tag}")
    for group in spec.one_of:
        if not any(_present(element, item) for item in group):
            names = "', '".join(group)
            raise invalid(
                f"The element '{path}' has incomplete content: one of '{names}' is mandatory.",
                RefusalKind.MANDATORY,
            )
    for group in spec.together:
        given = [name for name in group if _present(element, name)]
        if given and len(given) != len(group):
            missing = "', '".join(name for name in group if name not in given)
            raise invalid(
                f"The element '{path}' gives '{given[0]}' without '{missing}': they go together.",
                RefusalKind.MANDATORY,
            )


def _expected(spec: Node, position: int) -> str:
    """Names that may come after *position* (up to the first mandatory one), as .NET lists them."""
    names: list[str] = []
    if position >= 0 and spec.children[position].repeats:
        names.append(spec.children[position].name)
    for node in spec.children[position + 1 :]:
        names.append(node.name)
        if node.required:
            break
    return " ".join(names)


def _check_sequence(spec: Node, element: etree._Element, path: str) -> None:
    index = {node.name: number for number, node in enumerate(spec.children)}
    names = [str(child.tag) for child in element]
    position = -1
    for number, name in enumerate(names):
        found = index.get(name)
        if found is None:
            raise invalid(
                f"The element '{path}' has invalid child element '{name}'. "
                f"List of possible elements expected: '{_expected(spec, position)}'.",
                RefusalKind.UNKNOWN_ELEMENT,
            )
        if found == position and not spec.children[found].repeats:
            raise invalid(
                f"The element '{path}' has invalid child element '{name}': it may occur only once.",
                RefusalKind.ORDERING,
            )
        if found < position:
            raise invalid(
                f"The element '{path}' has invalid child element '{name}': it is out of order, "
                f"'{name}' must come before '{names[number - 1]}'.",
                RefusalKind.ORDERING,
            )
        for skipped in spec.children[position + 1 : found]:
            if not skipped.required:
                continue
            if skipped.name in names[number + 1 :]:
                raise invalid(
                    f"The element '{path}' has invalid child element '{name}': it is out of order, "
                    f"'{skipped.name}' must come before '{name}'.",
                    RefusalKind.ORDERING,
                )
            raise invalid(
                f"The element '{path}' has invalid child element '{name}': "
                f"mandatory element '{skipped.name}' is missing before it.",
                RefusalKind.MANDATORY,
            )
        position = found
    for skipped in spec.children[position + 1 :]:
        if skipped.required:
            raise invalid(
                f"The element '{path}' has incomplete content: "
                f"mandatory element '{skipped.name}' is missing.",
                RefusalKind.MANDATORY,
            )


def _check_choice(spec: Node, element: etree._Element, path: str) -> None:
    options = "', '".join(spec.child_names())
    children = list(element)
    if not children:
        raise invalid(
            f"The element '{path}' has incomplete content: one of '{options}' is expected.",
            RefusalKind.MANDATORY,
        )
    for child in children:
        if child.tag not in spec.child_names():
            raise invalid(
                f"The element '{path}' has invalid child element '{child.tag}'. "
                f"List of possible elements expected: '{options}'.",
                RefusalKind.UNKNOWN_ELEMENT,
            )
    if len(children) > 1:
        raise invalid(
            f"The element '{path}' has invalid child element '{children[1].tag}': "
            f"it holds exactly one of '{options}'.",
            RefusalKind.ORDERING,
        )


def _check_attributes(spec: Node, element: etree._Element, path: str) -> None:
    for raw_name, raw_value in element.attrib.items():
        name, value = str(raw_name), str(raw_value)
        attr = spec.attrs.get(name)
        if attr is None:
            raise invalid(f"The attribute '{name}' is not declared for element '{path}'.")
        if attr.values is not None and value.strip().lower() not in attr.values:
            allowed = ", ".join(sorted(attr.values))
            raise invalid(
                f"The attribute '{name}' of '{path}' has invalid value '{value}' (allowed: {allowed})."
            )
    for name, attr in spec.attrs.items():
        if attr.required and name not in element.attrib:
            raise invalid(f"The required attribute '{name}' of '{path}' is missing.", RefusalKind.MANDATORY)


def _check_text(spec: Node, element: etree._Element, path: str) -> None:
    text = (element.text or "").strip()
    if not text:
        if spec.required and not spec.may_be_empty:
            raise invalid(f"Mandatory element '{path}' must not be empty.", RefusalKind.MANDATORY)
        return
    limit = FIELD_LENGTHS.get(spec.name)
    if limit is not None and len(text) > limit:
        raise invalid(f"The value of '{path}' is longer than {limit} characters.")
    if not _well_formed(spec.value, text):
        raise invalid(f"The value '{text}' of '{path}' is not a valid {spec.value.value}.")
    if spec.allowed is not None and text.lower() not in spec.allowed:
        raise invalid(f"The value '{text}' of '{path}' is not one of: {', '.join(sorted(spec.allowed))}.")


def _well_formed(kind: Value, text: str) -> bool:
    if kind is Value.TEXT:
        return True
    if kind is Value.DECIMAL:
        return _DECIMAL.fullmatch(text) is not None
    if kind is Value.INTEGER:
        return _INTEGER.fullmatch(text) is not None
    if kind is Value.DIGITS:
        return _DIGITS.fullmatch(text) is not None
    if kind is Value.FLAG:
        return text in ("0", "1")
    if _DATE.fullmatch(text) is None:
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _present(element: etree._Element, path: str) -> bool:
    found = element.find(path)
    return found is not None and (len(found) > 0 or bool((found.text or "").strip()))
