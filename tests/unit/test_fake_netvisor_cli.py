"""``severa-connector fake-netvisor`` and ``python -m adapters.netvisor.fake``: options and defaults."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from adapters.netvisor.fake import auth
from adapters.netvisor.fake.__main__ import main as module_main
from connector.cli import app

DEFAULTS = {
    "customer_id": auth.DEFAULT_CUSTOMER_ID,
    "customer_key": auth.DEFAULT_CUSTOMER_KEY,
    "partner_id": auth.DEFAULT_PARTNER_ID,
    "partner_key": auth.DEFAULT_PARTNER_KEY,
    "organisation_id": auth.DEFAULT_ORGANISATION_ID,
}


def command() -> Any:
    """The click command typer builds for ``fake-netvisor``."""
    return typer.main.get_command(app).commands["fake-netvisor"]  # type: ignore[attr-defined]


def test_the_command_defaults_are_the_fakes_defaults() -> None:
    options = {param.name: param for param in command().params}

    for name, default in DEFAULTS.items():
        assert options[name].default == default, name
        assert getattr(options[name], "envvar", None) == f"FAKE_NETVISOR_{name.upper()}"
    assert options["port"].default == 8090


def test_the_help_names_every_option_and_its_variable() -> None:
    result = CliRunner().invoke(app, ["fake-netvisor", "--help"], terminal_width=200)

    assert result.exit_code == 0
    for name in DEFAULTS:
        assert f"--{name.replace('_', '-')}" in result.output
        assert f"FAKE_NETVISOR_{name.upper()}" in result.output


def test_the_module_entry_point_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    async def fake_serve(host: str, port: int, **options: object) -> None:
        seen.update(options, host=host, port=port)

    monkeypatch.setenv("FAKE_NETVISOR_PARTNER_KEY", "from-env")
    monkeypatch.setattr("adapters.netvisor.fake.__main__.serve", fake_serve)

    assert module_main(["--port", "9999", "--customer-id", "cli-customer"]) == 0
    assert seen["port"] == 9999
    assert seen["customer_id"] == "cli-customer"
    assert seen["partner_key"] == "from-env"
    assert seen["organisation_id"] == auth.DEFAULT_ORGANISATION_ID
