"""The ``dlq`` commands as service functions: what the CLI calls, one ``asyncio.run`` each.

Every command opens a :class:`DlqSession` on the dead-letter store the connector pods fill and
works on that store. No command but ``dlq ingest`` takes a message off the broker: looking at the
dead letters from a laptop must not move them into that laptop's file. So a command *opens* the
store and never creates it -- a missing one is a configuration error naming the setting -- and
only :func:`ingest_now` and :func:`ingest_until_stopped` (``dlq ingest [--follow]``) create and
fill it. Commands that change something (replay, edit, purge, import, export) need the broker for
the audit exchange: no audit, no action. ``list`` asks the broker, without consuming, how many
dead letters still wait in the DLQs (:func:`waiting_in_dlqs`).

Errors: a missing store is a :class:`StoreNotFound` (exit code 2); a broker or store that does not
answer is a :class:`PeerUnreachable` (exit code 3) -- never an empty answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, TextIO

from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from connector.bus import Bus, ready_count
from connector.config import DlqSettings, env_name
from connector.dlq.audit import Auditor, audit_selection
from connector.dlq.canary import CanaryWatcher
from connector.dlq.contracts import contract_for, flows_by_queue
from connector.dlq.editing import apply_assignments, for_editing, normalised, validation_errors
from connector.dlq.grouping import GroupBy
from connector.dlq.ingest import DeadLetterIngester, IngesterCounts, Ingestor, IngestReport
from connector.dlq.records import DeadLetterRecord, Group, ReplayRun, RunStatus, StoreEvent
from connector.dlq.replay import Progress, Replayer, ReplayReport, ReplayRequest
from connector.dlq.selection import BodyMatch, Filter, ReplayPlan, check_id_prefix, plan_replay
from connector.dlq.store import DeadLetterStore, StoreMissing, StoreUnavailable, open_store
from connector.dlq.transfer import export_lines, read_lines
from connector.errors import SystemicError, UsageError
from connector.logging import get_logger
from connector.topology import Names, dlq_audit_topology
from schemas.dlq import MAX_AUDIT_BODY_CHARS, AuditCommand, AuditOutcome

log = get_logger(__name__)

CONNECT_TIMEOUT = 15.0
STORE_URL_SETTING = env_name(("dlq", "store_url"))


class PeerUnreachable(SystemicError):
    """The broker or the dead-letter store did not answer: nothing was done (exit code 3)."""

    reason = "peer_unreachable"


class BrokerUnreachable(PeerUnreachable):
    """RabbitMQ did not answer (or refused us)."""

    reason = "broker_unreachable"


class StoreUnreachable(PeerUnreachable):
    """The dead-letter store exists (or may) but cannot be used: down, locked, unreadable."""

    reason = "dlq_store_unreachable"


class StoreNotFound(StoreMissing):
    """No store where the settings point: the one-line message names the path and the setting."""


class InvalidEdit(UsageError):
    """The edited body fails the flow's schema; ``errors`` say where, ``text`` is what was proposed."""

    reason = "invalid_edit"

    def __init__(self, errors: list[str], text: str) -> None:
        super().__init__("the edited body fails validation:\n  " + "\n  ".join(errors))
        self.errors = errors
        self.text = text


@dataclass(slots=True)
class DlqSession:
    """What one ``dlq`` command works with."""

    settings: DlqSettings
    names: Names
    store: DeadLetterStore
    operator: str
    bus: Bus | None = None
    auditor: Auditor | None = None

    def require_broker(self) -> tuple[Bus, Auditor]:
        if self.bus is None or self.auditor is None:
            raise BrokerUnreachable("this command needs RabbitMQ: open the session with need_broker=True")
        return self.bus, self.auditor


