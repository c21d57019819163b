"""The dead-letter envelope: the original message, untouched, plus headers that say what happened.

The body and the original AMQP properties (message_id, correlation_id, type, content_type, the
producer's own headers) are kept as they were, so a replay is the original message. The connector
adds the ``x-dl-*`` headers below. Every value is bounded (:data:`MAX_MESSAGE_CHARS`,
:data:`MAX_TRACEBACK_CHARS`) so an envelope stays far below the broker's frame limit however long
the error text, and no header ever carries a secret (the logging redactor runs over them).

A message dead-lettered by the broker itself (quorum ``x-delivery-limit`` exceeded, e.g. a crash
loop) arrives without ``x-dl-*`` headers but with ``x-death``; tools treat it as category
``permanent``, reason ``delivery_limit``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_CHARS = 1000
MAX_TRACEBACK_CHARS = 4000


class DeadLetterHeaders(BaseModel):
    """Headers the connector adds when it dead-letters a message (wire names are the aliases)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    category: Literal["transient", "permanent", "systemic"] = Field(alias="x-dl-category")
    error_class: str = Field(alias="x-dl-error-class", description="Our exception class name.")
    reason: str = Field(alias="x-dl-reason", description="Short code, e.g. unknown_user, invalid_message.")
    message: str = Field(alias="x-dl-message", max_length=MAX_MESSAGE_CHARS, description="For humans.")
    traceback: str = Field(default="", alias="x-dl-traceback", max_length=MAX_TRACEBACK_CHARS)
    attempts: int = Field(alias="x-dl-attempts", ge=1, description="Handling attempts made.")
    first_failure_at: dt.datetime = Field(alias="x-dl-first-failure-at")
    last_failure_at: dt.datetime = Field(alias="x-dl-last-failure-at")
    original_exchange: str = Field(alias="x-dl-original-exchange")
    original_routing_key: str = Field(alias="x-dl-original-routing-key")
    original_queue: str = Field(alias="x-dl-original-queue")
    flow: str = Field(alias="x-dl-flow")
    connector_version: str = Field(alias="x-dl-connector-version")
    pod: str = Field(alias="x-dl-pod")
    trace_id: str | None = Field(default=None, alias="x-dl-trace-id")

    def to_amqp(self) -> dict[str, Any]:
        """Headers as AMQP field values (ISO strings for times, None dropped)."""
        return {k: v for k, v in self.model_dump(by_alias=True, mode="json").items() if v is not None}

    @classmethod
    def from_amqp(cls, headers: dict[str, Any]) -> DeadLetterHeaders | None:
        """Parse our headers back; ``None`` when the message was not dead-lettered by us."""
        if "x-dl-reason" not in headers:
            return None
        return cls.model_validate(headers)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = " …[truncated]"
    return text[: limit - len(marker)] + marker
