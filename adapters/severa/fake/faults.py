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
:meth:`FaultInjector.reseed` restarts it), so runs are reproducible. That engine is
:mod:`adapters.fake_faults`, shared with the fake Netvisor; this module is Severa's vocabulary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from adapters.fake_faults import FaultInjectorBase, FaultRuleBase
from adapters.fake_faults import FaultPlan as FaultPlan  # re-exported: part of this module's API
from adapters.fake_faults import FaultRuleError as FaultRuleError
from adapters.fake_faults import Phase as Phase
from adapters.severa.wsdl.spec import SPEC, Fault


class FaultKind(enum.StrEnum):
    LATENCY = "latency"
    HTTP_ERROR = "http_error"
    DROP = "drop"
    SOAP_FAULT = "soap_fault"
    WRONG_KEY = "wrong_key"
    QUOTA_EXHAUSTED = "quota_exhausted"


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
class FaultRule(FaultRuleBase):
    """One injected failure. Build it through :class:`FaultInjector`'s helpers or directly.

    ``operation`` is an operation name (``"AddNewHourEntry"``; names are unique across contracts)
    or ``None`` for every operation. ``remaining`` counts down from ``times``; ``fired`` counts how
    often the rule struck.
    """

    KINDS = FaultKind
    DECISIVE_KINDS = frozenset(FaultKind) - {FaultKind.LATENCY}

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

    @property
    def target(self) -> str | None:
        return self.operation

    def _settle(self) -> None:
        self.fault = parse_fault(self.fault)
        if self.operation is not None:
            try:
                SPEC.operation(self.operation)
            except KeyError:
                raise FaultRuleError(f"unknown operation {self.operation!r}") from None


class FaultInjector(FaultInjectorBase[FaultRule]):
    """The active fault rules of one fake Severa, and the seeded randomness that drives them."""

    def __init__(self, *, random_seed: int = 0) -> None:
        super().__init__(FaultRule, random_seed=random_seed)

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
        return self._add_rule(FaultKind.LATENCY, operation, probability, times, phase, seconds=seconds)

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
        return self._add_rule(
            FaultKind.HTTP_ERROR, operation, probability, times, phase, status=status, body=body
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
        return self._add_rule(FaultKind.DROP, operation, probability, times, phase)

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
        return self._add_rule(
            FaultKind.SOAP_FAULT,
            operation,
            probability,
            times,
            phase,
            fault=parse_fault(fault),
            message=message,
        )

    def wrong_key(
        self, *, operation: str | None = None, probability: float = 1.0, times: int | None = None
    ) -> FaultRule:
        """Answer as if the API key were wrong."""
        return self._add_rule(FaultKind.WRONG_KEY, operation, probability, times)

    def quota_exhausted(
        self, *, operation: str | None = None, probability: float = 1.0, times: int | None = None
    ) -> FaultRule:
        """Answer as if the daily quota were spent."""
        return self._add_rule(FaultKind.QUOTA_EXHAUSTED, operation, probability, times)
