"""Severa invoices into the accounting system: ``severa.invoice.ready`` → one sales invoice, once.

Accounting APIs such as Netvisor's have no idempotency key, and a retry of a create whose answer
was lost makes a second invoice. So, per event, for the invoice ``I`` (Severa GUID)::

    decode                          bad JSON / schema violation     → InvalidMessage (dead-letter)
    map (pure)                      VAT, rounding, reference number → UnmappableRecord (dead-letter)
    lock accounting:invoice:I       two pods or tasks never race on one invoice
    outbound ledger: applied        transferred before → publish "transferred" again, no call
        ... with other content      changed after the transfer      → AccountingRejected (a person
                                                                      decides: credit note, edit)
    customer                        known to the outbound ledger, or found by code, or added from
                                    the invoice's customer (the customer flow fills in every
                                    detail when Severa's customer event comes)
    LOOK UP the invoice by number   found (a lost answer, a hand entry) → adopt it if its total
                                    matches, refuse it if not; none → create it ("open": Severa
                                    sends its own invoices), numbered and referenced as in Severa
    credit note                     its invoice must be there first -- looked up before anything is
                                    written (transient until it is: the retry ladder waits for it) --
                                    and the credit note is matched to it once created
    ledger: applied                 with the accounting key and the content hash
    publish accounting.invoice.transferred (confirmed; the severa_invoice_updates flow consumes it)

The look-up happens on *every* attempt, not only after a failure: a pod killed between the create
and the ledger write leaves nothing that says "pending", and the look-up is what finds it. The
mark before the create is there for people reading the ledger (and a later console): an invoice
pending for long is one whose create may have failed half-way.
"""

from __future__ import annotations

import datetime as dt
import uuid

from connector.bus import OutgoingMessage
from connector.errors import AccountingRejected, TransientError
from connector.flows.decode import decode
from connector.flows.outbound import Notify, accounting_key_of, outbound_key, stored_key
from connector.logging import bind_message_context, get_logger
from connector.mapping.invoice_customer import customer_from_invoice
from connector.mapping.invoices import InvoiceOptions, invoice_for_accounting
from connector.ports import AccountingGateway, AccountingInvoice, AccountingInvoiceRef, AccountingInvoiceState
from connector.processing import Delivery, Failure
from connector.state.ledger import Ledger
from schemas.accounting_events import (
    INVOICE_FAILED,
    INVOICE_TRANSFERRED,
    InvoiceFailed,
    InvoiceTransferred,
    accounting_event_id,
)
from schemas.severa_events import SeveraInvoiceReady

log = get_logger(__name__)

FLOW = "accounting_invoices"

#: The ledger version of a transferred invoice: an invoice is created once, never versioned.
TRANSFERRED = 1


class CreditedInvoiceMissing(TransientError):
    """The credit note's invoice is not in the accounting system yet: wait for it on the ladder.

    Both come from the same poll, in any order; the credited invoice normally lands within seconds.
    One that never comes (it was not in the ready status) ends in the DLQ after the ladder, with
    this message saying which invoice to transfer first.
    """

    reason = "credited_invoice_missing"


