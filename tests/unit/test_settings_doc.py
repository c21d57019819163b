"""docs/settings.md is generated from the settings models; it must say what the code reads now."""

from __future__ import annotations

from pathlib import Path

from connector.settings_doc import REGENERATE, collect_sections, render_settings_reference

ROOT = Path(__file__).resolve().parents[2]


def test_docs_settings_md_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == render_settings_reference(), (
        f"docs/settings.md is out of date with connector/config.py: regenerate it with `{REGENERATE}`"
    )


def test_every_setting_says_what_it_is_for() -> None:
    missing = [row.variable for section in collect_sections() for row in section.rows if not row.description]
    assert not missing, f"give these settings a Field(description=...): {missing}"


def test_every_variable_appears_once() -> None:
    variables = [row.variable for section in collect_sections() for row in section.rows]
    assert len(variables) == len(set(variables))
    assert "SEVERA_CONNECTOR_RETRY__LADDER_SECONDS" in variables
    assert "SEVERA_CONNECTOR_RABBITMQ__CONNECT_TIMEOUT_SECONDS" in variables


def test_secrets_are_marked_and_their_defaults_masked() -> None:
    rows = {row.variable: row for section in collect_sections() for row in section.rows}
    broker = rows["SEVERA_CONNECTOR_RABBITMQ__URL"]
    assert "secret" in broker.type
    assert broker.default == "`amqp://guest:***@127.0.0.1:5672/`"
    assert "secret" in rows["SEVERA_CONNECTOR_SEVERA__API_KEY"].type


def test_the_reference_does_not_depend_on_the_machine_it_is_generated_on() -> None:
    rows = {row.variable: row for section in collect_sections() for row in section.rows}
    assert rows["SEVERA_CONNECTOR_POD_NAME"].default == "the host name"
