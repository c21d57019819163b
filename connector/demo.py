"""``severa-connector demo``: the whole loop on one machine, both directions, in about fifteen seconds.

Starts the fake Severa SOAP service and the fake Netvisor in-process (seeded with a demo
organisation), runs the real connector against them and the local RabbitMQ (every role in one
pod, names prefixed ``demo.``, queues purged first), then

* plays an external time tracker: publishes good events, a duplicate, an update, and deliberately
  bad events (work hours into Severa);
* lets the poller find Severa's customers and ready invoices and the accounting flows put them into
  Netvisor, with one failure of each kind an accountant meets (:mod:`connector.demo_accounting`);
* marks an invoice paid in Netvisor and waits for the payment to come back into Severa.

It prints what landed where and what went to the dead-letter queues and why. Exit code 0 only if
everything settled as expected.

With ``--console`` it then stays up: the fakes and the connector keep running and the dead-letter
console serves the demo's store (:func:`_serve_console`), so the dead letters it just made can be
cleared from the browser, until Ctrl-C or SIGTERM; it then removes the queues and exchanges it
declared, so an interactive session leaves nothing on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from rich.console import Console
from rich.table import Table

from adapters.netvisor.fake.server import FakeNetvisor
from adapters.severa.fake.server import FakeSevera
from connector import demo_accounting
from connector.config import CommonSettings, DlqSettings, Settings
from connector.console.app import ConsoleConfig, create_app
from connector.console.auth import Authenticator
from connector.dlq.records import DeadLetterRecord
from connector.dlq.selection import Filter
from connector.dlq.store import open_store
from connector.errors import ConfigError
from connector.logging import register_secret
from connector.ports import QuotaReading
from connector.service import ConnectorService
from connector.topology import Names, Topology, accounting_flow_queues, build_topology, work_hours_queue

DEMO_PREFIX = "demo."
#: The demo's retry ladder: short rungs, so the credit note waiting for its invoice is parked in seconds.
DEMO_RETRY_LADDER = (0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Sample:
    label: str
    body: bytes
    routing_key: str
    message_id: str
    expect: str  # "synced" | "dead-lettered"


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "workhour.created",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": "demo-tracker",
        "source_entry_id": f"entry-{uuid.uuid4().hex[:8]}",
        "version": 1,
        "billable": True,
        **fields,
    }


def _sample(label: str, event: dict[str, Any], expect: str) -> Sample:
    return Sample(
        label=label,
        body=json.dumps(event).encode(),
        routing_key=event.get("event_type", "workhour.created"),
        message_id=event["event_id"],
        expect=expect,
    )


Row = dict[str, Any]


def _bookable(fake: FakeSevera) -> tuple[list[Row], list[Row], list[tuple[Row, Row]]]:
    """The seed's active users, active work types and (case, phase) pairs open for booking."""
    store = fake.store
    users = [u for u in store.users if u.get("Code") and u.get("IsActive")]
    work_types = [w for w in store.work_types if w.get("Code") and w.get("IsActive")]
    bookable = [
        (case, phase)
        for case in store.cases
        if case.get("CaseNumber") and not case.get("IsClosed")
        for phase in store.phases
        if phase.get("CaseGUID") == case["GUID"] and phase.get("Code") and not phase.get("IsLocked")
    ]
    if not (users and work_types and bookable):
        raise RuntimeError("the demo seed lacks active users, work types or bookable phases")
    return users, work_types, bookable


