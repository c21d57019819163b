"""Severa customers into the accounting system: ``severa.customer.changed`` → add or edit, whole.

Per event, for the customer ``C`` (Severa GUID) at change stamp ``S`` (Severa's ``UpdatedTS``)::

    decode                         bad JSON / schema violation     → InvalidMessage (dead-letter)
    lock accounting:customer:C     two pods or tasks never race on one customer
    outbound ledger has a newer S  out of order (a retried old event) → "stale", nothing written
    ... the same S and content     a duplicate (redelivery, replay) → "unchanged", nothing written
    map (pure)                     no number, bad business id       → UnmappableRecord (dead-letter)
    find by customer code          the accounting system's own key, or none
        found                      edit with every detail (an edit empties what it leaves out)
        none                       add; a duplicate answer is adopted by the adapter (look-up)
    ledger: applied at S           with the accounting key and the content hash
    publish accounting.customer.synced (a notification)

The customer code -- Severa's customer number -- is the key on both sides, as in Severa's own
accounting integration; the outbound ledger (the same store as the work-hours ledger, keys in the
``accounting:`` namespace) remembers which change was written last, so a late, older event
cannot overwrite a newer one. The change stamp alone is not enough to say "same": an address
change may keep ``UpdatedTS`` and change the content, so equal stamps compare content hashes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Literal

from connector.bus import OutgoingMessage
from connector.flows.decode import decode
from connector.flows.outbound import Notify, accounting_key_of, outbound_key, stamp_version, stored_key
from connector.logging import bind_message_context, get_logger
from connector.mapping.customers import customer_for_accounting
from connector.ports import AccountingCustomer, AccountingCustomerRef, AccountingGateway
from connector.processing import Delivery
from connector.state.ledger import Ledger
from schemas.accounting_events import CUSTOMER_SYNCED, CustomerSynced, accounting_event_id
from schemas.severa_events import SeveraCustomerChanged

log = get_logger(__name__)

FLOW = "accounting_customers"

Outcome = Literal["created", "updated", "unchanged", "stale"]


def customer_hash(customer: AccountingCustomer) -> str:
    """A stable digest of what the accounting system is asked to hold for the customer."""
    canonical = json.dumps(_as_json(customer), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _as_json(customer: AccountingCustomer) -> dict[str, object]:
    address = customer.address
    return {
        "code": customer.code,
        "name": customer.name,
        "business_id": customer.business_id,
        "address": None
        if address is None
        else [
            address.street,
            address.additional_line,
            address.postal_code,
            address.city,
            address.country_code,
        ],
        "email": customer.email,
        "invoicing_email": customer.invoicing_email,
        "e_invoice": [customer.e_invoice_address, customer.e_invoice_operator],
        "language": customer.language,
        "payment_term_days": customer.payment_term_days,
        "is_active": customer.is_active,
        "is_private_person": customer.is_private_person,
    }


class AccountingCustomersFlow:
    """The handler of ``q.accounting.customers``; see the module docstring."""

    def __init__(
        self,
        *,
        accounting: AccountingGateway,
        ledger: Ledger,
        notify: Notify,
        exchange: str,
        system: str,
        clock: type[dt.datetime] = dt.datetime,
    ) -> None:
        self._accounting = accounting
        self._ledger = ledger
        self._notify = notify
        self._exchange = exchange
        self._system = system
        self._clock = clock

    async def handle(self, delivery: Delivery) -> None:
        event = decode(delivery.body, SeveraCustomerChanged)
        customer = event.customer
        with bind_message_context(
            flow=FLOW, customer_guid=str(customer.guid), customer_number=customer.number
        ):
            outcome, ref = await self.apply(event)
            log.info("customer_synced", outcome=outcome, accounting_key=ref.key if ref else None)
            if ref is None or outcome in ("stale",):
                return
            synced = CustomerSynced(
                event_id=accounting_event_id(CUSTOMER_SYNCED, str(event.event_id)),
                occurred_at=self._clock.now(dt.UTC),
                accounting_system=self._system,
                severa_customer_guid=customer.guid,
                customer_code=ref.code or str(customer.number),
                accounting_key=ref.key,
                outcome="created" if outcome == "created" else "updated",
            )
            await self._notify(
                self._exchange,
                OutgoingMessage(
                    body=synced.model_dump_json().encode(),
                    routing_key=CUSTOMER_SYNCED,
                    message_id=str(synced.event_id),
                    correlation_id=delivery.correlation_id or str(event.event_id),
                    type=CUSTOMER_SYNCED,
                    headers={"schema_version": "1"},
                ),
            )

    async def apply(self, event: SeveraCustomerChanged) -> tuple[Outcome, AccountingCustomerRef | None]:
        """Make the accounting system hold ``event``'s customer; safe to repeat."""
        wanted = customer_for_accounting(event.customer)
        content = customer_hash(wanted)
        key = outbound_key("customer", str(event.customer.guid))
        version = stamp_version(event.occurred_at)
        async with self._ledger.lock(key):
            record = await self._ledger.get(key)
            if record is not None and record.state == "applied":
                if record.version > version:
                    return "stale", None
                if record.version == version and record.content_hash == content:
                    known = accounting_key_of(record.severa_guid)
                    ref = (
                        AccountingCustomerRef(key=known, code=wanted.code, name=wanted.name)
                        if known
                        else None
                    )
                    return "unchanged", ref
            found = await self._accounting.find_customer(wanted.code)
            if found is None:
                ref = await self._accounting.add_customer(wanted)
                outcome: Outcome = "created"
            else:
                ref = await self._accounting.update_customer(found.key, wanted)
                outcome = "updated"
            await self._ledger.mark_applied(
                key, version, stored_key(self._system, ref.key), content_hash=content
            )
            return outcome, ref
