"""Severa's SOAP contract: zeep builds the request envelopes and reads the replies, nothing more.

zeep is used for what it is good at — knowing the WSDL's types — and kept off the wire (that is
aiohttp's job, see :mod:`adapters.severa.client`). The WSDL shipped in the package is parsed once per
process (:func:`default_contract`); each :class:`Operation` then

* builds the envelope with ``operation.input.serialize`` (the same code path as
  ``zeep.Client.create_message`` minus the plugin/WS-Addressing machinery we do not use), with the
  ``WebServicePassword`` SOAP header our WSDL does not declare, and
* reads a reply in three steps: a hardened lxml parse (no DTD, no entities, no network, no
  recovery of broken XML), our own look at the SOAP header (``Quota``/``UsedQuota``) and fault,
  then ``operation.process_reply`` for the body.

One zeep behaviour needs a guard: in non-strict mode zeep's ``xsd:sequence`` parser is positional,
so a single element it does not know (Severa's live service adds members such as ``CaseName``
between ``CaseGUID`` and ``Description``) makes it give up on the rest of the sequence and silently
return ``None`` for every later field. :meth:`Operation.read_body` therefore first removes, guided by
zeep's own type information, the elements our contract does not declare. That keeps the promise of
``Settings(strict=False)`` — a newer service with more fields still works — without losing data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zeep
from lxml import etree
from zeep.xsd import ComplexType
from zeep.xsd.elements import Any as XsdAny

from adapters.severa import envelopes
from connector.errors import ConfigError

WSDL_PATH: Final = Path(__file__).parent / "wsdl" / "severa.wsdl"

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SEVERA_NS: Final = "http://soap.severa.com/"
ENTITIES_NS: Final = "http://schemas.datacontract.org/2004/07/Severa.Entities.API"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

_ENVELOPE: Final = f"{{{SOAP_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP_ENV_NS}}}Body"
_FAULT: Final = f"{{{SOAP_ENV_NS}}}Fault"
_QUOTA: Final = f"{{{SEVERA_NS}}}Quota"
_USED_QUOTA: Final = f"{{{SEVERA_NS}}}UsedQuota"
_PASSWORD: Final = f"{{{SEVERA_NS}}}WebServicePassword"
_XSI_NIL: Final = f"{{{XSI_NS}}}nil"
_XSI_TYPE: Final = f"{{{XSI_NS}}}type"

# Hoisting the namespaces to the envelope makes the request about a third smaller than zeep's
# one-declaration-per-element output and is no slower to produce (the serializer has less to write).
_REQUEST_NSMAP: Final = {"s": SOAP_ENV_NS, "sev": SEVERA_NS, "ent": ENTITIES_NS, "i": XSI_NS}


@dataclass(frozen=True, slots=True)
class OperationRef:
    """Names one Severa operation: its service contract (``IHourEntry``) and operation name.

    ``authenticated`` is False only for the two ``IAPI`` calls that need no key; ``write`` marks
    calls that change data, for which a lost answer leaves the outcome unknown.
    """

    contract: str
    name: str
    authenticated: bool = True
    write: bool = False

    @property
    def soap_action(self) -> str:
        return f"{SEVERA_NS}{self.contract}/{self.name}"

    @property
    def label(self) -> str:
        """``IHourEntry.AddNewHourEntry``: the metrics label and the name used in messages."""
        return f"{self.contract}.{self.name}"

    def __str__(self) -> str:
        return self.name


class Ops:
    """The operations the adapter uses (the catalogue checked when the contract loads)."""

    GET_VERSION: Final = OperationRef("IAPI", "GetVersion", authenticated=False)
    GET_ENTITY_SCHEMA_VERSION: Final = OperationRef("IAPI", "GetEntitySchemaVersion", authenticated=False)
    GET_USER_BY_CODE: Final = OperationRef("IUser", "GetUserByCode")
    GET_ALL_USERS: Final = OperationRef("IUser", "GetAllUsers")
    GET_CASE_BY_NUMBER: Final = OperationRef("ICase", "GetCaseByNumber")
    GET_CASES_CHANGED_SINCE: Final = OperationRef("ICase", "GetCasesChangedSince")
    GET_PHASES_BY_CODE: Final = OperationRef("IPhase", "GetPhasesByCode")
    GET_ALL_WORK_TYPES: Final = OperationRef("IWorkType", "GetAllWorkTypes")
    GET_HOUR_ENTRY_BY_GUID: Final = OperationRef("IHourEntry", "GetHourEntryByGUID")
    GET_HOUR_ENTRIES_BY_DATE_AND_USER: Final = OperationRef("IHourEntry", "GetHourEntriesByDateAndUserGUID")
    GET_HOUR_ENTRIES_CHANGED_SINCE: Final = OperationRef("IHourEntry", "GetHourEntriesChangedSince")
    ADD_HOUR_ENTRY: Final = OperationRef("IHourEntry", "AddNewHourEntry", write=True)
    UPDATE_HOUR_ENTRY: Final = OperationRef("IHourEntry", "UpdateHourEntry", write=True)
    DELETE_HOUR_ENTRY: Final = OperationRef("IHourEntry", "DeleteHourEntry", write=True)
    GET_ALL_INVOICE_STATUSES: Final = OperationRef("IInvoiceStatus", "GetAllInvoiceStatuses")
    GET_INVOICES_BY_STATUS: Final = OperationRef("IInvoice", "GetInvoicesByStatus")
    GET_INVOICE_BY_GUID: Final = OperationRef("IInvoice", "GetInvoiceByGUID")
    GET_INVOICE_BY_NUMBER: Final = OperationRef("IInvoice", "GetInvoiceByNumber")
    ADD_INVOICE_LOG_ENTRY: Final = OperationRef("IInvoice", "AddNewInvoiceLogEntry", write=True)
    SET_INVOICE_STATUS: Final = OperationRef("IInvoice", "SetInvoiceStatus", write=True)
    SET_INVOICE_PAYMENT_DATE: Final = OperationRef("IInvoice", "SetInvoicePaymentDate", write=True)
    GET_CUSTOMERS_CHANGED_SINCE: Final = OperationRef("ICustomer", "GetCustomersChangedSince")
    GET_HEAD_OFFICE_ADDRESS: Final = OperationRef("IAccount", "GetHeadOfficeAddressByAccountGUID")

    @classmethod
    def all(cls) -> tuple[OperationRef, ...]:
        return tuple(v for v in vars(cls).values() if isinstance(v, OperationRef))


class MalformedReply(Exception):
    """The reply is not a SOAP 1.1 envelope we can read (bad XML, DTD, wrong shape, bad values).

    Internal to the adapter: the client turns it into :class:`connector.errors.SeveraUnavailable`.
    """


class RequestNotSerializable(Exception):
    """The arguments do not fit the operation's input message (a bug or bad data, never Severa's)."""


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A SOAP 1.1 fault as Severa sends it: ``faultcode``, ``faultstring`` and a typed ``detail``.

    ``detail_type`` is the local name of the detail's first element (``ValidationException``), and
    ``description`` its ``Description`` member, the human text Severa puts there.
    """

    code: str | None
    string: str
    detail_type: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class Reply:
    """What an envelope told us before the body is read with zeep."""

    envelope: etree._Element
    body: etree._Element
    fault: SoapFault | None
    quota: int | None
    used_quota: int | None


