"""Durable state of the connector: the idempotency ledger, and the poller's cursors and lease.

:func:`open_ledger` turns the configured URL into a backend, without doing any I/O; open it with
``async with`` (or :meth:`Ledger.setup`) at start-up::

    async with open_ledger(settings.state.ledger_url) as ledger:
        ...

=====================================  =========================================================
``sqlite:///relative/file.db``         :class:`SqliteLedger`, path relative to the working dir
``sqlite:////absolute/file.db``        :class:`SqliteLedger`, absolute path (four slashes)
``sqlite:///:memory:``                 :class:`SqliteLedger` in memory (tests, demos)
``postgresql://user@host:5432/db``     :class:`PostgresLedger` (``postgres://`` too)
``memory://``                          :class:`InMemoryLedger` (tests, demos)
=====================================  =========================================================

The SQLite forms follow SQLAlchemy's convention, so URLs people already write keep working.

``pool_size`` only shapes :class:`PostgresLedger` (one connection per entry locked at once: the
consumer prefetch plus headroom); the other backends have no pool and ignore it. It is checked for
every URL all the same, so a value that would break a later switch to PostgreSQL is refused now.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from connector.errors import ConfigError
from connector.state.ledger import (
    DEFAULT_LOCK_TIMEOUT,
    Ledger,
    LedgerLockLost,
    LedgerLockTimeout,
    LedgerRecord,
    LedgerState,
    LedgerUnavailable,
    check_pool_size,
)
from connector.state.memory import InMemoryLedger
from connector.state.poller_state import (
    Cursor,
    InMemoryPollerState,
    InvalidPollerStateURL,
    LeaseLost,
    PollerState,
    PollerStateUnavailable,
    SqlPollerState,
    change_stamp,
    open_poller_state,
)

__all__ = [
    "Cursor",
    "InMemoryLedger",
    "InMemoryPollerState",
    "InvalidLedgerURL",
    "InvalidPollerStateURL",
    "LeaseLost",
    "Ledger",
    "LedgerLockLost",
    "LedgerLockTimeout",
    "LedgerRecord",
    "LedgerState",
    "LedgerUnavailable",
    "PollerState",
    "PollerStateUnavailable",
    "SqlPollerState",
    "change_stamp",
    "open_ledger",
    "open_poller_state",
]

ACCEPTED_URLS = "sqlite:///path/to/file.db, sqlite:///:memory:, postgresql://… (or postgres://…), memory://"


class InvalidLedgerURL(ConfigError, ValueError):
    """The ledger URL names no backend we have, or is malformed for the one it names.

    A :class:`ValueError` for callers validating settings, and a :class:`ConfigError` so that
    start-up reports it as bad configuration (exit code 2) rather than a crash.
    """

    reason = "invalid_ledger_url"


def open_ledger(url: str, *, pool_size: int | None = None, lock_timeout: float | None = None) -> Ledger:
    """Build the ledger ``url`` names (not yet opened: use ``async with`` or ``setup()``).

    ``None`` leaves a setting at the backend's default. A bad ``pool_size`` (below
    :data:`~connector.state.ledger.MIN_POOL_SIZE`) or ``lock_timeout`` raises :class:`ValueError`.
    Messages never repeat the URL: it may carry a password.
    """
    if pool_size is not None:
        check_pool_size(pool_size)
    if lock_timeout is None:
        lock_timeout = DEFAULT_LOCK_TIMEOUT
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        raise InvalidLedgerURL(f"malformed ledger URL; accepted forms: {ACCEPTED_URLS}") from exc
    scheme = parts.scheme.lower()

    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            raise InvalidLedgerURL("the memory ledger URL is exactly 'memory://'")
        return InMemoryLedger(lock_timeout=lock_timeout)

    if scheme == "sqlite":
        if parts.netloc:
            raise InvalidLedgerURL(
                f"a sqlite ledger URL has no host: write sqlite:///relative.db or sqlite:////abs.db, "
                f"not sqlite://{parts.netloc}/…"
            )
        if parts.query or parts.fragment:
            raise InvalidLedgerURL("a sqlite ledger URL takes no query parameters or fragment")
        path = unquote(parts.path[1:])  # drop the '/' that separates the empty host from the path
        if not path:
            raise InvalidLedgerURL("a sqlite ledger URL needs a path: sqlite:///path/to/file.db")
        from connector.state.sqlite import SqliteLedger

        return SqliteLedger(path, lock_timeout=lock_timeout)

    if scheme in ("postgresql", "postgres"):
        if not parts.netloc and not parts.path and not parts.query:
            raise InvalidLedgerURL("a postgresql ledger URL needs at least a host or a database")
        from connector.state.postgres import PostgresLedger

        return PostgresLedger(url.strip(), pool_size=pool_size, lock_timeout=lock_timeout)

    shown = f"{scheme!r}" if scheme else "none"
    raise InvalidLedgerURL(f"unsupported ledger URL scheme {shown}; accepted: {ACCEPTED_URLS}")
