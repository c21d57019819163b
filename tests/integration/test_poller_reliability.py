"""The change poller under stress: scale, restarts, SIGKILL, outages, the call budget, two pollers.

Real RabbitMQ, the fake Severa over real SOAP/HTTP, the real poller (in-process, or as a separate
process where it must be killed). A test queue bound to ``severa.events`` stands in for the flows
that consume the events; every test ends by comparing what arrived with what Severa holds: each
event id once (or, after a SIGKILL, again only as a republish of the same id), the latest state of
every customer and ready invoice among them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.severa.client import SeveraClient
from adapters.severa.fake.faults import Phase
from adapters.severa.fake.server import FakeSevera
from connector.config import Settings
from connector.observability import Metrics
from connector.ports import Customer, Invoice
from connector.service import ConnectorService
from connector.state.poller_state import SqlPollerState
from connector.topology import Names
from tests.fixtures.severa_events import Events
from tests.harness import running_connector, wait_until
from tests.postgres_state import drop_state

pytestmark = pytest.mark.integration

KEY = "poller-reliability-key-41d7"
READY = "Ready"
CUSTOMER_CHANGED = "severa.customer.changed"
INVOICE_READY = "severa.invoice.ready"
POSTGRES_DSN = os.environ.get("LEDGER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]

#: An organisation with no customers or invoices yet, and a status that numbers invoices ("ready").
SEED: dict[str, Any] = {
    "invoice_statuses": [
        {
            "Name": "Draft",
            "SortOrder": 1,
            "IsActive": True,
            "IsDefault": True,
            "HasInvoiceNumber": False,
            "IsPaid": False,
            "IsReadOnly": False,
            "IsSent": False,
            "IsWaitingPayment": False,
        },
        {
            "Name": READY,
            "SortOrder": 2,
            "IsActive": True,
            "IsDefault": False,
            "HasInvoiceNumber": True,
            "IsPaid": False,
            "IsReadOnly": False,
            "IsSent": False,
            "IsWaitingPayment": False,
        },
    ]
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSevera]:
    async with FakeSevera(api_key=KEY, seed=SEED) as severa:
        yield severa
    assert severa.internal_errors == []


def poller_settings(
    amqp_url: str,
    names: Names,
    fake: FakeSevera,
    state_url: str,
    pod: str = "poller-a",
    dlq_table_prefix: str | None = None,
    **poller: Any,
) -> Settings:
    # The pods' heartbeats go into the dead-letter store beside the ledger; on the shared PostgreSQL
    # database a test gives it a prefix of its own and drops it (dlq_table_prefix).
    extra: dict[str, Any] = {}
    if dlq_table_prefix is not None:
        extra["dlq"] = {"store_table_prefix": dlq_table_prefix}
    return Settings.model_validate(
        {
            **extra,
            "role": "poller",
            "severa": {"url": fake.url, "api_key": KEY, "timeout_seconds": 10, "connect_timeout_seconds": 2},
            "rabbitmq": {"url": amqp_url, "prefix": names.prefix},
            "http": {"enabled": False},
            "state_url": state_url,
            "pod_name": pod,
            "poller": {
                "interval_seconds": 0.2,
                "invoice_status": READY,
                "organization_id": "test-org",
                **poller,
            },
            "circuit": {"probe_initial_seconds": 0.05, "probe_max_seconds": 0.2},
        }
    )


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'state.db'}"


ROW = {"articleName": "Dev", "deliveredQuantity": 2, "unitPriceAmount": 100, "rowVatRatePercent": 25.5}


def populate(fake: FakeSevera, customers: int, invoices: int) -> tuple[list[str], list[str]]:
    """Customers with head-office addresses, and numbered invoices in the ready status."""
    customer_guids = [
        fake.add_customer(
            {"Name": f"Customer {i} v0", "VatNumber": "2000001-6"},
            head_office_address={
                "Addressline": f"Esimerkkikatu {i}",
                "PostalCode": "00100",
                "City": "Helsinki",
                "CountryName": "Finland",
            },
        )["GUID"]
        for i in range(customers)
    ]
    invoice_guids = [
        fake.add_invoice(
            {
                "AccountGUID": customer_guids[i % customers],
                "Date": "2026-01-05",
                "Number": 100_000 + i,
                "InvoiceStatus": READY,
                "YourReference": "v0",
                "InvoiceRows": [ROW],
            }
        )["GUID"]
        for i in range(invoices)
    ]
    return customer_guids, invoice_guids


def rename(fake: FakeSevera, guids: list[str], version: int) -> None:
    for guid in guids:
        name = str(fake.store.accounts[guid]["Name"]).rsplit(" v", 1)[0]
        fake.change_customer(guid, {"Name": f"{name} v{version}"})


def rereference(fake: FakeSevera, guids: list[str], version: int) -> None:
    for guid in guids:
        fake.change_invoice(guid, {"YourReference": f"v{version}"})


def expected_latest(fake: FakeSevera) -> tuple[dict[str, str], dict[str, str | None]]:
    customers = {str(a["GUID"]): str(a["Name"]) for a in fake.store.accounts if a.get("IsActive")}
    invoices = {
        str(i["GUID"]): i.get("YourReference")
        for i in fake.store.invoices
        if i.get("InvoiceStatus") == READY and i.get("Number")
    }
    return customers, invoices


def up_to_date(events: Events, fake: FakeSevera) -> bool:
    return events.latest() == expected_latest(fake)


def assert_latest_states(events: Events, fake: FakeSevera) -> None:
    got_customers, got_invoices = events.latest()
    want_customers, want_invoices = expected_latest(fake)
    stale = {g: (got_customers.get(g), n) for g, n in want_customers.items() if got_customers.get(g) != n}
    assert not stale, f"{len(stale)} customers not in their latest state, e.g. {list(stale.items())[:3]}"
    stale_inv = {g: (got_invoices.get(g), r) for g, r in want_invoices.items() if got_invoices.get(g) != r}
    assert not stale_inv, (
        f"{len(stale_inv)} invoices not in their latest state: {list(stale_inv.items())[:3]}"
    )


async def polls_after(service: ConnectorService, count: int, *, timeout: float = 20.0) -> None:
    start = service.poller.polls
    await wait_until(lambda: service.poller.polls >= start + count, timeout=timeout, what=f"{count} polls")


# --------------------------------------------------------------------------------------------------
# 1. Scale


@pytest.mark.slow
async def test_1000_invoices_and_300_customers_changed_during_polls_and_restarts_arrive_once_each(
    amqp_url: str, topology: Names, fake: FakeSevera, events: Events, tmp_path: Path
) -> None:
    customers, invoices = populate(fake, 300, 1000)
    settings = poller_settings(amqp_url, topology, fake, sqlite_url(tmp_path))
    expected = 1300
    async with running_connector(settings) as pod:
        await wait_until(lambda: len(events.bodies) >= expected, timeout=30, what="the first 1,300 events")

        # Changes made while a poll runs: each list is answered, then held back a while; the
        # entities change in between (twice each, inside one minute), after the poller's fetch.
        fake.faults.latency(0.5, operation="GetCustomersChangedSince", phase=Phase.AFTER, times=1)
        fake.faults.latency(0.5, operation="GetInvoicesByStatus", phase=Phase.AFTER, times=1)
        asked_customers, asked_invoices = (
            fake.calls["GetCustomersChangedSince"],
            fake.calls["GetInvoicesByStatus"],
        )
        await wait_until(
            lambda: fake.calls["GetCustomersChangedSince"] > asked_customers, what="a customer poll"
        )
        rename(fake, customers[:50], 1)
        rename(fake, customers[:50], 2)
        await wait_until(lambda: fake.calls["GetInvoicesByStatus"] > asked_invoices, what="an invoice poll")
        rereference(fake, invoices[:100], 1)
        rereference(fake, invoices[:100], 2)
        expected += 50 + 100
        await wait_until(lambda: up_to_date(events, fake), timeout=20, what="the changes made mid-poll")

    # Restart, then change others, and some of the same customers a third time inside the minute.
    async with running_connector(settings) as pod:
        rename(fake, customers[:20] + customers[100:200], 3)
        rereference(fake, invoices[100:300], 3)
        expected += 120 + 200
        await wait_until(lambda: up_to_date(events, fake), timeout=20, what="the changes after a restart")

        # Restarted while it publishes: what was confirmed before the stop is not published again.
        rereference(fake, invoices[300:700], 4)
        expected += 400
        await wait_until(
            lambda: (
                sum(1 for b in events.bodies[-400:] if b.get("invoice", {}).get("your_reference") == "v4")
                >= 50
            ),
            timeout=20,
            what="the restart to fall inside a publish",
        )
    async with running_connector(settings) as pod:
        await wait_until(lambda: up_to_date(events, fake), timeout=20, what="the rest after the restart")
        await polls_after(pod, 2)  # steady state: nothing more
    async with running_connector(settings) as pod:
        await polls_after(pod, 2)

    republished = events.republished()
    assert not republished, f"{len(republished)} ids arrived more than once: {events.describe(republished)}"
    assert len(events.bodies) == expected, f"{len(events.bodies)} events, expected {expected}"
    assert_latest_states(events, fake)


# --------------------------------------------------------------------------------------------------
# 2. SIGKILL between publish and cursor save


def poller_process(
    amqp_url: str, names: Names, fake: FakeSevera, state_dir: Path
) -> Callable[[], subprocess.Popen[bytes]]:
    """A starter for ``python -m connector run --role poller`` as a real process (to be killed)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")},
        "PYTHONPATH": str(ROOT),
        "SEVERA_CONNECTOR_SEVERA__URL": fake.url,
        "SEVERA_CONNECTOR_SEVERA__API_KEY": KEY,
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": names.prefix,
        "SEVERA_CONNECTOR_STATE_URL": sqlite_url(state_dir),
        "SEVERA_CONNECTOR_POD_NAME": "poller-proc",
        "SEVERA_CONNECTOR_HTTP__ENABLED": "false",
        "SEVERA_CONNECTOR_LOG__LEVEL": "INFO",
        "SEVERA_CONNECTOR_LOG__FORMAT": "json",
        "SEVERA_CONNECTOR_POLLER__INTERVAL_SECONDS": "0.2",
        "SEVERA_CONNECTOR_POLLER__INVOICE_STATUS": READY,
        "SEVERA_CONNECTOR_POLLER__ORGANIZATION_ID": "test-org",
    }

    def start() -> subprocess.Popen[bytes]:
        with open(state_dir / "poller.log", "ab") as log_file:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "connector", "run", "--role", "poller"],
                env=env,
                cwd=state_dir,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )

    return start


