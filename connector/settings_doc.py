"""The settings reference (``docs/settings.md``), generated from the pydantic models themselves.

A hand-written list goes stale the day someone adds a setting; this one is rendered from the same
models that read the environment, and a unit test fails when the committed file differs from what
``severa-connector settings`` prints now. Every leaf setting becomes one row: its environment
variable, type and constraints, default (secrets masked), description and the commands that read it.
"""

from __future__ import annotations

import json
import re
import socket
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, HttpUrl, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python
from pydantic_settings import BaseSettings

from connector.config import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    CommonSettings,
    DlqSettings,
    Settings,
    env_name,
    mask_url_password,
)

REGENERATE = "severa-connector settings > docs/settings.md"

#: Which commands build which settings model (see connector/cli.py and connector/dlq/cli.py).
COMMANDS: tuple[tuple[type[BaseSettings], tuple[str, ...]], ...] = (
    (Settings, ("run", "check")),
    (CommonSettings, ("demo",)),
    (DlqSettings, ("dlq",)),
)
ALL_COMMANDS = tuple(command for _, commands in COMMANDS for command in commands)

#: Defaults computed on the machine that starts: shown by what they are, so the file is stable.
_FACTORY_DEFAULTS: dict[Callable[..., Any], str] = {socket.gethostname: "the host name"}

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "**secret** string",
    HttpUrl: "URL",
}


@dataclass
class SettingRow:
    variable: str
    type: str
    default: str
    description: str
    commands: list[str]


@dataclass
class Section:
    title: str
    intro: str
    rows: list[SettingRow]


def _markdown(text: str) -> str:
    """Docstrings and descriptions use reST roles; the reference is Markdown."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return " ".join(_markdown(text).split()).replace("|", "\\|")


def _group(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        name = " or ".join(_type_name(arg) for arg in members)
        return f"{name}, optional" if len(members) < len(get_args(annotation)) else name
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (list, tuple, set, frozenset):
        items = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        of = f" of {_type_name(items[0])}s" if len(set(items)) == 1 else ""
        return f"JSON list{of}"
    if origin is dict:
        return "JSON object"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraints(field: FieldInfo) -> list[str]:
    found: list[str] = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            found.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            found.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            found.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            found.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            found.append(f"at least {item.min_length} long")
        elif isinstance(item, annotated_types.MaxLen):
            found.append(f"at most {item.max_length} long")
        elif getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
    return found


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        known = _FACTORY_DEFAULTS.get(field.default_factory)
        return known if known is not None else "computed at start"
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        shown = mask_url_password(value.get_secret_value())
        return f"`{shown}`" if shown != value.get_secret_value() else "(secret)"
    plain = to_jsonable_python(value)
    if isinstance(plain, str):
        return f"`{plain}`" if plain else "empty"
    if isinstance(plain, list):
        plain = [int(v) if isinstance(v, float) and v.is_integer() else v for v in plain]
    return f"`{json.dumps(plain)}`"


def _leaves(model: type[BaseModel], loc: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    for name, field in model.model_fields.items():
        group = _group(field.annotation)
        if group is not None:
            yield from _leaves(group, (*loc, name))
        else:
            yield (*loc, name), field


def collect_sections() -> list[Section]:
    """Every setting of every command's model, merged by variable, grouped like the environment."""
    sections: dict[str, Section] = {}
    rows: dict[str, SettingRow] = {}
    for model, commands in COMMANDS:
        for name, field in model.model_fields.items():
            group = _group(field.annotation)
            if group is None:
                key, title, intro = "", "General", "Settings outside any group."
                leaves: Iterator[tuple[tuple[str, ...], FieldInfo]] = iter([((name,), field)])
            else:
                key, title = name, f"`{name}` — `{env_name((name,))}{ENV_NESTED_DELIMITER}…`"
                intro = " ".join((group.__doc__ or field.description or "").split("\n\n")[0].split())
                leaves = _leaves(group, (name,))
            section = sections.setdefault(key, Section(title=title, intro=_markdown(intro), rows=[]))
            for loc, leaf in leaves:
                variable = env_name(loc)
                row = rows.get(variable)
                if row is None:
                    row = SettingRow(
                        variable=variable,
                        type=", ".join([_type_name(leaf.annotation), *_constraints(leaf)]),
                        default=_default(leaf),
                        description=leaf.description or "",
                        commands=[],
                    )
                    rows[variable] = row
                    section.rows.append(row)
                row.commands.extend(c for c in commands if c not in row.commands)
    general = sections.pop("", None)
    return ([general] if general else []) + list(sections.values())


def _used_by(commands: list[str]) -> str:
    if set(commands) == set(ALL_COMMANDS):
        return "all"
    return ", ".join(f"`{c}`" for c in ALL_COMMANDS if c in commands)


def render_settings_reference() -> str:
    """The Markdown of ``docs/settings.md``."""
    lines = [
        "# Settings reference",
        "",
        f"<!-- Generated from connector/config.py by `severa-connector settings`; do not edit. "
        f"Regenerate: {REGENERATE} -->",
        "",
        f"Every setting is an environment variable prefixed `{ENV_PREFIX}`, or a line in a `.env` file in "
        "the working directory. Groups nest with `__`. A list, or a whole group at once, is written as "
        "JSON: `SEVERA_CONNECTOR_RETRY__LADDER_SECONDS='[10, 60, 600]'`, "
        '`SEVERA_CONNECTOR_SEVERA=\'{"api_key_file": "/run/secrets/severa-api-key"}\'`. '
        "Every setting is checked before anything is started; a bad one stops the command with its "
        "variable's name and exit code 2.",
        "",
        "A **secret** value never appears in logs, metrics, dead-letter headers or error messages; its "
        "default is shown masked. *Used by* names the commands that read the setting.",
    ]
    for section in collect_sections():
        lines += ["", f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        lines += ["| variable | type | default | description | used by |", "|---|---|---|---|---|"]
        for row in section.rows:
            cells = (f"`{row.variable}`", row.type, row.default, row.description, _used_by(row.commands))
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
