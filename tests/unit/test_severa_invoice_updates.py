"""The invoice write-back flow: statuses, payment dates and log lines into Severa, each once in effect."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from connector.accounting_fakes import InMemorySeveraInvoicing
from connector.errors import InvalidMessage
from connector.flows.outbound import outbound_key, stored_key
from connector.flows.severa_invoice_updates import (
    InvoiceStatuses,
    SeveraInvoiceMissing,
    SeveraInvoiceUpdatesFlow,
)
from connector.ports import Invoice
from connector.processing import Delivery
from connector.state.memory import InMemoryLedger
from schemas.accounting_events import (
    INVOICE_PAID,
    INVOICE_TRANSFERRED,
    InvoicePaid,
    InvoiceTransferred,
    accounting_event_id,
)

STATUSES = InvoiceStatuses(transferred="Transferred", paid="Paid")
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def invoice(guid: str, number: int, *, status: str = "Ready", reference: str | None = "1232") -> Invoice:
    return Invoice(
        guid=guid,
        number=number,
        status=status,
        payment_status=None,
        title=None,
        account_guid=str(uuid.uuid4()),
        account_name="Asiakas Oy",
        business_unit_guid=None,
        main_case_guid=None,
        date=dt.date(2026, 11, 1),
        due_date=dt.date(2026, 11, 15),
        payment_date=None,
        payment_term_days=14,
        currency_code="EUR",
        currency_rate=Decimal(1),
        reference_number=reference,
        our_reference=None,
        your_reference=None,
        receiver_vat_number=None,
        is_credit_note=False,
        credited_invoice_guid=None,
        is_tax_free=False,
        rows=(),
    )


def transferred(guid: str, number: str = "10001", key: str = "1802") -> Delivery:
    event = InvoiceTransferred(
        event_id=accounting_event_id(INVOICE_TRANSFERRED, guid, key),
        occurred_at=NOW,
        accounting_system="netvisor",
        severa_invoice_guid=uuid.UUID(guid),
        invoice_number=number,
        accounting_key=key,
        created=True,
        is_credit_note=False,
        total_including_vat=Decimal("125.50"),
    )
    return Delivery(body=event.model_dump_json().encode(), routing_key=INVOICE_TRANSFERRED, exchange="x")


def paid(
    number: str | None, key: str, *, reference: str | None = "1232", on: dt.date = dt.date(2026, 11, 20)
) -> Delivery:
    event = InvoicePaid(
        event_id=accounting_event_id(INVOICE_PAID, key, on.isoformat()),
        occurred_at=NOW,
        accounting_system="netvisor",
        invoice_number=number,
        reference_number=reference,
        accounting_key=key,
        paid_on=on,
        amount=Decimal("125.50"),
    )
    return Delivery(body=event.model_dump_json().encode(), routing_key=INVOICE_PAID, exchange="x")


@pytest.fixture
async def ledger() -> InMemoryLedger:
    store = InMemoryLedger()
    await store.setup()
    return store


GUID = "6f1c1a52-8d3e-4a8e-9a51-0c8f4f1f0a01"


class TestTransferred:
    async def test_sets_the_status_and_logs_it_once_however_often_it_arrives(
        self, ledger: InMemoryLedger
    ) -> None:
        severa = InMemorySeveraInvoicing([invoice(GUID, 10001)])
        flow = SeveraInvoiceUpdatesFlow(severa=severa, ledger=ledger, statuses=STATUSES, system="netvisor")
        for _ in range(3):
            await flow.handle(transferred(GUID))
        assert severa.invoices[GUID].status == "Transferred"
        assert severa.calls["set_invoice_status"] == 1
        assert severa.log[GUID] == ["Transferred to netvisor (id 1802) by severa-connector"]

    async def test_a_late_transferred_never_moves_a_paid_invoice_back(self, ledger: InMemoryLedger) -> None:
        severa = InMemorySeveraInvoicing([invoice(GUID, 10001, status="Paid")])
        flow = SeveraInvoiceUpdatesFlow(severa=severa, ledger=ledger, statuses=STATUSES, system="netvisor")
        await flow.handle(transferred(GUID))
        assert severa.invoices[GUID].status == "Paid"
        assert severa.calls["set_invoice_status"] == 0

    async def test_an_invoice_deleted_in_severa_is_a_permanent_error_naming_it(
        self, ledger: InMemoryLedger
    ) -> None:
        flow = SeveraInvoiceUpdatesFlow(
            severa=InMemorySeveraInvoicing(), ledger=ledger, statuses=STATUSES, system="netvisor"
        )
        with pytest.raises(SeveraInvoiceMissing, match=GUID):
            await flow.handle(transferred(GUID))


class TestPaid:
    async def test_matched_through_the_outbound_ledger_sets_date_and_status_once(
        self, ledger: InMemoryLedger
    ) -> None:
        await ledger.mark_applied(outbound_key("invoice", GUID), 1, stored_key("netvisor", "1802"))
        severa = InMemorySeveraInvoicing([invoice(GUID, 10001, status="Transferred")])
        flow = SeveraInvoiceUpdatesFlow(severa=severa, ledger=ledger, statuses=STATUSES, system="netvisor")
        for _ in range(2):
            await flow.handle(paid("10001", "1802"))
        assert severa.invoices[GUID].status == "Paid"
        assert severa.invoices[GUID].payment_date == dt.date(2026, 11, 20)
        assert severa.calls["set_invoice_payment_date"] == 1
        assert severa.calls["get_invoice_by_number"] == 0

    async def test_matched_by_number_and_reference_when_the_ledger_does_not_know_it(
        self, ledger: InMemoryLedger
    ) -> None:
        severa = InMemorySeveraInvoicing([invoice(GUID, 10001, reference="1232")])
        flow = SeveraInvoiceUpdatesFlow(severa=severa, ledger=ledger, statuses=STATUSES, system="netvisor")
        await flow.handle(paid("10001", "77", reference="12 32"))
        assert severa.invoices[GUID].status == "Paid"

    @pytest.mark.parametrize(
        ("number", "reference"),
        [
            pytest.param("10001", "4321", id="the same number with another reference is another invoice"),
            pytest.param("99999", "1232", id="a number Severa does not have is not ours"),
            pytest.param(None, "1232", id="an invoice without a number is not ours"),
        ],
    )
    async def test_payments_of_invoices_that_are_not_severas_are_ignored(
        self, ledger: InMemoryLedger, number: str | None, reference: str
    ) -> None:
        severa = InMemorySeveraInvoicing([invoice(GUID, 10001, reference="1232")])
        flow = SeveraInvoiceUpdatesFlow(severa=severa, ledger=ledger, statuses=STATUSES, system="netvisor")
        await flow.handle(paid(number, "77", reference=reference))
        assert severa.invoices[GUID].status == "Ready"
        assert severa.calls["set_invoice_status"] == 0


async def test_an_unknown_routing_key_is_an_invalid_message(ledger: InMemoryLedger) -> None:
    flow = SeveraInvoiceUpdatesFlow(
        severa=InMemorySeveraInvoicing(), ledger=ledger, statuses=STATUSES, system="netvisor"
    )
    with pytest.raises(InvalidMessage, match="not an invoice update"):
        await flow.handle(Delivery(body=b"{}", routing_key="accounting.invoice.lost", exchange="x"))
