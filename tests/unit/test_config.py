"""Configuration from the environment; bad settings are named by their environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.config import CommonSettings, Settings, load_settings
from connector.errors import ConfigError


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working copy
    for name in list(os.environ):
        if name.startswith("SEVERA_CONNECTOR_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_come_from_prefixed_nested_environment_variables(env: pytest.MonkeyPatch) -> None:
    env.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
    env.setenv("SEVERA_CONNECTOR_SEVERA__URL", "http://127.0.0.1:8089/webservice/S3/API.svc")
    env.setenv("SEVERA_CONNECTOR_RABBITMQ__PREFETCH", "7")
    settings = load_settings(Settings)
    assert settings.rabbitmq.prefetch == 7
    assert settings.severa.api_key is not None
    assert settings.severa.api_key.get_secret_value() == "k-123456"


def test_a_dotenv_file_is_read(env: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(
        "SEVERA_CONNECTOR_SEVERA__API_KEY=from-dotenv\nSEVERA_CONNECTOR_LOG__LEVEL=debug\n"
    )
    settings = load_settings(Settings)
    assert settings.log.level == "DEBUG"


def test_a_missing_api_key_names_both_ways_to_set_it(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings)
    assert "SEVERA_CONNECTOR_SEVERA__API_KEY" in caught.value.message
    assert "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE" in caught.value.message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("SEVERA_CONNECTOR_RABBITMQ__PREFETCH", "many", id="prefetch must be a number"),
        pytest.param("SEVERA_CONNECTOR_RABBITMQ__PREFETCH", "0", id="prefetch must be positive"),
        pytest.param("SEVERA_CONNECTOR_RABBITMQ__URL", "http://broker", id="broker url must be amqp"),
        pytest.param("SEVERA_CONNECTOR_LOG__FORMAT", "xml", id="log format is json, console or auto"),
    ],
)
def test_invalid_values_are_named_by_their_variable(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    assert variable in caught.value.message


def test_the_broker_password_is_never_shown(env: pytest.MonkeyPatch) -> None:
    env.setenv("SEVERA_CONNECTOR_RABBITMQ__URL", "amqp://svc:s3cr3t-pw@broker:5672/")
    settings = load_settings(CommonSettings)
    assert "s3cr3t-pw" not in settings.rabbitmq.safe_url()
    assert "s3cr3t-pw" not in repr(settings)
