"""The engine and the HTTP lifecycle the fakes share, on a fake of the tests' own.

The fake Severa's and the fake Netvisor's suites test their vocabularies through this engine; here
it is tested on a vocabulary that is neither, so that what the engine promises does not lean on
either fake: matching, the decisive kinds, ``times``, latency stacking, reproducible draws, the
rule class checks, and the owner's start/stop on an ephemeral port.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.fake_faults import FaultInjectorBase, FaultPlan, FaultRuleBase, FaultRuleError, Phase
from adapters.fake_server import FakeServer, transport_failure, url_host


class Kind(enum.StrEnum):
    LATENCY = "latency"
    HTTP_ERROR = "http_error"
    DROP = "drop"
    BOOM = "boom"
    ASIDE = "aside"
    """Neither latency nor decisive: the fake's own business (as the Netvisor maintenance window)."""


@dataclass(slots=True)
class Rule(FaultRuleBase):
    KINDS = Kind
    DECISIVE_KINDS = frozenset({Kind.HTTP_ERROR, Kind.DROP, Kind.BOOM})

    kind: Kind
    route: str | None = None
    probability: float = 1.0
    times: int | None = None
    phase: Phase = Phase.BEFORE
    seconds: float = 0.0
    status: int = 503
    body: str = "Service Unavailable"
    loud: bool = False
    id: int = 0
    fired: int = 0
    remaining: int | None = field(default=None)

    @property
    def target(self) -> str | None:
        return self.route

    def _settle(self) -> None:
        if self.route is not None and not self.route.startswith("/"):
            raise FaultRuleError(f"unknown route {self.route!r}")


class Injector(FaultInjectorBase[Rule]):
    def __init__(self, *, random_seed: int = 0) -> None:
        super().__init__(Rule, random_seed=random_seed)

    def rule(self, kind: Kind, route: str | None = None, **fields: Any) -> Rule:
        return self._add_rule(kind, route, **fields)


@pytest.fixture
def faults() -> Injector:
    return Injector()


def plans(injector: Injector, target: str, count: int) -> list[FaultPlan[Rule]]:
    return [injector.plan(target) for _ in range(count)]


# ------------------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param({"kind": "crash"}, "crash", id="an unknown kind"),
        pytest.param({"kind": "drop", "phase": "later"}, "later", id="an unknown phase"),
        pytest.param({"kind": "drop", "route": "x"}, "unknown route", id="the fake's own check"),
        pytest.param({"kind": "drop", "probability": 1.5}, "probability", id="a probability above one"),
        pytest.param({"kind": "drop", "times": 0}, "times", id="zero times"),
        pytest.param({"kind": "latency"}, "a latency rule needs seconds", id="a latency without seconds"),
        pytest.param({"kind": "http_error", "status": 302}, "4xx or 5xx", id="an http error that is not one"),
        pytest.param({"kind": "drop", "fired": 3}, "unknown field", id="a counter is not settable"),
        pytest.param({"kind": "drop", "colour": "red"}, "unknown field", id="a field the rule lacks"),
        pytest.param({"route": "/a"}, "'kind' is required", id="no kind"),
        pytest.param({"kind": "latency", "seconds": "soon"}, "not supported", id="a value of the wrong type"),
    ],
)
def test_a_rule_that_cannot_work_is_refused(data: dict[str, Any], words: str) -> None:
    with pytest.raises(FaultRuleError, match=words):
        Rule.from_json(data)


def test_the_admin_api_may_set_every_field_but_the_injectors_state() -> None:
    assert Rule.settable_fields() == {
        "kind",
        "route",
        "probability",
        "times",
        "phase",
        "seconds",
        "status",
        "body",
        "loud",
    }


def test_the_json_shape_follows_the_fields_and_round_trips(faults: Injector) -> None:
    rule = faults.add(Rule.from_json({"kind": "boom", "route": "/a", "phase": "after", "times": 2}))

    data = rule.to_json()

    assert list(data) == list(Rule.__dataclass_fields__)
    assert (data["kind"], data["phase"], data["id"], data["remaining"]) == ("boom", "after", 1, 2)
    settable = {key: value for key, value in data.items() if key in Rule.settable_fields()}
    assert Rule.from_json(settable).to_json() == {**data, "id": 0}


