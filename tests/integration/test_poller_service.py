"""The change poller as a pod runs it (``role=poller``): real broker, the fake Severa over HTTP.

A test queue bound to ``severa.events`` stands in for the accounting flows that will consume it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.severa.fake.server import FakeSevera
from connector.config import Settings
from connector.service import ConnectorService
from connector.topology import Names
from tests.fixtures.severa_events import Events
from tests.harness import running_connector, wait_until

pytestmark = pytest.mark.integration

KEY = "poller-key-8c1d"


@pytest.fixture
async def demo_severa() -> AsyncIterator[FakeSevera]:
    """The fake with its demo organisation: customers, and invoices in Draft / Sent / Paid."""
    async with FakeSevera(api_key=KEY) as fake:
        yield fake


def poller_settings(amqp_url: str, names: Names, severa: FakeSevera, state_dir: Path, pod: str) -> Settings:
    return Settings(
        role="poller",
        severa={"url": severa.url, "api_key": KEY},
        rabbitmq={"url": amqp_url, "prefix": names.prefix},
        http={"host": "127.0.0.1", "port": 0},
        state_url=f"sqlite:///{state_dir / 'state.db'}",
        pod_name=pod,
        poller={"interval_seconds": 0.2, "invoice_status": "Sent", "organization_id": "demo-org"},
        circuit={"probe_initial_seconds": 0.05, "probe_max_seconds": 0.2},
    )


def active_customers(severa: FakeSevera) -> int:
    return sum(1 for a in severa.store.accounts if a.get("IsActive"))


def sent_invoices(severa: FakeSevera) -> int:
    return sum(1 for i in severa.store.invoices if i.get("InvoiceStatus") == "Sent" and i.get("Number"))


async def test_customers_and_ready_invoices_are_published_once_across_polls_and_restarts(
    amqp_url: str, topology: Names, demo_severa: FakeSevera, events: Events, tmp_path: Path
) -> None:
    severa = demo_severa
    settings = poller_settings(amqp_url, topology, severa, tmp_path, "poller-a")
    customers, invoices = active_customers(severa), sent_invoices(severa)
    assert customers > 0
    assert invoices > 0
    async with running_connector(settings) as pod:
        await wait_until(
            lambda: len(events.bodies) == customers + invoices, timeout=20, what="the first poll's events"
        )
        polls = pod.poller.polls
        await wait_until(lambda: pod.poller.polls >= polls + 3, what="three more polls")
        assert len(events.bodies) == customers + invoices  # nothing twice in steady state

        guid = next(a["GUID"] for a in severa.store.accounts if a.get("IsActive"))
        severa.change_customer(guid, {"Name": "Renamed Oy"})
        severa.change_customer(guid, {"Name": "Renamed again Oy"})  # twice inside one minute
        await wait_until(lambda: len(events.bodies) == customers + invoices + 1, what="the change")
        assert events.bodies[-1]["customer"]["name"] == "Renamed again Oy"

    async with running_connector(settings) as pod:  # a restart: the cursor and seen set persist
        polls = pod.poller.polls
        await wait_until(lambda: pod.poller.polls >= polls + 3, what="polls after the restart")
    assert all(n == 1 for n in events.ids().values()), events.ids().most_common(3)
    assert len(events.bodies) == customers + invoices + 1


async def test_two_pollers_never_both_poll(
    amqp_url: str, topology: Names, demo_severa: FakeSevera, events: Events, tmp_path: Path
) -> None:
    severa = demo_severa
    first = ConnectorService(poller_settings(amqp_url, topology, severa, tmp_path, "poller-a"))
    second = ConnectorService(poller_settings(amqp_url, topology, severa, tmp_path, "poller-b"))
    try:
        await first.start()
        await second.start()
        await wait_until(lambda: first.poller.polls + second.poller.polls >= 6, what="several polls")
        assert (first.poller.active, second.poller.active).count(True) == 1
        assert 0 in (first.poller.polls, second.poller.polls)
        standby = second if first.poller.active else first
        await (first if first.poller.active else second).close()  # the active pod goes away
        await wait_until(lambda: standby.poller.active, timeout=20, what="the standby to take over")
    finally:
        await first.close()
        await second.close()
    assert all(n == 1 for n in events.ids().values()), events.ids().most_common(3)
