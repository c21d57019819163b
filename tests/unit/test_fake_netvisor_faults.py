"""The fake Netvisor's fault rules: validation, the plan for one request, maintenance windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from adapters.netvisor.fake.errors import ErrorCode
from adapters.netvisor.fake.faults import FaultInjector, FaultKind, FaultRule, FaultRuleError, Phase

NOW = dt.datetime(2025, 6, 10, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def faults(clock: Clock) -> FaultInjector:
    return FaultInjector(clock=clock)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param({"kind": "drop", "resource": "nosuch.nv"}, "unknown resource", id="an unknown resource"),
        pytest.param({"kind": "drop", "probability": 2}, "probability", id="a probability above one"),
        pytest.param({"kind": "drop", "times": 0}, "times", id="zero times"),
        pytest.param({"kind": "latency"}, "seconds", id="a latency without seconds"),
        pytest.param({"kind": "maintenance"}, "seconds", id="a maintenance window without seconds"),
        pytest.param({"kind": "http_error", "status": 200}, "4xx or 5xx", id="an http error that is not one"),
        pytest.param({"kind": "error", "code": "OOPS"}, "OOPS", id="an unknown error code"),
        pytest.param({"kind": "crash"}, "crash", id="an unknown kind"),
        pytest.param({"kind": "drop", "id": 7}, "unknown field", id="a field that is not settable"),
        pytest.param({"resource": "customer.nv"}, "kind", id="a rule without kind"),
    ],
)
def test_a_rule_that_cannot_work_is_refused(data: dict[str, Any], words: str) -> None:
    with pytest.raises(FaultRuleError, match=words):
        FaultRule.from_json(data)


def test_a_resource_name_is_normalised() -> None:
    rule = FaultRule.from_json({"kind": "drop", "resource": "SalesInvoice"})

    assert rule.resource == "salesinvoice.nv"


def test_latencies_add_up_and_the_first_decisive_rule_wins(faults: FaultInjector) -> None:
    faults.latency(1.0)
    faults.latency(2.0, phase=Phase.AFTER)
    first = faults.error("PERIOD_LOCK", resource="salesinvoice.nv", times=1)
    second = faults.drop(times=1)

    plan = faults.plan("salesinvoice.nv")

    assert (plan.latency_before, plan.latency_after, plan.before, plan.after) == (1.0, 2.0, first, None)
    assert second.remaining == 1  # not consulted, not used up
    assert faults.plan("salesinvoice.nv").before is second
    assert faults.plan("salesinvoice.nv").before is None


def test_a_rule_for_one_resource_leaves_the_others_alone(faults: FaultInjector) -> None:
    faults.error(ErrorCode.TECHNICAL_ERROR, resource="customer.nv")

    assert faults.plan("customerlist.nv").before is None
    assert faults.plan("customer.nv").before is not None


def test_an_after_rule_is_planned_for_after(faults: FaultInjector) -> None:
    rule = faults.error("TECHNICAL_ERROR", phase=Phase.AFTER)

    plan = faults.plan("customer.nv")

    assert (plan.before, plan.after) == (None, rule)


def test_probabilistic_rules_are_reproducible(clock: Clock) -> None:
    def draws() -> list[bool]:
        injector = FaultInjector(clock=clock, random_seed=7)
        injector.drop(probability=0.5)
        return [injector.plan("customer.nv").before is not None for _ in range(20)]

    assert draws() == draws()
    assert 0 < sum(draws()) < 20


def test_a_maintenance_window_ends_by_itself(faults: FaultInjector, clock: Clock) -> None:
    rule = faults.maintenance_window(60)

    assert faults.maintenance("customer.nv") is rule
    assert faults.plan("customer.nv").before is None  # not a decisive rule of the plan
    clock.now += dt.timedelta(seconds=61)

    assert faults.maintenance("customer.nv") is None
    assert faults.rules == []
    assert rule.fired == 1


def test_clearing_one_kind_keeps_the_others(faults: FaultInjector) -> None:
    faults.maintenance_window(60)
    kept = faults.latency(1)

    faults.clear(FaultKind.MAINTENANCE)

    assert faults.rules == [kept]


def test_an_error_rule_has_a_default_text_per_code() -> None:
    assert "maintenance" in FaultRule(FaultKind.MAINTENANCE, seconds=1).text
    assert FaultRule(FaultKind.ERROR, code=ErrorCode.PERIOD_LOCK).text == "The accounting period is locked"
    assert FaultRule(FaultKind.ERROR, message="custom").text == "custom"


def test_the_json_shape_round_trips(faults: FaultInjector) -> None:
    rule = faults.add(
        FaultRule.from_json({"kind": "error", "code": "duplicate_data", "resource": "customer"})
    )

    data = rule.to_json()

    assert (data["kind"], data["code"], data["resource"], data["id"]) == (
        "error",
        "DUPLICATE_DATA",
        "customer.nv",
        1,
    )