def test_a_vocabulary_without_the_kinds_the_engine_acts_on_is_refused() -> None:
    class Thin(enum.StrEnum):
        LATENCY = "latency"
        HTTP_ERROR = "http_error"

    with pytest.raises(TypeError, match="drop"):

        class _Rule(FaultRuleBase):
            KINDS = Thin
            DECISIVE_KINDS = frozenset({Thin.HTTP_ERROR})


def test_latency_cannot_be_a_decisive_kind() -> None:
    with pytest.raises(TypeError, match="DECISIVE_KINDS"):

        class _Rule(FaultRuleBase):
            KINDS = Kind
            DECISIVE_KINDS = frozenset({Kind.LATENCY, Kind.DROP})


def test_transport_failures_are_the_http_error_and_the_drop() -> None:
    assert [kind for kind in Kind if Rule(kind, seconds=1).is_transport_failure] == [
        Kind.HTTP_ERROR,
        Kind.DROP,
    ]


# -------------------------------------------------------------------------------------- the plan


def test_latencies_add_up_per_phase_and_the_first_decisive_rule_wins(faults: Injector) -> None:
    faults.rule(Kind.LATENCY, seconds=1.0)
    faults.rule(Kind.LATENCY, "/a", seconds=0.5)
    faults.rule(Kind.LATENCY, seconds=2.0, phase=Phase.AFTER)
    first = faults.rule(Kind.BOOM, "/a", times=1)
    second = faults.rule(Kind.DROP, times=1)

    plan = faults.plan("/a")

    assert plan == FaultPlan(latency_before=1.5, latency_after=2.0, before=first, after=None)
    assert second.remaining == 1  # not consulted, not used up
    assert faults.plan("/a").before is second
    assert faults.plan("/a").before is None


def test_a_rule_for_one_target_leaves_the_others_alone(faults: Injector) -> None:
    rule = faults.rule(Kind.BOOM, "/a")

    assert faults.plan("/b") == FaultPlan()
    assert faults.plan("/a").before is rule
    assert rule.fired == 1


def test_an_after_rule_is_planned_for_after(faults: Injector) -> None:
    rule = faults.rule(Kind.HTTP_ERROR, phase=Phase.AFTER)

    assert faults.plan("/a") == FaultPlan(after=rule)


def test_times_means_exactly_the_next_matching_calls(faults: Injector) -> None:
    rule = faults.rule(Kind.DROP, "/a", times=2)

    decided = [plan.before for plan in plans(faults, "/a", 4)]

    assert decided == [rule, rule, None, None]
    assert (rule.fired, rule.remaining, faults.rules) == (2, 0, [])


def test_a_kind_neither_latency_nor_decisive_is_left_to_the_fake(faults: Injector) -> None:
    aside = faults.rule(Kind.ASIDE, probability=0.5)

    assert plans(faults, "/a", 3) == [FaultPlan()] * 3
    assert (aside.fired, faults.rules) == (0, [aside])


def test_probabilistic_rules_are_reproducible_and_reseeding_restarts_them() -> None:
    def draws(injector: Injector) -> list[bool]:
        return [plan.before is not None for plan in plans(injector, "/a", 30)]

    injector = Injector(random_seed=7)
    injector.rule(Kind.DROP, probability=0.5)
    first = draws(injector)
    injector.reseed()
    again = draws(injector)
    injector.reseed(8)

    assert first == again
    assert 0 < sum(first) < 30
    assert draws(injector) != first


def test_only_a_rule_short_of_certain_draws_a_random_number() -> None:
    def draws(*certain: Kind) -> list[bool]:
        injector = Injector(random_seed=3)
        for kind in certain:
            injector.rule(kind, seconds=1.0)  # probability 1.0: no draw
        injector.rule(Kind.ASIDE, probability=0.5)  # not planned: no draw
        injector.rule(Kind.DROP, probability=0.5)
        return [plan.before is not None for plan in plans(injector, "/a", 30)]

    assert draws() == draws(Kind.LATENCY, Kind.LATENCY)


