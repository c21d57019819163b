"""``severa-connector check`` with the accounting system set to Netvisor: a section of its own.

The command runs as its own process, as an integrator runs it, against both fakes over HTTP (in a
thread of this process, on ephemeral ports); the settings come from environment variables and key
files, as in a deployment. What is claimed: a good configuration passes every row of both sections;
a wrong key fails the signature row, which names the settings the keys come from and never a key;
a missing right fails the row of that resource alone and says which right to grant.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.netvisor.check import SIGNATURE
from adapters.netvisor.fake.server import FakeNetvisor
from adapters.severa.fake.server import FakeSevera

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SEVERA_KEY = "e2e-severa-key-4be1"
NETVISOR = {
    "customer_id": "e2e-customer",
    "customer_key": "e2e-customer-key-71c2",
    "partner_id": "e2e-partner",
    "partner_key": "e2e-partner-key-0d9a",
    "organisation_id": "1234567-8",
}
#: Severa's eight rows and Netvisor's ten (keys, reachable, signature, seven rights).
SEVERA_ROWS = 8
NETVISOR_ROWS = 10
RESOURCES = (
    "customerlist",
    "salesinvoicelist",
    "getsalesinvoice",
    "salespaymentlist",
    "customer",
    "salesinvoice",
    "matchcreditnote",
)


@dataclass(frozen=True)
class Fakes:
    severa_url: str
    netvisor_url: str

    def netvisor_admin(self, method: str, path: str, body: Any = None) -> Any:
        """Steer the fake Netvisor through its admin API, as one steers it from another process."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.netvisor_url}/admin/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload else None


@pytest.fixture(scope="module")
def running_fakes() -> Iterator[Fakes]:
    """Both fakes in a thread with its own event loop, so the command can be a separate process."""
    started = threading.Event()
    urls: list[str] = []
    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        netvisor_fake = FakeNetvisor(
            customer_id=NETVISOR["customer_id"],
            customer_key=NETVISOR["customer_key"],
            partner_id=NETVISOR["partner_id"],
            partner_key=NETVISOR["partner_key"],
            organisation_id=NETVISOR["organisation_id"],
        )
        async with FakeSevera(api_key=SEVERA_KEY) as severa, netvisor_fake as netvisor:
            urls.extend((severa.url, netvisor.url))
            started.set()
            await stop.wait()
            assert netvisor.internal_errors == []

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the fakes did not start"
    yield Fakes(severa_url=urls[0], netvisor_url=urls[1])
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


@pytest.fixture
def fakes(running_fakes: Fakes) -> Iterator[Fakes]:
    """The fakes, with the fake Netvisor's fault rules and counters cleared after each test."""
    yield running_fakes
    running_fakes.netvisor_admin("POST", "reset")


def key_files(directory: Path) -> dict[str, str]:
    """The keys as mounted Secret files, the way a deployment provides them."""
    customer, partner = directory / "customer-key", directory / "partner-key"
    customer.write_text(NETVISOR["customer_key"] + "\n", encoding="utf-8")
    partner.write_text(NETVISOR["partner_key"] + "\n", encoding="utf-8")
    return {
        "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_KEY_FILE": str(customer),
        "SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY_FILE": str(partner),
    }


