"""Where the dead-letter store is: one rule for the connector (which creates it) and the ``dlq``
commands (which must find that same store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import DlqSettings, Settings


def connector_settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(severa={"api_key": "k-123"}, _env_file=None, **kw)  # type: ignore[call-arg,arg-type]


@pytest.mark.parametrize(
    ("state_url", "store_url"),
    [
        pytest.param(
            "postgresql://u@db:5432/connector",
            "postgresql://u@db:5432/connector",
            id="a postgresql ledger means the same database",
        ),
        pytest.param(
            "sqlite:///{tmp}/state/ledger.db",
            "sqlite:///{tmp}/state/severa-connector-dlq.db",
            id="a sqlite ledger file gets a sibling file",
        ),
        pytest.param("sqlite:///:memory:", "sqlite:///:memory:", id="an in-memory ledger an in-memory store"),
    ],
)
def test_the_connector_and_the_commands_resolve_the_same_store_beside_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_url: str, store_url: str
) -> None:
    (tmp_path / "state").mkdir()
    monkeypatch.delenv("SEVERA_CONNECTOR_DLQ__STORE_URL", raising=False)
    state_url, store_url = (u.replace("{tmp}", str(tmp_path)) for u in (state_url, store_url))
    pod = connector_settings(tmp_path, state_url=state_url)
    ops = DlqSettings(state_url=state_url, _env_file=None)  # type: ignore[call-arg]
    assert pod.dlq_store_url() == ops.dlq_store_url() == store_url


def test_a_store_url_set_once_is_used_by_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEVERA_CONNECTOR_DLQ__STORE_URL", "postgresql://ops@dlq-db/dead_letters")
    monkeypatch.setenv("SEVERA_CONNECTOR_STATE_URL", "sqlite:///:memory:")
    pod = connector_settings(tmp_path)
    ops = DlqSettings(_env_file=None)  # type: ignore[call-arg]
    assert pod.dlq_store_url() == ops.dlq_store_url() == "postgresql://ops@dlq-db/dead_letters"
    assert pod.dlq.ingest_prefetch == ops.dlq.ingest_prefetch == 50
