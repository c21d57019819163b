"""Production topology of the accounting side: what the poller publishes is never dropped unheard.

The poller publishes each change once; a ``severa.invoice.ready`` with no queue bound would be
returned by the broker, counted and never published again. So a poller-only pod with accounting on
declares the accounting flows' queues itself, and these tests run it with nothing else bound: no
consumer pod has ever run, yet every change waits in its queue. A credit note whose invoice leaves
the ready status before it keeps the credited invoice's number (one event, not a second one
without it).
"""

from __future__ import annotations

import json
from pathlib import Path

import aio_pika
import pytest

from adapters.netvisor.fake.server import FakeNetvisor
from adapters.severa.fake.server import FakeSevera
from connector.topology import Names
from tests.fixtures.accounting import TRANSFERRED, accounting_settings, populate
from tests.harness import broker_view, running_connector, wait_until

pytestmark = pytest.mark.integration


async def test_a_poller_pod_alone_keeps_every_change_for_consumers_that_start_later(
    amqp_url: str,
    topology: Names,
    amqp_connection: aio_pika.abc.AbstractConnection,
    severa_org: FakeSevera,
    netvisor: FakeNetvisor,
    tmp_path: Path,
) -> None:
    customers, invoices = populate(severa_org, 3, 8, credit_every=4)
    settings = accounting_settings(
        amqp_url=amqp_url,
        names=topology,
        severa=severa_org,
        netvisor=netvisor,
        state_dir=tmp_path,
        role="poller",
    )
    counts: dict[str, int] = {}

    async def refresh() -> None:
        for queue in (topology.accounting_invoices_queue, topology.accounting_customers_queue):
            counts[queue] = (await broker_view(amqp_connection, queue))[1]

    async with running_connector(settings) as pod:
        await wait_until(lambda: pod.poller is not None and pod.poller.polls >= 2, what="two polls")
        await refresh()
    assert counts[topology.accounting_invoices_queue] == len(invoices)
    assert counts[topology.accounting_customers_queue] == len(customers)
    assert not netvisor.store.invoices, "nothing consumed: the poller pod runs no accounting flow"


async def test_a_credit_note_keeps_its_invoices_number_after_that_invoice_was_transferred(
    amqp_url: str,
    topology: Names,
    amqp_connection: aio_pika.abc.AbstractConnection,
    severa_org: FakeSevera,
    netvisor: FakeNetvisor,
    tmp_path: Path,
) -> None:
    _, invoices = populate(severa_org, 1, 2, credit_every=1)
    invoice, credit_note = invoices
    settings = accounting_settings(
        amqp_url=amqp_url,
        names=topology,
        severa=severa_org,
        netvisor=netvisor,
        state_dir=tmp_path,
        role="poller",
    )
    async with running_connector(settings) as pod:
        await wait_until(lambda: pod.poller.polls >= 1, what="a poll")
        severa_org.mark_invoice_status(invoice, TRANSFERRED)  # the invoice left the ready status first
        polls = pod.poller.polls
        await wait_until(lambda: pod.poller.polls >= polls + 2, what="two more polls")
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(topology.accounting_invoices_queue, passive=True)
    bodies = []
    while (message := await queue.get(fail=False)) is not None:
        bodies.append(json.loads(message.body))
        await message.ack()
    await channel.close()
    notes = [b["invoice"] for b in bodies if b["invoice"]["guid"] == credit_note]
    assert len(notes) == 1, f"the credit note was published {len(notes)} times"
    assert notes[0]["credited_invoice"]["number"] is not None
