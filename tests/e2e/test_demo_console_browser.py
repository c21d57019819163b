"""The demo's dead letters cleared from the console alone: ``severa-connector demo --console``.

The demo runs as its own process (fakes, connector, sample events, then the console on a free
port); the test reads the console's URL and token from its output, signs in with Debian's chromium
and, using only the console, edits and replays every dead letter whose body names something Severa
does not know or breaks the schema (the entries land in the fake Severa, counted through its admin
API) and archives the rest with a reason, until the overview says all clear. The audit page must
then show each action with the operator and reason, and SIGTERM must stop the demo with exit code
0, leaving none of its queues on the broker.

Every wait is a condition with a deadline: Playwright's ``expect`` for the page, ``wait_until`` for
the process output, the fake's entry count and the broker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import aiormq
import pytest
from playwright.async_api import Browser, Page, expect

from tests.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "Dana Demo"
CONSOLE_LINE = re.compile(r"console: (http://127\.0\.0\.1:\d+)/ — sign in with token (\S+)")
ADMIN_LINE = re.compile(r"fake Severa admin: (http://\S+/admin)")

#: reason -> the edit that fixes a dead letter of it (then replayed); None: archived.
FIXES: dict[str, str | None] = {
    "schema_violation": "hours=1",
    "unknown_user": "user_code=AIVI",
    "unknown_case": "case_number=10001",
    "unknown_work_type": "work_type_code=DEV",
    "invalid_json": None,
    "invalid_reference_number": None,
    "accounting_period_locked": None,
    "credited_invoice_missing": None,
}
#: How many dead letters of each reason the demo makes (two schema violations: 'lots', 1000 h).
COUNTS = {"schema_violation": 2}


@dataclass
class DemoProcess:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def output(self) -> str:
        return "".join(self.lines)

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        return pattern.search(self.output())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _broker_queues(prefix: str) -> list[str]:
    result = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "list_queues", "-q", "name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip().startswith(prefix)]


async def _delete_queues(amqp_url: str, queues: list[str]) -> None:
    """Teardown for a failed run: what the demo did not remove, removed here."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for name in queues:
            channel = await connection.channel()
            try:
                underlay = await channel.get_underlay_channel()
                await underlay.queue_delete(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()


@pytest.fixture
async def demo(amqp_url: str) -> AsyncIterator[tuple[DemoProcess, str, str]]:
    prefix = f"demo-e2e-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "COLUMNS": "400",
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "connector", "demo", "--console"),
        *("--console-port", str(free_port()), "--prefix", prefix),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = DemoProcess(process)

    async def read() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            running.lines.append(line.decode("utf-8", "replace"))

    running.reader = asyncio.create_task(read())
    try:
        yield running, prefix, amqp_url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await running.reader
        left = await _broker_queues(prefix)
        if left:
            await _delete_queues(amqp_url, left)


