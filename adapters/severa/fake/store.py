"""The fake's in-memory data: one :class:`Table` per Severa entity set.

Records are plain ``dict``s keyed by the entity's member names (``"GUID"``, ``"Quantity"`` …), with
every member of the data contract present (``None`` where unset), in store-value form (see
:mod:`adapters.severa.fake.codec`). Keeping Severa's own member names means a seed file, a test
assertion and the wire all speak the same vocabulary.

Every row also carries two UTC timestamps the real service keeps internally and the
``*ChangedSince`` operations read: when it was created and when it last changed. They live beside
the record, not in it, because most entities (HourEntry, Phase, User) have no such member.

Tests may read records directly (``fake.store.hour_entries[guid]["Quantity"]``). To *change* one,
go through :meth:`Table.put` / :meth:`Table.touch` so the change timestamp moves with it.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from adapters.severa.wsdl.spec import NS_ENTITIES, SPEC, ComplexType, Member, TypeRef

Record = dict[str, Any]
"""One entity: member name -> store value."""

DEFAULT_VERSION: Final = "fake-severa 1.0"
DEFAULT_ENTITY_SCHEMA_VERSION: Final = "1"


@dataclass(slots=True)
class _Row:
    record: Record
    created_at: dt.datetime
    changed_at: dt.datetime


def as_utc(moment: dt.datetime) -> dt.datetime:
    """Severa's timestamps are UTC; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


CONTACT: Final = ComplexType(
    "Contact",
    NS_ENTITIES,
    tuple(
        Member(name, TypeRef.parse(type_text))
        for name, type_text in (
            ("AccountGUID", "string"),
            ("Email", "string"),
            ("FirstName", "string"),
            ("GUID", "string"),
            ("IsActive", "bool"),
            ("LastName", "string"),
            ("Phone", "string"),
            ("Title", "string"),
        )
    ),
    documented=False,
)
"""The fake's own shape for an account's contact person. The contract notes list no ``Contact``
members and no operation of the contract returns one, so this never goes on the wire: it only lets
the fake know *when* a contact changed, which ``CheckContactChanges`` reads."""


class Table:
    """The records of one entity set, by key, in insertion order.

    *entity* names a data contract of the spec, or is a :class:`ComplexType` of the fake's own
    (:data:`CONTACT`).
    """

    def __init__(self, entity: str | ComplexType, *, key: str = "GUID") -> None:
        self.entity: ComplexType = SPEC.complex_type(entity) if isinstance(entity, str) else entity
        self.key = key
        self.entity.member(key)  # fail early on a key the entity does not have
        self._rows: dict[str, _Row] = {}

    def put(self, record: Mapping[str, Any], *, at: dt.datetime) -> Record:
        """Insert or replace a record (all members are kept; unknown members are an error).

        Replacing keeps the creation time and moves the change time to *at*.
        """
        unknown = set(record) - set(self.entity.member_names)
        if unknown:
            raise KeyError(f"{self.entity.name} has no member(s) {sorted(unknown)}")
        key = record.get(self.key)
        if not isinstance(key, str) or not key:
            raise ValueError(f"{self.entity.name} record needs a non-empty {self.key}")
        stored: Record = {name: record.get(name) for name in self.entity.member_names}
        moment = as_utc(at)
        previous = self._rows.get(key)
        created = previous.created_at if previous is not None else moment
        self._rows[key] = _Row(stored, created, moment)
        return stored

    def get(self, key: str | None) -> Record | None:
        if key is None:
            return None
        row = self._rows.get(key)
        return row.record if row is not None else None

    def __getitem__(self, key: str) -> Record:
        return self._rows[key].record

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Record]:
        return (row.record for row in list(self._rows.values()))

    def keys(self) -> list[str]:
        return list(self._rows)

    def delete(self, key: str) -> bool:
        return self._rows.pop(key, None) is not None

    def created_at(self, key: str) -> dt.datetime:
        return self._rows[key].created_at

    def changed_at(self, key: str) -> dt.datetime:
        return self._rows[key].changed_at

    def touch(self, key: str, *, at: dt.datetime, created: bool = False) -> None:
        """Move a record's change time (and with ``created=True`` its creation time) to *at*."""
        row = self._rows[key]
        row.changed_at = as_utc(at)
        if created:
            row.created_at = as_utc(at)

    def changed_since(self, cutoff: dt.datetime, *, new_only: bool = False) -> list[Record]:
        """Records changed (or, with *new_only*, created) at or after *cutoff*."""
        moment = as_utc(cutoff)
        return [
            row.record
            for row in self._rows.values()
            if (row.created_at if new_only else row.changed_at) >= moment
        ]

    def clear(self) -> None:
        self._rows.clear()

    def copy(self) -> Table:
        """An independent copy (records and timestamps), for staging changes."""
        other = Table(self.entity, key=self.key)
        other._rows = {
            key: _Row(copy.deepcopy(row.record), row.created_at, row.changed_at)
            for key, row in self._rows.items()
        }
        return other

    def take_rows(self, other: Table) -> None:
        """Make this table hold *other*'s rows (keeps this object, which tests may hold on to)."""
        self._rows = other._rows


