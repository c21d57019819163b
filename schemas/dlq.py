"""Contracts of the dead-letter tools (``severa-connector dlq``): the export format and the audit record.

``dlq export`` writes one :class:`DeadLetterExport` per line (JSON lines); ``dlq import`` reads the
same. AMQP header and property values that JSON cannot hold are tagged single-key objects:
``{"$ts": "<ISO-8601>"}`` (AMQP timestamp), ``{"$bytes": "<base64>"}`` (byte array),
``{"$decimal": "<digits>"}``; a header table that itself has a key starting with ``$`` is wrapped
as ``{"$table": {...}}`` so it is never mistaken for a tag.

Every ``replay``, ``edit``, ``purge``, ``import`` and ``export`` writes a :class:`DlqAuditRecord`
twice -- ``phase: started`` before it changes anything and ``phase: finished`` with the outcome --
to the audit log file (JSON lines), to the ``<prefix>dlq.audit`` fanout exchange (queue
``<prefix>q.dlq.audit``) with publisher confirms, and to the store. A command whose "started"
record cannot be written does nothing: no audit, no action.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

EXPORT_FORMAT: Final = "severa-connector.dead-letter/1"
MAX_AUDIT_IDS: Final = 1000
"""Ids listed in one audit record; beyond that only the count and a digest of the whole list."""
MAX_AUDIT_BODY_CHARS: Final = 65536
"""An edit's before/after bodies in an audit record are cut here (the store keeps the original)."""

DeadLetterStatus = Literal["parked", "replaying", "replayed", "purged", "archived"]
AuditCommand = Literal["replay", "edit", "purge", "archive", "restore", "import", "export"]
AuditOutcome = Literal["started", "ok", "partial", "failed", "interrupted", "canary_failed", "dry_run"]


class DeadLetterExport(BaseModel):
    """One dead letter as ``dlq export`` writes it and ``dlq import`` reads it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: Literal["severa-connector.dead-letter/1"] = EXPORT_FORMAT
    id: str = Field(min_length=1, max_length=64, description="Dead-letter id (x-dl-id or content-derived).")
    status: DeadLetterStatus = Field(description="Status in the exporting store; import parks every row.")
    dead_letter_queue: str = Field(description="The DLQ it was ingested from.")
    original_queue: str = Field(description="Where a replay sends it.")
    original_exchange: str = ""
    original_routing_key: str = ""
    flow: str | None = None
    source: Literal["connector", "broker", "unknown"] = Field(
        default="unknown", description="Who dead-lettered it: the connector (x-dl-*), the broker (x-death)."
    )
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    content_type: str | None = None
    properties: dict[str, Any] = Field(
        default_factory=dict, description="Other AMQP properties (timestamp, app_id, ...), tagged JSON."
    )
    headers: dict[str, Any] = Field(default_factory=dict, description="Headers as received, tagged JSON.")
    body: str | None = Field(description="The body (null once purged).")
    body_encoding: Literal["utf-8", "base64"] = "utf-8"
    original_body: str | None = Field(default=None, description="The body before its first edit.")
    original_body_encoding: Literal["utf-8", "base64"] = "utf-8"
    category: str
    error_class: str
    reason: str
    error_message: str
    traceback: str = ""
    attempts: int
    first_failure_at: dt.datetime
    last_failure_at: dt.datetime
    connector_version: str | None = None
    pod: str | None = None
    trace_id: str | None = None
    group_id: str = Field(description="Failure group (same queue, error class, reason and message shape).")
    ingested_at: dt.datetime
    replayed_from: str | None = Field(default=None, description="The dead letter this one is a replay of.")
    prior_replay_id: str | None = None
    prior_replays: int = 0
    replay_count: int = 0
    replayed_at: dt.datetime | None = None
    replayed_to: str | None = None
    edit_count: int = 0


class AuditSelection(BaseModel):
    """What a command acted on."""

    model_config = ConfigDict(frozen=True)

    filter: dict[str, Any] = Field(default_factory=dict, description="The filter as given (ids excluded).")
    id_count: int = Field(ge=0)
    ids: list[str] = Field(default_factory=list, max_length=MAX_AUDIT_IDS)
    ids_truncated: bool = False
    ids_sha256: str | None = Field(default=None, description="Digest of the full, ordered id list.")


class DlqAuditRecord(BaseModel):
    """Who did what to which dead letters, when, and why."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal["1"] = "1"
    audit_id: str = Field(description="Shared by the 'started' and 'finished' records of one command.")
    phase: Literal["started", "finished"]
    at: dt.datetime
    operator: str = Field(description="--operator, else the login name.")
    host: str
    command: AuditCommand
    reason: str | None = Field(description="The operator's why (--reason; required for replay/edit/purge).")
    dry_run: bool = False
    selection: AuditSelection
    outcome: AuditOutcome
    counts: dict[str, int] = Field(default_factory=dict)
    failed_ids: list[str] = Field(default_factory=list, max_length=MAX_AUDIT_IDS)
    replay_id: str | None = None
    target_queue: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="Command specific (edit: before/after)."
    )
    connector_version: str
