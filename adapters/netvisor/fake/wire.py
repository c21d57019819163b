"""What crosses the wire: request bodies parsed defensively, answers rendered in Netvisor's shapes.

Parsing (:func:`parse_body`) refuses, as ``INVALID_DATA`` (refusal ``malformed``), anything that is
not a single well-formed XML document: no DTD (``<!DOCTYPE``), no entity declarations or
references, no external fetches (lxml with ``resolve_entities=False``, ``no_network``, no DTD
loading). Comments and processing instructions are dropped. Element and attribute names are
lowered, because Netvisor matches them case-insensitively. Without an XML declaration the body is
decoded with the ``Content-Type`` charset (UTF-8 when none is given; ISO-8859-15 is the vendor's
documented choice and works too); only ASCII-compatible encodings are accepted (a UTF-16 body is
refused), which also keeps the byte scan for ``<!DOCTYPE`` honest. The size bound is enforced
while reading, in the server.

Answers (:func:`ok_answer`, :func:`failed_answer`) look like the service's::

    <?xml version="1.0" encoding="utf-8" standalone="yes"?>
    <Root>
      <ResponseStatus><Status>OK</Status><TimeStamp>01.01.2018 12:00:00</TimeStamp></ResponseStatus>
      …
    </Root>

and on failure two ``Status`` siblings, ``FAILED`` then ``CODE :: text``. Amounts carry a decimal
comma (:func:`amount`); dates are ``YYYY-MM-DD`` with ``format="ansi"``, except where the service
writes ``d.M.yyyy`` (:func:`finnish_date`, used by ``salespaymentlist.nv``). The ``TimeStamp`` is
the company's local time (Europe/Helsinki), zero-padded as in our notes' example.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from lxml import etree

from adapters.netvisor.fake.errors import NetvisorError, RefusalKind, invalid

XML_DECLARATION: Final = b'<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n'
CONTENT_TYPE: Final = "text/xml"
CENT: Final = Decimal("0.01")


def _parser(encoding: str | None) -> etree.XMLParser:
    return etree.XMLParser(
        encoding=encoding,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
        huge_tree=False,
        collect_ids=False,
    )


def parse_body(data: bytes, charset: str | None = None) -> etree._Element:
    """The body's root element, names lowered; :class:`NetvisorError` (INVALID_DATA) if unacceptable."""
    if not data.strip():
        raise invalid("The request has no XML body.", RefusalKind.MALFORMED)
    lowered = data.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise invalid("DTDs and entity declarations are not allowed in a request.", RefusalKind.MALFORMED)
    has_declaration = data.lstrip().lstrip(b"\xef\xbb\xbf").startswith(b"<?xml")
    encoding = None if has_declaration else (charset or "utf-8")
    try:
        root = etree.fromstring(data, _parser(encoding))
    except (etree.XMLSyntaxError, LookupError, ValueError) as exc:
        raise invalid(f"The request body is not well-formed XML: {exc}", RefusalKind.MALFORMED) from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise invalid("DTDs are not allowed in a request.", RefusalKind.MALFORMED)
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise invalid("Entity references are not allowed in a request.", RefusalKind.MALFORMED)
        if isinstance(node.tag, str):
            node.tag = node.tag.lower()
            if node.attrib:
                attributes = [(str(name).lower(), str(value)) for name, value in node.attrib.items()]
                node.attrib.clear()
                for name, value in attributes:
                    node.set(name, value)
    return root


# -------------------------------------------------------------------------------------- answers


def sub(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    """Append ``<tag attr="…">text</tag>`` to *parent* (``None`` text: an empty element)."""
    element = etree.SubElement(parent, tag, attributes)
    if text is not None and text != "":
        element.text = text
    return element


def response_timestamp(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """``dd.MM.yyyy HH:mm:ss`` in the company's time zone."""
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M:%S")


def _document(root: etree._Element) -> bytes:
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8", pretty_print=True)


def ok_answer(timestamp: str, *content: etree._Element) -> bytes:
    root = etree.Element("Root")
    status = sub(root, "ResponseStatus")
    sub(status, "Status", "OK")
    sub(status, "TimeStamp", timestamp)
    for element in content:
        root.append(element)
    return _document(root)


def failed_answer(timestamp: str, error: NetvisorError) -> bytes:
    root = etree.Element("Root")
    status = sub(root, "ResponseStatus")
    sub(status, "Status", "FAILED")
    sub(status, "Status", error.status_text)
    sub(status, "TimeStamp", timestamp)
    return _document(root)


def inserted(key: int) -> etree._Element:
    """``<Replies><InsertedDataIdentifier>key</InsertedDataIdentifier></Replies>`` (an add's answer)."""
    replies = etree.Element("Replies")
    sub(replies, "InsertedDataIdentifier", str(key))
    return replies


# --------------------------------------------------------------------------------------- values


def parse_decimal(text: str) -> Decimal:
    """A request number: decimal point or decimal comma (both are accepted)."""
    return Decimal(text.strip().replace(",", "."))


def round_cents(value: Decimal) -> Decimal:
    """Netvisor rounds sums to 2 decimals, half away from zero."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def amount(value: Decimal) -> str:
    """An answer's sum: two decimals with a decimal comma (``123,45``)."""
    return f"{round_cents(value):f}".replace(".", ",")


def number(value: Decimal) -> str:
    """A quantity, price or percentage as given (no forced decimals), decimal comma."""
    text = f"{value.normalize():f}" if value == value.to_integral() else f"{value:f}"
    return text.replace(".", ",")


def ansi(date: dt.date | None) -> str | None:
    return date.isoformat() if date is not None else None


def finnish_date(date: dt.date) -> str:
    """``d.M.yyyy`` (``7.2.2014``), as some list answers write dates."""
    return f"{date.day}.{date.month}.{date.year}"