class SeveraStore:
    """All entity sets of one fake Severa organisation.

    Accounts are stored in the ``Customer`` shape, a superset of ``Account``: ``IAccount`` and
    ``ICustomer`` read the same organisations, and the codec projects a record onto whichever
    contract type the operation returns. ``customers`` is the same table as ``accounts``.
    Invoice statuses have no GUID; they are keyed by ``Name``, which is what invoices refer to.

    An account's organisation is a ``Company`` (``CompanyGUID``), whose head-office ``Address``
    (``HeadOfficeAddressGUID``) is one of the addresses with that ``CompanyGUID``; contacts
    (:data:`CONTACT`) belong to an account. The Customer record repeats the company's members
    (``VatNumber``, ``Email``, ``HeadOfficeAddressGUID`` …), as Severa's Customer contract does;
    the fake keeps the two in step when either is changed by hand. ``invoice_log`` holds what
    ``AddNewInvoiceLogEntry`` wrote, per invoice GUID (no operation reads it back).
    """

    def __init__(self) -> None:
        self.business_units = Table("BusinessUnit")
        self.users = Table("User")
        self.work_types = Table("WorkType")
        self.companies = Table("Company")
        self.accounts = Table("Customer")
        self.addresses = Table("Address")
        self.contacts = Table(CONTACT)
        self.cases = Table("Case")
        self.phases = Table("Phase")
        self.hour_entries = Table("HourEntry")
        self.invoice_statuses = Table("InvoiceStatus", key="Name")
        self.invoices = Table("Invoice")
        self.invoice_log: dict[str, list[Record]] = {}
        self.version: str = DEFAULT_VERSION
        self.entity_schema_version: str = DEFAULT_ENTITY_SCHEMA_VERSION

    @property
    def customers(self) -> Table:
        return self.accounts

    def tables(self) -> dict[str, Table]:
        """Tables by seed-section name, in dependency order (referenced sets first)."""
        return {
            "business_units": self.business_units,
            "users": self.users,
            "work_types": self.work_types,
            "companies": self.companies,
            "accounts": self.accounts,
            "addresses": self.addresses,
            "contacts": self.contacts,
            "cases": self.cases,
            "phases": self.phases,
            "invoice_statuses": self.invoice_statuses,
            "invoices": self.invoices,
            "hour_entries": self.hour_entries,
        }

    def counts(self) -> dict[str, int]:
        return {name: len(table) for name, table in self.tables().items()}

    def clear(self) -> None:
        for table in self.tables().values():
            table.clear()
        self.invoice_log.clear()
        self.version = DEFAULT_VERSION
        self.entity_schema_version = DEFAULT_ENTITY_SCHEMA_VERSION

    def copy(self) -> SeveraStore:
        """An independent copy, to stage a change that must apply completely or not at all."""
        other = SeveraStore()
        for name, table in self.tables().items():
            other.tables()[name].take_rows(table.copy())
        other.invoice_log = copy.deepcopy(self.invoice_log)
        other.version = self.version
        other.entity_schema_version = self.entity_schema_version
        return other

    def take_contents(self, other: SeveraStore) -> None:
        """Adopt *other*'s data while keeping this store's table objects."""
        mine = self.tables()
        for name, table in other.tables().items():
            mine[name].take_rows(table)
        self.invoice_log = other.invoice_log
        self.version = other.version
        self.entity_schema_version = other.entity_schema_version
