"""Configuration: one pydantic-settings model, built once at start-up and passed down.

Every setting comes from an environment variable prefixed ``SEVERA_CONNECTOR_`` (nested groups
joined by ``__``, e.g. ``SEVERA_CONNECTOR_SEVERA__URL``) or from a ``.env`` file in the working
directory. A list, or a whole group at once (``SEVERA_CONNECTOR_SEVERA='{"url": …}'``), is written
as JSON. The Severa API key comes from ``SEVERA_CONNECTOR_SEVERA__API_KEY`` or, in Kubernetes,
from a mounted Secret file named by ``SEVERA_CONNECTOR_SEVERA__API_KEY_FILE`` (re-read when it
changes). Nothing here is read at import time. ``docs/settings.md`` lists every setting; it is
generated from these models by ``severa-connector settings``.

Invalid configuration raises :class:`connector.errors.ConfigError` whose message names each bad
setting by its environment variable, so the CLI can print it and exit with code 2. Everything that
can be checked without a peer is checked here -- a ledger URL no backend understands, a mapping
file that is missing or does not parse -- so that a bad setting stops the start before the broker
is touched, not after the topology was declared.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources import DotEnvSettingsSource, EnvSettingsSource

from adapters.netvisor.config import NetvisorClientConfig
from adapters.severa.config import SeveraClientConfig
from connector.broker_addresses import broker_urls, masked_list
from connector.errors import ConfigError
from connector.mapping.invoices import InvoiceOptions
from connector.mapping.table import load_mapping_table
from connector.state import open_ledger

ENV_PREFIX = "SEVERA_CONNECTOR_"
ENV_NESTED_DELIMITER = "__"


class RabbitSettings(BaseModel):
    """The RabbitMQ broker every command talks to."""

    url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="AMQP URL of the broker (its password is treated as a secret); for a cluster, several "
        "separated by commas, the first a whole URL and the others whole URLs or host[:port] with the "
        "first one's credentials, vhost and options (amqp://u:pw@rabbit-0/prod,rabbit-1,rabbit-2). The "
        "first that answers is used; a lost connection reconnects to the next. docs/broker-cluster.md",
    )
    prefix: str = Field(default="", description="Prefix for every exchange/queue name (isolation).")
    prefetch: int = Field(default=32, ge=1, le=1000, description="Messages handled concurrently per pod.")
    publish_timeout_seconds: float = Field(default=10.0, gt=0, description="Wait for a publisher confirm.")
    delivery_limit: int = Field(default=20, ge=2, description="Quorum-queue redelivery safety net.")
    connect_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long `run` keeps retrying to reach the broker at start, in total (pods often "
        "start before the broker); then it exits with code 3.",
    )
    consumer_timeout_seconds: float = Field(
        default=1800.0,
        gt=120,
        description="The broker's consumer_timeout (RabbitMQ default 30 min): every delivery is settled "
        "at least a minute before it, and work_hours.hold_seconds must fit inside.",
    )
    results_queue: bool = Field(
        default=False,
        description="Declare the durable queue q.workhours.results bound to every result event, for a "
        "source that wants results kept while it is not listening (it must consume it). Off: results "
        "reach only queues you bind yourself; unroutable ones are counted, never an error.",
    )

    @field_validator("url")
    @classmethod
    def _amqp_scheme(cls, value: SecretStr) -> SecretStr:
        broker_urls(value.get_secret_value())  # a ValueError names the entry, never its password
        return value

    def urls(self) -> tuple[str, ...]:
        """Every broker address as a whole AMQP URL, in the order to try them (secret: passwords)."""
        return broker_urls(self.url.get_secret_value())

    def safe_url(self) -> str:
        """The URL (or the comma-separated URLs) with every password masked, for logs."""
        return masked_list(self.url.get_secret_value())


class LogSettings(BaseModel):
    """What the connector logs, and how (structured JSON for log collectors)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe level written (case-insensitive)."
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a TTY, JSON otherwise (containers)."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


#: The standard OpenTelemetry variables the tracing group honours when its own are unset.
OTEL_TRACES_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_SERVICE_NAME_VAR = "OTEL_SERVICE_NAME"
DEFAULT_SERVICE_NAME = "severa-connector"
OTLP_TRACES_PATH = "/v1/traces"


