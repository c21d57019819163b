"""The accounting flows against in-memory ports: once in effect, lost answers, order, credit notes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connector.accounting_fakes import InMemoryAccounting
from connector.bus import OutgoingMessage
from connector.errors import AccountingRejected, AccountingUnavailable, Category, UnmappableRecord
from connector.flows.accounting_customers import AccountingCustomersFlow
from connector.flows.accounting_invoices import AccountingInvoicesFlow, CreditedInvoiceMissing
from connector.mapping.customers import customer_for_accounting
from connector.mapping.invoices import InvoiceOptions
from connector.processing import Delivery
from connector.state.memory import InMemoryLedger
from schemas.accounting_events import INVOICE_TRANSFERRED, InvoiceTransferred
from schemas.severa_events import (
    CreditedInvoice,
    SeveraCustomer,
    SeveraCustomerChanged,
    SeveraInvoice,
    SeveraInvoiceReady,
    SeveraSource,
)
from tests.accounting_factories import CREDITED_GUID, customer, invoice, row

SOURCE = SeveraSource(organization_id="test-org")
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, OutgoingMessage]] = []

    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        self.messages.append((exchange, message))

    def transferred(self) -> list[InvoiceTransferred]:
        return [
            InvoiceTransferred.model_validate_json(m.body)
            for _, m in self.messages
            if m.routing_key == INVOICE_TRANSFERRED
        ]


def customer_delivery(severa_customer: SeveraCustomer) -> Delivery:
    event = SeveraCustomerChanged.create(severa_customer, source=SOURCE, published_at=NOW)
    return Delivery(body=event.model_dump_json().encode(), routing_key=event.event_type, exchange="e")


def invoice_delivery(severa_invoice: SeveraInvoice) -> Delivery:
    event = SeveraInvoiceReady.create(severa_invoice, source=SOURCE, occurred_at=NOW, published_at=NOW)
    return Delivery(body=event.model_dump_json().encode(), routing_key=event.event_type, exchange="e")


@pytest.fixture
async def ledger() -> InMemoryLedger:
    store = InMemoryLedger()
    await store.setup()
    return store


def customers_flow(
    accounting: InMemoryAccounting, ledger: InMemoryLedger, sent: Sent
) -> AccountingCustomersFlow:
    return AccountingCustomersFlow(
        accounting=accounting, ledger=ledger, notify=sent, exchange="accounting.events", system="netvisor"
    )


def invoices_flow(
    accounting: InMemoryAccounting, ledger: InMemoryLedger, sent: Sent
) -> AccountingInvoicesFlow:
    return AccountingInvoicesFlow(
        accounting=accounting,
        ledger=ledger,
        publish=sent,
        notify=sent,
        exchange="accounting.events",
        system="netvisor",
        options=InvoiceOptions(),
    )


class TestCustomers:
    async def test_a_new_customer_is_added_once_however_often_its_event_arrives(
        self, ledger: InMemoryLedger
    ) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = customers_flow(accounting, ledger, sent)
        for _ in range(3):
            await flow.handle(customer_delivery(customer()))
        assert list(accounting.customers) == ["1001"]
        assert accounting.calls["add_customer"] == 1
        assert accounting.calls["update_customer"] == 0
        assert accounting.calls["find_customer"] == 1, "a duplicate costs no accounting call"

    async def test_a_change_is_written_whole_over_the_existing_customer(self, ledger: InMemoryLedger) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = customers_flow(accounting, ledger, sent)
        await flow.handle(customer_delivery(customer()))
        later = customer(name="Acme Group Oy", updated_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC))
        await flow.handle(customer_delivery(later))
        _, stored = accounting.customers["1001"]
        assert stored.name == "Acme Group Oy"
        assert stored.address is not None
        assert stored.address.city == "Helsinki", "every detail is sent again"
        assert accounting.calls["update_customer"] == 1

    async def test_an_older_change_arriving_late_never_overwrites_a_newer_one(
        self, ledger: InMemoryLedger
    ) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = customers_flow(accounting, ledger, sent)
        newer = customer(name="New name Oy", updated_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC))
        older = customer(name="Old name Oy", updated_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC))
        await flow.handle(customer_delivery(newer))
        await flow.handle(customer_delivery(older))
        assert accounting.customers["1001"][1].name == "New name Oy"

    async def test_a_change_under_the_same_stamp_with_other_content_is_written(
        self, ledger: InMemoryLedger
    ) -> None:
        """An address change may keep Severa's UpdatedTS: equal stamps compare content."""
        accounting, sent = InMemoryAccounting(), Sent()
        flow = customers_flow(accounting, ledger, sent)
        stamp = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
        await flow.handle(customer_delivery(customer(updated_at=stamp)))
        moved = customer(updated_at=stamp, email="billing@acme.example")
        await flow.handle(customer_delivery(moved))
        assert accounting.customers["1001"][1].email == "billing@acme.example"

    async def test_a_customer_without_a_number_is_parked_naming_the_field(
        self, ledger: InMemoryLedger
    ) -> None:
        flow = customers_flow(InMemoryAccounting(), ledger, Sent())
        with pytest.raises(UnmappableRecord) as caught:
            await flow.handle(customer_delivery(customer(number=None)))
        assert caught.value.category is Category.PERMANENT
        assert "number" in caught.value.field