@pytest.mark.slow
async def test_a_poller_killed_between_publish_and_cursor_save_republishes_and_never_skips(
    amqp_url: str, topology: Names, fake: FakeSevera, events: Events, tmp_path: Path
) -> None:
    customers, invoices = populate(fake, 300, 600)
    # A long list call: the kill lands in a poll that has published part of what it fetched.
    fake.faults.latency(0.3, operation="GetInvoicesByStatus")
    start = poller_process(amqp_url, topology, fake, tmp_path)
    process = start()
    kills = 0
    try:
        for threshold in (150, 600):  # mid customers, then mid invoices: neither cursor saved yet
            await wait_until(events.at_least(threshold), timeout=30, what=f"{threshold} events")
            process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(process.wait, 10) == -signal.SIGKILL
            kills += 1
            rename(fake, customers[250:], 1)  # changed while it is down
            process = start()
        rereference(fake, invoices[:100], 1)  # and while it runs again
        await wait_until(lambda: up_to_date(events, fake), timeout=30, what="every latest state")
        polls_seen = fake.calls["GetInvoicesByStatus"]
        await wait_until(lambda: fake.calls["GetInvoicesByStatus"] >= polls_seen + 2, what="two more polls")
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    log = (tmp_path / "poller.log").read_text()
    assert "Traceback" not in log
    assert kills == 2
    assert_latest_states(events, fake)
    republished = events.republished()
    distinct = len(events.ids())
    # De-duplicated by event id (what consumers do), every change arrived exactly once.
    assert distinct == 300 + 600 + 50 + 100, f"{distinct} distinct event ids"
    assert all(n == 2 for n in republished.values()), f"republished more than once: {republished}"
    assert republished, "nothing was republished: neither kill fell between a publish and its cursor save"
    print(f"republished after SIGKILL: {len(republished)} event ids of {distinct}")
    assert len(events.bodies) == distinct + len(republished), (
        f"{len(events.bodies)} events for {distinct} ids; {len(republished)} ids republished after "
        "the kills, each once (the same event id)"
    )


