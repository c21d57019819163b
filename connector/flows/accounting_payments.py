"""Payments back: a poller feed that publishes ``accounting.invoice.paid`` for invoices paid in accounting.

Accounting systems have no webhooks (Netvisor: integrations poll), so the payments come back the
way Severa's changes go out: the same :class:`~connector.flows.poller.Poller` (a cursor in the
state store, a minute of overlap, de-duplication by ``(invoice key, event id)``, publish with
confirms before the cursor moves, a lease so that one pod polls), run as a second poller with its
own lease and call budget, so that an accounting outage never stops Severa's changes going out.

The event id is derived from the accounting key and the payment day: a payment seen again in the
overlap (or after a crash) is the same event, and a later change of the day (a payment cancelled
and booked again) is a new one, which sets Severa's payment date again.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from connector.bus import OutgoingMessage
from connector.flows.poller import CallBudget, Change, FeedMode, Fetched, Poller
from connector.logging import get_logger
from connector.ports import AccountingGateway
from schemas.accounting_events import INVOICE_PAID, InvoicePaid, accounting_event_id

log = get_logger(__name__)

#: How far back the first poll looks for payments: invoices paid before the connector ran were
#: not transferred by it, so there is nothing older to bring back.
FIRST_POLL_LOOKBACK: Final = dt.timedelta(days=31)


class PaymentsPoller(Poller):
    """The payments poller: its own lease, so it runs beside the Severa change poller."""

    LEASE = "accounting-payments-poller"


class PaymentFeed:
    """``accounting.invoice.paid`` from the accounting system's paid invoices, by last change."""

    kind = "accounting_payments"
    mode = FeedMode.CHANGED_SINCE

    def __init__(
        self,
        accounting: AccountingGateway,
        *,
        exchange: str,
        system: str,
        clock: type[dt.datetime] = dt.datetime,
    ) -> None:
        self._accounting = accounting
        self._exchange = exchange
        self._system = system
        self._clock = clock

    async def fetch(
        self, since: dt.datetime | None, budget: CallBudget, into: Fetched, seen: frozenset[tuple[str, str]]
    ) -> None:
        budget.spend()
        start = since or self._clock.now(dt.UTC) - FIRST_POLL_LOOKBACK
        for payment in await self._accounting.list_paid_invoices(start):
            event_id = accounting_event_id(INVOICE_PAID, payment.invoice_key, payment.paid_on.isoformat())
            key = (payment.invoice_key, str(event_id))
            if key in seen:
                into.changes.append(Change(key[0], key[1], None, self._exchange))
                continue
            event = InvoicePaid(
                event_id=event_id,
                occurred_at=payment.modified_at or self._clock.now(dt.UTC),
                accounting_system=self._system,
                invoice_number=payment.invoice_number,
                reference_number=payment.reference_number,
                accounting_key=payment.invoice_key,
                paid_on=payment.paid_on,
                amount=payment.amount,
            )
            message = OutgoingMessage(
                body=event.model_dump_json().encode(),
                routing_key=INVOICE_PAID,
                message_id=str(event_id),
                correlation_id=str(event_id),
                type=INVOICE_PAID,
                headers={"schema_version": "1"},
            )
            into.changes.append(Change(key[0], key[1], message, self._exchange))
        log.debug("payments_fetched", since=start.isoformat(), changes=len(into.changes))
