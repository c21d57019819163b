"""The connector's lifecycle: wire the parts, consume, pause on systemic failure, drain on SIGTERM.

This is the composition root: the only module that knows both the core and the adapters.

Start: connect the broker → declare the topology → open the ledger and the Severa client → start the
health server → start consuming → supervise the circuit. Stop (SIGTERM/SIGINT only set an event):
stop consuming → let in-flight messages finish for ``drain_seconds`` → cancel the rest (their
messages go back to the queue unacked) → close Severa, ledger, channels, connection → log counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aio_pika.abc import AbstractIncomingMessage

from connector.bus import Bus, Consumer
from connector.circuit import Circuit
from connector.config import Settings
from connector.delayed_retry import RetryLadder
from connector.dlq import DeadLetterer
from connector.errors import Category, ConnectorError, describe
from connector.flows.work_hours import FLOW, ResultPublisher, WorkHoursFlow
from connector.logging import get_logger, register_secret
from connector.mapping.references import ReferenceResolver
from connector.mapping.table import MappingTableFile
from connector.observability import HealthServer, Metrics, Readiness
from connector.ports import SeveraGateway
from connector.processing import MessageProcessor
from connector.retry import RetryPolicy
from connector.state import open_ledger
from connector.state.ledger import Ledger
from connector.topology import Names, build_topology

log = get_logger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SeveraFactory = Callable[[Settings, Metrics], SeveraGateway]


def default_severa_factory(settings: Settings, metrics: Metrics) -> SeveraGateway:
    from adapters.severa.client import SeveraClient

    return SeveraClient(settings.severa, registry=metrics.registry, on_key_loaded=register_secret)


class ConnectorService:
    """Runs the work-hours flow. Use as ``async with ConnectorService(settings) as service``."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        severa_factory: SeveraFactory = default_severa_factory,
        ledger: Ledger | None = None,
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
        self._consumer: Consumer | None = None
        self._health: HealthServer | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._started = False
        self._closed = False

    async def __aenter__(self) -> ConnectorService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("ConnectorService is closed; create a new one")
        if self._started:
            return
        self._started = True
        settings = self.settings
        register_secret(urlsplit(settings.rabbitmq.url.get_secret_value()).password)
        log.info("connector_starting", broker=settings.rabbitmq.safe_url(), severa=settings.severa.endpoint)

        self.bus = Bus(
            settings.rabbitmq.url.get_secret_value(),
            name=f"severa-connector:{settings.pod_name}",
            publish_timeout=settings.rabbitmq.publish_timeout_seconds,
        )
        await self.bus.connect()
        self._topology = build_topology(
            self.names,
            delivery_limit=settings.rabbitmq.delivery_limit,
            retry_ladder=settings.retry.ladder_seconds,
        )
        await self.bus.declare(self._topology)

        if self._given_ledger is not None:
            self.ledger = self._given_ledger
        else:
            self.ledger = open_ledger(settings.state_url)
            await self.ledger.setup()
        self.severa = self._severa_factory(settings, self.metrics)
        resolver = ReferenceResolver(
            self.severa,
            MappingTableFile(settings.mapping_file, reload_seconds=settings.mapping_reload_seconds),
            ttl_seconds=settings.work_hours.cache_ttl_seconds,
        )
        self.flow = WorkHoursFlow(
            severa=self.severa,
            resolver=resolver,
            ledger=self.ledger,
            results=ResultPublisher(self.bus.publish, self.names.results_exchange),
            metrics=self.metrics,
        )
        processor = MessageProcessor(
            flow=FLOW,
            handler=self.flow.handle,
            dead_letters=DeadLetterer(
                self.bus,
                exchange=self.names.dead_letter_exchange,
                queue=self.names.workhours_queue,
                flow=FLOW,
                pod=settings.pod_name,
            ),
            circuit=self.circuit,
            retry=RetryPolicy(
                attempts=settings.retry.attempts,
                initial_seconds=settings.retry.initial_seconds,
                max_seconds=settings.retry.max_seconds,
            ),
            metrics=self.metrics,
            hold_seconds=settings.work_hours.hold_seconds,
            on_dead_letter=self.flow.notify_failure,
            retry_later=RetryLadder(self.bus, self.names, settings.retry.ladder_seconds),
        )
        self._consumer = await self.bus.consumer(
            self.names.workhours_queue, self._tracked(processor), prefetch=settings.rabbitmq.prefetch
        )
        if settings.http.enabled:
            self._health = HealthServer(
                self.metrics, self.readiness, host=settings.http.host, port=settings.http.port
            )
            await self._health.start()
        await self._consumer.start()
        self._supervisor = asyncio.create_task(self._supervise_circuit(), name="circuit-supervisor")
        self._watchdog = asyncio.create_task(self._restore_cancelled_consumer(), name="consumer-watchdog")
        log.info("connector_started", queue=self.names.workhours_queue, prefetch=settings.rabbitmq.prefetch)

    async def run_until_stopped(self) -> None:
        """Run until SIGINT/SIGTERM (or :meth:`request_stop`), then drain and close."""
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)
            await self.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        """Stop consuming, drain, close everything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        drained, cancelled = await self._drain(self.settings.drain_seconds)
        for task in (self._supervisor, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._health is not None:
            await self._health.close()
        if self.severa is not None:
            await self.severa.aclose()
        if self.ledger is not None and self._given_ledger is None:
            await self.ledger.aclose()
        if self.bus is not None:
            await self.bus.close()
        log.info("connector_stopped", drained=drained, cancelled=cancelled)

    # -- health ---------------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        reasons: list[str] = []
        if self.bus is None or not self.bus.is_connected:
            reasons.append("not connected to RabbitMQ")
        if self._consumer is not None and self._consumer.cancelled_by_broker.is_set():
            reasons.append("the broker cancelled the consumer (queue deleted or node lost); restoring")
        elif self._consumer is None or not self._consumer.active:
            reasons.append("not consuming")
        if self.circuit.is_open:
            error = self.circuit.last_error
            reasons.append(f"paused: {error.message if error else 'Severa unusable'}")
        return Readiness(ready=not reasons, reasons=tuple(reasons))

    # -- internals ------------------------------------------------------------------------------

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

    async def _restore_cancelled_consumer(self) -> None:
        """The broker cancelled our consumer (queue deleted, node lost): re-declare and consume again."""
        assert self._consumer is not None
        assert self.bus is not None
        delay = 1.0
        while True:
            await self._consumer.cancelled_by_broker.wait()
            await asyncio.sleep(delay)  # backoff before touching the broker again
            try:
                await self.bus.declare(self._topology)
                if not self.circuit.is_open:
                    await self._consumer.start()
                delay = 1.0
            except Exception as exc:
                log.error("consumer_restore_failed", error=str(exc), retry_in_s=delay)
                delay = min(delay * 2, 30.0)

    async def _supervise_circuit(self) -> None:
        """Pause on trip, probe Severa with backoff, resume when it answers."""
        assert self._consumer is not None
        assert self.severa is not None
        cfg = self.settings.circuit
        while True:
            await self.circuit.wait_tripped()
            self.metrics.circuit_open.labels(circuit=self.circuit.name).set(1)
            await self._consumer.stop()
            delay = cfg.probe_initial_seconds
            while True:
                await asyncio.sleep(delay)  # backoff between probes, not synchronisation
                try:
                    await self.severa.probe()
                    if self.ledger is not None:
                        await self.ledger.probe()
                except ConnectorError as exc:
                    if exc.category is Category.PERMANENT:
                        break  # Severa answers (even if it refuses something): usable again
                    log.warning("probe_failed_still_paused", **describe(exc), next_probe_s=delay)
                else:
                    break
                delay = min(delay * 2, cfg.probe_max_seconds)
            self.circuit.close()
            self.metrics.circuit_open.labels(circuit=self.circuit.name).set(0)
            await self._consumer.start()
