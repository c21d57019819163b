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
That engine is :mod:`adapters.fake_faults`, shared with the fake Severa; this module is Netvisor's
vocabulary and its maintenance windows.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from adapters.fake_faults import FaultInjectorBase, FaultRuleBase, coerce
from adapters.fake_faults import FaultPlan as FaultPlan  # re-exported: part of this module's API
from adapters.fake_faults import FaultRuleError as FaultRuleError
from adapters.fake_faults import Phase as Phase
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


@dataclass(slots=True)
class FaultRule(FaultRuleBase):
    """One injected failure. ``resource`` is a resource name (``"salesinvoice.nv"``, the ``.nv`` and
    the case optional) or ``None`` for all; ``fired`` counts how often it struck; ``until`` is the
    end of a maintenance window (set when the rule is added)."""

    KINDS = FaultKind
    DECISIVE_KINDS = frozenset({FaultKind.HTTP_ERROR, FaultKind.DROP, FaultKind.ERROR})
    """A maintenance window is not among them: it is consulted before authentication, by
    :meth:`FaultInjector.maintenance`, not in the plan."""
    TIMED_KINDS = frozenset({FaultKind.LATENCY, FaultKind.MAINTENANCE})
    STATE_FIELDS = FaultRuleBase.STATE_FIELDS | {"until"}
    JSON_FIELDS = (
        "id",
        "kind",
        "resource",
        "probability",
        "times",
        "remaining",
        "phase",
        "seconds",
        "status",
        "body",
        "code",
        "message",
        "fired",
        "until",
    )

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

    @property
    def target(self) -> str | None:
        return self.resource

    def _settle(self) -> None:
        self.code = coerce(ErrorCode, str(self.code).upper())
        if self.resource is not None:
            self.resource = normalise_resource(self.resource)
            if self.resource not in RESOURCES:
                raise FaultRuleError(
                    f"unknown resource {self.resource!r} (known: {', '.join(sorted(RESOURCES))})"
                )

    @property
    def text(self) -> str:
        """The failure text an ``error`` or ``maintenance`` rule answers with."""
        code = ErrorCode.SYSTEM_MAINTENANCE if self.kind is FaultKind.MAINTENANCE else self.code
        return self.message or DEFAULT_MESSAGES[code]


class FaultInjector(FaultInjectorBase[FaultRule]):
    """The active fault rules of one fake Netvisor, and the seeded randomness that drives them.

    *clock* places maintenance windows: one ends ``seconds`` after it was added, by that clock.
    """

    def __init__(self, *, clock: Clock, random_seed: int = 0) -> None:
        super().__init__(FaultRule, random_seed=random_seed)
        self._clock = clock

    @property
    def rules(self) -> list[FaultRule]:
        """The active rules, in the order they are consulted (maintenance windows that have
        passed are gone)."""
        self._retire_windows()
        return list(self._rules)

    def add(self, rule: FaultRule) -> FaultRule:
        if rule.kind is FaultKind.MAINTENANCE:
            rule.until = self._clock() + dt.timedelta(seconds=rule.seconds)
        return super().add(rule)

    def clear(self, kind: FaultKind | None = None) -> None:
        """Remove every rule, or every rule of one *kind*."""
        self._rules = [rule for rule in self._rules if kind is not None and rule.kind is not kind]

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
        return self._add_rule(FaultKind.LATENCY, resource, probability, times, phase, seconds=seconds)

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
        return self._add_rule(
            FaultKind.HTTP_ERROR, resource, probability, times, phase, status=status, body=body
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
        return self._add_rule(FaultKind.DROP, resource, probability, times, phase)

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
        return self._add_rule(
            FaultKind.ERROR,
            resource,
            probability,
            times,
            phase,
            code=ErrorCode(str(code).upper()),
            message=message,
        )

    def maintenance_window(
        self, seconds: float, *, resource: str | None = None, message: str | None = None
    ) -> FaultRule:
        """Answer ``SYSTEM_MAINTENANCE`` to every (matching) request for the next *seconds*."""
        return self._add_rule(FaultKind.MAINTENANCE, resource, seconds=seconds, message=message)
