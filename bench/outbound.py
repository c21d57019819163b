"""Outbound throughput: invoices/s into the fake Netvisor, which serves one request at a time per company.

    python bench/outbound.py [--invoices 250] [--latency-ms 0 50] [--poll-seconds 60]

Netvisor refuses a request for a company while another one for it is in flight, so whatever a
client does, its requests to one company run one after the other: the figure is bounded by
Netvisor's answer time, not by the client. Every party runs as its own process -- the fake
Netvisor (``severa-connector fake-netvisor``), the fake Severa (``severa-connector fake-severa``),
the connector (``severa-connector run --role all``) -- and this driver only populates, starts,
watches and reads the fakes' admin APIs. For each injected latency (a latency fault on every
Netvisor resource, through the fake's admin API), in the same run:

* **baseline** -- a hand-written aiohttp loop posting pre-built ``salesinvoice.nv?method=add``
  bodies, each signed with :func:`adapters.netvisor.signing.sign` just before it is sent (a fresh
  TransactionId and time stamp per request, as Netvisor requires), the next one only after the
  previous answer: the serial ceiling for one add per invoice;
* **connector** -- N invoices made ready in the fake Severa, the connector started, timed from the
  first ``severa.invoice.ready`` event on the broker until the fake Netvisor holds all N invoices.
  Per invoice the connector makes three Netvisor requests -- find the customer
  (``customerlist.nv``), find the invoice by its number (``salesinvoicelist.nv``: Netvisor has no
  idempotency key, so it looks before every add) and the add (``salesinvoice.nv``) -- all through
  the same one-at-a-time lane.

The customers are already in the fake Netvisor (its seed), so neither contender adds any; the
payments poller is off so that only invoices use the lane. Prints invoices/s, the ratio
connector / baseline, Netvisor requests per invoice and per second, and the fake's refusals (must
be 0: a refusal would mean a contender broke the serial rule, the signature or the element order).
Stops every process it started, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import aio_pika
import aiohttp
import yarl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.netvisor import signing  # noqa: E402
from adapters.netvisor.codec import resource_url, sales_invoice_xml  # noqa: E402
from bench._procs import Child, child  # noqa: E402
from connector.mapping.invoices import round_cents  # noqa: E402
from connector.ports import AccountingInvoice, AccountingInvoiceLine, VatTreatment  # noqa: E402
from connector.topology import Names, accounting_flow_queues, build_topology  # noqa: E402
from tests.fixtures.accounting import BUSINESS_IDS, PAID, READY, ROW_KINDS, SEVERA_SEED, TRANSFERRED  # noqa: E402

CREDENTIALS: Final = {
    "customer_id": "bench-customer",
    "customer_key": "bench-customer-key-" + uuid.uuid4().hex[:8],
    "partner_id": "bench-partner",
    "partner_key": "bench-partner-key-" + uuid.uuid4().hex[:8],
    "organisation_id": "1234567-8",
}
SEVERA_KEY: Final = "bench-severa-key-" + uuid.uuid4().hex[:8]
SENDER: Final = "outbound-bench"
PRODUCT: Final = "SERVICES"
INVOICE_DATE: Final = dt.date(2026, 11, 2)
PAYMENT_TERM: Final = 14
FIRST_NUMBER: Final = 300_000
FIRST_CUSTOMER: Final = 5001
#: How often the driver reads the fake Netvisor's invoice count while the connector works.
WATCH_INTERVAL: Final = 0.05


# ---------------------------------------------------------------------------------- the fakes


@dataclass(frozen=True, slots=True)
class Fakes:
    netvisor_url: str
    severa_url: str
    severa_admin: str
    http: aiohttp.ClientSession

    async def admin(self, method: str, url: str, body: Any = None) -> Any:
        async with self.http.request(method, url, json=body) as response:
            payload = await response.read()
            if response.status >= 400:
                raise RuntimeError(f"{method} {url}: HTTP {response.status} {payload[:300]!r}")
            return json.loads(payload) if payload else None

    async def netvisor(self, method: str, path: str, body: Any = None) -> Any:
        return await self.admin(method, f"{self.netvisor_url}/admin/{path}", body)

    async def severa(self, method: str, path: str, body: Any = None) -> Any:
        return await self.admin(method, f"{self.severa_admin}/{path}", body)

    async def fresh_netvisor(self, latency_ms: int) -> None:
        """Back to its seed (the customers; no invoices, counters, TransactionIds or faults), then
        the latency on every resource."""
        await self.netvisor("POST", "reset")
        if latency_ms:
            await self.netvisor("POST", "faults", {"kind": "latency", "seconds": latency_ms / 1000})

    async def netvisor_state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.netvisor("GET", "state")
        return state


def customer_codes(customers: int) -> list[str]:
    return [str(FIRST_CUSTOMER + i) for i in range(customers)]


def invoice_rows(index: int) -> list[tuple[str, str, str]]:
    """(VAT %, unit price, quantity) of invoice ``index``: one to three rows, mixed VAT rates."""
    return [
        (*ROW_KINDS[(index + k) % len(ROW_KINDS)], ("1", "2", "1.5")[(index + k) % 3])
        for k in range(1 + index % 3)
    ]


async def populate_severa(fakes: Fakes, invoices: int, customers: int) -> None:
    """The fake Severa back to its seed (invoice statuses), then customers and ready invoices."""
    await fakes.severa("POST", "reset")
    guids = []
    for i, code in enumerate(customer_codes(customers)):
        made = await fakes.severa(
            "POST",
            "customers",
            {
                "Name": f"Asiakas {code} Oy",
                "Number": int(code),
                "VatNumber": BUSINESS_IDS[i % len(BUSINESS_IDS)],
                "HeadOfficeAddress": {
                    "Addressline": f"Esimerkkikatu {i}",
                    "PostalCode": "00100",
                    "City": "Helsinki",
                    "CountryCode": "FI",
                    "CountryName": "Finland",
                },
            },
        )
        guids.append(made["GUID"])
    for i in range(invoices):
        await fakes.severa(
            "POST",
            "invoices",
            {
                "AccountGUID": guids[i % customers],
                "Date": INVOICE_DATE.isoformat(),
                "PaymentTerm": PAYMENT_TERM,
                "Number": FIRST_NUMBER + i,
                "InvoiceStatus": READY,
                "InvoiceRows": [
                    {
                        "articleName": f"Work {k}",
                        "deliveredQuantity": quantity,
                        "unitPriceAmount": price,
                        "rowVatRatePercent": rate,
                    }
                    for k, (rate, price, quantity) in enumerate(invoice_rows(i))
                ],
            },
        )


# ----------------------------------------------------------------------------------- baseline


def baseline_bodies(invoices: int, customers: int) -> list[bytes]:
    """The adds, built before anything is timed: same customers, numbers and rows as the connector's."""
    codes = customer_codes(customers)
    bodies = []
    for i in range(invoices):
        lines = []
        for k, (rate, price, quantity) in enumerate(invoice_rows(i)):
            net = round_cents(Decimal(quantity) * Decimal(price))
            vat = round_cents(net * Decimal(rate) / 100)
            lines.append(
                AccountingInvoiceLine(
                    product_code=PRODUCT,
                    name=f"Work {k}",
                    quantity=Decimal(quantity),
                    unit_price=Decimal(price),
                    vat_percent=Decimal(rate),
                    vat_treatment=VatTreatment.DOMESTIC,
                    net_sum=net,
                    vat_sum=vat,
                )
            )
        invoice = AccountingInvoice(
            number=str(FIRST_NUMBER + i),
            customer_code=codes[i % customers],
            invoice_date=INVOICE_DATE,
            due_date=INVOICE_DATE + dt.timedelta(days=PAYMENT_TERM),
            payment_term_days=PAYMENT_TERM,
            reference_number=None,
            currency_code="EUR",
            currency_rate=None,
            total_including_vat=sum((line.net_sum + line.vat_sum for line in lines), Decimal(0)),
            total_vat=sum((line.vat_sum for line in lines), Decimal(0)),
            lines=tuple(lines),
        )
        bodies.append(sales_invoice_xml(invoice))
    return bodies


