"""Run the console until SIGTERM/SIGINT (``severa-connector console``)."""

from __future__ import annotations

from aiohttp import web

from connector.console.app import ConsoleConfig, create_app


def serve(config: ConsoleConfig, *, host: str, port: int) -> None:
    """Serve on ``host:port``; aiohttp's runner turns SIGTERM into a graceful stop.

    The access log is left to our logging (secrets redacted); no request line ever carries the
    token, which travels in a header or a form body only.
    """
    web.run_app(create_app(config), host=host, port=port, print=None, handle_signals=True)
