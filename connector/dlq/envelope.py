"""Dead-lettering and its inverse: park a message with the story of its failure, read it back, replay it.

:class:`DeadLetterer` is the runtime half. We publish the copy ourselves (to the DLX, routing key =
the queue it came from) instead of ``reject(requeue=False)`` because the broker's own
dead-lettering cannot add headers: ops need the reason, the attempts and the original coordinates
next to the message. The copy is confirmed by the broker before the original is acked (see
:mod:`connector.processing`). Each copy gets a fresh ``x-dl-id``: the dead-letter store's key.

:func:`parse_dead_letter` is the tools' half: it turns whatever sits in a DLQ into a
:class:`~connector.dlq.records.DeadLetterRecord` and never fails -- an envelope of ours, one the
broker dead-lettered (``x-death``, e.g. the quorum delivery limit), or something a person published
to the DLQ by hand. :func:`replay_message` builds what ``dlq replay`` republishes (the headers it
strips and adds are documented in :mod:`schemas.dead_letter`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pydantic
from aio_pika.abc import AbstractIncomingMessage

from connector import __version__, tracing
from connector.bus import Bus, OutgoingMessage
from connector.delayed_retry import ATTEMPTS_HEADER, RETRY_STEP_HEADER, header_int
from connector.dlq import codec
from connector.dlq.grouping import group_id
from connector.dlq.records import DeadLetterRecord
from connector.headers import (
    PROVENANCE_HEADERS,
    first_failure_at,
    original_exchange,
    original_routing_key,
)
from connector.logging import redact_text
from connector.processing import Failure
from schemas.dead_letter import (
    DEAD_LETTER_HEADER_PREFIX,
    MAX_MESSAGE_CHARS,
    MAX_SHORT_CHARS,
    MAX_TRACEBACK_CHARS,
    REPLAY_COUNT_HEADER,
    REPLAY_ID_HEADER,
    REPLAYED_AT_HEADER,
    REPLAYED_FROM_HEADER,
    DeadLetterHeaders,
    ReplayHeaders,
    truncate,
)

# Headers a replay removes so the message starts afresh (besides every x-dl-*): the retry
# ladder's counters and the broker's dead-lettering history (4.x brokers ignore a client-set
# x-death anyway), plus the quorum queue's redelivery counter.
RETRY_REASON_HEADER: Final = "x-retry-reason"
STRIPPED_ON_REPLAY: Final = frozenset(
    {
        RETRY_STEP_HEADER,
        ATTEMPTS_HEADER,
        RETRY_REASON_HEADER,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
        REPLAY_COUNT_HEADER,
        REPLAYED_AT_HEADER,
        REPLAY_ID_HEADER,
        REPLAYED_FROM_HEADER,
        "x-systemic-strikes",
        *PROVENANCE_HEADERS,
    }
)
# Excluded from a content-derived id: the broker changes it on every redelivery of the same copy.
_VOLATILE: Final = frozenset({"x-delivery-count"})
# Properties kept in DeadLetterRecord.properties (message_id, correlation_id, type and
# content_type have columns of their own).
_EXTRA_PROPERTIES: Final = (
    "timestamp",
    "content_encoding",
    "app_id",
    "reply_to",
    "priority",
    "expiration",
    "user_id",
)


class DeadLetterer:
    """Publishes a failed message to the dead-letter exchange with its ``x-dl-*`` envelope."""

    def __init__(self, bus: Bus, *, exchange: str, queue: str, flow: str, pod: str) -> None:
        self._bus = bus
        self._exchange = exchange
        self._queue = queue
        self._flow = flow
        self._pod = pod

    def headers_for(self, message: AbstractIncomingMessage, failure: Failure) -> dict[str, Any]:
        original = {
            k: v
            for k, v in (message.headers or {}).items()
            if not str(k).startswith(DEAD_LETTER_HEADER_PREFIX)
        }
        # The first failure is kept across the retry ladder and put-backs (connector.headers), and
        # by a message replayed by an old tool that kept x-dl-*.
        previous = first_failure_at(message.headers) or _as_datetime(
            (message.headers or {}).get("x-dl-first-failure-at")
        )
        # The W3C trace id (the span handling it, else the publisher's traceparent); a message
        # from a publisher without trace context falls back to its correlation or message id.
        trace_id = (
            tracing.current_trace_id()
            or tracing.trace_id_in(message.headers)
            or message.correlation_id
            or message.message_id
        )
        headers = DeadLetterHeaders(
            dead_letter_id=uuid.uuid4().hex,
            category=failure.category.value,
            error_class=_short(type(failure.error).__name__),
            reason=_short(failure.reason),
            message=truncate(redact_text(failure.message), MAX_MESSAGE_CHARS),
            traceback=truncate(redact_text(failure.short_traceback()), MAX_TRACEBACK_CHARS),
            attempts=header_int(message.headers, ATTEMPTS_HEADER) + failure.attempts,
            first_failure_at=previous or failure.first_failure_at,
            last_failure_at=failure.last_failure_at,
            original_exchange=_short(original_exchange(message.headers, message.exchange or "")),
            original_routing_key=_short(original_routing_key(message.headers, message.routing_key or "")),
            original_queue=_short(self._queue),
            flow=_short(self._flow),
            connector_version=_short(__version__),
            pod=_short(self._pod),
            trace_id=_short(trace_id) if trace_id else None,
        )
        return {**original, **headers.to_amqp()}

    async def dead_letter(self, message: AbstractIncomingMessage, failure: Failure) -> None:
        headers = self.headers_for(message, failure)
        with tracing.dead_lettering(
            self._queue,
            dead_letter_id=str(headers["x-dl-id"]),
            category=failure.category.value,
            reason=failure.reason,
        ):
            await self._bus.publish(
                self._exchange, OutgoingMessage.copy_of(message, routing_key=self._queue, headers=headers)
            )


# --------------------------------------------------------------------------------------------------
# Reading dead letters back


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as it sat in a DLQ, stripped of broker objects (what :func:`parse_dead_letter` reads)."""

    body: bytes
    routing_key: str
    exchange: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    content_type: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> Envelope:
        properties = {name: getattr(message, name, None) for name in _EXTRA_PROPERTIES}
        return cls(
            body=message.body,
            routing_key=message.routing_key or "",
            exchange=message.exchange or "",
            headers=dict(message.headers or {}),
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            content_type=message.content_type,
            properties={k: v for k, v in properties.items() if v is not None},
        )


