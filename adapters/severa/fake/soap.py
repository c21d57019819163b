"""SOAP 1.1 faults and headers exactly as Severa's WCF endpoint sends them.

Two families of faults leave the fake:

* :class:`ServiceFault` — Severa's *typed* faults (``ValidationException`` …, plus the undeclared
  ``QuotaLimitExceededException``): ``s:Fault`` with ``faultcode`` ``s:Client`` (``s:Server`` for
  ``GeneralFailure``), ``faultstring`` = the description, and a ``detail`` holding
  ``<XException xmlns="…/Severa.API"><Description/><Source/></XException>``, HTTP 500.
  WCF's ``FaultException<T>`` defaults to the *Sender* code, which SOAP 1.1 spells ``s:Client``; the
  vendor documents ``s:Client`` for the quota fault.
* :class:`ProtocolFault` — WCF's own dispatcher faults, raised before any Severa code runs:
  ``a:ActionNotSupported`` (unknown ``SOAPAction``), ``a:DeserializationFailed`` (a body that does
  not match the contract), ``s:MustUnderstand``, ``s:VersionMismatch``. No ``detail``, HTTP 500.

The ``Quota`` / ``UsedQuota`` headers Severa adds to every answer are built here too. Envelopes are
built with lxml (zeep has no server-side fault writer); the tests parse every ``detail`` with the
WSDL's element to prove it matches the contract.
"""

from __future__ import annotations

from typing import Any, Final

from lxml import etree

from adapters.severa.wsdl.spec import NS_API, NS_SERVICE, Fault, Operation

NS_SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"
NS_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
NS_XML: Final = "http://www.w3.org/XML/1998/namespace"
NS_WCF_DISPATCHER: Final = (
    "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"
)
NS_WCF_ADDRESSING_NONE: Final = "http://schemas.microsoft.com/ws/2005/05/addressing/none"

CONTENT_TYPE: Final = "text/xml; charset=utf-8"
DEFAULT_FAULT_SOURCE: Final = "Severa.API"
"""``Exception.Source`` as .NET fills it: the assembly that threw."""

QUOTA_LIMIT_MESSAGE: Final = "Quota limit reached"
"""The vendor's documented text for the quota fault."""


class ServiceFault(Exception):
    """A typed Severa fault; raise it from a handler (or the pipeline) to answer with it."""

    def __init__(self, fault: Fault, description: str, *, source: str = DEFAULT_FAULT_SOURCE) -> None:
        super().__init__(description)
        self.fault = fault
        self.description = description
        self.source = source

    @property
    def faultcode(self) -> str:
        """``s:Server`` for a failure on Severa's side, ``s:Client`` for everything the caller caused."""
        return "s:Server" if self.fault is Fault.GENERAL_FAILURE else "s:Client"

    def __repr__(self) -> str:
        return f"ServiceFault({self.fault.value!r}, {self.description!r})"


class ProtocolFault(Exception):
    """A WCF dispatcher fault (no typed detail): routing, deserialisation, header processing."""

    def __init__(self, code_namespace: str, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code_namespace = code_namespace
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"ProtocolFault({self.code!r}, {self.reason!r})"


def action_not_supported(action: str) -> ProtocolFault:
    """WCF's answer to a ``SOAPAction`` no contract declares (verbatim WCF wording)."""
    return ProtocolFault(
        NS_WCF_ADDRESSING_NONE,
        "ActionNotSupported",
        f"The message with Action '{action}' cannot be processed at the receiver, due to a "
        "ContractFilter mismatch at the EndpointDispatcher. This may be because of either a contract "
        "mismatch (mismatched Actions between sender and receiver) or a binding/security mismatch "
        "between the sender and the receiver.  Check that sender and receiver have the same contract "
        "and the same binding (including security requirements, e.g. Message, Transport, None).",
    )


def deserialization_failed(operation: Operation, problem: str) -> ProtocolFault:
    """WCF's answer to a body its ``DataContractSerializer`` cannot read."""
    return ProtocolFault(
        NS_WCF_DISPATCHER,
        "DeserializationFailed",
        "The formatter threw an exception while trying to deserialize the message: There was an error "
        f"while trying to deserialize parameter {NS_SERVICE}:{operation.name}. {problem}",
    )


def must_understand(tag: str) -> ProtocolFault:
    qname = etree.QName(tag)
    return ProtocolFault(
        NS_SOAP_ENV,
        "MustUnderstand",
        f"The header '{qname.localname}' from the namespace '{qname.namespace}' was not understood by "
        "the recipient of this message, causing the message to not be processed.  This error typically "
        "indicates that the sender of this message has enabled a communication protocol that the "
        "receiver cannot process.  Please ensure that the configuration of the sender's binding is "
        "consistent with the configuration of the receiver's binding.",
    )


def version_mismatch(tag: str) -> ProtocolFault:
    return ProtocolFault(
        NS_SOAP_ENV,
        "VersionMismatch",
        f"The envelope element {tag} is not a SOAP 1.1 envelope ({NS_SOAP_ENV}); this endpoint is "
        "basicHttpBinding (SOAP 1.1).",
    )


def quota_headers(quota: int, used: int) -> list[etree._Element]:
    """Severa's ``Quota`` and ``UsedQuota`` response headers."""
    headers = []
    for name, value in (("Quota", quota), ("UsedQuota", used)):
        element = etree.Element(f"{{{NS_SERVICE}}}{name}", nsmap={None: NS_SERVICE})  # type: ignore[dict-item]
        element.text = str(value)
        headers.append(element)
    return headers


def _envelope(headers: list[etree._Element]) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"s": NS_SOAP_ENV})
    if headers:
        etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Header").extend(headers)
    body = etree.SubElement(envelope, f"{{{NS_SOAP_ENV}}}Body")
    return envelope, body


