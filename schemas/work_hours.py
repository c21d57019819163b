"""Work-hour events: what external systems (time trackers, HR, mobile apps) publish.

Published to the ``workhours`` topic exchange with routing key = ``event_type``, JSON body,
``content_type=application/json``, ``message_id`` = ``event_id``; a ``correlation_id`` property is
propagated to every result event. Unknown fields are tolerated (producers may be newer than us);
wrong types are rejected (strict mode: ``"7.5"`` is fine for ``hours`` because JSON has no decimal
type, but ``true`` for ``hours`` or ``"yes"`` for ``billable`` are not).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

SCHEMA_VERSION: Literal["1"] = "1"
#: Severa rejects an hour entry whose Quantity exceeds 999.
MAX_HOURS = Decimal("999")

WorkHourEventType = Literal["workhour.created", "workhour.updated", "workhour.deleted"]

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"),
]


class WorkHourEvent(BaseModel):
    """One work-hour entry as an external system sees it.

    ``(source, source_entry_id)`` is the entry's stable identity across created/updated/deleted;
    ``version`` grows with every change of that entry so that stale events can be ignored.
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
    source: Code = Field(description="Publishing system, e.g. 'harvest' or 'mobile-app'.")
    source_entry_id: Code = Field(description="The entry's id in the source system; stable across versions.")
    version: int = Field(default=1, ge=1, description="Per-entry sequence; older versions are ignored.")

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
        """The entry's identity across systems: ``<source>:<source_entry_id>``."""
        return f"{self.source}:{self.source_entry_id}"
