"""Reference resolution: turn the codes in an event into Severa records, cheaply.

A steady stream of events names the same few users, cases, phases and work types over and over;
each look-up is cached for ``ttl`` seconds (concurrent misses for the same key share one call,
thanks to ``async_lru``) so that the stream costs about one Severa call per event: the write.
Misses are not cached, so a reference fixed in Severa (or in the mapping table) is seen at once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from async_lru import alru_cache

from connector.errors import UnknownReference
from connector.mapping.hour_entries import ResolvedReferences
from connector.mapping.table import MappingTable, MappingTableFile
from connector.ports import Case, Phase, SeveraGateway, User, WorkType
from schemas.work_hours import WorkHourEvent

DEFAULT_TTL_SECONDS = 300.0
_T = TypeVar("_T")


class _Missing(Exception):
    """Raised by a fetcher instead of returning a miss: ``alru_cache`` never caches exceptions."""


async def _or_none(fetch: Awaitable[_T]) -> _T | None:
    try:
        return await fetch
    except _Missing:
        return None


class ReferenceResolver:
    def __init__(
        self,
        severa: SeveraGateway,
        table: MappingTable | MappingTableFile | None = None,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        maxsize: int = 4096,
    ) -> None:
        self._severa = severa
        self._tables = table if isinstance(table, MappingTableFile) else None
        self._static_table = table if isinstance(table, MappingTable) else MappingTable()
        self._generation = 0
        cache = alru_cache(maxsize=maxsize, ttl=ttl_seconds)
        self._user_by_code = cache(self._fetch_user_by_code)
        self._users_by_email = alru_cache(maxsize=1, ttl=ttl_seconds)(self._fetch_users_by_email)
        self._case_by_number = cache(self._fetch_case)
        self._phases = alru_cache(maxsize=maxsize, ttl=ttl_seconds)(self._fetch_phases)
        self._work_types = alru_cache(maxsize=1, ttl=ttl_seconds)(self._fetch_work_types)

    def clear(self) -> None:
        """Forget everything (after the mapping table or Severa data changed)."""
        for cached in (
            self._user_by_code,
            self._users_by_email,
            self._case_by_number,
            self._phases,
            self._work_types,
        ):
            cached.cache_clear()

    @property
    def table(self) -> MappingTable:
        """The table in force; a reloaded table drops every cached look-up."""
        if self._tables is None:
            return self._static_table
        table = self._tables.current()
        if self._tables.generation != self._generation:
            self._generation = self._tables.generation
            self.clear()
        return table

    async def resolve(self, event: WorkHourEvent) -> ResolvedReferences:
        if event.case_number is None or event.phase_code is None or event.work_type_code is None:
            raise UnknownReference(
                f"{event.event_type} event lacks case/phase/work type", kind="reference", value=""
            )
        user = await self.user(event.user_code, event.user_email)
        case = await self.case(event.case_number)
        phase = await self.phase(event.phase_code, case)
        work_type = await self.work_type(event.work_type_code)
        return ResolvedReferences(user=user, case=case, phase=phase, work_type=work_type)

    async def user(self, code: str | None, email: str | None) -> User:
        if code is not None:
            severa_code = self.table.user(code)
            user = await _or_none(self._user_by_code(severa_code))
            if user is None:
                raise UnknownReference(
                    f"Severa has no user with code {severa_code!r}"
                    + (f" (mapped from {code!r})" if severa_code != code else "")
                    + "; create the user in Severa or map the code under 'users' in the mapping table",
                    kind="user",
                    value=code,
                )
        elif email is not None:
            mapped = self.table.user(email)
            if mapped != email:  # the table maps this e-mail to a Severa user code
                return await self.user(mapped, None)
            user = (await self._users_by_email()).get(email.lower())
            if user is None:
                # The user may be new: look once more without the cache before giving up.
                self._users_by_email.cache_clear()
                user = (await self._users_by_email()).get(email.lower())
            if user is None:
                raise UnknownReference(
                    f"Severa has no active user with e-mail {email!r}; check the address in Severa "
                    "or map it to a user code under 'users' in the mapping table",
                    kind="user",
                    value=email,
                )
        else:
            raise UnknownReference("the event names no user (user_code or user_email)", kind="user", value="")
        if not user.is_active:
            raise UnknownReference(
                f"Severa user {user.code or user.guid!r} is inactive; hours cannot be recorded for them",
                kind="user",
                value=code or email or "",
            )
        return user

    async def case(self, number: int) -> Case:
        severa_number = self.table.case(number)
        case = await _or_none(self._case_by_number(severa_number))
        if case is None:
            raise UnknownReference(
                f"Severa has no case number {severa_number}"
                + (f" (mapped from {number})" if severa_number != number else "")
                + "; check the case number or map it under 'cases' in the mapping table",
                kind="case",
                value=str(number),
            )
        if case.is_closed:
            raise UnknownReference(
                f"Severa case {severa_number} is closed; reopen it or book the hours elsewhere",
                kind="case",
                value=str(number),
            )
        return case

    async def phase(self, code: str, case: Case) -> Phase:
        severa_code = self.table.phase(code)
        phases = await _or_none(self._phases(severa_code, case.guid)) or []
        if not phases:
            raise UnknownReference(
                f"case {case.number} has no phase with code {severa_code!r}"
                + (f" (mapped from {code!r})" if severa_code != code else "")
                + "; check the phase code or map it under 'phases' in the mapping table",
                kind="phase",
                value=code,
            )
        if len(phases) > 1:
            raise UnknownReference(
                f"case {case.number} has {len(phases)} phases with code {severa_code!r}; "
                "phase codes must be unique within a case for hours to be booked by code",
                kind="phase",
                value=code,
            )
        return phases[0]

    async def work_type(self, code: str) -> WorkType:
        severa_code = self.table.work_type(code)
        work_type = (await self._work_types()).get(severa_code)
        if work_type is None or not work_type.is_active:
            state = "an inactive" if work_type is not None else "no"
            raise UnknownReference(
                f"Severa has {state} work type with code {severa_code!r}"
                + (f" (mapped from {code!r})" if severa_code != code else "")
                + "; check the code or map it under 'work_types' in the mapping table",
                kind="work_type",
                value=code,
            )
        return work_type

    # -- cached fetchers: one Severa call per miss ------------------------------------------------

    async def _fetch_user_by_code(self, code: str) -> User:
        user = await self._severa.get_user_by_code(code)
        if user is None:
            raise _Missing
        return user

    async def _fetch_users_by_email(self) -> dict[str, User]:
        users = await self._severa.get_all_users(include_inactive=False)
        return {user.email.lower(): user for user in users if user.email}

    async def _fetch_case(self, number: int) -> Case:
        case = await self._severa.get_case_by_number(number)
        if case is None:
            raise _Missing
        return case

    async def _fetch_phases(self, code: str, case_guid: str) -> list[Phase]:
        phases = await self._severa.get_phases_by_code(code, case_guid)
        if not phases:
            raise _Missing
        return phases

    async def _fetch_work_types(self) -> dict[str, WorkType]:
        return {wt.code: wt for wt in await self._severa.get_all_work_types() if wt.code}
