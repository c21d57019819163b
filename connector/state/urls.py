"""The state store URLs the connector accepts, parsed in one place for every store it keeps.

``memory://`` (tests, demos), ``sqlite:///relative.db`` or ``sqlite:////abs.db`` (one pod), and
``postgresql://…`` / ``postgres://…`` (several pods). The ledger, the poller's state and the
dead-letter store all read their URLs here; the dead-letter store has no in-memory fake, so it
parses with ``memory=False`` (``sqlite:///:memory:`` is its in-memory store). A malformed URL is one
:class:`~connector.errors.ConfigError` naming what is wrong; messages never repeat the URL, which may
carry a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

SQL_URLS = "sqlite:///path/to/file.db, sqlite:///:memory:, postgresql://… (or postgres://…)"
ACCEPTED_URLS = f"{SQL_URLS}, memory://"


@dataclass(frozen=True, slots=True)
class StateURL:
    scheme: Literal["memory", "sqlite", "postgresql"]
    location: str  # the SQLite path, or the PostgreSQL DSN as given ("" for memory)


def parse_state_url(url: str, *, what: str, error: type[Exception], memory: bool = True) -> StateURL:
    """Parse ``url`` for the store called ``what`` ("ledger"); raise ``error(message)`` if it is bad.

    ``memory=False``: ``memory://`` is refused like any scheme the store does not have.
    """
    accepted = ACCEPTED_URLS if memory else SQL_URLS
    if not isinstance(url, str):
        raise error(f"the {what} URL must be a string; accepted forms: {accepted}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        raise error(f"malformed {what} URL; accepted forms: {accepted}") from exc
    scheme = parts.scheme.lower()
    if scheme == "memory" and memory:
        if parts.netloc or parts.path or parts.query:
            raise error(f"the memory {what} URL is exactly 'memory://'")
        return StateURL("memory", "")
    if scheme == "sqlite":
        if parts.netloc:
            raise error(
                f"a sqlite {what} URL has no host: write sqlite:///relative.db or sqlite:////abs.db, "
                f"not sqlite://{parts.netloc}/…"
            )
        if parts.query or parts.fragment:
            raise error(f"a sqlite {what} URL takes no query parameters or fragment")
        path = unquote(parts.path[1:])  # drop the '/' that separates the empty host from the path
        if not path:
            raise error(f"a sqlite {what} URL needs a path: sqlite:///path/to/file.db")
        return StateURL("sqlite", path)
    if scheme in ("postgresql", "postgres"):
        if not parts.netloc and not parts.path and not parts.query:
            raise error(f"a postgresql {what} URL needs at least a host or a database")
        return StateURL("postgresql", url.strip())
    shown = f"{scheme!r}" if scheme else "none"
    raise error(f"unsupported {what} URL scheme {shown}; accepted: {accepted}")
