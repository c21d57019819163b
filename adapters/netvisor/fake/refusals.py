"""Counters of the fake's refusals, one attribute per :class:`~.errors.RefusalKind`.

Attributes rather than a dict so that a test reads like its claim::

    assert fake.refusals.ordering == fake.refusals.signature == fake.refusals.concurrency == 0

Injected faults are not refusals (their rules count how often they fired).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from adapters.netvisor.fake.errors import RefusalKind


@dataclass(slots=True)
class Refusals:
    ordering: int = 0
    mandatory: int = 0
    unknown_element: int = 0
    invalid_value: int = 0
    not_found: int = 0
    duplicate: int = 0
    period_lock: int = 0
    access: int = 0
    malformed: int = 0
    size: int = 0
    credentials: int = 0
    signature: int = 0
    timestamp: int = 0
    transaction_reuse: int = 0
    concurrency: int = 0

    def add(self, kind: RefusalKind) -> None:
        setattr(self, kind.value, getattr(self, kind.value) + 1)

    def __getitem__(self, kind: RefusalKind | str) -> int:
        value: int = getattr(self, RefusalKind(kind).value)
        return value

    @property
    def total(self) -> int:
        return sum(self.to_json().values())

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def clear(self) -> None:
        for kind in RefusalKind:
            setattr(self, kind.value, 0)