def _fault(body: etree._Element, faultcode: str, faultstring: str) -> etree._Element:
    # faultcode/faultstring/detail are unqualified in SOAP 1.1, as WCF writes them.
    fault = etree.SubElement(body, f"{{{NS_SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = faultcode
    reason = etree.SubElement(fault, "faultstring")
    reason.set(f"{{{NS_XML}}}lang", "en-US")
    reason.text = faultstring
    return fault


def service_fault_envelope(fault: ServiceFault, headers: list[etree._Element]) -> bytes:
    """The envelope for a typed fault, detail included."""
    envelope, body = _envelope(headers)
    node = _fault(body, fault.faultcode, fault.description)
    detail = etree.SubElement(node, "detail")
    exception = etree.SubElement(
        detail,
        f"{{{NS_API}}}{fault.fault.exception_name}",
        nsmap={None: NS_API, "i": NS_XSI},  # type: ignore[dict-item]  # lxml-stubs: no default ns key
    )
    etree.SubElement(exception, f"{{{NS_API}}}Description").text = fault.description
    etree.SubElement(exception, f"{{{NS_API}}}Source").text = fault.source
    return bytes(etree.tostring(envelope))


def protocol_fault_envelope(fault: ProtocolFault, headers: list[etree._Element] | None = None) -> bytes:
    """The envelope for a dispatcher fault; the code's prefix is declared on ``faultcode`` as WCF does."""
    envelope, body = _envelope(headers or [])
    if fault.code_namespace == NS_SOAP_ENV:
        _fault(body, f"s:{fault.code}", fault.reason)
    else:
        node = _fault(body, f"a:{fault.code}", fault.reason)
        code = node.find("faultcode")
        assert code is not None
        # lxml cannot add a namespace declaration to an existing element; rebuild it with one.
        replacement = etree.Element("faultcode", nsmap={"a": fault.code_namespace})
        replacement.text = code.text
        node.replace(code, replacement)
    return bytes(etree.tostring(envelope))


# --------------------------------------------------------------------------------------------------
# Reading requests

WEB_SERVICE_PASSWORD: Final = f"{{{NS_SERVICE}}}WebServicePassword"
_UNDERSTOOD_HEADERS: Final = frozenset({WEB_SERVICE_PASSWORD})

# DTDs and entities are never loaded or resolved (billion laughs, XXE); huge_tree because Severa
# accepts messages up to 64 MiB.
_PARSER: Final = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, huge_tree=True
)


class MalformedMessage(Exception):
    """The body is not a well-formed XML document without a DTD; WCF answers HTTP 400 with no body."""


def parse_envelope(body: bytes) -> etree._Element:
    """Parse a request body into its SOAP 1.1 ``Envelope`` element."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc}") from exc
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lacks DocInfo.doctype
    if docinfo.doctype:
        raise MalformedMessage("DTDs are prohibited")
    if root.tag != f"{{{NS_SOAP_ENV}}}Envelope":
        raise version_mismatch(str(root.tag))
    return root


def _header_entries(envelope: etree._Element) -> list[etree._Element]:
    header = envelope.find(f"{{{NS_SOAP_ENV}}}Header")
    if header is None:
        return []
    return [entry for entry in header if isinstance(entry.tag, str)]


def check_must_understand(envelope: etree._Element) -> None:
    """Fault on a header the sender marked ``mustUnderstand`` that Severa does not process.

    Other headers (zeep's WS-Addressing ``Action``/``MessageID``/``To``, for one) are ignored, as
    basicHttpBinding ignores them.
    """
    for entry in _header_entries(envelope):
        if (
            entry.get(f"{{{NS_SOAP_ENV}}}mustUnderstand") in ("1", "true")
            and entry.tag not in _UNDERSTOOD_HEADERS
        ):
            raise must_understand(str(entry.tag))


def web_service_password(envelope: etree._Element) -> str | None:
    """The API key from the ``WebServicePassword`` header, or ``None`` if the header is absent."""
    for entry in _header_entries(envelope):
        if entry.tag == WEB_SERVICE_PASSWORD:
            return entry.text or ""
    return None


def internal_error() -> ProtocolFault:
    """WCF's answer when the service itself throws something that is not a declared fault."""
    return ProtocolFault(
        NS_WCF_DISPATCHER,
        "InternalServiceFault",
        "The server was unable to process the request due to an internal error.  For more information "
        "about the error, either turn on IncludeExceptionDetailInFaults (either from "
        "ServiceBehaviorAttribute or from the <serviceDebug> configuration behavior) on the server in "
        "order to send the exception information back to the client, or turn on tracing as per the "
        "Microsoft .NET Framework SDK documentation and inspect the server trace logs.",
    )
