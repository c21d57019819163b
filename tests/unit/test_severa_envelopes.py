"""The precompiled AddNewHourEntry envelope and reply reader agree with zeep, the contract.

``adapters/severa/envelopes.py`` replaces zeep on the one call every event makes. These tests hold
it to zeep's own output: the request bytes are identical for every shape of value the template
takes (escaping, formatting, optional members), the WSDL's input message reads them back to the
same members, what the template does not cover is still built by zeep, text XML cannot carry is
refused alike, and a reply is read to the same hour entry field for field -- nil, empty, missing,
unknown and unparsable members included.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree
from zeep.xsd.types import builtins

from adapters.severa.contract import (
    MalformedReply,
    Ops,
    RequestNotSerializable,
    SeveraContract,
    default_contract,
    parse_reply,
)
from adapters.severa.envelopes import _DATETIME, SeveraHourEntry, _simple, build_add_new_hour_entry
from adapters.severa.mapping import EntityMismatch, hour_entry_from_severa, new_hour_entry_to_severa
from connector.ports import NewHourEntry

KEY = "k3y-&-<secret>-0000"


@pytest.fixture(scope="module")
def zeep_only() -> SeveraContract:
    return SeveraContract.load(fast_envelopes=False)


def _entry(**overrides: Any) -> NewHourEntry:
    values: dict[str, Any] = {
        "user_guid": "7d3c1e52-0000-4000-8000-000000000001",
        "case_guid": "7d3c1e52-0000-4000-8000-000000000101",
        "phase_guid": "7d3c1e52-0000-4000-8000-000000000201",
        "work_type_guid": "7d3c1e52-0000-4000-8000-000000000301",
        "event_date": dt.date(2026, 11, 20),
        "quantity": Decimal("7.50"),
        "description": "Wireframes",
        "is_billable": True,
    }
    values.update(overrides)
    return NewHourEntry(**values)


ENTRIES = [
    pytest.param(_entry(), id="plain"),
    pytest.param(_entry(description=None), id="no description"),
    pytest.param(_entry(description=""), id="empty description"),
    pytest.param(_entry(description="  padded\twith\ttabs  "), id="whitespace kept"),
    pytest.param(_entry(description="a & b < c > d \"q\" 'a' ]]>"), id="markup characters"),
    pytest.param(_entry(description="line 1\r\nline 2\rline 3\n"), id="line breaks"),
    pytest.param(_entry(description="Työmaa \u2013 ÄÖÅ € 日本 🕒"), id="unicode"),
    pytest.param(_entry(is_billable=False), id="not billable"),
    pytest.param(_entry(quantity=Decimal("0.25")), id="quarter hour"),
    pytest.param(_entry(quantity=Decimal("24")), id="integral hours"),
    pytest.param(_entry(quantity=Decimal("1E+1")), id="exponent"),
    pytest.param(_entry(quantity=Decimal("-1.5")), id="negative"),
    pytest.param(_entry(event_date=dt.date(1999, 1, 1)), id="old date"),
    pytest.param(_entry(user_guid="a&b<c>"), id="markup in a GUID"),
]


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("key", [KEY, "plain-key-000000"])
def test_the_template_builds_exactly_what_zeep_builds(
    entry: NewHourEntry, key: str, zeep_only: SeveraContract
) -> None:
    params = {"hourEntryInfo": new_hour_entry_to_severa(entry)}
    fast = build_add_new_hour_entry(params, key)
    assert fast is not None, "the template must cover the shape the flow sends"
    assert fast == zeep_only.operation(Ops.ADD_HOUR_ENTRY).build(params, key)
    assert default_contract().operation(Ops.ADD_HOUR_ENTRY).build(params, key) == fast


@pytest.mark.parametrize("entry", ENTRIES)
def test_the_wsdl_reads_the_template_back_to_the_members_sent(
    entry: NewHourEntry, zeep_only: SeveraContract
) -> None:
    info = new_hour_entry_to_severa(entry)
    fast = build_add_new_hour_entry({"hourEntryInfo": info}, KEY)
    assert fast is not None
    parsed = zeep_only.operation(Ops.ADD_HOUR_ENTRY).parse_request(fast).hourEntryInfo
    for member, value in info.items():
        # An empty element reads as None (zeep's rule, the same for zeep's own envelope).
        assert getattr(parsed, member) == (None if value == "" else value), member
    if entry.description is None:
        assert parsed.Description is None


@pytest.mark.parametrize(
    "info",
    [
        pytest.param({"StartTime": dt.datetime(2026, 11, 20, 8)}, id="start time"),
        pytest.param({"EndTime": dt.datetime(2026, 11, 20, 16)}, id="end time"),
        pytest.param({"Quantity": 7.5}, id="a float, not a Decimal"),
        pytest.param({"CaseGUID": None}, id="a missing GUID"),
    ],
)
def test_what_the_template_does_not_cover_is_left_to_zeep(
    info: dict[str, Any], zeep_only: SeveraContract
) -> None:
    params = {"hourEntryInfo": {**new_hour_entry_to_severa(_entry()), **info}}
    assert build_add_new_hour_entry(params, KEY) is None
    assert default_contract().operation(Ops.ADD_HOUR_ENTRY).build(params, KEY) == zeep_only.operation(
        Ops.ADD_HOUR_ENTRY
    ).build(params, KEY)


@pytest.mark.parametrize("text", ["nul \x00 byte", "escape \x1b", "lone \ud800 surrogate", "form\x0cfeed"])
def test_text_xml_cannot_carry_is_refused_like_zeep_refuses_it(text: str, zeep_only: SeveraContract) -> None:
    params = {"hourEntryInfo": new_hour_entry_to_severa(_entry(description=text))}
    with pytest.raises(RequestNotSerializable):
        zeep_only.operation(Ops.ADD_HOUR_ENTRY).build(params, KEY)
    with pytest.raises(RequestNotSerializable):
        default_contract().operation(Ops.ADD_HOUR_ENTRY).build(params, KEY)


_MEMBERS = {
    "AccountGUID": '<a:AccountGUID i:nil="true"/>',
    "CaseGUID": "<a:CaseGUID>7d3c1e52-0000-4000-8000-000000000101</a:CaseGUID>",
    "Description": "<a:Description>Wire &amp; frames</a:Description>",
    "EndTime": '<a:EndTime i:nil="true"/>',
    "EventDate": "<a:EventDate>2026-11-20T00:00:00</a:EventDate>",
    "GUID": "<a:GUID>757523bc-6fac-4421-9d7d-cfc87473b97a</a:GUID>",
    "InvoiceDescription": '<a:InvoiceDescription i:nil="true"/>',
    "InvoiceGUID": '<a:InvoiceGUID i:nil="true"/>',
    "InvoiceQuantity": "<a:InvoiceQuantity>7.50</a:InvoiceQuantity>",
    "InvoiceRowGUID": '<a:InvoiceRowGUID i:nil="true"/>',
    "IsApproved": "<a:IsApproved>false</a:IsApproved>",
    "IsBillable": "<a:IsBillable>true</a:IsBillable>",
    "IsProductive": '<a:IsProductive i:nil="true"/>',
    "IsReadOnly": "<a:IsReadOnly>false</a:IsReadOnly>",
    "OverTimeGUID": '<a:OverTimeGUID i:nil="true"/>',
    "PhaseGUID": "<a:PhaseGUID>7d3c1e52-0000-4000-8000-000000000201</a:PhaseGUID>",
    "Quantity": "<a:Quantity>7.50</a:Quantity>",
    "StartTime": '<a:StartTime i:nil="true"/>',
    "TaskGUID": '<a:TaskGUID i:nil="true"/>',
    "UnitCost": "<a:UnitCost>0</a:UnitCost>",
    "UnitPrice": "<a:UnitPrice>0</a:UnitPrice>",
    "UnitPriceInBaseCurrency": "<a:UnitPriceInBaseCurrency>0</a:UnitPriceInBaseCurrency>",
    "UserGUID": "<a:UserGUID>7d3c1e52-0000-4000-8000-000000000001</a:UserGUID>",
    "WorkTypeGUID": "<a:WorkTypeGUID>7d3c1e52-0000-4000-8000-000000000301</a:WorkTypeGUID>",
}


def _reply(result: str | None = None, **members: str | None) -> bytes:
    """An AddNewHourEntry answer shaped like the fake's (and WCF's); ``None`` drops a member."""
    if result is None:
        chosen = {**_MEMBERS, **members}
        inner = "".join(value for value in chosen.values() if value is not None)
        result = f"<tns:AddNewHourEntryResult>{inner}</tns:AddNewHourEntryResult>"
    return (
        '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:tns="http://soap.severa.com/" '
        'xmlns:a="http://schemas.datacontract.org/2004/07/Severa.Entities.API" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<soap-env:Header><tns:Quota>100000</tns:Quota><tns:UsedQuota>1</tns:UsedQuota></soap-env:Header>"
        f"<soap-env:Body><tns:AddNewHourEntryResponse>{result}</tns:AddNewHourEntryResponse>"
        "</soap-env:Body></soap-env:Envelope>"
    ).encode()


REPLIES = [
    pytest.param(_reply(), id="the fake's answer"),
    pytest.param(_reply(Description='<a:Description i:nil="true"/>'), id="nil description"),
    pytest.param(_reply(Description="<a:Description/>"), id="empty description"),
    pytest.param(_reply(Description=None), id="no description"),
    pytest.param(_reply(Description="<a:Description>  x\r\n\ty  </a:Description>"), id="whitespace"),
    pytest.param(_reply(InvoiceGUID="<a:InvoiceGUID>inv-1</a:InvoiceGUID>"), id="invoiced"),
    pytest.param(_reply(IsBillable="<a:IsBillable>1</a:IsBillable>"), id="boolean as 1"),
    pytest.param(_reply(IsBillable="<a:IsBillable>false</a:IsBillable>"), id="not billable"),
    pytest.param(_reply(Quantity="<a:Quantity>0.250</a:Quantity>"), id="three decimals"),
    pytest.param(_reply(EventDate="<a:EventDate>2026-11-20T00:00:00+02:00</a:EventDate>"), id="zoned date"),
    pytest.param(
        _reply(CaseGUID="<a:CaseGUID>c</a:CaseGUID><a:CaseName>Website</a:CaseName>"),
        id="a member the contract does not declare",
    ),
    pytest.param(_reply(WorkTypeGUID='<a:WorkTypeGUID i:nil="true"/>'), id="no work type"),
]


@pytest.mark.parametrize("reply", REPLIES)
def test_a_reply_reads_to_the_same_hour_entry_as_with_zeep(reply: bytes, zeep_only: SeveraContract) -> None:
    with_zeep = zeep_only.operation(Ops.ADD_HOUR_ENTRY).read_body(parse_reply(reply))
    fast = default_contract().operation(Ops.ADD_HOUR_ENTRY).read_body(parse_reply(reply))
    assert isinstance(fast, SeveraHourEntry)
    for member in SeveraHourEntry.__slots__:
        assert getattr(fast, member) == getattr(with_zeep, member), member
    assert hour_entry_from_severa(fast) == hour_entry_from_severa(with_zeep)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            _reply('<tns:AddNewHourEntryResult i:nil="true"/>'), id="a nil result: no entity came back"
        ),
        pytest.param(_reply(""), id="no result element"),
        pytest.param(_reply(EventDate="<a:EventDate>yesterday</a:EventDate>"), id="an unreadable date"),
        pytest.param(_reply(EventDate=None), id="no event date"),
        pytest.param(_reply(GUID=None), id="no GUID"),
    ],
)
def test_a_reply_without_a_usable_entry_fails_alike(reply: bytes, zeep_only: SeveraContract) -> None:
    def outcome(contract: SeveraContract) -> str:
        raw = contract.operation(Ops.ADD_HOUR_ENTRY).read_body(parse_reply(reply))
        if raw is None:
            return "none"
        try:
            hour_entry_from_severa(raw)
        except EntityMismatch as exc:
            return f"mismatch: {exc}"
        return "entry"

    assert outcome(default_contract()) == outcome(zeep_only) != "entry"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T00:00:00",
        "2026-11-20T23:59:59",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59",
        "2026-02-29T00:00:00",  # no such day: None on both
        "2026-13-01T00:00:00",
        "2026-11-20T24:00:00",
        "2026-11-20T12:60:00",
        "2026-11-20T00:00:00Z",
        "2026-11-20T00:00:00+02:00",
        "2026-11-20T00:00:00.1234567",
        "2026-11-20",
        "2026-11-20 08:30:00",
        " 2026-11-20T00:00:00 ",
        "2026-11-20T00:00:00\n",
        "\u0662\u0660\u0662\u0666-11-20T00:00:00",  # Arabic-Indic digits
        "20261120T000000",
        "",
    ],
)
def test_a_date_time_reads_as_zeep_reads_it(text: str) -> None:
    """The reader's shortcut for Severa's plain ``dateTime`` gives what zeep's parse gives."""
    element = etree.fromstring(f"<d>{text}</d>")
    try:
        expected = builtins.DateTime().pythonvalue(element.text)
    except (TypeError, ValueError):
        expected = None
    # repr, not ==: aware datetimes compare by instant, and zeep's UTC is isodate's tzinfo.
    assert repr(_simple(element, _DATETIME)) == repr(expected)


def test_an_unparsable_quantity_is_a_malformed_reply_on_both_paths(zeep_only: SeveraContract) -> None:
    reply = _reply(Quantity="<a:Quantity>abc</a:Quantity>")
    for contract in (zeep_only, default_contract()):
        with pytest.raises(MalformedReply):
            contract.operation(Ops.ADD_HOUR_ENTRY).read_body(parse_reply(reply))
