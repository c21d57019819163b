"""One runtime, many flows: a second flow gets the same processing, DLQ, retry ladder and circuit.

The second flow here is a scripted one of the test's own (the accounting flows will be real ones):
its queue, bindings and handler are all it brings; everything else is the runtime's.
"""

from __future__ import annotations

from pathlib import Path

import aio_pika
import pytest

from adapters.severa.fake.server import FakeSevera
from connector.errors import InvalidMessage
from connector.processing import Delivery
from connector.runtime import FlowUnit
from connector.service import ConnectorService
from connector.topology import ExchangeSpec, FlowQueue, Names, dlq_name, retry_queue_name
from schemas.dead_letter import DeadLetterHeaders
from tests.factories import event_dict
from tests.harness import SEVERA_KEY, TEST_RETRY_LADDER, Broker, connector_settings, wait_until

pytestmark = pytest.mark.integration


class EchoFlow:
    """Takes any message; refuses a body of ``bad``."""

    def __init__(self, names: Names) -> None:
        self.exchange = f"{names.prefix}test.echo"
        self.queue = FlowQueue(
            flow="echo",
            queue=f"{names.prefix}q.test.echo",
            bindings=((self.exchange, "#"),),
            exchanges=(ExchangeSpec(self.exchange, "topic"),),
        )
        self.handled: list[bytes] = []

    async def handle(self, delivery: Delivery) -> None:
        if delivery.body == b"bad":
            raise InvalidMessage("not an echo", reason="schema_violation")
        self.handled.append(delivery.body)

    def unit(self, _: ConnectorService) -> FlowUnit:
        return FlowUnit(queue=self.queue, handle=self.handle)


async def test_a_second_flow_runs_on_the_same_runtime_with_its_own_queues(
    amqp_url: str,
    topology: Names,
    severa: FakeSevera,
    broker: Broker,
    amqp_connection: aio_pika.abc.AbstractConnection,
    tmp_path: Path,
) -> None:
    echo = EchoFlow(topology)
    settings = connector_settings(
        amqp_url=amqp_url, names=topology, severa_url=severa.url, api_key=SEVERA_KEY, state_dir=tmp_path
    )
    service = ConnectorService(settings, extra_flows=[echo.unit])
    channel = await amqp_connection.channel(publisher_confirms=True)
    try:
        await service.start()
        exchange = await channel.get_exchange(echo.exchange)
        for body in (b"one", b"bad", b"two"):
            await exchange.publish(aio_pika.Message(body, message_id=body.decode()), routing_key="any")
        await broker.publish_event(event_dict())
        await wait_until(lambda: echo.handled == [b"one", b"two"], what="the echo flow's messages")
        await wait_until(lambda: len(severa.store.hour_entries) == 1, what="the work-hours flow too")

        queue = await channel.get_queue(dlq_name(echo.queue.queue))
        await wait_until(
            lambda: service.metrics.messages.labels(flow="echo", outcome="dead_lettered")._value.get() == 1
        )
        letter = await queue.get(no_ack=True)
        headers = DeadLetterHeaders.from_amqp(letter.headers)
        assert (headers.flow, headers.original_queue, headers.reason) == (
            "echo",
            echo.queue.queue,
            "schema_violation",
        )
        for delay in TEST_RETRY_LADDER:  # its own retry ladder was declared
            await channel.declare_queue(retry_queue_name(echo.queue.queue, delay), passive=True)

        severa.set_api_key("regenerated")  # Severa unusable: every flow on its circuit pauses
        await broker.publish_event(event_dict())
        await wait_until(lambda: service.circuit.is_open, what="the pause")
        await wait_until(
            lambda: not any(c.wanted for c in (service.consumer, service.consumer_of("echo")) if c),
            what="both flows paused",
        )
        assert not service.readiness().ready
        severa.set_api_key(SEVERA_KEY)
        await wait_until(lambda: service.readiness().ready, what="both flows consuming again")
        assert service.consumer_of("echo") is not None
        assert service.consumer_of("echo").active  # type: ignore[union-attr]
    finally:
        await service.close()
        ladder = [retry_queue_name(echo.queue.queue, d) for d in TEST_RETRY_LADDER]
        for name in (echo.queue.queue, dlq_name(echo.queue.queue), *ladder):
            await channel.queue_delete(name)
        await channel.exchange_delete(echo.exchange)
        await channel.close()
