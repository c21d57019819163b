"""The command line as a newcomer and an integrator use it: real processes, real exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.severa.fake.server import FakeSevera
from schemas.export import export_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "connector"]
KEY = "e2e-key-8f1d0c"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    return subprocess.run(
        [*CLI, *args],
        env={**clean, **(env or {}), "NO_COLOR": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT / "tests",  # no .env of the working copy
        check=False,
    )


@pytest.fixture(scope="module")
def fake_severa_url() -> Iterator[str]:
    """A fake Severa in a thread of its own, for commands run as separate processes."""
    ready = threading.Event()
    stop: asyncio.Event | None = None
    url: list[str] = []
    loop = asyncio.new_event_loop()

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with FakeSevera(api_key=KEY) as fake:
            url.append(fake.url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "fake Severa did not start"
    yield url[0]
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def test_check_with_a_good_key_is_all_green(fake_severa_url: str) -> None:
    result = run_cli(
        "check",
        env={"SEVERA_CONNECTOR_SEVERA__URL": fake_severa_url, "SEVERA_CONNECTOR_SEVERA__API_KEY": KEY},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✗" not in result.stdout
    assert "all 8 checks passed" in result.stdout


def test_check_with_a_wrong_key_names_the_key_as_the_problem(fake_severa_url: str) -> None:
    result = run_cli(
        "check",
        env={
            "SEVERA_CONNECTOR_SEVERA__URL": fake_severa_url,
            "SEVERA_CONNECTOR_SEVERA__API_KEY": "not-the-key",
        },
    )
    assert result.returncode == 1
    key_row = next(line for line in result.stdout.splitlines() if "API key accepted" in line)
    assert "✗" in key_row
    assert "SEVERA_CONNECTOR_SEVERA__API_KEY" in result.stdout
    assert "not-the-key" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param({}, "SEVERA_CONNECTOR_SEVERA__API_KEY", id="no API key"),
        pytest.param(
            {"SEVERA_CONNECTOR_SEVERA__API_KEY": "k-123456", "SEVERA_CONNECTOR_RABBITMQ__PREFETCH": "lots"},
            "SEVERA_CONNECTOR_RABBITMQ__PREFETCH",
            id="prefetch not a number",
        ),
        pytest.param(
            {"SEVERA_CONNECTOR_SEVERA__API_KEY": "k-123456", "SEVERA_CONNECTOR_SEVERA__URL": "ftp://x"},
            "SEVERA_CONNECTOR_SEVERA__URL",
            id="severa url not http",
        ),
    ],
)
def test_bad_configuration_stops_run_with_exit_2_and_one_clear_message(
    env: dict[str, str], names: str
) -> None:
    result = run_cli("run", env=env, timeout=30)
    assert result.returncode == 2
    assert names in result.stderr
    assert "Traceback" not in result.stderr
    assert "k-123456" not in result.stderr


def test_demo_shows_good_events_in_severa_and_bad_ones_in_the_dlq(amqp_url: str) -> None:
    result = run_cli("demo", "--events", "4", env={"SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK 12 events → 4 new hour entries in Severa, 6 dead-lettered" in result.stdout
    for reason in ("invalid_json", "schema_violation", "unknown_user", "unknown_case", "unknown_work_type"):
        assert reason in result.stdout


def test_exported_schemas_are_up_to_date(tmp_path: Path) -> None:
    for path in export_all(tmp_path):
        committed = ROOT / "schemas" / "generated" / path.name
        assert committed.exists(), f"{committed} missing: run `severa-connector schemas export`"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed.name} is stale: run `severa-connector schemas export`"
        )


def test_version() -> None:
    result = run_cli("--version", timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("severa-connector ")
