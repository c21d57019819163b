"""connect_broker against the real broker: which refusals are configuration, which are retried.

The exception types are aiormq's, as the local RabbitMQ produces them: a wrong password is
``ProbableAuthenticationError`` (ACCESS_REFUSED), an unknown vhost an ``InvalidFrameError`` that
wraps the broker's Connection.Close (NOT_ALLOWED), a closed port an ``AMQPConnectionError``
(ECONNREFUSED).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection

from connector.config import mask_url_password
from connector.startup import EXIT_CONFIG, EXIT_UNREACHABLE, StartupError, connect_broker

pytestmark = pytest.mark.integration


def _with(url: str, *, password: str | None = None, vhost: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "guest"
    netloc = f"{user}:{password or parts.password or 'guest'}@{parts.hostname}:{port or parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{vhost}" if vhost is not None else parts.path))


def _connector(url: str) -> Callable[[float], Awaitable[AbstractRobustConnection]]:
    return lambda timeout: aio_pika.connect_robust(url, timeout=timeout)


async def _connect(url: str, total_seconds: float = 5) -> AbstractRobustConnection:
    return await connect_broker(
        _connector(url), safe_url=mask_url_password(url), total_seconds=total_seconds, initial_delay=0.05
    )


@pytest.fixture
async def closing() -> AsyncIterator[list[AbstractRobustConnection]]:
    connections: list[AbstractRobustConnection] = []
    yield connections
    for connection in connections:
        await connection.close()


async def test_a_reachable_broker_is_connected_at_once(
    amqp_url: str, closing: list[AbstractRobustConnection]
) -> None:
    with structlog.testing.capture_logs() as logs:
        connection = await _connect(amqp_url)
    closing.append(connection)
    assert not connection.is_closed
    assert not [e for e in logs if e["event"] == "broker_unreachable_retrying"]


async def test_a_wrong_password_fails_at_once_with_exit_2_and_never_shows_it(amqp_url: str) -> None:
    url = _with(amqp_url, password="wrong-pw-5d1e")
    with structlog.testing.capture_logs() as logs, pytest.raises(StartupError) as caught:
        await _connect(url, total_seconds=30)
    error = caught.value
    assert error.exit_code == EXIT_CONFIG
    assert "refused the login of user 'guest' (ACCESS_REFUSED)" in error.message
    assert "fix the user or password in SEVERA_CONNECTOR_RABBITMQ__URL" in error.message
    assert "wrong-pw-5d1e" not in error.message + repr(logs)
    assert not [e for e in logs if e["event"] == "broker_unreachable_retrying"]  # no retry


async def test_an_unknown_vhost_fails_at_once_with_exit_2_naming_it(amqp_url: str) -> None:
    vhost = f"no-such-vhost-{uuid.uuid4().hex[:8]}"
    with structlog.testing.capture_logs() as logs, pytest.raises(StartupError) as caught:
        await _connect(_with(amqp_url, vhost=vhost), total_seconds=30)
    error = caught.value
    assert error.exit_code == EXIT_CONFIG
    assert f"refused virtual host '{vhost}' to user 'guest' (NOT_ALLOWED" in error.message
    assert "SEVERA_CONNECTOR_RABBITMQ__URL" in error.message
    assert not [e for e in logs if e["event"] == "broker_unreachable_retrying"]


async def test_a_closed_port_is_retried_until_the_budget_then_exit_3(amqp_url: str) -> None:
    url = _with(amqp_url, port=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with structlog.testing.capture_logs() as logs, pytest.raises(StartupError) as caught:
        await _connect(url, total_seconds=0.6)
    assert loop.time() - started < 5
    error = caught.value
    assert error.exit_code == EXIT_UNREACHABLE
    assert f"RabbitMQ at {urlsplit(amqp_url).hostname}:1 did not answer within 0.6s" in error.message
    assert "Connect call failed" in error.message
    retries = [e for e in logs if e["event"] == "broker_unreachable_retrying"]
    assert retries
    assert retries[0]["attempt"] == 1


async def test_a_peer_that_accepts_but_never_speaks_cannot_stretch_the_budget() -> None:
    """A half-up broker (or a wrong service on the port) holds each attempt open; the total still holds."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(StartupError) as caught:
            await _connect(f"amqp://guest:guest@127.0.0.1:{port}/", total_seconds=0.5)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert loop.time() - started < 3
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert "last: timed out" in caught.value.message
