"""Severa's daily call quota: 100,000 calls per organisation per UTC day, every call counted.

Every SOAP answer carries the ``Quota`` and ``UsedQuota`` headers; once the day's calls exceed the
quota, every call faults with ``QuotaLimitExceededException`` until the UTC date turns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

DEFAULT_DAILY_QUOTA: Final = 100_000


@dataclass(frozen=True, slots=True)
class QuotaState:
    """What one call saw: the limit, the calls used today (this one included), and whether it is over."""

    limit: int
    used: int

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit


class QuotaMeter:
    """Counts calls per UTC day against a limit; the limit and the count can be set for tests."""

    def __init__(self, limit: int = DEFAULT_DAILY_QUOTA) -> None:
        if limit < 0:
            raise ValueError("quota limit must be >= 0")
        self.limit = limit
        self.used = 0
        self._day: dt.date | None = None

    def count(self, now: dt.datetime) -> QuotaState:
        """Count one call made at *now* (UTC)."""
        self._roll(now)
        self.used += 1
        return QuotaState(self.limit, self.used)

    def peek(self, now: dt.datetime) -> QuotaState:
        """The state without counting a call."""
        self._roll(now)
        return QuotaState(self.limit, self.used)

    def set(self, *, limit: int | None = None, used: int | None = None) -> None:
        if limit is not None:
            if limit < 0:
                raise ValueError("quota limit must be >= 0")
            self.limit = limit
        if used is not None:
            if used < 0:
                raise ValueError("used quota must be >= 0")
            self.used = used

    def exhaust(self) -> None:
        """Spend the rest of today's quota: every further call today faults."""
        self.used = max(self.used, self.limit)

    def reset(self) -> None:
        self.used = 0
        self._day = None

    def _roll(self, now: dt.datetime) -> None:
        day = now.astimezone(dt.UTC).date() if now.tzinfo else now.date()
        if self._day is None:
            self._day = day
        elif day != self._day:
            self._day = day
            self.used = 0
