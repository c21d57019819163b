"""One runtime, many flows: what a flow is to the runtime that runs it.

A flow is a small unit -- its queue and bindings (:class:`connector.topology.FlowQueue`), its
handler, its dead-letter notice, the circuit of the dependency it needs -- and nothing else. The
service (:mod:`connector.service`) gives every flow the same machinery, written once: the message
processor (in-process retries, the delayed-retry ladder, holds and put-backs while its circuit is
open, dead-lettering with the ``x-dl-*`` envelope), a consumer whose lifecycle the circuit's
supervisor owns, in-flight tracking for the drain, and the flow's name on every metric, log line
and dead letter -- so the ``dlq`` tools list, group and replay by flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.processing import FailureHook, Handler
from connector.topology import FlowQueue


@dataclass(frozen=True, slots=True)
class FlowUnit:
    queue: FlowQueue
    handle: Handler
    notify_failure: FailureHook | None = None
    #: The dependency whose outage pauses this flow (a key of ``ConnectorService.circuits``).
    circuit: str = "severa"
    #: How long a message is held while the circuit is open before it is put back.
    hold_seconds: float = 600.0
    #: Messages handled at once (the consumer's prefetch); None: ``rabbitmq.prefetch``.
    prefetch: int | None = None

    @property
    def name(self) -> str:
        return self.queue.flow