# --------------------------------------------------------------------------------------------------
# 3. Outage


@pytest.mark.slow
@pytest.mark.parametrize(
    "outage",
    [
        pytest.param("http_503", id="Severa answers 503 Service Unavailable"),
        pytest.param("drop", id="Severa drops every connection"),
        pytest.param("wrong_key", id="the API key is regenerated"),
    ],
)
async def test_an_outage_of_severa_pauses_the_poller_and_loses_nothing(
    amqp_url: str, topology: Names, fake: FakeSevera, events: Events, tmp_path: Path, outage: str
) -> None:
    customers, invoices = populate(fake, 30, 60)
    settings = poller_settings(amqp_url, topology, fake, sqlite_url(tmp_path))
    async with running_connector(settings) as pod:
        await wait_until(lambda: len(events.bodies) == 90, timeout=20, what="the first 90 events")
        await polls_after(pod, 1)
        state = pod._poller_state
        before = {kind: await state.load(kind) for kind in ("customers", "invoices")}

        rule = None
        if outage == "http_503":
            rule = fake.faults.http_error(503)
        elif outage == "drop":
            rule = fake.faults.drop()
        else:
            fake.set_api_key("regenerated-key-0000")
        rename(fake, customers[:10], 1)  # changed during the outage
        rereference(fake, invoices[:10], 1)
        await wait_until(
            lambda: any("poller paused" in r for r in pod.readiness().reasons),
            timeout=10,
            what=f"readiness to say the poller is paused ({pod.readiness().reasons})",
        )
        polls, arrived = pod.poller.polls, len(events.bodies)
        failed_calls = sum(fake.calls.values())
        window = time.monotonic() + 2.0
        while time.monotonic() < window:  # the outage's length is what is measured, not a sync point
            assert pod.liveness().ready, pod.liveness().reasons
            assert not pod.readiness().ready
            await asyncio.sleep(0.1)
        reasons = pod.readiness().reasons
        assert pod.poller.polls == polls, "a poll completed during the outage"
        assert len(events.bodies) == arrived, "events were published during the outage"
        for kind, cursor in before.items():
            assert await state.load(kind) == cursor, f"the {kind} cursor moved during the outage"
        retried = sum(fake.calls.values()) - failed_calls
        assert retried >= 1, "the poller stopped trying"

        if rule is not None:
            fake.faults.remove(rule.id)
        else:
            fake.set_api_key(KEY)
        await wait_until(lambda: up_to_date(events, fake), timeout=20, what="the changes made in the outage")
        await wait_until(lambda: pod.readiness().ready, what="ready again")
        assert pod.liveness().ready
    assert not events.republished()
    assert len(events.bodies) == 90 + 20
    assert reasons, "readiness gave no reason while paused"
    assert all(r.startswith("poller paused: ") for r in reasons), reasons


