"""Result events: how the source system learns what became of its work-hour event.

Published with confirms to the ``workhours.results`` topic exchange, routing key = ``event_type``,
``correlation_id`` copied from the incoming event (or its event id when it had none), so the
source can close its loop. Delivery is at least once: consumers de-duplicate on ``event_id`` of the
event they refer to.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SyncOutcome = Literal["created", "updated", "deleted", "unchanged", "stale"]


class WorkHourSynced(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal["1"] = "1"
    event_type: Literal["workhour.synced"] = "workhour.synced"
    event_id: uuid.UUID = Field(description="Id of the work-hour event this result is about.")
    external_id: str = Field(description="<source>:<source_entry_id>")
    version: int
    outcome: SyncOutcome = Field(
        description="created/updated/deleted: Severa changed; unchanged: a duplicate of what Severa "
        "already holds; stale: an older version than one already applied, ignored."
    )
    severa_guid: str | None = Field(description="The Severa hour entry GUID (None for a delete never seen).")
    synced_at: dt.datetime


class WorkHourFailed(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal["1"] = "1"
    event_type: Literal["workhour.failed"] = "workhour.failed"
    event_id: uuid.UUID | None = Field(description="None when the body was not even valid JSON.")
    external_id: str | None
    reason: str = Field(description="Short code, e.g. unknown_user, invalid_message, severa_validation.")
    message: str = Field(description="What went wrong, for a human.")
    dead_lettered: bool = Field(description="True: parked in the DLQ for ops to fix and replay.")
    failed_at: dt.datetime