@asynccontextmanager
async def open_session(
    settings: DlqSettings, *, operator: str, need_broker: bool = False, create_store: bool = False
) -> AsyncIterator[DlqSession]:
    """The store (opened, created only if ``create_store``) and, if ``need_broker``, the broker.

    Raises :class:`StoreNotFound`, :class:`StoreUnreachable` or :class:`BrokerUnreachable` before
    anything is done.
    """
    names = Names(prefix=settings.rabbitmq.prefix)
    store = await _open_store(settings, create=create_store)
    session = DlqSession(settings=settings, names=names, store=store, operator=operator)
    try:
        if need_broker:
            await _connect(session)
        yield session
    finally:
        if session.bus is not None:
            await session.bus.close()
        await store.aclose()


async def _open_store(settings: DlqSettings, *, create: bool) -> DeadLetterStore:
    store = open_store(settings.dlq_store_url(), table_prefix=settings.dlq.store_table_prefix, create=create)
    try:
        await store.setup()
    except StoreMissing as exc:
        raise StoreNotFound(
            f"{exc.message}: the connector pods create it when they ingest; point {STORE_URL_SETTING} "
            "at the store they use"
        ) from None
    except StoreUnavailable as exc:
        raise StoreUnreachable(f"cannot open the dead-letter store: {exc.message}") from exc
    return store


async def _connected_bus(settings: DlqSettings, operator: str) -> Bus:
    bus = Bus(
        settings.rabbitmq.url.get_secret_value(),
        name=f"severa-connector-dlq:{operator}@{socket.gethostname()}",
        publish_timeout=settings.rabbitmq.publish_timeout_seconds,
    )
    try:
        await asyncio.wait_for(bus.connect(), CONNECT_TIMEOUT)
    except (OSError, TimeoutError, AMQPError) as exc:
        await bus.close()
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {settings.rabbitmq.safe_url()}: {type(exc).__name__}"
        ) from None
    return bus


async def _connect(session: DlqSession) -> None:
    settings = session.settings
    bus = await _connected_bus(settings, session.operator)
    try:
        await bus.declare(dlq_audit_topology(session.names))
    except (OSError, TimeoutError, AMQPError) as exc:
        await bus.close()
        raise BrokerUnreachable(
            f"RabbitMQ at {settings.rabbitmq.safe_url()} refused the audit exchange: {type(exc).__name__}"
        ) from None
    session.bus = bus
    session.auditor = Auditor(
        publish=bus.publish,
        exchange=session.names.dlq_audit_exchange,
        log_path=settings.dlq_audit_log(),
        store=session.store,
        operator=session.operator,
    )


async def waiting_in_dlqs(settings: DlqSettings, *, operator: str) -> dict[str, int]:
    """Messages still in each DLQ, not yet ingested -- a passive declare, which consumes nothing.

    A missing DLQ is left out (nothing was ever dead-lettered under this prefix).
    """
    names = Names(prefix=settings.rabbitmq.prefix)
    bus = await _connected_bus(settings, operator)
    try:
        waiting = await _ready_counts(bus, names.dead_letter_queues)
    except (OSError, TimeoutError, AMQPError) as exc:
        raise BrokerUnreachable(
            f"RabbitMQ at {settings.rabbitmq.safe_url()} stopped answering: {type(exc).__name__}"
        ) from None
    finally:
        await bus.close()
    return waiting


# --------------------------------------------------------------------------------------------------
# Ingest: the only way dead letters leave the broker


async def ingest_now(settings: DlqSettings, *, operator: str) -> IngestReport:
    """``dlq ingest``: drain what the DLQs hold now into the store (created if need be), bounded by
    ``ingest_max_seconds``. The broker is reached first: an unreachable one creates no store."""
    names = Names(prefix=settings.rabbitmq.prefix)
    async with _ingesting(settings, operator) as (bus, store):
        ingestor = Ingestor(
            bus, store, flows_by_queue=flows_by_queue(names), max_seconds=settings.dlq.ingest_max_seconds
        )
        try:
            return await ingestor.ingest(names.dead_letter_queues)
        except (OSError, AMQPError) as exc:
            raise BrokerUnreachable(
                f"RabbitMQ at {settings.rabbitmq.safe_url()} failed during the ingest: {type(exc).__name__}"
            ) from None


