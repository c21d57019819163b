"""Our own AMQP headers, and the provenance a message keeps while it travels through wait queues.

A message republished by the connector (to a retry wait queue, or put back on its work queue
while the circuit is open) arrives again through the *default* exchange with the queue's name as
routing key. Without help, a dead letter made from it would say "published to (default) /
q.workhours" and its first failure would be the latest one. So the first republish records where
the message was originally published and when it first failed; later hops keep those values; the
dead-letter envelope reads them (:func:`original_exchange`, :func:`original_routing_key`,
:func:`first_failure_at`), and a replay strips them so the replayed message starts afresh.

Client-set ``x-death`` is never trusted (newer brokers ignore it on republish anyway).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

#: Rungs of the delayed-retry ladder climbed so far.
RETRY_STEP_HEADER: Final = "x-retry-step"
#: Handling attempts over the message's whole life (in-process attempts summed over the rungs).
ATTEMPTS_HEADER: Final = "x-attempts"
#: The reason of the failure that sent the message to a wait queue.
RETRY_REASON_HEADER: Final = "x-retry-reason"
#: Where the message was first published (before any republish through the default exchange).
ORIGINAL_EXCHANGE_HEADER: Final = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-original-routing-key"
#: When the message first failed (ISO 8601, UTC).
FIRST_FAILURE_HEADER: Final = "x-first-failure-at"

#: Counters only the connector may set; see :func:`drop_untrusted_counters`.
COUNTER_HEADERS: Final = frozenset(
    {RETRY_STEP_HEADER, ATTEMPTS_HEADER, RETRY_REASON_HEADER, "x-systemic-strikes"}
)

PROVENANCE_HEADERS: Final = frozenset(
    {ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, FIRST_FAILURE_HEADER}
)


def header_int(headers: Mapping[str, Any] | None, name: str) -> int:
    """A non-negative integer header; anything missing or unreadable counts as 0."""
    value = (headers or {}).get(name)
    try:
        return max(int(value), 0) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def original_exchange(headers: Mapping[str, Any] | None, delivered_via: str) -> str:
    recorded = _text((headers or {}).get(ORIGINAL_EXCHANGE_HEADER))
    return recorded if recorded is not None else delivered_via


def original_routing_key(headers: Mapping[str, Any] | None, delivered_with: str) -> str:
    recorded = _text((headers or {}).get(ORIGINAL_ROUTING_KEY_HEADER))
    return recorded if recorded is not None else delivered_with


def first_failure_at(headers: Mapping[str, Any] | None) -> dt.datetime | None:
    value = (headers or {}).get(FIRST_FAILURE_HEADER)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def with_provenance(
    headers: Mapping[str, Any] | None, *, exchange: str, routing_key: str, failed_at: dt.datetime
) -> dict[str, Any]:
    """``headers`` plus the provenance headers, recorded on the first republish only."""
    result = dict(headers or {})
    result.setdefault(ORIGINAL_EXCHANGE_HEADER, exchange)
    result.setdefault(ORIGINAL_ROUTING_KEY_HEADER, routing_key)
    result.setdefault(FIRST_FAILURE_HEADER, failed_at.astimezone(dt.UTC).isoformat())
    return result


def drop_untrusted_counters(headers: dict[str, Any], delivered_via: str) -> None:
    """Forget our counters on a message that did not come from one of our own republishes.

    The connector republishes (retry ladder, put-back) through the default exchange only; a
    message delivered through any other exchange was published by a producer or a replay, and
    counters on it would let a producer shorten the retries or get a message parked as poison.
    """
    if delivered_via:
        for name in COUNTER_HEADERS | PROVENANCE_HEADERS:
            headers.pop(name, None)
