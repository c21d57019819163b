"""The consumer's lifecycle, counted on the broker: never two consumers, nothing delivered while paused.

The connector runs behind a TCP proxy so the test can cut its connection; pauses come from the
fake Severa refusing the key (every probe fails until the key works again). The number of
consumers is what the broker itself reports (``queue.declare-ok``'s consumer count, asked on a
plain channel of the test's own), not what the connector believes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest

from adapters.severa.fake.server import FakeSevera
from connector.service import ConnectorService
from connector.supervision import Heartbeat
from connector.topology import Names
from tests.factories import event_dict
from tests.harness import (
    SEVERA_KEY,
    Broker,
    broker_view,
    connector_settings,
    running_connector,
    wait_until,
)
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


class View:
    def __init__(self, connection: aio_pika.abc.AbstractConnection, queue: str) -> None:
        self.connection = connection
        self.queue = queue
        self.consumers = -1
        self.ready = -1

    async def refresh(self) -> tuple[int, int]:
        self.consumers, self.ready = await broker_view(self.connection, self.queue)
        return self.consumers, self.ready

    async def wait(self, *, consumers: int, ready: int | None = None, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            count, depth = await self.refresh()
            if count == consumers and (ready is None or depth == ready):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what} (have {count} consumers, {depth} ready)"
                )
            await asyncio.sleep(0.05)  # polling the broker's view, bounded by the deadline


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(amqp_url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        yield proxy


@pytest.fixture
async def proxied_connector(
    amqp_url: str, topology: Names, severa: FakeSevera, proxy: TcpProxy, tmp_path: Path
) -> AsyncIterator[ConnectorService]:
    parts = urlsplit(amqp_url)
    url = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}{parts.path or '/'}"
    settings = connector_settings(
        amqp_url=url + "?reconnect_interval=0.2",
        names=topology,
        severa_url=severa.url,
        api_key=SEVERA_KEY,
        state_dir=tmp_path,
    )
    async with running_connector(settings) as service:
        yield service


async def test_ten_pause_resume_cycles_across_cuts_and_cancels_leave_exactly_one_consumer(
    proxied_connector: ConnectorService,
    broker: Broker,
    severa: FakeSevera,
    proxy: TcpProxy,
    amqp_connection: aio_pika.abc.AbstractConnection,
) -> None:
    connector = proxied_connector
    queue = connector.names.workhours_queue
    view = View(amqp_connection, queue)
    await view.wait(consumers=1, what="the first consumer")
    published = 0
    for cycle in range(10):
        severa.set_api_key("regenerated-in-severa")  # every probe fails: the pod stays paused
        await broker.publish_event(event_dict(description=f"trips the circuit {cycle}"))
        published += 1
        await wait_until(lambda: connector.circuit.is_open, what=f"pause {cycle}")
        # Not wanted, and the broker's cancel done: a message published before that may still be
        # delivered to the consumer (and held), which the counts below do not expect.
        await wait_until(
            lambda: not connector.consumer.wanted and not connector.consumer.active,  # type: ignore[union-attr]
            what=f"consuming stopped ({cycle})",
        )
        if cycle % 2 == 0:
            proxy.cut()  # the link drops while paused: nothing may come back by itself
            await wait_until(lambda: proxy.connections > 0, what="the reconnect")
            await wait_until(lambda: connector.bus is not None and connector.bus.is_connected, what="link")
        await broker.publish_event(event_dict(description=f"published while paused {cycle}"))
        published += 1
        # Nothing is delivered while paused: the message published meanwhile stays ready, and so
        # does the held one once the cut took its channel away. (A quorum queue keeps a cancelled
        # consumer listed while it still holds an unacked message: the held one, uncut.)
        expected = (0, 2) if cycle % 2 == 0 else (1, 1)
        await view.wait(consumers=expected[0], ready=expected[1], what=f"paused, waiting ({cycle})")
        assert await view.refresh() == expected
        severa.set_api_key(SEVERA_KEY)  # resume
        await wait_until(
            lambda p=published: len(severa.store.hour_entries) == p, what=f"cycle {cycle} written", timeout=20
        )
        await view.wait(consumers=1, ready=0, what=f"exactly one consumer after resume ({cycle})")
        if cycle % 3 == 1:
            proxy.cut()  # a cut while consuming
            await wait_until(lambda: proxy.connections > 0, what="the reconnect")
            await view.wait(consumers=1, what=f"one consumer after a cut ({cycle})")
        if cycle % 3 == 2:
            await broker.channel.queue_delete(queue)  # a broker-side cancel (the queue is empty)
            await view.wait(consumers=1, what=f"one consumer after the broker's cancel ({cycle})")
    for _ in range(3):  # and it stays at one
        assert await view.refresh() == (1, 0)
    assert len(severa.store.hour_entries) == published
    assert await broker.depth(connector.names.workhours_dlq) == 0


async def test_a_dead_background_task_fails_liveness(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path
) -> None:
    settings = connector_settings(
        amqp_url=amqp_url, names=topology, severa_url=severa.url, api_key=SEVERA_KEY, state_dir=tmp_path
    )
    async with running_connector(settings) as connector:
        port = connector.health_port
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            assert connector.consumer is not None
            assert connector.consumer.keeper is not None
            connector.consumer.keeper.cancel()  # as if it had crashed: nobody asked it to stop
            await wait_until(lambda: connector.consumer.keeper.done(), what="the keeper to end")  # type: ignore[union-attr]
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                body = await response.json()
                assert response.status == 503, body
        assert any("consumer-keeper" in reason for reason in body["reasons"])


async def test_a_pod_still_retrying_its_broker_at_start_stays_alive(
    names: Names, severa: FakeSevera, tmp_path: Path
) -> None:
    """Liveness comes from the heartbeat; it must beat while the start-up retries the broker, or
    Kubernetes kills a pod that is only waiting for RabbitMQ (well before the start-up budget)."""
    with socket.socket() as probe:  # a port nothing listens on: the broker is "down"
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = connector_settings(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{closed}/",
        names=names,
        severa_url=severa.url,
        api_key=SEVERA_KEY,
        state_dir=tmp_path,
        rabbitmq={"connect_timeout_seconds": 60},
    )
    service = ConnectorService(settings)
    service._heartbeat = Heartbeat(interval=0.02, tolerance=0.5)  # a fast clock for the test
    starting = asyncio.create_task(service.start())
    try:
        await wait_until(lambda: service.health_port is not None, what="the health port")
        beats: set[float] = set()
        deadline = time.monotonic() + 1.5  # three tolerances: a pod without a heartbeat goes stale
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(f"http://127.0.0.1:{service.health_port}/healthz") as response:
                    assert response.status == 200, await response.text()
                beats.add(service._heartbeat.last)
                await asyncio.sleep(0.05)  # the probe's own period, as a kubelet's
        assert not starting.done(), "still retrying the broker"
        assert len(beats) > 10, "the heartbeat beat while the start-up waited"
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        await service.close()
