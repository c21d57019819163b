"""One function per Severa operation the fake implements, registered under the operation's name.

A handler takes a :class:`Context` and the operation's parameters *by their wire names*
(``hourEntryInfo``, ``caseGUID`` …; the registry checks the names and order against the spec at
import), works on store values (see :mod:`adapters.severa.fake.codec`), and returns a store value
or raises :class:`~adapters.severa.fake.soap.ServiceFault`. Authentication, quota, fault injection
and (de)serialisation happen around it, in the server.

Behaviour chosen where the document leaves room (kept deterministic; the connector must cope with
all of it because the real service does all of it somewhere):

* **Missing single entity**: operations that declare ``NotFound`` fault with it
  (``GetUserByCode``, ``Get*ByGUID`` …); those that do not answer ``null``
  (``GetCaseByNumber``, ``GetAccountByNumber``, ``GetAccountByName``, ``GetAccountByVatNumber``,
  ``GetBusinessUnitByCode``). See :meth:`Context.missing`.
* **No results in a list**: ``null`` for the operations in :data:`NULL_WHEN_EMPTY`
  (``GetPhasesByCode``, ``GetCasesByAccountGUID``, ``GetHourEntriesByDateAndUserGUID``,
  ``GetHourEntriesByDateAndUser``, ``GetInvoicesByStatus``, ``GetInvoicesByStatusAndBusinessUnit``),
  an empty array for every other list operation. (Through zeep 4.3 the two arrive swapped: a nil
  array parses as ``[]`` and an empty one as ``None``.)
* **Codes and names** (user code, phase code, business-unit code, names) match case-insensitively,
  as a default SQL Server collation does.
* **ChangedSince**: ``startDateTime`` is UTC (naive = UTC), truncated to the minute; an entity is
  returned when it changed at or after that minute (once, however often it changed), in the order
  the entities were created. Options: ``1`` NewOnly (created since),
  ``2`` IncludeInactive (otherwise entities with ``IsActive == false`` are left out).
* **Accounts / customers ChangedSince** take every ``AccountGetOptions`` flag:
  ``CheckAddressChanges`` (64) also returns an account whose company's addresses changed since,
  ``CheckContactChanges`` (128) one whose contacts changed since, ``CheckChildChanges`` (224) both
  (the fake has no account groups: ``CheckAccountGroupChanges`` adds nothing).
  With ``NewOnly`` the child flags do not apply: a new address does not make an account new.
  ``ExcludeNotNumbered`` (4) leaves out accounts without a ``Number``; ``ExcludeWithNoWonCases``
  (8) leaves out accounts without a case (the fake does not model sales, so any case counts).
  A bit that is no flag is a ``GeneralFailure``. Nothing changed is an empty array, never
  null and never NotFound (the notes do not say; the other ChangedSince operations do the same).
* **Bad arguments** of the account, customer and invoice operations (a GUID that is missing or
  not a GUID, a negative ``maxInvoices``, an invoice number below 1, a log entry without text) are
  a ``GeneralFailure``, which is what WCF makes of the service's argument exceptions; an unknown
  but well-formed GUID is NotFound where declared, else null.
* **Invoices**: ``GetInvoicesByStatus`` lists in creation order, ``maxInvoices`` caps the count;
  an unknown status or business unit is NotFound. ``SetInvoiceNumber`` refuses a number another
  invoice of the same numbering business unit has (GeneralFailure: no Validation is declared); a
  null ``referenceNumber`` gets the Finnish reference of the number (7-3-1 check digit), a null
  ``status`` keeps the status. ``AddNewInvoiceLogEntry`` with ``ignoreDuplicates`` skips an entry
  equal in context, text and source to one already logged.
* **Hour entries**: ``Quantity`` must be > 0 and ≤ 999; ``UserGUID``, ``CaseGUID``, ``PhaseGUID``
  must exist, the phase must belong to the case, the case must be open, the phase not locked,
  the user active; ``WorkTypeGUID`` defaults to the phase's, then the user's work
  type, and must exist; ``EventDate`` is required. All problems are reported in one
  ``ValidationException``. ``AccountGUID`` (from the case), ``IsApproved``, ``IsReadOnly``,
  ``InvoiceGUID`` and ``InvoiceRowGUID`` are Severa's to set: what the caller sends is ignored.
  Update replaces the whole entry (a member left out becomes null), like any WCF update.
  Update/Delete of a read-only (approved/invoiced) entry is ``NoPermission``; Update of an unknown
  GUID is ``Validation`` (the operation declares no NotFound); Delete of an unknown GUID returns
  ``false``.
* **Paging** (``GetAllAccounts`` / ``GetAllCustomers``): ``count`` is silently capped at 100.
* Operations without a handler answer ``GeneralFailureException`` ("not implemented by the fake").
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import operator
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, TypeVar

from adapters.severa.fake.codec import DOTNET_MIN_DATETIME
from adapters.severa.fake.soap import ServiceFault
from adapters.severa.fake.store import Record, SeveraStore, Table, as_utc
from adapters.severa.wsdl.spec import SPEC, Fault, Operation

Handler = Callable[..., Any]
_H = TypeVar("_H", bound=Handler)

HANDLERS: dict[str, Handler] = {}
"""Operation name -> handler."""

NULL_WHEN_EMPTY: Final = frozenset(
    {
        "GetPhasesByCode",
        "GetCasesByAccountGUID",
        "GetHourEntriesByDateAndUserGUID",
        "GetHourEntriesByDateAndUser",
        "GetInvoicesByStatus",
        "GetInvoicesByStatusAndBusinessUnit",
    }
)
"""List operations that answer ``null`` rather than an empty array when nothing matches."""

MAX_QUANTITY: Final = Decimal(999)
MAX_PAGE: Final = 100
NEW_ONLY: Final = 1
INCLUDE_INACTIVE: Final = 2
EXCLUDE_NOT_NUMBERED: Final = 4
EXCLUDE_WITH_NO_WON_CASES: Final = 8
CHECK_ADDRESS_CHANGES: Final = 64
CHECK_CONTACT_CHANGES: Final = 128
ACCOUNT_OPTIONS: Final = SPEC.enum("AccountGetOptions")
ACCOUNT_OPTION_BITS: Final = functools.reduce(operator.or_, (number for _, number in ACCOUNT_OPTIONS.values))
ATTACHMENT_ONLY: Final = 1


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use besides its parameters."""

    store: SeveraStore
    now: dt.datetime
    operation: Operation

    def missing(self, what: str) -> None:
        """Handle an entity that does not exist: raise NotFound if the operation declares it.

        Otherwise return, and the handler answers ``null``, as Severa does for such operations.
        """
        if Fault.NOT_FOUND in self.operation.faults:
            raise ServiceFault(Fault.NOT_FOUND, f"{what} was not found.")


