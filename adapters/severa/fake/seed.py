"""Seed data for the fake: a YAML/JSON document (or a mapping) loaded into a :class:`SeveraStore`.

The document uses Severa's own member names, so a seed reads like the wire::

    service: {version: "fake-severa 1.0", entity_schema_version: "1"}   # optional
    business_units: [{GUID: ..., Code: HEL, Name: Helsinki, ...}]
    users:          [{GUID: ..., Code: AIVI, Email: ..., FirstName: ..., IsActive: true}]
    work_types:     [...]
    companies:      [...]      # optional: an account's company is derived from the account
    accounts:       [...]      # Customer-shaped (alias: customers)
    addresses:      [...]      # Address, by CompanyGUID; an account's HeadOfficeAddressGUID names one
    contacts:       [...]      # the fake's own Contact shape (store.CONTACT), by AccountGUID
    cases:          [...]
    phases:         [...]
    invoice_statuses: [...]    # keyed by Name
    invoices:       [...]
    hour_entries:   [...]

Each record may also carry ``_created_at`` / ``_changed_at`` (ISO timestamps, UTC when naive) to
place it in time for the ``*ChangedSince`` operations; otherwise both are the load time. For
accounts, ``UpdatedTS`` / ``InsertTS`` do the same when the ``_`` keys are absent, and are then set
from the row's times, so the members and what ``Get*ChangedSince`` reads always agree.

Derived, as Severa fills them itself: an account's ``Company`` (created or completed from the
account's company members); a case's account name; an invoice's account name and number, its
nested organisation/config members (``{}``, see :data:`INVOICE_NESTED`), and ``IsCreditNote``
when it names the invoice it credits (``ReimburseInvoiceGUID``).

Values are coerced to the member's type (YAML dates become ``datetime``, numbers for ``decimal``
become ``Decimal``, …) and checked: an unknown section or member, a value of the wrong type or a
reference to a record that does not exist (an hour entry's ``UserGUID`` …) is a :class:`SeedError`
naming where it is, so a broken seed fails at start-up instead of as a puzzling fault in a test.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TypeAlias

import yaml

from adapters.severa.fake.store import Record, SeveraStore, Table
from adapters.severa.wsdl.spec import SPEC, ComplexType, Primitive, TypeKind, TypeRef

SeedSource: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | None
"""A path to a ``.yaml``/``.yml``/``.json`` file, an already-loaded mapping, or ``None`` (empty)."""

DEMO_SEED_PATH: Final = Path(__file__).with_name("demo_seed.yaml")
"""The demo organisation shipped with the fake (users, cases, phases, work types, invoices)."""

_META: Final = ("_created_at", "_changed_at")
_ALIASES: Final = {"customers": "accounts"}

# (section, member) -> section whose keys the member must name. Checked after loading.
_REFERENCES: Final[Mapping[tuple[str, str], str]] = {
    ("users", "BusinessUnitGUID"): "business_units",
    ("users", "WorktypeGUID"): "work_types",
    ("cases", "AccountGUID"): "accounts",
    ("cases", "BusinessUnitGUID"): "business_units",
    ("cases", "CaseOwnerUserGUID"): "users",
    ("phases", "CaseGUID"): "cases",
    ("phases", "ParentPhaseGUID"): "phases",
    ("phases", "WorkTypeGUID"): "work_types",
    ("phases", "OwnerUserGUID"): "users",
    ("accounts", "CompanyGUID"): "companies",
    ("accounts", "HeadOfficeAddressGUID"): "addresses",
    ("companies", "HeadOfficeAddressGUID"): "addresses",
    ("addresses", "CompanyGUID"): "companies",
    ("contacts", "AccountGUID"): "accounts",
    ("invoices", "AccountGUID"): "accounts",
    ("invoices", "ReimburseInvoiceGUID"): "invoices",
    ("invoices", "MainCaseGUID"): "cases",
    ("invoices", "BusinessUnitGUID"): "business_units",
    ("invoices", "InvoiceStatus"): "invoice_statuses",
    ("hour_entries", "UserGUID"): "users",
    ("hour_entries", "CaseGUID"): "cases",
    ("hour_entries", "PhaseGUID"): "phases",
    ("hour_entries", "WorkTypeGUID"): "work_types",
    ("hour_entries", "InvoiceGUID"): "invoices",
}


class SeedError(ValueError):
    """The seed document is malformed; the message says where."""


def read_seed(source: SeedSource) -> dict[str, Any]:
    """Load a seed document from a path or mapping (``None`` is the empty document)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc}") from exc
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SeedError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SeedError(f"{path}: the top level must be a mapping of sections")
    return loaded


