"""A dead-letter record builder for the dlq tests (unit and integration)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from connector.dlq import codec
from connector.dlq.grouping import group_id
from connector.dlq.records import DeadLetterRecord

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def record(**overrides: Any) -> DeadLetterRecord:
    """A parked dead letter of the work-hours flow (unknown work type), overridable field by field."""
    event_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "dead_letter_queue": "q.workhours.dlq",
        "original_queue": "q.workhours",
        "original_exchange": "workhours",
        "original_routing_key": "workhour.created",
        "flow": "work_hours",
        "source": "connector",
        "category": "permanent",
        "error_class": "UnknownReference",
        "reason": "unknown_work_type",
        "error_message": "no work type with code 'NOPE'",
        "traceback": "",
        "attempts": 1,
        "first_failure_at": T0,
        "last_failure_at": T0,
        "connector_version": "0.1.0",
        "pod": "pod-1",
        "trace_id": event_id,
        "message_id": event_id,
        "correlation_id": None,
        "message_type": None,
        "content_type": "application/json",
        "properties": {},
        "headers": codec.encode_table({"x-dl-reason": "unknown_work_type", "producer": "tracker"}),
        "body": json.dumps({"event_id": event_id}).encode(),
        "ingested_at": T0,
    }
    values.update(overrides)
    if "group_id" not in overrides:
        values["group_id"] = group_id(
            queue=values["original_queue"],
            error_class=values["error_class"],
            reason=values["reason"],
            message=values["error_message"],
        )
    return DeadLetterRecord(**values)