# --------------------------------------------------------------------------------------------------
# 4. Budget


@pytest.mark.slow
async def test_a_poll_never_makes_more_severa_calls_than_its_budget(
    amqp_url: str, topology: Names, fake: FakeSevera, events: Events, tmp_path: Path
) -> None:
    budget = 5
    customers, _ = populate(fake, 40, 10)  # 40 head-office look-ups: many polls' worth
    settings = poller_settings(amqp_url, topology, fake, sqlite_url(tmp_path), max_calls_per_poll=budget)
    per_poll: list[int] = []
    async with running_connector(settings) as pod:
        last_polls, last_calls = 0, 0

        def record() -> None:
            nonlocal last_polls, last_calls
            polls, calls = pod.poller.polls, sum(fake.calls.values())
            if polls > last_polls:
                # Polls are an interval apart: each increment is seen before the next poll starts.
                assert polls == last_polls + 1, "two polls between samples: calls cannot be attributed"
                per_poll.append(calls - last_calls)
                last_polls, last_calls = polls, calls

        def sampled(predicate: Callable[[], bool]) -> Callable[[], bool]:
            def check() -> bool:
                record()
                return predicate()

            return check

        await wait_until(sampled(lambda: up_to_date(events, fake)), timeout=30, what="every customer")
        rename(fake, customers[:12], 1)
        await wait_until(sampled(lambda: up_to_date(events, fake)), timeout=30, what="the changed customers")
        polls = pod.poller.polls
        await wait_until(sampled(lambda: pod.poller.polls >= polls + 3), what="steady polls")
    assert max(per_poll) <= budget, f"calls per poll: {per_poll}"
    assert len([n for n in per_poll if n == budget]) >= 10, f"the budget never bound: {per_poll}"
    assert not events.republished()
    assert len(events.bodies) == 40 + 10 + 12
    print(f"Severa calls per poll (budget {budget}): {per_poll}")


