"""The change poller as a pod runs it (``role=poller``): real broker, the fake Severa over HTTP.

A test queue bound to ``severa.events`` stands in for the accounting flows that will consume it.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.severa.client import SeveraClient
from adapters.severa.fake.server import FakeSevera
from connector.bus import Bus, OutgoingMessage
from connector.config import Settings
from connector.flows.poller import Poller
from connector.flows.severa_feeds import CustomerFeed
from connector.service import ConnectorService
from connector.state.poller_state import Cursor, open_poller_state
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


def poller_settings(
    amqp_url: str, names: Names, severa: FakeSevera, state_dir: Path, pod: str, **poller: Any
) -> Settings:
    return Settings(
        role="poller",
        severa={"url": severa.url, "api_key": KEY},
        rabbitmq={"url": amqp_url, "prefix": names.prefix},
        http={"host": "127.0.0.1", "port": 0},
        state_url=f"sqlite:///{state_dir / 'state.db'}",
        pod_name=pod,
        poller={"interval_seconds": 0.2, "invoice_status": "Sent", "organization_id": "demo-org", **poller},
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


async def test_the_events_carry_severas_members_without_a_second_call(
    amqp_url: str, topology: Names, demo_severa: FakeSevera, events: Events, tmp_path: Path
) -> None:
    settings = poller_settings(amqp_url, topology, demo_severa, tmp_path, "poller-a", hour_entries=True)
    entries = len(demo_severa.store.hour_entries)
    expected = active_customers(demo_severa) + sent_invoices(demo_severa) + entries
    async with running_connector(settings):
        await wait_until(lambda: len(events.bodies) >= expected, timeout=20, what="the first poll's events")
    by_guid = {
        (body.get("invoice") or body.get("hour_entry") or body["customer"])["guid"]: body
        for body in events.bodies
    }
    invoice = by_guid["70000000-0000-4000-8000-000000000003"]["invoice"]
    assert (invoice["entry_date"], invoice["customer"]["number"], invoice["language_code"]) == (
        "2025-06-02",
        1001,
        "fi",
    )
    assert invoice["receiver"] == {
        "name": "Acme Oy",
        "address": {
            "lines": ["Esimerkkikatu 1"],
            "postal_code": "00100",
            "city": "Helsinki",
            "region": None,
            "country_code": None,
            "country_name": "Finland",
        },
        "contact_name": None,
        "contact_email": None,
    }
    invoiced = by_guid["80000000-0000-4000-8000-000000000001"]["hour_entry"]
    assert (invoiced["invoiced"], invoiced["invoice_guid"]) == (True, "70000000-0000-4000-8000-000000000001")
    assert by_guid["80000000-0000-4000-8000-000000000002"]["hour_entry"]["invoiced"] is False


async def test_the_poller_keeps_its_state_under_the_configured_table_prefix(
    amqp_url: str, topology: Names, demo_severa: FakeSevera, events: Events, tmp_path: Path
) -> None:
    settings = poller_settings(
        amqp_url, topology, demo_severa, tmp_path, "poller-a", state_table_prefix="tenant_a_"
    )
    async with running_connector(settings) as pod:
        await wait_until(lambda: pod.poller.polls >= 2, what="two polls")
        assert pod._poller_state.table_prefix == "tenant_a_"
        cursor = await pod._poller_state.load("customers")
        assert cursor.since is not None
    with sqlite3.connect(tmp_path / "state.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (polled,) = db.execute("SELECT count(*) FROM tenant_a_poller_cursor").fetchone()
    assert {"tenant_a_poller_cursor", "tenant_a_poller_seen", "tenant_a_poller_lease"} <= tables
    assert "poller_cursor" not in tables  # the unprefixed default was not used
    assert polled >= 1


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


class ManualClock:
    """One clock for the fake Severa and the poller: the test says when time passes."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now


async def _admin(http: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any]) -> Any:
    async with http.request(method, url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def test_an_address_changed_alone_over_the_admin_api_is_one_new_event_and_later_polls_add_none(
    amqp_url: str, topology: Names, events: Events, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with FakeSevera(api_key=KEY, seed={}, clock=clock) as severa:
        settings = poller_settings(amqp_url, topology, severa, tmp_path, "poller-a")
        state = open_poller_state(f"sqlite:///{tmp_path / 'poller.db'}")
        async with (
            aiohttp.ClientSession() as http,
            SeveraClient(settings.severa, registry=None) as client,
            Bus(amqp_url) as bus,
            state,
        ):
            guids = [
                (
                    await _admin(
                        http,
                        "POST",
                        f"{severa.admin_url}/customers",
                        {
                            "Name": f"Asiakas {n} Oy",
                            "VatNumber": "2000001-6",
                            "HeadOfficeAddress": {"Addressline": f"Esimerkkikatu {n}", "City": "Helsinki"},
                        },
                    )
                )["GUID"]
                for n in range(3)
            ]
            feed = CustomerFeed(
                client, exchange=topology.events_exchange, organization_id="demo-org", clock=clock
            )
            poller = Poller(
                feeds=[feed], state=state, cursor=Cursor, publish=bus.publish, holder="poller-a", clock=clock
            )

            async def poll(times: int, every: dt.timedelta) -> int:
                published = 0
                for _ in range(times):
                    clock.now += every
                    results = await poller.poll_once()
                    assert results is not None
                    published += sum(result.published for result in results)
                return published

            assert await poll(1, dt.timedelta(seconds=1)) == 3
            updated = {guid: severa.store.accounts[guid]["UpdatedTS"] for guid in guids}
            clock.now += dt.timedelta(minutes=10)
            moved = guids[1]
            await _admin(
                http,
                "PUT",
                f"{severa.admin_url}/customers/{moved}/head-office-address",
                {"Addressline": "Aleksanterinkatu 5"},
            )
            assert {guid: severa.store.accounts[guid]["UpdatedTS"] for guid in guids} == updated

            # Polls inside the overlap of the change, then a minute of short ones after it.
            assert await poll(4, dt.timedelta(seconds=20)) == 1
            assert await poll(30, dt.timedelta(seconds=2)) == 0

            sentinel = {"event_id": "sentinel", "event_type": "test.sentinel"}
            await bus.publish(
                topology.events_exchange,
                OutgoingMessage(
                    body=json.dumps(sentinel).encode(), routing_key="test.sentinel", message_id="sentinel"
                ),
            )
            await wait_until(lambda: sentinel in events.bodies, what="every event before the sentinel")
    arrived = [body for body in events.bodies if body is not sentinel and body != sentinel]
    assert len(arrived) == 4
    first = next(body for body in arrived if body["customer"]["guid"] == moved)
    changed = arrived[-1]
    assert changed["customer"]["guid"] == moved
    assert changed["customer"]["head_office_address"]["lines"] == ["Aleksanterinkatu 5"]
    assert changed["event_id"] != first["event_id"]
    assert changed["occurred_at"] == first["occurred_at"]
    assert all(n == 1 for n in events.ids().values())
