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


def check(fakes: Fakes, netvisor: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """``severa-connector check`` with these Netvisor settings (``None``: accounting left off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")}
    env |= {
        "NO_COLOR": "1",
        "COLUMNS": "240",
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
        [sys.executable, "-m", "connector", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT / "tests",  # no .env of the working copy
        check=False,
    )


def netvisor_section(result: subprocess.CompletedProcess[str]) -> str:
    head, title, rest = result.stdout.partition("Netvisor at ")
    assert title, f"no Netvisor section:\n{result.stdout}"
    assert "✗" not in head, "Severa's section is expected to pass:\n" + result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return title + rest


def cells(section: str, name: str) -> tuple[str, str, str, str]:
    """The row whose check is ``name`` as its four cells (mark, check, result, fix), each cell's
    wrapped lines joined: ✓ passed, ✗ failed, - skipped."""
    lines = [line.strip().strip("│┃").split("│") for line in section.splitlines() if line.startswith("│")]
    rows: list[list[list[str]]] = []
    for parts in lines:
        if len(parts) != 4:
            continue
        if parts[0].strip() or not rows:  # a mark starts a row; a blank one continues it
            rows.append([[], [], [], []])
        for column, part in zip(rows[-1], parts, strict=True):
            if part.strip():
                column.append(part.strip())
    for found in rows:
        mark, check, result, fix = (" ".join(column) for column in found)
        if check == name:
            return mark, check, result, fix
    raise AssertionError(f"no row {name!r} in:\n{section}")


def mark(section: str, name: str) -> str:
    return cells(section, name)[0]


def assert_no_key_printed(result: subprocess.CompletedProcess[str], *keys: str) -> None:
    printed = result.stdout + result.stderr
    for key in (*keys, NETVISOR["customer_key"], NETVISOR["partner_key"], SEVERA_KEY):
        assert key not in printed


def test_a_good_configuration_passes_both_sections(fakes: Fakes, tmp_path: Path) -> None:
    result = check(fakes, key_files(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    section = netvisor_section(result)
    assert f"{fakes.netvisor_url}/ (organisation {NETVISOR['organisation_id']})" in section
    assert "✗" not in section
    for resource in RESOURCES:
        assert mark(section, f"Right to use {resource}.nv") == "✓"
    assert f"all {SEVERA_ROWS + NETVISOR_ROWS} checks passed" in result.stdout
    assert_no_key_printed(result)


def test_without_netvisor_as_the_accounting_system_there_is_no_netvisor_section(fakes: Fakes) -> None:
    result = check(fakes, None)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Netvisor" not in result.stdout
    assert f"all {SEVERA_ROWS} checks passed" in result.stdout


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
    section = netvisor_section(result)
    assert mark(section, "Netvisor reachable") == "✓"
    _, _, _, fix = cells(section, SIGNATURE)
    assert mark(section, SIGNATURE) == "✗"
    assert "SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY" in fix
    for resource in RESOURCES:  # skipped because of the signature, not failed on their own
        assert mark(section, f"Right to use {resource}.nv") == "-"
    assert f"{NETVISOR_ROWS - 2} of {SEVERA_ROWS + NETVISOR_ROWS} checks failed" in result.stdout
    assert_no_key_printed(result, wrong)


def test_a_missing_right_fails_the_row_of_that_resource_alone(fakes: Fakes, tmp_path: Path) -> None:
    fakes.netvisor_admin(
        "POST", "faults", {"kind": "error", "code": "SERVICE_ACCESS_ERROR", "resource": "salesinvoice.nv"}
    )

    result = check(fakes, key_files(tmp_path))

    assert result.returncode == 1, result.stdout + result.stderr
    section = netvisor_section(result)
    assert mark(section, SIGNATURE) == "✓"
    assert section.count("✗") == 1, section
    _, _, result_cell, fix = cells(section, "Right to use salesinvoice.nv")
    assert "SERVICE_ACCESS_ERROR" in result_cell
    assert "right to use salesinvoice.nv in Netvisor" in fix
    for resource in set(RESOURCES) - {"salesinvoice"}:
        assert mark(section, f"Right to use {resource}.nv") == "✓"
    assert f"1 of {SEVERA_ROWS + NETVISOR_ROWS} checks failed" in result.stdout
    assert_no_key_printed(result)
