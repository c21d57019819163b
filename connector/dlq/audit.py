"""The audit trail of the dead-letter tools: who did what to which dead letters, when, and why.

Each changing command is wrapped in :meth:`Auditor.action`: a ``started`` record is written
*before* anything changes and a ``finished`` record with the outcome after, each to three places:

1. a JSON-lines file (``SEVERA_CONNECTOR_DLQ__AUDIT_LOG``; by default next to a SQLite store,
   stderr with a PostgreSQL one), appended and fsynced -- what a host's log shipper picks up;
2. the ``<prefix>dlq.audit`` fanout exchange, with publisher confirms (queue ``<prefix>q.dlq.audit``)
   -- for a SIEM or a chat bot, and shared by every operator host;
3. the store's ``dlq_audit`` table -- what ``dlq show`` and ``dlq audit`` read.

**No audit, no action**: if the ``started`` record cannot be written to all three, the command
stops before changing anything. A ``finished`` record that cannot be written does not undo what was
done; it is reported (the command exits 1) and the ``started`` record still tells what was begun.
The record's schema is :class:`schemas.dlq.DlqAuditRecord`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import hashlib
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from connector import __version__
from connector.bus import OutgoingMessage
from connector.dlq.selection import Filter
from connector.dlq.store import DeadLetterStore
from connector.errors import ConnectorError, TransientError
from connector.logging import get_logger
from schemas.dlq import MAX_AUDIT_IDS, AuditCommand, AuditOutcome, AuditSelection, DlqAuditRecord

log = get_logger(__name__)

Publish = Callable[[str, OutgoingMessage], Awaitable[None]]


class AuditUnavailable(TransientError):
    """An audit record could not be written everywhere it must go."""

    reason = "dlq_audit_unavailable"


def default_operator() -> str:
    """The login name, for audit records when ``--operator`` is not given."""
    for variable in ("USER", "LOGNAME", "USERNAME"):
        value = os.environ.get(variable)
        if value:
            return value
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def audit_selection(selection: Filter | None, ids: Sequence[str]) -> AuditSelection:
    """The selection as recorded: the filter, the ids (the first 1,000) and a digest of all of them."""
    return AuditSelection(
        filter=selection.describe() if selection is not None else {},
        id_count=len(ids),
        ids=list(ids[:MAX_AUDIT_IDS]),
        ids_truncated=len(ids) > MAX_AUDIT_IDS,
        ids_sha256=hashlib.sha256("\n".join(ids).encode()).hexdigest() if ids else None,
    )


@dataclass(slots=True)
class AuditAction:
    """What a command reports about itself between its ``started`` and ``finished`` records."""

    audit_id: str
    outcome: AuditOutcome = "ok"
    counts: dict[str, int] = field(default_factory=dict)
    failed_ids: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    selection: AuditSelection | None = None
    finish_error: str | None = None


class Auditor:
    """Writes audit records to the log file, the audit exchange and the store."""

    def __init__(
        self,
        *,
        publish: Publish,
        exchange: str,
        log_path: Path | None,
        store: DeadLetterStore,
        operator: str,
        host: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._publish = publish
        self._exchange = exchange
        self._log_path = log_path
        self._store = store
        self.operator = operator
        self.host = host or socket.gethostname()
        self._clock = clock

    @contextlib.asynccontextmanager
    async def action(
        self,
        command: AuditCommand,
        *,
        reason: str | None,
        selection: AuditSelection,
        dry_run: bool = False,
        replay_id: str | None = None,
        target_queue: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AsyncIterator[AuditAction]:
        """``started`` now (or raise :class:`AuditUnavailable`: do nothing), ``finished`` at the end."""
        action = AuditAction(audit_id=uuid.uuid4().hex, details=dict(details or {}))

        def record(phase: Literal["started", "finished"], outcome: AuditOutcome) -> DlqAuditRecord:
            return DlqAuditRecord(
                audit_id=action.audit_id,
                phase=phase,
                at=self._clock(),
                operator=self.operator,
                host=self.host,
                command=command,
                reason=reason,
                dry_run=dry_run,
                selection=action.selection or selection,
                outcome=outcome,
                counts=dict(action.counts),
                failed_ids=action.failed_ids[:MAX_AUDIT_IDS],
                replay_id=replay_id,
                target_queue=target_queue,
                details=action.details,
                connector_version=__version__,
            )

        try:
            await self.write(record("started", "started"))
        except AuditUnavailable as exc:
            # Close what did get written, so no sink shows an action that seems to be running.
            action.outcome = "failed"
            action.details["error"] = exc.message
            with contextlib.suppress(AuditUnavailable):
                await self.write(record("finished", "failed"))
            raise
        try:
            yield action
        except BaseException as exc:
            interrupted = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
            action.outcome = "interrupted" if interrupted else "failed"
            action.details.setdefault(
                "error", exc.message if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"
            )
            with contextlib.suppress(AuditUnavailable):  # the original error matters more
                await self.write(record("finished", action.outcome))
            raise
        try:
            await self.write(record("finished", action.outcome))
        except AuditUnavailable as exc:
            action.finish_error = exc.message

    async def write(self, record: DlqAuditRecord) -> None:
        """To all three sinks; :class:`AuditUnavailable` names those that failed."""
        line = record.model_dump_json()
        failures: list[str] = []
        try:
            if self._log_path is None:
                await asyncio.to_thread(_to_stderr, line)
            else:
                await asyncio.to_thread(_append_line, self._log_path, line)
        except OSError as exc:
            failures.append(f"audit log {self._log_path or 'stderr'}: {exc.strerror or exc}")
        try:
            await self._publish(
                self._exchange,
                OutgoingMessage(
                    body=line.encode(),
                    routing_key=record.command,
                    message_id=f"{record.audit_id}:{record.phase}",
                    type="dlq.audit",
                    headers={"schema_version": record.schema_version},
                ),
            )
        except ConnectorError as exc:
            failures.append(f"audit exchange {self._exchange}: {exc.message}")
        try:
            await self._store.record_audit(record)
        except ConnectorError as exc:
            failures.append(f"store: {exc.message}")
        if failures:
            log.error(
                "dlq.audit_not_written", audit_id=record.audit_id, phase=record.phase, failures=failures
            )
            raise AuditUnavailable("audit record not written to " + "; ".join(failures))
        log.info(
            "dlq.audit",
            audit_id=record.audit_id,
            phase=record.phase,
            command=record.command,
            operator=record.operator,
            outcome=record.outcome,
            ids=record.selection.id_count,
        )


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _append_line(path: Path, line: str) -> None:
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    # O_APPEND: concurrent operators on one host append whole lines, never interleaved offsets.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