async def baseline(fakes: Fakes, bodies: list[bytes]) -> float:
    """Post every add, each after the previous answer; seconds from the first send to the last answer."""
    url = resource_url(fakes.netvisor_url, "salesinvoice", [("method", "add")])
    as_sent = yarl.URL(url, encoded=True)  # the MAC covers the URL exactly as sent: no re-encoding
    refused = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        for body in bodies:
            headers = signing.sign(
                url=url,
                sender=SENDER,
                customer_id=CREDENTIALS["customer_id"],
                partner_id=CREDENTIALS["partner_id"],
                language="EN",
                organisation_id=CREDENTIALS["organisation_id"],
                transaction_id=uuid.uuid4().hex,
                now=dt.datetime.now(dt.UTC),
                customer_key=CREDENTIALS["customer_key"],
                partner_key=CREDENTIALS["partner_key"],
            )
            headers["Content-Type"] = "text/xml; charset=utf-8"
            async with session.post(as_sent, data=body, headers=headers) as response:
                answer = await response.read()
                if response.status != 200 or b"<Status>OK</Status>" not in answer:
                    refused += 1
        elapsed = time.perf_counter() - started
    if refused:
        raise RuntimeError(f"the fake Netvisor refused {refused} of the baseline's adds")
    return elapsed


