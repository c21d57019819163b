"""``severa-connector config show``: the configuration a command would run with, secrets redacted.

On call, "which broker, which Severa, which store does this pod use, and who set that?" has to be
answered without reading a Secret: every leaf setting is listed with its value as the settings
model has it (after defaults and validation) and where that value came from -- the environment
variable itself, a whole group set as JSON (``SEVERA_CONNECTOR_SEVERA='{…}'``), ``.env``, or the
default.

What is never shown: the value of a ``SecretStr`` (the Severa API key, the Netvisor keys), the
password in any URL (the broker's, a PostgreSQL ledger's or store's), query parameters of a URL
that look like credentials, and every value of a setting whose name says it is a secret (key,
password, token, secret, credential, authorization, headers -- OTLP headers carry bearer tokens)
unless it is a number. Settings that name a file (``*_file``) are shown as the path: the file is
never opened here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings
from pydantic_settings.sources import DotEnvSettingsSource, EnvSettingsSource

from connector.broker_addresses import broker_urls
from connector.config import env_name

REDACTED: Final = "***"

#: A name part that marks a setting (or a header, a query parameter) as a secret.
_SECRET_NAME: Final = re.compile(
    r"(^|[_\-.])(api[_\-]?key|key|password|passwd|pwd|secret|token|credentials?|authorization|auth|cookie|headers?)"
    r"($|[_\-.])",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ShownSetting:
    """One leaf setting: ``path`` (``rabbitmq.url``), its variable, redacted value, and source."""

    path: str
    variable: str
    value: Any
    source: str


def secret_name(name: str) -> bool:
    """Whether a setting, header or parameter called ``name`` holds a secret (``*_file`` does not:
    it holds where the secret is)."""
    return bool(_SECRET_NAME.search(name)) and not name.lower().endswith(("_file", "_setting"))


def redact_url(url: str) -> str:
    """``url`` with its password -- or a user name standing alone, often a token -- and any
    credential-looking query parameter replaced by ``***``; anything else as it was."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return REDACTED  # not a URL after all, and too odd to show
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{REDACTED}@{host}" if password is not None else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, REDACTED if secret_name(key) else value) for key, value in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_broker_list(text: str) -> str:
    """A broker setting may list several URLs (a cluster), each with its own password: every one
    of them redacted, never only the first."""
    try:
        urls = broker_urls(text)
    except ValueError:
        return REDACTED
    return ",".join(redact_url(url) for url in urls)


def redact(name: str, value: Any) -> Any:
    """``value`` of the setting ``name`` as it may be shown: JSON-ready, secrets replaced."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if secret.startswith(("amqp://", "amqps://")):
            return _redact_broker_list(secret)
        return redact_url(secret) if "://" in secret else REDACTED
    if isinstance(value, bool | int | float) or value is None:
        return value
    if secret_name(name):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): redact(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(name, item) for item in value]
    if isinstance(value, BaseModel):
        return {key: redact(key, getattr(value, key)) for key in type(value).model_fields}
    text = str(value)  # HttpUrl, enums, dates: as they read
    return redact_url(text) if "://" in text else (value if isinstance(value, str) else text)


def _leaves(model: BaseModel, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, (*path, name))
        else:
            yield (*path, name), value


def _in_group_json(raw: str | None, rest: tuple[str, ...]) -> bool:
    """Whether a group set as JSON (``{"url": …}``) sets the setting at ``rest`` inside it."""
    try:
        data: Any = json.loads(raw or "")
    except ValueError:
        return False
    for part in rest:
        if not isinstance(data, dict):
            return False
        found = {str(key).lower(): item for key, item in data.items()}
        if part.lower() not in found:
            return False
        data = found[part.lower()]
    return True


def _source(
    path: tuple[str, ...], environ: Mapping[str, str | None], dotenv: Mapping[str, str | None]
) -> str:
    for where, variables in (("env", environ), (".env", dotenv)):
        if env_name(path).lower() in variables:
            return where
        for cut in range(len(path) - 1, 0, -1):
            group = env_name(path[:cut]).lower()
            if group in variables and _in_group_json(variables[group], path[cut:]):
                return f"{where} ({group.upper()})"
    return "default"


def effective_settings(settings: BaseSettings) -> list[ShownSetting]:
    """Every leaf setting of ``settings`` with its redacted value and where it came from.

    The sources are asked for the variables exactly as the settings model read them (its prefix,
    its ``.env``, its case rules), so "env" here means what it meant there.
    """
    cls = type(settings)
    environ = _lowered(EnvSettingsSource(cls).env_vars)
    dotenv = _lowered(DotEnvSettingsSource(cls).env_vars)
    return [
        ShownSetting(
            path=".".join(path),
            variable=env_name(path),
            value=redact(path[-1], value),
            source=_source(path, environ, dotenv),
        )
        for path, value in _leaves(settings, ())
    ]


def _lowered(variables: Mapping[str, str | None]) -> dict[str, str | None]:
    return {name.lower(): value for name, value in variables.items()}


def as_document(shown: list[ShownSetting]) -> dict[str, Any]:
    """``-o json`` / ``-o yaml``: ``{"settings": {nested values}, "sources": {path: source}}``."""
    nested: dict[str, Any] = {}
    for setting in shown:
        *groups, leaf = setting.path.split(".")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
        target[leaf] = setting.value
    return {"settings": nested, "sources": {s.path: s.source for s in shown}}
