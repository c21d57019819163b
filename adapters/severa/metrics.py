"""Prometheus metrics of the Severa adapter, registered once per :class:`CollectorRegistry`.

prometheus-client refuses to register a metric name twice on one registry, yet a process may build
more than one client (the service, a ``check`` run, tests). :func:`severa_metrics` therefore hands
out one :class:`SeveraMetrics` per registry; tests pass their own registry and never collide.
Labels stay bounded: the operation label comes from a fixed catalogue, the outcome is ``ok``,
``not_found`` or the error's ``reason``.

**Quota before it is known.** Severa reports its quota only in answers, so until the first answer
that carries ``Quota``/``UsedQuota`` the adapter does not know it. A plain gauge would read 0/0
then, which looks like a spent quota (``severa_quota_limit_calls - severa_quota_used_calls`` is 0).
The two quota series are therefore *absent* until known, rather than NaN: an alert such as
``severa_quota_used_calls / severa_quota_limit_calls > 0.8`` is empty (not firing) either way, but
absence also keeps aggregations across pods right (``sum``/``max`` skip a pod that has no reading,
while one NaN turns a ``sum`` into NaN), and ``absent(severa_quota_limit_calls)`` can alert when no
pod has talked to Severa for a long time.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.ports import QuotaReading

#: Up to 120 s: a call near a long client timeout (or a slow Severa) lands in a bucket, not +Inf.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0)


class SeveraMetrics:
    """Calls by operation and outcome, call latency, and Severa's quota as last reported."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "severa_calls",
            "Severa SOAP calls by operation and outcome (ok, not_found or the error reason).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "severa_call_duration_seconds",
            "Time from sending a Severa call to having its answer (local queueing excluded).",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.quota = _QuotaCollector()
        registry.register(self.quota)

    def observe(self, operation: str, outcome: str, seconds: float | None) -> None:
        self.calls.labels(operation, outcome).inc()
        if seconds is not None:
            self.latency.labels(operation).observe(seconds)

    def set_quota(self, reading: QuotaReading) -> None:
        self.quota.reading = reading


class _QuotaCollector(Collector):
    """``severa_quota_limit_calls`` and ``severa_quota_used_calls``, exported once a reading exists."""

    _LIMIT = ("severa_quota_limit_calls", "The organisation's daily call quota, from Severa's Quota header.")
    _USED = ("severa_quota_used_calls", "Calls used today, from Severa's UsedQuota response header.")

    def __init__(self) -> None:
        self.reading: QuotaReading | None = None

    def describe(self) -> Iterable[Metric]:
        # Names only, so that the registry reserves them even while there is nothing to export.
        return [GaugeMetricFamily(*self._LIMIT), GaugeMetricFamily(*self._USED)]

    def collect(self) -> Iterable[Metric]:
        reading = self.reading
        if reading is None:
            return []
        return [
            GaugeMetricFamily(*self._LIMIT, value=reading.quota),
            GaugeMetricFamily(*self._USED, value=reading.used),
        ]


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, SeveraMetrics] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def severa_metrics(registry: CollectorRegistry = REGISTRY) -> SeveraMetrics:
    """The adapter's metrics on ``registry``, created and registered on first use."""
    with _lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = SeveraMetrics(registry)
        return metrics