def content_id(envelope: Envelope, dead_letter_queue: str) -> str:
    """An id for a dead letter that carries no ``x-dl-id``, stable across redeliveries of it.

    Built from everything the message is (body, properties, headers -- the broker's ``x-death``
    with its timestamps included), so two *different* dead letters never share it. Two
    byte-identical copies dead-lettered in the same second do share it and are stored once: they
    are the same event, which the flows would treat as a duplicate anyway.
    """
    canonical = json.dumps(
        {
            "queue": dead_letter_queue,
            "message_id": envelope.message_id,
            "correlation_id": envelope.correlation_id,
            "type": envelope.type,
            "headers": codec.encode_table({k: v for k, v in envelope.headers.items() if k not in _VOLATILE}),
            "properties": codec.encode_table(envelope.properties),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    digest = hashlib.blake2b(canonical, digest_size=16, person=b"sc-dlq-content")
    digest.update(envelope.body)
    return digest.hexdigest()


def parse_dead_letter(
    envelope: Envelope,
    *,
    dead_letter_queue: str,
    now: dt.datetime,
    flows_by_queue: Mapping[str, str] | None = None,
) -> DeadLetterRecord:
    """Whatever sits in a DLQ as a record; never raises for a message's content."""
    headers = dict(envelope.headers)
    flows = flows_by_queue or {}
    ours: DeadLetterHeaders | None
    try:
        ours = DeadLetterHeaders.from_amqp(headers)
    except pydantic.ValidationError:
        ours = None  # x-dl-* headers mangled by hand: still a dead letter, described below
    common: dict[str, Any] = {
        "dead_letter_queue": dead_letter_queue,
        "message_id": envelope.message_id,
        "correlation_id": envelope.correlation_id,
        "message_type": envelope.type,
        "content_type": envelope.content_type,
        "properties": codec.encode_table(envelope.properties),
        "headers": codec.encode_table(headers),
        "body": envelope.body,
        "ingested_at": now,
        "replayed_from": _text(headers.get(REPLAYED_FROM_HEADER)),
        "prior_replay_id": _text(headers.get(REPLAY_ID_HEADER)),
        "prior_replays": header_int(headers, REPLAY_COUNT_HEADER),
    }
    if ours is not None:
        return _record(
            id=ours.dead_letter_id or content_id(envelope, dead_letter_queue),
            source="connector",
            original_queue=ours.original_queue,
            original_exchange=ours.original_exchange,
            original_routing_key=ours.original_routing_key,
            flow=ours.flow,
            category=ours.category,
            error_class=ours.error_class,
            reason=ours.reason,
            error_message=ours.message,
            traceback=ours.traceback,
            attempts=ours.attempts,
            first_failure_at=_utc(ours.first_failure_at),
            last_failure_at=_utc(ours.last_failure_at),
            connector_version=ours.connector_version,
            pod=ours.pod,
            trace_id=ours.trace_id,
            **common,
        )
    deaths = _deaths(headers.get("x-death"))
    if deaths:
        latest = deaths[0]  # the broker puts the most recent dead-lettering first
        queue = _text(latest.get("queue")) or envelope.routing_key
        why = _text(latest.get("reason")) or "dead_lettered"
        count = _int(latest.get("count"))
        times = [t for t in (_as_datetime(d.get("time")) for d in deaths) if t is not None]
        keys = latest.get("routing-keys")
        routing_key = _text(keys[0]) if isinstance(keys, list) and keys else None
        attempts = max(header_int(headers, "x-delivery-count"), header_int(headers, ATTEMPTS_HEADER), 1)
        return _record(
            id=content_id(envelope, dead_letter_queue),
            source="broker",
            original_queue=queue,
            original_exchange=_text(latest.get("exchange")) or "",
            original_routing_key=routing_key or "",
            flow=flows.get(queue),
            category="permanent",
            error_class="BrokerDeadLettered",
            reason=why,
            error_message=_broker_message(queue, why, count),
            traceback="",
            attempts=attempts,
            first_failure_at=_utc(min(times)) if times else now,
            last_failure_at=_utc(max(times)) if times else now,
            connector_version=None,
            pod=None,
            trace_id=_trace_id(envelope),
            **common,
        )
    queue = envelope.routing_key  # the DLX routes with the original queue's name
    mangled = any(str(k).startswith(DEAD_LETTER_HEADER_PREFIX) for k in headers)
    return _record(
        id=_text(headers.get("x-dl-id")) or content_id(envelope, dead_letter_queue),
        source="unknown",
        original_queue=queue,
        original_exchange="",
        original_routing_key="",
        flow=flows.get(queue),
        category="permanent",
        error_class="Unknown",
        reason="invalid_envelope" if mangled else "unknown",
        error_message=(
            "its x-dl-* headers do not parse (edited by hand?)"
            if mangled
            else "no x-dl-* or x-death headers: put in the DLQ by something other than the connector"
        ),
        traceback="",
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        connector_version=None,
        pod=None,
        trace_id=_trace_id(envelope),
        **common,
    )


def _trace_id(envelope: Envelope) -> str | None:
    """A dead letter the connector did not describe: its W3C trace id, else its correlation/message id."""
    return tracing.trace_id_in(envelope.headers) or envelope.correlation_id or envelope.message_id


def _record(**values: Any) -> DeadLetterRecord:
    values["group_id"] = group_id(
        queue=values["original_queue"],
        error_class=values["error_class"],
        reason=values["reason"],
        message=values["error_message"],
    )
    return DeadLetterRecord(**values)


def _broker_message(queue: str, why: str, count: int) -> str:
    if why == "delivery_limit":
        return (
            f"the broker dead-lettered it from {queue}: delivered too many times without an ack "
            "(a consumer crashing on it, or nacking it in a loop)"
        )
    return f"the broker dead-lettered it from {queue}: {why}" + (f" ({count} times)" if count > 1 else "")


# --------------------------------------------------------------------------------------------------
# Replaying


def replay_message(
    record: DeadLetterRecord, *, replay_id: str, target_queue: str, now: dt.datetime
) -> OutgoingMessage:
    """What ``dlq replay`` publishes (via the default exchange) for ``record``.

    The body (as edited, if it was) and the producer's properties and headers, minus everything
    that would make the connector treat it as a retry (see :data:`STRIPPED_ON_REPLAY`), plus the
    :class:`~schemas.dead_letter.ReplayHeaders` that link it to this dead letter.
    """
    if record.body is None:
        raise ValueError(f"dead letter {record.id} has no body (purged): nothing to replay")
    headers = {
        k: v
        for k, v in codec.decode_table(record.headers).items()
        if not k.startswith(DEAD_LETTER_HEADER_PREFIX) and k not in STRIPPED_ON_REPLAY
    }
    headers.update(
        ReplayHeaders(
            replay_count=record.prior_replays + record.replay_count + 1,
            replayed_at=now,
            replay_id=replay_id,
            replayed_from=record.id,
        ).to_amqp()
    )
    properties = codec.decode_table(record.properties)
    priority = properties.get("priority")
    return OutgoingMessage(
        body=record.body,
        routing_key=target_queue,
        message_id=record.message_id,
        correlation_id=record.correlation_id,
        type=record.message_type,
        content_type=record.content_type or "application/octet-stream",
        headers=headers,
        timestamp=properties.get("timestamp"),
        content_encoding=_text(properties.get("content_encoding")),
        app_id=_text(properties.get("app_id")),
        reply_to=_text(properties.get("reply_to")),
        priority=priority if isinstance(priority, int) else None,
    )


# --------------------------------------------------------------------------------------------------


def _short(text: str) -> str:
    return truncate(text, MAX_SHORT_CHARS)


def _deaths(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [d for d in value if isinstance(d, dict)]


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _int(value: object) -> int:
    try:
        return int(value) if value is not None else 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _as_datetime(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