async def _ready_counts(bus: Bus, queues: Sequence[str]) -> dict[str, int]:
    """Messages ready in each of ``queues`` the broker has; a missing one is left out. A passive
    declare each, which consumes nothing, on a channel of its own (a missing queue closes it)."""
    counts: dict[str, int] = {}
    for queue in queues:
        channel = await bus.connection.channel()
        try:
            counts[queue] = await ready_count(channel, queue)
        except ChannelNotFoundEntity:
            continue
        finally:
            if not channel.is_closed:
                await channel.close()
    return counts


async def ingest_until_stopped(
    settings: DlqSettings,
    *,
    operator: str,
    stop: asyncio.Event,
    on_started: Callable[[Sequence[str]], None] | None = None,
) -> IngesterCounts:
    """``dlq ingest --follow``: ingest continuously (:class:`DeadLetterIngester`) until ``stop``,
    then stop consuming and let what is in flight be committed and acked."""
    names = Names(prefix=settings.rabbitmq.prefix)
    async with _ingesting(settings, operator) as (bus, store):
        # The DLQs this deployment has (the accounting flows' exist only where accounting is on).
        present = tuple(await _ready_counts(bus, names.dead_letter_queues))
        if not present:
            raise UsageError(
                f"no DLQ {', '.join(names.dead_letter_queues)} on the broker: is "
                f"{env_name(('rabbitmq', 'prefix'))} right, and has the connector declared its topology?"
            )
        ingester = DeadLetterIngester(
            bus,
            store,
            present,
            prefetch=settings.dlq.ingest_prefetch,
            flows_by_queue=flows_by_queue(names),
        )
        try:
            await ingester.start()
        except ChannelNotFoundEntity:
            raise UsageError(
                f"no DLQ {', '.join(names.dead_letter_queues)} on the broker: is "
                f"{env_name(('rabbitmq', 'prefix'))} right, and has the connector declared its topology?"
            ) from None
        try:
            if on_started is not None:
                on_started(ingester.queues)
            await stop.wait()
        finally:
            await ingester.stop()
        return ingester.counts


@asynccontextmanager
async def _ingesting(settings: DlqSettings, operator: str) -> AsyncIterator[tuple[Bus, DeadLetterStore]]:
    bus = await _connected_bus(settings, operator)
    try:
        store = await _open_store(settings, create=True)
        try:
            yield bus, store
        finally:
            # The channels first: what is unacked goes back to the DLQ before the store goes away.
            await bus.close()
            await store.aclose()
    finally:
        await bus.close()


# --------------------------------------------------------------------------------------------------
# Queries


async def resolve_ids(store: DeadLetterStore, texts: Iterable[str]) -> list[str]:
    """Full ids for what the operator typed (ids or unique prefixes), in the order given."""
    resolved: list[str] = []
    for text in texts:
        prefix = check_id_prefix(text)
        matches = await store.resolve(prefix, limit=3)
        if prefix in matches:
            resolved.append(prefix)
        elif len(matches) == 1:
            resolved.append(matches[0])
        elif not matches:
            raise UsageError(f"no dead letter {text!r} in the store")
        else:
            raise UsageError(f"{text!r} is ambiguous ({', '.join(matches)}, …): give more characters")
    return list(dict.fromkeys(resolved))


@dataclass(frozen=True, slots=True)
class Page:
    records: list[DeadLetterRecord]
    total: int


async def list_page(session: DlqSession, selection: Filter, *, limit: int | None) -> Page:
    return Page(await session.store.find(selection, limit=limit), await session.store.count(selection))


async def list_groups(session: DlqSession, selection: Filter, by: GroupBy) -> list[Group]:
    return await session.store.groups(selection, by)


MAX_BODY_SCAN: Final = 20_000
"""Dead letters a body-field search reads at most (it reads every body the other filters leave)."""
BODY_SCAN_PAGE: Final = 500


