"""Settings of the Netvisor adapter, as one pydantic model the connector nests under ``netvisor``.

The model is plain data: it reads no environment itself. The connector's pydantic-settings model
embeds it (``SEVERA_CONNECTOR_NETVISOR__CUSTOMER_ID``, ``SEVERA_CONNECTOR_NETVISOR__CUSTOMER_KEY_FILE`` …)
and hands the validated object to :class:`adapters.netvisor.client.NetvisorClient` and
:func:`adapters.netvisor.check.run_checks`.

Timeouts follow the vendor's advice: Netvisor serves one request per company at a time and can be
slow under load, so one request may take up to two minutes before it is worth calling it lost
(``timeout_seconds`` 120); connecting is quick or broken, so ``connect_timeout_seconds`` is short.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

#: The settings the keys are read from, named in error messages so that the person who sees a
#: refused key knows which knob to turn (the connector's prefix and nesting, as for Severa).
SETTINGS_PREFIX = "SEVERA_CONNECTOR_NETVISOR__"
CUSTOMER_KEY_SETTING = f"{SETTINGS_PREFIX}CUSTOMER_KEY"
CUSTOMER_KEY_FILE_SETTING = f"{SETTINGS_PREFIX}CUSTOMER_KEY_FILE"
PARTNER_KEY_SETTING = f"{SETTINGS_PREFIX}PARTNER_KEY"
PARTNER_KEY_FILE_SETTING = f"{SETTINGS_PREFIX}PARTNER_KEY_FILE"
BASE_URL_SETTING = f"{SETTINGS_PREFIX}BASE_URL"

PRODUCTION_URL = "https://integration.netvisor.fi/"
#: The partner/test environment (an empty training company).
TEST_URL = "https://isvapi.netvisor.fi/"

#: Netvisor's answers are small (a list page is at most a few hundred records); 32 MiB leaves room
#: for an unpaged customer list of a large company while bounding what one answer may cost.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

#: A Finnish business id (Y-tunnus): seven digits, a hyphen, a check digit. The check digit itself
#: is not verified here: the value is Netvisor's identifier of the company, and Netvisor is the
#: judge of whether it names one (a wrong one is refused as AUTHENTICATION_FAILED).
BUSINESS_ID = re.compile(r"^\d{7}-\d$")

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class NetvisorClientConfig(BaseModel):
    """How to reach one Netvisor company, who we are to it, and how patiently to talk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: HttpUrl = Field(
        default=HttpUrl(PRODUCTION_URL),
        description=(
            f"Where the resources live (<base_url><resource>.nv). Production is {PRODUCTION_URL}, the "
            f"partner test environment {TEST_URL}."
        ),
    )
    sender: str = Field(
        default="severa-connector",
        min_length=1,
        max_length=100,
        description="The integration's name, shown in Netvisor (X-Netvisor-Authentication-Sender).",
    )
    customer_id: str = Field(
        min_length=1, description="The company's API user id (X-Netvisor-Authentication-CustomerId)."
    )
    partner_id: str = Field(
        min_length=1, description="The integration partner's id (X-Netvisor-Authentication-PartnerId)."
    )
    organisation_id: str = Field(
        description="The target company's business id, e.g. 1234567-8 (X-Netvisor-Organisation-ID)."
    )
    language: Literal["FI", "EN", "SE"] = Field(
        default="EN",
        description="Language of Netvisor's error texts, which the connector quotes in its own errors.",
    )
    customer_key: SecretStr | None = Field(
        default=None,
        description="The customer key (secret). Mutually exclusive with customer_key_file.",
    )
    customer_key_file: Path | None = Field(
        default=None,
        description="A file holding the customer key (a mounted Secret); re-read when it changes.",
    )
    partner_key: SecretStr | None = Field(
        default=None,
        description="The partner key (secret). Mutually exclusive with partner_key_file.",
    )
    partner_key_file: Path | None = Field(
        default=None,
        description="A file holding the partner key (a mounted Secret); re-read when it changes.",
    )
    key_recheck_seconds: PositiveSeconds = Field(
        default=5.0,
        description=(
            "How often a key file's content is compared even when its size and mtime look unchanged "
            "(a rewrite within the file system's timestamp granularity)."
        ),
    )
    timeout_seconds: PositiveSeconds = Field(
        default=120.0,
        description=(
            "Upper bound for one request, connect + send + wait + read, excluding the wait for the "
            "company's turn. The vendor advises at least 120 s."
        ),
    )
    connect_timeout_seconds: PositiveSeconds = Field(
        default=10.0,
        description="Upper bound for opening a TCP/TLS connection (part of timeout_seconds).",
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description=(
            "In-process retries of a request that surely did not take effect (maintenance, technical "
            "error on a read, 5xx, connection refused, REQUEST_NOT_UNIQUE) before the error is raised. "
            "A write whose outcome is unknown is never retried here."
        ),
    )
    retry_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="First wait between in-process retries; doubles each time, with jitter.",
    )
    retry_backoff_max_seconds: float = Field(
        default=30.0, ge=0, le=600, description="Longest wait between two in-process retries."
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        description="Largest answer accepted; a larger one is refused as unusable (and the read stopped).",
    )
    list_page_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description=(
            "Records per page of salesinvoicelist.nv / salespaymentlist.nv as Netvisor pages them "
            "(500 is reported by one client, unverified): a page this full makes the client ask for the "
            "next one above the last NetvisorKey."
        ),
    )
    default_product_code: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "The Netvisor product code (type customer) for invoice lines that carry none. Netvisor "
            "needs a product on every line; the product must exist in its product register."
        ),
    )
    use_env_proxy: bool = Field(
        default=False,
        description="Send through the proxy named by HTTP(S)_PROXY / NO_PROXY in the environment.",
    )

    @field_validator("organisation_id")
    @classmethod
    def _business_id(cls, value: str) -> str:
        value = value.strip()
        if not BUSINESS_ID.match(value):
            raise ValueError(
                f"organisation_id must look like 1234567-8 (a Finnish business id), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name, direct, file, direct_setting, file_setting in (
            (
                "customer_key",
                self.customer_key,
                self.customer_key_file,
                CUSTOMER_KEY_SETTING,
                CUSTOMER_KEY_FILE_SETTING,
            ),
            (
                "partner_key",
                self.partner_key,
                self.partner_key_file,
                PARTNER_KEY_SETTING,
                PARTNER_KEY_FILE_SETTING,
            ),
        ):
            if (direct is None) == (file is None):
                raise ValueError(
                    f"set exactly one of {name} ({direct_setting}) or {name}_file ({file_setting})"
                )
            if direct is not None and not direct.get_secret_value().strip():
                raise ValueError(f"{name} ({direct_setting}) is empty")
        if self.connect_timeout_seconds > self.timeout_seconds:
            raise ValueError("connect_timeout_seconds must not exceed timeout_seconds")
        if self.retry_backoff_max_seconds < self.retry_backoff_seconds:
            raise ValueError("retry_backoff_max_seconds must be at least retry_backoff_seconds")
        return self

    @property
    def root(self) -> str:
        """The base URL without its trailing slash: ``f"{root}/{resource}.nv"`` is a resource."""
        return str(self.base_url).rstrip("/")