def test_rules_are_numbered_and_removed_by_number(faults: Injector) -> None:
    first, second = faults.extend([Rule(Kind.DROP), Rule(Kind.BOOM)])

    assert (first.id, second.id) == (1, 2)
    assert faults.remove(1) is True
    assert faults.remove(1) is False
    assert faults.rules == [second]
    assert [data["id"] for data in faults.to_json()] == [2]
    faults.clear()
    assert faults.rules == []
    assert faults.add(Rule(Kind.DROP)).id == 3  # numbers are never reused


# ------------------------------------------------------------------------------ the HTTP lifecycle


class ToyFake(FakeServer):
    NAME = "toy fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.events: list[str] = []
        self.rule = Rule(Kind.HTTP_ERROR, status=502, body="Bad Gateway")

    def create_app(self) -> web.Application:
        async def hello(request: web.Request) -> web.Response:
            return web.Response(text="hello")

        async def fail(request: web.Request) -> web.StreamResponse:
            return transport_failure(request, self.rule)

        app = web.Application()
        app.router.add_get("/hello", hello)
        app.router.add_get("/fail", fail)
        return app

    async def _prepare(self) -> None:
        self.events.append("prepare")

    def _on_started(self) -> None:
        self.events.append(f"started {self.base_url}")

    def _on_stopped(self) -> None:
        self.events.append("stopped")


async def test_a_fake_serves_on_a_free_port_until_closed() -> None:
    fake = ToyFake()
    with pytest.raises(RuntimeError, match="the toy fake is not running"):
        _ = fake.base_url

    async with fake, aiohttp.ClientSession() as session:
        url = fake.base_url
        assert url.startswith("http://127.0.0.1:")
        assert fake.admin_url == f"{url}/admin"
        async with session.get(f"{url}/hello") as response:
            assert await response.text() == "hello"

    assert fake.events == ["prepare", f"started {url}", "stopped"]


async def test_a_fake_starts_once() -> None:
    fake = ToyFake()
    await fake.start()
    with pytest.raises(RuntimeError, match="cannot start a toy fake that is running"):
        await fake.start()
    await fake.close()
    await fake.close()  # idempotent

    with pytest.raises(RuntimeError, match="cannot start a toy fake that is closed"):
        await fake.start()
    assert fake.events.count("stopped") == 1


async def test_a_fake_that_never_served_closes_quietly() -> None:
    fake = ToyFake()

    await fake.close()

    assert fake.events == []
    with pytest.raises(RuntimeError, match="closed"):
        await fake.start()


async def test_a_fake_that_cannot_bind_is_closed_and_leaks_no_runner() -> None:
    async with ToyFake() as taken:
        port = int(taken.base_url.rsplit(":", 1)[1])
        blocked = ToyFake(port=port)

        with pytest.raises(OSError, match=str(port)):
            await blocked.start()

    assert blocked.events == ["prepare"]
    assert blocked._runner is None
    with pytest.raises(RuntimeError, match="closed"):
        await blocked.start()


@pytest.mark.parametrize(
    ("bound", "handed_out"),
    [
        pytest.param("0.0.0.0", "127.0.0.1", id="IPv4 wildcard"),
        pytest.param("", "127.0.0.1", id="empty host"),
        pytest.param("::", "[::1]", id="IPv6 wildcard"),
        pytest.param("::1", "[::1]", id="IPv6 loopback"),
        pytest.param("192.0.2.7", "192.0.2.7", id="an address"),
    ],
)
def test_the_url_reaches_what_was_bound(bound: str, handed_out: str) -> None:
    assert url_host(bound) == handed_out


async def test_an_injected_http_error_is_a_plain_text_answer() -> None:
    async with (
        ToyFake() as fake,
        aiohttp.ClientSession() as session,
        session.get(f"{fake.base_url}/fail") as response,
    ):
        assert (response.status, response.content_type) == (502, "text/plain")
        assert await response.text() == "Bad Gateway"


async def test_an_injected_drop_closes_the_connection_without_an_answer() -> None:
    async with ToyFake() as fake, aiohttp.ClientSession() as session:
        fake.rule = Rule(Kind.DROP)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(f"{fake.base_url}/fail")