def operation(name: str) -> Callable[[_H], _H]:
    """Register a handler for operation *name*; its parameters must be the operation's, in order."""
    spec_operation = SPEC.operation(name)

    def register(handler: _H) -> _H:
        parameters = list(inspect.signature(handler).parameters)[1:]
        expected = [parameter.name for parameter in spec_operation.parameters]
        if parameters != expected:
            raise TypeError(f"handler for {name} takes {parameters}, the contract says {expected}")
        if name in HANDLERS:
            raise TypeError(f"two handlers for {name}")
        HANDLERS[name] = handler
        return handler

    return register


# --------------------------------------------------------------------------------------------------
# Helpers


def _same(left: str | None, right: str | None) -> bool:
    """Case-insensitive equality (SQL Server's default collation), ``None`` matching nothing."""
    return left is not None and right is not None and left.casefold() == right.casefold()


def _day(moment: dt.datetime | None) -> dt.date | None:
    return None if moment is None else moment.date()


def _within(moment: dt.datetime | None, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    """Whether *moment*'s date lies in [start, end] by date; an open bound is no bound."""
    day = _day(moment)
    if day is None:
        return False
    start_day, end_day = _day(start), _day(end)
    return (start_day is None or day >= start_day) and (end_day is None or day <= end_day)


def minute_cutoff(start: dt.datetime) -> dt.datetime:
    """Severa matches ``*ChangedSince`` to the minute: the cutoff is the start of that UTC minute."""
    return as_utc(start).replace(second=0, microsecond=0)


def _changed_since(
    table: Table,
    start: dt.datetime,
    options: int,
    *,
    where: Callable[[Record], bool] | None = None,
) -> list[Record]:
    records = table.changed_since(minute_cutoff(start), new_only=bool(options & NEW_ONLY))
    if not options & INCLUDE_INACTIVE and "IsActive" in table.entity.member_names:
        records = [record for record in records if record.get("IsActive") is not False]
    if where is not None:
        records = [record for record in records if where(record)]
    return records


def _in_business_unit(ctx: Context, case_guid: str | None, business_unit: str | None) -> bool:
    if not business_unit:
        return True
    case = ctx.store.cases.get(case_guid)
    return case is not None and case["BusinessUnitGUID"] == business_unit


def _validation(problems: Iterable[str]) -> ServiceFault:
    return ServiceFault(Fault.VALIDATION, " ".join(problems))


def _guid(value: str | None, name: str) -> str:
    """A GUID argument as WCF's service code parses it: missing or malformed is a GeneralFailure."""
    if not value:
        raise ServiceFault(Fault.GENERAL_FAILURE, f"{name} is required.")
    try:
        uuid.UUID(value)
    except ValueError:
        raise ServiceFault(Fault.GENERAL_FAILURE, f"{name} '{value}' is not a valid GUID.") from None
    return value


def reference_number(base: int | str) -> str:
    """The Finnish creditor reference (viitenumero) of *base*: its digits and a 7-3-1 check digit."""
    digits = str(base)
    if not digits.isdigit() or not 3 <= len(digits) <= 19:
        raise ValueError(f"a reference is built from 3 to 19 digits, not {digits!r}")
    weighted = sum(int(digit) * (7, 3, 1)[index % 3] for index, digit in enumerate(reversed(digits)))
    return f"{digits}{-weighted % 10}"


def _page(records: list[Record], start: int, count: int) -> list[Record]:
    if start < 0 or count < 0:
        raise ServiceFault(Fault.GENERAL_FAILURE, "startFromIndex and count must not be negative.")
    return records[start : start + min(count, MAX_PAGE)]


# --------------------------------------------------------------------------------------------------
# IAPI


@operation("GetVersion")
def get_version(ctx: Context) -> str:
    return ctx.store.version


@operation("GetEntitySchemaVersion")
def get_entity_schema_version(ctx: Context) -> str:
    return ctx.store.entity_schema_version


# --------------------------------------------------------------------------------------------------
# IHourEntry


def _hour_entry_problems(ctx: Context, entry: Record) -> list[str]:
    """Everything wrong with *entry* as Severa's validation would name it; fills the work type."""
    store = ctx.store
    problems: list[str] = []
    quantity = entry.get("Quantity")
    if quantity is None or quantity <= 0 or quantity > MAX_QUANTITY:
        problems.append(f"Quantity must be greater than 0 and at most {MAX_QUANTITY} hours (got {quantity}).")
    if entry.get("EventDate") in (None, DOTNET_MIN_DATETIME):
        problems.append("EventDate is required.")
    user = store.users.get(entry.get("UserGUID"))
    if user is None:
        problems.append(f"UserGUID: user '{entry.get('UserGUID')}' does not exist.")
    elif user["IsActive"] is False:
        problems.append(f"UserGUID: user '{user['GUID']}' is inactive.")
    case = store.cases.get(entry.get("CaseGUID"))
    if case is None:
        problems.append(f"CaseGUID: case '{entry.get('CaseGUID')}' does not exist.")
    elif case["IsClosed"]:
        problems.append(f"CaseGUID: case '{case['GUID']}' is closed.")
    phase = store.phases.get(entry.get("PhaseGUID"))
    if phase is None:
        problems.append(f"PhaseGUID: phase '{entry.get('PhaseGUID')}' does not exist.")
    else:
        if case is not None and phase["CaseGUID"] != case["GUID"]:
            problems.append(f"PhaseGUID: phase '{phase['GUID']}' does not belong to case '{case['GUID']}'.")
        if phase["IsLocked"]:
            problems.append(f"PhaseGUID: phase '{phase['GUID']}' is locked.")
    if entry.get("WorkTypeGUID") is None:
        entry["WorkTypeGUID"] = (phase or {}).get("WorkTypeGUID") or (user or {}).get("WorktypeGUID")
    if entry.get("WorkTypeGUID") is None:
        problems.append("WorkTypeGUID is required (neither the phase nor the user has a default).")
    elif entry["WorkTypeGUID"] not in store.work_types:
        problems.append(f"WorkTypeGUID: work type '{entry['WorkTypeGUID']}' does not exist.")
    return problems


def _store_hour_entry(ctx: Context, entry: Record, *, previous: Record | None) -> Record:
    case = ctx.store.cases[entry["CaseGUID"]]
    work_type = ctx.store.work_types[entry["WorkTypeGUID"]]
    entry["AccountGUID"] = case["AccountGUID"]
    for member in ("IsApproved", "IsReadOnly", "InvoiceGUID", "InvoiceRowGUID"):
        entry[member] = previous.get(member) if previous is not None else None
    entry["IsApproved"] = bool(entry["IsApproved"])
    entry["IsReadOnly"] = bool(entry["IsReadOnly"])
    if entry.get("IsProductive") is None:
        entry["IsProductive"] = work_type["IsProductive"]
    if entry.get("InvoiceQuantity") is None and entry.get("IsBillable"):
        entry["InvoiceQuantity"] = entry["Quantity"]
    return ctx.store.hour_entries.put(entry, at=ctx.now)


@operation("GetHourEntryByGUID")
def get_hour_entry_by_guid(ctx: Context, hourEntryGUID: str | None) -> Record | None:
    entry = ctx.store.hour_entries.get(hourEntryGUID)
    if entry is None:
        ctx.missing(f"Hour entry '{hourEntryGUID}'")
    return entry


def _entries(
    ctx: Context,
    business_unit: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    user: str | None = None,
    case: str | None = None,
) -> list[Record]:
    found = [
        entry
        for entry in ctx.store.hour_entries
        if _within(entry["EventDate"], start, end)
        and (user is None or entry["UserGUID"] == user)
        and (case is None or entry["CaseGUID"] == case)
        and _in_business_unit(ctx, entry["CaseGUID"], business_unit)
    ]
    return sorted(found, key=lambda entry: entry["EventDate"])


@operation("GetHourEntriesByDate")
def get_hour_entries_by_date(
    ctx: Context, businessUnitGUID: str | None, startdate: dt.datetime | None, enddate: dt.datetime | None
) -> list[Record]:
    return _entries(ctx, businessUnitGUID, startdate, enddate)


@operation("GetHourEntriesByDateAndUserGUID")
def get_hour_entries_by_date_and_user_guid(
    ctx: Context,
    businessUnitGUID: str | None,
    startdate: dt.datetime | None,
    enddate: dt.datetime | None,
    userGUID: str | None,
) -> list[Record]:
    return _entries(ctx, businessUnitGUID, startdate, enddate, user=userGUID or "")


@operation("GetHourEntriesByDateAndUser")
def get_hour_entries_by_date_and_user(
    ctx: Context,
    businessUnitGUID: str | None,
    startdate: dt.datetime | None,
    enddate: dt.datetime | None,
    userGUID: str | None,
) -> list[Record]:
    return _entries(ctx, businessUnitGUID, startdate, enddate, user=userGUID or "")


@operation("GetHourEntriesByCaseGUID")
def get_hour_entries_by_case_guid(
    ctx: Context, caseGuid: str | None, startDate: dt.datetime | None, endDate: dt.datetime | None
) -> list[Record]:
    return _entries(ctx, None, startDate, endDate, case=caseGuid or "")


@operation("GetInvoicedHourEntriesByCaseGUID")
def get_invoiced_hour_entries_by_case_guid(ctx: Context, caseGuid: str | None) -> list[Record]:
    return [entry for entry in _entries(ctx, None, None, None, case=caseGuid or "") if entry["InvoiceGUID"]]


@operation("GetHourEntriesChangedSince")
def get_hour_entries_changed_since(ctx: Context, startDate: dt.datetime) -> list[Record]:
    return _changed_since(ctx.store.hour_entries, startDate, 0)


@operation("AddNewHourEntry")
def add_new_hour_entry(ctx: Context, hourEntryInfo: Record | None) -> Record:
    if hourEntryInfo is None:
        raise _validation(["hourEntryInfo is required."])
    entry = dict(hourEntryInfo)
    problems = _hour_entry_problems(ctx, entry)
    if problems:
        raise _validation(problems)
    entry["GUID"] = str(uuid.uuid4())
    return _store_hour_entry(ctx, entry, previous=None)


@operation("UpdateHourEntry")
def update_hour_entry(ctx: Context, hourEntryInfo: Record | None) -> Record:
    if hourEntryInfo is None:
        raise _validation(["hourEntryInfo is required."])
    entry = dict(hourEntryInfo)
    previous = ctx.store.hour_entries.get(entry.get("GUID"))
    if previous is None:
        raise _validation([f"GUID: hour entry '{entry.get('GUID')}' does not exist."])
    if previous["IsReadOnly"]:
        raise ServiceFault(Fault.NO_PERMISSION, f"Hour entry '{previous['GUID']}' is read-only.")
    problems = _hour_entry_problems(ctx, entry)
    if problems:
        raise _validation(problems)
    return _store_hour_entry(ctx, entry, previous=previous)


@operation("DeleteHourEntry")
def delete_hour_entry(ctx: Context, hourEntryGUID: str | None) -> bool:
    entry = ctx.store.hour_entries.get(hourEntryGUID)
    if entry is None:
        return False
    if entry["IsReadOnly"]:
        raise ServiceFault(Fault.NO_PERMISSION, f"Hour entry '{entry['GUID']}' is read-only.")
    return ctx.store.hour_entries.delete(entry["GUID"])


# --------------------------------------------------------------------------------------------------
# IUser


@operation("GetAllUsers")
def get_all_users(ctx: Context, businessUnitGUID: str | None, includeInactive: bool) -> list[Record]:
    return [
        user
        for user in ctx.store.users
        if (includeInactive or user["IsActive"] is not False)
        and (not businessUnitGUID or user["BusinessUnitGUID"] == businessUnitGUID)
    ]


@operation("GetUserByName")
def get_user_by_name(ctx: Context, firstName: str | None, lastName: str | None) -> Record | None:
    for user in ctx.store.users:
        if _same(user["FirstName"], firstName) and _same(user["LastName"], lastName):
            return user
    ctx.missing(f"User '{firstName} {lastName}'")
    return None


@operation("GetUserByGUID")
def get_user_by_guid(ctx: Context, userGUID: str | None) -> Record | None:
    user = ctx.store.users.get(userGUID)
    if user is None:
        ctx.missing(f"User '{userGUID}'")
    return user


@operation("GetUsersByGUIDs")
def get_users_by_guids(ctx: Context, userGUIDs: list[str] | None) -> list[Record]:
    users = (ctx.store.users.get(guid) for guid in userGUIDs or [])
    return [user for user in users if user is not None]


@operation("GetUserByCode")
def get_user_by_code(ctx: Context, userCode: str | None) -> Record | None:
    for user in ctx.store.users:
        if _same(user["Code"], userCode):
            return user
    ctx.missing(f"User with code '{userCode}'")
    return None


@operation("GetUsersChangedSince")
def get_users_changed_since(
    ctx: Context, businessUnitGUID: str | None, startDateTime: dt.datetime, options: int
) -> list[Record]:
    return _changed_since(
        ctx.store.users,
        startDateTime,
        options,
        where=lambda user: not businessUnitGUID or user["BusinessUnitGUID"] == businessUnitGUID,
    )


def _set_user_active(ctx: Context, guid: str | None, active: bool) -> bool:
    user = ctx.store.users.get(guid)
    if user is None:
        ctx.missing(f"User '{guid}'")
        return False
    ctx.store.users.put({**user, "IsActive": active}, at=ctx.now)
    return True


@operation("DisableUser")
def disable_user(ctx: Context, userGUID: str | None) -> bool:
    return _set_user_active(ctx, userGUID, False)


@operation("EnableUser")
def enable_user(ctx: Context, userGUID: str | None) -> bool:
    return _set_user_active(ctx, userGUID, True)


# --------------------------------------------------------------------------------------------------
# ICase


@operation("GetAllCases")
def get_all_cases(ctx: Context, businessUnitGUID: str | None) -> list[Record]:
    return [case for case in ctx.store.cases if _in_business_unit(ctx, case["GUID"], businessUnitGUID)]


@operation("GetCaseByGUID")
def get_case_by_guid(ctx: Context, caseGuid: str | None) -> Record | None:
    case = ctx.store.cases.get(caseGuid)
    if case is None:
        ctx.missing(f"Case '{caseGuid}'")
    return case


@operation("GetCaseByNumber")
def get_case_by_number(ctx: Context, caseNumber: int) -> Record | None:
    for case in ctx.store.cases:
        if case["CaseNumber"] == caseNumber:
            return case
    ctx.missing(f"Case number {caseNumber}")
    return None


@operation("GetCasesByAccountGUID")
def get_cases_by_account_guid(
    ctx: Context, businessUnitGUID: str | None, accountGuid: str | None
) -> list[Record]:
    return [
        case
        for case in ctx.store.cases
        if case["AccountGUID"] == accountGuid and _in_business_unit(ctx, case["GUID"], businessUnitGUID)
    ]


@operation("GetCasesChangedSince")
def get_cases_changed_since(
    ctx: Context, businessUnitGUID: str | None, startDateTime: dt.datetime, options: int
) -> list[Record]:
    return _changed_since(
        ctx.store.cases,
        startDateTime,
        options,
        where=lambda case: _in_business_unit(ctx, case["GUID"], businessUnitGUID),
    )


# --------------------------------------------------------------------------------------------------
# IPhase


@operation("GetPhaseByGUID")
def get_phase_by_guid(ctx: Context, phaseGUID: str | None) -> Record | None:
    phase = ctx.store.phases.get(phaseGUID)
    if phase is None:
        ctx.missing(f"Phase '{phaseGUID}'")
    return phase


@operation("GetPhasesByCaseGUID")
def get_phases_by_case_guid(ctx: Context, caseGUID: str | None) -> list[Record]:
    return [phase for phase in ctx.store.phases if phase["CaseGUID"] == caseGUID]


@operation("GetPhasesByCode")
def get_phases_by_code(ctx: Context, phaseCode: str | None, caseGUID: str | None) -> list[Record]:
    return [
        phase
        for phase in ctx.store.phases
        if _same(phase["Code"], phaseCode) and (not caseGUID or phase["CaseGUID"] == caseGUID)
    ]


@operation("GetHourEntryPhasesByUserGUID")
def get_hour_entry_phases_by_user_guid(ctx: Context, userGUID: str | None) -> list[Record]:
    """The phase trees a user can enter hours on: phases of open cases that are not locked."""
    store = ctx.store
    if userGUID not in store.users:
        return []
    eligible: dict[str, Record] = {}
    for phase in store.phases:
        case = store.cases.get(phase["CaseGUID"])
        if case is not None and not case["IsClosed"] and not phase["IsLocked"]:
            eligible[phase["GUID"]] = phase

    def node(phase: Record) -> Record:
        case = store.cases[phase["CaseGUID"]]
        children = [child for child in eligible.values() if child["ParentPhaseGUID"] == phase["GUID"]]
        return {
            "AccountGUID": case["AccountGUID"],
            "AccountName": case["AccountName"],
            "CaseGUID": case["GUID"],
            "ChildPhases": [node(child) for child in children],
            "GUID": phase["GUID"],
            "IsLocked": phase["IsLocked"],
            "Name": phase["Name"],
            "ParentPhaseGUID": phase["ParentPhaseGUID"],
            "WorkTypeGUID": phase["WorkTypeGUID"],
        }

    return [node(phase) for phase in eligible.values() if phase["ParentPhaseGUID"] not in eligible]


@operation("GetPhasesChangedSince")
def get_phases_changed_since(
    ctx: Context, businessUnitGUID: str | None, startDateTime: dt.datetime, options: int
) -> list[Record]:
    return _changed_since(
        ctx.store.phases,
        startDateTime,
        options,
        where=lambda phase: _in_business_unit(ctx, phase["CaseGUID"], businessUnitGUID),
    )


# --------------------------------------------------------------------------------------------------
# IWorkType


@operation("GetWorkTypeByHourGUID")
def get_work_type_by_hour_guid(ctx: Context, hourGUID: str | None) -> Record | None:
    entry = ctx.store.hour_entries.get(hourGUID)
    work_type = ctx.store.work_types.get(entry["WorkTypeGUID"]) if entry is not None else None
    if work_type is None:
        ctx.missing(f"Work type of hour entry '{hourGUID}'")
    return work_type


@operation("GetWorkTypeByGUID")
def get_work_type_by_guid(ctx: Context, workTypeGUID: str | None) -> Record | None:
    work_type = ctx.store.work_types.get(workTypeGUID)
    if work_type is None:
        ctx.missing(f"Work type '{workTypeGUID}'")
    return work_type


@operation("GetWorkTypesByPhaseGUID")
def get_work_types_by_phase_guid(ctx: Context, phaseGUID: str | None) -> list[Record] | None:
    if phaseGUID not in ctx.store.phases:
        ctx.missing(f"Phase '{phaseGUID}'")
        return None
    return [work_type for work_type in ctx.store.work_types if work_type["IsActive"] is not False]


@operation("GetAllWorkTypes")
def get_all_work_types(ctx: Context) -> list[Record]:
    return list(ctx.store.work_types)


@operation("GetWorkTypesChangedSince")
def get_work_types_changed_since(ctx: Context, startDateTime: dt.datetime, options: int) -> list[Record]:
    return _changed_since(ctx.store.work_types, startDateTime, options)


# --------------------------------------------------------------------------------------------------
# IAccount / ICustomer (one table, Customer-shaped)


def _account_by(ctx: Context, what: str, test: Callable[[Record], bool]) -> Record | None:
    for account in ctx.store.accounts:
        if test(account):
            return account
    ctx.missing(what)
    return None


@operation("GetAccountByName")
def get_account_by_name(ctx: Context, accountName: str | None) -> Record | None:
    return _account_by(ctx, f"Account '{accountName}'", lambda account: _same(account["Name"], accountName))


@operation("GetAccountByNumber")
def get_account_by_number(ctx: Context, accountNumber: int) -> Record | None:
    return _account_by(
        ctx, f"Account number {accountNumber}", lambda account: account["Number"] == accountNumber
    )


@operation("GetAccountByGUID")
def get_account_by_guid(ctx: Context, accountGuid: str | None) -> Record | None:
    account = ctx.store.accounts.get(_guid(accountGuid, "accountGuid"))
    if account is None:
        ctx.missing(f"Account '{accountGuid}'")
    return account


@operation("GetAccountByVatNumber")
def get_account_by_vat_number(ctx: Context, vatNumber: str | None) -> Record | None:
    return _account_by(
        ctx, f"Account with VAT number '{vatNumber}'", lambda a: _same(a["VatNumber"], vatNumber)
    )


@operation("GetAccountsByCompanyGUID")
def get_accounts_by_company_guid(ctx: Context, companyGuid: str | None) -> list[Record]:
    return [account for account in ctx.store.accounts if account["CompanyGUID"] == companyGuid]


@operation("GetAccountsByInsertDate")
def get_accounts_by_insert_date(
    ctx: Context, insertStartDate: dt.datetime, insertEndDate: dt.datetime | None
) -> list[Record]:
    return [
        account
        for account in ctx.store.accounts
        if _within(account["InsertTS"], insertStartDate, insertEndDate)
    ]


def accounts_changed_since(ctx: Context, start: dt.datetime, options: int) -> list[Record]:
    """The accounts ``Get{Accounts,Customers}ChangedSince`` return (see the module docstring)."""
    if options < 0 or options & ~ACCOUNT_OPTION_BITS:
        raise ServiceFault(
            Fault.GENERAL_FAILURE, f"options {options} is not a combination of AccountGetOptions."
        )
    store = ctx.store
    cutoff = minute_cutoff(start)
    own = _changed_since(store.accounts, start, options | INCLUDE_INACTIVE)
    changed = {account["GUID"] for account in own}
    if not options & NEW_ONLY:
        if options & CHECK_ADDRESS_CHANGES:
            companies = {address["CompanyGUID"] for address in store.addresses.changed_since(cutoff)}
            changed |= {account["GUID"] for account in store.accounts if account["CompanyGUID"] in companies}
        if options & CHECK_CONTACT_CHANGES:
            changed |= {contact["AccountGUID"] for contact in store.contacts.changed_since(cutoff)}
    with_cases = {case["AccountGUID"] for case in store.cases}
    return [
        account
        for account in store.accounts
        if account["GUID"] in changed
        and (options & INCLUDE_INACTIVE or account["IsActive"] is not False)
        and not (options & EXCLUDE_NOT_NUMBERED and account["Number"] is None)
        and not (options & EXCLUDE_WITH_NO_WON_CASES and account["GUID"] not in with_cases)
    ]


@operation("GetAccountsChangedSinceOpts")
def get_accounts_changed_since_opts(ctx: Context, startDateTime: dt.datetime, options: int) -> list[Record]:
    return accounts_changed_since(ctx, startDateTime, options)


@operation("GetAccountsChangedSince")
def get_accounts_changed_since(ctx: Context, startDateTime: dt.datetime, options: int) -> list[Record]:
    return accounts_changed_since(ctx, startDateTime, options)


def _all_accounts(ctx: Context, options: int, start: int, count: int) -> list[Record]:
    accounts = [
        account
        for account in ctx.store.accounts
        if (options & INCLUDE_INACTIVE or account["IsActive"] is not False)
        and not (options & EXCLUDE_NOT_NUMBERED and account["Number"] is None)
    ]
    return _page(accounts, start, count)


@operation("GetAllAccounts")
def get_all_accounts(ctx: Context, options: int, startFromIndex: int, count: int) -> list[Record]:
    # AccountTiny is an undocumented placeholder type: one (empty) item per account on the page.
    return _all_accounts(ctx, options, startFromIndex, count)


@operation("GetHeadOfficeAddressByAccountGUID")
def get_head_office_address_by_account_guid(ctx: Context, accountGUID: str | None) -> Record | None:
    # No NotFound is declared: an unknown account, or one without a head office, is null.
    account = ctx.store.accounts.get(_guid(accountGUID, "accountGUID"))
    company = ctx.store.companies.get(account["CompanyGUID"]) if account is not None else None
    guid = (company or account or {}).get("HeadOfficeAddressGUID")
    return ctx.store.addresses.get(guid)


@operation("GetCustomerByGUID")
def get_customer_by_guid(ctx: Context, accountGuid: str | None) -> Record | None:
    customer = ctx.store.customers.get(_guid(accountGuid, "accountGuid"))
    if customer is None:
        ctx.missing(f"Customer '{accountGuid}'")
    return customer


@operation("GetCustomersChangedSince")
def get_customers_changed_since(ctx: Context, startDateTime: dt.datetime, options: int) -> list[Record]:
    return accounts_changed_since(ctx, startDateTime, options)


@operation("GetAllCustomers")
def get_all_customers(ctx: Context, options: int, startFromIndex: int, count: int) -> list[Record]:
    return _all_accounts(ctx, options, startFromIndex, count)


# --------------------------------------------------------------------------------------------------
# IInvoice / IInvoiceStatus


def _status(ctx: Context, name: str | None) -> Record:
    for status in ctx.store.invoice_statuses:
        if _same(status["Name"], name):
            return status
    raise ServiceFault(Fault.NOT_FOUND, f"Invoice status '{name}' was not found.")


def _invoice_in_unit(invoice: Record, business_unit: str | None) -> bool:
    return not business_unit or business_unit in (
        invoice["BusinessUnitGUID"],
        invoice["InvoiceNumberingBusinessUnitGUID"],
    )


@operation("GetInvoiceByGUID")
def get_invoice_by_guid(ctx: Context, invoiceGUID: str | None) -> Record | None:
    invoice = ctx.store.invoices.get(_guid(invoiceGUID, "invoiceGUID"))
    if invoice is None:
        ctx.missing(f"Invoice '{invoiceGUID}'")
    return invoice


@operation("GetInvoiceByNumber")
def get_invoice_by_number(ctx: Context, invoiceNumber: int, businessUnitGUID: str | None) -> Record | None:
    if invoiceNumber < 1:
        raise ServiceFault(Fault.GENERAL_FAILURE, f"invoiceNumber {invoiceNumber} is not an invoice number.")
    for invoice in ctx.store.invoices:
        if invoice["Number"] == invoiceNumber and _invoice_in_unit(invoice, businessUnitGUID):
            return invoice
    ctx.missing(f"Invoice number {invoiceNumber}")
    return None


@operation("GetInvoicesByDate")
def get_invoices_by_date(
    ctx: Context, businessUnitGUID: str | None, startDate: dt.datetime, endDate: dt.datetime, options: int
) -> list[Record]:
    return [
        invoice
        for invoice in ctx.store.invoices
        if _within(invoice["Date"], startDate, endDate) and _invoice_in_unit(invoice, businessUnitGUID)
    ]


@operation("GetInvoicesByDateAndStatus")
def get_invoices_by_date_and_status(
    ctx: Context,
    businessUnitGUID: str | None,
    startDate: dt.datetime | None,
    endDate: dt.datetime | None,
    status: str | None,
    options: int,
) -> list[Record]:
    return [
        invoice
        for invoice in ctx.store.invoices
        if _within(invoice["Date"], startDate, endDate)
        and _same(invoice["InvoiceStatus"], status)
        and _invoice_in_unit(invoice, businessUnitGUID)
    ]


@operation("GetInvoicesByStatus")
def get_invoices_by_status(
    ctx: Context, businessUnitGUID: str | None, status: str | None, options: int, maxInvoices: int | None
) -> list[Record]:
    if maxInvoices is not None and maxInvoices < 0:
        raise ServiceFault(Fault.GENERAL_FAILURE, f"maxInvoices {maxInvoices} must not be negative.")
    if businessUnitGUID and _guid(businessUnitGUID, "businessUnitGUID") not in ctx.store.business_units:
        raise ServiceFault(Fault.NOT_FOUND, f"Business unit '{businessUnitGUID}' was not found.")
    name = _status(ctx, status)["Name"]
    found = [
        invoice
        for invoice in ctx.store.invoices
        if invoice["InvoiceStatus"] == name and _invoice_in_unit(invoice, businessUnitGUID)
    ]
    return found if maxInvoices is None else found[:maxInvoices]


@operation("GetInvoicesByStatusAndBusinessUnit")
def get_invoices_by_status_and_business_unit(
    ctx: Context, status: str | None, businessUnitGUID: str | None
) -> list[Record]:
    name = _status(ctx, status)["Name"]
    return [
        invoice
        for invoice in ctx.store.invoices
        if invoice["InvoiceStatus"] == name and _invoice_in_unit(invoice, businessUnitGUID)
    ]


def _invoice(ctx: Context, guid: str | None) -> Record:
    invoice = ctx.store.invoices.get(_guid(guid, "invoiceGUID"))
    if invoice is None:
        raise ServiceFault(Fault.NOT_FOUND, f"Invoice '{guid}' was not found.")
    return invoice


@operation("SetInvoiceStatus")
def set_invoice_status(ctx: Context, invoiceGUID: str | None, status: str | None) -> None:
    invoice = _invoice(ctx, invoiceGUID)
    ctx.store.invoices.put({**invoice, "InvoiceStatus": _status(ctx, status)["Name"]}, at=ctx.now)


@operation("SetInvoicePaymentDate")
def set_invoice_payment_date(ctx: Context, invoiceGUID: str | None, paymentDate: dt.datetime | None) -> None:
    invoice = _invoice(ctx, invoiceGUID)
    ctx.store.invoices.put({**invoice, "PaymentDate": paymentDate}, at=ctx.now)


@operation("SetInvoiceNumber")
def set_invoice_number(
    ctx: Context, invoiceGUID: str | None, invoiceNumber: int, referenceNumber: str | None, status: str | None
) -> None:
    invoice = _invoice(ctx, invoiceGUID)
    if invoiceNumber < 1:
        raise ServiceFault(Fault.GENERAL_FAILURE, f"invoiceNumber {invoiceNumber} is not an invoice number.")
    numbering = invoice["InvoiceNumberingBusinessUnitGUID"] or invoice["BusinessUnitGUID"]
    for other in ctx.store.invoices:
        if (
            other["GUID"] != invoice["GUID"]
            and other["Number"] == invoiceNumber
            and (other["InvoiceNumberingBusinessUnitGUID"] or other["BusinessUnitGUID"]) == numbering
        ):
            raise ServiceFault(
                Fault.GENERAL_FAILURE, f"Invoice number {invoiceNumber} is already used by another invoice."
            )
    changes: Record = {
        "Number": invoiceNumber,
        "ReferenceNumber": referenceNumber or reference_number(invoiceNumber),
    }
    if status:
        changes["InvoiceStatus"] = _status(ctx, status)["Name"]
    ctx.store.invoices.put({**invoice, **changes}, at=ctx.now)


@operation("AddNewInvoiceLogEntry")
def add_new_invoice_log_entry(
    ctx: Context,
    invoiceGuid: str | None,
    context: str | None,
    text: str | None,
    source: str | None,
    eventTimeUtc: dt.datetime | None,
    ignoreDuplicates: bool,
) -> None:
    invoice = _invoice(ctx, invoiceGuid)
    if not text:
        raise ServiceFault(Fault.GENERAL_FAILURE, "text is required.")
    log = ctx.store.invoice_log.setdefault(invoice["GUID"], [])
    entry: Record = {"context": context, "text": text, "source": source}
    if ignoreDuplicates and any({key: old[key] for key in entry} == entry for old in log):
        return
    entry["eventTimeUtc"] = as_utc(eventTimeUtc) if eventTimeUtc is not None else ctx.now
    log.append(entry)


def invoice_pdf(invoice: Record) -> bytes:
    """A small, valid one-page PDF standing in for the invoice document."""
    lines = [
        f"Invoice {invoice['Number'] if invoice['Number'] is not None else '(draft)'}",
        f"Customer: {invoice['AccountName'] or ''}",
        f"Total: {sum((row.get('rowAmount') or 0 for row in invoice['InvoiceRows'] or []), Decimal(0))}",
    ]
    text = " ".join(
        f"BT /F1 14 Tf 72 {760 - 24 * index} Td ({line.replace('(', '[').replace(')', ']')}) Tj ET"
        for index, line in enumerate(lines)
    ).encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(text)).encode() + b" >>\nstream\n" + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@operation("GetInvoicePdfByInvoiceGUID")
