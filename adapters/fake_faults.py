"""The fault-injection engine the fake services share (the fake Severa's and the fake Netvisor's).

Both fakes fail on purpose the same way: a rule says *what* goes wrong (the fake's own
``FaultKind``), *where* (one target — a Severa operation, a Netvisor resource — or all), *how
often* (a probability, and/or only the next ``times`` matching calls) and *when* (:class:`Phase`).
What differs between them is only the vocabulary: which kinds exist, which fields a kind carries,
what a valid target is. So each fake declares its ``FaultRule`` as a slotted dataclass on
:class:`FaultRuleBase` and its ``FaultInjector`` on :class:`FaultInjectorBase`; the matching,
the draws, ``times``, latency stacking and the :class:`FaultPlan` live here, once, so that a
suite exercising one fake's faults exercises the other's too.

The rules of the engine, which both fakes document to their users:

* rules are consulted in the order they were added;
* every matching latency rule that fires adds its ``seconds`` to its phase's delay;
* the first other rule that fires — of the fake's *decisive* kinds — decides the outcome, and the
  later ones are not consulted (their ``times`` are not used up); a kind that is neither latency
  nor decisive (the fake Netvisor's maintenance window) is the fake's own business and the plan
  skips it;
* a rule with ``times=N`` fires at most N times and then removes itself;
* a rule with probability 1.0 never draws a random number, and the generator is seeded
  (:meth:`FaultInjectorBase.reseed` restarts it), so runs are reproducible.

Every fake's ``FaultKind`` has the members :data:`LATENCY`, :data:`HTTP_ERROR` and :data:`DROP`
(checked when the rule class is defined): the engine and the HTTP side
(:func:`adapters.fake_server.transport_failure`) act on those three themselves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Self, TypeVar

LATENCY: Final = "latency"
"""Wait ``seconds``; latencies stack, and never decide the outcome."""
HTTP_ERROR: Final = "http_error"
"""Answer HTTP ``status`` with a plain-text ``body``: a proxy's or load balancer's failure."""
DROP: Final = "drop"
"""Close the connection without answering."""

E = TypeVar("E", bound=enum.Enum)
R = TypeVar("R", bound="FaultRuleBase")


class Phase(enum.StrEnum):
    """Whether the rule strikes before the fake's operation runs (it had no effect) or after it ran
    (the write landed, the answer is delayed, lost or replaced: the "outcome unknown" case)."""

    BEFORE = "before"
    AFTER = "after"


class FaultRuleError(ValueError):
    """A fault rule that cannot work (unknown target, probability outside [0, 1], …)."""


def coerce(kind: type[E], value: object) -> E:
    """*value* as a member of the enumeration *kind*; a value it lacks is a :class:`FaultRuleError`
    (the admin API answers that as a bad request instead of failing on it)."""
    try:
        return kind(value)
    except ValueError as exc:
        raise FaultRuleError(str(exc)) from None


def _json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class FaultRuleBase:
    """What every fake's ``FaultRule`` is: a slotted dataclass deriving from this class.

    The subclass declares its fields in this order — ``kind``, its target (``operation``,
    ``resource``; ``None`` for every target), ``probability``, ``times``, ``phase``, then
    ``seconds``, ``status``, ``body``, its own fields, and ``id``, ``fired``, ``remaining`` (plus
    any further state) — because :meth:`FaultInjectorBase._add_rule` builds rules positionally.
    It names its target through :attr:`target`, and settles its own fields in :meth:`_settle`.

    Class attributes the subclass sets:

    ``KINDS``
        its ``FaultKind`` enumeration;
    ``DECISIVE_KINDS``
        the kinds that, when they fire, decide the outcome of a call (see the module docstring);
    ``TIMED_KINDS``
        the kinds that need ``seconds > 0`` (default: latency only);
    ``STATE_FIELDS``
        the fields the injector keeps and the admin API must not set (default: ``id``,
        ``fired``, ``remaining``);
    ``JSON_FIELDS``
        the order of :meth:`to_json`'s keys (default: the fields' order).
    """

    # The storage of the fields the engine itself reads and writes; the subclass's dataclass adds
    # slots for the rest (and, seeing these, does not declare them twice).
    __slots__ = (
        "body",
        "fired",
        "id",
        "kind",
        "phase",
        "probability",
        "remaining",
        "seconds",
        "status",
        "times",
    )

    KINDS: ClassVar[type[enum.StrEnum]]
    DECISIVE_KINDS: ClassVar[frozenset[str]]
    TIMED_KINDS: ClassVar[frozenset[str]] = frozenset({LATENCY})
    STATE_FIELDS: ClassVar[frozenset[str]] = frozenset({"id", "fired", "remaining"})
    JSON_FIELDS: ClassVar[tuple[str, ...] | None] = None

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # the subclass is a dataclass
    kind: enum.StrEnum
    probability: float
    times: int | None
    phase: Phase
    seconds: float
    status: int
    body: str
    id: int
    fired: int
    remaining: int | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kinds = {kind.value for kind in cls.KINDS}
        missing = {LATENCY, HTTP_ERROR, DROP} - kinds
        if missing:
            raise TypeError(f"{cls.__name__}.KINDS lacks {sorted(missing)}: the engine acts on them")
        if LATENCY in cls.DECISIVE_KINDS or not cls.DECISIVE_KINDS.issubset(kinds):
            raise TypeError(f"{cls.__name__}.DECISIVE_KINDS must be kinds of KINDS other than latency")

    def __post_init__(self) -> None:
        self.kind = coerce(self.KINDS, self.kind)
        self.phase = coerce(Phase, self.phase)
        self._settle()
        if not 0.0 <= self.probability <= 1.0:
            raise FaultRuleError("probability must be between 0 and 1")
        if self.times is not None and self.times < 1:
            raise FaultRuleError("times must be >= 1 (or omitted for 'until cleared')")
        if self.kind in self.TIMED_KINDS and self.seconds <= 0:
            raise FaultRuleError(f"a {self.kind.value} rule needs seconds > 0")
        if self.kind == HTTP_ERROR and not 400 <= self.status <= 599:
            raise FaultRuleError("http_error status must be a 4xx or 5xx code")
        self.remaining = self.times

    @property
    def target(self) -> str | None:
        """The one operation or resource the rule is for; ``None``: every one."""
        raise NotImplementedError

    def _settle(self) -> None:
        """Coerce and check the fake's own fields (its target, its fault or error code); raise
        :class:`FaultRuleError` for one that cannot work."""

    def matches(self, target: str) -> bool:
        return self.target is None or self.target == target

    @property
    def is_transport_failure(self) -> bool:
        """An HTTP error or a dropped connection: the fake's protocol never answers at all."""
        return self.kind in (HTTP_ERROR, DROP)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (the admin endpoint's shape)."""
        names = self.JSON_FIELDS or tuple(self.__dataclass_fields__)
        return {name: _json_value(getattr(self, name)) for name in names}

    @classmethod
    def settable_fields(cls) -> frozenset[str]:
        """The fields a rule can be built from over the admin API."""
        return frozenset(cls.__dataclass_fields__) - cls.STATE_FIELDS

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Build a rule from the admin endpoint's JSON; unknown keys are an error."""
        allowed = cls.settable_fields()
        unknown = set(data) - allowed
        if unknown:
            raise FaultRuleError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if "kind" not in data:
            raise FaultRuleError("'kind' is required")
        build: Callable[..., Self] = cls
        try:
            return build(**dict(data))
        except (TypeError, ValueError) as exc:
            raise FaultRuleError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class FaultPlan(Generic[R]):
    """What the injector decided for one call: the delays, and the rule deciding each phase."""

    latency_before: float = 0.0
    latency_after: float = 0.0
    before: R | None = None
    after: R | None = None


class FaultInjectorBase(Generic[R]):
    """The active fault rules of one fake, and the seeded randomness that drives them.

    *rule_type* is the fake's ``FaultRule`` class; the convenience methods of the fake's own
    injector build rules through :meth:`_add_rule`, with the fake's own keyword for the target.
    """

    def __init__(self, rule_type: Callable[..., R], *, random_seed: int = 0) -> None:
        self._rule_type = rule_type
        self._random_seed = random_seed
        self._random = random.Random(random_seed)
        self._rules: list[R] = []
        self._ids = itertools.count(1)

    @property
    def rules(self) -> list[R]:
        """The active rules, in the order they are consulted."""
        return list(self._rules)

    def add(self, rule: R) -> R:
        rule.id = next(self._ids)
        self._rules.append(rule)
        return rule

    def extend(self, rules: Iterable[R]) -> list[R]:
        return [self.add(rule) for rule in rules]

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

    def to_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self.rules]

    def plan(self, target: str) -> FaultPlan[R]:
        """Decide the faults for one call of *target* (updates counters, retires spent rules)."""
        latency = {Phase.BEFORE: 0.0, Phase.AFTER: 0.0}
        decisive: R | None = None
        for rule in list(self._rules):
            if not rule.matches(target):
                continue
            is_latency = rule.kind == LATENCY
            if not is_latency and (decisive is not None or rule.kind not in rule.DECISIVE_KINDS):
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
            if is_latency:
                latency[rule.phase] += rule.seconds
            else:
                decisive = rule
        return FaultPlan(
            latency_before=latency[Phase.BEFORE],
            latency_after=latency[Phase.AFTER],
            before=decisive if decisive is not None and decisive.phase is Phase.BEFORE else None,
            after=decisive if decisive is not None and decisive.phase is Phase.AFTER else None,
        )

    def _add_rule(
        self,
        kind: enum.StrEnum,
        target: str | None,
        probability: float = 1.0,
        times: int | None = None,
        phase: Phase = Phase.BEFORE,
        **fields: Any,
    ) -> R:
        """Build a rule of the fake's type and add it: what each convenience method does."""
        return self.add(self._rule_type(kind, target, probability, times, phase, **fields))