def build_samples(fake: FakeSevera, good_events: int) -> list[Sample]:
    """Events for the demo organisation: good ones first, then one of each kind of bad input."""
    users, work_types, bookable = _bookable(fake)
    today = dt.date.today()
    samples: list[Sample] = []
    first: dict[str, Any] | None = None
    for i in range(good_events):
        user = users[i % len(users)]
        case, phase = bookable[i % len(bookable)]
        event = _event(
            user_code=user["Code"],
            case_number=case["CaseNumber"],
            phase_code=phase["Code"],
            work_type_code=work_types[i % len(work_types)]["Code"],
            date=(today - dt.timedelta(days=i % 5)).isoformat(),
            hours=str([7.5, 4, 2.25, 8, 1.5][i % 5]),
            description=f"Demo work #{i + 1} on {phase.get('Name') or phase['Code']}",
        )
        first = first or event
        samples.append(
            _sample(f"good: {user['Code']} {event['hours']} h on case {case['CaseNumber']}", event, "synced")
        )
    assert first is not None
    samples.append(_sample("duplicate of the first event (redelivery)", first, "synced"))
    samples.append(
        _sample(
            "update of the first entry (version 2, 6 h)",
            {
                **first,
                "event_id": str(uuid.uuid4()),
                "event_type": "workhour.updated",
                "version": 2,
                "hours": "6",
            },
            "synced",
        )
    )
    base = {k: first[k] for k in ("user_code", "case_number", "phase_code", "work_type_code", "date")}
    bad = [
        ("bad: not JSON at all", None),
        ("bad: hours is not a number", {**base, "hours": "lots"}),
        ("bad: 1000 hours (Severa allows 999)", {**base, "hours": "1000"}),
        ("bad: unknown user", {**base, "user_code": "NO-SUCH-USER", "hours": "1"}),
        ("bad: unknown case", {**base, "case_number": 987654, "hours": "1"}),
        ("bad: unknown work type", {**base, "work_type_code": "NOPE", "hours": "1"}),
    ]
    for label, fields in bad:
        if fields is None:
            samples.append(
                Sample(label, b"{oops, not json", "workhour.created", str(uuid.uuid4()), "dead-lettered")
            )
        else:
            samples.append(_sample(label, _event(**fields), "dead-lettered"))
    return samples