# A parser per process is fine: the event loop uses it from one thread, one parse at a time.
_REPLY_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=True,  # 64 MiB answers are legitimate (Severa's advice)
    remove_comments=True,
    remove_pis=True,
    recover=False,  # a truncated or garbled reply must fail, not be "repaired" into wrong data
)


def parse_reply(content: bytes | bytearray) -> Reply:
    """Parse a reply safely and pick out fault and quota headers; raises :class:`MalformedReply`.

    ``content`` may be the client's receive buffer: nothing here copies it (``strip()`` would).
    """
    if not content or content.isspace():
        raise MalformedReply("empty body")
    try:
        # lxml reads any buffer; its stubs only admit str and bytes.
        root = etree.fromstring(content, _REPLY_PARSER)  # type: ignore[arg-type]
    except etree.XMLSyntaxError as exc:
        raise MalformedReply(f"not well-formed XML ({exc.msg})") from exc
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype:
        # A DTD is never legitimate in SOAP (SOAP 1.1 §3) and is how entity-expansion attacks start.
        raise MalformedReply("the reply carries a DTD, which SOAP forbids")
    if root.tag != _ENVELOPE:
        raise MalformedReply(f"root element is {etree.QName(root).localname!r}, not a SOAP 1.1 Envelope")
    # The first Header and Body children, as find() would give them; one pass over the root's
    # children with lxml matching the tags, instead of an ElementPath search per element.
    header = body = None
    for child in root.iterchildren(_HEADER, _BODY):
        if child.tag == _BODY:
            if body is None:
                body = child
        elif header is None:
            header = child
    if body is None:
        raise MalformedReply("the envelope has no Body")
    quota = used = None
    if header is not None:
        quota_text = used_text = None
        for child in header.iterchildren(_QUOTA, _USED_QUOTA):
            if child.tag == _QUOTA:
                if quota_text is None:
                    quota_text = child.text or ""
            elif used_text is None:
                used_text = child.text or ""
        quota, used = _int_or_none(quota_text), _int_or_none(used_text)
    fault_node = next(body.iterchildren(_FAULT), None)
    fault = _read_fault(fault_node) if fault_node is not None else None
    return Reply(envelope=root, body=body, fault=fault, quota=quota, used_quota=used)


