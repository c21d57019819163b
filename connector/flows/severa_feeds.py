"""The poller's feeds: what it reads from Severa per kind of entity, and the events it makes of it.

Each feed reads through the :class:`connector.ports.SeveraChanges` port, spends the poll's call
budget before every call, turns records into events with the pure mapping of
:mod:`connector.mapping.severa_events`, and names each change by ``(GUID, event id)`` -- the event
id is derived from the entity's change stamp, so the pair is what the poller de-duplicates on and
what consumers de-duplicate on too. A change already in the cursor's ``seen`` set is reported
without its message and without the calls it would cost (a head-office look-up).

A record Severa holds but the contract cannot carry (a GUID that is not one, a VAT rate above
100 %) is logged as an error naming the field and remembered as seen, so it neither blocks the
feed nor is retried every poll; an invoice without a number is simply not ready yet.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Final

from pydantic import BaseModel

from connector.bus import OutgoingMessage
from connector.flows.poller import CallBudget, Change, FeedMode, Fetched
from connector.logging import get_logger
from connector.mapping.severa_events import (
    InvoiceNotReady,
    UnpublishableRecord,
    customer_changed,
    hour_entry_changed,
    invoice_ready,
)
from connector.ports import Customer, SeveraChanges
from schemas.severa_events import SeveraHourEntryChanged, SeveraInvoiceReady, severa_event_id

log = get_logger(__name__)

#: The ``since`` of a feed's first poll: everything Severa holds.
BEGINNING: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

Clock = Callable[[], dt.datetime]


def event_message(event: BaseModel, *, event_type: str, event_id: uuid.UUID) -> OutgoingMessage:
    """The AMQP message of a change event, as docs/severa-events.md specifies it."""
    return OutgoingMessage(
        body=event.model_dump_json().encode(),
        routing_key=event_type,
        message_id=str(event_id),
        correlation_id=str(event_id),
        type=event_type,
        headers={"schema_version": "1"},
    )


def _change(
    guid: str,
    event: SeveraInvoiceReady | SeveraHourEntryChanged,
    seen: frozenset[tuple[str, str]],
    exchange: str,
) -> Change:
    """The change named ``(guid, event id)``, without its message when it was published already."""
    key = (guid, str(event.event_id))
    message = (
        None if key in seen else event_message(event, event_type=event.event_type, event_id=event.event_id)
    )
    return Change(key[0], key[1], message, exchange)


def _unpublishable(kind: str, guid: str, exc: UnpublishableRecord) -> None:
    log.error(
        "poller_record_unpublishable", kind=kind, guid=guid, field=exc.context.get("field"), error=exc.message
    )


class CustomerFeed:
    """``severa.customer.changed`` from ``GetCustomersChangedSince`` + the head-office address."""

    kind = "customers"
    mode = FeedMode.CHANGED_SINCE

    def __init__(
        self,
        severa: SeveraChanges,
        *,
        exchange: str,
        organization_id: str,
        include_inactive: bool = False,
        clock: Clock,
    ) -> None:
        self._severa = severa
        self._exchange = exchange
        self._organization_id = organization_id
        self._include_inactive = include_inactive
        self._clock = clock

    async def fetch(
        self, since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        budget.spend()
        customers = await self._severa.get_customers_changed_since(
            since or BEGINNING, include_inactive=self._include_inactive
        )
        for customer in customers:
            key = _customer_key(customer)
            if key is None:
                continue
            if key in seen:
                into.changes.append(Change(key[0], key[1], None, self._exchange))
                continue
            head_office = None
            if customer.head_office_address_guid:
                budget.spend()
                head_office = await self._severa.get_head_office_address(customer.guid)
            try:
                event = customer_changed(
                    customer,
                    head_office=head_office,
                    organization_id=self._organization_id,
                    published_at=self._clock(),
                )
            except UnpublishableRecord as exc:
                _unpublishable(self.kind, customer.guid, exc)
                into.changes.append(Change(key[0], key[1], None, self._exchange))  # not again
                continue
            message = event_message(event, event_type=event.event_type, event_id=event.event_id)
            into.changes.append(Change(key[0], str(event.event_id), message, self._exchange))


def _customer_key(customer: Customer) -> tuple[str, str] | None:
    """``(guid, event id)`` from the list alone: the id follows the customer's change stamp."""
    stamp = customer.updated_at or customer.inserted_at
    try:
        guid = uuid.UUID(customer.guid)
    except ValueError:
        log.error("poller_record_unpublishable", kind="customers", guid=customer.guid, field="customer.guid")
        return None
    if stamp is None:
        log.error(
            "poller_record_unpublishable", kind="customers", guid=customer.guid, field="customer.updated_at"
        )
        return None
    return customer.guid, str(severa_event_id("severa.customer.changed", guid, stamp))


class InvoiceFeed:
    """``severa.invoice.ready``: every invoice in the configured status, per business unit."""

    kind = "invoices"
    mode = FeedMode.SNAPSHOT

    def __init__(
        self,
        severa: SeveraChanges,
        *,
        exchange: str,
        organization_id: str,
        status: str,
        business_unit_guids: tuple[str, ...] = (),
        clock: Clock,
    ) -> None:
        self._severa = severa
        self._exchange = exchange
        self._organization_id = organization_id
        self._status = status
        self._units: tuple[str | None, ...] = business_unit_guids or (None,)
        self._clock = clock

    async def fetch(
        self, since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        for unit in self._units:
            budget.spend()
            invoices = await self._severa.get_invoices_by_status(self._status, business_unit_guid=unit)
            numbers = {invoice.guid: invoice.number for invoice in invoices}
            now = self._clock()
            for invoice in invoices:
                credited = numbers.get(invoice.credited_invoice_guid or "")
                try:
                    event = invoice_ready(
                        invoice,
                        credited_number=credited,
                        organization_id=self._organization_id,
                        observed_at=now,
                        published_at=now,
                    )
                except InvoiceNotReady:
                    continue  # no number yet: published once Severa numbers it
                except UnpublishableRecord as exc:
                    _unpublishable(self.kind, invoice.guid, exc)
                    continue
                into.changes.append(_change(invoice.guid, event, seen, self._exchange))


class HourEntryFeed:
    """``severa.hourentry.changed`` from ``GetHourEntriesChangedSince``."""

    kind = "hour_entries"
    mode = FeedMode.CHANGED_SINCE

    def __init__(self, severa: SeveraChanges, *, exchange: str, organization_id: str, clock: Clock) -> None:
        self._severa = severa
        self._exchange = exchange
        self._organization_id = organization_id
        self._clock = clock

    async def fetch(
        self, since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        budget.spend()
        entries = await self._severa.get_hour_entries_changed_since(since or BEGINNING)
        now = self._clock()
        for entry in entries:
            try:
                event = hour_entry_changed(
                    entry,
                    invoice_guid=None,
                    organization_id=self._organization_id,
                    observed_at=now,
                    published_at=now,
                )
            except UnpublishableRecord as exc:
                _unpublishable(self.kind, entry.guid, exc)
                continue
            into.changes.append(_change(entry.guid, event, seen, self._exchange))