def apply_seed(store: SeveraStore, document: Mapping[str, Any], *, now: dt.datetime) -> None:
    """Load *document* into *store* (on top of what is there; clear the store first to replace)."""
    tables = store.tables()
    sections: dict[str, list[Any]] = {}
    for raw_name, records in document.items():
        if raw_name == "service":
            _apply_service(store, records)
            continue
        name = _ALIASES.get(raw_name, raw_name)
        if name not in tables:
            raise SeedError(f"unknown seed section {raw_name!r} (known: {sorted(tables)}, service)")
        if not isinstance(records, list):
            raise SeedError(f"{raw_name}: expected a list of records")
        sections.setdefault(name, []).extend(records)

    for name, table in tables.items():  # dependency order, so derived fields can look things up
        for index, raw in enumerate(sections.get(name, [])):
            where = f"{name}[{index}]"
            if not isinstance(raw, Mapping):
                raise SeedError(f"{where}: expected a mapping")
            meta = {key: raw[key] for key in _META if key in raw}
            values = {key: value for key, value in raw.items() if key not in _META}
            record = coerce_record(table.entity, values, where)
            _derive(store, name, record, now=now)
            try:
                table.put(record, at=now)
            except (KeyError, ValueError) as exc:
                raise SeedError(f"{where}: {exc}") from exc
            key = record[table.key]
            if "_created_at" in meta:
                table.touch(key, at=_timestamp(meta["_created_at"], f"{where}._created_at"), created=True)
            if "_changed_at" in meta:
                table.touch(key, at=_timestamp(meta["_changed_at"], f"{where}._changed_at"))
            if name == "accounts":
                stamp_account(table, key, meta)
    _check_references(store)


def load_seed(store: SeveraStore, source: SeedSource, *, now: dt.datetime) -> None:
    """Read *source* and apply it to *store*."""
    apply_seed(store, read_seed(source), now=now)


def _apply_service(store: SeveraStore, service: Any) -> None:
    if not isinstance(service, Mapping):
        raise SeedError("service: expected a mapping")
    for key, value in service.items():
        if key == "version":
            store.version = str(value)
        elif key == "entity_schema_version":
            store.entity_schema_version = str(value)
        else:
            raise SeedError(f"service: unknown key {key!r} (known: version, entity_schema_version)")


COMPANY_MEMBERS: Final = (
    "AnnualRevenue",
    "Email",
    "Employees",
    "HeadOfficeAddressGUID",
    "IndustryGUID",
    "LanguageGUID",
    "Name",
    "TimezoneGUID",
    "VatNumber",
    "Website",
)
"""Members a Customer repeats from its Company (same names in both contracts)."""

INVOICE_NESTED: Final = (
    "BuyerOrganization",
    "InvoiceConfig",
    "InvoiceDetails",
    "SellerContact",
    "SellerOrganization",
)
"""Invoice members of the placeholder types: the real service fills them, so the fake sends them as
present-but-empty elements (``{}``) rather than nil."""


def stamp_account(table: Table, key: str, meta: Mapping[str, Any]) -> None:
    """Keep an account's ``InsertTS`` / ``UpdatedTS`` and its row times the same instant.

    Times given as members place the row when the ``_created_at`` / ``_changed_at`` keys do not;
    then the members are set from the row (UTC), whichever came first.
    """
    record = table[key]
    if "_created_at" not in meta and record.get("InsertTS") is not None:
        table.touch(key, at=record["InsertTS"], created=True)
        if "_changed_at" not in meta and record.get("UpdatedTS") is None:
            table.touch(key, at=record["InsertTS"])
    if "_changed_at" not in meta and record.get("UpdatedTS") is not None:
        table.touch(key, at=record["UpdatedTS"])
    record["InsertTS"] = table.created_at(key)
    record["UpdatedTS"] = table.changed_at(key)


def sync_company(store: SeveraStore, account: Record, *, at: dt.datetime) -> None:
    """Make the account's Company exist and agree with the account's company members.

    A member the account leaves empty is taken from an existing company; one it sets wins.
    """
    guid = account.get("CompanyGUID")
    if not guid:
        return
    company = dict(store.companies.get(guid) or {"GUID": guid})
    for member in COMPANY_MEMBERS:
        if account.get(member) is None and company.get(member) is not None:
            account[member] = company[member]
        company[member] = account.get(member)
    if company != store.companies.get(guid):
        store.companies.put(company, at=at)


