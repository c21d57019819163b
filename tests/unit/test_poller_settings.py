"""The poller's settings that reach its state store: read from the environment, checked at startup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.config import Settings, load_settings
from connector.errors import ConfigError
from connector.state.poller_state import SqlPollerState, open_poller_state

VARIABLE = "SEVERA_CONNECTOR_POLLER__STATE_TABLE_PREFIX"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working copy
    for name in list(os.environ):
        if name.startswith("SEVERA_CONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k-123456")
    return monkeypatch


@pytest.mark.parametrize(
    ("value", "prefix"),
    [
        pytest.param(None, None, id="unset leaves the store its own default, the ledger's prefix"),
        pytest.param("tenant_a_", "tenant_a_", id="a lower-case identifier is the prefix"),
        pytest.param("", "", id="an empty prefix is the sqlite ledger's own"),
    ],
)
def test_the_poller_state_table_prefix_comes_from_its_variable(
    env: pytest.MonkeyPatch, value: str | None, prefix: str | None
) -> None:
    if value is not None:
        env.setenv(VARIABLE, value)
    assert load_settings(Settings).poller.state_table_prefix == prefix


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Tenant_A_", id="upper case is refused (postgres folds it)"),
        pytest.param("tenant-a", id="a dash is refused"),
        pytest.param("1tenant", id="a leading digit is refused"),
        pytest.param("t" * 41, id="more than 40 characters is refused"),
    ],
)
def test_a_prefix_the_state_store_would_refuse_is_refused_at_startup(
    env: pytest.MonkeyPatch, value: str
) -> None:
    env.setenv(VARIABLE, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings)
    assert VARIABLE in caught.value.message


def test_every_prefix_the_setting_accepts_opens_the_state_store_under_it(env: pytest.MonkeyPatch) -> None:
    """The setting checks what the store checks (``PREFIX_PATTERN``), so a pod never fails later."""
    for prefix in ("", "a", "_x", "tenant_a_", "t" * 40):
        env.setenv(VARIABLE, prefix)
        state = open_poller_state(
            "sqlite:///:memory:", table_prefix=load_settings(Settings).poller.state_table_prefix
        )
        assert isinstance(state, SqlPollerState)
        assert state.table_prefix == prefix
