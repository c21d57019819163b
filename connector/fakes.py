"""In-memory fakes of the core's ports, for unit tests of flows and mapping.

:class:`InMemorySevera` implements :class:`connector.ports.SeveraGateway` with plain dicts and
counts calls per method, so tests can assert how many Severa calls an event costs. It is not the
fake Severa *service* (``adapters/severa/fake``): that one speaks SOAP over HTTP for integration
tests; this one lets a unit test run in microseconds.

Its refusals have the shape the real adapter gives them (:mod:`adapters.severa.faults`): a write on
a GUID that does not exist is ``SeveraRejected(fault="NotFound", operation="IHourEntry.…")``, so
a flow branch written against the fake also matches what production raises.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from connector.errors import ConnectorError, SeveraRejected
from connector.ports import Case, HourEntry, NewHourEntry, Phase, QuotaReading, User, WorkType

#: The change time of an entry put straight into :attr:`InMemorySevera.hour_entries`: before any ``since``.
NEVER: Final = dt.datetime.min.replace(tzinfo=dt.UTC)


def utc_now() -> dt.datetime:
    """The default clock: Severa stamps changes with its own UTC time."""
    return dt.datetime.now(dt.UTC)


def not_found(operation: str, guid: str) -> SeveraRejected:
    """The refusal the real adapter raises for a write on a GUID Severa does not hold."""
    return SeveraRejected(
        f"Severa rejected {operation}: there is no hour entry {guid} (NotFound)",
        fault="NotFound",
        operation=f"IHourEntry.{operation}",
    )


def minute_floor(moment: dt.datetime) -> dt.datetime:
    """The start of ``moment``'s UTC minute: Severa matches ``*ChangedSince`` to the minute."""
    if moment.tzinfo is None:
        raise ValueError(f"expected an aware UTC datetime, got the naive {moment!r}")
    return moment.astimezone(dt.UTC).replace(second=0, microsecond=0)


class InMemorySevera:
    """Severa in dicts.

    ``clock`` stamps every add and update in :attr:`changed_at` (Severa's own change time, which
    ``GetHourEntriesChangedSince`` answers from); a test moves it to make an entry look older.
    """

    def __init__(
        self,
        *,
        users: list[User] | None = None,
        cases: list[Case] | None = None,
        phases: list[Phase] | None = None,
        work_types: list[WorkType] | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.users = {u.guid: u for u in users or []}
        self.cases = {c.guid: c for c in cases or []}
        self.phases = {p.guid: p for p in phases or []}
        self.work_types = {w.guid: w for w in work_types or []}
        self.hour_entries: dict[str, HourEntry] = {}
        #: When each entry was last added or updated through the API (missing: :data:`NEVER`).
        self.changed_at: dict[str, dt.datetime] = {}
        self.clock = clock
        self.calls: Counter[str] = Counter()
        #: Raise this (once per listed call name) to simulate failures: {"add_hour_entry": [exc, …]}.
        self.failures: dict[str, list[BaseException]] = {}
        #: When set, add_hour_entry stores the entry *and then* raises this (an answer lost in transit).
        self.lose_answer_of_next_add: ConnectorError | None = None

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        pending = self.failures.get(name)
        if pending:
            raise pending.pop(0)

    @property
    def quota(self) -> QuotaReading | None:
        return QuotaReading(quota=100_000, used=sum(self.calls.values()))

    async def get_version(self) -> str:
        self._call("get_version")
        return "fake"

    async def probe(self) -> None:
        self._call("probe")

    async def get_user_by_code(self, code: str) -> User | None:
        self._call("get_user_by_code")
        return next((u for u in self.users.values() if u.code == code), None)

    async def get_all_users(self, *, include_inactive: bool = False) -> list[User]:
        self._call("get_all_users")
        return [u for u in self.users.values() if include_inactive or u.is_active]

    async def get_case_by_number(self, number: int) -> Case | None:
        self._call("get_case_by_number")
        return next((c for c in self.cases.values() if c.number == number), None)

    async def get_phases_by_code(self, phase_code: str, case_guid: str) -> list[Phase]:
        self._call("get_phases_by_code")
        return [p for p in self.phases.values() if p.code == phase_code and p.case_guid == case_guid]

    async def get_all_work_types(self) -> list[WorkType]:
        self._call("get_all_work_types")
        return list(self.work_types.values())

    async def get_hour_entry(self, guid: str) -> HourEntry | None:
        self._call("get_hour_entry")
        return self.hour_entries.get(guid)

    async def get_hour_entries_by_user_and_date(
        self, user_guid: str, start: dt.date, end: dt.date
    ) -> list[HourEntry]:
        self._call("get_hour_entries_by_user_and_date")
        return [
            e for e in self.hour_entries.values() if e.user_guid == user_guid and start <= e.event_date <= end
        ]

    async def get_hour_entries_changed_since(self, since: dt.datetime) -> list[HourEntry]:
        self._call("get_hour_entries_changed_since")
        cutoff = minute_floor(since)
        return [e for e in self.hour_entries.values() if self.changed_at.get(e.guid, NEVER) >= cutoff]

    async def add_hour_entry(self, entry: NewHourEntry) -> HourEntry:
        self._call("add_hour_entry")
        stored = entry.with_guid(str(uuid.uuid4()))
        self.hour_entries[stored.guid] = stored
        self.changed_at[stored.guid] = self.clock()
        if self.lose_answer_of_next_add is not None:
            error, self.lose_answer_of_next_add = self.lose_answer_of_next_add, None
            raise error
        return stored

    async def update_hour_entry(self, entry: HourEntry) -> HourEntry:
        self._call("update_hour_entry")
        if entry.guid not in self.hour_entries:
            raise not_found("UpdateHourEntry", entry.guid)
        self.hour_entries[entry.guid] = replace(entry)
        self.changed_at[entry.guid] = self.clock()
        return entry

    async def delete_hour_entry(self, guid: str) -> bool:
        self._call("delete_hour_entry")
        # Like Severa: deleting an unknown GUID answers false rather than faulting.
        self.changed_at.pop(guid, None)
        return self.hour_entries.pop(guid, None) is not None

    async def aclose(self) -> None:
        return None
