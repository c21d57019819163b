"""Fault injection: make the fake fail the way Severa and the network around it fail.

A :class:`FaultRule` says *what* goes wrong (:class:`FaultKind`), *where* (one operation or all),
*how often* (a probability, and/or only the next ``times`` matching calls) and *when*
(:class:`Phase`): ``before`` the operation runs — the request never had an effect — or ``after`` it
ran — the write landed but the answer is lost, delayed or replaced. ``after`` is what makes an
"outcome unknown" testable.

Kinds:

=================== ==========================================================================
``latency``         wait ``seconds`` (stacks with other rules; all matching latencies add up)
``http_error``      answer HTTP ``status`` (default 503) with a non-XML ``body``
``drop``            close the connection without answering
``soap_fault``      answer with the typed fault ``fault`` (any of the five, or
                    ``QuotaLimitExceeded``), ``message`` as its description
``wrong_key``       answer exactly as for a wrong API key (``AuthenticationFailureException``)
``quota_exhausted`` answer exactly as when the daily quota is spent
=================== ==========================================================================

On each call the rules are checked in the order they were added. Every matching latency rule that
fires adds its delay; the first other rule that fires decides the outcome and later ones are not
consulted (their ``times`` are not used up). With ``times=N`` a rule fires at most N times and then
removes itself — with probability 1.0 that is exactly the next N matching calls. A rule with
probability 1.0 never draws a random number, and the generator is seeded (``random_seed``;
:meth:`FaultInjector.reseed` restarts it), so runs are reproducible.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from adapters.severa.wsdl.spec import SPEC, Fault


class FaultKind(enum.StrEnum):
    LATENCY = "latency"
    HTTP_ERROR = "http_error"
    DROP = "drop"
    SOAP_FAULT = "soap_fault"
    WRONG_KEY = "wrong_key"
    QUOTA_EXHAUSTED = "quota_exhausted"


class Phase(enum.StrEnum):
    """Whether the rule strikes before the operation runs or after it ran (answer lost/changed)."""

    BEFORE = "before"
    AFTER = "after"


class FaultRuleError(ValueError):
    """A fault rule that cannot work (unknown operation, probability outside [0, 1], …)."""


def parse_fault(value: Fault | str) -> Fault:
    """Accept the document's name (``"Validation"``) or the detail element's (``"ValidationException"``)."""
    if isinstance(value, Fault):
        return value
    name = value.removesuffix("Exception")
    try:
        return Fault(name)
    except ValueError:
        known = ", ".join(fault.value for fault in Fault)
        raise FaultRuleError(
            f"unknown fault {value!r} (known: {known}, with or without 'Exception')"
        ) from None


@dataclass(slots=True)
class FaultRule:
    """One injected failure. Build it through :class:`FaultInjector`'s helpers or directly.

    ``operation`` is an operation name (``"AddNewHourEntry"``; names are unique across contracts)
    or ``None`` for every operation. ``remaining`` counts down from ``times``; ``fired`` counts how
    often the rule struck.
    """

    kind: FaultKind
    operation: str | None = None
    probability: float = 1.0
    times: int | None = None
    phase: Phase = Phase.BEFORE
    seconds: float = 0.0
    status: int = 503
    body: str = "Service Unavailable"
    fault: Fault = Fault.GENERAL_FAILURE
    message: str | None = None
    id: int = 0
    fired: int = 0
    remaining: int | None = field(default=None)

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        self.phase = Phase(self.phase)
        self.fault = parse_fault(self.fault)
        if self.operation is not None:
            try:
                SPEC.operation(self.operation)
            except KeyError:
                raise FaultRuleError(f"unknown operation {self.operation!r}") from None
        if not 0.0 <= self.probability <= 1.0:
            raise FaultRuleError("probability must be between 0 and 1")
        if self.times is not None and self.times < 1:
            raise FaultRuleError("times must be >= 1 (or omitted for 'until cleared')")
        if self.kind is FaultKind.LATENCY and self.seconds <= 0:
            raise FaultRuleError("a latency rule needs seconds > 0")
        if self.kind is FaultKind.HTTP_ERROR and not 400 <= self.status <= 599:
            raise FaultRuleError("http_error status must be a 4xx or 5xx code")
        self.remaining = self.times

    def matches(self, operation: str) -> bool:
        return self.operation is None or self.operation == operation

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (the admin endpoint's shape)."""
        data = asdict(self)
        return {key: (value.value if isinstance(value, enum.Enum) else value) for key, value in data.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from the admin endpoint's JSON; unknown keys are an error."""
        allowed = {"kind", "operation", "probability", "times", "phase", "seconds", "status", "body"}
        allowed |= {"fault", "message"}
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
    """What the injector decided for one call."""

    latency_before: float = 0.0
    latency_after: float = 0.0
    before: FaultRule | None = None
    after: FaultRule | None = None


class FaultInjector:
    """The active fault rules of one fake, and the seeded randomness that drives them."""

    def __init__(self, *, random_seed: int = 0) -> None:
        self._random_seed = random_seed
        self._random = random.Random(random_seed)
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    @property
    def rules(self) -> list[FaultRule]:
        """The active rules, in the order they are consulted."""
        return list(self._rules)

    def add(self, rule: FaultRule) -> FaultRule:
        rule.id = next(self._ids)
        self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        before = len(self._rules)
        self._rules = [rule for rule in self._rules if rule.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def reseed(self, random_seed: int | None = None) -> None:
        """Restart the random sequence (same seed: the same draws again)."""
        if random_seed is not None:
            self._random_seed = random_seed
        self._random = random.Random(self._random_seed)

    def plan(self, operation: str) -> FaultPlan:
        """Decide the faults for one call of *operation* (updates counters, retires spent rules)."""
        latency = {Phase.BEFORE: 0.0, Phase.AFTER: 0.0}
        decisive: FaultRule | None = None
        for rule in list(self._rules):
            if not rule.matches(operation):
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
        operation: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Delay matching calls by *seconds* (``phase=AFTER``: after the operation ran)."""
        return self.add(FaultRule(FaultKind.LATENCY, operation, probability, times, phase, seconds=seconds))

    def http_error(
        self,
        status: int = 503,
        *,
        body: str = "Service Unavailable",
        operation: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Answer with HTTP *status* and a plain-text (non-XML) body."""
        return self.add(
            FaultRule(FaultKind.HTTP_ERROR, operation, probability, times, phase, status=status, body=body)
        )

    def drop(
        self,
        *,
        operation: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Close the connection without an answer."""
        return self.add(FaultRule(FaultKind.DROP, operation, probability, times, phase))

    def soap_fault(
        self,
        fault: Fault | str,
        message: str | None = None,
        *,
        operation: str | None = None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
    ) -> FaultRule:
        """Answer with a typed Severa fault (``message`` defaults to a generic description)."""
        return self.add(
            FaultRule(
                FaultKind.SOAP_FAULT,
                operation,
                probability,
                times,
                phase,
                fault=parse_fault(fault),
                message=message,
            )
        )

    def wrong_key(
        self, *, operation: str | None = None, probability: float = 1.0, times: int | None = None
    ) -> FaultRule:
        """Answer as if the API key were wrong."""
        return self.add(FaultRule(FaultKind.WRONG_KEY, operation, probability, times))

    def quota_exhausted(
        self, *, operation: str | None = None, probability: float = 1.0, times: int | None = None
    ) -> FaultRule:
        """Answer as if the daily quota were spent."""
        return self.add(FaultRule(FaultKind.QUOTA_EXHAUSTED, operation, probability, times))

    def to_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self._rules]

    def extend(self, rules: Iterable[FaultRule]) -> list[FaultRule]:
        return [self.add(rule) for rule in rules]
