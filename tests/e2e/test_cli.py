"""The command line as a newcomer and an integrator use it: real processes, real exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from adapters.severa.fake.server import FakeSevera
from schemas.export import export_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "connector"]
KEY = "e2e-key-8f1d0c"


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    unset: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The command as its own process, stdin and stdout not a terminal (as in CI or a pipe)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_") and k not in unset}
    defaults = {name: value for name, value in (("NO_COLOR", "1"), ("COLUMNS", "200")) if name not in unset}
    return subprocess.run(
        [*CLI, *args],
        env={**clean, **defaults, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT / "tests",  # no .env of the working copy
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


# -- check: statuses, summaries, JSON, quota -------------------------------------------------------


def severa_admin(url: str, path: str, body: object = None) -> object:
    """The fake Severa's admin API (``POST /admin/<path>``), over HTTP like every other caller."""
    parts = urlsplit(url)
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.netloc}/admin/{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


@pytest.fixture
def severa_url(fake_severa_url: str) -> Iterator[str]:
    """The shared fake Severa; its quota, faults and counters are put back after the test."""
    yield fake_severa_url
    severa_admin(fake_severa_url, "reset")


def check_env(url: str, key: str = KEY) -> dict[str, str]:
    return {"SEVERA_CONNECTOR_SEVERA__URL": url, "SEVERA_CONNECTOR_SEVERA__API_KEY": key}


def check_json(url: str, key: str = KEY) -> tuple[int, dict[str, Any]]:
    result = run_cli("check", "-o", "json", env=check_env(url, key))
    assert "Traceback" not in result.stderr, result.stderr
    assert key not in result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


def statuses(document: dict[str, Any]) -> list[str]:
    return [str(c["status"]) for c in document["checks"]]


def test_check_json_names_each_check_with_its_status_and_message(severa_url: str) -> None:
    code, document = check_json(severa_url)
    assert code == 0
    assert document["ok"] is True
    assert document["summary"] == "all 8 checks passed"
    assert document["counts"] == {"ok": 8, "warning": 0, "failed": 0, "not_checked": 0}
    assert document["peers"] == [{"peer": "severa", "title": f"Severa at {severa_url}"}]
    assert [c["name"] for c in document["checks"]][:3] == [
        "WSDL contract loaded",
        "Endpoint reachable",
        "API key accepted",
    ]
    assert all(set(c) == {"peer", "name", "status", "message", "fix"} for c in document["checks"])


def test_check_json_with_a_wrong_key_counts_the_failure_apart_from_what_was_not_checked(
    severa_url: str,
) -> None:
    code, document = check_json(severa_url, key="not-the-key-9a1e")
    assert code == 1  # as without --json
    assert statuses(document) == ["ok", "ok", "failed", *["not_checked"] * 4, "ok"]
    assert document["summary"] == "1 failed, 4 not checked, 3 passed"
    assert document["ok"] is False


@pytest.mark.parametrize(
    ("spend", "expected", "summary"),
    [
        pytest.param(
            ("quota", {"exhaust": True}),
            ["ok", "ok", *["not_checked"] * 5, "failed"],
            "1 failed, 5 not checked, 2 passed",
            id="the day's quota used up before the first call",
        ),
        pytest.param(
            ("faults", {"kind": "quota_exhausted", "operation": "GetUserByCode"}),
            ["ok", "ok", *["not_checked"] * 5, "failed"],
            "1 failed, 5 not checked, 2 passed",
            id="a quota fault on the key check",
        ),
        pytest.param(
            ("faults", {"kind": "quota_exhausted", "operation": "GetCasesChangedSince"}),
            ["ok", "ok", "ok", "ok", *["not_checked"] * 3, "failed"],
            "1 failed, 3 not checked, 4 passed",
            id="the quota running out half-way through the reads",
        ),
    ],
)
def test_a_spent_quota_is_reported_as_the_quota_with_its_reset_not_as_an_unreachable_endpoint(
    severa_url: str, spend: tuple[str, dict[str, object]], expected: list[str], summary: str
) -> None:
    severa_admin(severa_url, *spend)
    code, document = check_json(severa_url)
    assert code == 1
    assert statuses(document) == expected
    assert document["summary"] == summary
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["Endpoint reachable"]["status"] == "ok"
    quota = checks["Quota left"]
    assert "quota is spent" in quota["message"]
    assert "Next reset:" in quota["message"]
    assert " UTC, in " in quota["message"]
    assert "SEVERA_CONNECTOR_SEVERA__URL" not in json.dumps(document)  # nothing says "check the URL"
    assert all("quota is spent" in c["message"] for c in document["checks"] if c["status"] == "not_checked")


def test_little_quota_left_passes_with_a_warning(severa_url: str) -> None:
    severa_admin(severa_url, "quota", {"limit": 1000, "used": 920})
    code, document = check_json(severa_url)
    assert code == 0
    assert statuses(document) == ["ok"] * 7 + ["warning"]
    assert document["summary"] == "all 8 checks passed, 1 with a warning"


@pytest.mark.parametrize(
    ("env", "unset"),
    [
        pytest.param({"COLUMNS": "80"}, (), id="COLUMNS=80, piped"),
        pytest.param({}, ("COLUMNS", "TERM", "NO_COLOR"), id="no terminal, no COLUMNS, no TERM"),
    ],
)
def test_the_check_table_stays_readable_at_80_columns_without_a_terminal(
    severa_url: str, env: dict[str, str], unset: tuple[str, ...]
) -> None:
    result = run_cli("check", env={**check_env(severa_url, "wrong-key-3c0d"), **env}, unset=unset)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout  # no colour codes into a pipe
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert lines[0] == f"Severa at {severa_url}"
    for mark, name in (("✓", "Endpoint reachable"), ("✗", "API key accepted"), ("-", "Can read users")):
        # the mark and the name on one line; the message wraps beside it, not into the next row
        assert any(line.startswith(f"{mark}  {name}") for line in lines), result.stdout
    assert "fix: Put the current key into" in " ".join(" ".join(lines).split())
    assert lines[-1] == "1 failed, 4 not checked, 3 passed"


def test_check_wide_puts_each_check_on_one_line_with_its_status(severa_url: str) -> None:
    result = run_cli("check", "-o", "wide", env={**check_env(severa_url), "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("✓")]
    assert len(rows) == 8
    assert any("Endpoint reachable" in row and " ok " in row and severa_url in row for row in rows)


def test_check_json_and_another_output_at_once_is_a_usage_error(severa_url: str) -> None:
    result = run_cli("check", "--json", "-o", "wide", env=check_env(severa_url))
    assert result.returncode == 2
    assert "--json contradicts -o wide" in " ".join(result.stderr.split())
    assert result.stdout == ""


# -- config show -----------------------------------------------------------------------------------

SECRETS = {
    "severa": "sev-key-2b7d91",
    "customer": "nv-customer-key-5a0f",
    "partner": "nv-partner-key-e4c3",
    "broker": "broker-pw-81ad",
    "ledger": "ledger-pw-0c6e",
    "store": "store-pw-7f12",
}


@pytest.fixture
def secret_env(tmp_path: Path) -> dict[str, str]:
    """Every kind of secret a deployment gives the connector, inline and in mounted files."""
    partner_file = tmp_path / "partner-key"
    partner_file.write_text(SECRETS["partner"] + "\n", encoding="utf-8")
    return {
        "SEVERA_CONNECTOR_SEVERA__URL": "https://sync.severa.example/webservice/S3/API.svc",
        "SEVERA_CONNECTOR_SEVERA__API_KEY": SECRETS["severa"],
        "SEVERA_CONNECTOR_RABBITMQ__URL": f"amqp://ops:{SECRETS['broker']}@broker.example:5672/prod",
        "SEVERA_CONNECTOR_STATE_URL": f"postgresql://connector:{SECRETS['ledger']}@db.example:5432/c",
        "SEVERA_CONNECTOR_DLQ__STORE_URL": f"postgresql://db.example/dlq?user=ops&password={SECRETS['store']}",
        "SEVERA_CONNECTOR_ACCOUNTING__SYSTEM": "netvisor",
        "SEVERA_CONNECTOR_NETVISOR": json.dumps(
            {"customer_id": "c-1", "partner_id": "p-1", "organisation_id": "1234567-8"}
        ),
        "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_KEY": SECRETS["customer"],
        "SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY_FILE": str(partner_file),
        "SEVERA_CONNECTOR_HTTP": '{"port": 9091}',
    }


@pytest.mark.parametrize("output", ["table", "wide", "json", "yaml"])
def test_config_show_never_prints_a_secret(secret_env: dict[str, str], output: str) -> None:
    result = run_cli("config", "show", "-o", output, env={**secret_env, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr
    for what, secret in SECRETS.items():
        assert secret not in printed, what
    assert "sev-key" not in printed  # not even a prefix of one
    if output == "table":
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout


@pytest.mark.slow  # two processes
def test_config_show_says_what_each_setting_is_and_where_it_came_from(
    secret_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("SEVERA_CONNECTOR_LOG__LEVEL=DEBUG\n", encoding="utf-8")
    result = run_cli("config", "show", "-o", "json", env=secret_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    settings, sources = document["settings"], document["sources"]
    assert settings["severa"]["api_key"] == "***"
    assert sources["severa.api_key"] == "env"
    assert settings["rabbitmq"]["url"] == "amqp://ops:***@broker.example:5672/prod"
    assert settings["state_url"] == "postgresql://connector:***@db.example:5432/c"
    assert settings["dlq"]["store_url"] == "postgresql://db.example/dlq?user=ops&password=***"
    assert settings["netvisor"]["customer_key"] == "***"
    assert (
        settings["netvisor"]["partner_key_file"] == secret_env["SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY_FILE"]
    )
    assert sources["netvisor.customer_id"] == "env (SEVERA_CONNECTOR_NETVISOR)"
    assert (settings["http"]["port"], sources["http.port"]) == (9091, "env (SEVERA_CONNECTOR_HTTP)")
    assert (settings["log"]["level"], sources["log.level"]) == ("DEBUG", ".env")
    assert (settings["rabbitmq"]["prefetch"], sources["rabbitmq.prefetch"]) == (32, "default")
    as_yaml = run_cli("config", "show", "-o", "yaml", env=secret_env, cwd=tmp_path)
    assert yaml.safe_load(as_yaml.stdout) == document


def test_config_show_of_a_bad_setting_is_one_line_and_exit_2() -> None:
    result = run_cli("config", "show", env={"SEVERA_CONNECTOR_RABBITMQ__PREFETCH": "lots"}, timeout=30)
    assert result.returncode == 2
    assert "SEVERA_CONNECTOR_RABBITMQ__PREFETCH" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_config_show_for_the_dlq_commands_needs_no_severa_key() -> None:
    result = run_cli("config", "show", "--for", "dlq", "-o", "json", env={"COLUMNS": "80"}, timeout=30)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert "severa" not in document["settings"]
    assert document["sources"]["dlq.store_url"] == "default"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--trace-url", "javascript:alert(1)//{trace_id}"), {}),
        ((), {"SEVERA_CONNECTOR_CONSOLE__TRACE_URL": "https://tempo.example/trace/"}),
    ],
    ids=["not http", "no placeholder, from the environment"],
)
def test_console_refuses_a_trace_link_template_it_cannot_use(
    args: tuple[str, ...], env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(
        "console",
        *args,
        env={**env, "SEVERA_CONNECTOR_DLQ__STORE_URL": f"sqlite:///{tmp_path / 'dlq.db'}"},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "{trace_id}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
