"""Notifications: result events and dead-letter notices, which must never fail the work they report.

A result event (``workhour.synced``) or a dead-letter notice (``workhour.failed``) tells whoever
listens what became of a message; the write it reports has already happened. So an event that no
queue is bound for is *not* an error: the broker returns it, we count it
(``connector_result_events_unroutable_total``) and carry on. Integrators who want every result
bind their own queue to the results exchange, or turn on the optional durable results queue
(``SEVERA_CONNECTOR_RABBITMQ__RESULTS_QUEUE=true``, :func:`connector.topology.build_topology`).

A publish the broker *did* route but did not confirm (nack, timeout, lost connection) is still a
transient failure: the message is retried, and the ledger turns the retry into a cheap
"unchanged" that publishes the result again -- results are delivered at least once to the queues
that exist.
"""

from __future__ import annotations

from connector.bus import Bus, OutgoingMessage, Unroutable
from connector.logging import get_logger
from connector.observability import Metrics

log = get_logger(__name__)


class NotificationPublisher:
    """``publish(exchange, message)`` for notifications: an unroutable one is counted, not raised."""

    def __init__(self, bus: Bus, metrics: Metrics, *, flow: str) -> None:
        self._bus = bus
        self._metrics = metrics
        self._flow = flow

    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        try:
            await self._bus.publish(exchange, message)
        except Unroutable:
            self._metrics.results_unroutable.labels(flow=self._flow, event_type=message.routing_key).inc()
            log.debug("result_event_unroutable", exchange=exchange, routing_key=message.routing_key)