async def _sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/login")
    await page.get_by_label("Your name").fill(OPERATOR)
    await page.get_by_label("Console token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(base + "/")


async def _open_ids(page: Page, base: str, reason: str) -> list[str]:
    await page.goto(f"{base}/search?reason={reason}&status=open")
    rows = page.locator("#selection-form table.messages tbody tr")
    await expect(rows).to_have_count(COUNTS.get(reason, 1))
    return [str(await row.get_attribute("data-id")) for row in await rows.all()]


async def _edit_and_replay(page: Page, base: str, dead_letter_id: str, change: str, reason: str) -> None:
    await page.goto(f"{base}/messages/{dead_letter_id}")
    edit = page.locator("#edit-form")
    await edit.locator("textarea").fill(change)
    await edit.get_by_label("Reason").fill(f"edit: {reason}")
    await edit.get_by_role("button").click()
    await expect(page.locator("#edited")).to_be_visible()
    await page.goto(f"{base}/messages/{dead_letter_id}")
    form = page.locator("#replay-form")
    await form.get_by_label("Reason").fill(f"replay: {reason}")
    await form.get_by_role("button", name="Preview replay (dry run)").click()
    await expect(page.locator("#plan")).to_contain_text("1 dead letter would be replayed")
    await page.get_by_role("button", name="Replay 1 dead letter now").click()
    await expect(page.locator("#result")).to_contain_text("1 of 1 replayed", timeout=30_000)


async def _archive(page: Page, base: str, dead_letter_id: str, reason: str) -> None:
    await page.goto(f"{base}/messages/{dead_letter_id}")
    form = page.locator("#archive-form")
    await form.get_by_label("Reason").fill(f"archive: {reason}")
    await form.get_by_role("button").click()
    await expect(page.locator("#moved")).to_contain_text("Archived 1 of 1 dead letter")


async def _hour_entries(http: aiohttp.ClientSession, admin: str) -> int:
    async with http.get(f"{admin}/state") as response:
        state: dict[str, Any] = await response.json()
    return int(state["store"]["hour_entries"])


async def test_the_demo_dead_letters_are_cleared_from_the_console_alone(
    demo: tuple[DemoProcess, str, str], browser: Browser
) -> None:
    running, prefix, _ = demo
    await wait_until(
        lambda: (
            (running.match(CONSOLE_LINE) is not None and running.match(ADMIN_LINE) is not None)
            or running.process.returncode is not None
        ),
        timeout=60,
        what="the demo's console line",
    )
    console_line, admin_line = running.match(CONSOLE_LINE), running.match(ADMIN_LINE)
    assert console_line, running.output()
    assert admin_line, running.output()
    assert "OK 13 events" in " ".join(running.output().split()), running.output()
    base, token, admin = console_line[1], console_line[2], admin_line[1]

    async with aiohttp.ClientSession() as http:
        before = await _hour_entries(http, admin)
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await _sign_in(page, base, token)
        # The overview: six work-hour dead letters and three invoices, all open.
        for flow, depth in (("work_hours", "6"), ("accounting_invoices", "3")):
            await expect(page.locator(f'section[data-flow="{flow}"] .depth')).to_have_text(depth)

        actions: list[tuple[str, str]] = []
        fixed = 0
        for reason, change in FIXES.items():
            for dead_letter_id in await _open_ids(page, base, reason):
                why = f"{reason} {dead_letter_id[:8]}"
                if change is None:
                    await _archive(page, base, dead_letter_id, why)
                    actions.append(("archive", f"archive: {why}"))
                else:
                    await _edit_and_replay(page, base, dead_letter_id, change, why)
                    actions += [("edit", f"edit: {why}"), ("replay", f"replay: {why}")]
                    fixed += 1
        assert fixed == 5

        # The replayed entries land in Severa, and nothing failed again: all clear.
        counted: list[int] = []

        async def landed() -> bool:
            counted.append(await _hour_entries(http, admin))
            return counted[-1] == before + fixed

        deadline = asyncio.get_running_loop().time() + 30
        while not await landed():
            assert asyncio.get_running_loop().time() < deadline, f"entries in Severa: {counted[-1]}"
            await asyncio.sleep(0.1)
        await page.goto(base + "/")
        await expect(page.locator("p.empty")).to_have_text("No unresolved dead letters. All clear.")

        # Every action in the audit log, under the operator's name and with its reason.
        await page.get_by_role("link", name="Audit log").click()
        audit = page.locator("table.audit tbody tr")
        for command, reason in actions:
            rows = audit.filter(has=page.locator("td.reason", has_text=reason))
            await expect(rows.filter(has_text=command).first).to_be_visible()
            await expect(rows.locator("td.operator").filter(has_text=OPERATOR).first).to_be_visible()
        await context.close()

    # SIGTERM: a clean stop, exit code 0, and none of the demo's queues left on the broker.
    running.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(running.process.wait(), timeout=45)
    assert code == 0, running.output()
    assert "Traceback" not in running.output()
    assert token not in running.output().replace(console_line[0], ""), "the token printed more than once"
    assert await _broker_queues(prefix) == []