async def narrow_by_body(
    session: DlqSession, selection: Filter, matches: Sequence[BodyMatch]
) -> Filter | None:
    """``selection`` limited to the dead letters whose JSON body matches every one of ``matches``,
    as explicit ids; None when none does. Bodies are read and compared here, not in SQL: a body
    need not be JSON (nor UTF-8), and neither backend can skip a bad one inside a query.

    Refused (one line, naming the count) when the other filters leave more than
    :data:`MAX_BODY_SCAN` dead letters to read.
    """
    if not matches:
        return selection
    total = await session.store.count(selection)
    if total > MAX_BODY_SCAN:
        raise UsageError(
            f"a body-field search reads every dead letter the other filters leave: {total} do, at most "
            f"{MAX_BODY_SCAN}; narrow by flow, group, reason or time first"
        )
    # The ids first, then their bodies page by page: paging the filter itself by offset would skip
    # rows whenever a replay or an archive moved earlier ones out of it during the scan.
    scanned = [c.id for c in await session.store.candidates(selection)][:MAX_BODY_SCAN]
    ids: list[str] = []
    for start in range(0, len(scanned), BODY_SCAN_PAGE):
        for row in await session.store.load(scanned[start : start + BODY_SCAN_PAGE]):
            if all(match.matches(row.body) for match in matches):
                ids.append(row.id)
    if not ids:
        return None
    return Filter(ids=tuple(ids), statuses=selection.statuses)


@dataclass(frozen=True, slots=True)
class Shown:
    record: DeadLetterRecord
    related: list[DeadLetterRecord]
    events: list[StoreEvent]


async def show(session: DlqSession, text: str) -> Shown:
    (dead_letter_id,) = await resolve_ids(session.store, [text])
    record = await session.store.get(dead_letter_id)
    if record is None:  # resolved a moment ago: only a concurrent import race could do this
        raise UsageError(f"no dead letter {dead_letter_id}")
    return Shown(record, await session.store.related(record), await session.store.events(dead_letter_id))


# --------------------------------------------------------------------------------------------------
# Replay


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    reason: str
    target: str | None = None
    again: bool = False
    canary: int = 0
    canary_only: bool = False
    rate: float | None = None
    dry_run: bool = False


@dataclass(slots=True)
class ReplayOutcome:
    plan: ReplayPlan
    groups: list[Group]
    target: str | None
    dry_run: bool
    report: ReplayReport | None = None
    audit_id: str | None = None
    audit_error: str | None = None

    @property
    def ok(self) -> bool:
        if self.report is None:
            return self.audit_error is None
        return self.report.status == "completed" and self.audit_error is None


def replay_selection(ids: Sequence[str], selection: Filter, *, everything: bool) -> Filter:
    """What a replay looks at: explicit ids whatever their status (to say why one is skipped), or
    the filter -- which must narrow something unless ``--all`` says "every dead letter" on purpose."""
    if ids:
        return Filter(ids=tuple(ids), statuses=frozenset())
    if not selection.narrows and not everything:
        raise UsageError("replay needs ids, --group or a filter (or --all for every dead letter)")
    return selection


async def replay(
    session: DlqSession,
    selection: Filter,
    options: ReplayOptions,
    *,
    stop: asyncio.Event | None = None,
    progress: Callable[[int], Progress] | None = None,
    replay_id: str | None = None,
) -> ReplayOutcome:
    """Plan (frozen selection), then dry-run or replay it; see :mod:`connector.dlq.replay`.

    ``replay_id`` names the run in advance (the console shows its live progress under that id);
    by default a fresh one.
    """
    bus, auditor = session.require_broker()
    store = session.store
    live = await store.live_runs()  # also marks runs that died as interrupted
    plan = plan_replay(await store.candidates(selection), again=options.again, live_runs=live)
    groups = (
        await store.groups(Filter(ids=plan.eligible, statuses=frozenset()), GroupBy.ERROR)
        if plan.eligible
        else []
    )
    if options.target:
        await _require_queue(bus, options.target)
    outcome = ReplayOutcome(plan=plan, groups=groups, target=options.target, dry_run=options.dry_run)
    if options.dry_run:
        async with auditor.action(
            "replay",
            reason=options.reason,
            selection=audit_selection(selection, plan.eligible),
            dry_run=True,
            target_queue=options.target,
            details={"canary": options.canary, "rate": options.rate, "again": options.again},
        ) as action:
            action.outcome = "dry_run"
            action.counts = {"selected": len(plan.eligible), "skipped": len(plan.skipped)}
        outcome.audit_id, outcome.audit_error = action.audit_id, action.finish_error
        return outcome
    if not plan.eligible:
        return outcome
    replay_id = replay_id or uuid.uuid4().hex
    settings = session.settings.dlq
    async with auditor.action(
        "replay",
        reason=options.reason,
        selection=audit_selection(selection, plan.eligible),
        replay_id=replay_id,
        target_queue=options.target,
        details={
            "canary": options.canary,
            "canary_only": options.canary_only,
            "rate": options.rate,
            "again": options.again,
            "resumed": len(plan.resumed),
        },
    ) as action:
        async with store.run_lock(replay_id):
            now = dt.datetime.now(dt.UTC)
            await store.start_run(
                ReplayRun(
                    replay_id=replay_id,
                    operator=session.operator,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now,
                    status="running",
                    selected=len(plan.eligible),
                    target=options.target,
                    audit_id=action.audit_id,
                )
            )
            replayer = Replayer(
                store,
                bus.publish,
                operator=session.operator,
                audit_id=action.audit_id,
                canaries=CanaryWatcher(bus, store, session.names),
                on_progress=progress(len(plan.eligible)) if progress is not None else None,
            )
            request = ReplayRequest(
                replay_id=replay_id,
                ids=plan.eligible,
                target=options.target,
                again=options.again,
                canary=options.canary,
                canary_only=options.canary_only,
                canary_timeout=settings.canary_timeout_seconds,
                rate=options.rate,
                batch=settings.replay_batch,
            )
            try:
                report = await replayer.run(request, stop)
            except BaseException:
                # Keep the original error; the run's lock goes with us either way, which is what
                # tells the next replay to resume its rows.
                with contextlib.suppress(Exception):
                    await store.finish_run(
                        replay_id, status="failed", replayed=0, failed=0, now=dt.datetime.now(dt.UTC)
                    )
                raise
            await store.finish_run(
                replay_id,
                status=report.status,
                replayed=len(report.replayed),
                failed=len(report.failed),
                now=dt.datetime.now(dt.UTC),
            )
        action.outcome = _AUDIT_OUTCOME.get(report.status, "failed")
        action.counts = {
            "selected": report.selected,
            "replayed": len(report.replayed),
            "failed": len(report.failed),
            "taken_by_others": len(report.taken_by_others),
            "not_sent": report.not_sent,
            "resumed": len(plan.resumed),
        }
        action.failed_ids = list(report.failed)
        if report.canary is not None:
            action.details["canary_verdict"] = {
                "passed": len(report.canary.passed),
                "failed": report.canary.failed,
                "unresolved": report.canary.unresolved,
            }
    outcome.report = report
    outcome.audit_id, outcome.audit_error = action.audit_id, action.finish_error
    return outcome


_AUDIT_OUTCOME: dict[RunStatus, AuditOutcome] = {
    "completed": "ok",
    "partial": "partial",
    "canary_failed": "canary_failed",
    "interrupted": "interrupted",
}


async def _require_queue(bus: Bus, queue: str) -> None:
    channel = await bus.connection.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except ChannelNotFoundEntity:
        raise UsageError(f"--to {queue}: no such queue") from None
    finally:
        if not channel.is_closed:
            await channel.close()


# --------------------------------------------------------------------------------------------------
# Edit


@dataclass(frozen=True, slots=True)
class Edited:
    record: DeadLetterRecord
    changes: dict[str, object]
    audit_id: str
    audit_error: str | None


Propose = Callable[[str, list[str]], str | None]
"""Editor callback: (text to edit, errors of the last attempt) → edited text, or None to give up."""


async def edit(
    session: DlqSession,
    text: str,
    *,
    reason: str,
    assignments: Sequence[str] = (),
    propose: Propose | None = None,
) -> Edited:
    _, auditor = session.require_broker()
    (dead_letter_id,) = await resolve_ids(session.store, [text])
    record = await session.store.get(dead_letter_id)
    if record is None or record.body is None:
        raise UsageError(f"dead letter {dead_letter_id} has no body (purged): nothing to edit")
    if record.status not in ("parked", "replayed"):
        raise UsageError(
            f"dead letter {dead_letter_id} is {record.status}: only parked or replayed ones can be edited"
        )
    contract = contract_for(record, session.names)
    changes: dict[str, object] = {}
    if assignments:
        body, changes = apply_assignments(record.body, assignments)
        errors = validation_errors(body, contract)
        if errors:
            raise InvalidEdit(errors, body.decode("utf-8", "replace"))
    elif propose is not None:
        proposal = for_editing(record.body)
        errors = []
        while True:
            # The editor blocks; in a thread, so the broker connection's heartbeats keep going.
            edited = await asyncio.to_thread(propose, proposal, errors)
            if edited is None:
                raise UsageError("edit abandoned: nothing changed")
            body = normalised(edited)
            errors = validation_errors(body, contract)
            if not errors:
                break
            proposal = edited
    else:
        raise UsageError("say what to change: --set field=value, or run it with $EDITOR set")
    if body == record.body:
        raise UsageError("the body is unchanged: nothing to do")
    details = {
        "changes": changes,
        "before": _clip(record.body),
        "after": _clip(body),
        "before_sha256": hashlib.sha256(record.body).hexdigest(),
        "after_sha256": hashlib.sha256(body).hexdigest(),
        "schema": contract.schema.__name__ if contract and contract.schema else None,
    }
    async with auditor.action(
        "edit", reason=reason, selection=audit_selection(None, [dead_letter_id]), details=details
    ) as action:
        updated = await session.store.edit(
            dead_letter_id,
            body,
            operator=session.operator,
            audit_id=action.audit_id,
            detail={"changes": changes, "before_sha256": details["before_sha256"]},
            now=dt.datetime.now(dt.UTC),
        )
        action.counts = {"edited": 1}
    return Edited(updated, changes, action.audit_id, action.finish_error)


