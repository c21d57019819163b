"""Start-up failures a person has to act on, each as one line that names the setting or the peer.

A pod usually starts before its broker answers, so the first connection is retried with jittered
backoff for a bounded total (:func:`connect_broker`), with progress in the log. What no retry can
fix -- a refused login, a virtual host that does not exist or is not granted, a port in use -- stops
the start at once. Either way :class:`StartupError` carries the process exit code:

====  ====================================================================================
 2    configuration: bad settings, wrong broker credentials, unknown or forbidden vhost,
      the HTTP port in use or not bindable (same code as :class:`connector.errors.ConfigError`)
 3    a peer still unreachable after the bounded retries (``connect_timeout_seconds``):
      probably transient, so an orchestrator restarting the pod is the right reaction
====  ====================================================================================

Messages never contain a password: the broker is named by ``host:port``, vhost and user only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from aiormq.exceptions import (
    AMQPConnectionError,
    AMQPError,
    AuthenticationError,
    ConnectionClosed,
    ConnectionNotAllowed,
    InvalidFrameError,
    ProbableAuthenticationError,
)

from connector.broker_addresses import broker_urls, host_port
from connector.config import env_name
from connector.errors import ConnectorError
from connector.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3

BROKER_URL_SETTING = env_name(("rabbitmq", "url"))
BROKER_CONNECT_TIMEOUT_SETTING = env_name(("rabbitmq", "connect_timeout_seconds"))

#: The last attempt gets at least this long, so that a budget spent on sleeping still ends with a
#: real try instead of one that times out before its TCP handshake.
_SHORTEST_ATTEMPT = 0.5


class StartupError(ConnectorError):
    """The connector cannot start; ``message`` is the one line to print, ``exit_code`` the status."""

    reason = "startup_failed"

    def __init__(self, message: str, *, exit_code: int, reason: str | None = None, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.exit_code = exit_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, exit_code={self.exit_code})"


class _Broker:
    """What a message may say about the broker: address, vhost and user, never the password."""

    def __init__(self, safe_url: str) -> None:
        try:  # several addresses (a cluster's nodes) are named together: "rabbit-0:5672, rabbit-1:5672"
            urls = broker_urls(safe_url)
        except ValueError:
            urls = (safe_url,)
        parts = urlsplit(urls[0])
        self.address = ", ".join(host_port(url) for url in urls)
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.user = unquote(parts.username) if parts.username else "guest"


def _refused_login(exc: BaseException) -> bool:
    # aiormq raises ProbableAuthenticationError for the 403 ACCESS_REFUSED that answers
    # Connection.StartOk, AuthenticationError when no mechanism fits; a 403 arriving as a plain
    # Connection.Close is the same refusal.
    if isinstance(exc, (ProbableAuthenticationError, AuthenticationError)):
        return True
    return isinstance(exc, ConnectionClosed) and bool(exc.args) and exc.args[0] == 403


def _refused_vhost(exc: BaseException) -> bool:
    # The broker answers Connection.Open for an unknown or forbidden vhost with Connection.Close
    # 530 NOT_ALLOWED. aiormq 7 only checks that the answer is not OpenOk, so it surfaces as an
    # InvalidFrameError naming both frames (the reply text is lost); map the code's own class too.
    if isinstance(exc, ConnectionNotAllowed):
        return True
    text = str(exc)
    return isinstance(exc, InvalidFrameError) and "Connection.OpenOk" in text and "Connection.Close" in text


def _refuse_configuration(exc: BaseException, broker: _Broker) -> None:
    """Raise the exit-2 :class:`StartupError` for a failure no retry can fix; return otherwise."""
    if _refused_login(exc):
        raise StartupError(
            f"RabbitMQ at {broker.address} refused the login of user {broker.user!r} "
            f"(ACCESS_REFUSED): fix the user or password in {BROKER_URL_SETTING}",
            exit_code=EXIT_CONFIG,
            reason="broker_login_refused",
            broker=broker.address,
        ) from exc
    if _refused_vhost(exc):
        raise StartupError(
            f"RabbitMQ at {broker.address} refused virtual host {broker.vhost!r} to user "
            f"{broker.user!r} (NOT_ALLOWED: it does not exist or the user has no permissions "
            f"on it): fix the vhost in {BROKER_URL_SETTING}, or create it and grant access "
            f"(rabbitmqctl add_vhost / set_permissions)",
            exit_code=EXIT_CONFIG,
            reason="broker_vhost_refused",
            broker=broker.address,
        ) from exc


def _retryable(exc: BaseException) -> bool:
    """Failures a broker that is still starting (or a network still converging) produces."""
    return isinstance(exc, (OSError, asyncio.TimeoutError, AMQPError))


def _brief(exc: BaseException) -> str:
    """A short, password-free description of a connect failure for logs and the final message."""
    if isinstance(exc, AMQPConnectionError) and len(exc.args) >= 2 and isinstance(exc.args[1], str):
        return exc.args[1]  # (errno, "Connect call failed ('127.0.0.1', 1)")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _DropTransportErrors(logging.Filter):
    """aiormq logs every failed attempt at ERROR; here each is reported once, as a retry warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error when creating transport")


