"""Prometheus metrics and the HTTP endpoints Kubernetes probes: /healthz, /readyz, /metrics.

- ``/healthz`` (liveness): the event loop answers, its heartbeat is fresh, and every supervised
  background task (circuit supervisor, consumer keepers, dead-letter ingest, heartbeat) is still
  running. A task that died would leave the pod paused or deaf forever while looking healthy, so it
  fails liveness and Kubernetes restarts the pod. A paused connector (circuit open) is *alive* —
  restarting it would not fix a wrong key or a spent quota.
- ``/readyz`` (readiness): connected to the broker, consumers running, circuit closed. Not-ready
  pods drop out of dashboards' "healthy" count and alerting picks them up; messages wait in the
  queue, nothing is dead-lettered.

Metric names follow the Prometheus conventions (base units in the name, ``_total`` on counters);
``docs/operations.md`` lists every metric, what is exact and what is approximate, and the runbook
of every alert in ``deploy/monitoring/prometheus-rules.yaml``. Broker-side numbers (queue depth,
consumers, the oldest message's age) come from :mod:`connector.ops_metrics`'s sampler; what only
the process knows (circuit states, readiness) is refreshed at every scrape, so a scrape never
reads a value older than the state it describes.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from aiohttp import web
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from connector.logging import get_logger

log = get_logger(__name__)


#: Buckets for durations that include a hold (a message waits up to ``hold_seconds``, 600 s by
#: default, while its circuit is open): a held message lands in a bucket, not in +Inf.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)
#: What :class:`connector.processing.MessageProcessor` does with a delivery (``outcome`` label).
MESSAGE_OUTCOMES = ("acked", "dead_lettered", "retry_scheduled", "put_back", "requeued")
#: ``connector_circuit_state`` values: numeric, so that ``max_over_time`` and ``> 1`` work.
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def connector_version() -> str:
    """The installed distribution's version ("unknown" when run from a tree that is not installed)."""
    try:
        return metadata.version("severa-connector")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The connector's own metrics, on an injectable registry (tests use a fresh one).

    A registry of its own gets the process, platform and garbage-collector collectors too (the
    default registry has them already): memory, file descriptors and CPU of the pod are the first
    things on-call looks at, and they must come from the same scrape as the connector's metrics.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        if self.registry is not REGISTRY:  # the default one has them from prometheus-client's import
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        #: Callbacks run before every scrape (:meth:`refresh`): state read live from the service.
        self._refreshers: list[Callable[[], None]] = []
        #: Per flow: publish time (epoch seconds) of the message delivered last, None when it had no
        #: AMQP ``timestamp``. Read by the sampler for ``connector_queue_oldest_message_age_seconds``.
        self.last_delivered_published_at: dict[str, float | None] = {}
        self.build_info = Gauge(
            "connector_build_info",
            "Always 1; the labels say which build runs (version of the connector, Python version).",
            ["version", "python"],
            registry=self.registry,
        )
        self.build_info.labels(version=connector_version(), python=platform.python_version()).set(1)
        self.messages = Counter(
            "connector_messages_total",
            "Messages handled, by flow and outcome (acked, dead_lettered, retry_scheduled, put_back, "
            "requeued).",
            ["flow", "outcome"],
            registry=self.registry,
        )
        self.processing_seconds = Histogram(
            "connector_processing_seconds",
            "Time from delivery to settlement, by flow (holds while a circuit is open included).",
            ["flow"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.hold_seconds = Histogram(
            "connector_hold_duration_seconds",
            "Time a message was held unacked while its flow's circuit was open, by flow.",
            ["flow"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "connector_messages_in_flight",
            "Deliveries this pod is handling now (received, not settled), by flow.",
            ["flow"],
            registry=self.registry,
        )
        self.delayed_retries = Counter(
            "connector_delayed_retries_total",
            "Messages sent to a rung of the delayed-retry ladder, by flow, rung (1 = first) and reason.",
            ["flow", "step", "reason"],
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "connector_circuit_open",
            "1 while consumption is paused by a systemic failure.",
            ["circuit"],
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "connector_circuit_state",
            "State of each circuit: 0 closed, 1 half-open (one trial message), 2 open (paused).",
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
            "1 (no reason label) while the pod reports ready; else one series per reason, value 0.",
            ["reason"],
            registry=self.registry,
        )
        self.sync_results = Counter(
            "connector_workhours_results_total",
            "Work-hour events by what they did in Severa (created, updated, deleted, unchanged, stale).",
            ["outcome"],
            registry=self.registry,
        )
        self.poller_last_success = Gauge(
            "connector_poller_last_success_timestamp_seconds",
            "When this pod last polled a feed to the end and saved its cursor (Unix time), by feed.",
            ["feed"],
            registry=self.registry,
        )
        self.queue_messages = Gauge(
            "connector_queue_messages",
            "Messages ready in a queue (unacknowledged deliveries not counted), sampled by passive "
            "declare; kind is work, retry or dead_letter.",
            ["flow", "queue", "kind"],
            registry=self.registry,
        )
        self.queue_consumers = Gauge(
            "connector_queue_consumers",
            "Consumers the broker counts on a queue (every pod's), sampled by passive declare.",
            ["flow", "queue", "kind"],
            registry=self.registry,
        )
        self.queue_oldest_age = Gauge(
            "connector_queue_oldest_message_age_seconds",
            "Upper bound of the age of the oldest ready message of a work queue: now minus the AMQP "
            "timestamp of the message delivered last; 0 when empty; absent when unknown.",
            ["flow", "queue"],
            registry=self.registry,
        )
        self.queue_sampled_at = Gauge(
            "connector_queue_last_sample_timestamp_seconds",
            "When the queue numbers above were last sampled successfully (Unix time), by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.queue_sample_failures = Counter(
            "connector_queue_sample_failures_total",
            "Queue samples that failed (the previous values are kept, and go stale), by queue.",
            ["queue"],
            registry=self.registry,
        )

    # -- updates ---------------------------------------------------------------------------------

    def add_refresher(self, refresh: Callable[[], None]) -> None:
        """Run ``refresh`` before every scrape (it sets gauges from live state; must be cheap)."""
        self._refreshers.append(refresh)

    def refresh(self) -> None:
        """Run every refresher; one that fails is logged and the scrape goes on."""
        for refresh in self._refreshers:
            try:
                refresh()
            except Exception as exc:
                log.warning("metrics_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    def set_readiness(self, state: Readiness) -> None:
        """``connector_ready``: one series of value 1 when ready, else a 0 per current reason.

        The reasons are :attr:`Readiness.codes` (a fixed vocabulary), never the human text, which
        carries error messages and would make a new series for every new message.
        """
        self.ready.clear()
        if state.ready:
            self.ready.labels(reason="").set(1)
            return
        for code in dict.fromkeys(state.codes or ("unknown",)):
            self.ready.labels(reason=code).set(0)

    def set_circuit(self, name: str, state: str) -> None:
        """Both circuit gauges at once, so they never disagree."""
        self.circuit_state.labels(circuit=name).set(CIRCUIT_STATE_VALUES[state])
        self.circuit_open.labels(circuit=name).set(0 if state == "closed" else 1)

    def init_flow(self, flow: str) -> None:
        """Create ``flow``'s series at 0, so a first message is a rise, not a new series."""
        self.in_flight.labels(flow=flow)
        self.processing_seconds.labels(flow=flow)
        self.hold_seconds.labels(flow=flow)
        for outcome in MESSAGE_OUTCOMES:
            self.messages.labels(flow=flow, outcome=outcome)

    def delivered(self, flow: str, published_at: dt.datetime | None) -> None:
        """Remember the AMQP timestamp of the message ``flow`` received last (for its queue's age)."""
        if published_at is None:
            self.last_delivered_published_at[flow] = None
            return
        if published_at.tzinfo is None:  # AMQP timestamps are Unix seconds: UTC
            published_at = published_at.replace(tzinfo=dt.UTC)
        self.last_delivered_published_at[flow] = published_at.timestamp()

    def poller_polled(self, feed: str) -> None:
        """A feed was polled to the end and its cursor saved (the poller's callback)."""
        self.poller_last_success.labels(feed=feed).set_to_current_time()


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: For people: what is wrong, with the error's own words.
    reasons: tuple[str, ...] = ()
    #: For metrics: the same, as codes from a fixed vocabulary (``connector_ready{reason}``).
    codes: tuple[str, ...] = ()


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
        self._metrics.set_readiness(state)
        body = {"status": "ready" if state.ready else "not-ready", "reasons": list(state.reasons)}
        return web.json_response(body, status=200 if state.ready else 503)

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        self._metrics.set_readiness(self._readiness())
        self._metrics.refresh()
        return web.Response(
            body=generate_latest(self._metrics.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )
