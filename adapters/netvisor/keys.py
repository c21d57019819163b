"""Where Netvisor's two secrets come from: the customer key and the partner key.

Both go into every request's MAC (never into a header). Either may be given directly in the
settings (rotating it needs a restart) or as a file, typically a mounted Kubernetes Secret, which
:class:`adapters.secret_file.SecretFile` follows: a rewritten or swapped file is used from the next
request on. :class:`NetvisorKeys` holds the pair and is what the client asks before it signs.

No repr, log line or error message of this module contains a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from adapters.netvisor.config import (
    CUSTOMER_KEY_FILE_SETTING,
    CUSTOMER_KEY_SETTING,
    PARTNER_KEY_FILE_SETTING,
    PARTNER_KEY_SETTING,
    NetvisorClientConfig,
)
from adapters.secret_file import SecretFile, SecretFileLabels
from connector.errors import ConfigError


class KeySource(Protocol):
    """Gives one key for the next request."""

    @property
    def origin(self) -> str:
        """Where the key comes from, phrased for a sentence telling an operator what to fix."""
        ...

    def current(self) -> SecretStr:
        """The key for the next request; cheap enough to ask on every request."""
        ...

    def refresh(self) -> None:
        """Re-read the key now (Netvisor refused it: it may just have been rotated)."""
        ...


class StaticKey:
    """A key given directly in the settings."""

    __slots__ = ("_key", "_setting", "_what")

    def __init__(self, key: SecretStr, *, what: str, setting: str) -> None:
        value = key.get_secret_value().strip()
        if not value:
            raise ConfigError(f"The Netvisor {what} is empty: set {setting}.", reason="netvisor_key_empty")
        self._key = SecretStr(value)
        self._what = what
        self._setting = setting

    @property
    def origin(self) -> str:
        return f"the setting {self._setting}"

    def current(self) -> SecretStr:
        return self._key

    def refresh(self) -> None:
        """Nothing to re-read: a key given in the settings only changes with a restart."""

    def __repr__(self) -> str:
        return f"StaticKey({self._what}, **********)"


def file_key(
    path: Path,
    *,
    what: str,
    setting: str,
    recheck_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> SecretFile:
    """A key read from ``path`` and followed as it is rotated."""
    slug = what.replace(" ", "_")
    labels = SecretFileLabels(
        what=f"Netvisor {what}",
        setting=setting,
        event_prefix=f"netvisor.{slug}",
        reason_prefix=f"netvisor_{slug}",
    )
    return SecretFile(path, labels, recheck_seconds=recheck_seconds, clock=clock)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """The two keys one request is signed with (held only for the moment of signing)."""

    customer_key: str
    partner_key: str

    def __repr__(self) -> str:
        return "KeyPair(**********)"

    @property
    def values(self) -> tuple[str, str]:
        return (self.customer_key, self.partner_key)


class NetvisorKeys:
    """The customer key and the partner key, each from its own source."""

    __slots__ = ("customer", "partner")

    def __init__(self, customer: KeySource, partner: KeySource) -> None:
        self.customer = customer
        self.partner = partner

    def current(self) -> KeyPair:
        return KeyPair(
            customer_key=self.customer.current().get_secret_value(),
            partner_key=self.partner.current().get_secret_value(),
        )

    def refresh(self) -> None:
        self.customer.refresh()
        self.partner.refresh()

    @property
    def origin(self) -> str:
        return f"the customer key ({self.customer.origin}) and the partner key ({self.partner.origin})"

    def __repr__(self) -> str:
        return f"NetvisorKeys(customer={self.customer!r}, partner={self.partner!r})"


def key_sources(config: NetvisorClientConfig) -> NetvisorKeys:
    """The key sources the settings describe (the model guarantees exactly one of each is set).

    Raises :class:`~connector.errors.ConfigError` for an unreadable or empty key file.
    """
    return NetvisorKeys(
        customer=_source(
            config.customer_key,
            config.customer_key_file,
            what="customer key",
            setting=CUSTOMER_KEY_SETTING,
            file_setting=CUSTOMER_KEY_FILE_SETTING,
            recheck_seconds=config.key_recheck_seconds,
        ),
        partner=_source(
            config.partner_key,
            config.partner_key_file,
            what="partner key",
            setting=PARTNER_KEY_SETTING,
            file_setting=PARTNER_KEY_FILE_SETTING,
            recheck_seconds=config.key_recheck_seconds,
        ),
    )


def _source(
    direct: SecretStr | None,
    path: Path | None,
    *,
    what: str,
    setting: str,
    file_setting: str,
    recheck_seconds: float,
) -> KeySource:
    if path is not None:
        return file_key(path, what=what, setting=file_setting, recheck_seconds=recheck_seconds)
    assert direct is not None
    return StaticKey(direct, what=what, setting=setting)
