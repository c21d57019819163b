"""The Severa SOAP contracts as Python data: the single source the WSDL and the fake are built from.

Everything here is transcribed from the team's contract notes (``severa-contracts.md``, read from a
WCF proxy generated from Severa's WSDL): operation names, parameter names, order and types, return
types and the declared faults *in documented order*, and every documented entity with its members.
Signatures are written in the document's own C#-like notation and parsed at import into frozen
dataclasses, so a reviewer can hold this file line by line against the document; a typo fails the
import, not a test run against the real service.

Conventions carried over from WCF, because the real service is WCF:

* Entity members are serialised in WCF ``DataContract`` order: members without an explicit
  ``Order`` first, ordinal (uppercase before lowercase) by name, then the ordered ones (Invoice's
  ``NotesAfterInvoiceRows`` / ``NotesBeforeInvoiceRows``, Order 63 / 64). The order is checked at
  import by :func:`wcf_member_order`.
* Value types (``int``, ``long``, ``bool``, ``decimal``, ``DateTime``, enums) are non-nillable
  unless written ``T?`` / ``Nullable<T>``; reference types (``string``, ``byte[]``, entities,
  arrays) are always nillable.
* Faults: ``SeveraApiException {Description, Source}`` and its five declared subtypes live in the
  ``Severa.API`` data-contract namespace. ``QuotaLimitExceeded`` and ``TosNotApproved`` are
  documented but not declared by any operation (see :class:`Fault`), so they are not in the WSDL.

Decision on undocumented nested types. The document names types whose members it does not list:
``InvoiceBuyerOrganization``, ``InvoiceConfig``, ``InvoiceDetails``, ``InvoiceSellerContact``,
``InvoiceSellerOrganization`` (Invoice members), ``WorkDayInfo``, ``BillingAndExpenseForecast``,
``AccountTiny``, ``Contact``, ``SeveraFinvoice``, ``Finvoice``, ``InvoiceInformation``,
``InvoiceFile`` and ``InvoiceOriginDetails`` (operation parameters / results). We do not invent
members for them. Each is declared as a complexType with an *empty* sequence in the entities
namespace (an assumption: their real namespace is not documented either; ``documented=False``
here), whose ``xs:documentation`` in the WSDL says so and names the documented members that carry
the same information, where there are any (:data:`PLACEHOLDER_HINTS`), so that

* every documented operation is present in the WSDL with its exact signature, and
* a zeep client meets them as "no content": zeep parses an empty complexType as ``None`` whatever
  elements the live service puts inside, so the real, richer payload is tolerated rather than
  rejected. The price: through this WSDL such values carry no data (``GetAllAccounts`` yields one
  ``None`` per ``AccountTiny``), and a *request* that needs their content (``AddNewAccount``'s
  ``Contact``, ``CreateInvoices``) cannot be expressed. The connector uses none of them.

If the vendor's real WSDL is ever obtained, replace the placeholders with the real members here and
regenerate (``python -m adapters.severa.wsdl.generate``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

NS_SERVICE: Final = "http://soap.severa.com/"
"""Service contracts, operation wrappers, SOAPAction prefix, ``WebServicePassword`` / quota headers."""
NS_ENTITIES: Final = "http://schemas.datacontract.org/2004/07/Severa.Entities.API"
"""Entities (HourEntry, Case, …) and their ``ArrayOfX`` wrappers."""
NS_API: Final = "http://schemas.datacontract.org/2004/07/Severa.API"
"""Fault details and option enums."""
NS_ARRAYS: Final = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
"""WCF's namespace for arrays of primitives (``ArrayOfstring``)."""

DEFAULT_ADDRESS: Final = "https://sync.severa.com/webservice/S3/API.svc"
"""The production endpoint: every port of the generated WSDL points here."""
SERVICE_NAME: Final = "API"
"""The single ``wsdl:service`` (WCF names it after the ``.svc``)."""


class Primitive(enum.StrEnum):
    """The C# primitives the contracts use, spelled as in the document."""

    STRING = "string"
    INT = "int"
    LONG = "long"
    BOOL = "bool"
    DECIMAL = "decimal"
    DATETIME = "DateTime"
    BYTES = "byte[]"

    @property
    def is_value_type(self) -> bool:
        """C# value types cannot be null unless wrapped in ``Nullable<T>``."""
        return self not in (Primitive.STRING, Primitive.BYTES)

    @property
    def xsd_name(self) -> str:
        """Local name of the XML Schema built-in type WCF maps this primitive to."""
        return _XSD_NAMES[self]


_XSD_NAMES: Final[Mapping[Primitive, str]] = MappingProxyType(
    {
        Primitive.STRING: "string",
        Primitive.INT: "int",
        Primitive.LONG: "long",
        Primitive.BOOL: "boolean",
        Primitive.DECIMAL: "decimal",
        Primitive.DATETIME: "dateTime",
        Primitive.BYTES: "base64Binary",
    }
)

VOID: Final = "void"
_PRIMITIVE_NAMES: Final = frozenset(p.value for p in Primitive)


class TypeKind(enum.Enum):
    """What a :class:`TypeRef` names, resolved against :data:`SPEC`."""

    VOID = "void"
    PRIMITIVE = "primitive"
    COMPLEX = "complex"
    ENUM = "enum"


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A type as written in a signature: ``string``, ``DateTime?``, ``Nullable<int>``, ``HourEntry[]``.

    ``byte[]`` is the primitive ``base64Binary``, not an array of bytes.
    """

    name: str
    nullable: bool = False
    array: bool = False

    @classmethod
    def parse(cls, text: str) -> TypeRef:
        """Parse the document's notation; ``T?`` and ``Nullable<T>`` mean the same."""
        text = text.strip()
        if text == Primitive.BYTES:
            return cls(Primitive.BYTES)
        if match := re.fullmatch(r"Nullable<(\w+)>", text):
            return cls(match.group(1), nullable=True)
        if text.endswith("?"):
            return cls(text[:-1], nullable=True)
        if text.endswith("[]"):
            return cls(text[:-2], array=True)
        if not re.fullmatch(r"\w+", text):
            raise ValueError(f"unparseable type {text!r}")
        return cls(text)

    @property
    def item(self) -> TypeRef:
        """The element type of an array."""
        if not self.array:
            raise ValueError(f"{self} is not an array")
        return TypeRef(self.name)

    @property
    def is_void(self) -> bool:
        return self.name == VOID

    @property
    def primitive(self) -> Primitive | None:
        """The primitive this names (arrays excluded), or ``None``."""
        if self.array:
            return None
        try:
            return Primitive(self.name)
        except ValueError:
            return None

    def __str__(self) -> str:
        if self.array:
            return f"{self.name}[]"
        return f"{self.name}?" if self.nullable else self.name