@contextlib.contextmanager
def _quiet_aiormq() -> Iterator[None]:
    logger = logging.getLogger("aiormq.connection")
    quiet = _DropTransportErrors()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


async def connect_broker(
    connect: Callable[[float], Awaitable[T]],
    *,
    safe_url: str,
    total_seconds: float,
    initial_delay: float = 0.5,
    max_delay: float = 10.0,
) -> T:
    """Call ``connect(timeout)`` until it succeeds, for at most ``total_seconds``; return its result.

    ``timeout`` is the budget left, for the attempt to bound itself -- e.g.
    ``lambda timeout: aio_pika.connect_robust(url, timeout=timeout)`` -- so that the total holds even
    against a peer that accepts TCP and then says nothing (the last attempt gets at least half a
    second, so the total may be exceeded by that much). The attempt is never cancelled from
    outside: a cancelled ``connect_robust`` leaves its reconnect task running forever, retrying a
    connection nobody holds.

    Unreachable (refused, DNS, reset, timeout, broker still booting) is retried with jittered
    exponential backoff, logging ``broker_unreachable_retrying`` per attempt; past the budget a
    :class:`StartupError` with exit code 3. A refused login or vhost is configuration: no retry,
    exit code 2. Any other exception propagates unchanged. ``safe_url`` is the URL with its
    password masked (:meth:`connector.config.RabbitSettings.safe_url`); the password is never shown.
    """
    if total_seconds <= 0:
        raise ValueError("total_seconds must be > 0")
    broker = _Broker(safe_url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_seconds
    delay = initial_delay
    attempt = 0
    with _quiet_aiormq():
        while True:
            attempt += 1
            try:
                return await connect(max(deadline - loop.time(), _SHORTEST_ATTEMPT))
            except Exception as exc:
                _refuse_configuration(exc, broker)
                if not _retryable(exc):
                    raise
                last: Exception = exc
            left = deadline - loop.time()
            if left <= 0:
                break
            pause = min(left, random.uniform(delay / 2, delay))
            log.warning(
                "broker_unreachable_retrying",
                broker=broker.address,
                attempt=attempt,
                error=_brief(last),
                next_delay_seconds=round(pause, 2),
                seconds_left=round(left, 1),
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, max_delay)
    raise StartupError(
        f"RabbitMQ at {broker.address} did not answer within {total_seconds:g}s ({attempt} attempts, "
        f"last: {_brief(last)}): check that the broker runs and is reachable at the address in "
        f"{BROKER_URL_SETTING}; to wait longer raise {BROKER_CONNECT_TIMEOUT_SETTING}",
        exit_code=EXIT_UNREACHABLE,
        reason="broker_unreachable",
        broker=broker.address,
        attempts=attempt,
    ) from last


def explain_port_in_use(
    exc: OSError, *, host: str, port: int, setting: str, host_setting: str | None = None
) -> StartupError:
    """Turn the ``OSError`` of a failed bind into the one line that says what to change (exit 2).

    ``setting`` names the port's variable; ``host_setting`` (e.g. ``SEVERA_CONNECTOR_HTTP__HOST``),
    when given, is named instead when the address is the problem rather than the port.
    """
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    about = setting
    if exc.errno == errno.EADDRINUSE:
        fix = f"port {port} is already in use on {host}: stop the other process or choose another port"
    elif exc.errno == errno.EACCES:
        fix = f"not allowed to listen on port {port} (ports below 1024 need privileges): choose another port"
    elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        about = host_setting or setting
        fix = f"{host} is not an address of this machine: choose another interface"
    else:
        fix = f"{exc.strerror or exc}: choose another host or port"
    return StartupError(
        f"cannot listen on {where} ({about}): {fix}",
        exit_code=EXIT_CONFIG,
        reason="port_unavailable",
        host=host,
        port=port,
    )
