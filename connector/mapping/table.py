"""The mapping table: codes that differ between an external system and Severa.

Ops keep it in a YAML or JSON file (``SEVERA_CONNECTOR_MAPPING_FILE``)::

    users: {"ext-jdoe": "JDOE", "jane@old.example": "JSMITH"}  # code/e-mail -> Severa user code
    cases: {"4711": 1042}                                       # external case number -> Severa's
    phases: {"design": "DES"}                                   # phase code -> Severa phase code
    work_types: {"dev": "DEV"}                                  # work type -> Severa code

A value not in the table passes through unchanged, so an empty table is the identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector.errors import ConfigError


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
