"""The connector's lifecycle: wire the parts, consume, pause on systemic failure, drain on SIGTERM.

This is the composition root: the only module that knows both the core and the adapters.

Start (configuration was validated before anything here runs): bind the health port → open the
ledger → connect the broker (retried with backoff, bounded) → declare the topology → build the
Severa client → start the supervised background tasks. The circuit starts *open* ("Severa not
reached yet"): the circuit supervisor's first probe (``GetVersion`` without the key, then one
keyed call) closes it and only then starts consuming, so the pod is never ready before it has
reached Severa once.

Stop (SIGTERM/SIGINT only set an event): stop the supervisor first (so nothing restarts
consumption during shutdown) → stop consuming → let in-flight messages finish for
``drain_seconds`` → cancel the rest (their messages go back to the queue unacked) → stop the other
background tasks → close Severa, ledger, channels, connection → log counts. Every step runs even
if an earlier one failed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from connector.broker_addresses import passwords as broker_passwords
from connector.bus import Bus, Consumer
from connector.circuit import Circuit, CircuitState
from connector.config import Settings, env_name
from connector.delayed_retry import RetryLadder
from connector.dlq import DeadLetterer
from connector.errors import Category, ConfigError, ConnectorError, SystemicError, describe
from connector.flows.poller import utc_now
from connector.flows.work_hours import FLOW, ResultPublisher, WorkHoursFlow
from connector.heap import freeze_startup_heap
from connector.heartbeats import HeartbeatWriter, PodState
from connector.logging import get_logger, redact_text, register_secret
from connector.mapping.references import ReferenceResolver
from connector.mapping.table import MappingTableFile
from connector.observability import HealthServer, Metrics, Readiness
from connector.ports import AccountingGateway, SeveraChanges, SeveraGateway
from connector.processing import BUDGET_MARGIN_SECONDS, MessageProcessor
from connector.results import NotificationPublisher
from connector.retry import RetryPolicy
from connector.runtime import FlowUnit
from connector.startup import EXIT_UNREACHABLE, StartupError, explain_port_in_use
from connector.state import open_ledger
from connector.state.ledger import Ledger, LedgerUnavailable
from connector.supervision import Heartbeat, TaskSupervisor
from connector.topology import Names, accounting_flow_queues, build_topology, dlq_name, work_hours_queue

log = get_logger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The accounting system's circuit (named for the role, not the product: another system fits).
ACCOUNTING = "accounting"
SeveraFactory = Callable[[Settings, Metrics], SeveraGateway]


def default_severa_factory(settings: Settings, metrics: Metrics) -> SeveraGateway:
    from adapters.severa.client import SeveraClient

    return SeveraClient(settings.severa, registry=metrics.registry, on_key_loaded=register_secret)


#: A turn shared by every pod: held around each request to the accounting system.
SharedLane = Callable[[], AbstractAsyncContextManager[None]]
AccountingFactory = Callable[[Settings, Metrics, "SharedLane | None"], AccountingGateway]


def default_accounting_factory(
    settings: Settings, metrics: Metrics, shared_lane: SharedLane | None
) -> AccountingGateway:
    """The accounting system's adapter, chosen by ``accounting.system`` (Netvisor today)."""
    from adapters.netvisor.client import NetvisorClient

    if settings.netvisor is None:  # the settings refuse this combination; kept for the type checker
        raise ConfigError("accounting.system is netvisor but no netvisor settings are given")
    return NetvisorClient(
        settings.netvisor, registry=metrics.registry, on_key_loaded=register_secret, shared_lane=shared_lane
    )


#: Connections beyond one per in-flight message: the circuit's probe and the dead-letter ingest.
LEDGER_POOL_HEADROOM = 4
#: Severa calls one handling attempt may make while it holds an entry's lock (reference look-ups
#: on a cold cache, the lost-Add search, read + write of an update).
CALLS_UNDER_LOCK = 8


#: Flows that hold a ledger lock per message: work hours, and with accounting on the customer and
#: invoice flows (the invoice updates only read the ledger).
ACCOUNTING_LOCKING_FLOWS = 2


def ledger_pool_size(settings: Settings) -> int:
    """One pooled connection per message in flight in every flow that locks (the prefetch is per
    consumer), one for the accounting company's shared turn, plus headroom.

    With fewer, a message waits for a connection while holding nothing, and the wait eats the lock
    timeout of an entry nobody else wanted; an invoice holding its own lock while it waits for a
    connection to take the company's turn would wait for itself.
    """
    accounting = settings.accounting.system != "none"
    in_flight = settings.rabbitmq.prefetch
    if accounting:
        in_flight += ACCOUNTING_LOCKING_FLOWS * settings.accounting.prefetch + 1
    return in_flight + LEDGER_POOL_HEADROOM