def _clip(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= MAX_AUDIT_BODY_CHARS else text[:MAX_AUDIT_BODY_CHARS] + " …[truncated]"


# --------------------------------------------------------------------------------------------------
# Purge, export, import


@dataclass(frozen=True, slots=True)
class Purged:
    selected: int
    purged: list[str]
    confirmed: bool
    audit_error: str | None = None


Confirm = Callable[[int, list[Group]], bool]


async def purge(
    session: DlqSession, selection: Filter, *, reason: str, everything: bool, confirm: Confirm
) -> Purged:
    _, auditor = session.require_broker()
    if not selection.narrows and not everything:
        raise UsageError("purge needs ids or a filter (or --all to purge every matching dead letter)")
    store = session.store
    ids = [
        c.id for c in await store.candidates(selection) if c.status in ("parked", "replayed") and c.has_body
    ]
    if not ids:
        return Purged(0, [], confirmed=True)
    groups = await store.groups(Filter(ids=tuple(ids), statuses=frozenset()), GroupBy.ERROR)
    if not await asyncio.to_thread(confirm, len(ids), groups):
        return Purged(len(ids), [], confirmed=False)
    async with auditor.action("purge", reason=reason, selection=audit_selection(selection, ids)) as action:
        purged = await store.purge(
            ids, operator=session.operator, audit_id=action.audit_id, now=dt.datetime.now(dt.UTC)
        )
        action.counts = {"selected": len(ids), "purged": len(purged)}
        action.failed_ids = [i for i in ids if i not in set(purged)]
        if action.failed_ids:
            action.outcome = "partial"
    return Purged(len(ids), purged, confirmed=True, audit_error=action.finish_error)


# --------------------------------------------------------------------------------------------------
# Archive and restore: set dead letters aside without deleting anything


@dataclass(frozen=True, slots=True)
class Moved:
    """What an archive or restore did: the rows it moved, and why the others were left."""

    selected: int
    moved: list[str]
    skipped: dict[str, str]
    audit_id: str | None = None
    audit_error: str | None = None


_ARCHIVABLE: Final = frozenset({"parked", "replayed"})


def _why_not(status: str, *, archiving: bool) -> str | None:
    if archiving:
        if status in _ARCHIVABLE:
            return None
        return {
            "archived": "already archived",
            "replaying": "being replayed",
            "purged": "purged",
        }.get(status, status)
    return None if status == "archived" else f"not archived ({status})"


async def archive(session: DlqSession, selection: Filter, *, reason: str, everything: bool = False) -> Moved:
    """Set parked or replayed dead letters aside (status ``archived``; body and history kept).

    Archived rows leave the open views and every replay until :func:`restore` puts them back; the
    console offers this instead of deleting anything. Audited as ``archive``.
    """
    return await _move(session, selection, reason=reason, everything=everything, archiving=True)


async def restore(session: DlqSession, selection: Filter, *, reason: str, everything: bool = False) -> Moved:
    """Put archived dead letters back as they were (``replayed`` if they ever were, else ``parked``)."""
    return await _move(session, selection, reason=reason, everything=everything, archiving=False)


async def _move(
    session: DlqSession, selection: Filter, *, reason: str, everything: bool, archiving: bool
) -> Moved:
    _, auditor = session.require_broker()
    command: AuditCommand = "archive" if archiving else "restore"
    if not reason.strip():
        raise UsageError(f"say why you {command}: the reason goes into the audit log")
    if not selection.narrows and not everything:
        raise UsageError(f"{command} needs ids, a group or a filter (or --all for every match)")
    store = session.store
    candidates = await store.candidates(selection)
    skipped = {c.id: why for c in candidates if (why := _why_not(c.status, archiving=archiving)) is not None}
    ids = [c.id for c in candidates if c.id not in skipped]
    if not ids:
        return Moved(len(candidates), [], skipped)
    move = store.archive if archiving else store.restore
    async with auditor.action(command, reason=reason, selection=audit_selection(selection, ids)) as action:
        moved = await move(
            ids, operator=session.operator, audit_id=action.audit_id, now=dt.datetime.now(dt.UTC)
        )
        done = set(moved)
        # A replay may have claimed a row between the look and the move: it is left to the replay.
        for i in ids:
            if i not in done:
                skipped[i] = "changed meanwhile (being replayed?)"
        action.counts = {"selected": len(candidates), "moved": len(moved), "skipped": len(skipped)}
        action.failed_ids = [i for i in ids if i not in done]
        if action.failed_ids:
            action.outcome = "partial"
    return Moved(len(candidates), moved, skipped, action.audit_id, action.finish_error)


EXPORT_PAGE = 1000


async def export(
    session: DlqSession, selection: Filter, out: TextIO, *, reason: str | None
) -> tuple[int, str | None]:
    _, auditor = session.require_broker()
    ids = [c.id for c in await session.store.candidates(selection)]
    async with auditor.action("export", reason=reason, selection=audit_selection(selection, ids)) as action:
        written = 0
        for start in range(0, len(ids), EXPORT_PAGE):
            for line in export_lines(await session.store.load(ids[start : start + EXPORT_PAGE])):
                out.write(line + "\n")
                written += 1
        out.flush()
        action.counts = {"exported": written}
    return written, action.finish_error


@dataclass(frozen=True, slots=True)
class Imported:
    read: int
    imported: list[str]
    audit_error: str | None


async def import_lines(session: DlqSession, lines: Iterable[str], *, reason: str | None) -> Imported:
    _, auditor = session.require_broker()
    records = read_lines(lines, now=dt.datetime.now(dt.UTC))
    ids = [r.id for r in records]
    async with auditor.action("import", reason=reason, selection=audit_selection(None, ids)) as action:
        added = await session.store.add(
            records, kind="imported", operator=session.operator, audit_id=action.audit_id
        )
        action.counts = {
            "read": len(records),
            "imported": len(added),
            "already_stored": len(records) - len(added),
        }
    return Imported(len(records), added, action.finish_error)
