"""Result events: how the source system learns what became of its work-hour event.

Published with confirms to the ``workhours.results`` topic exchange, routing key = ``event_type``,
``correlation_id`` copied from the incoming event (or its event id when it had none), so the
source can close its loop. Delivery is at least once: consumers de-duplicate on ``event_id`` of the
event they refer to.

Each result names the entry by ``source`` and ``source_entry_id`` exactly as the event sent them;
``external_id`` is the connector's encoded ledger key of that pair
(:func:`schemas.identity.entry_key`), kept for consumers that already match on it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SyncOutcome = Literal["created", "updated", "deleted", "unchanged", "stale"]

_EXTERNAL_ID = (
    "The connector's ledger key of the entry: <source>:<source_entry_id>, with '%' and ':' in the "
    "source percent-encoded ('%25', '%3A') so that two identities never share a key."
)


class WorkHourSynced(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal["1"] = "1"
    event_type: Literal["workhour.synced"] = "workhour.synced"
    event_id: uuid.UUID = Field(description="Id of the work-hour event this result is about.")
    external_id: str = Field(description=_EXTERNAL_ID)
    source: str = Field(description="The event's source, exactly as sent.")
    source_entry_id: str = Field(description="The event's source_entry_id, exactly as sent.")
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
    event_id: uuid.UUID | None = Field(
        description="The event_id read from the body; None when the body was not JSON or named none "
        "(message_id and correlation_id still identify the message then)."
    )
    external_id: str | None = Field(description=f"{_EXTERNAL_ID} None when the body names no identity.")
    source: str | None = Field(
        default=None, description="The body's source, exactly as sent; None when it had no string source."
    )
    source_entry_id: str | None = Field(
        default=None,
        description="The body's source_entry_id, exactly as sent; None when it had no string one.",
    )
    message_id: str | None = Field(
        default=None,
        description="The AMQP message_id of the failed message (producers set it to the event_id), so "
        "that a failure can be matched even when the body is not JSON at all.",
    )
    correlation_id: str | None = Field(
        default=None,
        description="The AMQP correlation_id of the failed message, if it had one (the result message "
        "carries it as its own correlation_id too).",
    )
    reason: str = Field(
        description="Short code, e.g. unknown_user, schema_violation, severa_validation "
        "(docs/work-hours-events.md lists them all)."
    )
    message: str = Field(description="What went wrong, for a human.")
    dead_lettered: bool = Field(description="True: parked in the DLQ for ops to fix and replay.")
    failed_at: dt.datetime
