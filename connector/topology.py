"""RabbitMQ topology: every exchange, queue and binding the connector owns, declared idempotently.

Declared on every start by every pod (declaring an existing entity with the same arguments is a
no-op), so a fresh broker needs no manual set-up. Names and arguments live here and nowhere else.

    publishers ──► [workhours] (topic) ──workhour.created|updated|deleted──► q.workhours (quorum)
                                                                               │ x-delivery-limit
    our dead-lettering (publish + confirm) ─► [dlx] (direct) ──q.workhours──► q.workhours.dlq (quorum)
    broker dead-lettering (delivery limit) ──┘
    results ──► [workhours.results] (topic): workhour.synced / workhour.failed
                      └─(optional, rabbitmq.results_queue)──► q.workhours.results (quorum)
    `severa-connector dlq` audit records ──► [dlq.audit] (fanout) ──► q.dlq.audit (quorum)

    delayed retry (transient failures that outlived the in-process retries), one queue per rung:
    processor ──(default exchange)──► q.workhours.retry.10s ──TTL──► (default exchange) ──► q.workhours
                                       q.workhours.retry.60s, q.workhours.retry.600s … likewise

A retry queue's name carries its TTL: changing the ladder declares new queues instead of failing
on a redeclare with different arguments. Our own ``x-retry-step`` header counts the rungs climbed
(client-set ``x-death`` is not trusted, and newer brokers ignore it on republish).

Quorum queues because they replicate and survive node loss; ``x-delivery-limit`` is the safety net
for a message that crashes the consumer over and over (it lands in the DLQ instead of looping);
``at-least-once`` dead-lettering so the broker never drops a message on its way to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKHOURS_ROUTING_KEYS = ("workhour.created", "workhour.updated", "workhour.deleted")

# Poison-message safety net: a message redelivered this many times (crash loops, requeues) is
# dead-lettered by the broker. Our own handling dead-letters long before that.
DEFAULT_DELIVERY_LIMIT = 20


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: str  # "topic" | "direct" | "fanout"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)


@dataclass(frozen=True, slots=True)
class Topology:
    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]


def work_queue(
    name: str, bindings: tuple[tuple[str, str], ...], *, dead_letter_exchange: str, delivery_limit: int
) -> QueueSpec:
    """A quorum work queue whose dead letters go to ``<name>.dlq`` through the DLX."""
    return QueueSpec(
        name=name,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": dead_letter_exchange,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
            "x-delivery-limit": delivery_limit,
        },
        bindings=bindings,
    )


def dead_letter_queue(of_queue: str, *, dead_letter_exchange: str) -> QueueSpec:
    return QueueSpec(
        name=dlq_name(of_queue),
        arguments={"x-queue-type": "quorum"},
        bindings=((dead_letter_exchange, of_queue),),
    )


@dataclass(frozen=True, slots=True)
class Names:
    """Entity names. ``prefix`` isolates a deployment (or a test) on a shared broker/vhost."""

    prefix: str = ""

    @property
    def workhours_exchange(self) -> str:
        return f"{self.prefix}workhours"

    @property
    def workhours_queue(self) -> str:
        return f"{self.prefix}q.workhours"

    @property
    def workhours_dlq(self) -> str:
        return dlq_name(self.workhours_queue)

    @property
    def results_exchange(self) -> str:
        return f"{self.prefix}workhours.results"

    @property
    def events_exchange(self) -> str:
        """Where the poller publishes Severa's changes (``severa.customer.changed`` …)."""
        return f"{self.prefix}severa.events"

    @property
    def accounting_exchange(self) -> str:
        """Where the accounting flows publish (``accounting.invoice.transferred`` …)."""
        return f"{self.prefix}accounting.events"

    @property
    def accounting_customers_queue(self) -> str:
        return f"{self.prefix}q.accounting.customers"

    @property
    def accounting_invoices_queue(self) -> str:
        return f"{self.prefix}q.accounting.invoices"

    @property
    def severa_invoice_updates_queue(self) -> str:
        return f"{self.prefix}q.severa.invoice-updates"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}dlx"

    def retry_queue(self, delay_seconds: float) -> str:
        return retry_queue_name(self.workhours_queue, delay_seconds)

    @property
    def results_queue(self) -> str:
        """The optional durable queue of every result event (``rabbitmq.results_queue``)."""
        return f"{self.prefix}q.workhours.results"

    @property
    def dead_letter_queues(self) -> tuple[str, ...]:
        """Every DLQ the ``dlq`` tools ingest: one per flow that dead-letters, the work-hours flow's
        first. A deployment without the accounting flows has no queues of theirs; the tools leave
        out what the broker does not have."""
        return (self.workhours_dlq, *(dlq_name(flow.queue) for flow in accounting_flow_queues(self)))

    @property
    def dlq_audit_exchange(self) -> str:
        return f"{self.prefix}dlq.audit"

    @property
    def dlq_audit_queue(self) -> str:
        return f"{self.prefix}q.dlq.audit"


def _seconds_label(delay_seconds: float) -> str:
    return f"{delay_seconds:g}s"


def retry_queue_name(work_queue: str, delay_seconds: float) -> str:
    """The wait queue of one rung: its name carries its TTL (see the module docstring)."""
    return f"{work_queue}.retry.{_seconds_label(delay_seconds)}"


