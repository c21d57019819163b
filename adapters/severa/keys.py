"""Where the Severa API key comes from, and how a rotated key is picked up without a restart.

Severa invalidates the old key the moment a new one is generated, so a long-running connector
must follow the key rather than hold it. Kubernetes mounts a Secret as a file and replaces it by
swapping a ``..data`` symlink to a new directory: the path stays, the inode, mtime and content
change. :class:`FileApiKey` therefore follows the path (``os.stat`` follows symlinks) and re-reads
it when what it points at changes, and also compares the content now and then, because a
same-size rewrite within the file system's timestamp granularity leaves ``stat`` unchanged. The
following itself is :class:`adapters.secret_file.SecretFile`, shared with the Netvisor adapter.

The key is held as a :class:`pydantic.SecretStr` and only unwrapped by the client when it builds
the SOAP header: no repr, log line or error message of this module contains it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from adapters.secret_file import SecretFile, SecretFileLabels
from adapters.severa.config import API_KEY_FILE_SETTING, API_KEY_SETTING, SeveraClientConfig
from connector.errors import ConfigError

_LABELS = SecretFileLabels(
    what="Severa API key",
    setting=API_KEY_FILE_SETTING,
    event_prefix="severa.api_key",
    reason_prefix="api_key",
)


class ApiKeySource(Protocol):
    """Gives the key to use for the next call."""

    @property
    def origin(self) -> str:
        """Where the key comes from, phrased for a sentence telling an operator what to fix."""
        ...

    def current(self) -> SecretStr:
        """The key for the next call; cheap enough to ask on every call."""
        ...

    def refresh(self) -> None:
        """Re-read the key now (called after Severa refused it: it may just have been rotated)."""
        ...


class StaticApiKey:
    """A key given directly in the settings; rotating it needs a restart."""

    __slots__ = ("_key",)

    def __init__(self, key: SecretStr) -> None:
        if not key.get_secret_value().strip():
            raise ConfigError(f"The Severa API key is empty: set {API_KEY_SETTING}.", reason="api_key_empty")
        self._key = SecretStr(key.get_secret_value().strip())

    @property
    def origin(self) -> str:
        return f"the setting {API_KEY_SETTING}"

    def current(self) -> SecretStr:
        return self._key

    def refresh(self) -> None:
        """Nothing to re-read: a key given in the settings only changes with a restart."""

    def __repr__(self) -> str:
        return "StaticApiKey(**********)"


class FileApiKey(SecretFile):
    """A key read from a file and re-read when the file changes (:class:`adapters.secret_file.SecretFile`).

    ``current()`` costs one ``stat`` per call; the file is read when the stat signature (device,
    inode, size, mtime) changes, every ``recheck_seconds`` regardless, and on :meth:`refresh`.
    If the file becomes unreadable or empty after a key was read, the last key is kept (a Secret
    being swapped is never half-written, but an operator's editor may be) and a warning is logged.
    """

    __slots__ = ()

    def __init__(
        self,
        path: Path,
        *,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(path, _LABELS, recheck_seconds=recheck_seconds, clock=clock)


def api_key_source(config: SeveraClientConfig) -> ApiKeySource:
    """The key source the settings describe (the model guarantees exactly one is set)."""
    if config.api_key_file is not None:
        return FileApiKey(config.api_key_file, recheck_seconds=config.api_key_recheck_seconds)
    assert config.api_key is not None
    return StaticApiKey(config.api_key)