# --------------------------------------------------------------------------------------------------
# 5. Two pollers on one PostgreSQL state store


class RecordingSevera(SeveraClient):
    """The real client, noting when each poll's list call ran and for which pod."""

    def __init__(self, settings: Settings, metrics: Metrics, log: list[tuple[str, float, float]]) -> None:
        super().__init__(settings.severa, registry=metrics.registry)
        self._pod = settings.pod_name
        self._log = log

    async def get_customers_changed_since(
        self, since: Any, *, include_inactive: bool = False, include_address_changes: bool = True
    ) -> list[Customer]:
        began = time.monotonic()
        try:
            return await super().get_customers_changed_since(
                since, include_inactive=include_inactive, include_address_changes=include_address_changes
            )
        finally:
            self._log.append((self._pod, began, time.monotonic()))

    async def get_invoices_by_status(
        self, status: str, *, business_unit_guid: str | None = None, max_invoices: int | None = None
    ) -> list[Invoice]:
        began = time.monotonic()
        try:
            return await super().get_invoices_by_status(
                status, business_unit_guid=business_unit_guid, max_invoices=max_invoices
            )
        finally:
            self._log.append((self._pod, began, time.monotonic()))


@pytest.fixture
async def pg_prefix() -> AsyncIterator[str]:
    """A table prefix of this test's own on the PostgreSQL state store (``poller.state_table_prefix``);
    its tables are dropped at teardown."""
    prefix = f"t_{uuid.uuid4().hex[:10]}_"
    yield prefix
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await drop_state(conn, prefix, dead_letters=True)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_two_pollers_on_one_postgres_state_store_never_both_poll(
    amqp_url: str, topology: Names, fake: FakeSevera, events: Events, pg_prefix: str
) -> None:
    customers, invoices = populate(fake, 50, 100)
    calls: list[tuple[str, float, float]] = []
    pods = [
        ConnectorService(
            poller_settings(
                amqp_url,
                topology,
                fake,
                POSTGRES_DSN,
                pod=f"poller-{i}",
                lease_ttl_seconds=3,
                state_table_prefix=pg_prefix,
                dlq_table_prefix=pg_prefix,
            ),
            severa_factory=lambda settings, metrics: RecordingSevera(settings, metrics, calls),
        )
        for i in range(2)
    ]
    both_active = 0

    def sample() -> None:
        nonlocal both_active
        both_active += all(pod.poller is not None and pod.poller.active for pod in pods)

    try:
        await asyncio.gather(*(pod.start() for pod in pods))
        assert all(isinstance(pod._poller_state, SqlPollerState) for pod in pods)
        assert {pod._poller_state.table_prefix for pod in pods} == {pg_prefix}

        def watching(predicate: Callable[[], bool]) -> Callable[[], bool]:
            def check() -> bool:
                sample()
                return predicate()

            return check

        await wait_until(watching(lambda: up_to_date(events, fake)), timeout=20, what="the first events")
        await wait_until(watching(lambda: sum(p.poller.polls for p in pods) >= 6), what="several polls")
        rename(fake, customers[:10], 1)
        await wait_until(watching(lambda: up_to_date(events, fake)), timeout=20, what="the changes")
        active = next(pod for pod in pods if pod.poller.active)
        standby = next(pod for pod in pods if pod is not active)
        assert standby.poller.polls == 0
        await active.close()  # the active pod goes away (releasing its lease)
        rereference(fake, invoices[:20], 1)
        await wait_until(watching(lambda: standby.poller.active), timeout=20, what="the standby to take over")
        await wait_until(watching(lambda: up_to_date(events, fake)), timeout=20, what="the standby's events")
        await polls_after(standby, 2)
    finally:
        for pod in pods:
            await pod.close()
    assert both_active == 0, f"both pollers held the lease in {both_active} samples"
    holders = [pod for pod, _, _ in calls]
    assert set(holders) == {"poller-0", "poller-1"}, Counter(holders)
    switches = sum(1 for a, b in itertools.pairwise(holders) if a != b)
    assert switches == 1, f"the list calls switched holder {switches} times: {holders}"
    ordered = sorted(calls, key=lambda call: call[1])
    for (pod_a, _, end_a), (pod_b, start_b, _) in itertools.pairwise(ordered):
        assert pod_a == pod_b or end_a <= start_b, "two pollers' list calls overlapped"
    assert not events.republished()
    assert len(events.bodies) == 150 + 10 + 20
