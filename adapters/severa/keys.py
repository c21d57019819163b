"""Where the Severa API key comes from, and how a rotated key is picked up without a restart.

Severa invalidates the old key the moment a new one is generated, so a long-running connector
must follow the key rather than hold it. Kubernetes mounts a Secret as a file and replaces it by
swapping a ``..data`` symlink to a new directory: the path stays, the inode, mtime and content
change. :class:`FileApiKey` therefore follows the path (``os.stat`` follows symlinks) and re-reads
it when what it points at changes, and also compares the content now and then, because a
same-size rewrite within the file system's timestamp granularity leaves ``stat`` unchanged.

The key is held as a :class:`pydantic.SecretStr` and only unwrapped by the client when it builds
the SOAP header: no repr, log line or error message of this module contains it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog
from pydantic import SecretStr

from adapters.severa.config import API_KEY_FILE_SETTING, API_KEY_SETTING, SeveraClientConfig
from connector.errors import ConfigError

log = structlog.get_logger(__name__)

_StatSignature = tuple[int, int, int, int]


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


class FileApiKey:
    """A key read from a file and re-read when the file changes.

    ``current()`` costs one ``stat`` per call; the file is read when the stat signature (device,
    inode, size, mtime) changes, every ``recheck_seconds`` regardless, and on :meth:`refresh`.
    If the file becomes unreadable or empty after a key was read, the last key is kept (a Secret
    being swapped is never half-written, but an operator's editor may be) and a warning is logged.
    """

    __slots__ = ("_clock", "_key", "_next_recheck", "_path", "_recheck_seconds", "_signature", "_warned")

    def __init__(
        self,
        path: Path,
        *,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._recheck_seconds = recheck_seconds
        self._clock = clock
        self._signature: _StatSignature | None = None
        self._next_recheck = 0.0
        self._warned = False
        try:
            signature = self._stat()
            key = self._read()
        except OSError as exc:
            raise ConfigError(
                f"Cannot read the Severa API key file {path} ({type(exc).__name__}: {exc.strerror}): "
                f"point {API_KEY_FILE_SETTING} at a readable file.",
                reason="api_key_file_unreadable",
                path=str(path),
            ) from None  # the OSError adds nothing and a traceback here only distracts
        if key is None:
            raise ConfigError(
                f"The Severa API key file {path} is empty: write the key into it.",
                reason="api_key_empty",
                path=str(path),
            )
        self._key = key
        self._remember(signature)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def origin(self) -> str:
        return f"the key file {self._path} ({API_KEY_FILE_SETTING})"

    def current(self) -> SecretStr:
        try:
            signature = self._stat()
        except OSError as exc:
            self._warn_unreadable(exc)
            return self._key
        if signature != self._signature or self._clock() >= self._next_recheck:
            self._reload(signature)
        return self._key

    def refresh(self) -> None:
        try:
            signature = self._stat()
        except OSError as exc:
            self._warn_unreadable(exc)
            return
        self._reload(signature)

    def _reload(self, signature: _StatSignature) -> None:
        try:
            key = self._read()
        except OSError as exc:
            self._warn_unreadable(exc)
            return
        if key is None:
            if not self._warned:
                log.warning("severa.api_key_file_empty", path=str(self._path), action="keeping the last key")
                self._warned = True
            return
        if key.get_secret_value() != self._key.get_secret_value():
            log.info("severa.api_key_reloaded", path=str(self._path))
        self._key = key
        self._warned = False
        self._remember(signature)

    def _remember(self, signature: _StatSignature) -> None:
        self._signature = signature
        self._next_recheck = self._clock() + self._recheck_seconds

    def _stat(self) -> _StatSignature:
        st = os.stat(self._path)  # follows the Kubernetes ..data symlink on purpose
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> SecretStr | None:
        text = self._path.read_text(encoding="utf-8").strip()
        return SecretStr(text) if text else None

    def _warn_unreadable(self, exc: OSError) -> None:
        if not self._warned:
            log.warning(
                "severa.api_key_file_unreadable",
                path=str(self._path),
                error=type(exc).__name__,
                action="keeping the last key",
            )
            self._warned = True

    def __repr__(self) -> str:
        return f"FileApiKey(path={str(self._path)!r})"


def api_key_source(config: SeveraClientConfig) -> ApiKeySource:
    """The key source the settings describe (the model guarantees exactly one is set)."""
    if config.api_key_file is not None:
        return FileApiKey(config.api_key_file, recheck_seconds=config.api_key_recheck_seconds)
    assert config.api_key is not None
    return StaticApiKey(config.api_key)
