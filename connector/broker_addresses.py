"""Several broker addresses in one setting: the nodes of a RabbitMQ cluster.

``SEVERA_CONNECTOR_RABBITMQ__URL`` holds one AMQP URL or several, separated by commas. An entry
after the first may be a whole URL or only ``host[:port]``; a bare address takes the scheme,
credentials, virtual host and options of the first URL, so the password is written once::

    amqp://connector:pw@rabbit-0:5672/prod,rabbit-1:5672,rabbit-2:5672

A password may contain commas: a comma inside a URL's user information (before the ``@`` of its
authority) never splits the list. Nothing here is RabbitMQ-specific beyond the ``amqp``/``amqps``
schemes, and no message ever shows a password -- entries are named by their position and host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SCHEMES = frozenset({"amqp", "amqps"})
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}

_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")
_BARE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::(?P<port>\d{1,5}))?$")


def broker_urls(text: str) -> tuple[str, ...]:
    """The whole AMQP URLs ``text`` lists, in order; ``ValueError`` (no password in it) if bad.

    A single URL is returned unchanged, so one address behaves exactly as before.
    """
    entries = _split(text)
    if not entries or not entries[0]:
        raise ValueError("must be an amqp:// or amqps:// URL")
    first = urlsplit(entries[0])
    if first.scheme not in SCHEMES:
        raise ValueError("must be an amqp:// or amqps:// URL")
    urls = [entries[0]]
    for position, entry in enumerate(entries[1:], start=2):
        if "://" in entry:
            if urlsplit(entry).scheme not in SCHEMES:
                raise ValueError(f"address {position} must be an amqp:// or amqps:// URL or host[:port]")
            urls.append(entry)
            continue
        bare = _BARE.match(entry)
        if bare is None or (bare["port"] is not None and not 0 < int(bare["port"]) < 65536):
            raise ValueError(f"address {position} must be host[:port] (port 1-65535) or a whole amqp:// URL")
        urls.append(_on_host(first.geturl(), bare["host"], bare["port"]))
    seen: set[str] = set()
    for url in urls:
        address = host_port(url)
        if address in seen:
            raise ValueError(f"lists the broker {address} twice")
        seen.add(address)
    return tuple(urls)


def _split(text: str) -> list[str]:
    """The comma-separated entries of ``text``; commas in a URL's user information do not count.

    A URL's user information ends at the last ``@`` before its path, query or fragment (an ``@``,
    ``/``, ``?`` or ``#`` in a password must be percent-encoded anyway, or no URL parser reads it).
    """
    entries: list[str] = []
    rest = text
    while True:
        protected = 0
        scheme = _SCHEME.match(rest)
        if scheme is not None:
            authority_end = min(
                (i for i in (rest.find(c, scheme.end()) for c in "/?#") if i >= 0), default=len(rest)
            )
            at = rest.rfind("@", scheme.end(), authority_end)
            protected = at + 1 if at >= 0 else scheme.end()
        comma = rest.find(",", protected)
        if comma < 0:
            entries.append(rest.strip())
            return entries
        entries.append(rest[:comma].strip())
        rest = rest[comma + 1 :]


def _on_host(template: str, host: str, port: str | None) -> str:
    """``template`` (the first URL) pointed at another host: same credentials, vhost and options."""
    parts = urlsplit(template)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += host + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def host_port(url: str) -> str:
    """``host:port`` of one URL, with the scheme's default port when none is written."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 5672)
    except ValueError:  # an unparsable port: the client refuses it when it connects
        port = DEFAULT_PORTS.get(parts.scheme, 5672)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def masked(url: str) -> str:
    """One URL with its password replaced by ``***``, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def masked_list(text: str) -> str:
    """Every URL of ``text`` masked, comma-separated; ``text`` masked whole if it does not parse."""
    try:
        urls = broker_urls(text)
    except ValueError:
        return masked(text)
    return ",".join(masked(url) for url in urls)


def passwords(text: str) -> tuple[str, ...]:
    """The passwords in ``text``'s URLs, to register as secrets (never logged)."""
    try:
        urls = broker_urls(text)
    except ValueError:
        urls = (text,)
    found: list[str] = []
    for url in urls:
        password = urlsplit(url).password
        if password and password not in found:
            found.append(password)
    return tuple(found)
