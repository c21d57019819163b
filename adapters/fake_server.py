"""The HTTP side the fake services share: the owner's lifecycle around an aiohttp runner.

A fake (the fake Severa, the fake Netvisor) is an object a test starts, talks to over real HTTP on
an ephemeral port, and closes: ``async with FakeX(...) as fake:``. How it starts and stops is the
same for every fake, and easy to get subtly wrong (a failed bind that leaks the runner, a
wildcard address handed out as a URL, a second start of a closed fake), so it lives here once, in
:class:`FakeServer`; each fake brings its application (:meth:`FakeServer.create_app`), its names
for messages, and its log lines.
"""

from __future__ import annotations

import enum
from types import TracebackType
from typing import ClassVar, Final, Self

from aiohttp import web

from adapters.fake_faults import HTTP_ERROR, FaultRuleBase

SHUTDOWN_TIMEOUT: Final = 1.0
"""How long ``close()`` lets in-flight requests (e.g. injected latency) finish before cancelling them."""

_LOOPBACK_FOR: Final = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


class Lifecycle(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def url_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to *host*.

    A wildcard bind is reachable through loopback, so that is what to hand out; an IPv6 address
    goes in brackets.
    """
    reachable = _LOOPBACK_FOR.get(host, host)
    return f"[{reachable}]" if ":" in reachable else reachable


class FakeServer:
    """Start, serve and close one fake over real HTTP; a closed fake cannot be started again.

    ``port=0`` picks a free port; :attr:`base_url` is ``http://host:port`` once started (and stays
    what it was after close, so a report written afterwards can still name it). The
    subclass sets :attr:`NAME` (``"fake Severa"``: the errors say which fake refused), implements
    :meth:`create_app`, and may override the hooks :meth:`_prepare` (work before the socket is
    bound, once the start is allowed), :meth:`_on_started` and :meth:`_on_stopped` (its log lines).
    """

    NAME: ClassVar[str]

    def __init__(self, *, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._lifecycle = Lifecycle.NEW

    def create_app(self) -> web.Application:
        """The aiohttp application to serve."""
        raise NotImplementedError

    async def _prepare(self) -> None:
        """Called by :meth:`start` before the socket is bound."""

    def _on_started(self) -> None:
        """Called once serving (:attr:`base_url` is set)."""

    def _on_stopped(self) -> None:
        """Called once a fake that served has stopped."""

    async def start(self) -> Self:
        """Start serving; refused when already started or closed."""
        if self._lifecycle is not Lifecycle.NEW:
            raise RuntimeError(f"cannot start a {self.NAME} that is {self._lifecycle.value}")
        self._lifecycle = Lifecycle.RUNNING
        await self._prepare()
        runner = web.AppRunner(self.create_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._lifecycle = Lifecycle.CLOSED
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://{url_host(host)}:{port}"
        self._on_started()
        return self

    async def close(self) -> None:
        """Stop serving (idempotent). In-flight requests get ``SHUTDOWN_TIMEOUT`` to finish."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self._on_stopped()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._base_url is None:
            raise RuntimeError(f"the {self.NAME} is not running")
        return self._base_url

    @property
    def admin_url(self) -> str:
        """Where the fake's admin API is: for people and other processes steering it."""
        return f"{self.base_url}/admin"


def transport_failure(request: web.Request, rule: FaultRuleBase) -> web.StreamResponse:
    """The answer to an injected HTTP error or dropped connection (see
    :attr:`~adapters.fake_faults.FaultRuleBase.is_transport_failure`): what a proxy in front of the
    service does, whatever the service's own protocol."""
    if rule.kind == HTTP_ERROR:
        return web.Response(status=rule.status, text=rule.body, content_type="text/plain")
    transport = request.transport
    if transport is not None:
        transport.abort()  # no FIN handshake, no answer: what a crashed proxy looks like
    return web.Response()  # never reaches the client: the connection is gone
