"""The contract layer: envelopes that validate against the WSDL, replies read safely and losslessly."""

from __future__ import annotations

import copy
import datetime as dt
import functools
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from adapters.severa.contract import (
    ENTITIES_NS,
    SEVERA_NS,
    SOAP_ENV_NS,
    WSDL_PATH,
    MalformedReply,
    OperationRef,
    Ops,
    RequestNotSerializable,
    SeveraContract,
    SoapFault,
    default_contract,
    parse_reply,
)
from adapters.severa.mapping import as_list

XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
KEY = "contract-test-key-42"


@functools.cache
def wsdl_schema() -> etree.XMLSchema:
    """The WSDL's embedded XML Schemas as one validator (each schema imports the others by namespace)."""
    doc = etree.parse(str(WSDL_PATH))
    definitions = doc.getroot()
    schemas = definitions.findall(f"{{{WSDL_NS}}}types/{{{XS}}}schema")
    locations = {s.get("targetNamespace"): f"schema-{i}.xsd" for i, s in enumerate(schemas)}
    texts: dict[str, bytes] = {}
    for schema in schemas:
        # QName-valued attributes (type="ent:HourEntry") need the prefixes declared on <definitions>.
        standalone = etree.Element(
            schema.tag, attrib=dict(schema.attrib), nsmap={**definitions.nsmap, **schema.nsmap}
        )
        for child in schema:
            standalone.append(copy.deepcopy(child))
        for imported in standalone.findall(f"{{{XS}}}import"):
            imported.set("schemaLocation", locations[imported.get("namespace")])
        texts[locations[schema.get("targetNamespace")]] = etree.tostring(standalone)

    class Resolver(etree.Resolver):
        def resolve(self, url: str, pubid: str, context: Any) -> Any:
            name = url.rsplit("/", 1)[-1]
            return self.resolve_string(texts[name], context) if name in texts else None

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Resolver())
    imports = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{loc}"/>' for ns, loc in locations.items()
    )
    root = etree.fromstring(
        f'<xs:schema xmlns:xs="{XS}">{imports}</xs:schema>'.encode(), parser, base_url="file:///wsdl/"
    )
    return etree.XMLSchema(root)


def assert_valid_request(envelope: bytes, ref: OperationRef, contract: SeveraContract | None = None) -> Any:
    """The envelope's body validates against the WSDL's schema and zeep reads it back with the input
    message; returns what zeep read."""
    root = etree.fromstring(envelope)
    assert root.tag == f"{{{SOAP_ENV_NS}}}Envelope"
    body = root.find(f"{{{SOAP_ENV_NS}}}Body")
    assert body is not None
    assert len(body) == 1
    assert body[0].tag == f"{{{SEVERA_NS}}}{ref.name}"
    schema = wsdl_schema()
    assert schema.validate(etree.ElementTree(copy.deepcopy(body[0]))), schema.error_log
    return (contract or default_contract()).operation(ref).parse_request(envelope)


def password_of(envelope: bytes) -> str | None:
    root = etree.fromstring(envelope)
    return root.findtext(f"{{{SOAP_ENV_NS}}}Header/{{{SEVERA_NS}}}WebServicePassword")


NEW_ENTRY = {
    "CaseGUID": "c1",
    "Description": "Sprint review",
    "EndTime": dt.datetime(2025, 3, 4, 10, 30),
    "EventDate": dt.datetime(2025, 3, 4),
    "IsBillable": True,
    "PhaseGUID": "p1",
    "Quantity": Decimal("1.5"),
    "StartTime": dt.datetime(2025, 3, 4, 9, 0),
    "UserGUID": "u1",
    "WorkTypeGUID": "w1",
}

