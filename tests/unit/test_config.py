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


def test_every_problem_is_reported_on_one_line(env: pytest.MonkeyPatch) -> None:
    env.setenv("SEVERA_CONNECTOR_RABBITMQ__PREFETCH", "many")
    env.setenv("SEVERA_CONNECTOR_LOG__FORMAT", "xml")
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    assert "\n" not in caught.value.message
    assert "SEVERA_CONNECTOR_RABBITMQ__PREFETCH" in caught.value.message
    assert "SEVERA_CONNECTOR_LOG__FORMAT" in caught.value.message


class TestValuesThatMustBeJson:
    """pydantic-settings decodes lists and whole groups as JSON and raises its own SettingsError."""

    def test_a_comma_separated_list_is_named_with_an_example(self, env: pytest.MonkeyPatch) -> None:
        env.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
        env.setenv("SEVERA_CONNECTOR_RETRY__LADDER_SECONDS", "10,60")
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        assert (
            caught.value.message == "SEVERA_CONNECTOR_RETRY__LADDER_SECONDS must be JSON, e.g. [10, 60, 600]"
        )

    def test_a_whole_group_that_is_not_json_is_named_without_its_value(self, env: pytest.MonkeyPatch) -> None:
        env.setenv("SEVERA_CONNECTOR_SEVERA", '{"api_key": "s3cr3t-key')
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        message = caught.value.message
        assert message.startswith("SEVERA_CONNECTOR_SEVERA must be JSON, e.g. {")
        assert "SEVERA_CONNECTOR_SEVERA__URL=" in message  # the other way to set it
        assert "s3cr3t-key" not in message

    def test_a_bad_value_in_dotenv_says_it_comes_from_dotenv(self, env: pytest.MonkeyPatch) -> None:
        Path(".env").write_text("SEVERA_CONNECTOR_SEVERA__API_KEY=k-123456\nSEVERA_CONNECTOR_HTTP=[1\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        assert caught.value.message.startswith("SEVERA_CONNECTOR_HTTP (in .env) must be JSON")

    def test_a_dotenv_that_is_not_utf8_is_a_configuration_error(self, env: pytest.MonkeyPatch) -> None:
        Path(".env").write_bytes(b"SEVERA_CONNECTOR_POD_NAME=\xff\xfe\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(CommonSettings)
        assert caught.value.message.startswith("cannot read the settings: UnicodeDecodeError")


class TestLedgerUrl:
    def test_exactly_the_forms_the_ledger_takes_are_accepted(self, env: pytest.MonkeyPatch) -> None:
        """The validator asks open_ledger itself, so the two lists cannot drift apart."""
        env.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
        for url in (
            "sqlite:///ledger.db",
            "sqlite:///:memory:",
            "postgresql://svc:pw@db/c",
            "postgres://db/c",
            "memory://",
        ):
            env.setenv("SEVERA_CONNECTOR_STATE_URL", url)
            assert load_settings(Settings).state_url == url
        env.setenv("SEVERA_CONNECTOR_STATE_URL", "memory://x")
        with pytest.raises(ConfigError, match="SEVERA_CONNECTOR_STATE_URL: the memory ledger URL is exactly"):
            load_settings(Settings)

    @pytest.mark.parametrize(
        ("url", "says"),
        [
            pytest.param(
                "mysql://svc:pw-9f2@db/connector", "unsupported ledger URL scheme 'mysql'", id="mysql"
            ),
            pytest.param("connector.db", "unsupported ledger URL scheme none", id="a bare file name"),
            pytest.param("sqlite://db/ledger.db", "has no host", id="sqlite with a host"),
            pytest.param(
                "sqlite:///no-such-dir/ledger.db", "does not exist", id="sqlite in a missing directory"
            ),
        ],
    )
    def test_a_url_no_ledger_takes_is_refused_at_load_time(
        self, env: pytest.MonkeyPatch, url: str, says: str
    ) -> None:
        env.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
        env.setenv("SEVERA_CONNECTOR_STATE_URL", url)
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        assert "SEVERA_CONNECTOR_STATE_URL: " in caught.value.message
        assert says in caught.value.message
        assert "pw-9f2" not in caught.value.message


class TestMappingFile:
    def test_a_missing_file_is_refused_at_load_time(self, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        env.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
        env.setenv("SEVERA_CONNECTOR_MAPPING_FILE", str(tmp_path / "mapping.yaml"))
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        assert "SEVERA_CONNECTOR_MAPPING_FILE: cannot read mapping table" in caught.value.message

    def test_a_file_that_does_not_parse_is_refused_on_one_line_until_fixed(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        mapping = tmp_path / "mapping.yaml"
        mapping.write_text("users: {ext-jdoe: JDOE\ncases: [\n")
        env.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
        env.setenv("SEVERA_CONNECTOR_MAPPING_FILE", str(mapping))
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        assert "SEVERA_CONNECTOR_MAPPING_FILE: invalid mapping table" in caught.value.message
        assert "\n" not in caught.value.message
        mapping.write_text("users: {ext-jdoe: JDOE}\n")
        assert load_settings(Settings).mapping_file == mapping


def test_the_broker_connect_budget_defaults_to_two_minutes_and_is_settable(env: pytest.MonkeyPatch) -> None:
    assert load_settings(CommonSettings).rabbitmq.connect_timeout_seconds == 120
    env.setenv("SEVERA_CONNECTOR_RABBITMQ__CONNECT_TIMEOUT_SECONDS", "5")
    assert load_settings(CommonSettings).rabbitmq.connect_timeout_seconds == 5


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param(
            {"work_hours": {"hold_seconds": 1740}},
            "SEVERA_CONNECTOR_WORK_HOURS__HOLD_SECONDS",
            id="a hold the broker's consumer timeout would cut short is refused",
        ),
        pytest.param(
            {"rabbitmq": {"consumer_timeout_seconds": 600}, "work_hours": {"hold_seconds": 600}},
            "SEVERA_CONNECTOR_WORK_HOURS__HOLD_SECONDS",
            id="a lowered consumer timeout lowers the longest hold",
        ),
        pytest.param(
            {"retry": {"initial_seconds": 10, "max_seconds": 5}},
            "SEVERA_CONNECTOR_RETRY__INITIAL_SECONDS",
            id="a first retry wait longer than the longest one is refused",
        ),
        pytest.param(
            {"circuit": {"probe_initial_seconds": 90}},
            "SEVERA_CONNECTOR_CIRCUIT__PROBE_INITIAL_SECONDS",
            id="a first probe wait longer than the longest one is refused",
        ),
    ],
)
def test_bounds_that_depend_on_each_other_are_checked_together(
    overrides: dict[str, object], named: str
) -> None:
    from connector.config import Settings, load_settings
    from connector.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(
            Settings, severa={"url": "https://example.invalid/API.svc", "api_key": "k"}, **overrides
        )
    assert named in caught.value.message
    assert "\n" not in caught.value.message
