"""The fake's tunable behaviours: where our notes say "unverified", the fake lets a test choose.

Defaults and why:

===============================  ==========  ==================================================
``duplicate_customer_code``      ``refuse``  a second customer with the same code answers
                                             ``DUPLICATE_DATA`` (unverified; ``accept`` stores it)
``duplicate_invoice_number``     ``accept``  a second invoice with the same number is stored
                                             (unverified; ``refuse`` answers ``DUPLICATE_DATA``).
                                             The connector must look up before it writes either way.
``timestamp_tolerance``          300 s       how far a request's time stamp may be from the clock
``period_locked_until``          none        invoices dated on or before it answer ``PERIOD_LOCK``
``disabled_resources``           none        these answer ``SERVICE_ACCESS_ERROR`` (HTTP 403)
``list_page_size``               500         ``salesinvoicelist.nv`` answers at most this many,
                                             lowest NetvisorKey first (one client reports 500)
``max_body_bytes``               5 MiB       a larger body answers ``INVALID_DATA_SIZE``
===============================  ==========  ==================================================
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.netvisor.fake.auth import DEFAULT_TIMESTAMP_TOLERANCE

DEFAULT_MAX_BODY_BYTES: Final = 5 * 1024 * 1024
DEFAULT_LIST_PAGE_SIZE: Final = 500


class Duplicates(enum.StrEnum):
    REFUSE = "refuse"
    ACCEPT = "accept"


@dataclass(slots=True)
class Behaviour:
    duplicate_customer_code: Duplicates = Duplicates.REFUSE
    duplicate_invoice_number: Duplicates = Duplicates.ACCEPT
    timestamp_tolerance: dt.timedelta = DEFAULT_TIMESTAMP_TOLERANCE
    period_locked_until: dt.date | None = None
    disabled_resources: frozenset[str] = field(default_factory=frozenset)
    list_page_size: int = DEFAULT_LIST_PAGE_SIZE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_json(self) -> dict[str, Any]:
        return {
            "duplicate_customer_code": self.duplicate_customer_code.value,
            "duplicate_invoice_number": self.duplicate_invoice_number.value,
            "timestamp_tolerance_seconds": self.timestamp_tolerance.total_seconds(),
            "period_locked_until": self.period_locked_until.isoformat() if self.period_locked_until else None,
            "disabled_resources": sorted(self.disabled_resources),
            "list_page_size": self.list_page_size,
            "max_body_bytes": self.max_body_bytes,
        }

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply the admin API's JSON (``to_json`` names); all or nothing, ``ValueError`` if bad."""
        staged = Behaviour(
            self.duplicate_customer_code,
            self.duplicate_invoice_number,
            self.timestamp_tolerance,
            self.period_locked_until,
            self.disabled_resources,
            self.list_page_size,
            self.max_body_bytes,
        )
        unknown = set(changes) - set(self.to_json())
        if unknown:
            raise ValueError(f"unknown behaviour(s) {sorted(unknown)}; known: {sorted(self.to_json())}")
        for name, value in changes.items():
            _apply(staged, name, value)
        for name in self.__slots__:
            setattr(self, name, getattr(staged, name))


def _apply(staged: Behaviour, name: str, value: Any) -> None:
    if name == "duplicate_customer_code":
        staged.duplicate_customer_code = Duplicates(value)
    elif name == "duplicate_invoice_number":
        staged.duplicate_invoice_number = Duplicates(value)
    elif name == "timestamp_tolerance_seconds":
        seconds = _number(name, value)
        if seconds <= 0:
            raise ValueError("timestamp_tolerance_seconds must be > 0")
        staged.timestamp_tolerance = dt.timedelta(seconds=seconds)
    elif name == "period_locked_until":
        staged.period_locked_until = None if value is None else dt.date.fromisoformat(str(value))
    elif name == "disabled_resources":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError("disabled_resources must be a list of resource names")
        staged.disabled_resources = frozenset(normalise_resource(item) for item in value)
    elif name in ("list_page_size", "max_body_bytes"):
        size = _number(name, value)
        if size < 1 or size != int(size):
            raise ValueError(f"{name} must be a positive integer")
        setattr(staged, name, int(size))


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def normalise_resource(name: str) -> str:
    """``SalesInvoice.NV`` / ``salesinvoice`` → ``salesinvoice.nv``."""
    lowered = name.strip().lower()
    return lowered if lowered.endswith(".nv") else f"{lowered}.nv"
