"""The work-hours flow: make Severa hold exactly what the external systems published.

Per event, for the entry ``X = entry_key(source, source_entry_id)`` at version ``V``::

    parse + validate            bad JSON / schema violation          → InvalidMessage (dead-letter)
    lock X (ledger)             two pods or tasks never race on X; other entries run in parallel
    ledger says V already done  duplicate (redelivery, replay)       → "unchanged", no Severa call
        ... with other content  same version, different entry       → VersionConflict (dead-letter)
    ledger has a newer version  out of order                         → "stale", ignored
    created / updated           resolve refs (cached) → map →
        known GUID              UpdateHourEntry (idempotent)         → "updated"
        pending (answer lost)   look in Severa for the entry we may have added; claim it if found
            ... it is newer     the landed Add is of a later version than the event → "stale"
        none                    mark pending → AddNewHourEntry → mark applied  → "created"
    deleted                     DeleteHourEntry if we know a GUID; tombstone at V → "deleted"
    publish workhour.synced     with confirms, correlation id propagated

The version comparison holds in every ledger state, a pending one included: ``record.version`` is
the highest version applied or deleted, whatever Add is pending on top of it, so a late event that
is older than a delete stays ignored even while a newer Add waits to be recovered.

An update for an entry never seen creates it (an upsert: the source's state wins). A delete for an
entry never seen records a tombstone, so a late ``created`` with a lower version stays ignored, and
answers ``deleted`` with no GUID.

The mark-pending-before-Add step is what makes a crash between Severa's answer and our ack (or a
timeout whose answer was lost) safe: on the next delivery the pending record sends us looking in
Severa for an entry with the same user, date, case, phase, work type, hours and description that no
other external entry owns, instead of adding a second one. Such a twin may also be one a person
typed by hand, and adopting it would silently take over their entry, so a candidate must moreover
be among the entries Severa reports changed since the pending mark was made
(``GetHourEntriesChangedSince``; HourEntry carries no creation time). Severa matches that time to
the minute, which leaves a residual window: a hand-made twin typed in the same minute just before
our Add (or created or edited after our mark), followed by a lost answer where our Add did *not*
land, is still adopted.

Two *different* external entries whose events look alike (twins) can both be pending, each with
its Add landed, and recover at the same time: their locks differ, so both see the same two
candidates, and a check with ``owners_of`` followed by a write would let both take the same one.
A candidate is therefore taken with :meth:`Ledger.claim`, which writes the GUID only if no other
entry holds it, atomically across entries and pods; a refused claim moves on to the next
candidate, and when none is left the Add counts as not landed. The claim records the pending
version (whose content is what landed); an event older than that version is then stale.

The mark is taken on our clock and compared with Severa's, so a clock of
ours running more than that minute ahead of Severa's could hide our own landed Add and add a
second entry; keep the hosts on NTP.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from connector.bus import OutgoingMessage
from connector.errors import SeveraRejected, SeveraUnavailable, VersionConflict
from connector.flows.decode import decode
from connector.logging import bind_message_context, get_logger
from connector.mapping.hour_entries import normalize_description, normalize_hours, to_new_hour_entry
from connector.mapping.references import ReferenceResolver
from connector.observability import Metrics
from connector.ports import HourEntry, NewHourEntry, SeveraGateway
from connector.processing import Delivery, Failure
from connector.state.ledger import Ledger, LedgerRecord
from schemas.identity import entry_key
from schemas.results import SyncOutcome, WorkHourFailed, WorkHourSynced
from schemas.work_hours import WorkHourEvent

log = get_logger(__name__)

FLOW = "work_hours"


PublishFn = Callable[[str, OutgoingMessage], Awaitable[None]]


class ResultPublisher:
    """Publishes result events to the results exchange (a thin seam over :class:`connector.bus.Bus`)."""

    def __init__(self, publish: PublishFn, exchange: str) -> None:
        self._publish = publish
        self._exchange = exchange

    async def synced(self, result: WorkHourSynced, correlation_id: str | None) -> None:
        await self._send(result.event_type, result.model_dump_json().encode(), correlation_id)

    async def failed(self, result: WorkHourFailed, correlation_id: str | None) -> None:
        await self._send(result.event_type, result.model_dump_json().encode(), correlation_id)

    async def _send(self, event_type: str, body: bytes, correlation_id: str | None) -> None:
        await self._publish(
            self._exchange,
            OutgoingMessage(
                body=body,
                routing_key=event_type,
                message_id=str(uuid.uuid4()),
                correlation_id=correlation_id,
                type=event_type,
                headers={"schema_version": "1"},
            ),
        )


def parse_event(body: bytes) -> WorkHourEvent:
    """Decode and validate; every problem becomes one :class:`InvalidMessage` naming the fields."""
    return decode(body, WorkHourEvent)


def fingerprint(entry: NewHourEntry) -> str:
    """What identifies an Add in Severa if its answer was lost (stable JSON)."""
    return json.dumps(
        {
            "user": entry.user_guid,
            "case": entry.case_guid,
            "phase": entry.phase_guid,
            "work_type": entry.work_type_guid,
            "date": entry.event_date.isoformat(),
            "quantity": str(entry.quantity),
            "description": entry.description or "",
        },
        sort_keys=True,
    )


def content_hash(event: WorkHourEvent) -> str | None:
    """A stable digest of what ``event`` asks Severa to hold; ``None`` for a delete (nothing).

    It covers the fields that are mapped into the hour entry, after the same pure normalisation the
    mapping applies (hours to two decimals, description trimmed and cut), and leaves out what does
    not reach Severa (event id, occurrence time, event type), so a producer's retry of one change
    under a new event id hashes alike. It hashes the codes as sent rather than the resolved GUIDs:
    comparing needs no Severa call, and a later change of the mapping table or of Severa's records
    cannot turn a plain redelivery into a conflict.
    """
    if event.event_type == "workhour.deleted":
        return None
    content = {
        "user_code": event.user_code,
        "user_email": event.user_email,
        "case_number": event.case_number,
        "phase_code": event.phase_code,
        "work_type_code": event.work_type_code,
        "date": event.date.isoformat() if event.date is not None else None,
        "hours": str(normalize_hours(event.hours)) if event.hours is not None else None,
        "description": normalize_description(event.description),
        "billable": event.billable,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _matches(candidate: HourEntry, print_: dict[str, str]) -> bool:
    return (
        candidate.user_guid == print_["user"]
        and candidate.case_guid == print_["case"]
        and candidate.phase_guid == print_["phase"]
        and (candidate.work_type_guid or "") == print_["work_type"]
        and candidate.event_date.isoformat() == print_["date"]
        and candidate.quantity == Decimal(print_["quantity"])
        and (candidate.description or "") == print_["description"]
    )


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: SyncOutcome
    severa_guid: str | None


class WorkHoursFlow:
    def __init__(
        self,
        *,
        severa: SeveraGateway,
        resolver: ReferenceResolver,
        ledger: Ledger,
        results: ResultPublisher,
        metrics: Metrics,
    ) -> None:
        self._severa = severa
        self._resolver = resolver
        self._ledger = ledger
        self._results = results
        self._metrics = metrics

    async def handle(self, delivery: Delivery) -> None:
        event = parse_event(delivery.body)
        with bind_message_context(external_id=event.external_id, version=event.version):
            applied = await self.apply(event)
            self._metrics.sync_results.labels(outcome=applied.outcome).inc()
            log.info("workhour_synced", outcome=applied.outcome, severa_guid=applied.severa_guid)
            await self._results.synced(
                WorkHourSynced(
                    event_id=event.event_id,
                    external_id=event.external_id,
                    source=event.source,
                    source_entry_id=event.source_entry_id,
                    version=event.version,
                    outcome=applied.outcome,
                    severa_guid=applied.severa_guid,
                    synced_at=dt.datetime.now(dt.UTC),
                ),
                delivery.correlation_id or str(event.event_id),
            )

    async def apply(self, event: WorkHourEvent) -> Applied:
        """Make Severa match ``event``; safe to call any number of times for the same event."""
        async with self._ledger.lock(event.external_id):
            record = await self._ledger.get(event.external_id)
            if record is not None and record.version >= event.version:
                return self._already_done(event, record)
            if event.event_type == "workhour.deleted":
                return await self._delete(event, record)
            return await self._upsert(event, record)

    def _already_done(self, event: WorkHourEvent, record: LedgerRecord) -> Applied:
        """The answer for an event at or below the version the ledger holds: no Severa call."""
        if record.version > event.version:
            return Applied("stale", record.severa_guid)
        if record.state != "applied":
            # A tombstone at this version; a pending record's version is its tombstone's too.
            return Applied("deleted", record.severa_guid)
        wanted = content_hash(event)
        if record.content_hash is not None and wanted != record.content_hash:
            asks = "a delete" if wanted is None else "other content"
            raise VersionConflict(
                f"{event.external_id} is already in Severa at version {event.version}, and this event "
                f"asks for {asks} under that same version: versions order an entry's changes, so two "
                f"different contents under one version cannot be ordered. Publish the change with a "
                f"higher version (> {record.version}).",
                external_id=event.external_id,
                version=event.version,
            )
        return Applied("unchanged", record.severa_guid)

    async def _upsert(self, event: WorkHourEvent, record: LedgerRecord | None) -> Applied:
        refs = await self._resolver.resolve(event)
        entry = to_new_hour_entry(event, refs)
        content = content_hash(event)
        guid = record.active_guid if record is not None else None
        if record is not None and record.state == "pending":
            guid, landed_version = await self._claim_landed(event, record)
            if guid is not None and landed_version > event.version:
                return Applied("stale", guid)
        if guid is not None:
            updated = await self._severa.update_hour_entry(entry.with_guid(guid))
            await self._ledger.mark_applied(
                event.external_id, event.version, updated.guid, content_hash=content
            )
            return Applied("updated", updated.guid)
        print_ = fingerprint(entry)
        await self._ledger.mark_pending(event.external_id, event.version, print_)
        added = await self._severa.add_hour_entry(entry)
        if await self._ledger.claim(event.external_id, event.version, added.guid, content_hash=content):
            return Applied("created", added.guid)
        # A twin entry (identical content) recovering its own lost Add took ours between Severa's
        # answer and this write; the entry its Add created is then ours -- they are alike.
        log.warning("added_entry_claimed_by_twin", severa_guid=added.guid)
        pending_now = await self._ledger.get(event.external_id)
        if pending_now is not None and pending_now.state == "pending":
            guid, _ = await self._claim_landed(event, pending_now)
            if guid is not None:
                await self._ledger.mark_applied(event.external_id, event.version, guid, content_hash=content)
                return Applied("created", guid)
        raise SeveraUnavailable(
            f"the hour entry {added.guid} we added was claimed by another external entry and no twin "
            "was left to take; retrying",
            outcome_unknown=True,
        )

    async def _delete(self, event: WorkHourEvent, record: LedgerRecord | None) -> Applied:
        guid = record.active_guid if record is not None else None
        if record is not None and record.state == "pending":
            guid, landed_version = await self._claim_landed(event, record)
            if guid is not None and landed_version > event.version:
                return Applied("stale", guid)
        if guid is not None:
            try:
                await self._severa.delete_hour_entry(guid)
            except SeveraRejected as exc:
                if exc.fault != "NotFound":
                    raise
                log.info("hour_entry_already_gone", severa_guid=guid)
        await self._ledger.mark_deleted(event.external_id, event.version)
        return Applied("deleted", guid)

    async def _claim_landed(self, event: WorkHourEvent, record: LedgerRecord) -> tuple[str | None, int]:
        """Claim the Add whose answer we lost, if it landed in Severa: its GUID (None if it did not
        land) and the version the claim recorded for it.

        A candidate matches the pending fingerprint, is owned by no other external entry, and was
        changed in Severa since the pending mark (``record.updated_at``), so an identical entry that
        existed before our Add was attempted is never taken over. The change list is asked for only
        when the fingerprint matched something: this path is rare, and the steady state pays nothing.
        ``owners_of`` only skips candidates known to be taken; the claim decides, because a twin
        entry recovering at the same moment may take the same candidate between the two.
        """
        version = record.pending_version if record.pending_version is not None else event.version
        for guid in await self._landed_candidates(event.external_id, record):
            if await self._ledger.claim(event.external_id, version, guid):
                log.info("lost_add_found_in_severa", severa_guid=guid)
                return guid, version
            log.info("lost_add_candidate_claimed_by_another_entry", severa_guid=guid)
        return None, version

    async def _landed_candidates(self, external_id: str, record: LedgerRecord) -> list[str]:
        """GUIDs of Severa entries that may be the Add we lost, best first (see :meth:`_claim_landed`)."""
        if record.fingerprint is None:
            return []
        print_ = json.loads(record.fingerprint)
        day = dt.date.fromisoformat(print_["date"])
        candidates = [
            c
            for c in await self._severa.get_hour_entries_by_user_and_date(print_["user"], day, day)
            if _matches(c, print_)
        ]
        if not candidates:
            return []
        changed = await self._severa.get_hour_entries_changed_since(_as_utc(record.updated_at))
        since_mark = {c.guid for c in changed}
        older = [c.guid for c in candidates if c.guid not in since_mark]
        if older:
            log.info(
                "lost_add_twin_predates_mark", severa_guids=older, marked_at=record.updated_at.isoformat()
            )
        candidates = [c for c in candidates if c.guid in since_mark]
        if not candidates:
            return []
        owners = await self._ledger.owners_of([c.guid for c in candidates])
        return [c.guid for c in candidates if owners.get(c.guid, external_id) == external_id]

    async def notify_failure(self, delivery: Delivery, failure: Failure) -> None:
        """Publish ``workhour.failed`` for a dead-lettered event (the processor's hook).

        Whatever the body is -- not JSON, not UTF-8, nested past the parser's recursion limit, a
        JSON value of any shape -- this never raises while reading it: every parked message gets a
        failed result. The ids the body names are taken when they can be read; the AMQP
        ``message_id`` and ``correlation_id`` are always copied, so the producer can match even a
        failure whose body names nothing.
        """
        ids = _ids_in(delivery.body)
        await self._results.failed(
            WorkHourFailed(
                event_id=ids.event_id,
                external_id=ids.external_id,
                source=ids.source,
                source_entry_id=ids.source_entry_id,
                message_id=_utf8(delivery.message_id),
                correlation_id=_utf8(delivery.correlation_id),
                reason=failure.reason,
                message=failure.message,
                dead_lettered=True,
                failed_at=failure.last_failure_at,
            ),
            _utf8(delivery.correlation_id)
            or (str(ids.event_id) if ids.event_id else _utf8(delivery.message_id)),
        )


@dataclass(frozen=True, slots=True)
class _BodyIds:
    event_id: uuid.UUID | None = None
    source: str | None = None
    source_entry_id: str | None = None

    @property
    def external_id(self) -> str | None:
        if self.source is None or self.source_entry_id is None:
            return None
        return entry_key(self.source, self.source_entry_id)


def _ids_in(body: bytes) -> _BodyIds:
    """The ids a (possibly broken) body names; whatever cannot be read is left out.

    Broad on purpose: it runs after the message is already parked, and any exception here --
    ``RecursionError`` for deeply nested JSON, ``UnicodeDecodeError``, a ``MemoryError`` for an absurd
    body -- would cost the producer its only notice of the failure.
    """
    try:
        raw = json.loads(body)
    except Exception:
        return _BodyIds()
    if not isinstance(raw, dict):
        return _BodyIds()
    event_id: uuid.UUID | None = None
    with contextlib.suppress(Exception):
        event_id = uuid.UUID(str(raw.get("event_id")))
    return _BodyIds(
        event_id=event_id, source=_text(raw.get("source")), source_entry_id=_text(raw.get("source_entry_id"))
    )


def _text(value: object) -> str | None:
    """``value`` if it is a string the result can carry verbatim; JSON may smuggle in lone surrogates."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _utf8(value: str | None) -> str | None:
    """An AMQP property made serialisable: it identifies the message, so mend it rather than drop it."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; a naive one from a store is UTC already (every backend writes UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