class AccountingInvoicesFlow:
    """The handler of ``q.accounting.invoices``; see the module docstring."""

    def __init__(
        self,
        *,
        accounting: AccountingGateway,
        ledger: Ledger,
        publish: Notify,
        notify: Notify,
        exchange: str,
        system: str,
        options: InvoiceOptions,
        clock: type[dt.datetime] = dt.datetime,
    ) -> None:
        self._accounting = accounting
        self._ledger = ledger
        self._publish = publish
        self._notify = notify
        self._exchange = exchange
        self._system = system
        self._options = options
        self._clock = clock

    async def handle(self, delivery: Delivery) -> None:
        event = decode(delivery.body, SeveraInvoiceReady)
        invoice = event.invoice
        with bind_message_context(flow=FLOW, invoice_guid=str(invoice.guid), invoice_number=invoice.number):
            wanted = invoice_for_accounting(invoice, options=self._options)
            ref, created, matched = await self.apply(event, wanted)
            log.info("invoice_transferred", created=created, accounting_key=ref.key)
            transferred = InvoiceTransferred(
                event_id=accounting_event_id(INVOICE_TRANSFERRED, str(invoice.guid), ref.key),
                occurred_at=self._clock.now(dt.UTC),
                accounting_system=self._system,
                severa_invoice_guid=invoice.guid,
                invoice_number=wanted.number,
                accounting_key=ref.key,
                created=created,
                is_credit_note=wanted.is_credit_note,
                credit_note_matched_to=matched,
                total_including_vat=wanted.total_including_vat,
            )
            await self._publish(
                self._exchange,
                OutgoingMessage(
                    body=transferred.model_dump_json().encode(),
                    routing_key=INVOICE_TRANSFERRED,
                    message_id=str(transferred.event_id),
                    correlation_id=delivery.correlation_id or str(event.event_id),
                    type=INVOICE_TRANSFERRED,
                    headers={"schema_version": "1"},
                ),
            )

    async def apply(
        self, event: SeveraInvoiceReady, wanted: AccountingInvoice
    ) -> tuple[AccountingInvoiceRef, bool, str | None]:
        """Make the accounting system hold the invoice once; (its ref, created now, matched to)."""
        key = outbound_key("invoice", str(event.invoice.guid))
        content = str(event.event_id)  # the content stamp's event id: same content, same id
        async with self._ledger.lock(key):
            record = await self._ledger.get(key)
            if record is not None and record.state == "applied":
                known = accounting_key_of(record.severa_guid)
                if record.content_hash not in (None, content):
                    raise AccountingRejected(
                        f"Severa invoice {wanted.number} changed after it was transferred (accounting id "
                        f"{known}); correct it in the accounting system or credit it, then resolve "
                        "this dead letter",
                        code="CHANGED_AFTER_TRANSFER",
                        operation="add_invoice",
                        reason="invoice_changed_after_transfer",
                    )
                if known is not None:
                    matched = wanted.credits_invoice_number if wanted.is_credit_note else None
                    return self._ref(known, wanted), False, matched
            credited = await self._credited_invoice(wanted)
            await self._ledger.mark_pending(key, TRANSFERRED, wanted.number)
            await self._ensure_customer(event, wanted)
            ref, created = await self._find_or_create(wanted)
            matched = None
            if credited is not None:
                await self._accounting.match_credit_note(ref.key, credited.key)
                matched = credited.number
            await self._ledger.mark_applied(
                key, TRANSFERRED, stored_key(self._system, ref.key), content_hash=content
            )
            return ref, created, matched

    async def _ensure_customer(self, event: SeveraInvoiceReady, wanted: AccountingInvoice) -> None:
        """The invoice's customer exists in accounting: known to the outbound ledger (no call), found
        there, or added from the invoice. Recorded at version 0, so the customer's own event, when
        it comes, writes every detail over it."""
        key = outbound_key("customer", str(event.invoice.customer.account_guid))
        record = await self._ledger.get(key)
        if record is not None and record.state == "applied" and accounting_key_of(record.severa_guid):
            return
        found = await self._accounting.find_customer(wanted.customer_code)
        if found is None:
            customer = customer_from_invoice(event.invoice, seen_at=event.occurred_at)
            log.info("invoice_customer_added_first", customer_code=customer.code)
            found = await self._accounting.add_customer(customer)
        if record is None:
            await self._ledger.mark_applied(key, 0, stored_key(self._system, found.key))

    async def _find_or_create(self, wanted: AccountingInvoice) -> tuple[AccountingInvoiceRef, bool]:
        found = await self._accounting.find_invoice(wanted.number)
        if found is None:
            return await self._accounting.add_invoice(wanted), True
        if found.total_including_vat is not None and found.total_including_vat != wanted.total_including_vat:
            raise AccountingRejected(
                f"invoice number {wanted.number} already exists in the accounting system (id {found.key}) "
                f"with total {found.total_including_vat}, Severa's is {wanted.total_including_vat}: "
                "check which one is right, fix the other, then replay",
                code="NUMBER_TAKEN",
                operation="add_invoice",
                reason="invoice_number_taken",
            )
        log.info("invoice_found_adopted", accounting_key=found.key)
        return found, False

    async def _credited_invoice(self, wanted: AccountingInvoice) -> AccountingInvoiceRef | None:
        """The invoice a credit note credits, which must be in accounting before the credit note is
        created: a credit note left there unmatched would need a person, a wait costs nothing."""
        number = wanted.credits_invoice_number
        if not wanted.is_credit_note or number is None:
            return None
        credited = await self._accounting.find_invoice(number)
        if credited is None:
            raise CreditedInvoiceMissing(
                f"credit note {wanted.number} credits invoice {number}, which is not in the accounting "
                f"system: transfer invoice {number} first (the credit note waits on the retry ladder; "
                "once parked, replay it after the invoice is there)"
            )
        return credited

    def _ref(self, key: str, wanted: AccountingInvoice) -> AccountingInvoiceRef:
        return AccountingInvoiceRef(
            key=key,
            number=wanted.number,
            customer_code=wanted.customer_code,
            reference_number=wanted.reference_number,
            total_including_vat=wanted.total_including_vat,
            open_sum=None,
            state=AccountingInvoiceState.OPEN,
        )

    async def notify_failure(self, delivery: Delivery, failure: Failure) -> None:
        """Publish ``accounting.invoice.failed`` for a dead-lettered invoice; never raises on the body."""
        guid, number = _ids_in(delivery.body)
        failed = InvoiceFailed(
            event_id=accounting_event_id(INVOICE_FAILED, delivery.message_id or "unknown", failure.reason),
            occurred_at=self._clock.now(dt.UTC),
            accounting_system=self._system,
            severa_invoice_guid=guid,
            invoice_number=number,
            reason=failure.reason,
            message=failure.message or failure.reason,
        )
        await self._notify(
            self._exchange,
            OutgoingMessage(
                body=failed.model_dump_json().encode(),
                routing_key=INVOICE_FAILED,
                message_id=str(failed.event_id),
                correlation_id=delivery.correlation_id,
                type=INVOICE_FAILED,
                headers={"schema_version": "1"},
            ),
        )


def _ids_in(body: bytes) -> tuple[uuid.UUID | None, str | None]:
    try:
        event = SeveraInvoiceReady.model_validate_json(body)
    except (ValueError, RecursionError):
        return None, None
    return event.invoice.guid, str(event.invoice.number)
