"""Accounting events: what became of a Severa invoice or customer on the accounting side.

Published with confirms to the ``accounting.events`` topic exchange, routing key = ``event_type``,
JSON body, ``message_id`` = ``event_id``:

* ``accounting.invoice.transferred`` -- the invoice (or credit note) exists in the accounting
  system, created now or found there from an earlier attempt; the connector's own
  ``severa_invoice_updates`` flow consumes it to set the invoice's "transferred" status in Severa;
* ``accounting.invoice.failed`` -- the invoice was dead-lettered: it needs a person (the reason says
  what to fix); a notification, like ``workhour.failed``;
* ``accounting.invoice.paid`` -- the accounting system holds the invoice as paid; the
  ``severa_invoice_updates`` flow sets Severa's payment date and paid status;
* ``accounting.customer.synced`` -- a Severa customer was written to the accounting system.

Delivery is at least once: consumers de-duplicate on ``event_id``, which is deterministic (a UUIDv5
of the event type, the entity and its state, :func:`accounting_event_id`), so a republish after a
crash carries the same id. Money is a decimal string, as in :mod:`schemas.severa_events`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.severa_events import DecimalString, Text

SCHEMA_VERSION: Final = "1"

INVOICE_TRANSFERRED: Final = "accounting.invoice.transferred"
INVOICE_FAILED: Final = "accounting.invoice.failed"
INVOICE_PAID: Final = "accounting.invoice.paid"
CUSTOMER_SYNCED: Final = "accounting.customer.synced"

AccountingEventType = Literal[
    "accounting.invoice.transferred",
    "accounting.invoice.failed",
    "accounting.invoice.paid",
    "accounting.customer.synced",
]

#: ``uuid5(NAMESPACE_URL, "https://severa-connector/schemas/accounting-events")``; never change it.
EVENT_ID_NAMESPACE: Final = uuid.UUID("0e8f2ab2-d390-54e4-897a-19601256cadc")


def accounting_event_id(event_type: AccountingEventType, *parts: str) -> uuid.UUID:
    """``uuid5(EVENT_ID_NAMESPACE, "<event_type>:<part>:<part>…")``: the same state, the same id."""
    if not parts or not all(parts):
        raise ValueError("an accounting event id needs non-empty parts")
    return uuid.uuid5(EVENT_ID_NAMESPACE, ":".join((event_type, *parts)))


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_version: Literal["1"] = Field(default="1", description="Contract version.")
    event_id: uuid.UUID = Field(description="Deterministic: de-duplicate on it. Also the AMQP message_id.")
    occurred_at: AwareDatetime = Field(description="When the connector saw the change happen.")
    accounting_system: Text = Field(description="Which accounting system: 'netvisor'.")


class InvoiceTransferred(_Event):
    """The Severa invoice exists in the accounting system."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/accounting-invoice-transferred.json"}
    )

    event_type: Literal["accounting.invoice.transferred"] = INVOICE_TRANSFERRED
    severa_invoice_guid: uuid.UUID = Field(description="Severa's GUID of the invoice.")
    invoice_number: Text = Field(description="The invoice number, the same on both sides.")
    accounting_key: Text = Field(description="The accounting system's own id of the invoice.")
    created: bool = Field(
        description="True when this attempt created it; False when it was found there already (an "
        "earlier attempt's answer was lost, or it was entered by hand)."
    )
    is_credit_note: bool
    credit_note_matched_to: Text | None = Field(
        default=None, description="The credited invoice's number, when the credit note was matched to it."
    )
    total_including_vat: DecimalString


class InvoiceFailed(_Event):
    """The invoice was dead-lettered; ``reason`` and ``message`` say what to fix before a replay."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/accounting-invoice-failed.json"}
    )

    event_type: Literal["accounting.invoice.failed"] = INVOICE_FAILED
    severa_invoice_guid: uuid.UUID | None = Field(description="Null when the body was unreadable.")
    invoice_number: Text | None = None
    reason: Text
    message: Text


class InvoicePaid(_Event):
    """The accounting system holds the invoice as paid."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/accounting-invoice-paid.json"}
    )

    event_type: Literal["accounting.invoice.paid"] = INVOICE_PAID
    invoice_number: Text | None = Field(description="The invoice number, when the accounting side has it.")
    reference_number: Text | None = Field(description="The payment reference, the other key to match on.")
    accounting_key: Text
    paid_on: dt.date = Field(description="The day the invoice was paid (its last payment).")
    amount: DecimalString | None = None


class CustomerSynced(_Event):
    """A Severa customer was added to or updated in the accounting system."""

    model_config = ConfigDict(
        json_schema_extra={"$id": "https://severa-connector/schemas/accounting-customer-synced.json"}
    )

    event_type: Literal["accounting.customer.synced"] = CUSTOMER_SYNCED
    severa_customer_guid: uuid.UUID
    customer_code: Text
    accounting_key: Text
    outcome: Literal["created", "updated"]
