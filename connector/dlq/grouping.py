"""Failure groups: dead letters that failed the same way, so ops fix the cause once and replay them all.

Like ServicePulse's "failed message groups", a group is keyed by *where* and *how* a message failed:
its original queue, the error class, the reason code and the *shape* of the error message. The
shape masks what identifies one message -- UUIDs, long hex ids, timestamps and dates, memory
addresses -- and keeps what names a root cause: ``no work type with code 'NOPE'`` and ``… 'QA'``
are two groups because they are two different mapping fixes, while ``entry 5f0c…e1 is locked``
for a thousand entries is one.

The group id is a short stable hash of that key (``g-`` + 12 hex), computed at ingest and stored
with the row, so grouping is a plain ``GROUP BY`` and ``replay --group g-…`` needs no recomputation.
"""

from __future__ import annotations

import enum
import hashlib
import re
from typing import Final

GROUP_ID_PREFIX: Final = "g-"

# Order matters: timestamps before dates before numbers-in-hex, UUIDs before generic hex.
_MASKS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?(?![\w:])",
            re.IGNORECASE,
        ),
        "<time>",
    ),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<addr>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{16,}\b", re.IGNORECASE), "<hex>"),
)
_SPACE: Final = re.compile(r"\s+")
MAX_SHAPE_CHARS: Final = 300


def message_shape(message: str) -> str:
    """The error message with per-message values masked (see the module docstring)."""
    shape = message
    for pattern, mask in _MASKS:
        shape = pattern.sub(mask, shape)
    return _SPACE.sub(" ", shape).strip()[:MAX_SHAPE_CHARS]


def group_id(*, queue: str, error_class: str, reason: str, message: str) -> str:
    """The stable id of the failure group a dead letter belongs to."""
    key = "\x00".join((queue, error_class, reason, message_shape(message)))
    return GROUP_ID_PREFIX + hashlib.blake2b(key.encode(), digest_size=6, person=b"sc-dlq-group").hexdigest()


class GroupBy(enum.StrEnum):
    """What ``dlq list --group-by`` groups on."""

    ERROR = "error"  # the failure group: queue + error class + reason + message shape
    REASON = "reason"
    CLASS = "class"
    QUEUE = "queue"
    FLOW = "flow"
    CATEGORY = "category"
    STATUS = "status"

    @property
    def column(self) -> str:
        """The store column holding the key (never user input: safe to put in SQL)."""
        return _COLUMNS[self]


_COLUMNS: Final[dict[GroupBy, str]] = {
    GroupBy.ERROR: "group_id",
    GroupBy.REASON: "reason",
    GroupBy.CLASS: "error_class",
    GroupBy.QUEUE: "original_queue",
    GroupBy.FLOW: "flow",
    GroupBy.CATEGORY: "category",
    GroupBy.STATUS: "status",
}