SAMPLE_PARAMS: dict[OperationRef, dict[str, Any]] = {
    Ops.GET_VERSION: {},
    Ops.GET_ENTITY_SCHEMA_VERSION: {},
    Ops.GET_USER_BY_CODE: {"userCode": "AIVI"},
    Ops.GET_ALL_USERS: {"businessUnitGUID": None, "includeInactive": False},
    Ops.GET_CASE_BY_NUMBER: {"caseNumber": 1042},
    Ops.GET_CASES_CHANGED_SINCE: {
        "businessUnitGUID": "bu",
        "startDateTime": dt.datetime(2025, 1, 1),
        "options": 0,
    },
    Ops.GET_PHASES_BY_CODE: {"phaseCode": "DEV", "caseGUID": "c1"},
    Ops.GET_ALL_WORK_TYPES: {},
    Ops.GET_HOUR_ENTRY_BY_GUID: {"hourEntryGUID": "h1"},
    Ops.GET_HOUR_ENTRIES_BY_DATE_AND_USER: {
        "businessUnitGUID": None,
        "startdate": dt.datetime(2025, 3, 1),
        "enddate": dt.datetime(2025, 3, 31),
        "userGUID": "u1",
    },
    Ops.GET_HOUR_ENTRIES_CHANGED_SINCE: {"startDate": dt.datetime(2025, 3, 4)},
    Ops.ADD_HOUR_ENTRY: {"hourEntryInfo": NEW_ENTRY},
    Ops.UPDATE_HOUR_ENTRY: {"hourEntryInfo": {**NEW_ENTRY, "GUID": "h1"}},
    Ops.DELETE_HOUR_ENTRY: {"hourEntryGUID": "h1"},
    Ops.GET_ALL_INVOICE_STATUSES: {},
    Ops.GET_INVOICES_BY_STATUS: {"businessUnitGUID": None, "status": "Sent", "options": 0, "maxInvoices": 1},
    Ops.SET_INVOICE_STATUS: {"invoiceGUID": "i1", "status": "Paid"},
    Ops.SET_INVOICE_PAYMENT_DATE: {"invoiceGUID": "i1", "paymentDate": dt.datetime(2030, 6, 1)},
    Ops.GET_CUSTOMERS_CHANGED_SINCE: {
        "startDateTime": dt.datetime(2030, 6, 1, 10, 0, tzinfo=dt.UTC),
        "options": 66,
    },
    Ops.GET_HEAD_OFFICE_ADDRESS: {"accountGUID": "a1"},
    Ops.GET_INVOICE_BY_GUID: {"invoiceGUID": "i1"},
    Ops.GET_INVOICE_BY_NUMBER: {"invoiceNumber": 10001},
    Ops.ADD_INVOICE_LOG_ENTRY: {
        "invoiceGuid": "i1",
        "context": "accounting",
        "text": "Transferred",
        "source": "severa-connector",
        "ignoreDuplicates": True,
    },
}


def test_the_shipped_wsdl_has_every_operation_we_use() -> None:
    contract = default_contract()
    assert contract.missing == ()
    assert set(SAMPLE_PARAMS) == set(Ops.all())
    assert contract is default_contract()  # parsed once per process


@pytest.mark.parametrize("ref", Ops.all(), ids=lambda ref: f"{ref.label} builds a valid request")
def test_every_request_validates_against_the_wsdl(ref: OperationRef) -> None:
    op = default_contract().operation(ref)
    envelope = op.build(SAMPLE_PARAMS[ref], KEY if ref.authenticated else None)
    read_back = assert_valid_request(envelope, ref)
    assert op.http_headers["SOAPAction"] == f'"http://soap.severa.com/{ref.contract}/{ref.name}"'
    assert op.http_headers["Content-Type"] == "text/xml; charset=utf-8"
    assert password_of(envelope) == (KEY if ref.authenticated else None)
    for name, value in SAMPLE_PARAMS[ref].items():
        if isinstance(value, dict):
            for member, member_value in value.items():
                assert read_back[name][member] == member_value
        else:
            assert read_back[name] == value


