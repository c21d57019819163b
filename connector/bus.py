"""RabbitMQ plumbing: a robust connection, a confirmed publisher and pausable consumers.

Everything RabbitMQ-specific in the runtime lives here and in :mod:`connector.topology`; flows see
:class:`Delivery` objects and a :class:`Publisher`.

Why it looks like this:
- Publishing uses its own channel with publisher confirms and ``mandatory=True``: ``publish``
  returns only once the broker has taken responsibility for the message, and raises if it could not
  route it or refused it (``reject-publish`` overflow) — that is what makes "ack after the side
  effect" safe. Every publish has a timeout: during an outage aio-pika would otherwise wait for
  the reconnect forever.
- Consuming uses another channel whose prefetch is the concurrency knob.
- aio-pika's robust connection holds channels, exchanges and queues weakly: we keep strong
  references, or they are not restored after a reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
)
from aio_pika.exceptions import AMQPError, DeliveryError, PublishError
from aiormq.exceptions import AMQPConnectionError

from connector.errors import TransientError
from connector.logging import get_logger
from connector.topology import Topology

log = get_logger(__name__)

MessageCallback = Callable[[AbstractIncomingMessage], Awaitable[None]]


class PublishFailed(TransientError):
    """The broker did not confirm a publish (unroutable, nacked, timed out, connection lost)."""

    reason = "publish_failed"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    body: bytes
    routing_key: str
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    content_type: str = "application/json"
    headers: Mapping[str, Any] = field(default_factory=dict)
    timestamp: Any = None
    # Rarely set by our own code; kept so that a replayed message keeps its producer's properties.
    content_encoding: str | None = None
    app_id: str | None = None
    reply_to: str | None = None
    priority: int | None = None


class Bus:
    """One robust AMQP connection with a confirmed publish channel and consumer channels."""

    def __init__(self, url: str, *, name: str = "severa-connector", publish_timeout: float = 10.0) -> None:
        self._url = url
        self._name = name
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        # Strong references: the robust connection only restores what is still alive.
        self._exchanges: dict[str, AbstractExchange] = {}
        self._queues: dict[str, AbstractQueue] = {}
        self._consumer_channels: list[AbstractChannel] = []
        self._closed = False

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Bus is not connected")
        return self._connection

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def connect(self) -> None:
        if self._closed:
            raise RuntimeError("Bus is closed; create a new one")
        if self._connection is not None:
            return
        self._connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": self._name}
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)

    async def close(self) -> None:
        """Close consumer channels, then the publish channel, then the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for channel in self._consumer_channels:
            if not channel.is_closed:
                await channel.close()
        if self._publish_channel is not None and not self._publish_channel.is_closed:
            await self._publish_channel.close()
        if self._connection is not None:
            await self._connection.close()
        self._consumer_channels.clear()
        self._exchanges.clear()
        self._queues.clear()
        self._publish_channel = None
        self._connection = None

    async def declare(self, topology: Topology) -> None:
        """Declare every exchange, queue and binding; a no-op for what already exists alike."""
        channel = self._channel()
        for spec in topology.exchanges:
            self._exchanges[spec.name] = await channel.declare_exchange(
                spec.name, aio_pika.ExchangeType(spec.type), durable=True
            )
        for queue_spec in topology.queues:
            queue = await channel.declare_queue(queue_spec.name, durable=True, arguments=queue_spec.arguments)
            self._queues[queue_spec.name] = queue
            for exchange_name, routing_key in queue_spec.bindings:
                await queue.bind(exchange_name, routing_key)
        log.info("topology_declared", exchanges=len(topology.exchanges), queues=len(topology.queues))

    async def publish(self, exchange: str, message: OutgoingMessage) -> None:
        """Publish and wait for the broker's confirm; raise :class:`PublishFailed` otherwise."""
        target = await self._exchange(exchange)
        amqp_message = aio_pika.Message(
            body=message.body,
            content_type=message.content_type,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            headers=dict(message.headers),
            timestamp=message.timestamp,
            content_encoding=message.content_encoding,
            app_id=message.app_id,
            reply_to=message.reply_to,
            priority=message.priority,
        )
        try:
            await target.publish(
                amqp_message, routing_key=message.routing_key, mandatory=True, timeout=self._publish_timeout
            )
        except (DeliveryError, PublishError) as exc:
            raise PublishFailed(
                f"broker refused the message for {exchange or '(default)'}/{message.routing_key}: {exc}",
                exchange=exchange,
                routing_key=message.routing_key,
            ) from exc
        except (TimeoutError, AMQPError, AMQPConnectionError, ConnectionError) as exc:
            raise PublishFailed(
                f"no confirm from the broker for {exchange or '(default)'}/{message.routing_key} "
                f"within {self._publish_timeout}s: {type(exc).__name__}",
                exchange=exchange,
                routing_key=message.routing_key,
            ) from exc

    async def consumer(self, queue_name: str, callback: MessageCallback, *, prefetch: int) -> Consumer:
        """A consumer on its own channel; not started until :meth:`Consumer.start`."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        queue = await channel.get_queue(queue_name, ensure=True)
        return Consumer(channel, queue, callback)

    def _channel(self) -> AbstractChannel:
        if self._publish_channel is None:
            raise RuntimeError("Bus is not connected")
        return self._publish_channel

    async def _exchange(self, name: str) -> AbstractExchange:
        if name == "":
            return self._channel().default_exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await self._channel().get_exchange(name, ensure=True)
            self._exchanges[name] = exchange
        return exchange


class Consumer:
    """A consumer that can be paused (basic.cancel) and resumed (basic.consume) while alive.

    Pausing is how a systemic failure stops the flow without losing anything: unacked messages
    were already handed back, and nothing new is delivered until :meth:`start` is called again.
    """

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue, callback: MessageCallback) -> None:
        self._channel = channel
        self._queue = queue
        self._callback = callback
        self._tag: str | None = None
        self._lock = asyncio.Lock()
        #: Set when the broker cancelled us (queue deleted, node lost): aio-pika does not restore
        #: such a consumer, so the owner must notice, report not-ready and start it again.
        self.cancelled_by_broker = asyncio.Event()

    @property
    def queue_name(self) -> str:
        return self._queue.name

    @property
    def active(self) -> bool:
        return self._tag is not None

    async def start(self) -> None:
        async with self._lock:
            if self._tag is None:
                self.cancelled_by_broker.clear()
                self._tag = await self._queue.consume(self._callback, no_ack=False)
                underlay = await self._channel.get_underlay_channel()
                underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
                log.info("consumer_started", queue=self._queue.name)

    async def _on_broker_cancel(self, frame: Any) -> None:
        if getattr(frame, "consumer_tag", None) == self._tag:
            self._tag = None
            self.cancelled_by_broker.set()
            log.error("consumer_cancelled_by_broker", queue=self._queue.name)

    async def stop(self) -> None:
        async with self._lock:
            if self._tag is not None:
                tag, self._tag = self._tag, None
                if not self._channel.is_closed:
                    await self._queue.cancel(tag)
                log.info("consumer_stopped", queue=self._queue.name)


async def ready_count(channel: AbstractChannel, queue_name: str) -> int:
    """Messages ready in a queue, asked of the broker now.

    Goes to the underlying channel because a robust channel answers a repeated passive declare
    from its cache of declared queues, with the message count of the first answer.
    """
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue_name, passive=True)
    return declared.message_count or 0
