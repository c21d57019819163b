"""Each ``dlq`` command as ops use it (typer's CliRunner, real broker, real store): output, exit codes.

Exit codes: 0 done, 1 partly done (the failed ids are named), 2 usage or configuration error with
one clear message and nothing changed.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from typer.testing import CliRunner, Result

from connector.cli import app
from connector.topology import Names
from schemas.dlq import DlqAuditRecord
from tests.factories import event_dict
from tests.integration.test_dlq_broker import headers_for, park

pytestmark = pytest.mark.integration


class Dlq:
    """Invokes ``severa-connector dlq …`` in a thread (each command runs its own event loop)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    async def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return await asyncio.to_thread(
            self.runner.invoke, app, ["dlq", *args], env={**self.env, **(env or {})}
        )

    async def json(self, *args: str) -> Any:
        result = await self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def dlq(amqp_url: str, topology: Names, tmp_path: Path) -> Dlq:
    return Dlq(
        {
            "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
            "SEVERA_CONNECTOR_RABBITMQ__PREFIX": topology.prefix,
            "SEVERA_CONNECTOR_DLQ__STORE_URL": f"sqlite:///{tmp_path / 'dlq.db'}",
            "SEVERA_CONNECTOR_DLQ__AUDIT_LOG": str(tmp_path / "audit.jsonl"),
            "SEVERA_CONNECTOR_DLQ__CANARY_TIMEOUT_SECONDS": "1",
            "USER": "ops-cli",
            "COLUMNS": "200",
        }
    )


@pytest.fixture
async def channel(
    amqp_connection: aio_pika.abc.AbstractConnection, topology: Names
) -> AsyncIterator[AbstractChannel]:
    ch = await amqp_connection.channel(publisher_confirms=True)
    yield ch
    await ch.close()


async def park_event(channel: AbstractChannel, names: Names, body: dict[str, Any], **headers: Any) -> None:
    dlx = await channel.get_exchange(names.dead_letter_exchange)
    await dlx.publish(
        aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            message_id=body["event_id"],
            headers={**headers_for(names), **headers},
        ),
        routing_key=names.workhours_queue,
    )


async def only_id(dlq: Dlq) -> str:
    listed = await dlq.json("list")
    (row,) = listed["dead_letters"]
    return str(row["id"])


class TestUsage:
    @pytest.mark.parametrize(
        ("args", "says"),
        [
            pytest.param(["replay", "--group", "g-1"], "--reason", id="replay without a reason"),
            pytest.param(
                ["replay", "--reason", "r"], "needs ids, --group or a filter", id="replay without a selection"
            ),
            pytest.param(["show", "abcdef123456"], "no dead letter", id="show an unknown id"),
            pytest.param(["show", "abc"], "at least 6", id="an id too short to be unique"),
            pytest.param(["list", "--since", "yesterday"], "30m, 2h, 7d", id="a time that does not parse"),
            pytest.param(["list", "--status", "lost"], "unknown status", id="an unknown status"),
            pytest.param(["purge", "--reason", "r"], "needs ids or a filter", id="purge without a selection"),
            pytest.param(["replay", "--reason", " ", "--all"], "say why", id="a blank reason"),
            pytest.param(
                ["replay", "--reason", "r", "--all", "--canary-only"], "--canary N", id="canary-only alone"
            ),
        ],
    )
    async def test_usage_errors_exit_2_with_one_message_and_no_traceback(
        self, dlq: Dlq, args: list[str], says: str
    ) -> None:
        result = await dlq(*args)
        assert result.exit_code == 2, result.output
        assert says in result.output
        assert "Traceback" not in result.output

    async def test_without_a_broker_the_store_can_still_be_browsed_but_nothing_changed(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 2)
        assert (await dlq.json("list"))["total"] == 2
        down = {"SEVERA_CONNECTOR_RABBITMQ__URL": "amqp://guest:guest@127.0.0.1:1/"}
        listed = await dlq("list", "--json", env=down)
        assert listed.exit_code == 0
        assert json.loads(listed.stdout)["total"] == 2
        assert "showing the store as of its last ingest" in listed.stderr
        refused = await dlq("replay", "--all", "--reason", "r", env=down)
        assert refused.exit_code == 2
        assert "needs RabbitMQ" in refused.stderr