@dataclass(frozen=True, slots=True)
class Parameter:
    """One operation parameter; its name is the wire element name inside the request wrapper."""

    name: str
    type: TypeRef


class Fault(enum.StrEnum):
    """Severa's typed faults, named as the document names them (``Validation`` → ``ValidationException``)."""

    AUTHENTICATION_FAILURE = "AuthenticationFailure"
    NOT_FOUND = "NotFound"
    NO_PERMISSION = "NoPermission"
    VALIDATION = "Validation"
    GENERAL_FAILURE = "GeneralFailure"
    QUOTA_LIMIT_EXCEEDED = "QuotaLimitExceeded"
    TOS_NOT_APPROVED = "TosNotApproved"

    @property
    def exception_name(self) -> str:
        """The detail element / complexType name, e.g. ``ValidationException``."""
        return f"{self.value}Exception"

    @property
    def in_wsdl(self) -> bool:
        """Quota and ToS faults are documented but no operation declares them."""
        return self not in (Fault.QUOTA_LIMIT_EXCEEDED, Fault.TOS_NOT_APPROVED)


FAULT_BASE: Final = "SeveraApiException"
"""The base data contract every fault detail extends."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of one service contract, with everything the WSDL and the fake derive from it."""

    contract: str
    name: str
    parameters: tuple[Parameter, ...]
    returns: TypeRef
    faults: tuple[Fault, ...]

    @property
    def soap_action(self) -> str:
        return f"{NS_SERVICE}{self.contract}/{self.name}"

    @property
    def response_action(self) -> str:
        return f"{NS_SERVICE}{self.contract}/{self.name}Response"

    def fault_action(self, fault: Fault) -> str:
        """WCF's fault action: ``http://soap.severa.com/I<Entity>/<Op><X>ExceptionFault``."""
        return f"{NS_SERVICE}{self.contract}/{self.name}{fault.exception_name}Fault"

    @property
    def response_element(self) -> str:
        return f"{self.name}Response"

    @property
    def result_element(self) -> str:
        return f"{self.name}Result"

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(f"{self.name} has no parameter {name!r}")


@dataclass(frozen=True, slots=True)
class Contract:
    """A WCF service contract; becomes one portType, one binding and one port."""

    name: str
    operations: tuple[Operation, ...]

    @property
    def binding_name(self) -> str:
        """WSDL binding and port name, as Severa publishes them: ``Severa.API.I<Entity>``."""
        return f"Severa.API.{self.name}"

    def operation(self, name: str) -> Operation:
        for operation in self.operations:
            if operation.name == name:
                return operation
        raise KeyError(f"{self.name} has no operation {name!r}")


@dataclass(frozen=True, slots=True)
class Member:
    """One data member; ``order`` is WCF's explicit ``DataMember(Order=…)`` when set."""

    name: str
    type: TypeRef
    order: int | None = None


@dataclass(frozen=True, slots=True)
class ComplexType:
    """A data contract (entity or fault detail).

    ``documented=False`` marks the placeholders for types whose members the document does not list
    (see the module docstring). ``base`` names the type this one extends (fault subtypes).
    """

    name: str
    namespace: str
    members: tuple[Member, ...]
    documented: bool = True
    base: str | None = None

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(f"{self.name} has no member {name!r}")

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(member.name for member in self.members)


@dataclass(frozen=True, slots=True)
class FlagEnum:
    """A ``[Flags]`` enum; WCF publishes it as an ``xs:list`` of enumerated names."""

    name: str
    namespace: str
    values: tuple[tuple[str, int], ...]

    def to_int(self, names: Iterable[str]) -> int:
        """Combine flag names (as a zeep client sends them) into the integer value."""
        lookup = dict(self.values)
        total = 0
        for name in names:
            if name not in lookup:
                raise ValueError(f"{name!r} is not a {self.name} value")
            total |= lookup[name]
        return total

    def to_names(self, value: int) -> list[str]:
        """Split an integer into names the way .NET formats a flags value (largest first)."""
        for name, number in self.values:
            if number == value:
                return [name]
        names: list[str] = []
        remaining = value
        for name, number in sorted(self.values, key=lambda item: -item[1]):
            if number and remaining & number == number:
                names.append(name)
                remaining &= ~number
        if remaining:
            raise ValueError(f"{value} has bits that are not {self.name} values")
        return list(reversed(names))


