"""What the dead-letter tools know about each flow: its queue, its message schema, its result events.

``dlq edit`` validates a new body against the flow's schema before it can go back; ``dlq replay
--canary`` learns that a canary went through from the flow's result events (``workhour.synced``
names the event id). A dead letter from a queue no flow claims can still be listed, replayed and
purged; only schema validation and the success signal are missing for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel

from connector.dlq.records import DeadLetterRecord
from connector.topology import Names
from schemas.severa_events import SeveraCustomerChanged, SeveraInvoiceReady
from schemas.work_hours import WorkHourEvent

WORK_HOURS_FLOW: Final = "work_hours"
"""Equal to ``connector.flows.work_hours.FLOW`` (a test holds them together)."""


@dataclass(frozen=True, slots=True)
class FlowContract:
    flow: str
    queue: Callable[[Names], str]
    schema: type[BaseModel] | None
    results_exchange: Callable[[Names], str] | None = None
    synced_key: str | None = None
    failed_key: str | None = None

    def event_id(self, record: DeadLetterRecord) -> str | None:
        """How the flow's result events name this message: the body's ``event_id``, else message_id."""
        try:
            data = json.loads(record.body or b"")
        except (ValueError, UnicodeDecodeError):
            data = None
        value = data.get("event_id") if isinstance(data, dict) else None
        found = value if isinstance(value, str) else record.message_id
        return found.lower() if found else None


CONTRACTS: Final[dict[str, FlowContract]] = {
    WORK_HOURS_FLOW: FlowContract(
        flow=WORK_HOURS_FLOW,
        queue=lambda names: names.workhours_queue,
        schema=WorkHourEvent,
        results_exchange=lambda names: names.results_exchange,
        synced_key="workhour.synced",
        failed_key="workhour.failed",
    ),
    # The accounting flows: an edit is validated against the Severa event they consume. Their
    # outcome events name the accounting side's own ids, not the dead letter's event id, so a
    # canary of theirs is confirmed by its own replay settling, not by a result event.
    "accounting_customers": FlowContract(
        flow="accounting_customers",
        queue=lambda names: names.accounting_customers_queue,
        schema=SeveraCustomerChanged,
    ),
    "accounting_invoices": FlowContract(
        flow="accounting_invoices",
        queue=lambda names: names.accounting_invoices_queue,
        schema=SeveraInvoiceReady,
    ),
    "severa_invoice_updates": FlowContract(
        flow="severa_invoice_updates",
        queue=lambda names: names.severa_invoice_updates_queue,
        schema=None,
    ),
}


def flows_by_queue(names: Names) -> dict[str, str]:
    """Queue name → flow, for dead letters that do not say (the broker dead-lettered them)."""
    return {contract.queue(names): flow for flow, contract in CONTRACTS.items()}


def contract_for(record: DeadLetterRecord, names: Names) -> FlowContract | None:
    if record.flow and record.flow in CONTRACTS:
        return CONTRACTS[record.flow]
    flow = flows_by_queue(names).get(record.original_queue)
    return CONTRACTS.get(flow) if flow else None