# ---------------------------------------------------------------------------------- connector


def connector_env(
    fakes: Fakes, names: Names, state_dir: Path, amqp_url: str, poll_seconds: float
) -> dict[str, str]:
    netvisor = "SEVERA_CONNECTOR_NETVISOR__"
    return {
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": names.prefix,
        "SEVERA_CONNECTOR_STATE_URL": f"sqlite:///{state_dir / 'state.db'}",
        "SEVERA_CONNECTOR_HTTP__ENABLED": "false",
        # Per-message INFO lines would cost the connector CPU the baseline does not spend.
        "SEVERA_CONNECTOR_LOG__LEVEL": "WARNING",
        "SEVERA_CONNECTOR_LOG__FORMAT": "json",
        "SEVERA_CONNECTOR_SEVERA__URL": fakes.severa_url,
        "SEVERA_CONNECTOR_SEVERA__API_KEY": SEVERA_KEY,
        # The production interval (60 s): the first poll publishes every ready invoice at once.
        "SEVERA_CONNECTOR_POLLER__INTERVAL_SECONDS": str(poll_seconds),
        "SEVERA_CONNECTOR_POLLER__CUSTOMERS": "false",
        "SEVERA_CONNECTOR_POLLER__INVOICE_STATUS": READY,
        "SEVERA_CONNECTOR_ACCOUNTING__SYSTEM": "netvisor",
        "SEVERA_CONNECTOR_ACCOUNTING__SEVERA_TRANSFERRED_STATUS": TRANSFERRED,
        "SEVERA_CONNECTOR_ACCOUNTING__SEVERA_PAID_STATUS": PAID,
        "SEVERA_CONNECTOR_ACCOUNTING__PAYMENTS": "false",
        netvisor + "BASE_URL": fakes.netvisor_url,
        netvisor + "SENDER": SENDER,
        netvisor + "CUSTOMER_ID": CREDENTIALS["customer_id"],
        netvisor + "CUSTOMER_KEY": CREDENTIALS["customer_key"],
        netvisor + "PARTNER_ID": CREDENTIALS["partner_id"],
        netvisor + "PARTNER_KEY": CREDENTIALS["partner_key"],
        netvisor + "ORGANISATION_ID": CREDENTIALS["organisation_id"],
        netvisor + "DEFAULT_PRODUCT_CODE": PRODUCT,
    }