def get_invoice_pdf_by_invoice_guid(
    ctx: Context, invoiceGuid: str | None, getAttachmentOnly: int
) -> bytes | None:
    invoice = _invoice(ctx, invoiceGuid)
    # The fake's invoices have no attachments: asking for the attachment only yields nothing.
    return None if getAttachmentOnly & ATTACHMENT_ONLY else invoice_pdf(invoice)


@operation("GetInvoicePdf")
def get_invoice_pdf(
    ctx: Context, invoiceNumber: int, invoiceNumberingBusinessUnitGUID: str | None, getAttachmentOnly: int
) -> bytes | None:
    for invoice in ctx.store.invoices:
        if invoice["Number"] == invoiceNumber and _invoice_in_unit(invoice, invoiceNumberingBusinessUnitGUID):
            return None if getAttachmentOnly & ATTACHMENT_ONLY else invoice_pdf(invoice)
    raise ServiceFault(Fault.NOT_FOUND, f"Invoice number {invoiceNumber} was not found.")


@operation("GetAllInvoiceStatuses")
def get_all_invoice_statuses(ctx: Context) -> list[Record]:
    return sorted(ctx.store.invoice_statuses, key=lambda status: status["SortOrder"] or 0)


# --------------------------------------------------------------------------------------------------
# IBusinessUnit