def _read_fault(node: etree._Element) -> SoapFault:
    # SOAP 1.1 fault children are unqualified.
    code = node.findtext("faultcode")
    string = (node.findtext("faultstring") or "").strip()
    detail_type = description = None
    detail = node.find("detail")
    if detail is not None:
        typed = next((child for child in detail if isinstance(child.tag, str)), None)
        if typed is not None:
            detail_type = etree.QName(typed).localname
            for child in typed:
                if isinstance(child.tag, str) and etree.QName(child).localname == "Description":
                    description = (child.text or "").strip() or None
                    break
    return SoapFault(
        code=code.strip() if code else None, string=string, detail_type=detail_type, description=description
    )


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


class Operation:
    """One operation of the contract, ready to build requests and read replies."""

    __slots__ = ("_contract", "_fast_build", "_fast_result", "_zeep_op", "http_headers", "ref")

    def __init__(self, ref: OperationRef, zeep_operation: Any, contract: SeveraContract) -> None:
        self.ref = ref
        self._zeep_op = zeep_operation
        self._contract = contract
        # The per-event call has a precompiled envelope and reply reader (adapters.severa.envelopes);
        # zeep builds and reads everything else, and whatever the template does not cover.
        self._fast_build: Callable[[Mapping[str, Any], str], bytes | None] | None = None
        self._fast_result: str | None = None
        if ref == Ops.ADD_HOUR_ENTRY and contract.fast_envelopes:
            self._fast_build = envelopes.build_add_new_hour_entry
            self._fast_result = f"{{{SEVERA_NS}}}{ref.name}Result"
        # WCF routes on the SOAPAction header and expects it quoted (SOAP 1.1 §6.1.1).
        self.http_headers: Mapping[str, str] = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{zeep_operation.soapaction or ref.soap_action}"',
        }

    def build(self, params: Mapping[str, Any], api_key: str | None) -> bytes:
        """The request envelope as UTF-8 bytes, with the ``WebServicePassword`` header if a key is given."""
        if self._fast_build is not None and api_key is not None:
            try:
                fast = self._fast_build(params, api_key)
            except envelopes.NotXmlText as exc:
                raise RequestNotSerializable(f"{type(exc).__name__}: {exc}") from exc
            if fast is not None:
                return fast
        headers: list[etree._Element] = []
        if api_key is not None:
            # A fresh element each call: lxml moves an element into the tree it is appended to.
            # Its namespace is declared once on the envelope by the clean-up below.
            password = etree.Element(_PASSWORD)
            password.text = api_key
            headers.append(password)
        try:
            serialized = self._zeep_op.input.serialize(**params, _soapheaders=headers or None)
        except (TypeError, ValueError, zeep.exceptions.Error) as exc:
            # zeep's messages name the element and the value's type; never the key (it is not a param).
            raise RequestNotSerializable(f"{type(exc).__name__}: {exc}") from exc
        envelope: etree._Element = serialized.content
        etree.cleanup_namespaces(envelope, top_nsmap=_REQUEST_NSMAP)
        return etree.tostring(envelope, encoding="utf-8", xml_declaration=True)

    def read_body(self, reply: Reply) -> Any:
        """The operation's result as zeep objects (``None`` for a nil result)."""
        wrapper = next((child for child in reply.body if isinstance(child.tag, str)), None)
        body_element = self._zeep_op.output.body
        if wrapper is None or wrapper.tag != body_element.qname:
            found = etree.QName(wrapper).localname if wrapper is not None else "nothing"
            raise MalformedReply(f"expected {body_element.qname.localname} in the Body, found {found}")
        try:
            if self._fast_result is not None:
                return envelopes.read_hour_entry_result(wrapper, self._fast_result)
            self._contract.prune(wrapper, body_element.type)
            results = [child for child in wrapper if isinstance(child.tag, str)]
            if len(results) == 1 and results[0].get(_XSI_NIL) == "true":
                # zeep reads a nil complex result as an object whose members are all None; Severa's
                # "no such record" must stay None.
                return None
            return self._zeep_op.process_reply(reply.envelope)
        except (ValueError, TypeError, ArithmeticError, zeep.exceptions.Error) as exc:
            # e.g. "abc" where a decimal belongs: the answer is not something we can trust.
            raise MalformedReply(f"the {self.ref.name} result does not fit the contract ({exc})") from exc

    def parse_request(self, envelope: bytes) -> Any:
        """Read a request envelope back with the input message: the wrapper element's members by
        name (contract tests use it to prove what we send is what the WSDL describes)."""
        root = etree.fromstring(envelope, _REPLY_PARSER)
        wrapper = root.find(f"{_BODY}/{self._zeep_op.input.body.qname.text}")
        if wrapper is None:
            raise MalformedReply(f"no {self.ref.name} element in the Body")
        return self._zeep_op.input.body.parse(wrapper, self._contract.zeep_client.wsdl.types)