def ledger_lock_timeout(settings: Settings) -> float:
    """Long enough to outwait the slowest legitimate holder: every call under the lock timing out."""
    return max(30.0, CALLS_UNDER_LOCK * settings.severa.timeout_seconds)


class SeveraNotReachedYet(SystemicError):
    """The state every pod starts in: nothing may be consumed before Severa answered once."""

    reason = "severa_not_reached_yet"


class AccountingNotReachedYet(SystemicError):
    """The accounting circuit's first state: nothing goes to accounting before it answered once."""

    reason = "accounting_not_reached_yet"


class ConnectorService:
    """Runs the work-hours flow. Use as ``async with ConnectorService(settings) as service``."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        severa_factory: SeveraFactory = default_severa_factory,
        ledger: Ledger | None = None,
        extra_flows: Sequence[Callable[[ConnectorService], FlowUnit]] = (),
        accounting_factory: AccountingFactory = default_accounting_factory,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.names = Names(prefix=settings.rabbitmq.prefix)
        self.circuit = Circuit("severa")
        self._severa_factory = severa_factory
        self._given_ledger = ledger
        self.bus: Bus | None = None
        self.severa: SeveraGateway | None = None
        self.ledger: Ledger | None = None
        self.flow: WorkHoursFlow | None = None
        self._extra_flows = tuple(extra_flows)
        self.circuits: dict[str, Circuit] = {self.circuit.name: self.circuit}
        #: How each circuit's supervisor finds out that its dependency is usable again.
        self._probes: dict[str, Callable[[], Awaitable[bool]]] = {self.circuit.name: self._probe}
        self._accounting_factory = accounting_factory
        self.accounting: AccountingGateway | None = None
        self._payments_poller: Any = None
        self._payments_task: asyncio.Task[Any] | None = None
        if settings.accounting.system != "none":
            self.circuits[ACCOUNTING] = Circuit(ACCOUNTING)
            self._probes[ACCOUNTING] = self._probe_accounting
        # Every circuit's state is on /metrics from the first scrape, not only after its first change.
        self._refresh_metrics()
        self.metrics.add_refresher(self._refresh_metrics)
        self.flows: list[FlowUnit] = []
        self._consumers: dict[str, Consumer] = {}
        self._health: HealthServer | None = None
        self._tasks = TaskSupervisor()
        self._ingester: Any = None
        self.queue_sampler: Any = None
        self.poller: Any = None
        self._poller_state: Any = None
        self._poller_stop = asyncio.Event()
        self._poller_task: asyncio.Task[Any] | None = None
        self._start_deadline = 0.0
        self._heartbeat = Heartbeat()
        self.heartbeats: HeartbeatWriter | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._started = False
        self._closed = False

    async def __aenter__(self) -> ConnectorService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def consumer(self) -> Consumer | None:
        """The work-hours flow's consumer."""
        return self._consumers.get(FLOW)

    def consumer_of(self, flow: str) -> Consumer | None:
        return self._consumers.get(flow)

    @property
    def ingested(self) -> int:
        """Dead letters this pod has moved into the store so far."""
        return int(self._ingester.counts.stored) if self._ingester is not None else 0

    @property
    def health_port(self) -> int | None:
        return self._health.bound_port if self._health is not None else None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("ConnectorService is closed; create a new one")
        if self._started:
            return
        self._started = True
        settings = self.settings
        for password in broker_passwords(settings.rabbitmq.url.get_secret_value()):
            register_secret(password)
        log.info("connector_starting", broker=settings.rabbitmq.safe_url(), severa=settings.severa.endpoint)
        self._start_deadline = asyncio.get_running_loop().time() + settings.rabbitmq.connect_timeout_seconds
        consuming = settings.role in ("consumer", "all")
        polling = settings.role in ("poller", "all")
        if consuming:
            self.circuit.trip(SeveraNotReachedYet("Severa has not been reached yet: probing"))
            if ACCOUNTING in self.circuits:
                self.circuits[ACCOUNTING].trip(
                    AccountingNotReachedYet(f"{settings.accounting.system} has not been reached yet: probing")
                )
            self._refresh_metrics()
        self.metrics.set_readiness(self.readiness())

        if settings.http.enabled:  # first: a port in use is a configuration error, found at once
            self._health = HealthServer(
                self.metrics,
                self.readiness,
                host=settings.http.host,
                port=settings.http.port,
                liveness=self.liveness,
            )
            await self._start_health(self._health)
        # With the health port, before the start-up retries: /healthz answers from the heartbeat's
        # age, and a pod still retrying its broker must stay alive, not look stalled.
        self._tasks.spawn("heartbeat", self._heartbeat.run())

        if not consuming and settings.accounting.system == "none":
            pass  # the poller keeps its own state; the idempotency ledger is the consumers'
        elif self._given_ledger is not None:
            self.ledger = self._given_ledger
        else:
            self.ledger = await self._open_ledger()

        self.bus = Bus(
            settings.rabbitmq.url.get_secret_value(),
            name=f"severa-connector:{settings.pod_name}",
            publish_timeout=settings.rabbitmq.publish_timeout_seconds,
        )
        await self._connect(self.bus)
        self.severa = self._severa_factory(settings, self.metrics)
        if settings.accounting.system != "none":
            self.accounting = self._accounting_factory(settings, self.metrics, self._accounting_lane())
        if not consuming:
            # The queues of the flows that consume what this poller publishes are declared here
            # too: a change published before any consumer pod declared them would be dropped as
            # unroutable, and the poller never publishes the same change twice.
            self._topology = build_topology(
                self.names,
                delivery_limit=settings.rabbitmq.delivery_limit,
                retry_ladder=settings.retry.ladder_seconds,
                flows=accounting_flow_queues(self.names) if self.accounting is not None else (),
            )
            await self.bus.declare(self._topology)
            await self._start_poller()
            self._spawn_pod_heartbeat()
            log.info("connector_started", role=settings.role)
            return
        self.flows = [
            self._work_hours_flow(),
            *(self._accounting_flows() if self.accounting is not None else ()),
            *(make(self) for make in self._extra_flows),
        ]
        for unit in self.flows:
            if unit.circuit not in self.circuits:
                raise ValueError(f"flow {unit.name} depends on an unknown circuit {unit.circuit!r}")
        self._topology = build_topology(
            self.names,
            delivery_limit=settings.rabbitmq.delivery_limit,
            retry_ladder=settings.retry.ladder_seconds,
            results_queue=settings.rabbitmq.results_queue,
            flows=tuple(unit.queue for unit in self.flows),
        )
        await self.bus.declare(self._topology)
        for unit in self.flows:
            self._consumers[unit.name] = await self._consume(unit)
        if settings.dlq.ingest:
            self._tasks.spawn("dlq-ingest", self._ingest_dead_letters())
        for name, probe in self._probes.items():
            if any(unit.circuit == name for unit in self.flows):
                label = "circuit-supervisor" if name == self.circuit.name else f"circuit-supervisor:{name}"
                self._tasks.spawn(label, self._supervise_circuit(self.circuits[name], probe))
        for consumer in self._consumers.values():
            if consumer.keeper is not None:
                self._tasks.watch(f"consumer-keeper:{consumer.queue_name}", consumer.keeper)
        if settings.http.enabled:
            self._spawn_queue_sampler()
        if polling:
            await self._start_poller()
        self._spawn_pod_heartbeat()
        log.info(
            "connector_started",
            role=settings.role,
            flows=[unit.name for unit in self.flows],
            queues=[unit.queue.queue for unit in self.flows],
            prefetch=settings.rabbitmq.prefetch,
        )

    async def _start_poller(self) -> None:
        """The change poller: one active across pods (the lease), publishing Severa's changes."""
        from connector.flows.poller import Poller
        from connector.flows.severa_feeds import CustomerFeed, HourEntryFeed, InvoiceFeed
        from connector.state.poller_state import Cursor, open_poller_state

        assert self.bus is not None
        assert self.severa is not None
        settings = self.settings
        cfg = settings.poller
        severa: SeveraChanges = self.severa  # type: ignore[assignment]
        exchange = self.names.events_exchange
        clock = utc_now
        feeds: list[Any] = []
        if cfg.customers:
            feeds.append(
                CustomerFeed(
                    severa,
                    exchange=exchange,
                    organization_id=cfg.organization_id,
                    include_inactive=cfg.include_inactive_customers,
                    clock=clock,
                )
            )
        if cfg.invoice_status:
            feeds.append(
                InvoiceFeed(
                    severa,
                    exchange=exchange,
                    organization_id=cfg.organization_id,
                    status=cfg.invoice_status,
                    business_unit_guids=cfg.business_unit_guids,
                    clock=clock,
                )
            )
        if cfg.hour_entries:
            feeds.append(
                HourEntryFeed(severa, exchange=exchange, organization_id=cfg.organization_id, clock=clock)
            )
        self._poller_state = open_poller_state(settings.state_url, table_prefix=cfg.state_table_prefix)
        await self._poller_state.setup()
        self.poller = Poller(
            feeds=feeds,
            state=self._poller_state,
            cursor=Cursor,
            publish=NotificationPublisher(self.bus, self.metrics, flow="poller"),
            holder=settings.pod_name,
            interval_seconds=cfg.interval_seconds,
            max_calls_per_poll=cfg.max_calls_per_poll,
            lease_ttl_seconds=cfg.lease_ttl_seconds,
            backoff_max_seconds=settings.circuit.probe_max_seconds,
            on_feed_polled=self.metrics.poller_polled,
        )
        self._poller_task = self._tasks.spawn("poller", self.poller.run(self._poller_stop))
        if self.accounting is not None and settings.accounting.payments:
            await self._start_payments_poller()
        log.info("poller_started", feeds=[feed.kind for feed in feeds], interval_s=cfg.interval_seconds)

    def _work_hours_flow(self) -> FlowUnit:
        """The work-hours flow: events from time trackers written into Severa."""
        assert self.bus is not None
        assert self.severa is not None
        assert self.ledger is not None
        settings = self.settings
        resolver = ReferenceResolver(
            self.severa,
            MappingTableFile(settings.mapping_file, reload_seconds=settings.mapping_reload_seconds),
            ttl_seconds=settings.work_hours.cache_ttl_seconds,
        )
        notify = NotificationPublisher(self.bus, self.metrics, flow=FLOW)
        self.flow = WorkHoursFlow(
            severa=self.severa,
            resolver=resolver,
            ledger=self.ledger,
            results=ResultPublisher(notify, self.names.results_exchange),
            metrics=self.metrics,
        )
        return FlowUnit(
            queue=work_hours_queue(self.names),
            handle=self.flow.handle,
            notify_failure=self.flow.notify_failure,
            hold_seconds=settings.work_hours.hold_seconds,
        )

    def _accounting_lane(self) -> SharedLane | None:
        """One request at a time per accounting company across pods: the ledger's lock on the
        company (a PostgreSQL advisory lock where the ledger is shared; in-process with SQLite,
        which only one pod uses). A poller pod with accounting on opens the ledger for this alone:
        its payments poll is a request to the same company."""
        ledger = self.ledger
        if ledger is None or self.settings.netvisor is None:
            return None
        company = f"{self.settings.accounting.system}-company:{self.settings.netvisor.organisation_id}"
        return lambda: ledger.lock(company)

    def _accounting_flows(self) -> list[FlowUnit]:
        """Customers and invoices into accounting, and what became of the invoices back into Severa."""
        from connector.flows.accounting_customers import AccountingCustomersFlow
        from connector.flows.accounting_invoices import AccountingInvoicesFlow
        from connector.flows.severa_invoice_updates import InvoiceStatuses, SeveraInvoiceUpdatesFlow

        assert self.bus is not None
        assert self.ledger is not None
        assert self.accounting is not None
        cfg = self.settings.accounting
        system = cfg.system
        exchange = self.names.accounting_exchange
        customers = AccountingCustomersFlow(
            accounting=self.accounting,
            ledger=self.ledger,
            notify=NotificationPublisher(self.bus, self.metrics, flow="accounting_customers"),
            exchange=exchange,
            system=system,
        )
        invoices = AccountingInvoicesFlow(
            accounting=self.accounting,
            ledger=self.ledger,
            publish=self.bus.publish,  # consumed by our own flow: an unroutable one is a failure
            notify=NotificationPublisher(self.bus, self.metrics, flow="accounting_invoices"),
            exchange=exchange,
            system=system,
            options=cfg.invoices,
        )
        updates = SeveraInvoiceUpdatesFlow(
            severa=self.severa,  # type: ignore[arg-type]  # SeveraClient implements SeveraInvoicing
            ledger=self.ledger,
            statuses=InvoiceStatuses(transferred=cfg.severa_transferred_status, paid=cfg.severa_paid_status),
            system=system,
        )
        customers_queue, invoices_queue, updates_queue = accounting_flow_queues(self.names)
        return [
            FlowUnit(
                queue=customers_queue,
                handle=customers.handle,
                circuit=ACCOUNTING,
                hold_seconds=cfg.hold_seconds,
                prefetch=cfg.prefetch,
            ),
            FlowUnit(
                queue=invoices_queue,
                handle=invoices.handle,
                notify_failure=invoices.notify_failure,
                circuit=ACCOUNTING,
                hold_seconds=cfg.hold_seconds,
                prefetch=cfg.prefetch,
            ),
            FlowUnit(
                queue=updates_queue,
                handle=updates.handle,
                hold_seconds=self.settings.work_hours.hold_seconds,
            ),
        ]

    async def _start_payments_poller(self) -> None:
        """Payments back from accounting: a second poller with its own lease and budget."""
        from connector.flows.accounting_payments import PaymentFeed, PaymentsPoller
        from connector.state.poller_state import Cursor

        assert self.bus is not None
        assert self.accounting is not None
        assert self._poller_state is not None
        cfg = self.settings.accounting
        self._payments_poller = PaymentsPoller(
            feeds=[PaymentFeed(self.accounting, exchange=self.names.accounting_exchange, system=cfg.system)],
            state=self._poller_state,
            cursor=Cursor,
            publish=self.bus.publish,  # consumed by our own flow: an unroutable one is a failure
            holder=self.settings.pod_name,
            interval_seconds=cfg.payments_interval_seconds,
            max_calls_per_poll=cfg.payments_max_calls_per_poll,
            lease_ttl_seconds=self.settings.poller.lease_ttl_seconds,
            backoff_max_seconds=self.settings.circuit.probe_max_seconds,
            on_feed_polled=self.metrics.poller_polled,
        )
        self._payments_task = self._tasks.spawn(
            "payments-poller", self._payments_poller.run(self._poller_stop)
        )
        log.info("payments_poller_started", interval_s=cfg.payments_interval_seconds)

    async def _consume(self, unit: FlowUnit) -> Consumer:
        """One flow on the shared runtime: the same processing, retry ladder, circuit, DLQ and
        in-flight tracking for every flow; only its queue and handler are its own."""
        assert self.bus is not None
        settings = self.settings
        ladder = RetryLadder(self.bus, unit.queue.queue, settings.retry.ladder_seconds)
        processor = MessageProcessor(
            flow=unit.name,
            handler=unit.handle,
            dead_letters=DeadLetterer(
                self.bus,
                exchange=self.names.dead_letter_exchange,
                queue=unit.queue.queue,
                flow=unit.name,
                pod=settings.pod_name,
            ),
            circuit=self.circuits[unit.circuit],
            retry=RetryPolicy(
                attempts=settings.retry.attempts,
                initial_seconds=settings.retry.initial_seconds,
                max_seconds=settings.retry.max_seconds,
            ),
            metrics=self.metrics,
            hold_seconds=unit.hold_seconds,
            budget_seconds=settings.rabbitmq.consumer_timeout_seconds - BUDGET_MARGIN_SECONDS,
            poison_strikes=settings.circuit.poison_strikes,
            on_dead_letter=unit.notify_failure,
            retry_later=ladder,
            put_back=ladder,
        )
        bus, topology = self.bus, self._topology
        self.metrics.init_flow(unit.name)  # its series at 0 before the first delivery: rate() works
        return await bus.consumer(
            unit.queue.queue,
            self._tracked(processor),
            prefetch=unit.prefetch or settings.rabbitmq.prefetch,
            on_restore=lambda: bus.declare(topology),
        )

    def _consumers_of(self, circuit: Circuit) -> list[Consumer]:
        return [
            self._consumers[unit.name]
            for unit in self.flows
            if self.circuits[unit.circuit] is circuit and unit.name in self._consumers
        ]

    async def _open_ledger(self) -> Ledger:
        """Open the ledger, retrying an unreachable store within the start-up budget.

        Pods often start before their database, as before their broker: the same budget
        (``rabbitmq.connect_timeout_seconds``) applies, then one line and exit 3. Anything else
        (a schema newer than this code, a SQLite file another process holds) fails at once.
        """
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = self._start_deadline
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            ledger = open_ledger(
                settings.state_url,
                pool_size=ledger_pool_size(settings),
                lock_timeout=ledger_lock_timeout(settings),
            )
            try:
                await ledger.setup()
            except LedgerUnavailable as exc:
                await _quietly("ledger_close", ledger.aclose())  # nothing half-built is kept
                left = deadline - loop.time()
                if exc.reason != "ledger_unavailable":
                    raise
                if left <= 0:
                    raise StartupError(
                        f"{exc.message}; still unreachable after {attempt} attempts in "
                        f"{settings.rabbitmq.connect_timeout_seconds:g}s: check "
                        f"{env_name(('state_url',))} and that the database is up",
                        exit_code=EXIT_UNREACHABLE,
                        reason="ledger_unreachable",
                    ) from None
                log.warning(
                    "ledger_unreachable_retrying",
                    attempt=attempt,
                    error=exc.message,
                    seconds_left=round(left, 1),
                )
                await asyncio.sleep(min(delay, left))  # backoff before the next attempt
                delay = min(delay * 2, 10.0)
                continue
            return ledger

    async def _start_health(self, health: HealthServer) -> None:
        try:
            await health.start()
        except OSError as exc:
            raise explain_port_in_use(
                exc,
                host=self.settings.http.host,
                port=self.settings.http.port,
                setting=env_name(("http", "port")),
                host_setting=env_name(("http", "host")),
            ) from None

    async def _connect(self, bus: Bus) -> None:
        # The ledger and the broker share one start-up budget, not one each.
        left = self._start_deadline - asyncio.get_running_loop().time()
        await bus.connect(
            retry_seconds=max(round(left, 1), 1.0),
            safe_url=self.settings.rabbitmq.safe_url(),
        )

    async def run_until_stopped(self) -> None:
        """Run until SIGINT/SIGTERM (or :meth:`request_stop`), then drain and close."""
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            freeze_startup_heap()  # a process of its own: what start-up built lives as long as it
            await self._stop.wait()
        finally:
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)
            await self.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        """Stop consuming, drain, close everything. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._tasks.begin_close()
        self._poller_stop.set()
        pollers = {task for task in (self._poller_task, self._payments_task) if task is not None}
        if pollers:
            # Let a poll in progress publish and save its cursor, and the lease go, rather than
            # cutting it between the two (a restart would then publish those changes again).
            await asyncio.wait(pollers, timeout=self.settings.drain_seconds)
        await self._tasks.aclose()  # first: nothing may restart consumption from here on
        # Held messages stop waiting and are put back (republished, then acked) while the drain
        # runs, instead of being cancelled and returned unacked, which would spend their quorum
        # delivery limit on every restart during an outage.
        for circuit in self.circuits.values():
            circuit.stop_holding()
        for consumer in self._consumers.values():
            await _quietly("consumer_stop", consumer.stop())
        drained, cancelled = await self._drain(self.settings.drain_seconds)
        for consumer in self._consumers.values():
            await _quietly("consumer_close", consumer.close())
        if self._health is not None:
            await _quietly("health_close", self._health.close())
        if self.severa is not None:
            await _quietly("severa_close", self.severa.aclose())
        if self.accounting is not None:
            await _quietly("accounting_close", self.accounting.aclose())
        if self.ledger is not None and self._given_ledger is None:
            await _quietly("ledger_close", self.ledger.aclose())
        if self._poller_state is not None:
            await _quietly("poller_state_close", self._poller_state.aclose())
        if self.bus is not None:
            await _quietly("bus_close", self.bus.close())
        log.info("connector_stopped", drained=drained, cancelled=cancelled)

    # -- health ---------------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        reasons: list[str] = []
        codes: list[str] = []  # the same, from a fixed vocabulary: connector_ready{reason}
        if self.bus is None or not self.bus.is_connected:
            reasons.append("not connected to RabbitMQ")
            codes.append("broker_disconnected")
        for circuit in self.circuits.values():
            if circuit.is_open:
                error = circuit.last_error
                reasons.append(f"paused: {error.message if error else f'{circuit.name} unusable'}")
                codes.append(f"{circuit.name}_circuit_open")
        if self.poller is not None and isinstance(self.poller.last_error, SystemicError):
            reasons.append(f"poller paused: {self.poller.last_error.message}")
            codes.append("poller_paused")
        if not self.flows and self.settings.role != "poller":
            reasons.append("not consuming")
            codes.append("not_consuming")
        for unit in self.flows:
            if self.circuits[unit.circuit].is_open:
                continue  # paused on purpose, said above
            consumer = self._consumers.get(unit.name)
            where = f" ({unit.queue.queue})" if len(self.flows) > 1 else ""
            if consumer is not None and consumer.cancelled_by_broker.is_set():
                reasons.append(
                    f"the broker cancelled the consumer{where} (queue deleted or node lost); restoring"
                )
                codes.append("consumer_cancelled")
            elif consumer is None or not consumer.active:
                detail = f" ({consumer.last_error})" if consumer is not None and consumer.last_error else ""
                reasons.append(f"not consuming{where}{detail}")
                codes.append("not_consuming")
        return Readiness(ready=not reasons, reasons=tuple(reasons), codes=tuple(codes))

    def liveness(self) -> Readiness:
        reasons = [f"background task {name} died" for name in self._tasks.dead()]
        if not self._heartbeat.fresh:
            reasons.append(f"event loop heartbeat is {self._heartbeat.age:.0f}s old")
        return Readiness(ready=not reasons, reasons=tuple(reasons))

    # -- internals ------------------------------------------------------------------------------

    def _refresh_metrics(self) -> None:
        """Gauges read from live state, before every scrape (and once at construction)."""
        for name, circuit in self.circuits.items():
            self.metrics.set_circuit(name, circuit.state.value)

    def _spawn_pod_heartbeat(self) -> None:
        """This pod's heartbeat row in the dead-letter store, for the console (:mod:`connector.heartbeats`).

        Off with ``dlq.heartbeat_seconds=0``, and pointless with an in-memory store nobody else reads.
        """
        from connector import __version__
        from connector.dlq.store import open_store

        settings = self.settings
        url = settings.dlq_store_url()
        if settings.dlq.heartbeat_seconds <= 0 or url.endswith(":memory:"):
            return
        writer = HeartbeatWriter(
            lambda: open_store(url, table_prefix=settings.dlq.store_table_prefix),
            self.pod_state,
            pod=settings.pod_name,
            version=__version__,
            interval=settings.dlq.heartbeat_seconds,
        )
        self.heartbeats = writer
        self._tasks.spawn("pod-heartbeat", writer.run())

    def pod_state(self) -> PodState:
        """What this pod's heartbeat says: role, flows, circuits, and the verdict of ``/readyz``."""
        readiness = self.readiness()
        return PodState(
            role=self.settings.role,
            flows=tuple(unit.name for unit in self.flows) + (("poller",) if self.poller is not None else ()),
            circuits={name: circuit.state.value for name, circuit in self.circuits.items()},
            ready=readiness.ready,
            # Free text from errors: the same redaction as a log line before it leaves the pod.
            reasons=tuple(redact_text(reason) for reason in readiness.reasons),
        )

    def _spawn_queue_sampler(self) -> None:
        """Queue depth, consumers and oldest message age of every flow (:mod:`connector.ops_metrics`)."""
        from connector.ops_metrics import QueueSampler, queues_of

        bus = self.bus
        assert bus is not None
        sampler = QueueSampler(
            lambda: bus.connection,
            queues_of(self.flows, self.settings.retry.ladder_seconds),
            self.metrics,
            interval=self.settings.http.metrics_sample_seconds,
        )
        self.queue_sampler = sampler
        self._tasks.spawn("queue-sampler", sampler.run())

    def _tracked(
        self, processor: Callable[[AbstractIncomingMessage], Awaitable[None]]
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def run(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await processor(message)
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        return run

    async def _drain(self, seconds: float) -> tuple[int, int]:
        pending = set(self._in_flight)
        if not pending:
            return 0, 0
        log.info("draining", in_flight=len(pending), seconds=seconds)
        done, still = await asyncio.wait(pending, timeout=seconds)
        for task in still:
            task.cancel()  # unacked: the broker redelivers these messages
        if still:
            await asyncio.wait(still, timeout=5)
        return len(done), len(still)

    async def _supervise_circuit(self, circuit: Circuit, probe: Callable[[], Awaitable[bool]]) -> None:
        """Pause ``circuit``'s flows while it is not closed, probe with backoff, resume when it closes.

        One supervisor per circuit (Severa, accounting): a dependency's outage pauses only the
        flows that need it.

        The backoff (``circuit.probe_*_seconds``) grows with every failed probe *and* every failed
        trial or re-trip that came with no success in between -- a probe that passes where the real
        operation fails (an API user allowed to read but not to write) must not turn into a tight
        loop of probes and trials that spends the quota. It resets only after Severa served
        messages again. Never dies of an error: each step's failure is logged and the loop goes on
        (a dead supervisor would leave the pod paused forever; it is supervised all the same).
        """
        cfg = self.settings.circuit
        delay = cfg.probe_initial_seconds

        async def back_off() -> None:
            nonlocal delay
            await asyncio.sleep(delay)  # backoff between attempts on Severa, not synchronisation
            delay = min(delay * 2, cfg.probe_max_seconds)

        while True:
            try:
                state = circuit.state
                self.metrics.set_circuit(circuit.name, state.value)
                consumers = self._consumers_of(circuit)
                if state is CircuitState.CLOSED:
                    for consumer in consumers:
                        await consumer.start()
                    await circuit.wait_tripped()
                    if circuit.evidence_of_health:
                        delay = cfg.probe_initial_seconds  # it worked for a while: a new outage
                    else:
                        await back_off()  # re-tripped at once: the probe passing proved nothing
                    continue
                for consumer in consumers:
                    await consumer.stop()
                if state is CircuitState.HALF_OPEN:
                    await circuit.wait_changed(cfg.probe_max_seconds)
                    if circuit.state is CircuitState.OPEN:
                        await back_off()  # the trial failed (or was abandoned)
                    elif (
                        circuit.state is CircuitState.HALF_OPEN
                        and not circuit.trial_pending
                        and circuit.waiters == 0
                    ):
                        circuit.abandon_trial()  # nobody left to try: probe again
                    continue
                if await probe():
                    circuit.half_open()
                    continue
                await back_off()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "circuit_supervisor_step_failed",
                    circuit=circuit.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await back_off()

    async def _ingest_dead_letters(self) -> None:
        """Move every dead letter into the central store (commit, then ack), for as long as we run.

        The pods are the one long-running, central place that ingests, so the ``dlq`` commands
        only ever read the store. A store that cannot be opened is retried with backoff; the dead
        letters wait safely in their queues meanwhile.
        """
        from connector.dlq.contracts import flows_by_queue
        from connector.dlq.ingest import DeadLetterIngester
        from connector.dlq.store import open_store

        assert self.bus is not None
        settings = self.settings
        delay = 1.0
        while True:
            store = open_store(settings.dlq_store_url(), table_prefix=settings.dlq.store_table_prefix)
            ingester = DeadLetterIngester(
                self.bus,
                store,
                tuple(dlq_name(unit.queue.queue) for unit in self.flows),
                prefetch=settings.dlq.ingest_prefetch,
                flows_by_queue={
                    **flows_by_queue(self.names),
                    **{unit.queue.queue: unit.name for unit in self.flows},
                },
            )
            self._ingester = ingester
            try:
                await store.setup()
                await ingester.start()
                log.info("dlq_ingest_started", queues=[dlq_name(unit.queue.queue) for unit in self.flows])
                await asyncio.Event().wait()  # until cancelled at shutdown
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "dlq_ingest_failed_retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay
                )
            finally:
                await _quietly("dlq_ingest_stop", ingester.stop())
                await _quietly("dlq_store_close", store.aclose())
            await asyncio.sleep(delay)  # backoff before opening the store again
            delay = min(delay * 2, 60.0)

    async def _probe_accounting(self) -> bool:
        """The accounting system answers an authenticated read (and the ledger): True; else False."""
        assert self.accounting is not None
        try:
            await self.accounting.probe()
            if self.ledger is not None:
                await self.ledger.probe()
        except ConnectorError as exc:
            if exc.category is Category.PERMANENT:
                return True
            log.warning("probe_failed_still_paused", circuit=ACCOUNTING, **describe(exc))
            return False
        return True

    async def _probe(self) -> bool:
        """Severa (without and with the key) and the ledger answer: True; else False, logged."""
        assert self.severa is not None
        try:
            await self.severa.get_version()
            await self.severa.probe()
            if self.ledger is not None:
                await self.ledger.probe()
        except ConnectorError as exc:
            if exc.category is Category.PERMANENT:
                return True  # Severa answers (even if it refuses something): usable again
            log.warning("probe_failed_still_paused", **describe(exc))
            return False
        return True


async def _quietly(step: str, action: Awaitable[Any]) -> None:
    """Run one shutdown step; its failure is logged and the next step still runs."""
    try:
        await action
    except Exception as exc:
        log.warning("shutdown_step_failed", step=step, error=f"{type(exc).__name__}: {exc}")
