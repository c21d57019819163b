"""``config show``'s redaction and sources, from a table of values and environments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connector.config import DlqSettings
from connector.config_show import REDACTED, as_document, effective_settings, redact, redact_url, secret_name


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("amqp://guest:pw1@rabbit:5672/", "amqp://guest:***@rabbit:5672/", id="a password"),
        pytest.param("https://tok3n@host/x", "https://***@host/x", id="a user name alone, often a token"),
        pytest.param(
            "postgresql://db/x?user=ops&password=pw2&sslmode=require",
            "postgresql://db/x?user=ops&password=***&sslmode=require",
            id="a password as a query parameter",
        ),
        pytest.param(
            "https://h/x?api_key=k&access_token=t", "https://h/x?api_key=***&access_token=***", id="keys"
        ),
        pytest.param(
            "https://sync.severa.com/API.svc", "https://sync.severa.com/API.svc", id="nothing secret"
        ),
        pytest.param(
            "amqp://u:pw3@rabbit-0/prod,rabbit-1,rabbit-2",
            "amqp://u:***@rabbit-0/prod,rabbit-1,rabbit-2",
            id="a cluster list",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        pytest.param("api_key", SecretStr("k-1"), REDACTED, id="a secret string"),
        pytest.param("url", SecretStr("amqp://u:pw@h/"), "amqp://u:***@h/", id="a secret URL shows its host"),
        pytest.param(
            "url",
            SecretStr("amqp://u:pw1@r0/v,amqp://w:pw2@r1/v,r2:5673"),
            "amqp://u:***@r0/v,amqp://w:***@r1/v,amqp://u:***@r2:5673/v",
            id="every password of a broker list",
        ),
        pytest.param(
            "url", SecretStr("amqp://u:pw@h/,ftp://x"), REDACTED, id="a broker list that does not parse"
        ),
        pytest.param(
            "customer_key_file", Path("/run/secrets/k"), "/run/secrets/k", id="a key file by its path"
        ),
        pytest.param("api_key_recheck_seconds", 5.0, 5.0, id="a number named like a key"),
        pytest.param("token", "t-1", REDACTED, id="a plain string named token"),
        pytest.param(
            "resource_attributes",
            {"Authorization": "Bearer x", "X-Scope": "ops"},
            {"Authorization": REDACTED, "X-Scope": "ops"},
            id="a mapping with a secret-looking key",
        ),
        pytest.param("otlp_headers", "Authorization=Bearer x", REDACTED, id="headers as a string"),
        pytest.param(
            "state_url", "postgresql://u:pw@db/x", "postgresql://u:***@db/x", id="a URL in a string"
        ),
        pytest.param("ladder_seconds", [10.0, 60.0], [10.0, 60.0], id="a list"),
        pytest.param("mapping_file", None, None, id="unset"),
    ],
)
def test_redact(name: str, value: Any, shown: Any) -> None:
    assert redact(name, value) == shown


def test_secret_names() -> None:
    assert secret_name("partner_key")
    assert secret_name("PASSWORD")
    assert not secret_name("partner_key_file")
    assert not secret_name("partner_id")
    assert not secret_name("monkey")


def test_sources_follow_the_environment_and_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [n for n in __import__("os").environ if n.startswith("SEVERA_CONNECTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SEVERA_CONNECTOR_RABBITMQ__URL", "amqp://ops:pw-9@broker/")
    monkeypatch.setenv("SEVERA_CONNECTOR_DLQ", '{"replay_batch": 7}')
    document = as_document(effective_settings(DlqSettings()))
    assert document["settings"]["rabbitmq"]["url"] == "amqp://ops:***@broker/"
    assert document["sources"]["rabbitmq.url"] == "env"
    assert document["settings"]["dlq"]["replay_batch"] == 7
    assert document["sources"]["dlq.replay_batch"] == "env (SEVERA_CONNECTOR_DLQ)"
    assert document["sources"]["dlq.ingest"] == "default"
    assert "pw-9" not in repr(document)
