"""The poller's feeds: what it reads from Severa per kind of entity, and the events it makes of it.

Each feed reads through the :class:`connector.ports.SeveraChanges` port, spends the poll's call
budget before every call, turns records into events with the pure mapping of
:mod:`connector.mapping.severa_events`, and names each change by ``(GUID, stamp)``. For invoices
and hour entries the stamp is the event id, which hashes the content, so the pair is what the
poller de-duplicates on and what consumers de-duplicate on too; a change already in the cursor's
``seen`` set is reported without its message. Customers need a head-office look-up before their
event id is known (their id covers the address, which Severa changes without moving
``UpdatedTS``); their stamp also says which ``UpdatedTS`` was read and when, so that a customer
the overlap returns again is not looked up on every poll (:class:`CustomerFeed`).

A record Severa holds but the contract cannot carry (a GUID that is not one, a VAT rate above
100 %) is logged as an error naming the field and remembered as seen, so it neither blocks the
feed nor is retried every poll; an invoice without a number is simply not ready yet.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel

from connector.bus import OutgoingMessage
from connector.flows.poller import OVERLAP, CallBudget, Change, FeedMode, Fetched
from connector.logging import get_logger
from connector.mapping.severa_events import (
    InvoiceNotReady,
    UnpublishableRecord,
    customer_changed,
    hour_entry_changed,
    invoice_ready,
)
from connector.ports import Customer, SeveraChanges
from schemas.severa_events import SeveraHourEntryChanged, SeveraInvoiceReady, change_stamp

log = get_logger(__name__)

#: Invoice numbers the invoice feed keeps by GUID, for credit notes whose invoice left the snapshot.
NUMBER_CACHE_SIZE: Final = 50_000

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


#: How long a customer's head-office look-up is relied on when the overlap returns the customer
#: again with the same ``UpdatedTS``. Severa does not move ``UpdatedTS`` when only the address
#: changes and keeps no change stamp of its own on an address, so a customer re-read in the overlap
#: may have a new address -- or none: only another look-up can tell. Trusting a look-up this long
#: keeps short poll intervals from looking every overlap customer up on every poll; it is half the
#: overlap, so a relied-on look-up still reaches back half a minute, as a fresh fetch reaches back
#: a minute (see :meth:`CustomerFeed.fetch`).
ADDRESS_TRUSTED_FOR: Final = OVERLAP / 2

#: Separates the parts of a customer's seen stamp (none of them contains it).
_SEP: Final = "|"
#: The event-id part of a customer that could not be published.
_UNPUBLISHABLE: Final = "-"


@dataclass(frozen=True, slots=True)
class _CustomerRead:
    """What the cursor remembers of one read of a customer, as the seen stamp
    ``<UpdatedTS>|<event id>|<read at>`` (at most 92 characters).

    ``updated`` is the customer's change stamp as the list gives it (``UpdatedTS``, else
    ``InsertTS``), ``event_id`` the id of the event that state made (``None``: it could not be
    published), ``read_at`` when the fetch that looked its head-office address up began -- the
    look-up saw every address change made before that.
    """

    updated: str
    event_id: str | None
    read_at: dt.datetime

    @property
    def stamp(self) -> str:
        read_at = change_stamp(self.read_at)
        return _SEP.join((self.updated, self.event_id or _UNPUBLISHABLE, read_at))

    @classmethod
    def parse(cls, stamp: str) -> _CustomerRead | None:
        """The read a seen stamp names; ``None`` for a stamp of another form (an older connector's)."""
        parts = stamp.split(_SEP)
        if len(parts) != 3:
            return None
        updated, event_id, read_at = parts
        try:
            moment = dt.datetime.strptime(read_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
            if event_id != _UNPUBLISHABLE:
                uuid.UUID(event_id)
        except ValueError:
            return None
        return cls(updated, None if event_id == _UNPUBLISHABLE else event_id, moment)


def _latest_reads(seen: frozenset[tuple[str, str]]) -> dict[tuple[str, str], _CustomerRead]:
    """The latest read per ``(guid, updated)`` among the seen pairs (an unfinished poll leaves several)."""
    latest: dict[tuple[str, str], _CustomerRead] = {}
    for guid, stamp in seen:
        read = _CustomerRead.parse(stamp)
        if read is None:
            continue
        key = (guid, read.updated)
        if key not in latest or latest[key].read_at < read.read_at:
            latest[key] = read
    return latest


class CustomerFeed:
    """``severa.customer.changed`` from ``GetCustomersChangedSince`` + the head-office address.

    The list is asked for with ``CheckAddressChanges``, so it also names a customer whose address
    changed while its ``UpdatedTS`` did not. The event id covers the published content (address
    included), so such a change is a new event; what it costs is one head-office look-up for every
    customer the list names, since nothing in the list tells an address change from the overlap
    returning a customer already published. :meth:`fetch` bounds that cost.
    """

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
        address_trusted_for: dt.timedelta = ADDRESS_TRUSTED_FOR,
    ) -> None:
        if not dt.timedelta(0) <= address_trusted_for < OVERLAP:
            raise ValueError(f"address_trusted_for must be at least 0 and below {OVERLAP}")
        self._severa = severa
        self._exchange = exchange
        self._organization_id = organization_id
        self._include_inactive = include_inactive
        self._clock = clock
        self._trusted_for = address_trusted_for

    async def fetch(
        self, since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        """The customers changed since ``since``, each looked up unless an earlier read still holds.

        A customer the list names is read (its head-office address looked up, one call) when it is
        new or has a new ``UpdatedTS``; it is an event when the content differs from what was
        published for that ``UpdatedTS``. One seen again with the same ``UpdatedTS`` was read at
        ``read_at`` by an earlier poll:

        * read within ``address_trusted_for`` of this poll: relied on, no call. The next fetch
          reaches back to this poll's start minus the overlap, before ``read_at``, so an address
          change after that read is still found;
        * read so long ago that relying on it would hold the cursor where it is (``read_at`` plus
          the trust at or before the cursor's ``since``): read again -- or the cursor could never
          move;
        * otherwise read again, oldest read first, while the poll's budget lasts; the rest are
          relied on and the cursor advances no further than ``read_at`` plus the trust, so that
          the next fetch still reaches back to what those reads cannot have seen.

        So a poll that ran out of budget does not pay again for what it read (the next one goes
        on where it stopped, instead of spending its budget on the same look-ups over and over),
        and a customer costs one look-up per change plus, while the overlap keeps returning it,
        at most one more per ``address_trusted_for`` -- bounded by the budget in every poll.
        """
        read_at = self._clock()
        cursor_since = None if since is None else since + OVERLAP
        budget.spend()
        customers = await self._severa.get_customers_changed_since(
            since or BEGINNING, include_inactive=self._include_inactive
        )
        reads = _latest_reads(seen)
        deferred: list[tuple[Customer, str, _CustomerRead]] = []
        for customer in customers:
            updated = _customer_stamp(customer)
            if updated is None:
                continue
            last = reads.get((customer.guid, updated))
            if last is None or not customer.head_office_address_guid:
                await self._read(customer, updated, last, budget, into, read_at)  # free without an address
            elif last.read_at + self._trusted_for >= read_at:
                into.changes.append(Change(customer.guid, last.stamp, None, self._exchange))
            elif cursor_since is not None and last.read_at + self._trusted_for <= cursor_since:
                await self._read(customer, updated, last, budget, into, read_at)
            else:
                deferred.append((customer, updated, last))
        deferred.sort(key=lambda item: item[2].read_at)
        for customer, updated, last in deferred:
            if budget.remaining > 0:
                await self._read(customer, updated, last, budget, into, read_at)
            else:
                into.changes.append(Change(customer.guid, last.stamp, None, self._exchange))
                into.cap_advance(last.read_at + self._trusted_for)

    async def _read(
        self,
        customer: Customer,
        updated: str,
        last: _CustomerRead | None,
        budget: CallBudget,
        into: Fetched,
        read_at: dt.datetime,
    ) -> None:
        """Look the customer's head office up and append its change (a message if it is news)."""
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
            if last is None or last.event_id is not None:
                _unpublishable(self.kind, customer.guid, exc)
            read = _CustomerRead(updated, None, read_at)
            into.changes.append(Change(customer.guid, read.stamp, None, self._exchange))  # not again
            return
        read = _CustomerRead(updated, str(event.event_id), read_at)
        news = last is None or last.event_id != read.event_id
        message = event_message(event, event_type=event.event_type, event_id=event.event_id) if news else None
        into.changes.append(Change(customer.guid, read.stamp, message, self._exchange))


def _customer_stamp(customer: Customer) -> str | None:
    """The customer's change stamp as the list gives it, or None (logged) for one that has none."""
    stamp = customer.updated_at or customer.inserted_at
    try:
        uuid.UUID(customer.guid)
    except ValueError:
        log.error("poller_record_unpublishable", kind="customers", guid=customer.guid, field="customer.guid")
        return None
    if stamp is None:
        log.error(
            "poller_record_unpublishable", kind="customers", guid=customer.guid, field="customer.updated_at"
        )
        return None
    return change_stamp(_as_utc(stamp))


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Severa's time stamps without a zone are UTC (as the mapping reads them)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


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
        #: Numbers of invoices seen, by GUID: a number, once given, stays the invoice's.
        self._numbers: OrderedDict[str, int] = OrderedDict()

    def _remember(self, guid: str, number: int) -> None:
        self._numbers[guid] = number
        self._numbers.move_to_end(guid)
        while len(self._numbers) > NUMBER_CACHE_SIZE:
            self._numbers.popitem(last=False)

    async def _credited_number(self, guid: str | None, budget: CallBudget) -> int | None:
        """The number of the invoice a credit note credits, read from Severa when it is not in the
        snapshot: a credit note's event must not change (and be published again, without the
        number) because the invoice it credits left the ready status first."""
        if guid is None:
            return None
        if guid not in self._numbers:
            budget.spend()
            credited = await self._severa.get_invoice(guid)
            if credited is None or credited.number is None:
                return None
            self._remember(guid, credited.number)
        return self._numbers[guid]

    async def fetch(
        self, since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        for unit in self._units:
            budget.spend()
            invoices = await self._severa.get_invoices_by_status(self._status, business_unit_guid=unit)
            for invoice in invoices:
                if invoice.number is not None:
                    self._remember(invoice.guid, invoice.number)
            now = self._clock()
            for invoice in invoices:
                credited = await self._credited_number(invoice.credited_invoice_guid, budget)
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
                    organization_id=self._organization_id,
                    observed_at=now,
                    published_at=now,
                )
            except UnpublishableRecord as exc:
                _unpublishable(self.kind, entry.guid, exc)
                continue
            into.changes.append(_change(entry.guid, event, seen, self._exchange))
