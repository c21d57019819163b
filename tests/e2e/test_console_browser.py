"""The dead-letter console in a real browser: Debian's chromium driven by Playwright.

The whole loop runs for real: the connector with production settings (its pods ingest their dead
letters into the store), RabbitMQ, the fake Severa, and the console on an ephemeral port. Bad
work-hour events name a user Severa does not have; the operator signs in, sees the pod's heartbeat
and circuit (and a silent pod as down), finds the failure group, reads a hostile message as plain
text, is refused an invalid edit with the field named, fixes the body and sees the edit as a diff,
archives and restores a dead letter, finds one by a body field, creates the user in Severa, replays
a ticked selection after its dry run, then the rest of the group as a canary replay whose page
updates live -- and the entries land in Severa, with every step in the audit log under the
operator's name and reason.

Every wait is a condition: Playwright's ``expect`` auto-waits for what the page shows, and
``wait_until`` polls the store's ingest counter and Severa's entries. Screenshots of the main
pages go to ``$SEVERA_CONSOLE_SCREENSHOTS`` when set (``scripts/console_screenshots.sh`` sets it to
``docs/console``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Dialog, Page, expect

from adapters.severa.fake.server import FakeSevera
from connector.config import DlqSettings
from connector.console.app import ConsoleConfig, create_app
from connector.console.auth import Authenticator
from connector.dlq.records import PodHeartbeat
from connector.dlq.store import open_store
from connector.topology import Names
from tests.factories import event_dict
from tests.harness import Broker, running_connector, wait_until
from tests.integration.test_production_topology import production_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "console-e2e-token-" + "7" * 24
OPERATOR = "Olivia Ops"
NEW_USER = "NEWBIE"
HOSTILE = "<script>window.__pwned = 1; alert('pwned')</script><img src=x onerror=\"window.__pwned = 2\">"
SHOTS = os.environ.get("SEVERA_CONSOLE_SCREENSHOTS")


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await asyncio.to_thread(Path(SHOTS).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


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
            # The sign-in's redirect must have landed before the reload below: a reload while that
            # navigation is under way finds no page to reload ("Not attached to an active page").
            await expect(page).to_have_url(base + "/")

            # Overview: the flow's depth and its top failure group; the pod's heartbeat with its
            # circuits, and a pod that stopped beating shown as down.
            silent = open_store(settings.dlq_store_url())
            async with silent:
                long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
                await silent.beat(
                    PodHeartbeat(
                        pod=f"gone-{run}",
                        role="consumer",
                        flows=("work_hours",),
                        circuits={"severa": "closed"},
                        ready=True,
                        reasons=(),
                        version=None,
                        interval_seconds=15,
                        started_at=long_ago,
                        beat_at=long_ago,
                    )
                )
            await page.reload()
            await expect(page).to_have_url(base + "/")
            flow = page.locator('section[data-flow="work_hours"]')
            await expect(flow.locator(".depth")).to_have_text("3")
            await expect(flow).to_contain_text("unknown_user")
            pod = page.locator(f'tr.pod[data-pod="{settings.pod_name}"]')
            await expect(pod.locator("td.state")).to_have_text("ready", timeout=30_000)
            await expect(pod).to_contain_text("severa closed")
            await expect(page.locator(f'tr.pod[data-pod="gone-{run}"] td.state')).to_have_text("down")
            await expect(flow.locator(".flow-pods")).to_contain_text("1 of 2 pods ready, 1 down")
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
            hostile_url = page.url

            # An invalid edit is refused, naming the field; the body is left as it was.
            edit = page.locator("#edit-form")
            await edit.locator("textarea").fill("hours=plenty")
            await edit.get_by_label("Reason").fill("try a bad value")
            await edit.get_by_role("button").click()
            await expect(page.locator("#edit-errors")).to_contain_text("hours")
            await expect(page.locator("#body")).to_contain_text('"hours": "7.5"')
            await shot(page, "edit-refused")

            # A valid edit is kept, and the page shows it as a diff against the original.
            edit = page.locator("#edit-form")
            await edit.locator("textarea").fill(f'description="console {run} cleaned"')
            await edit.get_by_label("Reason").fill("strip the markup from the description")
            await edit.get_by_role("button").click()
            await expect(page.locator("#edited")).to_be_visible()
            await page.goto(hostile_url)
            diff = page.locator("#diff")
            await expect(diff.locator(".add")).to_contain_text(f"console {run} cleaned")
            await expect(diff.locator(".del")).to_contain_text(json.dumps(HOSTILE))
            await expect(diff.locator("script")).to_have_count(0)
            await shot(page, "edit-diff")

            # Archive it (a reason, audited, nothing deleted): it leaves the open group; restore it.
            archive = page.locator("#archive-form")
            await archive.get_by_label("Reason").fill("set aside while the user is created")
            await archive.get_by_role("button").click()
            await expect(page.locator("#moved")).to_contain_text("Archived 1 of 1 dead letter")
            await page.goto(f"{base}/groups/{group_key}")
            await expect(page.locator("dd.depth")).to_have_text("2")
            await page.goto(f"{base}/search?status=archived")
            archived = page.locator("#selection-form table.messages tbody tr")
            await expect(archived).to_have_count(1)
            await shot(page, "archived")
            await archived.first.get_by_role("checkbox").check()
            selection = page.locator("#selection-form")
            await selection.get_by_label("Reason").fill("the user exists now: back to the group")
            await selection.get_by_role("button", name="Restore the ticked").click()
            await expect(page.locator("#moved")).to_contain_text("Restored 1 of 1 dead letter")
            assert await page.evaluate("typeof window.__pwned") == "undefined"

            # Search by a body field finds exactly the dead letter whose body says so.
            await page.get_by_role("link", name="Search").click()
            filters = page.locator("#filters")
            await filters.get_by_label("body field").fill(f"source_entry_id={run}-0")
            await filters.get_by_role("button", name="Filter").click()
            found = page.locator("#selection-form table.messages tbody tr")
            await expect(found).to_have_count(1)
            await expect(page.locator("#found")).to_contain_text("1 dead letter match")
            await shot(page, "search")

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
            descriptions = {e["description"] for e in events if e is not hostile}
            descriptions.add(f"console {run} cleaned")
            assert not descriptions & {str(h.get("Description")) for h in severa.store.hour_entries}

            # A ticked selection: its dry run shows the plan (nothing sent), then it is replayed.
            await page.goto(f"{base}/groups/{group_key}")
            selection = page.locator("#selection-form")
            first = events[0]["event_id"]
            await selection.locator("tr", has_text=first).get_by_role("checkbox").check()
            await selection.get_by_label("Reason").fill("first one by hand")
            await selection.get_by_role("button", name="Preview replay of the ticked (dry run)").click()
            await expect(page.locator("#plan")).to_contain_text("1 dead letter would be replayed")
            await page.get_by_role("button", name="Replay 1 dead letter now").click()
            await expect(page.locator("#result")).to_contain_text("1 of 1 replayed", timeout=60_000)

            # The rest of the group as a canary replay at one a second: the page follows it live.
            await page.goto(f"{base}/groups/{group_key}")
            form = page.locator("#replay-form")
            await form.get_by_label("Reason").fill("user NEWBIE created in Severa")
            await form.get_by_role("spinbutton", name="Canary").fill("1")
            await form.get_by_role("spinbutton", name="Rate limit").fill("1")
            await form.get_by_role("button", name="Preview replay (dry run)").click()
            await expect(page.locator("#plan")).to_contain_text("2 dead letters would be replayed")
            await expect(page.locator("#plan")).to_contain_text("canary: 1")
            await expect(page.locator("#plan")).to_contain_text("1: already replayed")
            await shot(page, "replay-plan")

            await page.get_by_role("button", name="Replay 2 dead letters now").click()
            await expect(page.locator("#progress")).to_contain_text("Replaying")
            await shot(page, "replay-progress")
            result = page.locator("#result")
            await expect(result).to_contain_text("Replay completed", timeout=60_000)
            await expect(result).to_contain_text("2 of 2 replayed")
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
            await expect(audit.filter(has_text="dry run")).to_have_count(4)
            for command, reason in (
                ("edit", "strip the markup from the description"),
                ("archive", "set aside while the user is created"),
                ("restore", "the user exists now: back to the group"),
                ("replay", "first one by hand"),
            ):
                rows_of = audit.filter(has_text=reason)
                await expect(rows_of.filter(has_text=command).first).to_be_visible()
                await expect(rows_of.locator("td.operator").filter(has_text=OPERATOR).first).to_be_visible()
            await shot(page, "audit")
            assert dialogs == [], f"a dialog opened: {dialogs}"
            await context.close()
        finally:
            await runner.cleanup()