async def through_connector(fakes: Fakes, invoices: int, amqp_url: str, poll_seconds: float) -> float:
    """Seconds from the first invoice event the poller publishes until Netvisor holds every invoice."""
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        # Declared before the connector starts, so the first event cannot be missed; the connector
        # declares the same exchange again (idempotent) along with the rest of its topology.
        events = await channel.declare_exchange(
            names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        watch = await channel.declare_queue(exclusive=True)
        await watch.bind(events, "severa.invoice.ready")
        first_event: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if not first_event.done():
                first_event.set_result(time.perf_counter())
            await message.ack()

        await watch.consume(on_event)
        try:
            with tempfile.TemporaryDirectory() as state_dir:
                env = connector_env(fakes, names, Path(state_dir), amqp_url, poll_seconds)
                async with child("connector", ["run", "--role", "all"], env) as connector:
                    started = await _wait_for(connector, first_event, timeout=120)
                    done = await _all_in_netvisor(fakes, connector, invoices, timeout=600)
                    return done - started
        finally:
            await _delete_topology(channel, names)


async def _wait_for(connector: Child, future: asyncio.Future[float], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not future.done():
        if not connector.running:
            raise RuntimeError("the connector exited:\n" + "\n".join(connector.tail))
        if time.monotonic() > deadline:
            raise RuntimeError(f"no invoice event within {timeout} s:\n" + "\n".join(connector.tail))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), 0.5)
    return future.result()


async def _all_in_netvisor(fakes: Fakes, connector: Child, invoices: int, timeout: float) -> float:
    """When the fake Netvisor first held ``invoices`` invoices, read through its admin API (a process
    of its own has no event to wait on; the reading interval bounds the error)."""
    deadline = time.monotonic() + timeout
    while True:
        state = await fakes.netvisor_state()
        if state["store"]["invoices"] >= invoices:
            return time.perf_counter()
        if not connector.running:
            raise RuntimeError("the connector exited:\n" + "\n".join(connector.tail))
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{state['store']['invoices']} of {invoices} invoices after {timeout} s:\n"
                + "\n".join(connector.tail)
            )
        await asyncio.sleep(WATCH_INTERVAL)