def test_the_password_header_is_severas_element() -> None:
    envelope = default_contract().operation(Ops.GET_USER_BY_CODE).build({"userCode": "X"}, KEY)
    header = etree.fromstring(envelope).find(f"{{{SOAP_ENV_NS}}}Header")
    assert header is not None
    assert [child.tag for child in header] == [f"{{{SEVERA_NS}}}WebServicePassword"]
    assert header[0].text == KEY


def test_iapi_calls_carry_no_header() -> None:
    envelope = default_contract().operation(Ops.GET_VERSION).build({}, None)
    assert etree.fromstring(envelope).find(f"{{{SOAP_ENV_NS}}}Header") is None


def test_the_key_is_escaped_not_injected() -> None:
    envelope = default_contract().operation(Ops.GET_ALL_WORK_TYPES).build({}, "a<b>&c")
    assert password_of(envelope) == "a<b>&c"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"nonsense": 1}, id="an unknown parameter"),
        pytest.param({"hourEntryInfo": {**NEW_ENTRY, "Bogus": 1}}, id="a member the entity does not have"),
    ],
)
def test_unserializable_requests_are_reported(params: dict[str, Any]) -> None:
    op = default_contract().operation(Ops.ADD_HOUR_ENTRY)
    with pytest.raises(RequestNotSerializable):
        op.build(params, KEY)


def envelope(body: str, header: str = "") -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP_ENV_NS}">'
        + (f"<s:Header>{header}</s:Header>" if header else "")
        + f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


QUOTA = f'<Quota xmlns="{SEVERA_NS}">100000</Quota><UsedQuota xmlns="{SEVERA_NS}">1234</UsedQuota>'


def test_quota_headers_are_read() -> None:
    reply = parse_reply(envelope("<x/>", QUOTA))
    assert (reply.quota, reply.used_quota) == (100000, 1234)
    assert reply.fault is None


def test_garbage_quota_headers_are_ignored() -> None:
    reply = parse_reply(envelope("<x/>", f'<Quota xmlns="{SEVERA_NS}">lots</Quota>'))
    assert (reply.quota, reply.used_quota) == (None, None)


def test_a_typed_fault_is_read() -> None:
    body = (
        "<s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang='en-US'>Quantity too big</faultstring>"
        "<detail><ValidationException xmlns='http://schemas.datacontract.org/2004/07/Severa.API'>"
        "<Description>Quantity must be &lt;= 999</Description><Source>Severa.API</Source>"
        "</ValidationException></detail></s:Fault>"
    )
    reply = parse_reply(envelope(body, QUOTA))
    assert reply.fault == SoapFault(
        "s:Client", "Quantity too big", "ValidationException", "Quantity must be <= 999"
    )
    assert reply.used_quota == 1234


def _found_with_elementpath(content: bytes) -> tuple[int | None, int | None, str | None, str]:
    """What ``parse_reply`` picks, found the plain way: ElementPath ``find`` on each element."""
    root = etree.fromstring(content)
    body = root.find(f"{{{SOAP_ENV_NS}}}Body")
    header = root.find(f"{{{SOAP_ENV_NS}}}Header")
    quota = used = None
    if header is not None:
        quota = _int(header.findtext(f"{{{SEVERA_NS}}}Quota"))
        used = _int(header.findtext(f"{{{SEVERA_NS}}}UsedQuota"))
    fault = body.find(f"{{{SOAP_ENV_NS}}}Fault")
    assert body is not None
    fault_string = None if fault is None else fault.findtext("faultstring")
    return quota, used, fault_string, etree.tostring(body).decode()


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


