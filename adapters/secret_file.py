"""``SecretFile``: a secret read from a file and re-read when the file changes, without a restart.

Shared by every adapter whose credentials are mounted as files (Severa's API key, Netvisor's
customer and partner keys). Services such as Severa invalidate the old key the moment a new one
is generated, so a long-running connector must follow the key rather than hold it. Kubernetes
mounts a Secret as a file and replaces it by swapping a ``..data`` symlink to a new directory: the
path stays, the inode, mtime and content change. :class:`SecretFile` therefore follows the path
(``os.stat`` follows symlinks) and re-reads it when what it points at changes, and also compares the
content now and then, because a same-size rewrite within the file system's timestamp granularity
leaves ``stat`` unchanged.

The value is held as a :class:`pydantic.SecretStr`; no repr, log line or error message of this
module contains it. What differs between adapters -- the words in error messages, the setting to
name, the log event names -- is passed in as a :class:`SecretFileLabels`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import SecretStr

from connector.errors import ConfigError

log = structlog.get_logger(__name__)

_StatSignature = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class SecretFileLabels:
    """How one kind of secret file speaks about itself.

    ``what`` names the secret in sentences ("Severa API key"); ``setting`` is the setting that points
    at the file; ``event_prefix`` starts the log event names (``<prefix>_file_unreadable``,
    ``<prefix>_file_empty``, ``<prefix>_reloaded``); ``reason_prefix`` starts the
    :class:`~connector.errors.ConfigError` reasons (``<prefix>_file_unreadable``, ``<prefix>_empty``).
    """

    what: str
    setting: str
    event_prefix: str
    reason_prefix: str


class SecretFile:
    """A secret read from a file and re-read when the file changes.

    ``current()`` costs one ``stat`` per call; the file is read when the stat signature (device,
    inode, size, mtime) changes, every ``recheck_seconds`` regardless, and on :meth:`refresh`.
    If the file becomes unreadable or empty after a value was read, the last value is kept (a Secret
    being swapped is never half-written, but an operator's editor may be) and a warning is logged
    once until the file is readable again.
    """

    __slots__ = (
        "_clock",
        "_key",
        "_labels",
        "_next_recheck",
        "_path",
        "_recheck_seconds",
        "_signature",
        "_warned",
    )

    def __init__(
        self,
        path: Path,
        labels: SecretFileLabels,
        *,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._labels = labels
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
                f"Cannot read the {labels.what} file {path} ({type(exc).__name__}: {exc.strerror}): "
                f"point {labels.setting} at a readable file.",
                reason=f"{labels.reason_prefix}_file_unreadable",
                path=str(path),
            ) from None  # the OSError adds nothing and a traceback here only distracts
        if key is None:
            raise ConfigError(
                f"The {labels.what} file {path} is empty: write the key into it.",
                reason=f"{labels.reason_prefix}_empty",
                path=str(path),
            )
        self._key = key
        self._remember(signature)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def origin(self) -> str:
        """Where the secret comes from, phrased for a sentence telling an operator what to fix."""
        return f"the key file {self._path} ({self._labels.setting})"

    def current(self) -> SecretStr:
        """The value for the next call; cheap enough to ask on every call."""
        try:
            signature = self._stat()
        except OSError as exc:
            self._warn_unreadable(exc)
            return self._key
        if signature != self._signature or self._clock() >= self._next_recheck:
            self._reload(signature)
        return self._key

    def refresh(self) -> None:
        """Re-read the file now (called after the service refused the value: it may just have rotated)."""
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
                log.warning(
                    f"{self._labels.event_prefix}_file_empty",
                    path=str(self._path),
                    action="keeping the last key",
                )
                self._warned = True
            return
        if key.get_secret_value() != self._key.get_secret_value():
            log.info(f"{self._labels.event_prefix}_reloaded", path=str(self._path))
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
                f"{self._labels.event_prefix}_file_unreadable",
                path=str(self._path),
                error=type(exc).__name__,
                action="keeping the last key",
            )
            self._warned = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self._path)!r})"
