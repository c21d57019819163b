"""The poller state contract, one test body per behaviour, run against every backend.

The in-memory fake, SQLite and PostgreSQL must be indistinguishable to the poller: cursors with
their seen sets, leases with fencing tokens, fenced saves. Behaviours only a persistent or shared
store can have (reopening, table prefixes, the server's clock) run on the backends that have them.
PostgreSQL is expected at ``LEDGER_TEST_POSTGRES_DSN`` (as for the ledger tests); each test works
under a table prefix of its own and drops its tables afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connector.state import (
    Cursor,
    InMemoryPollerState,
    InvalidPollerStateURL,
    LeaseLost,
    PollerState,
    PollerStateUnavailable,
    SqlPollerState,
    change_stamp,
    open_poller_state,
)
from connector.state.poller_state import DEFAULT_LEASE, MAX_STAMP_CHARS, BasePollerState
from tests.integration.test_ledger import POSTGRES_DSN, _drop_tables, _require_postgres

MEMORY = pytest.param("memory", id="in-memory fake")
SQLITE = pytest.param("sqlite", id="sqlite file")
POSTGRES = pytest.param("postgres", id="postgresql", marks=pytest.mark.integration)
ALL_BACKENDS = [MEMORY, SQLITE, POSTGRES]
PERSISTENT = [SQLITE, POSTGRES]

T0 = dt.datetime(2026, 12, 1, 10, 0, 30, tzinfo=dt.UTC)
LEASE = DEFAULT_LEASE
TTL = 30.0
# Short enough to wait out on PostgreSQL, whose leases run on the server's clock.
SHORT_TTL = 0.3


def stamp(seconds: float) -> str:
    return change_stamp(T0 + dt.timedelta(seconds=seconds))


def seen_set(count: int, *, start: int = 0) -> frozenset[tuple[str, str]]:
    return frozenset((str(uuid.UUID(int=n)), stamp(n / 7)) for n in range(start, start + count))


class FakeClock:
    """A clock the test moves by hand; shared by the pods of one store."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Backend:
    """Opens state objects over one store and closes them (and drops their tables) at teardown."""

    name: str
    tmp_path: Path
    clock: FakeClock | None = field(default_factory=FakeClock)
    prefixes: list[str] = field(default_factory=list)
    opened: list[BasePollerState] = field(default_factory=list)
    _memory: InMemoryPollerState | None = None

    def new_prefix(self) -> str:
        # Unique per test: parallel runs and leftovers of a crashed run never meet.
        prefix = f"t{uuid.uuid4().hex[:12]}_"
        self.prefixes.append(prefix)
        return prefix

    def pod(self, *, table_prefix: str | None = None, **options: Any) -> BasePollerState:
        """A state object over this backend's store (not yet set up): a pod of its own."""
        state: BasePollerState
        if self.name == "memory":
            if self._memory is None:
                state = self._memory = InMemoryPollerState(clock=self.clock or FakeClock())
            else:
                state = self._memory.peer()
        elif self.name == "sqlite":
            assert self.clock is not None
            prefix = "" if table_prefix is None else table_prefix
            state = SqlPollerState(
                f"sqlite:///{self.tmp_path / 'state.db'}", table_prefix=prefix, clock=self.clock, **options
            )
        else:
            if table_prefix is None:
                table_prefix = self.prefixes[0] if self.prefixes else self.new_prefix()
            state = SqlPollerState(POSTGRES_DSN, table_prefix=table_prefix, **options)
        self.opened.append(state)
        return state

    async def open(self, **options: Any) -> BasePollerState:
        state = self.pod(**options)
        await state.setup()
        return state

    async def elapse(self, seconds: float) -> None:
        """Let a lease of ``seconds`` run out: on the fake clock, or on the database server's."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


@pytest.fixture
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    name: str = request.param
    if name == "postgres":
        await _require_postgres()
    made = Backend(name, tmp_path, clock=None if name == "postgres" else FakeClock())
    try:
        yield made
    finally:
        for state in reversed(made.opened):
            await state.aclose()
        if name == "postgres":
            for prefix in made.prefixes:
                await _drop_tables(prefix)


async def _expires_at(prefix: str, name: str) -> tuple[dt.datetime, dt.datetime]:
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        row = await conn.fetchrow(
            f"SELECT expires_at, now() AS now FROM {prefix}poller_lease WHERE name = $1", name
        )
    finally:
        await conn.close()
    assert row is not None
    return row["expires_at"], row["now"]


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
class TestPollerStateContract:
    # -- cursors -----------------------------------------------------------------------------------

    async def test_a_kind_never_polled_loads_as_an_empty_cursor(self, backend: Backend) -> None:
        state = await backend.open()

        assert await state.load("customers") == Cursor("customers", None, frozenset())

    async def test_a_saved_cursor_loads_back_with_its_seen_set(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        cursor = Cursor("invoices", T0, seen_set(500))

        await state.save(cursor, token=token)

        loaded = await state.load("invoices")
        assert loaded == cursor
        assert loaded.since is not None
        assert loaded.since.tzinfo is dt.UTC
        assert await state.load("customers") == Cursor("customers", None, frozenset())

    async def test_a_save_replaces_the_seen_set_instead_of_adding_to_it(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        await state.save(Cursor("customers", T0, seen_set(300)), token=token)
        await state.save(Cursor("invoices", T0, seen_set(10)), token=token)

        later = Cursor("customers", T0 + dt.timedelta(minutes=5), seen_set(200, start=250))
        await state.save(later, token=token)
        assert await state.load("customers") == later

        emptied = Cursor("customers", T0 + dt.timedelta(minutes=6), frozenset())
        await state.save(emptied, token=token)
        assert await state.load("customers") == emptied
        assert await state.load("invoices") == Cursor("invoices", T0, seen_set(10))

    async def test_a_load_during_saves_sees_one_whole_cursor_or_the_other(self, backend: Backend) -> None:
        writer, reader = await backend.open(), await backend.open()
        token = await writer.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        first = Cursor("hour_entries", T0, seen_set(400))
        second = Cursor("hour_entries", T0 + dt.timedelta(minutes=1), seen_set(400, start=200))
        await writer.save(first, token=token)
        loads: list[Cursor] = []

        async def write() -> None:
            for n in range(20):
                await writer.save(second if n % 2 == 0 else first, token=token)

        async def read() -> None:
            for _ in range(20):
                loads.append(await reader.load("hour_entries"))

        await asyncio.gather(write(), read())

        assert loads
        assert all(cursor in (first, second) for cursor in loads)

    async def test_stamps_that_are_not_times_read_back_verbatim(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        cursor = Cursor(
            "invoices",
            T0,
            frozenset(
                {
                    ("inv-1", str(uuid.uuid5(uuid.NAMESPACE_URL, "inv-1"))),
                    ("inv-2", "sha256:" + "ab" * 32),
                    ("inv-3", "x" * MAX_STAMP_CHARS),
                    ("inv-4", "2026-12-01T12:00:30+02:00"),  # a time not written by change_stamp()
                    ("inv-4", stamp(0)),  # the same moment, another text: another pair
                }
            ),
        )

        await state.save(cursor, token=token)

        assert await state.load("invoices") == cursor

    async def test_since_is_normalised_to_utc(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        helsinki = dt.timezone(dt.timedelta(hours=2))

        await state.save(Cursor("customers", T0.astimezone(helsinki), frozenset()), token=token)

        loaded = await state.load("customers")
        assert loaded.since == T0
        assert loaded.since is not None
        assert loaded.since.utcoffset() == dt.timedelta(0)

    # -- the lease ---------------------------------------------------------------------------------

    async def test_acquire_renew_and_release(self, backend: Backend) -> None:
        a, b = await backend.open(), await backend.open()

        first = await a.acquire(LEASE, "pod-a", TTL)
        assert first is not None
        assert first >= 1
        assert await b.acquire(LEASE, "pod-b", TTL) is None
        assert await a.renew(LEASE, "pod-a", first, TTL)
        assert not await b.renew(LEASE, "pod-b", first, TTL), "the token is not pod-b's"

        again = await a.acquire(LEASE, "pod-a", TTL)
        assert again is not None
        assert again > first, "taking one's own lease again moves the token on"
        assert not await a.renew(LEASE, "pod-a", first, TTL)
        assert await a.renew(LEASE, "pod-a", again, TTL)

        await b.release(LEASE, "pod-b", again)  # not pod-b's to release: nothing happens
        assert await b.acquire(LEASE, "pod-b", TTL) is None

        await a.release(LEASE, "pod-a", again)
        assert not await a.renew(LEASE, "pod-a", again, TTL)
        with pytest.raises(LeaseLost):
            await a.save(Cursor("customers", T0, frozenset()), token=again)
        taken = await b.acquire(LEASE, "pod-b", TTL)
        assert taken is not None
        assert taken > again
        await a.release(LEASE, "pod-a", again)  # a stale release changes nothing
        assert await b.renew(LEASE, "pod-b", taken, TTL)

    async def test_leases_of_different_names_are_independent(self, backend: Backend) -> None:
        a, b = await backend.open(), await backend.open()

        assert await a.acquire("customers-poller", "pod-a", TTL) == 1
        assert await b.acquire("invoices-poller", "pod-b", TTL) == 1
        assert await b.acquire("customers-poller", "pod-b", TTL) is None

    async def test_a_save_without_any_lease_is_refused(self, backend: Backend) -> None:
        state = await backend.open()

        with pytest.raises(LeaseLost) as raised:
            await state.save(Cursor("customers", T0, frozenset()), token=1)

        assert raised.value.reason == "poller_lease_lost"
        assert await state.load("customers") == Cursor("customers", None, frozenset())

    async def test_a_save_is_fenced_by_the_lease_it_names(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire("other-lease", "pod-a", TTL)
        assert token is not None
        cursor = Cursor("customers", T0, frozenset())

        await state.save(cursor, token=token, lease="other-lease")
        with pytest.raises(LeaseLost):
            await state.save(cursor, token=token)  # DEFAULT_LEASE was never acquired

    async def test_two_pods_racing_for_the_lease_get_exactly_one_token_each_round(
        self, backend: Backend
    ) -> None:
        a, b = await backend.open(), await backend.open()
        tokens: list[int] = []

        for round_ in range(50):
            fresh = f"race-{round_}"
            results = await asyncio.gather(
                a.acquire(LEASE, "pod-a", TTL),
                b.acquire(LEASE, "pod-b", TTL),
                a.acquire(fresh, "pod-a", TTL),
                b.acquire(fresh, "pod-b", TTL),
            )
            released = [token for token in results[:2] if token is not None]
            assert len(released) == 1, f"round {round_}: {results[:2]}"
            assert [token for token in results[2:] if token is not None] == [1], f"round {round_}"
            winner, holder = (a, "pod-a") if results[0] is not None else (b, "pod-b")
            tokens.append(released[0])
            await winner.release(LEASE, holder, released[0])

        assert tokens == sorted(set(tokens)), "tokens strictly increase"

    async def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
        self, backend: Backend
    ) -> None:
        a, b = await backend.open(), await backend.open()
        old = await a.acquire(LEASE, "pod-a", SHORT_TTL)
        assert old is not None
        before = Cursor("invoices", T0, seen_set(50))
        await a.save(before, token=old)
        assert await b.acquire(LEASE, "pod-b", TTL) is None, "still live"

        await backend.elapse(SHORT_TTL + 0.2)
        new = await b.acquire(LEASE, "pod-b", TTL)

        assert new is not None
        assert new > old
        for late in (
            Cursor("invoices", T0 + dt.timedelta(minutes=3), seen_set(5)),  # forward
            Cursor("invoices", None, frozenset()),  # back
        ):
            with pytest.raises(LeaseLost):
                await a.save(late, token=old)
        assert await b.load("invoices") == before
        assert not await a.renew(LEASE, "pod-a", old, TTL)
        assert await a.acquire(LEASE, "pod-a", TTL) is None
        after = Cursor("invoices", T0 + dt.timedelta(minutes=1), seen_set(3))
        await b.save(after, token=new)
        assert await a.load("invoices") == after

    async def test_an_expired_lease_nobody_took_is_still_its_holders(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire(LEASE, "pod-a", SHORT_TTL)
        assert token is not None

        await backend.elapse(SHORT_TTL + 0.2)

        cursor = Cursor("customers", T0, seen_set(2))
        await state.save(cursor, token=token)
        assert await state.renew(LEASE, "pod-a", token, TTL)
        assert await state.load("customers") == cursor

    # -- arguments and lifecycle -------------------------------------------------------------------

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda s: s.load(""), id="an empty kind is refused"),
            pytest.param(lambda s: s.acquire(LEASE, "", TTL), id="an empty holder is refused"),
            pytest.param(lambda s: s.acquire("", "pod-a", TTL), id="an empty lease name is refused"),
            pytest.param(lambda s: s.acquire(LEASE, "pod-a", 0), id="a ttl of zero is refused"),
            pytest.param(lambda s: s.acquire(LEASE, "pod-a", -1.0), id="a negative ttl is refused"),
            pytest.param(lambda s: s.acquire(LEASE, "pod-a", float("inf")), id="an endless ttl is refused"),
            pytest.param(lambda s: s.acquire(LEASE, "pod-a", True), id="a bool is no ttl"),
            pytest.param(lambda s: s.renew(LEASE, "pod-a", 0, TTL), id="token zero is refused"),
            pytest.param(lambda s: s.release(LEASE, "pod-a", True), id="a bool is no token"),
            pytest.param(
                lambda s: s.save(Cursor("customers", T0, frozenset()), token=-1),
                id="a negative token is refused",
            ),
        ],
    )
    async def test_bad_arguments_are_value_errors_not_store_failures(
        self, backend: Backend, call: Callable[[BasePollerState], Any]
    ) -> None:
        state = await backend.open()

        with pytest.raises(ValueError):  # noqa: PT011 -- the cases are the table's ids
            await call(state)

    async def test_setup_and_close_are_idempotent(self, backend: Backend) -> None:
        state = backend.pod()

        await state.setup()
        await state.setup()
        await state.aclose()
        await state.aclose()

    async def test_a_state_is_an_async_context_manager_and_satisfies_the_port(self, backend: Backend) -> None:
        async with backend.pod() as state:
            assert isinstance(state, PollerState)
            assert await state.acquire(LEASE, "pod-a", TTL) == 1

    async def test_use_before_setup_is_a_programming_error(self, backend: Backend) -> None:
        with pytest.raises(RuntimeError, match="not set up"):
            await backend.pod().load("customers")

    async def test_a_closed_state_refuses_work_and_reopening(self, backend: Backend) -> None:
        state = await backend.open()
        await state.aclose()

        with pytest.raises(PollerStateUnavailable) as raised:
            await state.acquire(LEASE, "pod-a", TTL)
        assert raised.value.reason == "poller_state_closed"
        with pytest.raises(RuntimeError, match="cannot be reopened"):
            await state.setup()


@pytest.mark.parametrize("backend", PERSISTENT, indirect=True)
class TestPersistentPollerState:
    async def test_cursors_and_leases_survive_reopening(self, backend: Backend) -> None:
        state = await backend.open()
        token = await state.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        cursor = Cursor("customers", T0, seen_set(120))
        await state.save(cursor, token=token)
        await state.aclose()

        reopened = await backend.open()

        assert await reopened.load("customers") == cursor
        assert await reopened.acquire(LEASE, "pod-b", TTL) is None
        assert await reopened.renew(LEASE, "pod-a", token, TTL)

    async def test_table_prefixes_keep_two_connectors_in_one_database_apart(self, backend: Backend) -> None:
        first = await backend.open(table_prefix=backend.new_prefix())
        second = await backend.open(table_prefix=backend.new_prefix())
        token = await first.acquire(LEASE, "pod-a", TTL)
        assert token is not None
        await first.save(Cursor("customers", T0, seen_set(3)), token=token)

        assert await second.load("customers") == Cursor("customers", None, frozenset())
        other = await second.acquire(LEASE, "pod-b", TTL)
        assert other == 1, "the other connector's lease is free and counts its own tokens"
        await second.save(Cursor("customers", T0 + dt.timedelta(hours=1), frozenset()), token=other)
        assert await first.load("customers") == Cursor("customers", T0, seen_set(3))


@pytest.mark.parametrize("backend", [POSTGRES], indirect=True)
class TestPostgresLeaseClock:
    async def test_a_pod_with_a_clock_ahead_cannot_take_a_live_lease(self, backend: Backend) -> None:
        a = await backend.open()
        ahead = await backend.open(clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))

        token = await a.acquire(LEASE, "pod-a", TTL)

        assert token is not None
        assert await ahead.acquire(LEASE, "pod-ahead", TTL) is None

    async def test_expiry_is_the_servers_now_plus_the_ttl(self, backend: Backend) -> None:
        state = await backend.open()
        await state.acquire(LEASE, "pod-a", TTL)

        expires_at, now = await _expires_at(backend.prefixes[0], LEASE)

        assert dt.timedelta(seconds=TTL - 5) < expires_at - now <= dt.timedelta(seconds=TTL)


class TestUnreachableStore:
    @pytest.mark.integration
    async def test_postgresql_that_is_not_there_is_a_systemic_error_with_a_one_line_reason(self) -> None:
        state = SqlPollerState("postgresql://postgres@127.0.0.1:9/test", table_prefix="t_", command_timeout=2)

        with pytest.raises(PollerStateUnavailable) as raised:
            await state.setup()

        assert raised.value.reason == "poller_state_unavailable"
        assert "127.0.0.1:9/test" in raised.value.message
        assert "\n" not in raised.value.message
        await state.aclose()

    async def test_a_sqlite_file_that_cannot_be_created_is_a_systemic_error(self, tmp_path: Path) -> None:
        state = SqlPollerState(f"sqlite:///{tmp_path / 'missing' / 'state.db'}")

        with pytest.raises(PollerStateUnavailable) as raised:
            await state.setup()

        assert "\n" not in raised.value.message
        await state.aclose()

    async def test_a_password_never_appears_in_the_message(self) -> None:
        state = SqlPollerState(
            "postgresql://u:s3cr3t-pw@127.0.0.1:9/test", table_prefix="t_", command_timeout=2
        )

        with pytest.raises(PollerStateUnavailable) as raised:
            await state.setup()

        assert "s3cr3t-pw" not in raised.value.message
        await state.aclose()


class TestOpenPollerState:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            pytest.param("memory://", InMemoryPollerState, id="memory is the in-memory fake"),
            pytest.param("sqlite:///state.db", SqlPollerState, id="a relative sqlite path"),
            pytest.param("sqlite:////var/lib/state.db", SqlPollerState, id="an absolute sqlite path"),
            pytest.param("sqlite:///:memory:", SqlPollerState, id="sqlite in memory"),
            pytest.param("postgresql://u@db:5432/x", SqlPollerState, id="a postgresql url"),
            pytest.param("postgres://u@db/x", SqlPollerState, id="the postgres spelling too"),
        ],
    )
    def test_the_url_picks_the_backend(self, url: str, expected: type[BasePollerState]) -> None:
        assert type(open_poller_state(url)) is expected

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            pytest.param("mysql://db/x", "unsupported", id="an unknown scheme is refused"),
            pytest.param("", "unsupported", id="no scheme is refused"),
            pytest.param("memory://x", "exactly", id="memory takes nothing more"),
            pytest.param("sqlite://host/file.db", "no host", id="sqlite takes no host"),
            pytest.param("sqlite:///", "needs a path", id="sqlite needs a path"),
            pytest.param("postgresql://", "at least", id="postgresql needs a host or a database"),
        ],
    )
    def test_a_bad_url_is_a_configuration_error(self, url: str, message: str) -> None:
        with pytest.raises(InvalidPollerStateURL, match=message):
            open_poller_state(url)

    def test_the_default_prefix_is_the_ledgers_on_each_store(self) -> None:
        postgres = open_poller_state("postgresql://u@db/x")
        sqlite = open_poller_state("sqlite:///state.db")
        assert isinstance(postgres, SqlPollerState)
        assert isinstance(sqlite, SqlPollerState)

        assert postgres.table_prefix == "severa_connector_"
        assert sqlite.table_prefix == ""

    def test_a_bad_prefix_is_refused(self) -> None:
        with pytest.raises(ValueError, match="table_prefix"):
            open_poller_state("sqlite:///state.db", table_prefix="Bad-Prefix")


@pytest.mark.parametrize(
    ("given", "written"),
    [
        pytest.param(T0, "2026-12-01T10:00:30.000000+00:00", id="whole seconds get six zero digits"),
        pytest.param(
            "2026-12-01T12:00:30.5+02:00", "2026-12-01T10:00:30.500000+00:00", id="an offset becomes utc"
        ),
        pytest.param("2026-12-01T10:00:30Z", "2026-12-01T10:00:30.000000+00:00", id="z means utc"),
        pytest.param(
            "2026-12-01T10:00:30.1234567+00:00",
            "2026-12-01T10:00:30.123456+00:00",
            id="digits below the microsecond are dropped",
        ),
    ],
)
def test_change_stamps_have_one_written_form(given: dt.datetime | str, written: str) -> None:
    assert change_stamp(given) == written


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: change_stamp("2026-12-01T10:00:30"), id="a stamp without a zone is refused"),
        pytest.param(lambda: Cursor("", None, frozenset()), id="a cursor needs a kind"),
        pytest.param(lambda: Cursor("customers", dt.datetime(2026, 12, 1), frozenset()), id="since is aware"),
        pytest.param(lambda: Cursor("customers", T0, frozenset({("g", "")})), id="a stamp is not empty"),
        pytest.param(
            lambda: Cursor("customers", T0, frozenset({("g", "x" * (MAX_STAMP_CHARS + 1))})),
            id="a stamp longer than the limit is refused",
        ),
        pytest.param(lambda: Cursor("customers", T0, frozenset({("", stamp(0))})), id="a guid is not empty"),
    ],
)
def test_malformed_cursors_are_value_errors(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the cases are the table's ids
        make()