class TestBrowse:
    async def test_list_filters_groups_and_counts(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 3)
        await park(channel, topology, 2, start=3, reason="unknown_user")
        assert (await dlq.json("list"))["total"] == 5
        assert (await dlq.json("list", "--error-code", "unknown_user"))["total"] == 2
        assert (await dlq.json("list", "--header", "producer=tracker", "--limit", "1"))["total"] == 5
        assert len((await dlq.json("list", "--limit", "1"))["dead_letters"]) == 1
        groups = await dlq.json("list", "--group-by", "error")
        assert [(g["reason"], g["count"]) for g in groups] == [("unknown_work_type", 3), ("unknown_user", 2)]
        table = await dlq("list", "--group-by", "error")
        assert "2 groups, 5 dead letters" in table.stdout
        assert "unknown_work_type" in table.stdout

    async def test_show_prints_headers_the_pretty_body_and_the_history(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        event = event_dict(work_type_code="dev")
        await park_event(channel, topology, event)
        dead_letter_id = await only_id(dlq)
        shown = await dlq("show", dead_letter_id[:8])
        assert shown.exit_code == 0, shown.output
        assert '"work_type_code": "dev"' in shown.stdout  # pretty JSON
        assert "x-dl-reason" in shown.stdout
        assert "ingested" in shown.stdout
        data = await dlq.json("show", dead_letter_id)
        assert json.loads(data["body"]) == event
        assert [e["kind"] for e in data["history"]["events"]] == ["ingested"]


class TestChange:
    async def test_edit_with_set_is_validated_audited_and_keeps_the_original(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names, tmp_path: Path
    ) -> None:
        await park_event(channel, topology, event_dict(work_type_code="dev"))
        dead_letter_id = await only_id(dlq)
        refused = await dlq("edit", dead_letter_id, "--set", "hours=lots", "--reason", "typo")
        assert refused.exit_code == 2
        assert "hours" in refused.stderr
        edited = await dlq("edit", dead_letter_id, "--set", "work_type_code=DEV", "--reason", "mapping typo")
        assert edited.exit_code == 0, edited.output
        data = await dlq.json("show", dead_letter_id)
        assert json.loads(data["body"])["work_type_code"] == "DEV"
        assert json.loads(data["original_body"])["work_type_code"] == "dev"
        assert data["edit_count"] == 1
        (started, finished) = [
            DlqAuditRecord.model_validate_json(line)
            for line in (tmp_path / "audit.jsonl").read_text().splitlines()
            if '"command":"edit"' in line
        ]
        assert (started.outcome, started.audit_id) == ("started", finished.audit_id)
        assert (finished.operator, finished.reason, finished.outcome) == ("ops-cli", "mapping typo", "ok")
        assert finished.details["changes"] == {"work_type_code": {"from": "dev", "to": "DEV"}}
        assert '"dev"' in finished.details["before"]
        assert '"DEV"' in finished.details["after"]

    async def test_edit_in_the_editor(self, dlq: Dlq, channel: AbstractChannel, topology: Names) -> None:
        await park_event(channel, topology, event_dict(work_type_code="dev"))
        dead_letter_id = await only_id(dlq)
        editor = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
            "import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
            "p.write_text(p.read_text().replace('\"dev\"', '\"DEV\"'))"
        )
        edited = await dlq("edit", dead_letter_id, "--reason", "fix", env={"EDITOR": editor, "VISUAL": ""})
        assert edited.exit_code == 0, edited.output
        assert json.loads((await dlq.json("show", dead_letter_id))["body"])["work_type_code"] == "DEV"

    async def test_edit_without_set_or_a_terminal_says_what_to_do(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park_event(channel, topology, event_dict())
        dead_letter_id = await only_id(dlq)
        result = await dlq("edit", dead_letter_id, "--reason", "r", env={"EDITOR": "", "VISUAL": ""})
        assert result.exit_code == 2
        assert "--set field=value" in result.stderr

    async def test_purge_asks_unless_told_yes_and_keeps_the_row_without_its_body(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 3)
        refused = await dlq("purge", "--error-code", "unknown_work_type", "--reason", "junk")
        assert refused.exit_code == 2
        assert "--yes" in refused.stderr
        purged = await dlq("purge", "--error-code", "unknown_work_type", "--reason", "junk", "--yes")
        assert purged.exit_code == 0, purged.output
        assert "purged 3 of 3" in purged.stderr
        assert (await dlq.json("list"))["total"] == 0
        kept = await dlq.json("list", "--status", "purged")
        assert kept["total"] == 3

    async def test_an_export_imports_into_another_store(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names, tmp_path: Path
    ) -> None:
        await park(channel, topology, 4)
        exported = tmp_path / "dead-letters.jsonl"
        result = await dlq("export", "--output", str(exported), "--reason", "ticket 42")
        assert result.exit_code == 0, result.output
        assert len(exported.read_text().splitlines()) == 4
        other = {"SEVERA_CONNECTOR_DLQ__STORE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
        imported = await dlq("import", str(exported), env=other)
        assert imported.exit_code == 0, imported.output
        again = await dlq("import", str(exported), env=other)
        assert "imported 0 of 4; 4 already stored" in again.stderr
        mine = {r["id"] for r in (await dlq.json("list"))["dead_letters"]}
        theirs = await dlq("list", "--json", env=other)
        assert {r["id"] for r in json.loads(theirs.stdout)["dead_letters"]} == mine

    async def test_a_partial_replay_exits_1_and_names_what_failed(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 2)
        await park(channel, topology, 1, start=2, queue=f"{topology.prefix}q.gone")
        result = await dlq("replay", "--error-code", "unknown_work_type", "--reason", "fixed")
        assert result.exit_code == 1, result.output
        gone = next(r for r in (await dlq.json("list"))["dead_letters"])
        assert gone["original_queue"].endswith("q.gone")
        assert gone["id"] in result.stderr
        assert "2 of 3 replayed" in result.stderr

    async def test_a_canary_without_an_outcome_exits_1_and_sends_nothing_more(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 5)
        result = await dlq("replay", "--all", "--canary", "2", "--reason", "try")
        assert result.exit_code == 1, result.output
        assert "stopped after the canary" in result.stderr
        assert (await dlq.json("list", "--status", "parked"))["total"] == 3

    async def test_the_audit_command_lists_who_did_what(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 1)
        assert (await dlq("replay", "--all", "--dry-run", "--reason", "look first")).exit_code == 0
        records = await dlq.json("audit")
        assert [(r["phase"], r["command"], r["dry_run"]) for r in records] == [
            ("finished", "replay", True),
            ("started", "replay", True),
        ]
        assert records[0]["operator"] == "ops-cli"
