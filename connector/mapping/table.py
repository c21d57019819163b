"""The mapping table: codes that differ between an external system and Severa.

Ops keep it in a YAML or JSON file (``SEVERA_CONNECTOR_MAPPING_FILE``)::

    users: {"ext-jdoe": "JDOE", "jane@old.example": "JSMITH"}  # code/e-mail -> Severa user code
    cases: {"4711": 1042}                                       # external case number -> Severa's
    phases: {"design": "DES"}                                   # phase code -> Severa phase code
    work_types: {"dev": "DEV"}                                  # work type -> Severa code

A value not in the table passes through unchanged, so an empty table is the identity.

The file is watched (:class:`MappingTableFile`): when ops correct it, the running connector picks
the new table up within ``reload_seconds`` — no restart — and a file that does not parse is
refused with an error in the log while the last good table stays in force.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector.errors import ConfigError
from connector.logging import get_logger

log = get_logger(__name__)


class MappingTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: dict[str, str] = Field(default_factory=dict)
    cases: dict[str, int] = Field(default_factory=dict)
    phases: dict[str, str] = Field(default_factory=dict)
    work_types: dict[str, str] = Field(default_factory=dict)

    def user(self, code_or_email: str) -> str:
        return self.users.get(code_or_email, code_or_email)

    def case(self, number: int) -> int:
        return self.cases.get(str(number), number)

    def phase(self, code: str) -> str:
        return self.phases.get(code, code)

    def work_type(self, code: str) -> str:
        return self.work_types.get(code, code)


def load_mapping_table(path: Path | None) -> MappingTable:
    """Read the table (YAML or JSON by suffix); a missing path means the identity table."""
    if path is None:
        return MappingTable()
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return MappingTable.model_validate(data or {})
    except OSError as exc:
        raise ConfigError(f"cannot read mapping table {path}: {exc.strerror}") from None
    except (ValueError, yaml.YAMLError) as exc:
        detail = exc if not isinstance(exc, ValidationError) else exc.errors(include_url=False)
        raise ConfigError(f"invalid mapping table {path}: {detail}") from None


class MappingTableFile:
    """The mapping table from a file, re-read when the file changes (checked at most every
    ``reload_seconds``, on use: no background task to own)."""

    def __init__(self, path: Path | None, *, reload_seconds: float = 10.0) -> None:
        self._path = path
        self._reload_seconds = reload_seconds
        self._table = load_mapping_table(path)  # a bad file at start-up is a ConfigError
        self._signature = self._stat()
        self._checked_at = time.monotonic()
        self.generation = 0  # bumped on every successful reload, so users can drop their caches

    @property
    def path(self) -> Path | None:
        return self._path

    def current(self) -> MappingTable:
        if self._path is None:
            return self._table
        now = time.monotonic()
        if now - self._checked_at < self._reload_seconds:
            return self._table
        self._checked_at = now
        signature = self._stat()
        if signature == self._signature:
            return self._table
        self._signature = signature
        try:
            table = load_mapping_table(self._path)
        except ConfigError as exc:
            log.error("mapping_table_reload_refused", path=str(self._path), error=exc.message)
            return self._table
        self._table = table
        self.generation += 1
        log.info("mapping_table_reloaded", path=str(self._path), generation=self.generation)
        return self._table

    def _stat(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)  # follows symlinks: a swapped ConfigMap is seen
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
