"""Fault injection: make the fake fail the way Netvisor and the network around it fail.

The vocabulary is the fake Severa's (:mod:`adapters.severa.fake.faults`): a :class:`FaultRule`
says *what* goes wrong (:class:`FaultKind`), *where* (one resource or all), *how often* (a
probability, and/or only the next ``times`` matching requests) and *when* (:class:`Phase`):
``before`` the resource runs — the request had no effect — or ``after`` it ran — the write landed
but the answer is delayed, lost or replaced, which makes "outcome unknown" testable.

Kinds:

=================== ==========================================================================
``latency``         wait ``seconds`` (all matching latencies add up); the request stays in flight
                    meanwhile, so an overlapping request for the company is refused.
                    :meth:`~.server.FakeNetvisor.release_latency` ends every wait at once
``http_error``      answer HTTP ``status`` (default 503) with a non-XML ``body``
``drop``            close the connection without answering
``error``           answer Netvisor's failure ``code`` (any :class:`~.errors.ErrorCode`) with
                    ``message`` (default: a generic text), at the code's HTTP status
``maintenance``     for the next ``seconds`` from when the rule is added, answer every matching
                    request ``SYSTEM_MAINTENANCE`` before even checking its signature; the rule
                    removes itself when the window has passed
=================== ==========================================================================

Rules are consulted in the order they were added. Every matching latency that fires adds its
delay; the first other rule that fires decides and later ones are not consulted (their ``times``
are not used up). ``times=N`` with probability 1.0 means exactly the next N matching requests. The
random generator is seeded, so runs are reproducible. Injected faults are not counted as refusals.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.netvisor.fake.behaviour import normalise_resource
from adapters.netvisor.fake.errors import ErrorCode
from adapters.netvisor.fake.resources import RESOURCES

Clock = Callable[[], dt.datetime]

DEFAULT_MESSAGES: Final[Mapping[ErrorCode, str]] = {
    ErrorCode.AUTHENTICATION_FAILED: "Authentication failed",
    ErrorCode.INVALID_DATA: "Data form incorrect:. The request did not pass validation",
    ErrorCode.INVALID_DATA_SIZE: "The request is too large",
    ErrorCode.DUPLICATE_DATA: "The data already exists",
    ErrorCode.REQUEST_NOT_UNIQUE: "The request is not unique",
    ErrorCode.PERIOD_LOCK: "The accounting period is locked",
    ErrorCode.SERVICE_ACCESS_ERROR: "No access to the requested service",
    ErrorCode.SYSTEM_MAINTENANCE: "Netvisor is under maintenance, please try again later",
    ErrorCode.TECHNICAL_ERROR: "A technical error occurred, please try again later",
}


class FaultKind(enum.StrEnum):
    LATENCY = "latency"
    HTTP_ERROR = "http_error"
    DROP = "drop"
    ERROR = "error"
    MAINTENANCE = "maintenance"


class Phase(enum.StrEnum):
    """Whether the rule strikes before the resource runs or after it ran (answer lost/changed)."""

    BEFORE = "before"
    AFTER = "after"


class FaultRuleError(ValueError):
    """A fault rule that cannot work (unknown resource, probability outside [0, 1], …)."""


@dataclass(slots=True)
class FaultRule:
    """One injected failure. ``resource`` is a resource name (``"salesinvoice.nv"``, the ``.nv`` and
    the case optional) or ``None`` for all; ``fired`` counts how often it struck; ``until`` is the
    end of a maintenance window (set when the rule is added)."""

    kind: FaultKind
    resource: str | None = None
    probability: float = 1.0
    times: int | None = None
    phase: Phase = Phase.BEFORE
    seconds: float = 0.0
    status: int = 503
    body: str = "Service Unavailable"
    code: ErrorCode = ErrorCode.TECHNICAL_ERROR
    message: str | None = None
    id: int = 0
    fired: int = 0
    remaining: int | None = field(default=None)
    until: dt.datetime | None = None

    def __post_init__(self) -> None:
        try:
            self.kind = FaultKind(self.kind)
            self.phase = Phase(self.phase)
            self.code = ErrorCode(str(self.code).upper())
        except ValueError as exc:
            raise FaultRuleError(str(exc)) from None
        if self.resource is not None:
            self.resource = normalise_resource(self.resource)
            if self.resource not in RESOURCES:
                raise FaultRuleError(
                    f"unknown resource {self.resource!r} (known: {', '.join(sorted(RESOURCES))})"
                )
        if not 0.0 <= self.probability <= 1.0:
            raise FaultRuleError("probability must be between 0 and 1")
        if self.times is not None and self.times < 1:
            raise FaultRuleError("times must be >= 1 (or omitted for 'until cleared')")
        if self.kind in (FaultKind.LATENCY, FaultKind.MAINTENANCE) and self.seconds <= 0:
            raise FaultRuleError(f"a {self.kind.value} rule needs seconds > 0")
        if self.kind is FaultKind.HTTP_ERROR and not 400 <= self.status <= 599:
            raise FaultRuleError("http_error status must be a 4xx or 5xx code")
        self.remaining = self.times

    def matches(self, resource: str) -> bool:
        return self.resource is None or self.resource == resource

    @property
    def text(self) -> str:
        """The failure text an ``error`` or ``maintenance`` rule answers with."""
        code = ErrorCode.SYSTEM_MAINTENANCE if self.kind is FaultKind.MAINTENANCE else self.code
        return self.message or DEFAULT_MESSAGES[code]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (the admin endpoint's shape)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "resource": self.resource,
            "probability": self.probability,
            "times": self.times,
            "remaining": self.remaining,
            "phase": self.phase.value,
            "seconds": self.seconds,
            "status": self.status,
            "body": self.body,
            "code": self.code.value,
            "message": self.message,
            "fired": self.fired,
            "until": self.until.isoformat() if self.until else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from the admin endpoint's JSON; unknown keys are an error."""
        allowed = {"kind", "resource", "probability", "times", "phase", "seconds", "status", "body"}
        allowed |= {"code", "message"}
        unknown = set(data) - allowed
        if unknown:
            raise FaultRuleError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if "kind" not in data:
            raise FaultRuleError("'kind' is required")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise FaultRuleError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What the injector decided for one request."""

    latency_before: float = 0.0
    latency_after: float = 0.0
    before: FaultRule | None = None
    after: FaultRule | None = None


class FaultInjector:
    """The active fault rules of one fake, and the seeded randomness that drives them."""

    def __init__(self, *, clock: Clock, random_seed: int = 0) -> None:
        self._clock = clock
        self._random_seed = random_seed
        self._random = random.Random(random_seed)
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    @property
    def rules(self) -> list[FaultRule]:
        """The active rules, in the order they are consulted."""
        self._retire_windows()
        return list(self._rules)

    def add(self, rule: FaultRule) -> FaultRule:
        rule.id = next(self._ids)
        if rule.kind is FaultKind.MAINTENANCE:
            rule.until = self._clock() + dt.timedelta(seconds=rule.seconds)
        self._rules.append(rule)
        return rule

    def extend(self, rules: Iterable[FaultRule]) -> list[FaultRule]:
        return [self.add(rule) for rule in rules]

    def remove(self, rule_id: int) -> bool:
        before = len(self._rules)
        self._rules = [rule for rule in self._rules if rule.id != rule_id]
        return len(self._rules) != before

    def clear(self, kind: FaultKind | None = None) -> None:
        self._rules = [rule for rule in self._rules if kind is not None and rule.kind is not kind]

    def reseed(self, random_seed: int | None = None) -> None:
        if random_seed is not None:
            self._random_seed = random_seed
        self._random = random.Random(self._random_seed)

    def to_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self.rules]

    def _retire_windows(self) -> None:
        now = self._clock()
        self._rules = [rule for rule in self._rules if rule.until is None or rule.until > now]

    def maintenance(self, resource: str) -> FaultRule | None:
        """The maintenance window covering *resource* now, if any (counted as fired)."""
        self._retire_windows()
        for rule in self._rules:
            if rule.kind is FaultKind.MAINTENANCE and rule.matches(resource):
                rule.fired += 1
                return rule
        return None

    def plan(self, resource: str) -> FaultPlan:
        """Decide the faults for one request (updates counters, retires spent rules)."""
        latency = {Phase.BEFORE: 0.0, Phase.AFTER: 0.0}
        decisive: FaultRule | None = None
        for rule in list(self._rules):
            if rule.kind is FaultKind.MAINTENANCE or not rule.matches(resource):
                continue
            if rule.kind is not FaultKind.LATENCY and decisive is not None:
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
            if rule.kind is FaultKind.LATENCY:
                latency[rule.phase] += rule.seconds
            else:
                decisive = rule
        return FaultPlan(
            latency_before=latency[Phase.BEFORE],
            latency_after=latency[Phase.AFTER],
            before=decisive if decisive is not None and decisive.phase is Phase.BEFORE else None,
            after=decisive if decisive is not None and decisive.phase is Phase.AFTER else None,
        )

    # --------------------------------------------------------------------------- convenience API

    def latency(
        self,
        seconds: float,
        *,
        resource: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Delay matching requests by *seconds* (``phase=AFTER``: after the resource ran)."""
        return self.add(FaultRule(FaultKind.LATENCY, resource, probability, times, phase, seconds=seconds))

    def http_error(
        self,
        status: int = 503,
        *,
        body: str = "Service Unavailable",
        resource: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Answer with HTTP *status* and a plain-text (non-XML) body."""
        return self.add(
            FaultRule(FaultKind.HTTP_ERROR, resource, probability, times, phase, status=status, body=body)
        )

    def drop(
        self,
        *,
        resource: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Close the connection without an answer."""
        return self.add(FaultRule(FaultKind.DROP, resource, probability, times, phase))

    def error(
        self,
        code: ErrorCode | str,
        message: str | None = None,
        *,
        resource: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Answer Netvisor's failure *code* (``"PERIOD_LOCK"``, …) with *message*."""
        return self.add(
            FaultRule(
                FaultKind.ERROR,
                resource,
                probability,
                times,
                phase,
                code=ErrorCode(str(code).upper()),
                message=message,
            )
        )

    def maintenance_window(
        self, seconds: float, *, resource: str | None = None, message: str | None = None
    ) -> FaultRule:
        """Answer ``SYSTEM_MAINTENANCE`` to every (matching) request for the next *seconds*."""
        return self.add(FaultRule(FaultKind.MAINTENANCE, resource, seconds=seconds, message=message))