_Shape = dict[str, Any]
_zeep_client: Any = zeep.Client  # untyped constructor


class SeveraContract:
    """The WSDL, parsed once, and the operations the adapter uses, looked up once."""

    def __init__(self, client: zeep.Client, source: Path, *, fast_envelopes: bool = True) -> None:
        self.source = source
        #: Whether the per-event call uses the precompiled envelope (off: zeep for every call,
        #: which the tests compare it with).
        self.fast_envelopes = fast_envelopes
        self._client: Any = client  # zeep's typing stops short of its WSDL objects
        self._bindings: dict[str, Any] = {}
        bindings: dict[Any, Any] = self._client.wsdl.bindings
        for binding in bindings.values():
            contract = etree.QName(str(binding.port_type.name)).localname
            self._bindings.setdefault(contract, binding)
        self._operations: dict[OperationRef, Operation] = {}
        self._shapes: dict[int, _Shape | None] = {}
        self._missing = tuple(ref for ref in Ops.all() if self._lookup(ref) is None)

    @classmethod
    def load(cls, path: Path = WSDL_PATH, *, fast_envelopes: bool = True) -> SeveraContract:
        """Parse the WSDL file; raises :class:`connector.errors.ConfigError` if it is unusable.

        ``fast_envelopes=False`` builds and reads every call with zeep (the reference the
        precompiled envelopes are tested against)."""
        settings = zeep.Settings(
            # Strict while reading our own WSDL: in non-strict mode lxml "recovers" a damaged file
            # into a silently partial contract. Relaxed below for replies.
            strict=True,
            xml_huge_tree=True,
            # Never fetch anything while reading our own WSDL, and refuse DTDs/entities outright
            # (zeep's default forbids entities but allows a DTD).
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        try:
            client = _zeep_client(str(path), settings=settings)
        except (OSError, zeep.exceptions.Error, etree.XMLSyntaxError) as exc:
            raise ConfigError(
                f"Cannot load the Severa WSDL {path} ({type(exc).__name__}: {exc}): the package is broken.",
                reason="severa_wsdl_unusable",
            ) from exc
        # Tolerate what the real, newer service adds to replies (zeep reads this setting per parse;
        # our pruning keeps it lossless, see the module doc).
        settings.strict = False
        contract = cls(client, path, fast_envelopes=fast_envelopes)
        if not contract.contracts:
            raise ConfigError(
                f"The Severa WSDL {path} declares no SOAP bindings.", reason="severa_wsdl_unusable"
            )
        return contract

    @property
    def zeep_client(self) -> zeep.Client:
        client: zeep.Client = self._client
        return client

    @property
    def contracts(self) -> Sequence[str]:
        return sorted(self._bindings)

    @property
    def operation_count(self) -> int:
        return sum(len(binding._operations) for binding in self._bindings.values())

    @property
    def missing(self) -> tuple[OperationRef, ...]:
        """Operations of :class:`Ops` this WSDL lacks (empty for a good WSDL)."""
        return self._missing

    def operation(self, ref: OperationRef) -> Operation:
        op = self._operations.get(ref)
        if op is None:
            zeep_op = self._lookup(ref)
            if zeep_op is None:
                raise ConfigError(
                    f"The Severa WSDL {self.source} has no operation {ref.label}.",
                    reason="severa_operation_missing",
                    operation=ref.label,
                )
            op = self._operations[ref] = Operation(ref, zeep_op, self)
        return op

    def _lookup(self, ref: OperationRef) -> Any:
        binding = self._bindings.get(ref.contract)
        if binding is None:
            return None
        return binding._operations.get(ref.name)

    def prune(self, node: etree._Element, xsd_type: Any) -> None:
        """Drop the child elements (recursively) that ``xsd_type`` does not declare; see module doc."""
        shape = self._shape(xsd_type)
        if shape is None:
            return
        for child in list(node):
            tag = child.tag
            if not isinstance(tag, str) or tag not in shape:
                node.remove(child)
                continue
            child_type = shape[tag]
            if child_type is not None and child.get(_XSI_NIL) != "true" and child.get(_XSI_TYPE) is None:
                self.prune(child, child_type)

    def _shape(self, xsd_type: Any) -> _Shape | None:
        """Declared child tags of a complex type → their complex type (or None); None = do not prune."""
        key = id(xsd_type)
        try:
            return self._shapes[key]
        except KeyError:
            pass
        shape: _Shape | None = None
        if isinstance(xsd_type, ComplexType):
            shape = {}
            for _name, element in xsd_type.elements:
                if isinstance(element, XsdAny):
                    shape = None  # open content: whatever comes is meant to be there
                    break
                child_type = element.type
                shape[element.qname.text] = child_type if isinstance(child_type, ComplexType) else None
        self._shapes[key] = shape
        return shape


@functools.cache
def default_contract() -> SeveraContract:
    """The contract from the WSDL shipped in the package, parsed on first use, once per process."""
    return SeveraContract.load(WSDL_PATH)
