"""The accounting event contracts: deterministic ids, strict decimals, unknown fields ignored."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pydantic
import pytest

from schemas.accounting_events import (
    EVENT_ID_NAMESPACE,
    INVOICE_PAID,
    INVOICE_TRANSFERRED,
    InvoicePaid,
    accounting_event_id,
)

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def test_the_namespace_is_the_documented_uuid5() -> None:
    assert (
        uuid.uuid5(uuid.NAMESPACE_URL, "https://severa-connector/schemas/accounting-events")
        == EVENT_ID_NAMESPACE
    )


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(
            (INVOICE_PAID, "1802", "2026-11-20"),
            (INVOICE_PAID, "1802", "2026-11-20"),
            True,
            id="the same payment is the same event",
        ),
        pytest.param(
            (INVOICE_PAID, "1802", "2026-11-20"),
            (INVOICE_PAID, "1802", "2026-11-21"),
            False,
            id="another payment day is another event",
        ),
        pytest.param(
            (INVOICE_PAID, "1802", "x"),
            (INVOICE_TRANSFERRED, "1802", "x"),
            False,
            id="another event type is another event",
        ),
    ],
)
def test_event_ids_are_deterministic(a: tuple[str, ...], b: tuple[str, ...], same: bool) -> None:
    assert (accounting_event_id(*a) == accounting_event_id(*b)) is same  # type: ignore[arg-type]


def test_an_event_id_needs_parts() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        accounting_event_id(INVOICE_PAID, "")


def paid(**fields: object) -> dict[str, object]:
    return {
        "event_id": str(accounting_event_id(INVOICE_PAID, "1802", "2026-11-20")),
        "occurred_at": NOW.isoformat(),
        "accounting_system": "netvisor",
        "invoice_number": "10001",
        "reference_number": "100013",
        "accounting_key": "1802",
        "paid_on": "2026-11-20",
        "amount": "125.50",
        **fields,
    }


def test_a_paid_event_round_trips_with_its_decimal_exact() -> None:
    event = InvoicePaid.model_validate_json(json.dumps(paid(amount="125.50", future_field=1)))
    assert event.amount == Decimal("125.50")
    assert json.loads(event.model_dump_json())["amount"] == "125.50"


def test_an_amount_as_a_json_number_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="decimal string"):
        InvoicePaid.model_validate_json(json.dumps(paid(amount=125.5)))