@dataclass(frozen=True)
class ServiceSpec:
    """All contracts, data contracts and enums, with lookups. Build it with :func:`build_spec`."""

    contracts: tuple[Contract, ...]
    types: tuple[ComplexType, ...]
    enums: tuple[FlagEnum, ...]
    _contracts: Mapping[str, Contract] = field(init=False, repr=False, compare=False)
    _types: Mapping[str, ComplexType] = field(init=False, repr=False, compare=False)
    _enums: Mapping[str, FlagEnum] = field(init=False, repr=False, compare=False)
    _operations: Mapping[str, Operation] = field(init=False, repr=False, compare=False)
    _actions: Mapping[str, Operation] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # object.__setattr__ because the dataclass is frozen: the lookups are derived once here.
        object.__setattr__(self, "_contracts", MappingProxyType({c.name: c for c in self.contracts}))
        object.__setattr__(self, "_types", MappingProxyType({t.name: t for t in self.types}))
        object.__setattr__(self, "_enums", MappingProxyType({e.name: e for e in self.enums}))
        operations = [op for contract in self.contracts for op in contract.operations]
        object.__setattr__(self, "_operations", MappingProxyType({op.name: op for op in operations}))
        object.__setattr__(self, "_actions", MappingProxyType({op.soap_action: op for op in operations}))

    def contract(self, name: str) -> Contract:
        return self._contracts[name]

    def complex_type(self, name: str) -> ComplexType:
        return self._types[name]

    def enum(self, name: str) -> FlagEnum:
        return self._enums[name]

    def operation(self, name: str) -> Operation:
        """Look an operation up by name alone: names are unique across Severa's contracts."""
        return self._operations[name]

    def operation_for_action(self, soap_action: str) -> Operation | None:
        return self._actions.get(soap_action)

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(self._operations.values())

    def kind(self, ref: TypeRef) -> TypeKind:
        """Resolve what *ref* names; arrays report the kind of their items."""
        if ref.is_void:
            return TypeKind.VOID
        if ref.name in _PRIMITIVE_NAMES:
            return TypeKind.PRIMITIVE
        if ref.name in self._types:
            return TypeKind.COMPLEX
        if ref.name in self._enums:
            return TypeKind.ENUM
        raise KeyError(f"unknown type {ref}")

    def nillable(self, ref: TypeRef) -> bool:
        """WCF's ``nillable`` rule: reference types and ``Nullable<T>`` are, plain value types not."""
        if ref.array or ref.nullable:
            return True
        kind = self.kind(ref)
        if kind is TypeKind.PRIMITIVE:
            primitive = ref.primitive
            assert primitive is not None
            return not primitive.is_value_type
        return kind is TypeKind.COMPLEX


# --------------------------------------------------------------------------------------------------
# Parsing the document's notation


_SIGNATURE = re.compile(r"(?P<returns>\S+)\s+(?P<name>\w+)\((?P<params>.*)\)")


def _op(signature: str, faults: str) -> tuple[str, tuple[Parameter, ...], TypeRef, tuple[Fault, ...]]:
    """Parse ``"HourEntry AddNewHourEntry(HourEntry hourEntryInfo)"`` + ``"Validation,NoPermission"``."""
    match = _SIGNATURE.fullmatch(signature.strip())
    if match is None:
        raise ValueError(f"unparseable signature {signature!r}")
    parameters: list[Parameter] = []
    if match.group("params").strip():
        for chunk in match.group("params").split(","):
            type_text, _, name = chunk.strip().rpartition(" ")
            parameters.append(Parameter(name, TypeRef.parse(type_text)))
    declared = tuple(Fault(f.strip()) for f in faults.split(",") if f.strip())
    return match.group("name"), tuple(parameters), TypeRef.parse(match.group("returns")), declared


def _contract(
    name: str, *operations: tuple[str, tuple[Parameter, ...], TypeRef, tuple[Fault, ...]]
) -> Contract:
    return Contract(
        name,
        tuple(
            Operation(name, op_name, params, returns, faults)
            for op_name, params, returns, faults in operations
        ),
    )


def _entity(
    name: str,
    members: str,
    *,
    ordered: Mapping[str, int] | None = None,
    namespace: str = NS_ENTITIES,
) -> ComplexType:
    """Parse ``"AccountGUID:string, EndTime:DateTime?, …"``; the given order must be WCF's order."""
    parsed: list[Member] = []
    for chunk in members.split(","):
        member_name, _, type_text = chunk.strip().partition(":")
        order = (ordered or {}).get(member_name)
        parsed.append(Member(member_name, TypeRef.parse(type_text), order))
    result = tuple(parsed)
    if result != wcf_member_order(result):
        raise ValueError(f"{name}: members are not in WCF data-contract order")
    return ComplexType(name, namespace, result)


PLACEHOLDER_NOTE: Final = (
    "{name}: the contract notes name this type but do not list its members, so it is declared"
    " without members (its namespace is assumed too). A client reading this WSDL parses whatever"
    " the service sends inside it as no content."
)
"""The ``xs:documentation`` the WSDL carries for each placeholder type, so a reader of the WSDL
(not only of this module) learns that the empty sequence is a gap in our knowledge, not Severa's shape."""

PLACEHOLDER_HINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "AccountTiny": "GetAllAccounts answers one per account; GetAllCustomers pages the same"
        " accounts as Customer, whose members are documented.",
        "Contact": "An account's contact person: AddNewAccount takes one, no documented operation"
        " returns one.",
        "InvoiceBuyerOrganization": "The invoice's documented Receiver* members (ReceiverCustomerName,"
        " ReceiverAddressline, ReceiverPostalCode, ReceiverCity, ReceiverState, ReceiverCountry,"
        " ReceiverVatNumber, ReceiverContactName, ReceiverContactEmail) name the buyer; the connector"
        " reads those.",
        "InvoiceConfig": "Nothing in the notes says what it configures; the connector does not read it.",
        "InvoiceDetails": "Nothing in the notes says what it details; the connector does not read it.",
        "InvoiceSellerContact": "The invoice's documented SenderContactName names the seller's contact.",
        "InvoiceSellerOrganization": "The invoice's documented Sender* members (SenderName,"
        " SenderAddressline, SenderPostalCode, SenderCity, SenderState, SenderCountry, SenderVatNumber)"
        " name the seller.",
    }
)
"""What the notes do say around a placeholder, appended to its :data:`PLACEHOLDER_NOTE`: where the
information the type probably carries can be read instead, so nobody invents members to get it."""


def placeholder_note(name: str) -> str:
    """The WSDL's ``xs:documentation`` of placeholder type ``name``."""
    hint = PLACEHOLDER_HINTS.get(name)
    note = PLACEHOLDER_NOTE.format(name=name)
    return f"{note} {hint}" if hint else note