def retry_queue(name: str, *, delay_seconds: float, back_to: str) -> QueueSpec:
    """A wait queue: messages expire after ``delay_seconds`` and go back to ``back_to``."""
    return QueueSpec(
        name=name,
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": int(delay_seconds * 1000),
            "x-dead-letter-exchange": "",  # the default exchange routes by queue name
            "x-dead-letter-routing-key": back_to,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


DEFAULT_RETRY_LADDER: tuple[float, ...] = (10.0, 60.0, 600.0)


def dlq_audit_topology(names: Names) -> Topology:
    """Where the ``dlq`` tools publish their audit records: a fanout exchange (bind your own queue
    to feed a SIEM) and one durable queue so that nothing is dropped while nobody listens yet."""
    return Topology(
        exchanges=(ExchangeSpec(names.dlq_audit_exchange, "fanout"),),
        queues=(
            QueueSpec(
                names.dlq_audit_queue,
                arguments={"x-queue-type": "quorum"},
                bindings=((names.dlq_audit_exchange, ""),),
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class FlowQueue:
    """What one flow adds to the topology: the exchanges it owns and its work queue's bindings.

    Every flow gets the same shape from :func:`build_topology` -- a quorum work queue, its DLQ
    behind the shared DLX and one wait queue per rung of the retry ladder -- so processing, retry,
    dead-lettering and the ``dlq`` tools work alike for all of them.
    """

    flow: str
    queue: str
    bindings: tuple[tuple[str, str], ...]
    exchanges: tuple[ExchangeSpec, ...] = ()


def work_hours_queue(names: Names) -> FlowQueue:
    """The work-hours flow: events in through ``workhours``, results out through ``workhours.results``."""
    return FlowQueue(
        flow="work_hours",
        queue=names.workhours_queue,
        bindings=tuple((names.workhours_exchange, key) for key in WORKHOURS_ROUTING_KEYS),
        exchanges=(
            ExchangeSpec(names.workhours_exchange, "topic"),
            ExchangeSpec(names.results_exchange, "topic"),
        ),
    )


def accounting_customers_queue(names: Names) -> FlowQueue:
    """Severa's customers into accounting: ``severa.customer.changed`` from the events exchange."""
    return FlowQueue(
        flow="accounting_customers",
        queue=names.accounting_customers_queue,
        bindings=((names.events_exchange, "severa.customer.changed"),),
        exchanges=(
            ExchangeSpec(names.events_exchange, "topic"),
            ExchangeSpec(names.accounting_exchange, "topic"),
        ),
    )


def accounting_invoices_queue(names: Names) -> FlowQueue:
    """Severa's ready invoices into accounting: ``severa.invoice.ready``."""
    return FlowQueue(
        flow="accounting_invoices",
        queue=names.accounting_invoices_queue,
        bindings=((names.events_exchange, "severa.invoice.ready"),),
        exchanges=(
            ExchangeSpec(names.events_exchange, "topic"),
            ExchangeSpec(names.accounting_exchange, "topic"),
        ),
    )


def severa_invoice_updates_queue(names: Names) -> FlowQueue:
    """What accounting did with an invoice, back into Severa: transferred and paid."""
    return FlowQueue(
        flow="severa_invoice_updates",
        queue=names.severa_invoice_updates_queue,
        bindings=(
            (names.accounting_exchange, "accounting.invoice.transferred"),
            (names.accounting_exchange, "accounting.invoice.paid"),
        ),
        exchanges=(ExchangeSpec(names.accounting_exchange, "topic"),),
    )


def accounting_flow_queues(names: Names) -> tuple[FlowQueue, FlowQueue, FlowQueue]:
    """The accounting flows' queues: customers, invoices, and the invoice updates back into Severa."""
    return (
        accounting_customers_queue(names),
        accounting_invoices_queue(names),
        severa_invoice_updates_queue(names),
    )


def build_topology(
    names: Names,
    *,
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    retry_ladder: tuple[float, ...] = DEFAULT_RETRY_LADDER,
    results_queue: bool = False,
    flows: tuple[FlowQueue, ...] | None = None,
) -> Topology:
    """The connector's whole topology: every flow's queues, the DLX, the ``dlq`` tools' audit.

    ``flows`` defaults to the work-hours flow alone. ``results_queue`` adds a durable quorum
    queue bound to every work-hour result event, for a source that wants results kept while it is
    not listening (it must then consume it: the queue grows otherwise). Without it result events
    reach only the queues integrators bind themselves, and an event nobody listens for is dropped
    by the broker and counted -- never a failure of the write it reports (see
    :mod:`connector.results`).
    """
    audit = dlq_audit_topology(names)
    selected = flows if flows is not None else (work_hours_queue(names),)
    optional: tuple[QueueSpec, ...] = ()
    if results_queue:
        optional = (
            QueueSpec(
                names.results_queue,
                arguments={"x-queue-type": "quorum"},
                bindings=((names.results_exchange, "#"),),
            ),
        )
    exchanges: dict[str, ExchangeSpec] = {}
    queues: list[QueueSpec] = []
    for flow in selected:
        for exchange in flow.exchanges:
            exchanges.setdefault(exchange.name, exchange)
        queues.append(
            work_queue(
                flow.queue,
                flow.bindings,
                dead_letter_exchange=names.dead_letter_exchange,
                delivery_limit=delivery_limit,
            )
        )
        queues.append(dead_letter_queue(flow.queue, dead_letter_exchange=names.dead_letter_exchange))
        queues.extend(
            retry_queue(retry_queue_name(flow.queue, delay), delay_seconds=delay, back_to=flow.queue)
            for delay in retry_ladder
        )
    exchanges.setdefault(names.dead_letter_exchange, ExchangeSpec(names.dead_letter_exchange, "direct"))
    # The poller's events: declared by every pod, so a consumer can bind before a poller ran.
    exchanges.setdefault(names.events_exchange, ExchangeSpec(names.events_exchange, "topic"))
    return Topology(
        exchanges=(*exchanges.values(), *audit.exchanges),
        queues=(*queues, *audit.queues, *optional),
    )
