"""The accounting flows end to end: the fake Severa and the fake Netvisor over real HTTP, the real broker.

Customers and invoices made in Severa reach Netvisor once each with their sums to the cent, Severa's
invoices get the transferred status, payments registered in Netvisor come back as Severa's payment
date and paid status, once; and the fake Netvisor refused nothing for element order, signature or
concurrency while it all happened (it does refuse each: tests/integration/test_fake_netvisor.py).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from adapters.netvisor.fake.server import FakeNetvisor
from adapters.severa.fake.server import FakeSevera
from connector.topology import Names
from tests.fixtures.accounting import (
    PAID,
    TRANSFERRED,
    accounting_settings,
    assert_nothing_refused_for_protocol,
    populate,
)
from tests.harness import running_connector, wait_until

pytestmark = pytest.mark.integration


def netvisor_totals(netvisor: FakeNetvisor) -> dict[str, Decimal]:
    return {invoice.number: invoice.amount for invoice in netvisor.store.invoices.values()}


def severa_totals(severa: FakeSevera, guids: list[str]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for guid in guids:
        invoice = severa.store.invoices[guid]
        rows = invoice["InvoiceRows"]
        totals[str(invoice["Number"])] = sum(
            (Decimal(str(r["rowVatExcludedAmount"])) + Decimal(str(r["rowVatAmount"])) for r in rows),
            Decimal(0),
        )
    return totals


async def test_customers_and_invoices_reach_netvisor_once_and_payments_come_back_once(
    amqp_url: str, topology: Names, severa_org: FakeSevera, netvisor: FakeNetvisor, tmp_path: Path
) -> None:
    customers, invoices = populate(severa_org, 6, 24, credit_every=6)
    settings = accounting_settings(
        amqp_url=amqp_url, names=topology, severa=severa_org, netvisor=netvisor, state_dir=tmp_path
    )
    async with running_connector(settings) as pod:
        await wait_until(
            lambda: all(severa_org.store.invoices[g]["InvoiceStatus"] == TRANSFERRED for g in invoices),
            timeout=60,
            what="every invoice transferred and marked so in Severa",
        )
        assert len(netvisor.store.invoices) == len(invoices)
        assert len(netvisor.store.customers) == len(customers)
        assert netvisor_totals(netvisor) == severa_totals(severa_org, invoices), "sums to the cent"
        credit_notes = [g for g in invoices if severa_org.store.invoices[g]["ReimburseInvoiceGUID"]]
        assert credit_notes, "the population has credit notes"
        assert len(netvisor.store.credit_note_matches) == len(credit_notes)

        paid = [i for i in netvisor.store.invoices.values() if i.amount > 0][:5]
        for invoice in paid:
            netvisor.mark_invoice_paid(invoice.netvisor_key)
        paid_numbers = {int(i.number) for i in paid}
        paid_guids = [g for g in invoices if severa_org.store.invoices[g]["Number"] in paid_numbers]
        await wait_until(
            lambda: all(severa_org.store.invoices[g]["InvoiceStatus"] == PAID for g in paid_guids),
            timeout=30,
            what="the payments back in Severa",
        )
        polls = pod._payments_poller.polls
        await wait_until(lambda: pod._payments_poller.polls >= polls + 3, what="three more payment polls")

    assert all(severa_org.store.invoices[g]["PaymentDate"] is not None for g in paid_guids)
    assert severa_org.calls["SetInvoicePaymentDate"] == len(paid_guids), "each payment written once"
    assert severa_org.calls["SetInvoiceStatus"] == len(invoices) + len(paid_guids)
    assert len(netvisor.store.invoices) == len(invoices), "no duplicate after the restart"
    assert_nothing_refused_for_protocol(netvisor)
