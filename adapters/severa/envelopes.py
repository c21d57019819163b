"""Precompiled envelopes for the one call every work-hour event makes: ``AddNewHourEntry``.

zeep builds a request by walking the WSDL's types for every value and reads a reply the same way;
for the call made once per event that walk was a sixth of the connector's CPU. The request here
is a template of the exact bytes zeep produces (same element order, prefixes, escaping and value
formatting -- the values are formatted by zeep's own ``xmlvalue`` functions), and the reply's
``HourEntry`` is read with lxml directly into an object that has the members
:func:`adapters.severa.mapping.hour_entry_from_severa` reads, converted by zeep's own
``pythonvalue`` functions with zeep's rules (no text, or a value that does not parse: ``None``).

zeep stays the contract: every operation without a template goes through it, so does an Add with
members the template does not cover (start and end times), and the unit tests compare both paths
byte for byte and field for field (``tests/unit/test_severa_envelopes.py``), with the request read
back through the WSDL's input message.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from lxml import etree
from zeep.xsd.types import builtins

# The namespaces of adapters.severa.contract (which imports this module).
SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SEVERA_NS: Final = "http://soap.severa.com/"
ENTITIES_NS: Final = "http://schemas.datacontract.org/2004/07/Severa.Entities.API"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

_NIL: Final = f"{{{XSI_NS}}}nil"

# Characters XML 1.0 cannot carry: lxml refuses them, and so does the template (same message).
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})

_xsd: Any = builtins  # untyped: zeep's builtin simple types
_DECIMAL: Final = _xsd.Decimal()
_DATETIME: Final = _xsd.DateTime()
_BOOLEAN: Final = _xsd.Boolean()
_STRING: Final = _xsd.String()

_ADD_HEAD: Final = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    f'<soap-env:Envelope xmlns:soap-env="{SOAP_ENV_NS}" xmlns:sev="{SEVERA_NS}" xmlns:ent="{ENTITIES_NS}">'
    "<soap-env:Header><sev:WebServicePassword>"
)
_ADD_BODY: Final = (
    "</sev:WebServicePassword></soap-env:Header><soap-env:Body><sev:AddNewHourEntry><sev:hourEntryInfo>"
)
_ADD_TAIL: Final = "</sev:hourEntryInfo></sev:AddNewHourEntry></soap-env:Body></soap-env:Envelope>"
#: The members of ``hourEntryInfo`` the template writes, in the sequence order of ``HourEntry``.
_ADD_MEMBERS: Final = frozenset(
    {
        "CaseGUID",
        "Description",
        "EventDate",
        "IsBillable",
        "PhaseGUID",
        "Quantity",
        "UserGUID",
        "WorkTypeGUID",
    }
)
_ADD_REQUIRED: Final = _ADD_MEMBERS - {"Description"}


class NotXmlText(ValueError):
    """A value holds characters XML cannot carry (lxml's own refusal, raised before building)."""


def _text(value: str) -> str:
    if _NOT_XML.search(value):
        raise NotXmlText(
            "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters"
        )
    return value.translate(_ESCAPES)


def build_add_new_hour_entry(params: Mapping[str, Any], api_key: str) -> bytes | None:
    """The AddNewHourEntry envelope zeep would build for ``params``; ``None`` if the template does
    not cover them (zeep builds those). Raises :class:`NotXmlText` for text XML cannot carry."""
    if len(params) != 1:
        return None
    info = params.get("hourEntryInfo")
    if not isinstance(info, dict) or not _ADD_REQUIRED <= info.keys() <= _ADD_MEMBERS:
        return None
    case, user, phase, work_type = info["CaseGUID"], info["UserGUID"], info["PhaseGUID"], info["WorkTypeGUID"]
    description = info.get("Description")
    event_date, billable, quantity = info["EventDate"], info["IsBillable"], info["Quantity"]
    if not (
        type(case) is str
        and type(user) is str
        and type(phase) is str
        and type(work_type) is str
        and (description is None or type(description) is str)
        and type(billable) is bool
        and type(quantity) is Decimal
        and hasattr(event_date, "isoformat")
    ):
        return None
    parts = [
        _ADD_HEAD,
        _text(api_key),
        _ADD_BODY,
        f"<ent:CaseGUID>{_text(case)}</ent:CaseGUID>",
    ]
    if description is not None:
        parts.append(f"<ent:Description>{_text(description)}</ent:Description>")
    parts += [
        f"<ent:EventDate>{_DATETIME.xmlvalue(event_date)}</ent:EventDate>",
        f"<ent:IsBillable>{_BOOLEAN.xmlvalue(billable)}</ent:IsBillable>",
        f"<ent:PhaseGUID>{_text(phase)}</ent:PhaseGUID>",
        f"<ent:Quantity>{_DECIMAL.xmlvalue(quantity)}</ent:Quantity>",
        f"<ent:UserGUID>{_text(user)}</ent:UserGUID>",
        f"<ent:WorkTypeGUID>{_text(work_type)}</ent:WorkTypeGUID>",
        _ADD_TAIL,
    ]
    return "".join(parts).encode("utf-8")


class SeveraHourEntry:
    """The members of a Severa ``HourEntry`` the mapping reads, as zeep would have read them.

    Named ``HourEntry`` for the messages that name an entity's type (as zeep's objects are).
    """

    __slots__ = (
        "CaseGUID",
        "Description",
        "EventDate",
        "GUID",
        "InvoiceGUID",
        "IsBillable",
        "PhaseGUID",
        "Quantity",
        "UserGUID",
        "WorkTypeGUID",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, None)

    def __repr__(self) -> str:
        members = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"HourEntry({members})"


SeveraHourEntry.__name__ = SeveraHourEntry.__qualname__ = "HourEntry"


_ENT: Final = f"{{{ENTITIES_NS}}}"
_CONVERTERS: Final[dict[str, tuple[str, Any]]] = {
    f"{_ENT}{name}": (name, kind)
    for name, kind in (
        ("CaseGUID", _STRING),
        ("Description", _STRING),
        ("EventDate", _DATETIME),
        ("GUID", _STRING),
        ("InvoiceGUID", _STRING),
        ("IsBillable", _BOOLEAN),
        ("PhaseGUID", _STRING),
        ("Quantity", _DECIMAL),
        ("UserGUID", _STRING),
        ("WorkTypeGUID", _STRING),
    )
}


_CONVERTED_TAGS: Final = tuple(_CONVERTERS)

# ``xsd:dateTime`` as Severa writes it: no fraction, no zone, ASCII digits (the table test holds
# it to zeep over the other shapes, which go to zeep).
_PLAIN_DATETIME: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def read_hour_entry_result(wrapper: etree._Element, result_tag: str) -> SeveraHourEntry | None:
    """The ``HourEntry`` result inside a response wrapper (``None``: absent or nil, as zeep says)."""
    for child in wrapper:
        if child.tag == result_tag:
            return read_hour_entry(child)
    return None


def read_hour_entry(result: etree._Element) -> SeveraHourEntry | None:
    """An ``HourEntry`` result element as zeep reads it (``None`` when nil); members the mapping
    does not read are skipped, like the elements the contract does not declare."""
    if result.get(_NIL) == "true":
        return None
    entry = SeveraHourEntry()
    # lxml picks the members the mapping reads (it matches the tags in C); the rest are skipped.
    for child in result.iterchildren(*_CONVERTED_TAGS):
        name, kind = _CONVERTERS[child.tag]
        setattr(entry, name, _simple(child, kind))
    return entry


def _simple(element: etree._Element, kind: Any) -> Any:
    """zeep's ``AnySimpleType.parse_xmlelement``: no text is None, an unreadable value is None."""
    text = element.text
    if text is None:
        return None
    try:
        if kind is _DATETIME and _PLAIN_DATETIME.fullmatch(text):
            # What zeep's isodate parse gives for this shape (a naive datetime), a tenth of its cost.
            return dt.datetime.fromisoformat(text)
        return kind.pythonvalue(text)
    except (TypeError, ValueError):
        return None
