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
from connector.state.urls import parse_state_url

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
    target = parse_state_url(url, what="ledger", error=InvalidLedgerURL)
    if target.scheme == "memory":
        return InMemoryLedger(lock_timeout=lock_timeout)
    if target.scheme == "sqlite":
        from connector.state.sqlite import SqliteLedger

        return SqliteLedger(target.location, lock_timeout=lock_timeout)
    from connector.state.postgres import PostgresLedger

    return PostgresLedger(target.location, pool_size=pool_size, lock_timeout=lock_timeout)