@operation("GetBusinessUnitByGUID")
def get_business_unit_by_guid(ctx: Context, businessUnitGuid: str | None) -> Record | None:
    unit = ctx.store.business_units.get(businessUnitGuid)
    if unit is None:
        ctx.missing(f"Business unit '{businessUnitGuid}'")
    return unit


@operation("GetBusinessUnitByCode")
def get_business_unit_by_code(ctx: Context, businessUnitCode: str | None) -> Record | None:
    for unit in ctx.store.business_units:
        if _same(unit["Code"], businessUnitCode):
            return unit
    ctx.missing(f"Business unit with code '{businessUnitCode}'")
    return None


def _descendants(ctx: Context, root: str) -> list[Record]:
    """*root* and every unit below it, depth first."""
    found = [ctx.store.business_units[root]]
    for unit in ctx.store.business_units:
        if unit["ParentBusinessUnitGUID"] == root:
            found.extend(_descendants(ctx, unit["GUID"]))
    return found


@operation("GetBusinessUnitHierarchy")
def get_business_unit_hierarchy(ctx: Context, rootBusinessUnitGuid: str | None, options: int) -> list[Record]:
    if rootBusinessUnitGuid not in ctx.store.business_units:
        raise ServiceFault(Fault.NOT_FOUND, f"Business unit '{rootBusinessUnitGuid}' was not found.")
    assert rootBusinessUnitGuid is not None
    units = _descendants(ctx, rootBusinessUnitGuid)
    return [unit for unit in units if options & INCLUDE_INACTIVE or unit["IsActive"] is not False]


@operation("GetBusinessUnitsChangedSince")
def get_business_units_changed_since(
    ctx: Context, businessUnitGUID: str | None, startDateTime: dt.datetime, options: int
) -> list[Record]:
    scope: set[str] | None = None
    if businessUnitGUID:
        if businessUnitGUID not in ctx.store.business_units:
            return []
        scope = {unit["GUID"] for unit in _descendants(ctx, businessUnitGUID)}
    return _changed_since(
        ctx.store.business_units,
        startDateTime,
        options,
        where=lambda unit: scope is None or unit["GUID"] in scope,
    )
