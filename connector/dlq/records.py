"""What the dead-letter store holds: one :class:`DeadLetterRecord` per dead-lettering, plus history.

A record's lifecycle (``status``)::

    parked ──replay: claim──► replaying ──broker confirmed──► replayed ──replay --again──► replaying …
      ▲                          │ publish refused / not confirmed
      └──────────────────────────┘
    parked / replayed ──purge──► purged (body dropped, the row stays for the audit)
    parked / replayed ──archive──► archived ──restore──► parked (replayed if it ever was)

A row stuck in ``replaying`` belongs to a replay run that died (SIGKILL, lost pod): the next replay
finds the run dead (its lock is free) and sends the row again. That may deliver the message twice;
the flows' idempotency (the work-hours ledger) makes the second delivery an "unchanged" no-op.

``archived`` sets a dead letter aside without losing anything: it leaves the open views and
every replay, keeps its body, and ``restore`` puts it back as it was (the console never deletes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Status = Literal["parked", "replaying", "replayed", "purged", "archived"]
STATUSES: Final[tuple[Status, ...]] = ("parked", "replaying", "replayed", "purged", "archived")
Source = Literal["connector", "broker", "unknown"]
EventKind = Literal[
    "ingested", "imported", "edited", "replayed", "replay_failed", "purged", "archived", "restored"
]


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter: the message as it sat in the DLQ, what went wrong, and what ops did since.

    ``headers`` are exactly as received from the DLQ (``x-dl-*`` included); ``properties`` are the
    other AMQP properties (timestamp, app_id, reply_to, priority, content_encoding, ...).
    """

    id: str
    dead_letter_queue: str
    original_queue: str
    original_exchange: str
    original_routing_key: str
    flow: str | None
    source: Source
    category: str
    error_class: str
    reason: str
    error_message: str
    traceback: str
    attempts: int
    first_failure_at: dt.datetime
    last_failure_at: dt.datetime
    group_id: str
    connector_version: str | None
    pod: str | None
    trace_id: str | None
    message_id: str | None
    correlation_id: str | None
    message_type: str | None
    content_type: str | None
    properties: dict[str, Any]
    headers: dict[str, Any]
    body: bytes | None
    ingested_at: dt.datetime
    replayed_from: str | None = None
    prior_replay_id: str | None = None
    prior_replays: int = 0
    # What ops did since (set by the store, never by the envelope parser).
    status: Status = "parked"
    seq: int = 0
    original_body: bytes | None = None
    edit_count: int = 0
    replay_id: str | None = None
    replay_count: int = 0
    replayed_at: dt.datetime | None = None
    replayed_to: str | None = None
    last_error: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def body_size(self) -> int:
        return len(self.body) if self.body is not None else 0


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One thing that happened to a dead letter (the per-row history ``dlq show`` prints)."""

    dead_letter_id: str
    at: dt.datetime
    kind: EventKind
    operator: str | None = None
    audit_id: str | None = None
    replay_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Group:
    """A row of ``dlq list --group-by``: dead letters sharing a key, with an example."""

    key: str | None
    count: int
    first_failure_at: dt.datetime
    last_failure_at: dt.datetime
    example_id: str
    queue: str
    error_class: str
    reason: str
    example_message: str


RunStatus = Literal["running", "completed", "partial", "canary_failed", "interrupted", "failed"]


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """One ``dlq replay`` invocation as the store remembers it."""

    replay_id: str
    operator: str
    host: str
    pid: int
    started_at: dt.datetime
    status: RunStatus
    selected: int
    target: str | None
    audit_id: str | None
    finished_at: dt.datetime | None = None
    replayed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class PodHeartbeat:
    """What a connector pod last said about itself (``<prefix>pod_heartbeats``, one row per pod).

    ``circuits`` maps each circuit the pod runs to its state (``closed``, ``open``, ``half_open``);
    ``interval_seconds`` is how often the pod beats, so a reader can tell a stale row by itself.
    """

    pod: str
    role: str
    flows: tuple[str, ...]
    circuits: dict[str, str]
    ready: bool
    reasons: tuple[str, ...]
    version: str | None
    interval_seconds: float
    started_at: dt.datetime
    beat_at: dt.datetime

    def alive(self, now: dt.datetime, *, missed: int = 3) -> bool:
        """Whether the pod beat within ``missed`` of its intervals (else it is shown as down)."""
        return now - self.beat_at <= dt.timedelta(seconds=self.interval_seconds * missed)
