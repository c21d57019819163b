"""The work-hours flow: make Severa hold exactly what the external systems published.

Per event, for the entry ``X = <source>:<source_entry_id>`` at version ``V``::

    parse + validate            bad JSON / schema violation          → InvalidMessage (dead-letter)
    lock X (ledger)             two pods or tasks never race on X; other entries run in parallel
    ledger says V already done  duplicate (redelivery, replay)       → "unchanged", no Severa call
    ledger has a newer version  out of order                         → "stale", ignored
    created / updated           resolve refs (cached) → map →
        known GUID              UpdateHourEntry (idempotent)         → "updated"
        pending (answer lost)   look in Severa for the entry we may have added; adopt it if found
        none                    mark pending → AddNewHourEntry → mark applied  → "created"
    deleted                     DeleteHourEntry if we know a GUID; tombstone at V → "deleted"
    publish workhour.synced     with confirms, correlation id propagated

An update for an entry never seen creates it (an upsert: the source's state wins). A delete for an
entry never seen records a tombstone, so a late ``created`` with a lower version stays ignored, and
answers ``deleted`` with no GUID.

The mark-pending-before-Add step is what makes a crash between Severa's answer and our ack (or a
timeout whose answer was lost) safe: on the next delivery the pending record sends us looking in
Severa for an entry with the same user, date, case, phase, work type, hours and description that no
other external entry owns, instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pydantic

from connector.bus import OutgoingMessage
from connector.errors import InvalidMessage, SeveraRejected
from connector.logging import bind_message_context, get_logger
from connector.mapping.hour_entries import to_new_hour_entry
from connector.mapping.references import ReferenceResolver
from connector.observability import Metrics
from connector.ports import HourEntry, NewHourEntry, SeveraGateway
from connector.processing import Delivery, Failure
from connector.state.ledger import Ledger, LedgerRecord
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
    try:
        return WorkHourEvent.model_validate_json(body)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise InvalidMessage(
                f"body is not valid JSON: {errors[0]['msg']}", reason="invalid_json"
            ) from None
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in errors)
        raise InvalidMessage(
            f"event violates the WorkHourEvent schema: {problems}", reason="schema_violation"
        ) from None


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
            if record is not None and record.state != "pending" and record.version >= event.version:
                same = record.version == event.version
                outcome: SyncOutcome = "unchanged" if same else "stale"
                if record.state == "deleted" and same:
                    outcome = "deleted"
                return Applied(outcome, record.severa_guid)
            if event.event_type == "workhour.deleted":
                return await self._delete(event, record)
            return await self._upsert(event, record)

    async def _upsert(self, event: WorkHourEvent, record: LedgerRecord | None) -> Applied:
        refs = await self._resolver.resolve(event)
        entry = to_new_hour_entry(event, refs)
        guid = record.active_guid if record is not None else None
        if record is not None and record.state == "pending":
            guid = await self._find_landed(event.external_id, record)
        if guid is not None:
            updated = await self._severa.update_hour_entry(entry.with_guid(guid))
            await self._ledger.mark_applied(event.external_id, event.version, updated.guid)
            return Applied("updated", updated.guid)
        await self._ledger.mark_pending(event.external_id, event.version, fingerprint(entry))
        added = await self._severa.add_hour_entry(entry)
        await self._ledger.mark_applied(event.external_id, event.version, added.guid)
        return Applied("created", added.guid)

    async def _delete(self, event: WorkHourEvent, record: LedgerRecord | None) -> Applied:
        guid = record.active_guid if record is not None else None
        if record is not None and record.state == "pending":
            guid = await self._find_landed(event.external_id, record)
        if guid is not None:
            try:
                await self._severa.delete_hour_entry(guid)
            except SeveraRejected as exc:
                if exc.fault != "NotFound":
                    raise
                log.info("hour_entry_already_gone", severa_guid=guid)
        await self._ledger.mark_deleted(event.external_id, event.version)
        return Applied("deleted", guid)

    async def _find_landed(self, external_id: str, record: LedgerRecord) -> str | None:
        """The GUID of the Add whose answer we lost, if it landed in Severa; else None."""
        if record.fingerprint is None:
            return None
        print_ = json.loads(record.fingerprint)
        day = dt.date.fromisoformat(print_["date"])
        candidates = [
            c
            for c in await self._severa.get_hour_entries_by_user_and_date(print_["user"], day, day)
            if _matches(c, print_)
        ]
        if not candidates:
            return None
        owners = await self._ledger.owners_of([c.guid for c in candidates])
        for candidate in candidates:
            if owners.get(candidate.guid, external_id) == external_id:
                log.info("lost_add_found_in_severa", severa_guid=candidate.guid)
                return candidate.guid
        return None

    async def notify_failure(self, delivery: Delivery, failure: Failure) -> None:
        """Publish ``workhour.failed`` for a dead-lettered event (the processor's hook)."""
        event_id: uuid.UUID | None = None
        external_id: str | None = None
        try:
            raw = json.loads(delivery.body)
            event_id = uuid.UUID(str(raw.get("event_id")))
            external_id = f"{raw['source']}:{raw['source_entry_id']}"
        except (ValueError, TypeError, KeyError, AttributeError):
            pass
        await self._results.failed(
            WorkHourFailed(
                event_id=event_id,
                external_id=external_id,
                reason=failure.reason,
                message=failure.message,
                dead_lettered=True,
                failed_at=failure.last_failure_at,
            ),
            delivery.correlation_id or (str(event_id) if event_id else None),
        )
