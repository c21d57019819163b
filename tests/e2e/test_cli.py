"""The command line as a newcomer and an integrator use it: real processes, real exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed start prints, besides the JSON log records it may have written before.

    Start-up failures must be one line a person can act on, never a traceback; the log lines are
    for the log collector and are recognised by being JSON objects.
    """
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not _is_log_record(line)]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _is_log_record(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _log_events(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stderr.splitlines() if _is_log_record(line)]


#: For start-ups that must fail before the broker is touched: a broker that would not answer, so a
#: test that reached it would see another error (and nothing is declared on the shared broker).
NO_BROKER = {
    "SEVERA_CONNECTOR_RABBITMQ__URL": "amqp://guest:guest@127.0.0.1:1/",
    "SEVERA_CONNECTOR_RABBITMQ__CONNECT_TIMEOUT_SECONDS": "1",
}
#: Nothing on disk and an ephemeral health port, so that runs do not collide with each other.
QUIET = {
    "SEVERA_CONNECTOR_SEVERA__API_KEY": "k-123456",
    "SEVERA_CONNECTOR_STATE_URL": "memory://",
    "SEVERA_CONNECTOR_HTTP__HOST": "127.0.0.1",
    "SEVERA_CONNECTOR_HTTP__PORT": "0",
}


def _broker_url(amqp_url: str, *, password: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(amqp_url)
    netloc = f"{parts.username}:{password or parts.password}@{parts.hostname}:{port or parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


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
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"SEVERA_CONNECTOR_RETRY__LADDER_SECONDS": "10,60"},
            "configuration error: SEVERA_CONNECTOR_RETRY__LADDER_SECONDS must be JSON, e.g. [10, 60, 600]",
            id="a retry ladder that is not a JSON list",
        ),
        pytest.param(
            {"SEVERA_CONNECTOR_SEVERA": "{bad"},
            "configuration error: SEVERA_CONNECTOR_SEVERA must be JSON, e.g. {",
            id="a Severa group that is not JSON",
        ),
        pytest.param(
            {"SEVERA_CONNECTOR_STATE_URL": "mysql://x"},
            "configuration error: invalid configuration: SEVERA_CONNECTOR_STATE_URL: unsupported ledger URL",
            id="a ledger URL no backend takes",
        ),
        pytest.param(
            {"SEVERA_CONNECTOR_MAPPING_FILE": "/nonexistent/mapping.yaml"},
            "configuration error: invalid configuration: SEVERA_CONNECTOR_MAPPING_FILE: cannot read mapping",
            id="a mapping file that does not exist",
        ),
    ],
)
def test_settings_are_refused_before_the_broker_is_touched(env: dict[str, str], line: str) -> None:
    result = run_cli("run", env={**QUIET, **NO_BROKER, **env}, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # not even a log line: nothing was started
    assert lines[0].startswith(line)


def test_a_wrong_broker_password_is_exit_2_naming_the_setting_at_once(amqp_url: str) -> None:
    url = _broker_url(amqp_url, password="wrong-pw-77c1")
    env = {**QUIET, "SEVERA_CONNECTOR_RABBITMQ__URL": url}
    result = run_cli("run", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert "refused the login of user 'guest'" in line
    assert "SEVERA_CONNECTOR_RABBITMQ__URL" in line
    assert "wrong-pw-77c1" not in result.stderr
    assert not [e for e in _log_events(result) if e["event"] == "broker_unreachable_retrying"]


def test_a_health_port_in_use_is_exit_2_naming_the_setting_before_the_broker_is_touched(
    amqp_url: str,
) -> None:
    """The broker refuses the login here, so a start that touched it first would report that instead."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **QUIET,
            "SEVERA_CONNECTOR_HTTP__PORT": str(port),
            "SEVERA_CONNECTOR_RABBITMQ__URL": _broker_url(amqp_url, password="wrong-pw-77c1"),
        }
        result = run_cli("run", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert f"127.0.0.1:{port}" in line
    assert "SEVERA_CONNECTOR_HTTP__PORT" in line
    assert "already in use" in line


def test_a_broker_that_does_not_answer_is_retried_with_progress_then_exit_3() -> None:
    env = {**QUIET, **NO_BROKER, "SEVERA_CONNECTOR_RABBITMQ__CONNECT_TIMEOUT_SECONDS": "1.5"}
    result = run_cli("run", env=env, timeout=60)
    assert result.returncode == 3, result.stderr
    line = error_line(result)
    assert "RabbitMQ at 127.0.0.1:1 did not answer within 1.5s" in line
    assert "SEVERA_CONNECTOR_RABBITMQ__URL" in line
    retries = [e for e in _log_events(result) if e["event"] == "broker_unreachable_retrying"]
    assert retries, result.stderr
    assert {"attempt", "next_delay_seconds", "seconds_left"} <= set(retries[0])


def test_a_ledger_database_that_does_not_answer_is_retried_then_exit_3_before_the_broker() -> None:
    env = {
        **QUIET,
        **NO_BROKER,
        "SEVERA_CONNECTOR_STATE_URL": "postgresql://postgres:s3cret-db-pass@127.0.0.1:1/test",
        "SEVERA_CONNECTOR_RABBITMQ__CONNECT_TIMEOUT_SECONDS": "1.5",
    }
    result = run_cli("run", env=env, timeout=60)
    assert result.returncode == 3, result.stderr
    line = error_line(result)
    assert "SEVERA_CONNECTOR_STATE_URL" in line
    assert "RabbitMQ" not in line  # the ledger is opened before the broker is touched
    assert "s3cret-db-pass" not in result.stderr
    retries = [e for e in _log_events(result) if e["event"] == "ledger_unreachable_retrying"]
    assert retries, result.stderr


def test_settings_prints_the_committed_reference() -> None:
    result = run_cli("settings", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")


def test_demo_runs_both_directions_and_parks_one_failure_of_each_kind(amqp_url: str) -> None:
    # wide enough that rich wraps no table cell: each reason is then one word of the output
    env = {"SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url, "COLUMNS": "400"}
    result = run_cli("demo", "--events", "4", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "OK 12 events → 4 new hour entries in Severa; 3 invoices and 4 customers in Netvisor" in text
    assert "invoice 20249 paid back into Severa; 9 dead-lettered (expected 9)" in text
    for reason in (
        "invalid_json",
        "schema_violation",
        "unknown_user",
        "unknown_case",
        "unknown_work_type",
        "invalid_reference_number",
        "accounting_period_locked",
        "credited_invoice_missing",
    ):
        assert f" {reason} " in text, reason
    assert "Traceback" not in result.stdout + result.stderr


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
