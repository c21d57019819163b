"""Back into Severa: what the accounting side did with an invoice, as Severa statuses and dates.

Consumes the connector's own accounting events from ``q.severa.invoice-updates``:

    accounting.invoice.transferred   the invoice is in accounting → Severa's "transferred" status
                                     (``accounting.severa_transferred_status``) and a log line on
                                     the invoice, so the poller no longer sees it as ready
    accounting.invoice.paid          paid in accounting → Severa's payment date and paid status
                                     (``accounting.severa_paid_status``) and a log line

A flow of its own, on the Severa circuit, rather than the last step of the invoice flow: a Severa
outage then holds these updates while invoices keep flowing into accounting, and a failure here
never sends the invoice flow back to accounting.

Every step is safe to repeat: a status or a date set twice ends the same, the log line is added
with Severa's duplicate check, and an invoice already in the wanted state is left alone (a
"transferred" that arrives after the invoice was paid does not move it back).

A paid invoice is matched to its Severa invoice through the outbound ledger (the accounting key
the invoice flow recorded), else by invoice number *and* reference number. Accounting also holds
invoices that never came from Severa; their payments are not errors and are ignored (logged).
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.errors import InvalidMessage, PermanentError
from connector.flows.decode import decode
from connector.flows.outbound import stored_key
from connector.logging import bind_message_context, get_logger
from connector.ports import Invoice, SeveraInvoicing
from connector.processing import Delivery
from connector.state.ledger import Ledger
from schemas.accounting_events import INVOICE_PAID, INVOICE_TRANSFERRED, InvoicePaid, InvoiceTransferred

log = get_logger(__name__)

FLOW = "severa_invoice_updates"


class SeveraInvoiceMissing(PermanentError):
    """The invoice the accounting side reports on is not in Severa (deleted there since)."""

    reason = "severa_invoice_missing"
    answered_by_peer = True


@dataclass(frozen=True, slots=True)
class InvoiceStatuses:
    """The Severa invoice statuses the connector sets (names, as Severa's ``InvoiceStatus``)."""

    transferred: str
    paid: str


class SeveraInvoiceUpdatesFlow:
    """The handler of ``q.severa.invoice-updates``; see the module docstring."""

    def __init__(
        self, *, severa: SeveraInvoicing, ledger: Ledger, statuses: InvoiceStatuses, system: str
    ) -> None:
        self._severa = severa
        self._ledger = ledger
        self._statuses = statuses
        self._system = system

    async def handle(self, delivery: Delivery) -> None:
        if delivery.routing_key == INVOICE_PAID:
            await self.paid(decode(delivery.body, InvoicePaid))
        elif delivery.routing_key == INVOICE_TRANSFERRED:
            await self.transferred(decode(delivery.body, InvoiceTransferred))
        else:
            raise InvalidMessage(
                f"routing key {delivery.routing_key!r} is not an invoice update this flow knows "
                f"({INVOICE_TRANSFERRED}, {INVOICE_PAID})",
                reason="unknown_event_type",
            )

    async def transferred(self, event: InvoiceTransferred) -> None:
        guid = str(event.severa_invoice_guid)
        with bind_message_context(flow=FLOW, invoice_guid=guid, invoice_number=event.invoice_number):
            invoice = await self._existing(guid, event.invoice_number)
            if invoice.status in (self._statuses.transferred, self._statuses.paid):
                log.info("invoice_status_already_set", status=invoice.status)
                return
            await self._severa.add_invoice_log_entry(
                guid, f"Transferred to {self._system} (id {event.accounting_key}) by severa-connector"
            )
            await self._severa.set_invoice_status(guid, self._statuses.transferred)
            log.info("invoice_marked_transferred", status=self._statuses.transferred)

    async def paid(self, event: InvoicePaid) -> None:
        with bind_message_context(
            flow=FLOW, accounting_key=event.accounting_key, invoice_number=event.invoice_number
        ):
            invoice = await self._match(event)
            if invoice is None:
                log.info("payment_for_unknown_invoice_ignored", reference_number=event.reference_number)
                return
            if invoice.status == self._statuses.paid and invoice.payment_date == event.paid_on:
                log.info("invoice_already_paid")
                return
            await self._severa.set_invoice_payment_date(invoice.guid, event.paid_on)
            await self._severa.add_invoice_log_entry(
                invoice.guid,
                f"Paid on {event.paid_on.isoformat()} in {self._system} (id {event.accounting_key})",
            )
            await self._severa.set_invoice_status(invoice.guid, self._statuses.paid)
            log.info("invoice_marked_paid", paid_on=event.paid_on.isoformat())

    async def _existing(self, guid: str, number: str) -> Invoice:
        invoice = await self._severa.get_invoice(guid)
        if invoice is None:
            raise SeveraInvoiceMissing(
                f"Severa has no invoice {guid} (number {number}) any more, although the accounting "
                "system now holds it: check whether it was deleted in Severa, then resolve this dead letter"
            )
        return invoice

    async def _match(self, event: InvoicePaid) -> Invoice | None:
        owners = await self._ledger.owners_of([stored_key(self._system, event.accounting_key)])
        owner = next(iter(owners.values()), None)
        if owner is not None and owner.startswith("accounting:invoice:"):
            guid = owner.removeprefix("accounting:invoice:")
            return await self._existing(guid, event.invoice_number or "?")
        if event.invoice_number is None or not event.invoice_number.isdigit():
            return None
        invoice = await self._severa.get_invoice_by_number(int(event.invoice_number))
        if invoice is None:
            return None
        if (
            event.reference_number
            and invoice.reference_number
            and _digits(event.reference_number) != _digits(invoice.reference_number)
        ):
            return None  # the same number in another series: not ours
        return invoice


def _digits(reference: str) -> str:
    return "".join(reference.split()).upper()