FAULT = "<s:Fault><faultcode>s:Client</faultcode><faultstring>no</faultstring></s:Fault>"
Q = f'xmlns="{SEVERA_NS}"'


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(envelope("<x/>", QUOTA), id="quota headers"),
        pytest.param(
            envelope("<x/>", f"<Quota {Q}>5</Quota><Quota {Q}>6</Quota>"), id="the first of two quotas"
        ),
        pytest.param(envelope("<x/>", f"<Quota {Q}/><UsedQuota {Q}> 7 </UsedQuota>"), id="empty and padded"),
        pytest.param(envelope("<x/>", f"<Other {Q}>1</Other>"), id="no quota header"),
        pytest.param(envelope(f"<x/>{FAULT}"), id="a fault after another element"),
        pytest.param(
            f'<s:Envelope xmlns:s="{SOAP_ENV_NS}"><s:Body><a/></s:Body><s:Header><Quota {Q}>3</Quota>'
            f"</s:Header><s:Body>{FAULT}</s:Body></s:Envelope>".encode(),
            id="header after body, two bodies",
        ),
    ],
)
def test_parse_reply_picks_what_elementpath_finds(content: bytes) -> None:
    reply = parse_reply(content)
    fault = None if reply.fault is None else reply.fault.string
    assert (reply.quota, reply.used_quota, fault, etree.tostring(reply.body).decode()) == (
        _found_with_elementpath(content)
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(b"", "empty", id="an empty body"),
        pytest.param(
            b"<html><body>Service Unavailable</body></html>", "not a SOAP 1.1 Envelope", id="an HTML page"
        ),
        pytest.param(envelope("<x/>")[:-20], "not well-formed", id="a truncated envelope"),
        pytest.param(
            b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>',
            "not a SOAP 1.1 Envelope",
            id="a SOAP 1.2 envelope",
        ),
        pytest.param(
            f'<s:Envelope xmlns:s="{SOAP_ENV_NS}"/>'.encode(), "no Body", id="an envelope without body"
        ),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            + envelope("<x>&lol2;</x>"),
            "DTD",
            id="entity expansion is refused",
        ),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">' + envelope("<x/>"),
            "DTD",
            id="an external DTD is refused and never fetched",
        ),
    ],
)
def test_malformed_replies_are_refused(content: bytes, problem: str) -> None:
    with pytest.raises(MalformedReply, match=problem):
        parse_reply(content)


def _hour_entry_xml(guid: str, *, extra: bool) -> str:
    # Alphabetical, as WCF writes members; `extra` adds members a newer Severa has and our WSDL lacks,
    # one of them nested, one of them between known members.
    case_extras = "<a:CaseName>Website</a:CaseName><a:CaseNumber>1042</a:CaseNumber>" if extra else ""
    user_extras = (
        "<a:UserCode>AIVI</a:UserCode><a:UserFirstName>Aino</a:UserFirstName>"
        "<a:Tags><a:Tag>x</a:Tag></a:Tags>"
        if extra
        else ""
    )
    return (
        f"<a:HourEntry><a:AccountGUID>acc</a:AccountGUID><a:CaseGUID>c1</a:CaseGUID>{case_extras}"
        "<a:Description>Sprint review</a:Description><a:EndTime i:nil='true'/>"
        f"<a:EventDate>2025-03-04T00:00:00</a:EventDate><a:GUID>{guid}</a:GUID>"
        "<a:IsBillable>true</a:IsBillable><a:IsReadOnly>false</a:IsReadOnly><a:PhaseGUID>p1</a:PhaseGUID>"
        "<a:Quantity>7.5</a:Quantity><a:StartTime i:nil='true'/>"
        f"<a:UnitCost>0</a:UnitCost>{user_extras}<a:UserGUID>u1</a:UserGUID>"
        "<a:WorkTypeGUID>w1</a:WorkTypeGUID></a:HourEntry>"
    )


def _list_reply(entries: str) -> bytes:
    return envelope(
        f'<GetHourEntriesChangedSinceResponse xmlns="{SEVERA_NS}">'
        f'<GetHourEntriesChangedSinceResult xmlns:a="{ENTITIES_NS}" '
        f'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{entries}'
        "</GetHourEntriesChangedSinceResult></GetHourEntriesChangedSinceResponse>",
        QUOTA,
    )


