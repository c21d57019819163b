"""Request parsing and response building, held to the shipped WSDL in both directions by zeep.

The fake never hand-writes a success envelope: it reads each request body with the operation's
zeep input element and renders each answer with the operation's zeep output message, both taken
from the very ``severa.wsdl`` the connector loads. A request the contract does not allow fails here
(as WCF's ``DeserializationFailed``), and an answer the contract does not allow fails here too
(a bug in the fake, surfacing as an internal error), so the fake cannot drift from the contract
without its own tests noticing.

Values cross this boundary in two shapes:

* *store values* (what handlers and the store use): entities are plain ``dict``s keyed by member
  name holding ``str``/``int``/``bool``/``Decimal``/``datetime``/``bytes``, arrays are ``list``s,
  flag enums are ``int``s;
* *wire values* (what zeep renders/returns): ``ArrayOfX`` wrappers, ``xsd.Nil`` for nulls, enum
  name lists.

:func:`from_wire` and :func:`to_wire` convert between them, driven by :data:`spec.SPEC`. They apply
WCF's rules on the way: a missing value-type member deserialises to its .NET default (``0``,
``false``, ``0001-01-01T00:00:00``), and a null reference member is *sent* as ``i:nil="true"`` —
WCF writes every data member, it never omits one.

Parsing the WSDL costs tens of milliseconds and the result is immutable in use, so one
:class:`SoapCodec` per WSDL path is built per process (:func:`get_codec`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import zeep
from lxml import etree
from zeep import xsd
from zeep.exceptions import Error as ZeepError
from zeep.xsd.context import XmlParserContext

from adapters.severa.fake.soap import (
    NS_SOAP_ENV,
    NS_XSI,
    deserialization_failed,
)
from adapters.severa.wsdl import WSDL_PATH
from adapters.severa.wsdl.spec import (
    NS_API,
    NS_ARRAYS,
    NS_ENTITIES,
    NS_SERVICE,
    SPEC,
    Operation,
    Primitive,
    ServiceSpec,
    TypeKind,
    TypeRef,
)

DOTNET_MIN_DATETIME: Final = dt.datetime(1, 1, 1)
"""``DateTime.MinValue``: what WCF puts in a ``DateTime`` member the sender left out."""

_VALUE_DEFAULTS: Final[Mapping[Primitive, Any]] = {
    Primitive.INT: 0,
    Primitive.LONG: 0,
    Primitive.BOOL: False,
    Primitive.DECIMAL: Decimal(0),
    Primitive.DATETIME: DOTNET_MIN_DATETIME,
}

# Prefixes hoisted onto the response envelope so that zeep's per-element declarations collapse
# (halves the size of entity-heavy answers for ~3 % more serialising time).
_RESPONSE_NSMAP: Final = {
    "s": NS_SOAP_ENV,
    "tns": NS_SERVICE,
    "a": NS_ENTITIES,
    "b": NS_ARRAYS,
    "c": NS_API,
    "i": NS_XSI,
}


class SoapCodec:
    """Parses request bodies and renders response envelopes for every operation of the spec."""

    def __init__(self, wsdl_path: Path = WSDL_PATH, spec: ServiceSpec = SPEC) -> None:
        self.spec = spec
        self.wsdl_path = wsdl_path
        # strict=True: an element the contract does not allow in a request is an error, not noise.
        # zeep is only partly typed: its WSDL objects are handled as Any here.
        self._client: Any = zeep.Client(  # type: ignore[no-untyped-call]
            str(wsdl_path), settings=zeep.Settings(strict=True)
        )
        self._operations: dict[str, Any] = {}
        for contract in spec.contracts:
            binding: Any = self._client.wsdl.bindings[f"{{{NS_SERVICE}}}{contract.binding_name}"]
            for operation in contract.operations:
                self._operations[operation.name] = binding.get(operation.name)
        self._context_settings = self._client.wsdl.settings
        self._types = self._client.wsdl.types

    @property
    def client(self) -> Any:
        """The zeep client the codec is built on (tests use it to build envelopes)."""
        return self._client

    def decode_arguments(self, operation: Operation, envelope: etree._Element) -> dict[str, Any]:
        """The request's parameters as store values, keyed by wire parameter name.

        Raises :class:`ProtocolFault` (``DeserializationFailed``) when the body is not this
        operation's wrapper or does not match its schema.
        """
        body = envelope.find(f"{{{NS_SOAP_ENV}}}Body")
        children = [] if body is None else [child for child in body if isinstance(child.tag, str)]
        expected = f"{{{NS_SERVICE}}}{operation.name}"
        if len(children) != 1 or children[0].tag != expected:
            found = children[0].tag if children else "nothing"
            raise deserialization_failed(
                operation,
                f"Expecting element '{operation.name}' from namespace '{NS_SERVICE}', found {found}.",
            )
        zeep_operation = self._operations[operation.name]
        try:
            parsed = zeep_operation.input.body.parse(
                children[0],
                self._types,
                context=XmlParserContext(settings=self._context_settings),  # type: ignore[no-untyped-call]
            )
            return {
                parameter.name: from_wire(self.spec, parameter.type, parsed[parameter.name])
                for parameter in operation.parameters
            }
        except (ZeepError, ValueError, TypeError, ArithmeticError) as exc:
            raise deserialization_failed(operation, str(exc)) from exc

    def encode_result(
        self, operation: Operation, value: Any, headers: list[etree._Element]
    ) -> etree._Element:
        """The response envelope for *value* (a store value), with *headers* in ``s:Header``."""
        zeep_operation = self._operations[operation.name]
        if operation.returns.is_void:
            message = zeep_operation.output.serialize()
        else:
            wire = to_wire(self.spec, operation.returns, value)
            message = zeep_operation.output.serialize(**{operation.result_element: wire})
        envelope: etree._Element = message.content
        if headers:
            header = etree.Element(f"{{{NS_SOAP_ENV}}}Header")
            header.extend(headers)
            envelope.insert(0, header)
        etree.cleanup_namespaces(envelope, top_nsmap=_RESPONSE_NSMAP)
        return envelope

    def build_request(
        self, operation: Operation, headers: list[etree._Element] | None = None, **arguments: Any
    ) -> bytes:
        """A request envelope for *operation*, as a zeep client would send it (used by tests/tools)."""
        zeep_operation = self._operations[operation.name]
        message = zeep_operation.input.serialize(**arguments, _soapheaders=headers or None)
        return bytes(etree.tostring(message.content))

    def decode_result(self, operation: Operation, envelope: etree._Element) -> Any:
        """What a zeep client makes of a success envelope (zeep's own unwrapping rules)."""
        return self._operations[operation.name].output.deserialize(envelope)

    def parse_fault_detail(self, detail_child: etree._Element) -> Any:
        """Parse a fault ``detail`` child with its WSDL element (proves the detail matches the schema)."""
        element: Any = self._types.get_element(detail_child.tag)
        return element.parse(detail_child, self._types)


@functools.cache
def get_codec(wsdl_path: Path = WSDL_PATH) -> SoapCodec:
    """The process-wide codec for *wsdl_path* (built on first use)."""
    return SoapCodec(wsdl_path)


# --------------------------------------------------------------------------------------------------
# Store values <-> wire values


def _default(spec: ServiceSpec, ref: TypeRef) -> Any:
    """The .NET default of a non-nillable value type."""
    kind = spec.kind(ref)
    if kind is TypeKind.ENUM:
        return 0
    primitive = ref.primitive
    assert primitive is not None, f"{ref} is not a primitive"
    assert primitive.is_value_type, f"{ref} has no value-type default"
    return _VALUE_DEFAULTS[primitive]


def from_wire(spec: ServiceSpec, ref: TypeRef, value: Any) -> Any:
    """Convert a zeep-parsed value of type *ref* into a store value."""
    if value is None or value is xsd.Nil:
        return None if spec.nillable(ref) else _default(spec, ref)
    if ref.array:
        # zeep hands arrays over either already unwrapped or as the ArrayOfX compound.
        items = value if isinstance(value, list) else (value[ref.name] or [])
        return [from_wire(spec, ref.item, item) for item in items]
    kind = spec.kind(ref)
    if kind is TypeKind.COMPLEX:
        complex_type = spec.complex_type(ref.name)
        return {m.name: from_wire(spec, m.type, value[m.name]) for m in complex_type.members}
    if kind is TypeKind.ENUM:
        return spec.enum(ref.name).to_int(value)
    if ref.primitive is Primitive.DECIMAL:
        return Decimal(value)
    return value


def to_wire(spec: ServiceSpec, ref: TypeRef, value: Any) -> Any:
    """Convert a store value of type *ref* into what zeep renders (WCF-style: nulls as ``nil``)."""
    if value is None:
        return xsd.Nil if spec.nillable(ref) else to_wire(spec, ref, _default(spec, ref))
    if ref.array:
        return {ref.name: [to_wire(spec, ref.item, item) for item in value]}
    kind = spec.kind(ref)
    if kind is TypeKind.COMPLEX:
        complex_type = spec.complex_type(ref.name)
        return {m.name: to_wire(spec, m.type, value.get(m.name)) for m in complex_type.members}
    if kind is TypeKind.ENUM:
        return spec.enum(ref.name).to_names(int(value))
    return value
