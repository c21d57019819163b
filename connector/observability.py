"""Prometheus metrics and the HTTP endpoints Kubernetes probes: /healthz, /readyz, /metrics.

- ``/healthz`` (liveness): the event loop answers, its heartbeat is fresh, and every supervised
  background task (circuit supervisor, consumer keepers, dead-letter ingest, heartbeat) is still
  running. A task that died would leave the pod paused or deaf forever while looking healthy, so it
  fails liveness and Kubernetes restarts the pod. A paused connector (circuit open) is *alive* —
  restarting it would not fix a wrong key or a spent quota.
- ``/readyz`` (readiness): connected to the broker, consumers running, circuit closed. Not-ready
  pods drop out of dashboards' "healthy" count and alerting picks them up; messages wait in the
  queue, nothing is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from connector.logging import get_logger

log = get_logger(__name__)


class Metrics:
    """The connector's own metrics, on an injectable registry (tests use a fresh one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "connector_messages_total",
            "Messages handled, by flow and outcome (acked, dead_lettered, requeued).",
            ["flow", "outcome"],
            registry=self.registry,
        )
        self.processing_seconds = Histogram(
            "connector_processing_seconds",
            "Time from delivery to settlement, by flow.",
            ["flow"],
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "connector_circuit_open",
            "1 while consumption is paused by a systemic failure.",
            ["circuit"],
            registry=self.registry,
        )
        self.results_unroutable = Counter(
            "connector_result_events_unroutable_total",
            "Result events and dead-letter notices no queue was bound for (dropped by the broker; "
            "not a failure of the write they report).",
            ["flow", "event_type"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "connector_ready",
            "1 while the pod reports ready (broker connected, consuming, circuit closed).",
            registry=self.registry,
        )
        self.sync_results = Counter(
            "connector_workhours_results_total",
            "Work-hour events by what they did in Severa (created, updated, deleted, unchanged, stale).",
            ["outcome"],
            registry=self.registry,
        )


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...] = ()


def always_alive() -> Readiness:
    return Readiness(ready=True)


class HealthServer:
    """aiohttp server for probes and scrapes; started and stopped by the service."""

    def __init__(
        self,
        metrics: Metrics,
        readiness: Callable[[], Readiness],
        *,
        host: str,
        port: int,
        liveness: Callable[[], Readiness] = always_alive,
    ) -> None:
        self._metrics = metrics
        self._readiness = readiness
        self._liveness = liveness
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("http_started", host=self._host, port=self.bound_port)

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        state = self._liveness()
        body = {"status": "alive" if state.ready else "dead", "reasons": list(state.reasons)}
        return web.json_response(body, status=200 if state.ready else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        state = self._readiness()
        self._metrics.ready.set(1 if state.ready else 0)
        body = {"status": "ready" if state.ready else "not-ready", "reasons": list(state.reasons)}
        return web.json_response(body, status=200 if state.ready else 503)

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._metrics.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )
