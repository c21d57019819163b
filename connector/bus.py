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
- Several broker addresses (the nodes of a cluster) go through :class:`FailoverConnection`: it
  connects to the first that answers and, after losing a node, to the next; one address keeps
  aio-pika's own robust connection exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aio_pika
from aio_pika import RobustConnection
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
    TimeoutType,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, AMQPError, DeliveryError, PublishError
from aio_pika.message import encode_timestamp, optional
from aiormq import spec as amqp_spec
from aiormq.abc import FieldTable
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
from yarl import URL

from connector import tracing
from connector.broker_addresses import broker_urls, host_port
from connector.errors import TransientError
from connector.logging import get_logger
from connector.topology import Topology

log = get_logger(__name__)

MessageCallback = Callable[[AbstractIncomingMessage], Awaitable[None]]


class PublishFailed(TransientError):
    """The broker did not confirm a publish (unroutable, nacked, timed out, connection lost)."""

    reason = "publish_failed"


class Unroutable(PublishFailed):
    """The broker returned a mandatory message: no queue is bound for its routing key.

    For work that must arrive (a dead letter, a retry) that is a failure; for a notification
    nobody listens to it is an expected outcome (:mod:`connector.results`).
    """

    reason = "unroutable"


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

    @classmethod
    def copy_of(
        cls, message: AbstractIncomingMessage, *, routing_key: str, headers: Mapping[str, Any]
    ) -> OutgoingMessage:
        """A republish of ``message`` (retry, put-back, dead letter): body and properties kept."""
        return cls(
            body=message.body,
            routing_key=routing_key,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            content_type=message.content_type or "application/octet-stream",
            headers=headers,
            timestamp=message.timestamp,
            content_encoding=message.content_encoding,
            app_id=message.app_id,
            reply_to=message.reply_to,
            priority=message.priority,
        )


# The one step of aio-pika's robust connection that makes a connection attempt (its reconnect loop
# calls it after every loss); FailoverConnection wraps it to choose the address. Looked up here so
# that an aio-pika that renamed it fails at import, not silently at the first node loss.
_ROBUST_ATTEMPT = "_RobustConnection__connect_transport"
_robust_attempt: Callable[[RobustConnection], Awaitable[None]] = getattr(RobustConnection, _ROBUST_ATTEMPT)


def amqp_properties(message: OutgoingMessage, headers: FieldTable) -> amqp_spec.Basic.Properties:
    """The properties ``aio_pika.Message(...).properties`` builds for ``message``, persistent.

    Built directly, with aio-pika's own conversions (``optional``, ``encode_timestamp``): an
    ``aio_pika.Message`` costs about 15 µs to make (a checked ``__setattr__`` per field, enum
    coercions) and ``publish`` reads nothing of it but its body and these properties. A unit
    test holds the two equal over a table of messages.
    """
    return amqp_spec.Basic.Properties(
        app_id=optional(message.app_id, str),
        content_encoding=message.content_encoding,
        content_type=message.content_type,
        correlation_id=optional(message.correlation_id, str),
        delivery_mode=DeliveryMode.PERSISTENT,
        expiration=None,
        headers=headers or {},
        message_id=optional(message.message_id, str),
        message_type=optional(message.type, str),
        priority=optional(message.priority, int, 0),
        reply_to=optional(message.reply_to, str),
        timestamp=encode_timestamp(message.timestamp),
        user_id=None,
    )


class _Publishable:
    """What ``AbstractExchange.publish`` reads of a message: its body and properties."""

    __slots__ = ("body", "properties")

    def __init__(self, body: bytes, properties: amqp_spec.Basic.Properties) -> None:
        self.body = body
        self.properties = properties

    def __repr__(self) -> str:  # aio-pika's debug line prints the message
        return f"<message {self.properties.message_id} {len(self.body)} bytes>"


class FailoverConnection(RobustConnection):
    """aio-pika's robust connection over several broker addresses (the nodes of one cluster).

    Every connection attempt -- the first one and each of the robust connection's reconnects --
    tries the addresses in turn, starting after the one last connected to (the first address at
    start), and uses the first that answers; only when none does is the attempt a failure, which
    the robust connection retries after its ``reconnect_interval``. So a pod whose node is killed
    reconnects to a surviving node at once, and channels, consumers (through :class:`Consumer`)
    and declared entities are restored there as after any reconnect. A refused login is tried on
    the other nodes too (users are cluster-wide, so it ends as the same refusal).

    Each address gets at most :attr:`ADDRESS_TIMEOUT` seconds, so one address that swallows
    packets cannot take the whole start-up budget from the others.
    """

    #: Longest wait for one address to answer (TCP, TLS and the AMQP handshake).
    ADDRESS_TIMEOUT = 10.0

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        if not urls:
            raise ValueError("FailoverConnection needs at least one broker URL")
        super().__init__(URL(urls[0]), **kwargs)
        self.addresses: tuple[URL, ...] = tuple(URL(url) for url in urls)
        self._next = 0
        #: Index in :attr:`addresses` of the node connected to now (or last), ``None`` before.
        self.connected_index: int | None = None

    async def connect(self, timeout: TimeoutType = None) -> None:
        limit = self.ADDRESS_TIMEOUT if timeout is None else min(float(timeout), self.ADDRESS_TIMEOUT)
        await super().connect(limit)

    async def _RobustConnection__connect_transport(self) -> None:
        count = len(self.addresses)
        first = self._next
        last: BaseException | None = None
        for step in range(count):
            index = (first + step) % count
            self.url = self.addresses[index]
            address = host_port(str(self.url))
            try:
                await _robust_attempt(self)
            except CONNECTION_EXCEPTIONS as exc:
                last = exc
                log.warning(
                    "broker_address_unreachable",
                    broker=address,
                    error=type(exc).__name__,
                    tried=step + 1,
                    of=count,
                )
                continue
            self._next = (index + 1) % count
            self.connected_index = index
            log.info("broker_connected", broker=address, address=index + 1, of=count)
            return
        assert last is not None
        raise last


async def connect_failover(
    urls: Sequence[str], *, client_properties: FieldTable, timeout: TimeoutType = None
) -> AbstractRobustConnection:
    """``aio_pika.connect_robust`` for several addresses: one :class:`FailoverConnection`, connected."""
    connection = FailoverConnection(urls, client_properties=client_properties)
    try:
        await connection.connect(timeout=timeout)
    except BaseException:
        # Cancelled or failed: its reconnect loop must not go on to connect to a later address
        # that nobody would ever close.
        with contextlib.suppress(Exception):
            await connection.close()
        raise
    return connection


async def declare_topology(
    channel: aio_pika.abc.AbstractChannel, topology: Topology
) -> tuple[dict[str, aio_pika.abc.AbstractExchange], dict[str, aio_pika.abc.AbstractQueue]]:
    """Declare every exchange, queue and binding of ``topology`` on ``channel``: what was declared.

    The one place a topology reaches the broker: a pod's :meth:`Bus.declare`, and the tests and
    benches that must declare exactly what a pod would before one runs.
    """
    exchanges = {
        spec.name: await channel.declare_exchange(spec.name, aio_pika.ExchangeType(spec.type), durable=True)
        for spec in topology.exchanges
    }
    queues: dict[str, aio_pika.abc.AbstractQueue] = {}
    for spec in topology.queues:
        queue = queues[spec.name] = await channel.declare_queue(
            spec.name, durable=True, arguments=spec.arguments
        )
        for exchange_name, routing_key in spec.bindings:
            await queue.bind(exchange_name, routing_key)
    return exchanges, queues


