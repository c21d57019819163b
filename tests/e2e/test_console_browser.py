"""The dead-letter console in a real browser: Debian's chromium driven by Playwright.

The whole loop runs for real: the connector with production settings (its pods ingest their dead
letters into the store), RabbitMQ, the fake Severa, and the console on an ephemeral port. Bad
work-hour events name a user Severa does not have; the operator signs in, finds the failure group,
reads a hostile message as plain text, is refused an invalid edit with the field named, creates the
user in Severa, previews the replay, confirms a canary replay, and the entries land in Severa --
with every step in the audit log under the operator's name and reason.

Every wait is a condition: Playwright's ``expect`` auto-waits for what the page shows, and
``wait_until`` polls the store's ingest counter and Severa's entries. Screenshots of the main
pages go to ``$SEVERA_CONSOLE_SCREENSHOTS`` when set (``scripts/console_screenshots.sh`` sets it to
``docs/console``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

from adapters.severa.fake.server import FakeSevera
from connector.config import DlqSettings
from connector.console.app import ConsoleConfig, create_app
from connector.console.auth import Authenticator
from connector.topology import Names
from tests.factories import event_dict
from tests.harness import Broker, running_connector, wait_until
from tests.integration.test_production_topology import production_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
TOKEN = "console-e2e-token-" + "7" * 24
OPERATOR = "Olivia Ops"
NEW_USER = "NEWBIE"
HOSTILE = "<script>window.__pwned = 1; alert('pwned')</script><img src=x onerror=\"window.__pwned = 2\">"
SHOTS = os.environ.get("SEVERA_CONSOLE_SCREENSHOTS")


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await asyncio.to_thread(Path(SHOTS).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(
            f"no chromium at {CHROMIUM}: run scripts/test.sh (it installs it) or apt-get install chromium"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def start_console(config: ConsoleConfig) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_an_operator_clears_a_failure_group_from_the_console(
    amqp_url: str, topology: Names, severa: FakeSevera, tmp_path: Path, broker: Broker, browser: Browser
) -> None:
    settings = production_settings(amqp_url, topology, severa, tmp_path)
    console_settings = DlqSettings(
        rabbitmq={"url": amqp_url, "prefix": topology.prefix},
        dlq={
            "store_url": settings.dlq_store_url(),
            "audit_log": str(tmp_path / "audit.jsonl"),
            "canary_timeout_seconds": 30,
        },
        _env_file=None,  # type: ignore[call-arg]
    )
    config = ConsoleConfig(console_settings, Authenticator(token=TOKEN, trust_user_header=None))
    run = uuid.uuid4().hex[:6]
    events = [
        event_dict(user_code=NEW_USER, description=f"console {run} #{i}", source_entry_id=f"{run}-{i}")
        for i in range(2)
    ]
    hostile = event_dict(user_code=NEW_USER, description=HOSTILE, source_entry_id=f"{run}-hostile")
    events.append(hostile)

    async with running_connector(settings) as connector:
        runner, base = await start_console(config)
        try:
            for event in events:
                await broker.publish_event(event)
            assert connector._ingester is not None
            ingester = connector._ingester
            await wait_until(lambda: ingester.counts.stored == len(events), timeout=60, what="3 ingested")

            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            dialogs: list[str] = []

            async def dismiss(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", dismiss)

            # Login required: no credentials, the login page; a wrong token, refused.
            await page.goto(base + "/groups")
            await expect(page).to_have_url(base + "/login")
            await page.get_by_label("Your name").fill(OPERATOR)
            await page.get_by_label("Console token").fill("not-the-token")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator(".error")).to_contain_text("wrong token")
            await shot(page, "login")
            await page.get_by_label("Your name").fill(OPERATOR)
            await page.get_by_label("Console token").fill(TOKEN)
            await page.get_by_role("button", name="Sign in").click()

            # Overview: the flow's depth and its top failure group.
            await expect(page).to_have_url(base + "/")
            flow = page.locator('section[data-flow="work_hours"]')
            await expect(flow.locator(".depth")).to_have_text("3")
            await expect(flow).to_contain_text("unknown_user")
            await shot(page, "overview")

            # Failure groups: one group of three, as `dlq list --group-by error` would say.
            await page.get_by_role("link", name="Failure groups").click()
            rows = page.locator("tr.group")
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_contain_text(NEW_USER)
            await expect(rows.first.locator("td.num")).to_have_text("3")
            group_key = await rows.first.get_attribute("data-group")
            assert group_key is not None
            await shot(page, "groups")

            await rows.first.get_by_role("link").click()
            await expect(page.locator("table.messages tbody tr")).to_have_count(3)
            await shot(page, "group")

            # The hostile body is text on the page, and nothing in it ran.
            await page.locator("table.messages tr", has_text=hostile["event_id"]).get_by_role("link").click()
            await expect(page.locator("#body")).to_contain_text(json.dumps(HOSTILE))  # as JSON spells it
            assert await page.evaluate("typeof window.__pwned") == "undefined"
            await expect(page.locator("#body script")).to_have_count(0)
            await shot(page, "message")

            # An invalid edit is refused, naming the field; the body is left as it was.
            edit = page.locator("#edit-form")
            await edit.locator("textarea").fill("hours=plenty")
            await edit.get_by_label("Reason").fill("try a bad value")
            await edit.get_by_role("button").click()
            await expect(page.locator("#edit-errors")).to_contain_text("hours")
            await expect(page.locator("#body")).to_contain_text('"hours": "7.5"')
            await shot(page, "edit-refused")

            # A state-changing request without the CSRF token is refused, even with the session.
            forged = await page.request.post(
                base + "/replay/preview", form={"group": group_key, "reason": "forged"}
            )
            assert forged.status == 403

            # Fix the cause, preview the replay (nothing sent), then confirm a canary replay.
            severa.load_seed(
                {
                    "users": [
                        {
                            "GUID": "7d3c1e52-0000-4000-8000-0000000000aa",
                            "Code": NEW_USER,
                            "Email": "newbie@example.com",
                            "FirstName": "New",
                            "LastName": "Bie",
                            "IsActive": True,
                        }
                    ]
                },
                replace=False,
            )
            await page.goto(f"{base}/groups/{group_key}")
            form = page.locator("#replay-form")
            await form.get_by_label("Reason").fill("user NEWBIE created in Severa")
            await form.get_by_role("spinbutton", name="Canary").fill("1")
            await form.get_by_role("button", name="Preview replay (dry run)").click()
            await expect(page.locator("#plan")).to_contain_text("3 dead letters would be replayed")
            await expect(page.locator("#plan")).to_contain_text("canary: 1")
            await shot(page, "replay-plan")
            descriptions = {e["description"] for e in events}
            assert not descriptions & {str(h.get("Description")) for h in severa.store.hour_entries}

            await page.get_by_role("button", name="Replay 3 dead letters now").click()
            result = page.locator("#result")
            await expect(result).to_contain_text("Replay completed", timeout=60_000)
            await expect(result).to_contain_text("3 of 3 replayed")
            await expect(result).to_contain_text("canary: 1 passed")
            await shot(page, "replay-result")
            await wait_until(
                lambda: descriptions <= {str(h.get("Description")) for h in severa.store.hour_entries},
                timeout=60,
                what="the replayed entries in Severa",
            )

            # Every action is in the audit log, with the operator's name and reason.
            await page.get_by_role("link", name="Audit log").click()
            audit = page.locator("table.audit tbody tr")
            await expect(audit.filter(has_text="user NEWBIE created in Severa")).to_have_count(4)
            await expect(audit.locator("td.operator").filter(has_text=OPERATOR).first).to_be_visible()
            await expect(audit.filter(has_text="dry run")).to_have_count(2)
            await shot(page, "audit")
            assert dialogs == [], f"a dialog opened: {dialogs}"
            await context.close()
        finally:
            await runner.cleanup()
