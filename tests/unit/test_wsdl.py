"""The shipped Severa WSDL: generated from the spec, loadable by zeep, shaped the way WCF publishes it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree

from adapters.severa.wsdl import WSDL_PATH
from adapters.severa.wsdl.generate import NS_SOAP_BINDING, NS_WSAW, NS_WSDL, NS_XS, main, render_wsdl
from adapters.severa.wsdl.spec import (
    DEFAULT_ADDRESS,
    NS_API,
    NS_ARRAYS,
    NS_ENTITIES,
    NS_SERVICE,
    PLACEHOLDER_HINTS,
    PLACEHOLDERS,
    SPEC,
    Fault,
    Member,
    Operation,
    Parameter,
    ServiceSpec,
    TypeRef,
    build_spec,
    wcf_member_order,
)

XS = f"{{{NS_XS}}}"
WSDL = f"{{{NS_WSDL}}}"


@pytest.fixture(scope="module")
def client() -> Any:
    return zeep.Client(str(WSDL_PATH))  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def tree() -> etree._Element:
    return etree.parse(str(WSDL_PATH)).getroot()


def _input_elements(client: Any, contract: str, operation: str) -> list[tuple[str, str, bool]]:
    """(name, declared type QName, nillable) of an operation's request wrapper children, in order.

    Names and nillability come from zeep's view; the type QName from the schema text, because zeep
    resolves a named ``xs:list`` type (our flag enums) to an anonymous list type.
    """
    binding = client.wsdl.bindings[f"{{{NS_SERVICE}}}Severa.API.{contract}"]
    body = binding.get(operation).input.body
    (wrapper,) = (
        etree.parse(str(WSDL_PATH))
        .getroot()
        .iterfind(f"{WSDL}types/{XS}schema/{XS}element[@name='{operation}']")
    )
    result = []
    children = wrapper.iterfind(f"{XS}complexType/{XS}sequence/{XS}element")
    for (name, element), declared in zip(body.type.elements, children, strict=True):
        assert declared.get("name") == name
        prefix, _, local = (declared.get("type") or "").partition(":")
        result.append((name, f"{{{declared.nsmap[prefix]}}}{local}", element.nillable))
    return result


def _output_element(client: Any, contract: str, operation: str) -> tuple[str, str, bool]:
    binding = client.wsdl.bindings[f"{{{NS_SERVICE}}}Severa.API.{contract}"]
    ((name, element),) = binding.get(operation).output.body.type.elements
    return name, element.type.qname.text, element.nillable


def xs(name: str) -> str:
    return f"{{{NS_XS}}}{name}"


class TestGeneratedFile:
    def test_the_committed_wsdl_is_what_the_generator_renders(self) -> None:
        assert WSDL_PATH.read_bytes() == render_wsdl(), "run: python -m adapters.severa.wsdl.generate"

    def test_rendering_is_deterministic(self) -> None:
        assert render_wsdl() == render_wsdl()

    def test_check_mode_reports_a_stale_file(self, tmp_path: Path) -> None:
        stale = tmp_path / "severa.wsdl"
        stale.write_bytes(b"<old/>")
        assert main(["--check", "--output", str(stale)]) == 1
        assert main(["--output", str(stale)]) == 0
        assert main(["--check", "--output", str(stale)]) == 0
        assert stale.read_bytes() == WSDL_PATH.read_bytes()

    def test_wrapper_element_collisions_across_contracts_are_refused(self) -> None:
        hour_entry = SPEC.contract("IHourEntry")
        clash = dataclasses.replace(
            SPEC.contract("IUser"),
            operations=(dataclasses.replace(hour_entry.operations[0], contract="IUser"),),
        )
        with pytest.raises(ValueError, match="not unique"):
            build_spec((*SPEC.contracts, clash), SPEC.types, SPEC.enums)
        # The generator checks again on its own, whatever spec it is handed.
        unchecked = ServiceSpec((*SPEC.contracts, clash), SPEC.types, SPEC.enums)
        with pytest.raises(ValueError, match="collides across contracts"):
            render_wsdl(unchecked)


class TestZeepLoadsIt:
    def test_every_contract_has_its_binding(self, client: Any) -> None:
        expected = {f"{{{NS_SERVICE}}}{contract.binding_name}" for contract in SPEC.contracts}
        assert set(client.wsdl.bindings) == expected
        assert len(expected) == 11

    def test_every_operation_is_bound_with_its_soap_action(self, client: Any) -> None:
        for contract in SPEC.contracts:
            binding = client.wsdl.bindings[f"{{{NS_SERVICE}}}{contract.binding_name}"]
            assert sorted(binding._operations) == sorted(op.name for op in contract.operations)
            for operation in contract.operations:
                assert binding.get(operation.name).soapaction == operation.soap_action

    def test_the_service_has_one_port_per_binding_at_the_production_address(self, client: Any) -> None:
        service = client.wsdl.services["API"]
        assert sorted(service.ports) == sorted(contract.binding_name for contract in SPEC.contracts)
        assert {port.binding_options["address"] for port in service.ports.values()} == {DEFAULT_ADDRESS}

    @pytest.mark.parametrize(
        ("contract", "operation", "expected"),
        [
            pytest.param(
                "IHourEntry",
                "AddNewHourEntry",
                [("hourEntryInfo", f"{{{NS_ENTITIES}}}HourEntry", True)],
                id="AddNewHourEntry takes one nillable HourEntry",
            ),
            pytest.param(
                "IPhase",
                "GetPhasesByCode",
                [("phaseCode", xs("string"), True), ("caseGUID", xs("string"), True)],
                id="GetPhasesByCode takes the code, then the case GUID",
            ),
            pytest.param(
                "IUser",
                "GetUsersChangedSince",
                [
                    ("businessUnitGUID", xs("string"), True),
                    ("startDateTime", xs("dateTime"), False),
                    ("options", xs("int"), False),
                ],
                id="GetUsersChangedSince takes a business unit, a plain DateTime and int options",
            ),
            pytest.param(
                "IAccount",
                "GetAllAccounts",
                [
                    ("options", f"{{{NS_API}}}AccountGetOptions", False),
                    ("startFromIndex", xs("int"), False),
                    ("count", xs("int"), False),
                ],
                id="GetAllAccounts takes flag options, a start index and a count",
            ),
            pytest.param(
                "IHourEntry",
                "GetHourEntriesByDateAndUserGUID",
                [
                    ("businessUnitGUID", xs("string"), True),
                    ("startdate", xs("dateTime"), True),
                    ("enddate", xs("dateTime"), True),
                    ("userGUID", xs("string"), True),
                ],
                id="GetHourEntriesByDateAndUserGUID takes nullable dates",
            ),
            pytest.param(
                "ICase",
                "GetCaseByNumber",
                [("caseNumber", xs("long"), False)],
                id="GetCaseByNumber takes a long",
            ),
            pytest.param(
                "IUser",
                "GetUsersByGUIDs",
                [("userGUIDs", f"{{{NS_ARRAYS}}}ArrayOfstring", True)],
                id="string arrays are WCF's ArrayOfstring",
            ),
            pytest.param(
                "IInvoice",
                "GetInvoicesByStatus",
                [
                    ("businessUnitGUID", xs("string"), True),
                    ("status", xs("string"), True),
                    ("options", xs("int"), False),
                    ("maxInvoices", xs("int"), True),
                ],
                id="Nullable<int> is a nillable xs:int",
            ),
            pytest.param("IAPI", "GetVersion", [], id="GetVersion takes nothing"),
        ],
    )
    def test_parameters_are_in_documented_order_with_documented_types(
        self, client: Any, contract: str, operation: str, expected: list[tuple[str, str, bool]]
    ) -> None:
        assert _input_elements(client, contract, operation) == expected

    @pytest.mark.parametrize(
        ("contract", "operation", "expected"),
        [
            pytest.param(
                "IHourEntry",
                "AddNewHourEntry",
                ("AddNewHourEntryResult", f"{{{NS_ENTITIES}}}HourEntry", True),
                id="AddNewHourEntry returns the HourEntry",
            ),
            pytest.param(
                "IAccount",
                "GetAllAccounts",
                ("GetAllAccountsResult", f"{{{NS_ENTITIES}}}ArrayOfAccountTiny", True),
                id="GetAllAccounts returns an ArrayOfAccountTiny",
            ),
            pytest.param(
                "IHourEntry",
                "DeleteHourEntry",
                ("DeleteHourEntryResult", xs("boolean"), False),
                id="DeleteHourEntry returns a plain bool",
            ),
            pytest.param(
                "IInvoice",
                "GetInvoicePdfByInvoiceGUID",
                ("GetInvoicePdfByInvoiceGUIDResult", xs("base64Binary"), True),
                id="byte[] is nillable base64Binary",
            ),
        ],
    )
    def test_results_have_the_documented_type(
        self, client: Any, contract: str, operation: str, expected: tuple[str, str, bool]
    ) -> None:
        assert _output_element(client, contract, operation) == expected

    def test_a_void_operation_has_an_empty_response_wrapper(self, tree: etree._Element) -> None:
        (response,) = tree.iterfind(f"{WSDL}types/{XS}schema/{XS}element[@name='SetInvoiceStatusResponse']")
        assert [etree.QName(child).localname for child in response.iter()] == [
            "element",
            "complexType",
            "sequence",
        ]

    def test_hour_entry_members_are_alphabetical_with_wcf_nillability(self, client: Any) -> None:
        hour_entry = client.get_type(f"{{{NS_ENTITIES}}}HourEntry")
        members = [(name, element.nillable) for name, element in hour_entry.elements]
        names = [name for name, _ in members]
        assert names == sorted(names)
        assert len(names) == 24
        nillable = dict(members)
        # reference types and Nullable<T> are nillable; plain value types are not
        assert nillable["Description"] is True
        assert nillable["EndTime"] is True  # DateTime?
        assert nillable["InvoiceQuantity"] is True  # decimal?
        assert nillable["IsApproved"] is True  # bool?
        assert nillable["EventDate"] is False  # DateTime
        assert nillable["Quantity"] is False  # decimal
        assert nillable["IsBillable"] is False  # bool
        assert all(element.min_occurs == 0 for _, element in hour_entry.elements)

    def test_members_use_ordinal_order_uppercase_before_lowercase(self, client: Any) -> None:
        account = [name for name, _ in client.get_type(f"{{{NS_ENTITIES}}}Account").elements]
        assert account[-3:] == ["UpdatedTS", "eInvoiceAddress", "eInvoiceOperator"]
        invoice = [name for name, _ in client.get_type(f"{{{NS_ENTITIES}}}Invoice").elements]
        assert invoice[-2:] == ["NotesAfterInvoiceRows", "NotesBeforeInvoiceRows"]
        assert invoice[-3] == "YourReference"

    def test_fault_details_extend_severa_api_exception(self, client: Any) -> None:
        for fault in Fault:
            if not fault.in_wsdl:
                continue
            detail = client.get_element(f"{{{NS_API}}}{fault.exception_name}")
            assert [name for name, _ in detail.type.elements] == ["Description", "Source"]

    def test_flag_enums_round_trip_as_lists_of_names(self, client: Any) -> None:
        options = client.get_type(f"{{{NS_API}}}AccountGetOptions")
        assert options.xmlvalue(["NewOnly", "IncludeInactive"]) == "NewOnly IncludeInactive"
        assert options.pythonvalue("NewOnly IncludeInactive") == ["NewOnly", "IncludeInactive"]

    def test_undocumented_types_are_empty_placeholders(self, client: Any) -> None:
        for placeholder in PLACEHOLDERS:
            assert client.get_type(f"{{{NS_ENTITIES}}}{placeholder.name}").elements == []


class TestPlaceholderNotes:
    """The WSDL says which types are gaps in our knowledge, and where the notes offer something instead."""

    def test_every_placeholder_says_in_the_wsdl_that_its_members_are_unknown(
        self, tree: etree._Element
    ) -> None:
        for placeholder in PLACEHOLDERS:
            (node,) = tree.iterfind(f"{WSDL}types/{XS}schema/{XS}complexType[@name='{placeholder.name}']")
            text = node.findtext(f"{XS}annotation/{XS}documentation") or ""
            assert text.startswith(f"{placeholder.name}: the contract notes name this type but do not list")
            assert text.endswith(PLACEHOLDER_HINTS.get(placeholder.name, "as no content."))

    def test_the_invoices_nested_placeholders_point_at_its_documented_members(self) -> None:
        for name in ("InvoiceBuyerOrganization", "InvoiceSellerContact", "InvoiceSellerOrganization"):
            assert name in PLACEHOLDER_HINTS
        assert "InvoiceConfig" in PLACEHOLDER_HINTS
        assert "InvoiceDetails" in PLACEHOLDER_HINTS

    def test_hints_name_only_placeholders_and_members_the_contract_has(self) -> None:
        placeholders = {placeholder.name for placeholder in PLACEHOLDERS}
        invoice_members = set(SPEC.complex_type("Invoice").member_names)
        for name, hint in PLACEHOLDER_HINTS.items():
            assert name in placeholders, name
            named = set(re.findall(r"\b(?:Receiver|Sender)[A-Za-z]+", hint))
            assert named <= invoice_members, (
                f"{name}'s hint names members Invoice does not have: {named - invoice_members}"
            )


class TestWcfShape:
    def test_schemas_are_one_per_namespace(self, tree: etree._Element) -> None:
        namespaces = [schema.get("targetNamespace") for schema in tree.iterfind(f"{WSDL}types/{XS}schema")]
        assert namespaces == [NS_SERVICE, NS_ENTITIES, NS_ARRAYS, NS_API]

    def test_every_local_element_is_optional(self, tree: etree._Element) -> None:
        for sequence in tree.iter(f"{XS}sequence"):
            for element in sequence.iterfind(f"{XS}element"):
                assert element.get("minOccurs") == "0", element.get("name")

    def test_messages_follow_wcf_naming(self, tree: etree._Element) -> None:
        names = {message.get("name") for message in tree.iterfind(f"{WSDL}message")}
        assert {
            "IHourEntry_AddNewHourEntry_InputMessage",
            "IHourEntry_AddNewHourEntry_OutputMessage",
            "IHourEntry_AddNewHourEntry_ValidationExceptionFault_FaultMessage",
        } <= names

    def test_port_type_faults_are_declared_in_documented_order_with_wsaw_actions(
        self, tree: etree._Element
    ) -> None:
        (operation,) = tree.iterfind(
            f"{WSDL}portType[@name='IHourEntry']/{WSDL}operation[@name='AddNewHourEntry']"
        )
        faults = [(f.get("name"), f.get(f"{{{NS_WSAW}}}Action")) for f in operation.iterfind(f"{WSDL}fault")]
        assert faults == [
            (
                f"{name}ExceptionFault",
                f"http://soap.severa.com/IHourEntry/AddNewHourEntry{name}ExceptionFault",
            )
            for name in ("AuthenticationFailure", "GeneralFailure", "Validation", "NoPermission")
        ]

    def test_bindings_are_soap11_document_literal(self, tree: etree._Element) -> None:
        for binding in tree.iterfind(f"{WSDL}binding"):
            (soap_binding,) = binding.iterfind(f"{{{NS_SOAP_BINDING}}}binding")
            assert soap_binding.get("transport") == "http://schemas.xmlsoap.org/soap/http"
            for operation in binding.iterfind(f"{WSDL}operation/{{{NS_SOAP_BINDING}}}operation"):
                assert operation.get("style") == "document"
            for body in binding.iter(f"{{{NS_SOAP_BINDING}}}body"):
                assert body.get("use") == "literal"


class TestSpec:
    def test_contracts_have_the_documented_number_of_operations(self) -> None:
        counts = {contract.name: len(contract.operations) for contract in SPEC.contracts}
        assert counts == {
            "IAPI": 2,
            "IHourEntry": 14,
            "IUser": 12,
            "ICase": 14,
            "IPhase": 8,
            "IWorkType": 7,
            "IAccount": 12,
            "ICustomer": 5,
            "IInvoice": 18,
            "IInvoiceStatus": 1,
            "IBusinessUnit": 6,
        }

    def test_an_operation_knows_its_wire_names(self) -> None:
        operation = SPEC.operation("AddNewHourEntry")
        assert operation == Operation(
            "IHourEntry",
            "AddNewHourEntry",
            (Parameter("hourEntryInfo", TypeRef("HourEntry")),),
            TypeRef("HourEntry"),
            (Fault.AUTHENTICATION_FAILURE, Fault.GENERAL_FAILURE, Fault.VALIDATION, Fault.NO_PERMISSION),
        )
        assert operation.soap_action == "http://soap.severa.com/IHourEntry/AddNewHourEntry"
        assert SPEC.operation_for_action(operation.soap_action) is operation

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("string", TypeRef("string"), id="a plain type"),
            pytest.param("DateTime?", TypeRef("DateTime", nullable=True), id="T? is nullable"),
            pytest.param("Nullable<bool>", TypeRef("bool", nullable=True), id="Nullable<T> is nullable too"),
            pytest.param("HourEntry[]", TypeRef("HourEntry", array=True), id="T[] is an array"),
            pytest.param("byte[]", TypeRef("byte[]"), id="byte[] is a primitive, not an array"),
        ],
    )
    def test_type_notation_parses(self, text: str, expected: TypeRef) -> None:
        assert TypeRef.parse(text) == expected

    @pytest.mark.parametrize(
        ("ref", "nillable"),
        [
            pytest.param(TypeRef("string"), True, id="string is a reference type"),
            pytest.param(TypeRef("int"), False, id="int is a value type"),
            pytest.param(TypeRef("int", nullable=True), True, id="int? is nillable"),
            pytest.param(TypeRef("HourEntry"), True, id="entities are nillable"),
            pytest.param(TypeRef("string", array=True), True, id="arrays are nillable"),
            pytest.param(TypeRef("AccountGetOptions"), False, id="enums are value types"),
            pytest.param(TypeRef("byte[]"), True, id="byte[] is nillable"),
        ],
    )
    def test_wcf_nillability(self, ref: TypeRef, nillable: bool) -> None:
        assert SPEC.nillable(ref) is nillable

    def test_wcf_member_order_puts_explicit_orders_last(self) -> None:
        members = [
            Member("b", TypeRef("string")),
            Member("Z", TypeRef("string"), order=1),
            Member("A", TypeRef("int")),
        ]
        assert [m.name for m in wcf_member_order(members)] == ["A", "b", "Z"]

    @pytest.mark.parametrize(
        ("value", "names"),
        [
            pytest.param(0, ["None"], id="zero is None"),
            pytest.param(3, ["NewOnly", "IncludeInactive"], id="bits combine"),
            pytest.param(224, ["CheckChildChanges"], id="a named combination wins"),
        ],
    )
    def test_flag_enum_conversion(self, value: int, names: list[str]) -> None:
        options = SPEC.enum("AccountGetOptions")
        assert options.to_names(value) == names
        assert options.to_int(names) == value

    def test_unknown_flag_names_are_refused(self) -> None:
        with pytest.raises(ValueError, match="not a AccountGetOptions"):
            SPEC.enum("AccountGetOptions").to_int(["Everything"])