def check(fakes: Fakes, netvisor: dict[str, str] | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``severa-connector check`` with these Netvisor settings (``None``: accounting left off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    env |= {
        "NO_COLOR": "1",
        "COLUMNS": "80",
        "SEVERA_CONNECTOR_STATE_URL": "memory://",
        "SEVERA_CONNECTOR_SEVERA__URL": fakes.severa_url,
        "SEVERA_CONNECTOR_SEVERA__API_KEY": SEVERA_KEY,
    }
    if netvisor is not None:
        env |= {
            "SEVERA_CONNECTOR_ACCOUNTING__SYSTEM": "netvisor",
            "SEVERA_CONNECTOR_NETVISOR__BASE_URL": fakes.netvisor_url,
            "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_ID": NETVISOR["customer_id"],
            "SEVERA_CONNECTOR_NETVISOR__PARTNER_ID": NETVISOR["partner_id"],
            "SEVERA_CONNECTOR_NETVISOR__ORGANISATION_ID": NETVISOR["organisation_id"],
            **netvisor,
        }
    return subprocess.run(
        [sys.executable, "-m", "connector", "check", *(args or ("-o", "json"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT / "tests",  # no .env of the working copy
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """``check -o json``'s document (the one thing on stdout)."""
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def netvisor_rows(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The Netvisor section's checks by name; Severa's are expected to pass."""
    checks = report(result)["checks"]
    severa = [c for c in checks if c["peer"] == "severa"]
    assert len(severa) == SEVERA_ROWS, severa
    assert all(c["status"] == "ok" for c in severa), severa
    rows = {c["name"]: c for c in checks if c["peer"] == "netvisor"}
    assert len(rows) == NETVISOR_ROWS, rows
    return rows


def status(rows: dict[str, dict[str, Any]], name: str) -> str:
    return str(rows[name]["status"])


def assert_no_key_printed(result: subprocess.CompletedProcess[str], *keys: str) -> None:
    printed = result.stdout + result.stderr
    for key in (*keys, NETVISOR["customer_key"], NETVISOR["partner_key"], SEVERA_KEY):
        assert key not in printed


def test_a_good_configuration_passes_both_sections(fakes: Fakes, tmp_path: Path) -> None:
    result = check(fakes, key_files(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    rows = netvisor_rows(result)
    document = report(result)
    assert [p["title"] for p in document["peers"]][1] == (
        f"Netvisor at {fakes.netvisor_url}/ (organisation {NETVISOR['organisation_id']})"
    )
    assert {status(rows, name) for name in rows} == {"ok"}
    assert document["summary"] == f"all {SEVERA_ROWS + NETVISOR_ROWS} checks passed"
    assert document["counts"] == {
        "ok": SEVERA_ROWS + NETVISOR_ROWS,
        "warning": 0,
        "failed": 0,
        "not_checked": 0,
    }
    assert_no_key_printed(result)


def test_the_table_of_both_sections_fits_80_columns(fakes: Fakes, tmp_path: Path) -> None:
    result = check(fakes, key_files(tmp_path), "-o", "table")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert f"Netvisor at {fakes.netvisor_url}/ (organisation {NETVISOR['organisation_id']})" in lines
    for resource in RESOURCES:  # the mark and the check's name on one line
        assert any(line.startswith("✓") and f"Right to use {resource}.nv" in line for line in lines)
    assert lines[-1] == f"all {SEVERA_ROWS + NETVISOR_ROWS} checks passed"
    assert_no_key_printed(result)


def test_without_netvisor_as_the_accounting_system_there_is_no_netvisor_section(fakes: Fakes) -> None:
    result = check(fakes, None)

    assert result.returncode == 0, result.stdout + result.stderr
    document = report(result)
    assert [p["peer"] for p in document["peers"]] == ["severa"]
    assert {c["peer"] for c in document["checks"]} == {"severa"}
    assert document["summary"] == f"all {SEVERA_ROWS} checks passed"


def test_a_wrong_partner_key_fails_the_signature_naming_the_setting_not_the_key(
    fakes: Fakes, tmp_path: Path
) -> None:
    wrong = "not-the-partner-key-5e3f"
    result = check(
        fakes,
        {
            "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_KEY": NETVISOR["customer_key"],
            "SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY": wrong,
        },
    )

    assert result.returncode == 1, result.stdout + result.stderr
    rows = netvisor_rows(result)
    assert status(rows, "Netvisor reachable") == "ok"
    assert status(rows, SIGNATURE) == "failed"
    assert "SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY" in rows[SIGNATURE]["fix"]
    for resource in RESOURCES:  # skipped because of the signature, not failed on their own
        assert status(rows, f"Right to use {resource}.nv") == "not_checked"
    # Severa's 8 and Netvisor's keys and reachability passed; the signature failed; 7 rights wait on it.
    assert report(result)["summary"] == f"1 failed, 7 not checked, {SEVERA_ROWS + 2} passed"
    assert_no_key_printed(result, wrong)


def test_a_missing_right_fails_the_row_of_that_resource_alone(fakes: Fakes, tmp_path: Path) -> None:
    fakes.netvisor_admin(
        "POST", "faults", {"kind": "error", "code": "SERVICE_ACCESS_ERROR", "resource": "salesinvoice.nv"}
    )

    result = check(fakes, key_files(tmp_path))

    assert result.returncode == 1, result.stdout + result.stderr
    rows = netvisor_rows(result)
    assert status(rows, SIGNATURE) == "ok"
    assert [name for name in rows if status(rows, name) == "failed"] == ["Right to use salesinvoice.nv"]
    failed = rows["Right to use salesinvoice.nv"]
    assert "SERVICE_ACCESS_ERROR" in failed["message"]
    assert "right to use salesinvoice.nv in Netvisor" in failed["fix"]
    for resource in set(RESOURCES) - {"salesinvoice"}:
        assert status(rows, f"Right to use {resource}.nv") == "ok"
    assert report(result)["summary"] == f"1 failed, {SEVERA_ROWS + NETVISOR_ROWS - 1} passed"
    assert_no_key_printed(result)