class Bus:
    """One robust AMQP connection with a confirmed publish channel and consumer channels.

    ``url`` is one AMQP URL or several (the setting's comma-separated list, or a sequence): with
    several, the connection fails over between them (:class:`FailoverConnection`).
    """

    def __init__(
        self, url: str | Sequence[str], *, name: str = "severa-connector", publish_timeout: float = 10.0
    ) -> None:
        if isinstance(url, str):
            try:
                self._urls: tuple[str, ...] = broker_urls(url)
            except ValueError:  # not ours to judge here: the client refuses it when connecting
                self._urls = (url,)
        else:
            self._urls = tuple(url)
        self._name = name
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        # Strong references: the robust connection only restores what is still alive.
        self._exchanges: dict[str, AbstractExchange] = {}
        self._queues: dict[str, AbstractQueue] = {}
        self._consumer_channels: list[AbstractChannel] = []
        self._consumers: list[Consumer] = []
        self._closed = False
        self._publish_channel_since = 0.0
        # Replaced publish channels, closed once their publishes in flight had time to be confirmed.
        self._retiring: set[asyncio.Task[None]] = set()

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

    async def connect(self, *, retry_seconds: float | None = None, safe_url: str = "") -> None:
        """Connect, once -- or, with ``retry_seconds``, retrying with backoff for that long in total.

        Retrying is for start-up (pods often start before the broker): a refused login or vhost
        fails at once and an exhausted budget fails with one line naming the setting
        (:func:`connector.startup.connect_broker`). Once connected, the robust connection
        reconnects by itself.
        """
        if self._closed:
            raise RuntimeError("Bus is closed; create a new one")
        if self._connection is not None:
            return
        properties: FieldTable = {"connection_name": self._name}

        def attempt(timeout: float | None) -> Awaitable[AbstractRobustConnection]:
            if len(self._urls) == 1:
                return aio_pika.connect_robust(self._urls[0], client_properties=properties, timeout=timeout)
            return connect_failover(self._urls, client_properties=properties, timeout=timeout)

        connection: AbstractRobustConnection
        if retry_seconds is None:
            connection = await attempt(None)
        else:
            from connector.startup import connect_broker

            connection = await connect_broker(attempt, safe_url=safe_url, total_seconds=retry_seconds)
        self._connection = connection
        self._publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

    async def close(self) -> None:
        """Close consumer channels, then the publish channel, then the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._retiring):
            task.cancel()
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.close()
        self._consumers.clear()
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
        exchanges, queues = await declare_topology(self._channel(), topology)
        self._exchanges.update(exchanges)
        self._queues.update(queues)
        log.info("topology_declared", exchanges=len(topology.exchanges), queues=len(topology.queues))

    async def publish(self, exchange: str, message: OutgoingMessage) -> None:
        """Publish and wait for the broker's confirm; raise :class:`PublishFailed` otherwise."""
        target = await self._exchange(exchange)
        headers = dict(message.headers)
        # A PRODUCER span whose trace context goes out in the headers (a no-op unless tracing is on).
        with tracing.publishing(exchange, message.routing_key, headers, message_id=message.message_id):
            try:
                await target.publish(
                    cast(AbstractMessage, _Publishable(message.body, amqp_properties(message, headers))),
                    routing_key=message.routing_key,
                    mandatory=True,
                    timeout=self._publish_timeout,
                )
            except PublishError as exc:
                raise Unroutable(
                    f"no queue is bound to {exchange or '(default)'} for routing key {message.routing_key!r}",
                    exchange=exchange,
                    routing_key=message.routing_key,
                ) from exc
            except DeliveryError as exc:
                await self._replace_publish_channel()
                raise PublishFailed(
                    f"broker refused the message for {exchange or '(default)'}/{message.routing_key}: {exc}",
                    exchange=exchange,
                    routing_key=message.routing_key,
                ) from exc
            # ChannelInvalidStateError: the channel died with its connection (a node lost) and is
            # not restored yet -- a publish that never left, to be retried like a lost confirm.
            except (
                TimeoutError,
                AMQPError,
                AMQPConnectionError,
                ConnectionError,
                ChannelInvalidStateError,
            ) as exc:
                raise PublishFailed(
                    f"no confirm from the broker for {exchange or '(default)'}/{message.routing_key} "
                    f"within {self._publish_timeout}s: {type(exc).__name__}",
                    exchange=exchange,
                    routing_key=message.routing_key,
                ) from exc

    async def consumer(
        self,
        queue_name: str,
        callback: MessageCallback,
        *,
        prefetch: int,
        on_restore: Callable[[], Awaitable[None]] | None = None,
    ) -> Consumer:
        """A consumer on its own channel; not started until :meth:`Consumer.start`.

        ``on_restore`` re-declares what the consumer needs after the broker cancelled it (its
        queue was deleted): typically ``lambda: bus.declare(topology)``.
        """
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        queue = await channel.get_queue(queue_name, ensure=True)
        consumer = Consumer(channel, queue, callback, on_restore=on_restore)
        self._consumers.append(consumer)
        return consumer

    async def discard(self, consumer: Consumer) -> None:
        """Close a consumer this bus made, with its channel and keeper; a no-op for a stranger."""
        if consumer not in self._consumers:
            return
        self._consumers.remove(consumer)
        with contextlib.suppress(Exception):
            await consumer.close()
        channel = consumer.channel
        if channel in self._consumer_channels:
            self._consumer_channels.remove(channel)
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

    #: A nacked publish replaces the publish channel at most this often.
    REPLACE_CHANNEL_SECONDS = 1.0

    async def _replace_publish_channel(self) -> None:
        """Publish on a new channel after a nack, so that the retry is not nacked again.

        RabbitMQ 3.10 can keep nacking every publish of a channel to a quorum queue whose leader
        changed while that channel first published to it (seen on a cluster losing the leader's
        node: the channel on the surviving node was refused for minutes, a new channel at once).
        A nack for a full queue (``reject-publish``) costs only a channel open at most once per
        :attr:`REPLACE_CHANNEL_SECONDS`. Exchanges are looked up again on the new channel. The old
        channel stays open for one ``publish_timeout``, so that publishes still waiting for their
        confirm on it get it: closing it at once would fail them after the broker may have taken
        the message, and their retries would publish it twice.
        """
        old = self._publish_channel
        loop = asyncio.get_running_loop()
        if (
            old is None
            or self._closed
            or loop.time() - self._publish_channel_since < self.REPLACE_CHANNEL_SECONDS
        ):
            return
        self._publish_channel_since = loop.time()
        try:
            new = await asyncio.wait_for(
                self.connection.channel(publisher_confirms=True, on_return_raises=True), self._publish_timeout
            )
        except Exception as exc:  # the caller's publish failed anyway; the next nack tries again
            log.warning("publish_channel_not_replaced", error=type(exc).__name__)
            return
        self._publish_channel = new
        self._exchanges = {}
        log.info("publish_channel_replaced_after_nack")
        task = asyncio.create_task(self._retire(old), name="bus-retire-publish-channel")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, channel: AbstractChannel) -> None:
        """Close a replaced publish channel after its confirms had their ``publish_timeout``."""
        await asyncio.sleep(self._publish_timeout)  # a timer: the longest a publish waits for its confirm
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), self._publish_timeout)

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
    """The one owner of a queue consumer's lifecycle: desired state in, broker state reconciled.

    Why not aio-pika's robust consumer: a robust queue remembers its consumer tags and restores
    them after a reconnect on its own, and asks for a whole-connection recovery when the broker
    cancels one. Combined with a pause (``basic.cancel``) that could not reach the broker because
    the link was down, that restored a consumer we had stopped -- a message delivered while paused,
    two consumers after resume, and held messages burning the quorum delivery limit. So we consume
    with ``robust=False`` and keep the only record here: callers say what they *want*
    (:meth:`start` / :meth:`stop`), and a keeper task makes the broker match it -- after a
    reconnect (the channel's reopen callback), after a broker-side cancel (queue deleted, node
    lost: re-declare through ``on_restore`` first), and on a periodic check. A tag counts as live
    only while it sits in the consumers of the channel incarnation it was issued on, so a tag that
    died with an old channel is never mistaken for a running consumer.

    :meth:`start` and :meth:`stop` never raise for broker trouble: what could not be done now the
    keeper retries with backoff (the readiness probe shows "not consuming" meanwhile).
    """

    #: How often the keeper checks that reality still matches the desired state.
    CHECK_SECONDS = 5.0
    #: Broker round trips of the keeper are bounded: a hung channel must not hang the keeper.
    RPC_TIMEOUT = 10.0

    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        callback: MessageCallback,
        *,
        on_restore: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._callback = callback
        self._on_restore = on_restore
        self._want = False
        self._tag: str | None = None
        self._tag_channel: Any = None  # the aiormq channel incarnation the tag was issued on
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._rpcs: set[asyncio.Future[None]] = set()
        self._closed = False
        #: Set when the broker cancelled us (queue deleted, node lost) until consuming again.
        self.cancelled_by_broker = asyncio.Event()
        self.last_error: str | None = None
        reopen = getattr(channel, "reopen_callbacks", None)
        if reopen is not None:
            reopen.add(self._on_channel_reopened)
        self._ensure_keeper()  # built inside the running loop (Bus.consumer is async)

    @property
    def queue_name(self) -> str:
        return self._queue.name

    @property
    def channel(self) -> AbstractChannel:
        return self._channel

    @property
    def wanted(self) -> bool:
        return self._want

    @property
    def active(self) -> bool:
        """True while a consumer of ours is registered on the channel's current incarnation."""
        return self._is_live()

    @property
    def keeper(self) -> asyncio.Task[None] | None:
        """The background task that reconciles; supervised by the owner (dead → not alive)."""
        return self._keeper

    async def start(self) -> None:
        """Want consuming; try at once, leave the rest to the keeper."""
        self._want = True
        self._ensure_keeper()
        await self._try_reconcile()

    async def stop(self) -> None:
        """Want no consuming; cancel now if the channel is up (else the consumer died with it)."""
        self._want = False
        await self._try_reconcile()

    async def close(self) -> None:
        """Stop and end the keeper. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.stop()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._rpcs:
            await asyncio.gather(*self._rpcs, return_exceptions=True)

    # -- reconciliation -------------------------------------------------------------------------

    def _ensure_keeper(self) -> None:
        if self._keeper is None and not self._closed:
            self._keeper = asyncio.create_task(self._keep(), name=f"consumer-keeper:{self._queue.name}")

    def _is_live(self) -> bool:
        """Our tag is registered on the channel it was issued on, and that channel is open.

        A reconnect replaces the robust channel's underlying channel and closes the old one, so a
        tag from before a reconnect is never taken for a running consumer.
        """
        underlay = self._tag_channel
        return (
            self._tag is not None
            and underlay is not None
            and not underlay.is_closed
            and self._tag in underlay.consumers
        )

    async def _shielded_reconcile(self) -> None:
        """Reconcile so that a caller being cancelled never interrupts a broker round trip.

        aiormq closes a channel whose RPC was cancelled -- and with it every message in flight on
        it -- so a shutdown that cancels the supervisor in the middle of a ``basic.cancel`` would
        skip the drain. The round trip runs to its end (bounded by RPC_TIMEOUT) in a task of ours,
        awaited again by :meth:`close`.
        """
        task = asyncio.ensure_future(self._reconcile())
        self._rpcs.add(task)
        task.add_done_callback(self._rpcs.discard)
        task.add_done_callback(_retrieve)  # its failure is the awaiting caller's, if any is left
        await asyncio.shield(task)

    async def _try_reconcile(self) -> None:
        try:
            await self._shielded_reconcile()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("consumer_reconcile_deferred", queue=self._queue.name, error=self.last_error)
            self._wake.set()

    async def _reconcile(self) -> None:
        async with self._lock:
            live = self._is_live()
            if self._want and not live:
                if self.cancelled_by_broker.is_set() and self._on_restore is not None:
                    await asyncio.wait_for(self._on_restore(), self.RPC_TIMEOUT)
                self._tag = None
                underlay = await asyncio.wait_for(self._channel.get_underlay_channel(), self.RPC_TIMEOUT)
                tag = await self._queue.consume(
                    self._callback, no_ack=False, robust=False, timeout=self.RPC_TIMEOUT
                )  # type: ignore[call-arg]
                self._tag, self._tag_channel = tag, underlay
                if self._on_broker_cancel not in underlay.on_consumer_cancel_callbacks:
                    underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
                self.cancelled_by_broker.clear()
                self.last_error = None
                log.info("consumer_started", queue=self._queue.name)
            elif not self._want and self._tag is not None:
                tag, self._tag = self._tag, None
                if live:
                    await self._tag_channel.basic_cancel(tag, timeout=self.RPC_TIMEOUT)
                # else: the consumer died with its channel and robust=False keeps it dead.
                log.info("consumer_stopped", queue=self._queue.name, cancelled=live)

    async def _keep(self) -> None:
        delay = 0.5
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.CHECK_SECONDS)
            self._wake.clear()
            if self._want == self._is_live():
                continue
            try:
                await self._shielded_reconcile()
                delay = 0.5
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "consumer_reconcile_failed",
                    queue=self._queue.name,
                    error=self.last_error,
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)  # backoff before touching the broker again
                delay = min(delay * 2, 30.0)
                self._wake.set()

    def _on_channel_reopened(self, *_: Any) -> None:
        self._wake.set()

    async def _on_broker_cancel(self, frame: Any) -> None:
        if getattr(frame, "consumer_tag", None) == self._tag:
            self._tag = None
            self.cancelled_by_broker.set()
            log.error("consumer_cancelled_by_broker", queue=self._queue.name)
            self._wake.set()


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


async def ready_count(channel: AbstractChannel, queue_name: str) -> int:
    """Messages ready in a queue, asked of the broker now.

    Goes to the underlying channel because a robust channel answers a repeated passive declare
    from its cache of declared queues, with the message count of the first answer.
    """
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue_name, passive=True)
    return declared.message_count or 0
