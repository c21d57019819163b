"""Prometheus metrics of the Netvisor adapter, registered once per :class:`CollectorRegistry`.

As for Severa (:mod:`adapters.severa.metrics`), a process may build several clients (the service,
a ``check`` run, tests) while prometheus-client refuses a name twice on one registry, so
:func:`netvisor_metrics` hands out one :class:`NetvisorMetrics` per registry.

Every *attempt* is counted (a request retried twice counts three times), because what Netvisor sees
-- and what one company's serial lane spends its time on -- is attempts. Labels stay bounded: the
operation comes from the fixed catalogue (:class:`adapters.netvisor.codec.Ops`), the outcome is ``ok``
or the error's ``reason`` (a fixed set per code, never Netvisor's text). No key, URL or business id
goes into a label.

The latency buckets reach the vendor-advised 120 s timeout, so a slow company shows as mass in the
upper buckets rather than as one overflow bucket. ``netvisor_company_lock_wait_seconds`` is the wait
for the company's turn (at most one request per company is in flight in a process): when it grows,
the lane is saturated and more consumers will not make it faster.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0)
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class NetvisorMetrics:
    """Requests by operation and outcome, their latency, retries, and the wait for the company lane."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "netvisor_calls",
            "Netvisor request attempts by operation and outcome (ok or the error reason).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "netvisor_call_duration_seconds",
            "Time from sending a Netvisor request to having its whole answer (the lane wait excluded).",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "netvisor_retries",
            "In-process retries of Netvisor requests, by operation and the reason of the failed attempt.",
            ["operation", "reason"],
            registry=registry,
        )
        self.lock_wait = Histogram(
            "netvisor_company_lock_wait_seconds",
            "Time a request waited for its company's turn (one request per company in flight).",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )

    def observe(self, operation: str, outcome: str, seconds: float | None) -> None:
        self.calls.labels(operation, outcome).inc()
        if seconds is not None:
            self.latency.labels(operation).observe(seconds)

    def retried(self, operation: str, reason: str) -> None:
        self.retries.labels(operation, reason).inc()

    def waited(self, seconds: float) -> None:
        self.lock_wait.observe(seconds)


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, NetvisorMetrics] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def netvisor_metrics(registry: CollectorRegistry = REGISTRY) -> NetvisorMetrics:
    """The adapter's metrics on ``registry``, created and registered on first use."""
    with _lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = NetvisorMetrics(registry)
        return metrics
