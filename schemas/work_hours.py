"""Work-hour events: what external systems (time trackers, HR, mobile apps) publish.

Published to the ``workhours`` topic exchange with routing key = ``event_type``, JSON body,
``content_type=application/json``, ``message_id`` = ``event_id``; a ``correlation_id`` property is
propagated to every result event. Unknown fields are tolerated (producers may be newer than us);
wrong types are rejected (strict mode: ``"7.5"`` is fine for ``hours`` because JSON has no decimal
type, but ``true`` for ``hours`` or ``"yes"`` for ``billable`` are not).

Identity fields and look-up codes are normalised differently, on purpose. ``source`` and
``source_entry_id`` are an entry's *identity*: they are compared exactly as sent -- no stripping,
no case folding, no Unicode normalisation -- because any normalisation would merge two entries the
source keeps apart (``"a1"`` and ``"a1 "`` used to become one, and the second overwrote the first in
Severa). A value with leading or trailing whitespace or a control character anywhere is therefore
refused as a schema violation naming the field rather than quietly repaired. The codes
(``user_code``, ``phase_code``, ``work_type_code``) are *look-up keys* into Severa and keep their
trimming: a stray blank there must not turn a valid event into an unknown user.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from schemas.identity import entry_key

SCHEMA_VERSION: Literal["1"] = "1"
#: Severa rejects an hour entry whose Quantity exceeds 999.
MAX_HOURS = Decimal("999")
#: The ledger stores versions as signed 64-bit integers (SQL BIGINT, SQLite INTEGER).
MAX_VERSION = 2**63 - 1
#: Longest ``source`` / ``source_entry_id`` accepted, in characters (Unicode code points).
MAX_IDENTITY_LENGTH = 100

WorkHourEventType = Literal["workhour.created", "workhour.updated", "workhour.deleted"]

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _exact_identity(value: str) -> str:
    """Refuse what an exact comparison would make invisible; never change the value."""
    if value != value.strip():
        raise ValueError(
            "must not start or end with whitespace: identities are compared exactly as sent, "
            "so remove the blanks in the source system"
        )
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":
            raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
        if category == "Cs":
            raise ValueError(f"must be valid Unicode text (found the lone surrogate U+{ord(char):04X})")
    return value


#: An identity part: taken verbatim, 1..100 characters, no edge whitespace, no control characters.
Identity = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IDENTITY_LENGTH),
    AfterValidator(_exact_identity),
]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"),
]


class WorkHourEvent(BaseModel):
    """One work-hour entry as an external system sees it.

    ``(source, source_entry_id)`` is the entry's stable identity across created/updated/deleted;
    ``version`` grows with every change of that entry so that stale events can be ignored.

    The two identity fields are compared exactly as sent: no trimming, no case folding, no Unicode
    normalisation, so two values that differ in any way are two entries. A value with leading or
    trailing whitespace or a control character is refused, not repaired. The codes that name Severa
    records (user, phase, work type) are look-up keys instead and are trimmed.
    """

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        frozen=True,
        json_schema_extra={"$id": "https://severa-connector/schemas/workhour-event.json"},
    )

    schema_version: Literal["1"] = Field(default=SCHEMA_VERSION, description="Contract version.")
    event_id: uuid.UUID = Field(description="Unique per event; also the AMQP message_id.")
    event_type: WorkHourEventType = Field(
        default="workhour.created", description="Also the routing key on the workhours exchange."
    )
    occurred_at: AwareDatetime = Field(description="When the change happened in the source (with offset).")
    source: Identity = Field(
        description="Publishing system, e.g. 'harvest' or 'mobile-app'. Part of the entry's identity: "
        "compared exactly as sent (no trimming, case folding or Unicode normalisation); 1-100 "
        "characters, no leading/trailing whitespace, no control characters."
    )
    source_entry_id: Identity = Field(
        description="The entry's id in the source system; stable across versions. Part of the entry's "
        "identity: compared exactly as sent (no trimming, case folding or Unicode normalisation); "
        "1-100 characters, no leading/trailing whitespace, no control characters."
    )
    version: int = Field(
        default=1,
        ge=1,
        le=MAX_VERSION,
        description="Per-entry sequence, 1 to 2^63-1; older versions are ignored. A change of the entry "
        "needs a higher version: the same version with other content is refused as a conflict.",
    )

    user_code: Code | None = Field(default=None, description="Severa user code of the person.")
    user_email: Email | None = Field(default=None, description="Used when user_code is absent.")
    case_number: int | None = Field(
        default=None, gt=0, description="Severa case (project) number. Required unless deleted."
    )
    phase_code: Code | None = Field(default=None, description="Phase code within the case.")
    work_type_code: Code | None = Field(default=None, description="Severa work type code.")
    date: dt.date | None = Field(default=None, description="Day the work was done (local to the worker).")
    hours: Decimal | None = Field(
        default=None,
        gt=0,
        le=MAX_HOURS,
        decimal_places=2,
        description="Hours worked, > 0 and <= 999 (Severa's limit), at most 2 decimals.",
    )
    description: str | None = Field(default=None, description="Free text; trimmed to Severa's length.")
    billable: bool = Field(default=True, description="Whether the hours are billable.")

    @model_validator(mode="after")
    def _complete_for_its_type(self) -> WorkHourEvent:
        if self.event_type == "workhour.deleted":
            return self
        if self.user_code is None and self.user_email is None:
            raise ValueError("either user_code or user_email is required")
        missing = [
            name
            for name in ("case_number", "phase_code", "work_type_code", "date", "hours")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"{self.event_type} requires {', '.join(missing)}")
        return self

    @property
    def external_id(self) -> str:
        """The entry's ledger key, :func:`schemas.identity.entry_key` of ``(source, source_entry_id)``.

        ``<source>:<source_entry_id>`` with ``%`` and ``:`` in the source percent-encoded, so that two
        different identities can never share a key.
        """
        return entry_key(self.source, self.source_entry_id)
