"""Configuration: one pydantic-settings model, built once at start-up and passed down.

Every setting comes from an environment variable prefixed ``SEVERA_CONNECTOR_`` (nested groups
joined by ``__``, e.g. ``SEVERA_CONNECTOR_SEVERA__URL``) or from a ``.env`` file in the working
directory. The Severa API key comes from ``SEVERA_CONNECTOR_SEVERA__API_KEY`` or, in Kubernetes,
from a mounted Secret file named by ``SEVERA_CONNECTOR_SEVERA__API_KEY_FILE`` (re-read when it
changes). Nothing here is read at import time.

Invalid configuration raises :class:`connector.errors.ConfigError` whose message names each bad
setting by its environment variable, so the CLI can print it and exit with code 2.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.severa.config import SeveraClientConfig
from connector.errors import ConfigError

ENV_PREFIX = "SEVERA_CONNECTOR_"
ENV_NESTED_DELIMITER = "__"


class RabbitSettings(BaseModel):
    url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="AMQP URL of the broker (its password is treated as a secret).",
    )
    prefix: str = Field(default="", description="Prefix for every exchange/queue name (isolation).")
    prefetch: int = Field(default=32, ge=1, le=1000, description="Messages handled concurrently per pod.")
    publish_timeout_seconds: float = Field(default=10.0, gt=0, description="Wait for a publisher confirm.")
    delivery_limit: int = Field(default=20, ge=2, description="Quorum-queue redelivery safety net.")

    @field_validator("url")
    @classmethod
    def _amqp_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in {"amqp", "amqps"}:
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    def safe_url(self) -> str:
        """The URL with its password masked, for logs."""
        return mask_url_password(self.url.get_secret_value())


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a TTY, JSON otherwise (containers)."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class HttpSettings(BaseModel):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535, description="/healthz /readyz /metrics")


class RetrySettings(BaseModel):
    """In-process retries of transient failures (jittered exponential backoff)."""

    attempts: int = Field(default=4, ge=1, le=20)
    initial_seconds: float = Field(default=0.2, gt=0)
    max_seconds: float = Field(default=5.0, gt=0)
    ladder_seconds: tuple[float, ...] = Field(
        default=(10.0, 60.0, 600.0),
        description="Delayed retries after the in-process ones (JSON list, e.g. [10, 60, 600]); "
        "past the last rung a message is dead-lettered. Empty: dead-letter at once.",
    )

    @field_validator("ladder_seconds")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v <= 0 for v in value):
            raise ValueError("every delay must be > 0 seconds")
        return value


class CircuitSettings(BaseModel):
    """How a systemic failure (auth, quota, outage) pauses and probes."""

    probe_initial_seconds: float = Field(default=1.0, gt=0)
    probe_max_seconds: float = Field(default=60.0, gt=0)


class WorkHoursSettings(BaseModel):
    cache_ttl_seconds: float = Field(
        default=300.0, ge=0, description="How long resolved users/cases/phases/work types are reused."
    )
    hold_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a message is held unacked while Severa is unusable before it is "
        "returned to the queue (keep below the broker's consumer_timeout, 30 min by default).",
    )


class CommonSettings(BaseSettings):
    """What every command needs: the broker, logging. Commands that talk to Severa use :class:`Settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    rabbitmq: RabbitSettings = Field(default_factory=RabbitSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    pod_name: str = Field(default_factory=socket.gethostname, description="Shown in DLQ headers.")


class Settings(CommonSettings):
    """Everything ``severa-connector run`` needs."""

    # The empty default is validated (validate_default): a missing key is reported by its setting name.
    severa: SeveraClientConfig = Field(  # type: ignore[assignment]
        default_factory=dict, description="How to reach Severa; the API key is required."
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    circuit: CircuitSettings = Field(default_factory=CircuitSettings)
    work_hours: WorkHoursSettings = Field(default_factory=WorkHoursSettings)
    state_url: str = Field(
        default="sqlite:///severa-connector-state.db",
        description="Idempotency ledger: sqlite:///<path> (one pod) or postgresql://… (several pods).",
    )
    mapping_file: Path | None = Field(
        default=None, description="YAML/JSON table of codes that differ between systems."
    )
    mapping_reload_seconds: float = Field(
        default=10.0, ge=0, description="How often the mapping file is checked for changes."
    )
    drain_seconds: float = Field(default=20.0, ge=0, description="Grace period for in-flight work.")


DEFAULT_STATE_URL = "sqlite:///severa-connector-state.db"
DEFAULT_DLQ_STORE_FILE = "severa-connector-dlq.db"
DEFAULT_DLQ_AUDIT_FILE = "severa-connector-dlq-audit.jsonl"


class DeadLetterSettings(BaseModel):
    """The dead-letter tools (``severa-connector dlq``): where the store and the audit log live."""

    store_url: str | None = Field(
        default=None,
        description="Dead-letter store: sqlite:///<path> (one operator host) or postgresql://… (several "
        "operators/pods). Default: next to the ledger -- the same PostgreSQL database as state_url, "
        f"or {DEFAULT_DLQ_STORE_FILE} in the directory of a SQLite ledger.",
    )
    store_table_prefix: str = Field(
        default="severa_connector_",
        pattern=r"^[a-z_][a-z0-9_]{0,39}$",
        description="PostgreSQL only: prefix of the store's tables (several connectors in one database).",
    )
    audit_log: str | None = Field(
        default=None,
        description="JSON-lines file every replay/edit/purge/import/export appends its audit records to; "
        "'-' for stderr. Default: next to a SQLite store file; stderr with a PostgreSQL store (whose "
        "dlq_audit table and the audit queue are then the durable, shared copies).",
    )
    replay_batch: int = Field(
        default=100, ge=1, le=5000, description="Messages claimed, published and confirmed per step."
    )
    canary_timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long `replay --canary` waits for the canaries' outcome."
    )
    ingest_max_seconds: float = Field(
        default=300.0, gt=0, description="Cap on one ingest of the DLQ while producers keep adding to it."
    )


class DlqSettings(CommonSettings):
    """What the ``dlq`` commands need: the broker, the ledger URL (to place the store next to it)."""

    # Same variable as Settings.state_url (SEVERA_CONNECTOR_STATE_URL): the store's default follows it.
    state_url: str = Field(default=DEFAULT_STATE_URL, description="The connector's ledger URL.")
    dlq: DeadLetterSettings = Field(default_factory=DeadLetterSettings)

    def dlq_store_url(self) -> str:
        return self.dlq.store_url or default_dlq_store_url(self.state_url)

    def dlq_audit_log(self) -> Path | None:
        """Where audit lines go: a file, or ``None`` for stderr (see :class:`DeadLetterSettings`)."""
        if self.dlq.audit_log is not None:
            return None if self.dlq.audit_log == "-" else Path(self.dlq.audit_log)
        parts = urlsplit(self.dlq_store_url())
        path = parts.path[1:]
        if parts.scheme.lower() != "sqlite" or path in ("", ":memory:"):
            return None
        return Path(path).parent / DEFAULT_DLQ_AUDIT_FILE


def default_dlq_store_url(state_url: str) -> str:
    """The dead-letter store's URL when none is set: beside the ledger ``state_url`` names.

    A PostgreSQL ledger means several pods, so their operators share that database (the store's
    tables have their own names); a SQLite ledger file gets a sibling file; an in-memory ledger
    (tests, demos) an in-memory store.
    """
    parts = urlsplit(state_url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return state_url.strip()
    if scheme == "sqlite":
        path = parts.path[1:]
        if path in ("", ":memory:"):
            return "sqlite:///:memory:"
        directory = path.rpartition("/")[0]
        return f"sqlite:///{directory + '/' if directory else ''}{DEFAULT_DLQ_STORE_FILE}"
    if scheme == "memory":
        return "sqlite:///:memory:"
    return f"sqlite:///{DEFAULT_DLQ_STORE_FILE}"


def env_name(loc: tuple[int | str, ...]) -> str:
    """``("severa", "url")`` → ``SEVERA_CONNECTOR_SEVERA__URL``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in loc)


def format_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors(include_input=False, include_url=False):
        lines.append(f"  {env_name(tuple(error['loc']))}: {error['msg']}")
    return "\n".join(lines)


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def load_settings(cls: type[SettingsT] = Settings, **overrides: Any) -> SettingsT:  # type: ignore[assignment]
    """Build the settings from the environment (+ ``.env``), or raise :class:`ConfigError`."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
