"""The dead-letter envelope: the original message, untouched, plus headers that say what happened.

The body and the original AMQP properties (message_id, correlation_id, type, content_type, the
producer's own headers) are kept as they were, so a replay is the original message. The connector
adds the ``x-dl-*`` headers of :class:`DeadLetterHeaders`:

=================================  ==============================================================
``x-dl-id``                        this dead-lettering's id (32 hex); the ``dlq`` tools' key
``x-dl-category``                  transient / permanent / systemic (what the runtime decided)
``x-dl-error-class``               our exception class, e.g. ``UnknownReference``
``x-dl-reason``                    short code, e.g. ``unknown_work_type``, ``invalid_json``
``x-dl-message``                   the sentence a human can act on (≤ 1,000 chars)
``x-dl-traceback``                 short traceback, 8 frames at most (≤ 4,000 chars)
``x-dl-attempts``                  handling attempts over the message's life (retry rungs summed)
``x-dl-first-failure-at``          ISO-8601 UTC; ``…-last-failure-at`` likewise
``x-dl-original-exchange``         where the producer published it, with the routing key and the
``x-dl-original-routing-key``      queue it was consumed from (a replay goes back to that queue)
``x-dl-original-queue``
``x-dl-flow``                      the connector flow that gave up on it, e.g. ``work_hours``
``x-dl-connector-version``         the connector build, and the pod that dead-lettered it
``x-dl-pod``
``x-dl-trace-id``                  W3C trace id (else correlation id, else message id): its trace
=================================  ==============================================================

**Bounded size.** Every value is capped (:data:`MAX_MESSAGE_CHARS`, :data:`MAX_TRACEBACK_CHARS`,
:data:`MAX_SHORT_CHARS` for the rest, which is also AMQP's short-string limit), so the ``x-dl-*``
part of an envelope stays below :data:`MAX_ENVELOPE_HEADER_CHARS` characters — far below the
broker's frame limit — however long the error text. No value ever carries a secret (the logging
redactor runs over the message and the traceback).

A message dead-lettered by the broker itself (quorum ``x-delivery-limit`` exceeded, e.g. a crash
loop) arrives without ``x-dl-*`` headers but with ``x-death``; tools treat it as category
``permanent``, reason ``delivery_limit``, and derive its id from its content.

**Replays.** ``severa-connector dlq replay`` republishes the body with the original properties to
the original queue, *removes* ``x-dl-*``, the retry ladder's ``x-retry-step`` / ``x-attempts`` /
``x-retry-reason`` and the broker's ``x-death`` family (so the message starts afresh: full retry
ladder, attempts from 1) and adds the :class:`ReplayHeaders`. A replayed message that fails again
is dead-lettered anew with a new ``x-dl-id`` and keeps ``x-replay-*``, which link it to the
earlier failure in the dead-letter store.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_CHARS: Final = 1000
MAX_TRACEBACK_CHARS: Final = 4000
MAX_SHORT_CHARS: Final = 255
"""Every other ``x-dl-*`` value; equal to AMQP's short-string limit (queue names, routing keys)."""
MAX_ENVELOPE_HEADER_CHARS: Final = MAX_MESSAGE_CHARS + MAX_TRACEBACK_CHARS + 16 * MAX_SHORT_CHARS
"""Upper bound of the ``x-dl-*`` values' total length (names and timestamps included, generously)."""

DEAD_LETTER_HEADER_PREFIX: Final = "x-dl-"
REPLAY_COUNT_HEADER: Final = "x-replay-count"
REPLAYED_AT_HEADER: Final = "x-replayed-at"
REPLAY_ID_HEADER: Final = "x-replay-id"
REPLAYED_FROM_HEADER: Final = "x-replayed-from"


def _short(alias: str, description: str) -> Any:
    return Field(alias=alias, max_length=MAX_SHORT_CHARS, description=description)


class DeadLetterHeaders(BaseModel):
    """Headers the connector adds when it dead-letters a message (wire names are the aliases)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    dead_letter_id: str | None = Field(
        default=None,
        alias="x-dl-id",
        max_length=64,
        description="Unique per dead-lettering (32 hex chars); the dlq tools' key. Absent on "
        "envelopes written before it existed: the tools then derive an id from the content.",
    )
    category: Literal["transient", "permanent", "systemic"] = Field(alias="x-dl-category")
    error_class: str = _short("x-dl-error-class", "Our exception class name.")
    reason: str = _short("x-dl-reason", "Short code, e.g. unknown_user, schema_violation.")
    message: str = Field(alias="x-dl-message", max_length=MAX_MESSAGE_CHARS, description="For humans.")
    traceback: str = Field(default="", alias="x-dl-traceback", max_length=MAX_TRACEBACK_CHARS)
    attempts: int = Field(alias="x-dl-attempts", ge=1, description="Handling attempts made.")
    first_failure_at: dt.datetime = Field(alias="x-dl-first-failure-at")
    last_failure_at: dt.datetime = Field(alias="x-dl-last-failure-at")
    original_exchange: str = _short("x-dl-original-exchange", "Exchange the producer published to.")
    original_routing_key: str = _short("x-dl-original-routing-key", "Routing key it was published with.")
    original_queue: str = _short("x-dl-original-queue", "Queue it was consumed from; replays go here.")
    flow: str = _short("x-dl-flow", "Connector flow that gave up on it, e.g. work_hours.")
    connector_version: str = _short("x-dl-connector-version", "Connector build that dead-lettered it.")
    pod: str = _short("x-dl-pod", "Pod (host) that dead-lettered it.")
    trace_id: str | None = Field(
        default=None,
        alias="x-dl-trace-id",
        max_length=MAX_SHORT_CHARS,
        description="W3C trace id of the message's trace (its traceparent); for a message without trace "
        "context its correlation id, else its message id. Finds its spans and log lines.",
    )

    def to_amqp(self) -> dict[str, Any]:
        """Headers as AMQP field values (ISO strings for times, None dropped)."""
        return {k: v for k, v in self.model_dump(by_alias=True, mode="json").items() if v is not None}

    @classmethod
    def from_amqp(cls, headers: dict[str, Any]) -> DeadLetterHeaders | None:
        """Parse our headers back; ``None`` when the message was not dead-lettered by us."""
        if "x-dl-reason" not in headers:
            return None
        return cls.model_validate(headers)


class ReplayHeaders(BaseModel):
    """Headers ``severa-connector dlq replay`` adds to a message it puts back on its queue."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    replay_count: int = Field(
        alias=REPLAY_COUNT_HEADER,
        ge=1,
        description="Times this message has been replayed, this one included.",
    )
    replayed_at: dt.datetime = Field(alias=REPLAYED_AT_HEADER, description="When it was republished (UTC).")
    replay_id: str = Field(
        alias=REPLAY_ID_HEADER,
        max_length=64,
        description="The replay run; `dlq list --replay-id` finds the messages of a run that came back.",
    )
    replayed_from: str = Field(
        alias=REPLAYED_FROM_HEADER,
        max_length=64,
        description="x-dl-id of the dead letter it was replayed from.",
    )

    def to_amqp(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = " …[truncated]"
    return text[: limit - len(marker)] + marker