def _derive(store: SeveraStore, section: str, record: Record, *, now: dt.datetime) -> None:
    """Fill what Severa fills itself when the seed leaves it out (denormalised names)."""
    if section == "accounts":
        sync_company(store, record, at=now)
    if section == "invoices":
        account = store.accounts.get(record.get("AccountGUID"))
        if account is not None:
            record["AccountName"] = record.get("AccountName") or account["Name"]
            if record.get("AccountNumber") is None:
                record["AccountNumber"] = account["Number"]
            record["LanguageCode"] = record.get("LanguageCode") or account["LanguageCode"]
        for row in record.get("InvoiceRows") or []:
            # rowUnitPrice is a non-nillable decimal: the real service always sends it.
            if row.get("rowUnitPrice") is None and row.get("unitPriceAmount") is not None:
                row["rowUnitPrice"] = row["unitPriceAmount"]
        for member in INVOICE_NESTED:
            if record.get(member) is None:
                record[member] = {}
        if record.get("ReimburseInvoiceGUID"):
            record["IsCreditNote"] = True
    if section == "hour_entries" and not record.get("AccountGUID"):
        case = store.cases.get(record.get("CaseGUID"))
        if case is not None:
            record["AccountGUID"] = case["AccountGUID"]
    if section == "cases" and not record.get("AccountName"):
        account = store.accounts.get(record.get("AccountGUID"))
        if account is not None:
            record["AccountName"] = account["Name"]
            record.setdefault("AccountNumber", account["Number"])


def _check_references(store: SeveraStore) -> None:
    tables = store.tables()
    for (section, member), target in _REFERENCES.items():
        for record in tables[section]:
            value = record.get(member)
            if value is not None and value not in tables[target]:
                key = record[tables[section].key]
                raise SeedError(f"{section} {key}: {member} {value!r} is not in {target}")


def _timestamp(value: Any, where: str) -> dt.datetime:
    moment = coerce_value(TypeRef(Primitive.DATETIME), value, where)
    assert isinstance(moment, dt.datetime)
    return moment


def coerce_record(entity: str | ComplexType, values: Mapping[str, Any], where: str) -> Record:
    """Check and convert one record's values to store values of *entity*'s member types."""
    complex_type = SPEC.complex_type(entity) if isinstance(entity, str) else entity
    known = set(complex_type.member_names)
    unknown = [key for key in values if key not in known]
    if unknown:
        raise SeedError(f"{where}: {complex_type.name} has no member(s) {unknown}")
    return {
        member.name: coerce_value(member.type, values.get(member.name), f"{where}.{member.name}")
        for member in complex_type.members
    }


def coerce_value(ref: TypeRef, value: Any, where: str) -> Any:
    """Convert a YAML/JSON value to the store value of type *ref*."""
    if value is None:
        return None
    if ref.array:
        if not isinstance(value, list):
            raise SeedError(f"{where}: expected a list for {ref}")
        return [coerce_value(ref.item, item, f"{where}[{i}]") for i, item in enumerate(value)]
    kind = SPEC.kind(ref)
    if kind is TypeKind.COMPLEX:
        if not isinstance(value, Mapping):
            raise SeedError(f"{where}: expected a mapping for {ref.name}")
        return coerce_record(ref.name, value, where)
    if kind is TypeKind.ENUM:
        flags = SPEC.enum(ref.name)
        try:
            return value if isinstance(value, int) else flags.to_int(value)
        except ValueError as exc:
            raise SeedError(f"{where}: {exc}") from exc
    primitive = ref.primitive
    assert primitive is not None
    try:
        return _coerce_primitive(primitive, value)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise SeedError(f"{where}: {value!r} is not a valid {ref}") from exc


def _coerce_primitive(primitive: Primitive, value: Any) -> Any:
    if primitive is Primitive.STRING:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError("not a string")
        return str(value)  # YAML reads an unquoted code such as 1001 as an int
    if primitive in (Primitive.INT, Primitive.LONG):
        if isinstance(value, bool):
            raise TypeError("bool is not an integer")
        return int(value)
    if primitive is Primitive.DECIMAL:
        if isinstance(value, bool):
            raise TypeError("bool is not a decimal")
        return Decimal(str(value))
    if primitive is Primitive.BOOL:
        if not isinstance(value, bool):
            raise TypeError("not a bool")
        return value
    if primitive is Primitive.DATETIME:
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, dt.date):
            return dt.datetime.combine(value, dt.time())
        return dt.datetime.fromisoformat(str(value))
    if isinstance(value, bytes):
        return value
    return base64.b64decode(str(value), validate=True)