def _placeholder(name: str) -> ComplexType:
    """A type the document names without members: declared empty (see the module docstring)."""
    return ComplexType(name, NS_ENTITIES, (), documented=False)


def wcf_member_order(members: Iterable[Member]) -> tuple[Member, ...]:
    """Sort members as ``DataContractSerializer`` does: unordered first, then by Order; ordinal names.

    Python compares ``str`` by code point, which is .NET's ordinal comparison.
    """
    return tuple(sorted(members, key=lambda m: (-1 if m.order is None else m.order, m.name)))


# --------------------------------------------------------------------------------------------------
# The contracts (in the document's order)

CONTRACTS: Final[tuple[Contract, ...]] = (
    _contract(
        "IAPI",
        _op("string GetVersion()", ""),
        _op("string GetEntitySchemaVersion()", ""),
    ),
    _contract(
        "IHourEntry",
        _op(
            "WorkDayInfo[] GetWorkDayInfoByDateRangeAndUserGUID(string businessUnitGUID, "
            "DateTime startdate, DateTime enddate, string userGUID, bool includeUnPaidAbsenses, "
            "bool includeInfoForInactiveUser)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "HourEntry[] GetInvoicedHourEntriesByCaseGUID(string caseGuid)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "HourEntry GetHourEntryByGUID(string hourEntryGUID)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "HourEntry GetReimbursedHourEntryByGUID(string hourEntryGUID)",
            "AuthenticationFailure,GeneralFailure,NotFound",
        ),
        _op(
            "HourEntry[] GetHourEntriesByDate(string businessUnitGUID, DateTime? startdate, "
            "DateTime? enddate)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "HourEntry[] GetReimbursedHourEntriesByDate(string businessUnitGUID, DateTime? startdate, "
            "DateTime? enddate, Nullable<bool> inCreditNote)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "HourEntry[] GetHourEntriesByDateAndUserGUID(string businessUnitGUID, DateTime? startdate, "
            "DateTime? enddate, string userGUID)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "HourEntry AddNewHourEntry(HourEntry hourEntryInfo)",
            "AuthenticationFailure,GeneralFailure,Validation,NoPermission",
        ),
        _op(
            "HourEntry UpdateHourEntry(HourEntry hourEntryInfo)",
            "Validation,NoPermission,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "bool DeleteHourEntry(string hourEntryGUID)",
            "GeneralFailure,NoPermission,AuthenticationFailure,Validation",
        ),
        _op(
            "HourEntry[] GetHourEntriesByCaseGUID(string caseGuid, DateTime? startDate, DateTime? endDate)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "HourEntry[] GetHourEntriesChangedSince(DateTime startDate)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "HourEntry[] GetReimbursedHourEntriesChangedSince(DateTime startDate, "
            "Nullable<bool> inCreditNote)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "HourEntry[] GetHourEntriesByDateAndUser(string businessUnitGUID, DateTime? startdate, "
            "DateTime? enddate, string userGUID)",
            "GeneralFailure,AuthenticationFailure",
        ),
    ),
    _contract(
        "IUser",
        _op(
            "User[] GetAllUsers(string businessUnitGUID, bool includeInactive)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "User GetUserByName(string firstName, string lastName)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op("User GetUserByGUID(string userGUID)", "NotFound,GeneralFailure,AuthenticationFailure"),
        _op("User[] GetUsersByGUIDs(string[] userGUIDs)", "GeneralFailure,NotFound,AuthenticationFailure"),
        _op(
            "User[] GetUsersByUserKeywords(string businessUnitGUID, string[] userKeywords)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op("User GetUserByCode(string userCode)", "AuthenticationFailure,NotFound,GeneralFailure"),
        _op(
            "User[] GetUsersChangedSince(string businessUnitGUID, DateTime startDateTime, int options)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op("User AddNewUser(User userInfo)", "GeneralFailure,NoPermission,AuthenticationFailure"),
        _op("User UpdateUser(User userInfo)", "AuthenticationFailure,NoPermission,GeneralFailure"),
        _op(
            "bool DisableUser(string userGUID)",
            "NotFound,NoPermission,GeneralFailure,AuthenticationFailure",
        ),
        _op("bool EnableUser(string userGUID)", "GeneralFailure,NotFound,NoPermission,AuthenticationFailure"),
        _op(
            "bool ChangePassword(string userGUID, string newPassword)",
            "NoPermission,NotFound,GeneralFailure,AuthenticationFailure",
        ),
    ),
    _contract(
        "ICase",
        _op("Case[] GetAllCases(string businessUnitGUID)", "AuthenticationFailure,GeneralFailure"),
        _op("Case GetCaseByGUID(string caseGuid)", "AuthenticationFailure,GeneralFailure,NotFound"),
        _op("Case GetCaseByNumber(long caseNumber)", "GeneralFailure,AuthenticationFailure"),
        _op(
            "Case[] GetCasesByAccountGUID(string businessUnitGUID, string accountGuid)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op("Case GetCaseByTaskGUID(string taskGuid)", "GeneralFailure,NotFound,AuthenticationFailure"),
        _op("Case AddNewCase(Case caseInfo)", "Validation,NoPermission,GeneralFailure,AuthenticationFailure"),
        _op("Case UpdateCase(Case caseInfo)", "AuthenticationFailure,GeneralFailure,NoPermission"),
        _op(
            "bool DeleteCase(string caseGuid)",
            "NoPermission,GeneralFailure,Validation,NotFound,AuthenticationFailure",
        ),
        _op(
            "Case[] GetCasesChangedSince(string businessUnitGUID, DateTime startDateTime, int options)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "User[] GetCaseMemberUsersByCaseGUID(string caseGuid)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "void AddCaseMemberUser(string caseGuid, string userGuid)",
            "NotFound,Validation,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "BillingAndExpenseForecast[] GetBillingAndExpenseForecastByCaseGUID(string caseGuid)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "BillingAndExpenseForecast AddNewBillingAndExpenseForecastToCase(string caseGuid, "
            "BillingAndExpenseForecast billingAndExpenseForecastInfo)",
            "AuthenticationFailure,Validation,NotFound,NoPermission,GeneralFailure",
        ),
        _op(
            "BillingAndExpenseForecast UpdateBillingAndExpenseForecast("
            "BillingAndExpenseForecast billingAndExpenseForecastInfo)",
            "AuthenticationFailure,NoPermission,GeneralFailure",
        ),
    ),
    _contract(
        "IPhase",
        _op("Phase GetPhaseByGUID(string phaseGUID)", "AuthenticationFailure,NotFound,GeneralFailure"),
        _op("Phase[] GetPhasesByCaseGUID(string caseGUID)", "AuthenticationFailure,GeneralFailure"),
        _op(
            "Phase[] GetPhasesByCode(string phaseCode, string caseGUID)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "Phase AddNewPhase(Phase phaseInfo, string[] members)",
            "GeneralFailure,Validation,AuthenticationFailure,NoPermission",
        ),
        _op(
            "Phase UpdatePhase(Phase phaseInfo)",
            "Validation,NoPermission,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "bool DeletePhase(string phaseGUID, string phaseGUIDToTransferItemsTo)",
            "Validation,GeneralFailure,AuthenticationFailure,NoPermission",
        ),
        _op(
            "PhaseTreeNode[] GetHourEntryPhasesByUserGUID(string userGUID)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "Phase[] GetPhasesChangedSince(string businessUnitGUID, DateTime startDateTime, int options)",
            "GeneralFailure,AuthenticationFailure",
        ),
    ),
    _contract(
        "IWorkType",
        _op(
            "WorkType GetWorkTypeByHourGUID(string hourGUID)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "WorkType GetWorkTypeByGUID(string workTypeGUID)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "WorkType[] GetWorkTypesByPhaseGUID(string phaseGUID)",
            "AuthenticationFailure,NotFound,GeneralFailure",
        ),
        _op("WorkType[] GetAllWorkTypes()", "GeneralFailure,AuthenticationFailure"),
        _op(
            "WorkType AddNewWorkType(WorkType workTypeInfo)",
            "GeneralFailure,Validation,AuthenticationFailure,NoPermission",
        ),
        _op(
            "WorkType UpdateWorkType(WorkType workTypeInfo)",
            "AuthenticationFailure,GeneralFailure,NoPermission",
        ),
        _op(
            "WorkType[] GetWorkTypesChangedSince(DateTime startDateTime, int options)",
            "GeneralFailure,AuthenticationFailure",
        ),
    ),
    _contract(
        "IAccount",
        _op("Account GetAccountByName(string accountName)", "GeneralFailure,AuthenticationFailure"),
        _op("Account GetAccountByNumber(long accountNumber)", "AuthenticationFailure,GeneralFailure"),
        _op("Account GetAccountByGUID(string accountGuid)", "GeneralFailure,AuthenticationFailure,NotFound"),
        _op("Account[] GetAccountsByCompanyGUID(string companyGuid)", "GeneralFailure,AuthenticationFailure"),
        _op(
            "Account AddNewAccount(Account accountInfo, Company companyInfo, Address addressInfo, "
            "Contact contactInfo)",
            "GeneralFailure,Validation,NoPermission,AuthenticationFailure",
        ),
        _op(
            "Account UpdateAccount(Account accountInfo, Company companyInfo)",
            "GeneralFailure,AuthenticationFailure,NoPermission",
        ),
        _op(
            "Account[] GetAccountsByInsertDate(DateTime insertStartDate, DateTime? insertEndDate)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "Account[] GetAccountsChangedSinceOpts(DateTime startDateTime, AccountGetOptions options)",
            "AuthenticationFailure,GeneralFailure,NotFound",
        ),
        _op(
            "Account[] GetAccountsChangedSince(DateTime startDateTime, int options)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "AccountTiny[] GetAllAccounts(AccountGetOptions options, int startFromIndex, int count)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "Address GetHeadOfficeAddressByAccountGUID(string accountGUID)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op("Account GetAccountByVatNumber(string vatNumber)", "AuthenticationFailure,GeneralFailure"),
    ),
    _contract(
        "ICustomer",
        _op(
            "Customer GetCustomerByGUID(string accountGuid)",
            "AuthenticationFailure,GeneralFailure,NotFound",
        ),
        _op(
            "Customer AddNewCustomer(Customer customer)",
            "Validation,NoPermission,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "Customer UpdateCustomer(Customer customer)",
            "AuthenticationFailure,NoPermission,GeneralFailure",
        ),
        _op(
            "Customer[] GetCustomersChangedSince(DateTime startDateTime, int options)",
            "AuthenticationFailure,NotFound,GeneralFailure",
        ),
        _op(
            "Customer[] GetAllCustomers(int options, int startFromIndex, int count)",
            "AuthenticationFailure,GeneralFailure",
        ),
    ),
    _contract(
        "IInvoice",
        _op("Invoice GetInvoiceByGUID(string invoiceGUID)", "NotFound,AuthenticationFailure,GeneralFailure"),
        _op(
            "Invoice GetInvoiceByNumber(int invoiceNumber, string businessUnitGUID)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "Invoice[] GetInvoicesByDate(string businessUnitGUID, DateTime startDate, DateTime endDate, "
            "int options)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "Invoice[] GetInvoicesByDateAndStatus(string businessUnitGUID, DateTime? startDate, "
            "DateTime? endDate, string status, int options)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "Invoice[] GetInvoicesByStatus(string businessUnitGUID, string status, int options, "
            "Nullable<int> maxInvoices)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "SeveraFinvoice[] GetFinvoicesByStatusAndDate(string finvoiceVersion, "
            "string businessUnitGUID, string invoiceStatus, DateTime? invoiceDateStart, "
            "DateTime? invoiceDateEnd, int options)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "Invoice[] GetInvoicesByStatusAndBusinessUnit(string status, string businessUnitGUID)",
            "GeneralFailure,NotFound,AuthenticationFailure",
        ),
        _op(
            "Finvoice[] GetFinvoicesByStatus(string businessUnitGUID, string status, int options)",
            "AuthenticationFailure,GeneralFailure,NotFound",
        ),
        _op(
            "void SetInvoiceStatus(string invoiceGUID, string status)",
            "NoPermission,GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "void SetInvoicePaymentDate(string invoiceGUID, DateTime? paymentDate)",
            "AuthenticationFailure,NoPermission,NotFound,GeneralFailure",
        ),
        _op(
            "void SetInvoiceNumber(string invoiceGUID, int invoiceNumber, string referenceNumber, "
            "string status)",
            "GeneralFailure,NoPermission,NotFound,AuthenticationFailure",
        ),
        _op(
            "byte[] GetInvoicePdf(int invoiceNumber, string invoiceNumberingBusinessUnitGUID, "
            "InvoicePdfGetOptions getAttachmentOnly)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "byte[] GetInvoicePdfByInvoiceGUID(string invoiceGuid, InvoicePdfGetOptions getAttachmentOnly)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "void AddNewInvoiceLogEntry(string invoiceGuid, string context, string text, string source, "
            "DateTime? eventTimeUtc, bool ignoreDuplicates)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "Invoice[] CreateInvoices(InvoiceInformation invoiceInformation)",
            "AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "InvoiceFile[] GetInvoiceAttachmentFileGUIDs(string invoiceGuid)",
            "NotFound,AuthenticationFailure,GeneralFailure",
        ),
        _op(
            "byte[] GetInvoiceAttachmentFile(string attachmentGuid)",
            "NotFound,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "InvoiceOriginDetails GetInvoiceOriginDetailsByInvoiceGUID(string invoiceGUID)",
            "GeneralFailure,NotFound",
        ),
    ),
    _contract(
        "IInvoiceStatus",
        _op("InvoiceStatus[] GetAllInvoiceStatuses()", ""),
    ),
    _contract(
        "IBusinessUnit",
        _op(
            "BusinessUnit GetBusinessUnitByGUID(string businessUnitGuid)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "BusinessUnit GetBusinessUnitByCode(string businessUnitCode)",
            "GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "BusinessUnit AddNewBusinessUnit(BusinessUnit businessUnitInfo)",
            "AuthenticationFailure,GeneralFailure,NoPermission",
        ),
        _op(
            "BusinessUnit UpdateBusinessUnit(BusinessUnit businessUnitInfo)",
            "NoPermission,GeneralFailure,AuthenticationFailure",
        ),
        _op(
            "BusinessUnit[] GetBusinessUnitHierarchy(string rootBusinessUnitGuid, int options)",
            "GeneralFailure,AuthenticationFailure,NotFound",
        ),
        _op(
            "BusinessUnit[] GetBusinessUnitsChangedSince(string businessUnitGUID, "
            "DateTime startDateTime, int options)",
            "GeneralFailure,AuthenticationFailure",
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# Data contracts

ENTITIES: Final[tuple[ComplexType, ...]] = (
    _entity(
        "BusinessUnit",
        "Code:string, CostCenterGUID:string, CurrencyCode:string, CurrencyGUID:string, "
        "FormattingCulture:string, GUID:string, InsertTS:DateTime, IsActive:bool, LanguageCode:string, "
        "LanguageGUID:string, Name:string, NextInvoiceNumber:int?, OverDueInterest:decimal?, "
        "ParentBusinessUnitGUID:string, PaymentTerm:int?, ShowLogoOnInvoices:bool, "
        "ShowLogoOnPdfReports:bool, TimeZoneGUID:string, UpdatedTS:DateTime?, VatNumber:string",
    ),
    _entity(
        "Account",
        "AccountGroupGUIDs:string[], AccountOwnerUserGUID:string, AccountRating:int?, "
        "CompanyGUID:string, CurrencyCode:string, CurrencyGUID:string, GUID:string, InsertTS:DateTime, "
        "InvoicingVat:decimal?, IsActive:bool, IsInternal:bool?, LanguageCode:string, "
        "LanguageGUID:string, Name:string, Notes:string, Number:long?, OverdueInterest:decimal?, "
        "PaymentTerm:int?, PricelistGUID:string, ReverseCharge:bool?, UpdatedTS:DateTime?, "
        "eInvoiceAddress:string, eInvoiceOperator:string",
    ),
    _entity(
        "Company",
        "AnnualRevenue:int?, Email:string, Employees:int?, GUID:string, HeadOfficeAddressGUID:string, "
        "HierarchyGUID:string, IndustryGUID:string, LanguageGUID:string, Name:string, "
        "TimezoneGUID:string, VatNumber:string, Website:string",
    ),
    _entity(
        "Address",
        "Addressline:string, Addressline2:string, Addressline3:string, City:string, CompanyGUID:string, "
        "CountryCode:string, CountryGUID:string, CountryName:string, CountryRegionGUID:string, "
        "CountryRegionName:string, Fax:string, GUID:string, IsBillingAddress:bool, "
        "IsPostalAddress:bool, IsVisitAddress:bool, Phone:string, PostalCode:string",
    ),
    _entity(
        "Case",
        "AccountGUID:string, AccountName:string, AccountNumber:long?, BillingAddress:string, "
        "BillingAddressGUID:string, BillingInternalNotes:string, BillingNotesBeforeGrid:string, "
        "BusinessUnitGUID:string, BusinessUnitName:string, BusinessUnitNumber:string, CaseNumber:long?, "
        "CaseOwnerUserCode:string, CaseOwnerUserGUID:string, ClosedDate:DateTime?, "
        "CompletionEstimate:int?, ContactGUID:string, CostCenterGUID:string, CostCenterNumber:string, "
        "CurrencyGUID:string, CurrencyShortform:string, CurrentCaseStatusDescription:string, "
        "CurrentCaseStatusGUID:string, CurrentCaseStatusInsertTs:DateTime?, DeadlineDate:DateTime?, "
        "Description:string, ExpectedValue:decimal?, GUID:string, IncludeExceptions:bool, "
        "IncludeOverTime:bool, InsertTs:DateTime, InternalName:string, InvoiceTemplateGUID:string, "
        "IsClosed:bool, IsDailyAllowanceBillable:bool, IsInternal:bool, IsMileageBillable:bool, "
        "IsOtherTravelExpensesBillable:bool, LatestEstimationDate:DateTime?, LeadRating:int?, "
        "LeadSourceGUID:string, Name:string, OrderNumber:string, OurReference:string, "
        "OverdueInterest:decimal?, PaymentTerm:int?, PricelistGUID:string, PricingRule:string, "
        "PricingType:string, Priority:int, Probability:int?, RootTaskGUID:string, "
        "SalesCloseDate:DateTime?, SalesPersonUserCode:string, SalesPersonUserGUID:string, "
        "SalesProcessGUID:string, SalesStatusGUID:string, SharedToExtranet:bool, StartDate:DateTime, "
        "UpdatedTs:DateTime?, UrlToCase:string, UseDefaultProductsInWorkTimeEntry:bool, "
        "UseDefaultWorkTypes:bool, YourReference:string",
    ),
    _entity(
        "Phase",
        "CaseGUID:string, Code:string, Deadline:DateTime?, Description:string, FlatRate:FlatRate, "
        "GUID:string, IsCompleted:bool, IsLocked:bool, Name:string, OriginalDeadline:DateTime?, "
        "OriginalPlannedStartDate:DateTime?, OriginalWorkEstimate:decimal?, OwnerUserGUID:string, "
        "ParentPhaseGUID:string, PlannedStartDate:DateTime?, PricePerHour:decimal?, SortOrder:int?, "
        "WorkEstimate:decimal?, WorkTypeGUID:string",
    ),
    _entity(
        "FlatRate",
        "AdditionalHoursUnitPrice:decimal, AreAdditionalHoursBillable:bool, Hours:decimal, Price:decimal",
    ),
    _entity(
        "User",
        "Addressline:string, BankAccountNumber:string, BusinessUnitCode:string, "
        "BusinessUnitGUID:string, BusinessUnitName:string, Code:string, CountryCode:string, "
        "CountryGUID:string, CountryRegionGUID:string, CountryRegionName:string, Culture:string, "
        "DefaultActivityTypeGUID:string, Email:string, FirstName:string, GUID:string, IsActive:bool, "
        "LanguageCode:string, LanguageGUID:string, LastName:string, Notes:string, "
        "OrganizationGUID:string, Phone:string, PhotoFileGUID:string, PostOffice:string, "
        "PostalCode:string, ProfileGUID:string, Salutation:string, SendDailyMail:bool, "
        "SendWeeklyMail:bool, SocialSecurityNumber:string, SuperiorUserGUID:string, "
        "TimezoneGUID:string, Title:string, WorktypeGUID:string",
    ),
    _entity(
        "HourEntry",
        "AccountGUID:string, CaseGUID:string, Description:string, EndTime:DateTime?, "
        "EventDate:DateTime, GUID:string, InvoiceDescription:string, InvoiceGUID:string, "
        "InvoiceQuantity:decimal?, InvoiceRowGUID:string, IsApproved:bool?, IsBillable:bool, "
        "IsProductive:bool?, IsReadOnly:bool, OverTimeGUID:string, PhaseGUID:string, Quantity:decimal, "
        "StartTime:DateTime?, TaskGUID:string, UnitCost:decimal, UnitPrice:decimal, "
        "UnitPriceInBaseCurrency:decimal, UserGUID:string, WorkTypeGUID:string",
    ),
    _entity(
        "Invoice",
        "AccountGUID:string, AccountName:string, AccountNumber:long?, BusinessUnitCode:string, "
        "BusinessUnitGUID:string, BusinessUnitName:string, BuyerOrganization:InvoiceBuyerOrganization, "
        "Culture:string, CurrencyGUID:string, CurrencyName:string, CurrencyRate:decimal, "
        "CurrencyShortform:string, Date:DateTime, Description:string, DueDate:DateTime, "
        "EntryDate:DateTime, GUID:string, InvoiceAllowedCaseGUIDs:string[], "
        "InvoiceConfig:InvoiceConfig, InvoiceDetails:InvoiceDetails, "
        "InvoiceNumberingBusinessUnitGUID:string, InvoiceRows:InvoiceRow[], InvoiceStatus:string, "
        "IsCreditNote:bool, IsReimbursed:bool, IsTaxFree:bool, LanguageCode:string, "
        "LanguageGUID:string, MainCaseGUID:string, Notes:string, Number:int?, OrderNumber:string, "
        "OurReference:string, OverDueInterest:decimal, PaymentDate:DateTime?, PaymentStatus:string, "
        "PaymentTerm:int, PoNumber:string, ReceiverAddressline:string, ReceiverCity:string, "
        "ReceiverContactEmail:string, ReceiverContactName:string, ReceiverCountry:string, "
        "ReceiverCustomerName:string, ReceiverPostalCode:string, ReceiverState:string, "
        "ReceiverVatNumber:string, ReferenceNumber:string, ReimburseInvoiceGUID:string, "
        "SellerContact:InvoiceSellerContact, SellerOrganization:InvoiceSellerOrganization, "
        "SenderAddressline:string, SenderCity:string, SenderContactName:string, SenderCountry:string, "
        "SenderName:string, SenderPostalCode:string, SenderState:string, SenderVatNumber:string, "
        "TaxFreeDescription:string, Title:string, VirtualBankBarcode:string, YourReference:string, "
        "NotesAfterInvoiceRows:string, NotesBeforeInvoiceRows:string",
        ordered={"NotesAfterInvoiceRows": 63, "NotesBeforeInvoiceRows": 64},
    ),
    _entity(
        "InvoiceRow",
        "CaseGUIDs:string[], EventDate:DateTime, GUID:string, HourGUIDs:string[], ItemGUIDs:string[], "
        "MainCaseGUID:string, MainCaseName:string, MainCaseNumber:long?, MainUserFullName:string, "
        "MainUserGUID:string, PhaseGUIDs:string[], ProductGUIDs:string[], TravelExpenseGUIDs:string[], "
        "UserGUIDs:string[], articleIdentifier:string, articleName:string, deliveredQuantity:decimal, "
        "quantityUnitCode:string, rowAccountDimensionText:string, rowAmount:decimal, "
        "rowAmountCurrencyIdentifier:string, rowCostAmount:decimal, rowCostCenterGUID:string, "
        "rowCostCenterName:string, rowCostCenterNumber:string, rowDeliveryDate:DateTime, "
        "rowFreeText:string, rowIdentifier:string, rowNumber:int, "
        "rowRecurringSalesAccountNumber:string, rowSalesAccountNumber:string, "
        "rowSalesReceivableAccountNumber:string, rowUnitPrice:decimal, rowVatAccountNumber:string, "
        "rowVatAmount:decimal, rowVatCode:string, rowVatCurrencyIdentifier:string, "
        "rowVatExcludedAmount:decimal, rowVatExcludedCurrencyIdentifier:string, "
        "rowVatRatePercent:decimal?, unitPriceAmount:decimal, unitPriceCurrencyIdentifier:string",
    ),
    _entity(
        "InvoiceStatus",
        "Description:string, HasInvoiceNumber:bool, IsActive:bool, IsDefault:bool, IsPaid:bool, "
        "IsReadOnly:bool, IsSent:bool, IsWaitingPayment:bool, Name:string, SortOrder:int",
    ),
    _entity(
        "WorkType",
        "Code:string, GUID:string, IsActive:bool, IsDefault:bool, IsProductive:bool, Name:string, "
        "SalesAccountGUID:string",
    ),
    _entity(
        "PhaseTreeNode",
        "AccountGUID:string, AccountName:string, CaseGUID:string, ChildPhases:PhaseTreeNode[], "
        "GUID:string, IsLocked:bool, Name:string, ParentPhaseGUID:string, WorkTypeGUID:string",
    ),
    _entity(
        "Customer",
        "AccountGroupGUIDs:string[], AccountOwnerUserGUID:string, AccountRating:int?, "
        "AnnualRevenue:int?, CompanyGUID:string, CurrencyCode:string, CurrencyGUID:string, "
        "Email:string, Employees:int?, GUID:string, HeadOfficeAddressGUID:string, IndustryGUID:string, "
        "InsertTS:DateTime, InvoicingVat:decimal?, IsActive:bool, IsInternal:bool?, "
        "LanguageCode:string, LanguageGUID:string, Name:string, Notes:string, Number:long?, "
        "OverdueInterest:decimal?, PaymentTerm:int?, PricelistGUID:string, ReverseCharge:bool?, "
        "TimezoneGUID:string, UpdatedTS:DateTime?, VatNumber:string, Website:string, "
        "eInvoiceAddress:string, eInvoiceOperator:string",
    ),
)

PLACEHOLDERS: Final[tuple[ComplexType, ...]] = tuple(
    _placeholder(name)
    for name in (
        "AccountTiny",
        "BillingAndExpenseForecast",
        "Contact",
        "Finvoice",
        "InvoiceBuyerOrganization",
        "InvoiceConfig",
        "InvoiceDetails",
        "InvoiceFile",
        "InvoiceInformation",
        "InvoiceOriginDetails",
        "InvoiceSellerContact",
        "InvoiceSellerOrganization",
        "SeveraFinvoice",
        "WorkDayInfo",
    )
)
"""Types named by the document without members; declared empty (see the module docstring)."""

FAULT_TYPES: Final[tuple[ComplexType, ...]] = (
    _entity(FAULT_BASE, "Description:string, Source:string", namespace=NS_API),
    *(ComplexType(fault.exception_name, NS_API, (), base=FAULT_BASE) for fault in Fault if fault.in_wsdl),
)
"""``SeveraApiException`` and the five subtypes operations declare (they add no members)."""

ENUMS: Final[tuple[FlagEnum, ...]] = (
    FlagEnum(
        "AccountGetOptions",
        NS_API,
        (
            ("None", 0),
            ("NewOnly", 1),
            ("IncludeInactive", 2),
            ("ExcludeNotNumbered", 4),
            ("ExcludeWithNoWonCases", 8),
            ("CheckAccountGroupChanges", 32),
            ("CheckAddressChanges", 64),
            ("CheckContactChanges", 128),
            ("CheckChildChanges", 224),
        ),
    ),
    FlagEnum("InvoicePdfGetOptions", NS_API, (("All", 0), ("AttachmentOnly", 1))),
)


def build_spec(
    contracts: tuple[Contract, ...], types: tuple[ComplexType, ...], enums: tuple[FlagEnum, ...]
) -> ServiceSpec:
    """Assemble a :class:`ServiceSpec` and check it is closed: every referenced type is declared,
    names are unique, and operation names are unique across contracts (WCF puts every wrapper
    element into the one ``http://soap.severa.com/`` schema, so a clash would be a broken WSDL)."""
    spec = ServiceSpec(contracts, types, enums)
    names = [t.name for t in types] + [e.name for e in enums]
    if len(names) != len(set(names)):
        raise ValueError("duplicate type names")
    if len(spec.operations) != sum(len(c.operations) for c in contracts):
        raise ValueError("operation names are not unique across contracts")
    for complex_type in types:
        for member in complex_type.members:
            spec.kind(member.type)  # raises KeyError on an undeclared type
        if complex_type.base is not None:
            spec.complex_type(complex_type.base)
    for operation in spec.operations:
        spec.kind(operation.returns)
        for parameter in operation.parameters:
            spec.kind(parameter.type)
    return spec


SPEC: Final[ServiceSpec] = build_spec(CONTRACTS, ENTITIES + PLACEHOLDERS + FAULT_TYPES, ENUMS)
"""The Severa service as the connector knows it."""
