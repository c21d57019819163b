"""Export the message contracts: one JSON Schema per model plus an AsyncAPI 2.6 document.

The pydantic models are the single source of truth; the files under ``schemas/generated/`` are
derived (``severa-connector schemas export``) and a test fails when they drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.accounting_events import CustomerSynced, InvoiceFailed, InvoicePaid, InvoiceTransferred
from schemas.dead_letter import DeadLetterHeaders, ReplayHeaders
from schemas.dlq import DeadLetterExport, DlqAuditRecord
from schemas.results import WorkHourFailed, WorkHourSynced
from schemas.severa_events import SeveraCustomerChanged, SeveraHourEntryChanged, SeveraInvoiceReady
from schemas.work_hours import WorkHourEvent

CONTRACTS: dict[str, type[BaseModel]] = {
    "WorkHourEvent": WorkHourEvent,
    "WorkHourSynced": WorkHourSynced,
    "WorkHourFailed": WorkHourFailed,
    "DeadLetterHeaders": DeadLetterHeaders,
    "ReplayHeaders": ReplayHeaders,
    "DeadLetterExport": DeadLetterExport,
    "DlqAuditRecord": DlqAuditRecord,
    "SeveraCustomerChanged": SeveraCustomerChanged,
    "SeveraInvoiceReady": SeveraInvoiceReady,
    "SeveraHourEntryChanged": SeveraHourEntryChanged,
    "AccountingInvoiceTransferred": InvoiceTransferred,
    "AccountingInvoiceFailed": InvoiceFailed,
    "AccountingInvoicePaid": InvoicePaid,
    "AccountingCustomerSynced": CustomerSynced,
}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True)


def asyncapi() -> dict[str, Any]:
    """The channels the connector consumes and publishes, with their payload schemas."""

    def message(name: str, routing_keys: str, summary: str) -> dict[str, Any]:
        return {
            "name": name,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": f"./{name}.schema.json"},
            "bindings": {"amqp": {"deliveryMode": 2, "routingKeys": routing_keys}},
        }

    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "severa-connector",
            "version": "1",
            "description": "Work-hour events in, result events out; Severa change events out on "
            "severa.events; accounting outcomes on accounting.events; dead letters carry x-dl-* headers "
            "(see DeadLetterHeaders.schema.json).",
        },
        "defaultContentType": "application/json",
        "channels": {
            "workhours": {
                "description": "Topic exchange where external systems publish work-hour events.",
                "bindings": {
                    "amqp": {"is": "routingKey", "exchange": {"name": "workhours", "type": "topic"}}
                },
                "publish": {
                    "summary": "External systems publish; the connector consumes from q.workhours.",
                    "message": message(
                        "WorkHourEvent",
                        "workhour.created | workhour.updated | workhour.deleted",
                        "A work-hour entry changed in a source system.",
                    ),
                },
            },
            "workhours.results": {
                "description": "Topic exchange where the connector reports what it did with each event.",
                "bindings": {
                    "amqp": {"is": "routingKey", "exchange": {"name": "workhours.results", "type": "topic"}}
                },
                "subscribe": {
                    "message": {
                        "oneOf": [
                            message("WorkHourSynced", "workhour.synced", "Severa matches the event."),
                            message("WorkHourFailed", "workhour.failed", "The event was dead-lettered."),
                        ]
                    }
                },
            },
            "severa.events": {
                "description": "Topic exchange where the connector publishes what changed in Severa, "
                "routing key = event_type. message_id = event_id, deterministic per change: consumers "
                "de-duplicate on it (at-least-once delivery).",
                "bindings": {
                    "amqp": {"is": "routingKey", "exchange": {"name": "severa.events", "type": "topic"}}
                },
                "subscribe": {
                    "summary": "The connector's Severa poller publishes; the accounting flows and anyone "
                    "else bind their own queues.",
                    "message": {
                        "oneOf": [
                            message(
                                "SeveraCustomerChanged",
                                "severa.customer.changed",
                                "A Severa customer was created or changed; the whole customer.",
                            ),
                            message(
                                "SeveraInvoiceReady",
                                "severa.invoice.ready",
                                "A Severa invoice reached the configured ready status; the whole invoice.",
                            ),
                            message(
                                "SeveraHourEntryChanged",
                                "severa.hourentry.changed",
                                "A Severa hour entry was created or changed; the whole entry.",
                            ),
                        ]
                    },
                },
            },
            "accounting.events": {
                "description": "Topic exchange where the accounting flows publish what became of Severa's "
                "invoices and customers in the accounting system, routing key = event_type. message_id = "
                "event_id, deterministic: de-duplicate on it (at-least-once delivery).",
                "bindings": {
                    "amqp": {"is": "routingKey", "exchange": {"name": "accounting.events", "type": "topic"}}
                },
                "subscribe": {
                    "summary": "The accounting flows and the payments poller publish; the connector's own "
                    "severa_invoice_updates flow consumes transferred and paid (q.severa.invoice-updates).",
                    "message": {
                        "oneOf": [
                            message(
                                "AccountingInvoiceTransferred",
                                "accounting.invoice.transferred",
                                "The Severa invoice exists in the accounting system.",
                            ),
                            message(
                                "AccountingInvoiceFailed",
                                "accounting.invoice.failed",
                                "The invoice was dead-lettered; the reason says what to fix.",
                            ),
                            message(
                                "AccountingInvoicePaid",
                                "accounting.invoice.paid",
                                "The accounting system holds the invoice as paid.",
                            ),
                            message(
                                "AccountingCustomerSynced",
                                "accounting.customer.synced",
                                "A Severa customer was added to or updated in the accounting system.",
                            ),
                        ]
                    },
                },
            },
            "dlx": {
                "description": "Direct exchange of dead letters, routing key = the queue they came from "
                "(q.workhours → q.workhours.dlq). Body and properties are the original message's.",
                "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "dlx", "type": "direct"}}},
                "subscribe": {
                    "summary": "The connector dead-letters; `severa-connector dlq` ingests q.workhours.dlq.",
                    "message": {
                        "name": "DeadLetter",
                        "summary": "The original message with the x-dl-* envelope headers.",
                        "headers": {"$ref": "./DeadLetterHeaders.schema.json"},
                        "payload": {"$ref": "./WorkHourEvent.schema.json"},
                    },
                },
            },
            "dlq.audit": {
                "description": "Fanout exchange of the dlq tools' audit records (queue q.dlq.audit); "
                "one 'started' and one 'finished' record per replay, edit, purge, import, export.",
                "bindings": {
                    "amqp": {"is": "routingKey", "exchange": {"name": "dlq.audit", "type": "fanout"}}
                },
                "subscribe": {
                    "message": message(
                        "DlqAuditRecord", "replay | edit | purge | import | export", "Who did what."
                    ),
                },
            },
        },
    }


def export_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, model in CONTRACTS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    path = directory / "asyncapi.json"
    path.write_text(json.dumps(asyncapi(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(path)
    return written
