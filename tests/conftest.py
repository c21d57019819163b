"""Shared fixtures: a real RabbitMQ broker, isolated names per test, the fake Severa.

The broker is found in this order: ``RABBITMQ_URL`` → a broker on 127.0.0.1:5672 → a
testcontainers RabbitMQ when a Docker engine answers. If none is found the tests that need it
FAIL with instructions; they are never skipped (in CI a silent skip would be a green lie).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aio_pika
import pytest

from adapters.severa.fake.server import FakeSevera
from connector.bus import declare_topology
from connector.topology import Names, accounting_flow_queues, build_topology, work_hours_queue
from tests.factories import SEVERA_SEED
from tests.harness import SEVERA_KEY, TEST_RETRY_LADDER, Broker

pytest_plugins = [
    "tests.fixtures.fake_severa",
    "tests.fixtures.severa_events",
    "tests.fixtures.accounting",
    "tests.fixtures.rabbit_cluster",
]

LOCAL_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def _reachable(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """URL of a real RabbitMQ broker for this test session."""
    from_env = os.environ.get("RABBITMQ_URL")
    if from_env:
        if not _reachable(from_env):
            pytest.fail(
                f"RABBITMQ_URL={urlsplit(from_env).hostname}:{urlsplit(from_env).port} does not answer"
            )
        yield from_env
        return
    if _reachable(LOCAL_BROKER):
        yield LOCAL_BROKER
        return
    if _docker_available():
        from testcontainers.community.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as container:
            params = container.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/"
        return
    pytest.fail(
        "No RabbitMQ broker: set RABBITMQ_URL, start a local broker (`rabbitmq-server -detached`) "
        "or provide a Docker engine for testcontainers. Broker tests never skip."
    )


@pytest.fixture
def names() -> Names:
    """Exchange/queue names unique to this test, so tests never see each other's messages."""
    return Names(prefix=f"t-{uuid.uuid4().hex[:10]}.")


@pytest.fixture
async def amqp_connection(
    amqp_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect(
        amqp_url, client_properties={"connection_name": request.node.nodeid[-200:]}
    )
    yield connection
    await connection.close()


@pytest.fixture
async def topology(names: Names, amqp_connection: aio_pika.abc.AbstractConnection) -> AsyncIterator[Names]:
    """Declare this test's topology up front and delete every entity of it at teardown."""
    spec = build_topology(names, retry_ladder=TEST_RETRY_LADDER)
    channel = await amqp_connection.channel()
    await declare_topology(channel, spec)
    yield names
    # Everything a pod of this test may have declared, the accounting flows' queues included (the
    # pods declare those themselves): a leaked quorum queue is a Raft group the broker keeps running,
    # and a few hundred of them stall it for every later test. Deleting a missing queue is a no-op.
    flows = (work_hours_queue(names), *accounting_flow_queues(names))
    everything = build_topology(names, retry_ladder=TEST_RETRY_LADDER, flows=flows)
    # A pod on the production defaults declares the default ladder's wait queues too.
    default_ladder = build_topology(names, flows=flows)
    for queue in (*everything.queues, *default_ladder.queues):
        await channel.queue_delete(queue.name)
    for exchange in everything.exchanges:
        await channel.exchange_delete(exchange.name)
    await channel.close()


@pytest.fixture
async def severa() -> AsyncIterator[FakeSevera]:
    """The fake Severa over HTTP with the small test organisation (tests.factories.SEVERA_SEED)."""
    async with FakeSevera(api_key=SEVERA_KEY, seed=SEVERA_SEED) as fake:
        yield fake


@pytest.fixture
async def broker(topology: Names, amqp_connection: aio_pika.abc.AbstractConnection) -> AsyncIterator[Broker]:
    """Publishes like an external system and reads the DLQ like ops; binds nothing of its own.

    The topology is the production one: no results queue. A test that observes result events asks
    for :func:`listening_broker` (a source system that binds its own results queue) -- and
    ``tests/integration/test_production_topology.py`` checks what happens when nobody does.
    """
    channel = await amqp_connection.channel(publisher_confirms=True)
    broker = Broker(channel, topology)
    yield broker
    await broker.close()


@pytest.fixture
async def listening_broker(broker: Broker) -> Broker:
    """:func:`broker`, plus a results queue of its own bound to every result event."""
    await broker.watch_results()
    return broker