async def run_demo(
    common: CommonSettings,
    *,
    good_events: int = 5,
    timeout: float = 60.0,
    console: Console | None = None,
    console_port: int | None = None,
    prefix: str = DEMO_PREFIX,
) -> bool:
    """Run the demo; with ``console_port``, then serve the console on it until SIGINT/SIGTERM."""
    console = console or Console()
    names = Names(prefix=prefix)
    key = secrets.token_urlsafe(24)
    register_secret(key)
    amqp_url = common.rabbitmq.url.get_secret_value()
    started = time.perf_counter()

    credentials = demo_accounting.NetvisorCredentials.fresh()
    async with FakeSevera(api_key=key) as fake, credentials.fake() as books:
        console.print(f"[bold]fake Severa[/] listening at {fake.url}  (WSDL: {fake.url}/WSDL)")
        console.print(f"[bold]fake Netvisor[/] listening at {books.url}  (admin: {books.admin_url})")
        samples = build_samples(fake, good_events)
        plan = demo_accounting.prepare(fake, books)
        seeded_entries = len(fake.store.hour_entries)
        with tempfile.TemporaryDirectory(prefix="severa-demo-") as state_dir:
            settings = Settings.model_validate(
                {
                    "role": "all",
                    "severa": {"url": fake.url, "api_key": key},
                    "rabbitmq": common.rabbitmq.model_copy(update={"prefix": prefix}),
                    "log": common.log,
                    "http": {"enabled": False},
                    "retry": {
                        "attempts": 3,
                        "initial_seconds": 0.05,
                        "max_seconds": 0.5,
                        "ladder_seconds": list(DEMO_RETRY_LADDER),
                    },
                    "state_url": f"sqlite:///{Path(state_dir) / 'ledger.db'}",
                    "pod_name": "demo",
                    **demo_accounting.settings_for(books, credentials),
                }
            )
            connection = await aio_pika.connect(
                amqp_url, client_properties={"connection_name": "demo-tracker"}
            )
            async with connection:
                await _purge(connection, names)
                channel = await connection.channel(publisher_confirms=True)
                tidy = _removed_on_exit(connection, names, enabled=console_port is not None)
                async with tidy, ConnectorService(settings) as service:
                    results = await _watch_results(channel, names)
                    exchange = await channel.get_exchange(names.workhours_exchange)
                    console.print(
                        f"[bold]publishing[/] {len(samples)} events to exchange '{names.workhours_exchange}'"
                    )
                    for sample in samples:
                        await exchange.publish(
                            aio_pika.Message(
                                sample.body,
                                content_type="application/json",
                                message_id=sample.message_id,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            routing_key=sample.routing_key,
                            timeout=10,
                        )
                    settled = await _wait(results, len(samples), timeout)
                    console.print("[bold]waiting[/] for Severa's customers and invoices to reach Netvisor")
                    settled = settled and await _until(
                        lambda: demo_accounting.transferred(fake, books, plan), timeout
                    )
                    if settled:
                        console.print(f"[bold]paying[/] invoice {plan.pay} in Netvisor")
                        demo_accounting.pay(books, plan)
                        settled = await _until(lambda: demo_accounting.payment_back(fake, plan), timeout)
                    expected_dead = sum(1 for s in samples if s.expect == "dead-lettered") + len(plan.parked)
                    # The pod ingests its dead letters into the store beside its ledger, where
                    # `severa-connector dlq list` reads them; the demo reads the same store.
                    settled = settled and await _wait_stored(service, expected_dead, timeout)
                    dead = await _stored_dead_letters(settings)
                    quota = service.severa.quota if service.severa else None
                    outcome = _Outcome(
                        settled, dead, expected_dead, seeded_entries, good_events, len(samples), plan, quota
                    )
                    if console_port is not None:
                        ok = _report(console, fake, books, outcome, time.perf_counter() - started)
                        await _serve_console(console, settings, service, Path(state_dir), console_port, fake)
                if console_port is not None:
                    return ok
            elapsed = time.perf_counter() - started
        return _report(console, fake, books, outcome, elapsed)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the demo's run left, for the report."""

    settled: bool
    dead: list[DeadLetterRecord]
    expected_dead: int
    seeded_entries: int
    good_events: int
    events: int
    plan: demo_accounting.AccountingPlan
    quota: QuotaReading | None


def _report(console: Console, fake: FakeSevera, books: FakeNetvisor, run: _Outcome, elapsed: float) -> bool:
    """Print what landed where and the one-line verdict; true when everything settled as expected."""
    dead, plan, expected_dead, quota = run.dead, run.plan, run.expected_dead, run.quota
    _print_severa(console, fake)
    demo_accounting.print_accounting(console, fake, books)
    _print_dead_letters(console, dead)
    added = len(fake.store.hour_entries) - run.seeded_entries
    in_netvisor = len(books.store.invoices)
    refused = books.refusals.total - books.refusals.period_lock
    ok = (
        run.settled
        and len(dead) == expected_dead
        and added == run.good_events
        and in_netvisor == len(plan.good)
        and refused == 0
    )
    summary = (
        f"{run.events} events → {added} new hour entries in Severa; "
        f"{in_netvisor} invoices and {len(books.store.customers)} customers in Netvisor, "
        f"invoice {plan.pay} paid back into Severa; "
        f"{len(dead)} dead-lettered (expected {expected_dead}); "
        f"Severa calls: {sum(fake.calls.values())}, Netvisor calls: {sum(books.calls.values())}"
        + (f", quota used {quota.used}/{quota.quota}" if quota else "")
        + f"; {elapsed:.1f} s"
    )
    console.print(("[bold green]OK[/] " if ok else "[bold red]UNEXPECTED[/] ") + summary)
    return ok


async def _purge(connection: aio_pika.abc.AbstractConnection, names: Names) -> None:
    """Empty what an earlier demo run left behind, before the connector starts ingesting it."""
    queues = (
        names.accounting_customers_queue,
        names.accounting_invoices_queue,
        names.severa_invoice_updates_queue,
    )
    for queue_name in (names.workhours_queue, names.workhours_dlq, *queues, *(f"{q}.dlq" for q in queues)):
        channel = await connection.channel()
        try:
            underlay = await channel.get_underlay_channel()
            await underlay.queue_purge(queue_name)
        except aiormq.exceptions.ChannelNotFoundEntity:
            pass  # a first run: the connector declares it
        finally:
            if not channel.is_closed:
                await channel.close()


async def _watch_results(
    channel: aio_pika.abc.AbstractChannel, names: Names
) -> list[AbstractIncomingMessage]:
    results: list[AbstractIncomingMessage] = []
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(names.results_exchange, "#")

    async def collect(message: AbstractIncomingMessage) -> None:
        await message.ack()
        results.append(message)

    await queue.consume(collect)
    return results


async def _wait(results: list[AbstractIncomingMessage], count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while len(results) < count:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _wait_stored(service: ConnectorService, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while service.ingested < count:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _stored_dead_letters(settings: Settings) -> list[DeadLetterRecord]:
    """The dead letters the pod ingested, as `dlq list` shows them."""
    async with open_store(settings.dlq_store_url(), create=False) as store:
        return await store.find(Filter())


def _print_severa(console: Console, fake: FakeSevera) -> None:
    users = {u["GUID"]: u.get("Code") for u in fake.store.users}
    cases = {c["GUID"]: c.get("CaseNumber") for c in fake.store.cases}
    phases = {p["GUID"]: p.get("Code") for p in fake.store.phases}
    table = Table(title="Hour entries in (fake) Severa (the first rows were seeded)", title_justify="left")
    for column in ("GUID", "user", "case", "phase", "date", "hours", "description"):
        table.add_column(column)
    for entry in fake.store.hour_entries:
        event_date = entry.get("EventDate")
        table.add_row(
            str(entry["GUID"])[:8] + "…",
            str(users.get(entry.get("UserGUID"), "?")),
            str(cases.get(entry.get("CaseGUID"), "?")),
            str(phases.get(entry.get("PhaseGUID"), "?")),
            event_date.date().isoformat() if isinstance(event_date, dt.datetime) else str(event_date),
            str(entry.get("Quantity")),
            str(entry.get("Description") or ""),
        )
    console.print(table)


def _print_dead_letters(console: Console, dead: list[DeadLetterRecord]) -> None:
    table = Table(title="Dead letters (every flow's DLQ, ingested into the store)", title_justify="left")
    for column in ("flow", "reason", "why", "body"):
        table.add_column(column, overflow="fold")
    for record in dead:
        body = (record.body or b"").decode("utf-8", "replace")
        table.add_row(
            record.flow or "?",
            record.reason,
            record.error_message,
            body if len(body) <= 60 else body[:57] + "…",
        )
    console.print(table)


# -- --console: the dead-letter console over the demo's store, until Ctrl-C / SIGTERM ---------------

#: How the demo's dead letters are cleared from the console alone (printed once it is up).
GUIDANCE = """\
What to do with each dead letter (open it from 'Failure groups' or 'Search'; every action asks for a reason):
  unknown_user / unknown_case / unknown_work_type -- a reference Severa does not know. Edit the body
      to a valid one (user_code={user}, case_number={case}, work_type_code={work_type}), then replay
      it (dry run first). Outside the console: create it in the fake Severa (admin API: POST {admin}/seed with
      ?replace=false) or map the code in the mapping table, then replay the whole group.
  schema_violation (hours 'lots', 1000 h) -- edit hours=1, then replay.
  invalid_json -- junk, nothing to fix: archive it with a reason.
  invalid_reference_number / accounting_period_locked / credited_invoice_missing -- fixed in Severa or
      Netvisor, not in the message (correct the reference, open the period, transfer the credited
      invoice first); in this demo archive them with a reason (restore and replay after a fix).
Replayed work hours land in the fake Severa: GET {admin}/state counts its hour entries.
The console's actions are in its 'Audit log' page (and in {audit})."""


async def _serve_console(
    console: Console,
    settings: Settings,
    service: ConnectorService,
    state_dir: Path,
    port: int,
    fake: FakeSevera,
) -> None:
    """Serve the console on ``port`` over the store the demo's pod ingests into, until a signal.

    In-process rather than a subprocess: the console is an aiohttp app like the fakes, so it runs on
    the same loop with nothing extra to supervise, and one signal stops the console, the connector
    and the fakes in order. The token is this run's own, written to a file in the demo's temp dir
    (removed with it) and registered as a secret, so no log line can show it.
    """
    store_url = settings.dlq_store_url()
    audit_log = state_dir / "console-audit.jsonl"
    dlq_settings = DlqSettings(
        rabbitmq=settings.rabbitmq,
        state_url=settings.state_url,
        dlq=settings.dlq.model_copy(update={"store_url": store_url, "audit_log": str(audit_log)}),
        _env_file=None,
    )
    if dlq_settings.dlq_store_url() != store_url or not settings.dlq.ingest or service.ingested == 0:
        raise ConfigError(
            "the demo's connector does not ingest its dead letters into the console's store; "
            "unset SEVERA_CONNECTOR_DLQ__INGEST and SEVERA_CONNECTOR_DLQ__STORE_URL for the demo"
        )
    token = secrets.token_urlsafe(24)
    register_secret(token)
    token_file = state_dir / "console-token"
    await asyncio.to_thread(_write_private, token_file, token + "\n")
    config = ConsoleConfig(dlq_settings, Authenticator(token=token, trust_user_header=None))
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"the console cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); "
                "choose another port with --console-port"
            ) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            console.print(
                f"console: http://127.0.0.1:{port}/ — sign in with token {token}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                f"console token file: {token_file}; dead-letter store: {store_url} "
                f"(the pod ingests every flow's DLQ into it); fake Severa admin: {fake.admin_url}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                GUIDANCE.format(admin=fake.admin_url, audit=audit_log, **_valid_references(fake)),
                markup=False,
                highlight=False,
            )
            console.print("[bold]running[/] until Ctrl-C (or SIGTERM)")
            console.file.flush()
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        console.print("[bold]stopping[/] the console, the connector and the fakes")
        console.file.flush()
    finally:
        await runner.cleanup()


def _valid_references(fake: FakeSevera) -> dict[str, str]:
    """Codes the bad events' edits can name: those of the first good event, which Severa took."""
    users, work_types, bookable = _bookable(fake)
    return {
        "user": str(users[0]["Code"]),
        "case": str(bookable[0][0]["CaseNumber"]),
        "work_type": str(work_types[0]["Code"]),
    }


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (the console token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _demo_topology(names: Names) -> Topology:
    """What the demo's connector declares (every flow, the demo's retry ladder), to remove after it."""
    return build_topology(
        names,
        retry_ladder=DEMO_RETRY_LADDER,
        flows=(work_hours_queue(names), *accounting_flow_queues(names)),
    )


@contextlib.asynccontextmanager
async def _removed_on_exit(
    connection: aio_pika.abc.AbstractConnection, names: Names, *, enabled: bool
) -> AsyncIterator[None]:
    """With ``--console``: once the connector has stopped (or failed), delete what it declared."""
    try:
        yield
    finally:
        if enabled:
            await _delete_topology(connection, _demo_topology(names))


async def _delete_topology(connection: aio_pika.abc.AbstractConnection, topology: Topology) -> None:
    """Delete the demo's queues and exchanges once the connector has stopped (a missing one is fine)."""
    for kind, names in (
        ("queue", [q.name for q in topology.queues]),
        ("exchange", [e.name for e in topology.exchanges]),
    ):
        for name in names:
            channel = await connection.channel()
            try:
                underlay = await channel.get_underlay_channel()
                if kind == "queue":
                    await underlay.queue_delete(name)
                else:
                    await underlay.exchange_delete(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