class TestInvoices:
    async def test_an_invoice_is_created_once_with_its_customer_first(self, ledger: InMemoryLedger) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = invoices_flow(accounting, ledger, sent)
        delivery = invoice_delivery(invoice(row(1), row(2, rate="13.5", price="40.00")))
        for _ in range(3):
            await flow.handle(delivery)
        assert len(accounting.invoices) == 1
        assert "1001" in accounting.customers, "the customer was added from the invoice"
        assert accounting.calls["add_invoice"] == 1
        (stored,) = accounting.invoices.values()
        assert stored.invoice.total_including_vat == Decimal("125.50") + Decimal("45.40")
        assert [t.created for t in sent.transferred()] == [True, False, False]

    async def test_a_customer_known_to_the_ledger_costs_no_look_up(self, ledger: InMemoryLedger) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        await customers_flow(accounting, ledger, sent).handle(customer_delivery(customer()))
        flow = invoices_flow(accounting, ledger, sent)
        await flow.handle(invoice_delivery(invoice(number=801)))
        await flow.handle(invoice_delivery(invoice(number=802, guid=CREDITED_GUID)))
        assert accounting.calls["find_customer"] == 1, "only the customer flow looked it up"
        assert len(accounting.invoices) == 2

    async def test_a_customer_added_from_an_invoice_is_written_whole_by_its_own_event(
        self, ledger: InMemoryLedger
    ) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        await invoices_flow(accounting, ledger, sent).handle(invoice_delivery(invoice()))
        assert accounting.customers["1001"][1].email is None, "the invoice carries no e-mail"
        await customers_flow(accounting, ledger, sent).handle(customer_delivery(customer()))
        assert accounting.customers["1001"][1].email == "invoices@acme.example"
        assert accounting.calls["add_customer"] == 1

    async def test_a_lost_answer_after_the_invoice_landed_creates_no_second_one(
        self, ledger: InMemoryLedger
    ) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = invoices_flow(accounting, ledger, sent)
        delivery = invoice_delivery(invoice())
        accounting.customers["1001"] = ("7", customer_for_accounting(customer()))
        accounting.lose_next_answer = True
        with pytest.raises(AccountingUnavailable):
            await flow.handle(delivery)
        await flow.handle(delivery)  # the redelivery looks before it writes
        assert len(accounting.invoices) == 1
        assert sent.transferred()[-1].created is False

    async def test_an_invoice_found_with_another_total_is_refused_not_adopted(
        self, ledger: InMemoryLedger
    ) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = invoices_flow(accounting, ledger, sent)
        await flow.handle(invoice_delivery(invoice(number=500)))
        other_guid_same_number = invoice(row(1, price="999.00"), number=500, guid=CREDITED_GUID)
        with pytest.raises(AccountingRejected, match="already exists"):
            await flow.handle(invoice_delivery(other_guid_same_number))

    async def test_a_credit_note_waits_for_its_invoice_then_is_matched_to_it(
        self, ledger: InMemoryLedger
    ) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = invoices_flow(accounting, ledger, sent)
        credited = invoice(number=700, guid=CREDITED_GUID)
        note = invoice(
            row(1, quantity="-1"),
            number=701,
            is_credit_note=True,
            credited_invoice=CreditedInvoice(guid=CREDITED_GUID, number=700),
        )
        with pytest.raises(CreditedInvoiceMissing, match="transfer invoice 700 first") as caught:
            await flow.handle(invoice_delivery(note))
        assert caught.value.category is Category.TRANSIENT
        assert not accounting.invoices, "nothing is written while the credited invoice is missing"
        await flow.handle(invoice_delivery(credited))
        await flow.handle(invoice_delivery(note))
        note_key = next(k for k, s in accounting.invoices.items() if s.invoice.number == "701")
        credited_key = next(k for k, s in accounting.invoices.items() if s.invoice.number == "700")
        assert accounting.invoices[note_key].matched_to == credited_key
        assert len(accounting.invoices) == 2
        assert sent.transferred()[-1].credit_note_matched_to == "700"

    async def test_an_invoice_changed_after_its_transfer_is_parked(self, ledger: InMemoryLedger) -> None:
        accounting, sent = InMemoryAccounting(), Sent()
        flow = invoices_flow(accounting, ledger, sent)
        await flow.handle(invoice_delivery(invoice()))
        with pytest.raises(AccountingRejected) as caught:
            await flow.handle(invoice_delivery(invoice(row(1, price="120.00"))))
        assert caught.value.reason == "invoice_changed_after_transfer"
        assert len(accounting.invoices) == 1
