"""``--help`` of every command: flags are shown bare, never as taking a ``<bool>``.

typer labels options with their Python type; for a flag that label (``--json <bool>``) invites a
value the command refuses. The walk covers every command and group the app has, so a command added
later is checked without being listed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from connector.cli import app

ROOT = Path(__file__).resolve().parents[2]


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every command and group of the app as the words that name it (the root is ``()``)."""
    root = typer.main.get_command(app)

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*path, name))

    yield from walk(root, ())


PATHS = list(command_paths())


def test_the_walk_finds_the_commands_ops_use() -> None:
    for expected in [
        (),
        ("check",),
        ("config", "show"),
        ("dlq", "list"),
        ("dlq", "audit"),
        ("dlq", "replay"),
    ]:
        assert expected in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "(root)")
def test_help_shows_no_bool_metavar(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output  # the help option itself is a flag, and listed
    help_line = next(line for line in result.output.splitlines() if "--help" in line)
    assert "<" not in help_line, help_line


def test_flags_still_parse_and_options_keep_their_type() -> None:
    """Only the help text changed: a flag given a value is still refused, a typed option labelled."""
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", "--help"], env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert "<table|wide|json>" in listed.output
    assert "<int range>" in listed.output
    refused = runner.invoke(app, ["dlq", "list", "--json=yes"], env={"COLUMNS": "160"})
    assert refused.exit_code == 2
    assert "--json" in refused.output


@pytest.mark.slow  # three processes
def test_help_of_the_installed_command_at_80_columns() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    for args in ([], ["dlq", "list"], ["check"]):
        result = subprocess.run(
            [sys.executable, "-m", "connector", *args, "--help"],
            env={**env, "COLUMNS": "80", "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT / "tests",
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) <= 80