class TracingSettings(BaseModel):
    """OpenTelemetry tracing (W3C trace context in AMQP headers, spans exported over OTLP/HTTP).

    Off unless an endpoint is configured, here or in the standard ``OTEL_EXPORTER_OTLP_*`` variables;
    off costs nothing (no tracer provider is installed, no header is read).
    """

    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector to export spans to, e.g. http://otel-collector:4318 "
        f"({OTLP_TRACES_PATH} is appended to a URL without a path). Unset: "
        f"{OTEL_TRACES_ENDPOINT_VARS[0]} or {OTEL_TRACES_ENDPOINT_VARS[1]} if set, else tracing is off.",
    )
    service_name: str | None = Field(
        default=None,
        min_length=1,
        description=f"service.name of the spans. Unset: {OTEL_SERVICE_NAME_VAR} if set, else "
        f"{DEFAULT_SERVICE_NAME}.",
    )
    sampling_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of new traces recorded (0..1); a message whose publisher sent trace context "
        "follows the publisher's sampling decision.",
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _otlp_url(value, "")

    def traces_url(self, environ: Mapping[str, str] | None = None) -> str | None:
        """Where spans are POSTed, or ``None``: tracing is off."""
        if self.otlp_endpoint is not None:
            return _with_traces_path(self.otlp_endpoint)
        env = os.environ if environ is None else environ
        for variable in OTEL_TRACES_ENDPOINT_VARS:
            value = env.get(variable, "").strip()
            if value:
                url = _otlp_url(value, f"{variable} ")
                # The signal-specific variable is the whole URL; the general one a base (the spec's rule).
                return url if variable == OTEL_TRACES_ENDPOINT_VARS[0] else _with_traces_path(url)
        return None

    def resolved_service_name(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return self.service_name or env.get(OTEL_SERVICE_NAME_VAR, "").strip() or DEFAULT_SERVICE_NAME


def _otlp_url(value: str, where: str) -> str:
    """``value`` if it is an http(s) URL with a host (the collector's credentials stay out of logs)."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(
            f"{where}must be an http:// or https:// URL of an OTLP/HTTP collector, "
            "e.g. http://otel-collector:4318"
        )
    return text


def _with_traces_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=OTLP_TRACES_PATH))
    return url


class HttpSettings(BaseModel):
    """The health and metrics endpoint of ``run`` (Kubernetes probes, Prometheus)."""

    enabled: bool = Field(default=True, description="Serve /healthz, /readyz and /metrics.")
    host: str = Field(default="0.0.0.0", description="Interface to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="/healthz /readyz /metrics")
    metrics_sample_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often queue depth and consumers are asked of the broker (passive declares) "
        "for /metrics; about the scrape interval.",
    )


class RetrySettings(BaseModel):
    """In-process retries of transient failures (jittered exponential backoff)."""

    attempts: int = Field(
        default=4, ge=1, le=20, description="Tries of one message in-process, the first included."
    )
    initial_seconds: float = Field(default=0.2, gt=0, description="Wait before the first in-process retry.")
    max_seconds: float = Field(default=5.0, gt=0, description="Longest wait between in-process retries.")
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

    probe_initial_seconds: float = Field(
        default=1.0, gt=0, description="Wait before the first probe of a paused Severa."
    )
    probe_max_seconds: float = Field(default=60.0, gt=0, description="Longest wait between probes.")
    poison_strikes: int = Field(
        default=3,
        ge=1,
        le=100,
        description="A message that fails systemically this many times while other messages succeed is "
        "dead-lettered as a suspected poison message (it cannot pause the pod more often).",
    )


class PollerSettings(BaseModel):
    """The change poller (``run --role poller|all``): what it reads from Severa, how often, how much."""

    interval_seconds: float = Field(default=60.0, gt=0, description="Seconds between polls.")
    max_calls_per_poll: int = Field(
        default=200,
        ge=2,
        description="Severa calls one poll may make (they count against the daily quota); a poll that "
        "spends them stops and the next one goes on, skipping nothing.",
    )
    lease_ttl_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How long the poller lease lasts without renewal (default: 3 intervals, at least "
        "30 s); another pod takes over after it.",
    )
    customers: bool = Field(default=True, description="Publish severa.customer.changed.")
    include_inactive_customers: bool = Field(default=False, description="Inactive customers too.")
    invoice_status: str | None = Field(
        default=None,
        description="The Severa invoice status that means 'ready for accounting' (as Severa's own "
        "accounting integration picks invoices); unset: invoices are not polled.",
    )
    business_unit_guids: tuple[str, ...] = Field(
        default=(),
        description="Business units whose invoices are polled (JSON list); empty: the API user's default.",
    )
    hour_entries: bool = Field(default=False, description="Publish severa.hourentry.changed.")
    organization_id: str = Field(
        default="severa",
        min_length=1,
        description="Names the Severa organisation in every event's source (Severa has no id of its own).",
    )
    state_table_prefix: str | None = Field(
        default=None,
        pattern=r"^(?:[a-z_][a-z0-9_]{0,39})?$",
        description="Prefix of the poller's tables (cursors, seen changes, lease) in the state store "
        "(state_url): several connectors, or one poller per Severa organisation, can share one database "
        "under different prefixes. Every poller pod of one deployment must use the same prefix: the lease "
        "lives in these tables. Unset: the ledger's prefix ('' on SQLite, severa_connector_ on PostgreSQL).",
    )


class WorkHoursSettings(BaseModel):
    """The work-hours flow: resolving references and holding messages while Severa is unusable."""

    cache_ttl_seconds: float = Field(
        default=300.0, ge=0, description="How long resolved users/cases/phases/work types are reused."
    )
    hold_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a message is held unacked while Severa is unusable before it is put "
        "back on the queue (republished, not requeued); must be below rabbitmq.consumer_timeout_seconds "
        "minus 60 s.",
    )


DEFAULT_STATE_URL = "sqlite:///severa-connector-state.db"
DEFAULT_DLQ_STORE_FILE = "severa-connector-dlq.db"
DEFAULT_DLQ_AUDIT_FILE = "severa-connector-dlq-audit.jsonl"


class AccountingSettings(BaseModel):
    """The accounting side: which system, and what the connector tells Severa about its invoices.

    Severa's own accounting integration works by invoice status: invoices in a "ready" status
    (``poller.invoice_status``) are transferred, then set to a "transferred" status so the next
    poll does not pick them again, and to a "paid" status when the accounting system has the
    payment. The status names are the organisation's own (``GetAllInvoiceStatuses`` lists them).
    """

    system: Literal["none", "netvisor"] = Field(
        default="none",
        description="The accounting system the accounting flows write to; 'none' runs no accounting flow.",
    )
    severa_transferred_status: str = Field(
        default="Transferred",
        min_length=1,
        description="Severa invoice status set once the invoice is in the accounting system.",
    )
    severa_paid_status: str = Field(
        default="Paid", min_length=1, description="Severa invoice status set when the invoice is paid."
    )
    payments: bool = Field(
        default=True, description="Poll the accounting system for paid invoices (poller role)."
    )
    payments_interval_seconds: float = Field(
        default=300.0, gt=0, description="Seconds between polls for payments."
    )
    payments_max_calls_per_poll: int = Field(
        default=20, ge=1, description="Accounting calls one payments poll may make."
    )
    invoices: InvoiceOptions = Field(
        default_factory=InvoiceOptions,
        description="How Severa invoices are mapped: base currency, Severa VAT codes → VAT treatment, "
        "goods articles, how long an old VAT rate is accepted (connector.mapping.invoices).",
    )
    prefetch: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Messages each accounting flow (customers, invoices) handles at once per pod. The "
        "accounting system serves one request at a time per company, so more would only hold locks and "
        "database connections while waiting for the company's turn.",
    )
    hold_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long an accounting message waits while the accounting circuit is open "
        "(maintenance, outage) before it is put back on its queue.",
    )


class DeadLetterSettings(BaseModel):
    """The dead-letter store and its tools: where the store and the audit log live, how ingest runs.

    The connector pods (or a ``dlq ingest --follow`` role) ingest the DLQs into the store and create
    it; the ``dlq`` commands only open it, so every one of them must be pointed at the same store.
    """

    store_url: str | None = Field(
        default=None,
        description="Dead-letter store: sqlite:///<path> (one host) or postgresql://… (several pods or "
        "operators). Default: next to the ledger -- the same PostgreSQL database as state_url, or "
        f"{DEFAULT_DLQ_STORE_FILE} in the directory of a SQLite ledger. The connector creates it when "
        "it ingests; the dlq commands refuse to run without it.",
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
        default=500,
        ge=1,
        le=5000,
        description="Messages claimed, published and confirmed per step (their bodies are in memory "
        "together; lower it for very large ones).",
    )
    canary_timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long `replay --canary` waits for the canaries' outcome."
    )
    ingest_max_seconds: float = Field(
        default=300.0, gt=0, description="Cap on one `dlq ingest` while producers keep adding to the DLQ."
    )
    ingest: bool = Field(
        default=True,
        description="`run`: ingest every DLQ into the store continuously (commit, then ack). Turn off only "
        "where a dedicated `dlq ingest --follow` role does it.",
    )
    ingest_prefetch: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Dead letters the continuous ingester (connector pods, `dlq ingest --follow`) holds "
        "unacked per DLQ while it commits them to the store.",
    )
    heartbeat_seconds: float = Field(
        default=15.0,
        ge=0,
        le=3600,
        description="`run`: how often the pod writes its heartbeat (role, flows, circuit states, "
        "readiness) to the dead-letter store, where the console shows pods silent for three "
        "intervals as down; 0 turns it off.",
    )

    def resolved_store_url(self, state_url: str) -> str:
        """The store URL: the one set, else the default beside the ledger ``state_url`` names.

        One rule for the connector (which creates the store) and the ``dlq`` commands (which must
        find that same store), so the two cannot drift apart.
        """
        return self.store_url or default_dlq_store_url(state_url)


class CommonSettings(BaseSettings):
    """What every command needs: the broker, logging, tracing.

    Commands that talk to Severa use :class:`Settings`.
    """

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
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    pod_name: str = Field(default_factory=socket.gethostname, description="Shown in DLQ headers.")

    @field_validator("tracing")
    @classmethod
    def _standard_tracing_variables(cls, value: TracingSettings) -> TracingSettings:
        """A bad ``OTEL_EXPORTER_OTLP_*`` endpoint stops the start, not the exporter later."""
        value.traces_url()
        return value


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
    poller: PollerSettings = Field(default_factory=PollerSettings)
    role: Literal["consumer", "poller", "all"] = Field(
        default="consumer",
        description="What this pod runs: the consuming flows, the change poller (one active across pods), "
        "or both (`run --role` overrides it).",
    )
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
    dlq: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    accounting: AccountingSettings = Field(default_factory=AccountingSettings)
    netvisor: NetvisorClientConfig | None = Field(
        default=None,
        description="How to reach Netvisor (required when accounting.system is netvisor); keys from files.",
    )

    def dlq_store_url(self) -> str:
        """Where this pod ingests dead letters to (see :meth:`DeadLetterSettings.resolved_store_url`)."""
        return self.dlq.resolved_store_url(self.state_url)

    @field_validator("state_url")
    @classmethod
    def _ledger_url(cls, value: str) -> str:
        """Refuse a URL no ledger backend takes now, not after the broker's topology was declared.

        ``open_ledger`` builds the backend without I/O, so it is the one authority on accepted URLs.
        A SQLite file is created on first use but its directory is not: a missing one is reported too.
        """
        open_ledger(value)  # InvalidLedgerURL is a ValueError: reported under this setting's name
        parts = urlsplit(value.strip())
        if parts.scheme.lower() == "sqlite":
            path = unquote(parts.path[1:])
            if path != ":memory:" and not Path(path).parent.is_dir():
                raise ValueError(f"the directory of the SQLite ledger {path!r} does not exist")
        return value

    @field_validator("mapping_file")
    @classmethod
    def _mapping_readable(cls, value: Path | None) -> Path | None:
        """A missing or unparsable mapping file would otherwise only surface once consuming began."""
        if value is not None:
            try:
                load_mapping_table(value)
            except ConfigError as exc:
                raise ValueError(f"{exc.message} (fix the file, or unset the setting)") from None
        return value

    @model_validator(mode="after")
    def _bounds_add_up(self) -> Settings:
        """Bounds that depend on each other, checked together so a pod never starts with a hold the
        broker would cut short (it closes a channel that keeps a delivery past consumer_timeout)."""
        budget = self.rabbitmq.consumer_timeout_seconds - 60.0
        problems: list[tuple[tuple[str, ...], float | None, str]] = []
        if self.work_hours.hold_seconds >= budget:
            problems.append(
                (
                    ("work_hours", "hold_seconds"),
                    self.work_hours.hold_seconds,
                    f"must be below {env_name(('rabbitmq', 'consumer_timeout_seconds'))} minus 60 s "
                    f"({budget:g}); lower it, or raise the broker's consumer_timeout and that setting",
                )
            )
        if self.retry.initial_seconds > self.retry.max_seconds:
            problems.append(
                (
                    ("retry", "initial_seconds"),
                    self.retry.initial_seconds,
                    f"must not exceed {env_name(('retry', 'max_seconds'))} ({self.retry.max_seconds:g})",
                )
            )
        if self.circuit.probe_initial_seconds > self.circuit.probe_max_seconds:
            problems.append(
                (
                    ("circuit", "probe_initial_seconds"),
                    self.circuit.probe_initial_seconds,
                    f"must not exceed {env_name(('circuit', 'probe_max_seconds'))} "
                    f"({self.circuit.probe_max_seconds:g})",
                )
            )
        if self.accounting.system == "netvisor" and self.netvisor is None:
            problems.append(
                (
                    ("netvisor",),
                    None,
                    f"must be set when {env_name(('accounting', 'system'))} is netvisor: at least "
                    f"{env_name(('netvisor', 'customer_id'))}, {env_name(('netvisor', 'partner_id'))}, "
                    f"{env_name(('netvisor', 'organisation_id'))} and the two keys (or key files)",
                )
            )
        if self.accounting.hold_seconds >= budget:
            problems.append(
                (
                    ("accounting", "hold_seconds"),
                    self.accounting.hold_seconds,
                    f"must be below {env_name(('rabbitmq', 'consumer_timeout_seconds'))} minus 60 s "
                    f"({budget:g})",
                )
            )
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    {"type": "value_error", "loc": loc, "input": value, "ctx": {"error": ValueError(why)}}
                    for loc, value, why in problems
                ],
            )
        return self


class DlqSettings(CommonSettings):
    """What the ``dlq`` commands need: the broker, the ledger URL (to place the store next to it)."""

    # Same variable as Settings.state_url (SEVERA_CONNECTOR_STATE_URL): the store's default follows it.
    state_url: str = Field(default=DEFAULT_STATE_URL, description="The connector's ledger URL.")
    dlq: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    accounting: AccountingSettings = Field(default_factory=AccountingSettings)
    netvisor: NetvisorClientConfig | None = Field(
        default=None,
        description="How to reach Netvisor (required when accounting.system is netvisor); keys from files.",
    )

    def dlq_store_url(self) -> str:
        """The store the commands open (the same rule as :meth:`Settings.dlq_store_url`)."""
        return self.dlq.resolved_store_url(self.state_url)

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


def _located(loc: tuple[int | str, ...]) -> str:
    """The variable a validation error belongs to; list positions become ``(item N)``, not ``__0``."""
    names = tuple(part for part in loc if isinstance(part, str))
    items = [str(part) for part in loc if isinstance(part, int)]
    return env_name(names) + (f" (item {', '.join(items)})" if items else "")


def one_line(text: str) -> str:
    """Collapse a message onto one line: start-up failures are printed as exactly one line."""
    return " ".join(text.split())


def format_validation_error(exc: ValidationError) -> str:
    parts: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        part = f"{_located(tuple(error['loc']))}: {one_line(message)}"
        if part not in parts:
            parts.append(part)
    return "invalid configuration: " + "; ".join(parts)


_SETTINGS_ERROR = re.compile(r'field "(?P<field>[^"]+)" from source "(?P<source>\w+)"')


def _json_example(value: Any) -> str:
    """``value`` as JSON, whole floats without ``.0``: the example reads like what people type."""

    def plain(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer():
            return int(item)
        if isinstance(item, list):
            return [plain(i) for i in item]
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        return item

    return json.dumps(plain(to_jsonable_python(value)), ensure_ascii=False)


def _field_at(model: type[BaseModel], path: tuple[str, ...]) -> FieldInfo | None:
    """The field an environment variable's nested path names (case-insensitively), if any."""
    field: FieldInfo | None = None
    for part in path:
        fields = {name.lower(): info for name, info in model.model_fields.items()}
        field = fields.get(part.lower())
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return field


def _example_for(field: FieldInfo | None, variable: str) -> str:
    if field is None:
        return "a JSON value"
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if info.default not in (None, PydanticUndefined):
                example = _json_example({name: info.default})
                one_by_one = f"{variable}{ENV_NESTED_DELIMITER}{name.upper()}=…"
                return f"{example}, or set its fields one by one ({one_by_one})"
        return "{…}"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, (list, tuple, set, frozenset)) and not default:
        return "[]"
    return _json_example(default)