async def _delete_topology(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    work_hours, accounting = build_topology(names), build_topology(names, flows=accounting_flow_queues(names))
    for queue in {spec.name for spec in (*work_hours.queues, *accounting.queues)}:
        await channel.queue_delete(queue)
    for exchange in {spec.name for spec in (*work_hours.exchanges, *accounting.exchanges)}:
        await channel.exchange_delete(exchange)


# --------------------------------------------------------------------------------------- main


@dataclass(frozen=True, slots=True)
class Figure:
    latency_ms: int
    contender: str
    seconds: float
    invoices: int
    calls: dict[str, int]
    refusals: int

    @property
    def per_second(self) -> float:
        return self.invoices / self.seconds

    @property
    def requests(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True, slots=True)
class Options:
    invoices: int
    customers: int
    latencies_ms: tuple[int, ...]
    amqp_url: str
    poll_seconds: float


async def measure(fakes: Fakes, options: Options, latency_ms: int) -> list[Figure]:
    """Both contenders at one latency, each against a fake Netvisor fresh from its seed."""
    figures = []
    await fakes.fresh_netvisor(latency_ms)
    seconds = await baseline(fakes, baseline_bodies(options.invoices, options.customers))
    figures.append(await _figure(fakes, latency_ms, "baseline", seconds, options.invoices))

    await fakes.fresh_netvisor(latency_ms)
    await populate_severa(fakes, options.invoices, options.customers)
    seconds = await through_connector(fakes, options.invoices, options.amqp_url, options.poll_seconds)
    figures.append(await _figure(fakes, latency_ms, "connector", seconds, options.invoices))
    return figures


async def _figure(fakes: Fakes, latency_ms: int, contender: str, seconds: float, invoices: int) -> Figure:
    state = await fakes.netvisor_state()
    if state["store"]["invoices"] != invoices:
        raise RuntimeError(f"{contender}: the fake Netvisor holds {state['store']['invoices']} invoices")
    if state["internal_errors"]:
        raise RuntimeError(f"{contender}: the fake Netvisor had {state['internal_errors']} internal errors")
    return Figure(latency_ms, contender, seconds, invoices, state["calls"], sum(state["refusals"].values()))


def report(figures: list[Figure], invoices: int, customers: int) -> None:
    print(
        f"Outbound: {invoices} invoices ({customers} customers already in Netvisor) into the fake Netvisor, "
        "one request at a time per company; every party its own process"
    )
    print(
        f"{'latency':>7}  {'contender':<30} {'invoices/s':>10} {'ratio':>6} {'Netvisor req/s':>14}"
        f" {'req/invoice':>11} {'refusals':>8}"
    )
    for latency in sorted({figure.latency_ms for figure in figures}):
        pair = {figure.contender: figure for figure in figures if figure.latency_ms == latency}
        base, ours = pair["baseline"], pair["connector"]
        for figure, label in ((base, "baseline (signed adds, serial)"), (ours, "connector (run --role all)")):
            print(
                f"{latency:>4} ms  {label:<30} {figure.per_second:>10.1f}"
                f" {figure.per_second / base.per_second:>6.3f} {figure.requests / figure.seconds:>14.1f}"
                f" {figure.requests / figure.invoices:>11.2f} {figure.refusals:>8}"
            )
        # Every request timed as one of the baseline's adds: the finds are lighter, so about 100 %
        # means the lane never waited for the connector.
        per_request = base.seconds / base.requests
        ceiling = 1 / (per_request * ours.requests / ours.invoices)
        print(
            f"{'':>9}connector at {ours.per_second / ceiling:.0%} of its serial ceiling: "
            f"{ours.requests / ours.invoices:.2f} requests per invoice at the baseline's "
            f"{per_request * 1000:.1f} ms per add = {ceiling:.1f} invoices/s"
        )
    calls = next(figure for figure in figures if figure.contender == "connector").calls
    print(
        "connector requests by resource (first latency): "
        + ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
    )
    print(
        "per invoice the connector finds the customer (customerlist.nv), finds the invoice by number "
        "(salesinvoicelist.nv: no idempotency key) and adds it (salesinvoice.nv)"
    )
    total = sum(figure.refusals for figure in figures)
    print(f"fake Netvisor refusals in the whole run: {total}")


async def main(options: Options) -> int:
    fake_env = {f"FAKE_NETVISOR_{name.upper()}": value for name, value in CREDENTIALS.items()}
    codes = customer_codes(options.customers)
    with tempfile.TemporaryDirectory() as tmp:
        netvisor_seed = Path(tmp) / "netvisor-seed.json"
        netvisor_seed.write_text(
            json.dumps({"customers": [{"code": c, "name": f"Asiakas {c} Oy"} for c in codes]})
        )
        severa_seed = Path(tmp) / "severa-seed.json"
        severa_seed.write_text(json.dumps(SEVERA_SEED))
        netvisor_args = ["fake-netvisor", "--port", "0", "--seed", str(netvisor_seed)]
        severa_args = ["fake-severa", "--port", "0", "--seed", str(severa_seed)]
        async with (
            child("fake Netvisor", netvisor_args, fake_env) as netvisor,
            child("fake Severa", severa_args, {"FAKE_SEVERA_API_KEY": SEVERA_KEY}) as severa,
            aiohttp.ClientSession() as http,
        ):
            netvisor_log = await netvisor.logged("fake_netvisor.serving")
            severa_log = await severa.logged("fake_severa.serving")
            fakes = Fakes(str(netvisor_log["url"]), str(severa_log["url"]), str(severa_log["admin"]), http)
            # Warm the fake and the connection path once; not counted.
            await fakes.fresh_netvisor(0)
            await baseline(fakes, baseline_bodies(min(options.invoices, 20), options.customers))
            figures = []
            for latency in options.latencies_ms:
                figures += await measure(fakes, options, latency)
    report(figures, options.invoices, options.customers)
    return 1 if any(figure.refusals for figure in figures) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=250, help="invoices per contender and latency")
    parser.add_argument("--customers", type=int, default=20, help="customers the invoices are spread over")
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 50], help="injected per request")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=60.0,
        help="the connector's poller interval (default: production's); its first poll makes every event",
    )
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    options = Options(args.invoices, args.customers, tuple(args.latency_ms), args.url, args.poll_seconds)
    sys.exit(asyncio.run(main(options)))
