"""Settings of the Severa adapter, as one pydantic model the connector nests under ``severa``.

The model is plain data: it reads no environment itself. The connector's pydantic-settings model
embeds it (``SEVERA_CONNECTOR_SEVERA__URL``, ``SEVERA_CONNECTOR_SEVERA__API_KEY`` …) and hands the
validated object to :class:`adapters.severa.client.SeveraClient` and :func:`adapters.severa.check.run_checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

#: Where the connector's settings read the key from; named in error messages so that the person
#: who sees a refused key knows which knob to turn. They follow the connector's settings prefix
#: (``SEVERA_CONNECTOR_``) and nesting (``SEVERA__``).
API_KEY_SETTING = "SEVERA_CONNECTOR_SEVERA__API_KEY"
API_KEY_FILE_SETTING = "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE"

PRODUCTION_URL = "https://sync.severa.com/webservice/S3/API.svc"
TEST_URL = "https://sync-test.severa.com/webservice/S3/API.svc"

#: Severa's own advice: allow responses up to 64 MiB (GetAllCases, invoices with rows …).
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Answers held at once by one client: two of the largest, a quarter of a 512 MiB pod, so that
#: parsing and everything else still fit beside them.
DEFAULT_MAX_BUFFERED_BYTES = 128 * 1024 * 1024

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class SeveraClientConfig(BaseModel):
    """How to reach Severa and how hard to push it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: HttpUrl = Field(
        default=HttpUrl(PRODUCTION_URL),
        description=(
            "The Severa SOAP endpoint (one address serves every contract). Production is "
            f"{PRODUCTION_URL}, the test environment {TEST_URL}."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "The Severa API key (Severa: Settings → Integrations → API). Mutually exclusive with "
            "api_key_file; prefer the file in Kubernetes so that a rotated key needs no restart."
        ),
    )
    api_key_file: Path | None = Field(
        default=None,
        description=(
            "A file holding the API key (e.g. a mounted Kubernetes Secret). Re-read when it changes, "
            "so a regenerated key is picked up without a restart."
        ),
    )
    timeout_seconds: PositiveSeconds = Field(
        default=30.0,
        description="Upper bound for one call, connect + send + wait + read, excluding local queueing.",
    )
    connect_timeout_seconds: PositiveSeconds = Field(
        default=5.0,
        description="Upper bound for opening a TCP/TLS connection (part of timeout_seconds).",
    )
    max_concurrency: int = Field(
        default=32,
        gt=0,
        le=1024,
        description=(
            "Calls in flight at once; more wait their turn locally. Keep it at least the consumer "
            "prefetch (32 by default): one call per message in flight, or the messages queue here and "
            "Severa's latency caps throughput at max_concurrency / latency."
        ),
    )
    rate_limit_per_second: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Client-side cap on calls per second (None: no cap). Severa's quota is 100,000 calls per "
            "organisation per UTC day, about 1.16 calls/s sustained."
        ),
    )
    pool_size: int | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="Keep-alive connections kept to Severa; defaults to max_concurrency, never fewer.",
    )
    business_unit_guid: str | None = Field(
        default=None,
        min_length=1,
        description="Restrict business-unit scoped calls (GetAllUsers, …) to one business unit; None = all.",
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        description="Largest response body accepted; larger answers are treated as Severa being unusable.",
    )
    max_buffered_bytes: int = Field(
        default=DEFAULT_MAX_BUFFERED_BYTES,
        ge=1024,
        description=(
            "Response bytes all concurrent calls of one client may hold at once (at least "
            "max_response_bytes); a call whose answer does not fit waits for others to finish. Keep it "
            "well below the pod's memory limit: parsing an answer takes a few times its size again."
        ),
    )
    use_env_proxy: bool = Field(
        default=False,
        description="Send through the proxy named by HTTP(S)_PROXY / NO_PROXY in the environment.",
    )
    api_key_recheck_seconds: PositiveSeconds = Field(
        default=5.0,
        description=(
            "How often the key file's content is compared even when its size and mtime look unchanged "
            "(a rewrite within the file system's timestamp granularity)."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.api_key is None) == (self.api_key_file is None):
            raise ValueError(
                f"set exactly one of api_key ({API_KEY_SETTING}) or api_key_file ({API_KEY_FILE_SETTING})"
            )
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError(f"api_key ({API_KEY_SETTING}) is empty")
        if self.connect_timeout_seconds > self.timeout_seconds:
            raise ValueError("connect_timeout_seconds must not exceed timeout_seconds")
        if self.pool_size is not None and self.pool_size < self.max_concurrency:
            # Fewer connections than concurrent calls would make calls queue for a connection
            # inside their own timeout, turning local congestion into fake Severa timeouts.
            raise ValueError("pool_size must be at least max_concurrency")
        if self.max_buffered_bytes < self.max_response_bytes:
            # One answer of the largest allowed size must fit, or such a call would wait for ever.
            raise ValueError("max_buffered_bytes must be at least max_response_bytes")
        return self

    @property
    def endpoint(self) -> str:
        """The URL as the string the HTTP client posts to."""
        return str(self.url)

    @property
    def connection_pool_size(self) -> int:
        return self.pool_size if self.pool_size is not None else self.max_concurrency