def _not_json_variable(source: EnvSettingsSource, field_name: str, field: FieldInfo) -> str | None:
    """Which variable of ``field`` pydantic-settings failed to decode as JSON (its upper-case name).

    pydantic-settings only says "error parsing value for field 'retry'"; the person who has to fix
    it needs ``SEVERA_CONNECTOR_RETRY__LADDER_SECONDS``. Each candidate is decoded alone with the
    source's own logic, so "complex" means exactly what it means to the library.
    """
    key = ENV_PREFIX + field_name
    key = key if source.case_sensitive else key.lower()
    direct = source.env_vars.get(key)
    if direct is not None:
        try:
            json.loads(direct)
        except ValueError:
            return key.upper()
    for name, value in source.env_vars.items():
        if value is None or not name.startswith(key + ENV_NESTED_DELIMITER):
            continue
        try:
            source.explode_env_vars(field_name, field, {name: value})
        except ValueError:
            return name.upper()
    return None


def explain_settings_error(cls: type[BaseSettings], exc: SettingsError) -> str:
    """One line naming the variable pydantic-settings could not decode (never its value: it may be
    a secret) and what it must look like."""
    match = _SETTINGS_ERROR.search(str(exc))
    cause = exc.__cause__ or exc
    if match is None or match["field"] not in cls.model_fields:
        return one_line(f"cannot read the settings: {cause}")
    field_name = match["field"]
    from_dotenv = match["source"] == DotEnvSettingsSource.__name__
    source: EnvSettingsSource = DotEnvSettingsSource(cls) if from_dotenv else EnvSettingsSource(cls)
    where = " (in .env)" if from_dotenv else ""
    variable = _not_json_variable(source, field_name, cls.model_fields[field_name])
    if variable is None:
        return one_line(f"{env_name((field_name,))}{where} cannot be read: {cause}")
    path = tuple(variable[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER))
    example = _example_for(_field_at(cls, path), variable)
    return f"{variable}{where} must be JSON, e.g. {example}"


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def load_settings(cls: type[SettingsT] = Settings, **overrides: Any) -> SettingsT:  # type: ignore[assignment]
    """Build the settings from the environment (+ ``.env``), or raise :class:`ConfigError`.

    Whatever goes wrong while reading the environment becomes a one-line :class:`ConfigError`:
    pydantic's validation errors, pydantic-settings' own :class:`SettingsError` (a list or group
    that is not JSON), an unreadable ``.env``.
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(explain_settings_error(cls, exc)) from exc
    except ConfigError:
        raise
    except Exception as exc:  # an unreadable or undecodable .env, and whatever else the sources raise
        raise ConfigError(one_line(f"cannot read the settings: {type(exc).__name__}: {exc}")) from exc


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