@pytest.mark.parametrize("extra", [False, True], ids=["our WSDL's members", "a newer Severa's extra members"])
def test_unknown_members_cost_no_data(extra: bool) -> None:
    """zeep alone would return None for every member after the first unknown one (see contract.py)."""
    op = default_contract().operation(Ops.GET_HOUR_ENTRIES_CHANGED_SINCE)
    result = op.read_body(
        parse_reply(_list_reply(_hour_entry_xml("h1", extra=extra) + _hour_entry_xml("h2", extra=extra)))
    )
    assert [entry.GUID for entry in result] == ["h1", "h2"]
    for entry in result:
        assert entry.Description == "Sprint review"
        assert entry.EventDate == dt.datetime(2025, 3, 4)
        assert entry.Quantity == Decimal("7.5")
        assert (entry.UserGUID, entry.CaseGUID, entry.PhaseGUID, entry.WorkTypeGUID) == (
            "u1",
            "c1",
            "p1",
            "w1",
        )
        assert entry.IsBillable is True
        assert entry.EndTime is None


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(f"<GetHourEntriesChangedSinceResult xmlns:i='{XSI}' i:nil='true'/>", id="a nil list"),
        pytest.param("<GetHourEntriesChangedSinceResult/>", id="an empty list"),
        pytest.param("", id="no result element"),
    ],
)
def test_every_empty_list_shape_reads_as_no_entries(result: str) -> None:
    op = default_contract().operation(Ops.GET_HOUR_ENTRIES_CHANGED_SINCE)
    value = op.read_body(
        parse_reply(
            envelope(
                f'<GetHourEntriesChangedSinceResponse xmlns="{SEVERA_NS}">{result}'
                "</GetHourEntriesChangedSinceResponse>"
            )
        )
    )
    assert as_list(value) == []


def test_a_nil_entity_is_none_not_an_empty_object() -> None:
    """zeep alone turns ``<Result i:nil="true"/>`` into a Case whose members are all None."""
    op = default_contract().operation(Ops.GET_CASE_BY_NUMBER)
    reply = envelope(
        f'<GetCaseByNumberResponse xmlns="{SEVERA_NS}" xmlns:i="{XSI}">'
        '<GetCaseByNumberResult i:nil="true"/></GetCaseByNumberResponse>'
    )
    assert op.read_body(parse_reply(reply)) is None


def test_a_body_for_another_operation_is_malformed() -> None:
    op = default_contract().operation(Ops.GET_ALL_WORK_TYPES)
    with pytest.raises(MalformedReply, match="expected GetAllWorkTypesResponse"):
        op.read_body(parse_reply(_list_reply("")))


def test_a_bad_value_is_malformed() -> None:
    op = default_contract().operation(Ops.GET_HOUR_ENTRIES_CHANGED_SINCE)
    bad = _hour_entry_xml("h1", extra=False).replace(
        "<a:Quantity>7.5</a:Quantity>", "<a:Quantity>lots</a:Quantity>"
    )
    with pytest.raises(MalformedReply, match="does not fit the contract"):
        op.read_body(parse_reply(_list_reply(bad)))


def test_a_broken_wsdl_is_a_config_error(tmp_path: Any) -> None:
    from connector.errors import ConfigError

    text = WSDL_PATH.read_text(encoding="utf-8")
    (tmp_path / "truncated.wsdl").write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(ConfigError, match="Cannot load the Severa WSDL"):
        SeveraContract.load(tmp_path / "truncated.wsdl")
    (tmp_path / "empty.wsdl").write_text(
        '<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" targetNamespace="urn:x"/>', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="declares no SOAP bindings"):
        SeveraContract.load(tmp_path / "empty.wsdl")


def test_a_wsdl_with_a_dtd_is_refused(tmp_path: Any) -> None:
    from connector.errors import ConfigError

    text = WSDL_PATH.read_text(encoding="utf-8")
    text = text.replace(
        "<wsdl:definitions", '<!DOCTYPE wsdl:definitions [<!ENTITY x "y">]>\n<wsdl:definitions', 1
    )
    (tmp_path / "dtd.wsdl").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        SeveraContract.load(tmp_path / "dtd.wsdl")
