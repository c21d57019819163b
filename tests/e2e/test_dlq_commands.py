"""Each ``dlq`` command as ops use it (typer's CliRunner, real broker, real store): output, exit codes.

Exit codes: 0 done, 1 partly done (the failed ids are named), 2 usage or configuration error (a
missing store included) with one clear message and nothing changed, 3 the broker or the store did
not answer. Only ``dlq ingest`` takes dead letters off the broker; the tests run it where the
connector pods would have ingested.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from typer.testing import CliRunner, Result

from connector.bus import declare_topology, ready_count
from connector.cli import app
from connector.topology import (
    Names,
    accounting_flow_queues,
    accounting_invoices_queue,
    build_topology,
    work_hours_queue,
)
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

    async def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = await self(*args, "--json", env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    async def ingest(self, env: dict[str, str] | None = None) -> Any:
        """What the connector pods do all the time: take the DLQs into the store."""
        return await self.json("ingest", env=env)


# No .env of the working copy, no ledger of the developer's: only what the test sets.
STORE_HINT_ENV = {"SEVERA_CONNECTOR_STATE_URL": "sqlite:///:memory:"}
STORE_SETTING = "SEVERA_CONNECTOR_DLQ__STORE_URL"
BROKER_DOWN = {"SEVERA_CONNECTOR_RABBITMQ__URL": "amqp://guest:guest@127.0.0.1:1/"}


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


@pytest.fixture
def dlq(amqp_url: str, topology: Names, tmp_path: Path) -> Dlq:
    return Dlq(
        {
            **STORE_HINT_ENV,
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
    await dlq.ingest()
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
        await dlq.ingest()  # the store exists, as it would where the pods ingest
        result = await dlq(*args)
        assert result.exit_code == 2, result.output
        assert says in result.output
        assert "Traceback" not in result.output

    async def test_an_unreachable_broker_is_an_error_not_an_empty_table_and_store_only_browses(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 2)
        await dlq.ingest()
        listed = await dlq("list", "--json", env=BROKER_DOWN)
        assert listed.exit_code == 3, listed.output
        assert listed.stdout == ""
        assert "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/" in listed.stderr
        assert one_line(listed.stderr)
        browsed = await dlq("list", "--json", "--store-only", env=BROKER_DOWN)
        assert browsed.exit_code == 0, browsed.output
        assert json.loads(browsed.stdout)["total"] == 2
        refused = await dlq("replay", "--all", "--reason", "r", env=BROKER_DOWN)
        assert refused.exit_code == 3
        assert "cannot reach RabbitMQ" in refused.stderr
        assert one_line(refused.stderr)


class TestTheStoreIsFilledOnlyByIngest:
    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(["list"], id="list"),
            pytest.param(["list", "--group-by", "error", "--store-only"], id="list by group, store only"),
            pytest.param(["show", "abcdef123456"], id="show"),
            pytest.param(["audit"], id="audit"),
            pytest.param(["export"], id="export"),
            pytest.param(["replay", "--all", "--reason", "r"], id="replay"),
            pytest.param(["purge", "--all", "--reason", "r", "--yes"], id="purge"),
        ],
    )
    async def test_a_command_without_the_store_moves_nothing_and_says_where_to_point_it(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names, tmp_path: Path, args: list[str]
    ) -> None:
        await park(channel, topology, 4)
        result = await dlq(*args)
        assert result.exit_code == 2, result.output
        assert one_line(result.stderr), result.stderr
        assert str(tmp_path / "dlq.db") in result.stderr.replace("\n", "")
        assert STORE_SETTING in result.stderr
        assert "the connector pods create it when they ingest" in result.stderr
        assert not (tmp_path / "dlq.db").exists()
        assert await dlq_depth(channel, topology) == 4  # still in the broker: nothing was taken

    async def test_list_says_how_many_wait_in_the_broker_without_taking_them(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 2)
        await dlq.ingest()
        await park(channel, topology, 3, start=2)
        listed = await dlq("list", "--json")
        assert listed.exit_code == 0, listed.output
        assert json.loads(listed.stdout)["total"] == 2
        assert f"3 dead letters still in {topology.workhours_dlq}, not yet ingested" in listed.stderr
        assert await dlq_depth(channel, topology) == 3
        quiet = await dlq("list", "--store-only")
        assert "not yet ingested" not in quiet.stderr

    async def test_ingest_creates_the_store_and_moves_each_dead_letter_once(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names, tmp_path: Path
    ) -> None:
        await park(channel, topology, 4)
        first = await dlq.ingest()
        assert (first["received"], first["stored"], first["already_stored"]) == (4, 4, 0)
        assert first["per_queue"] == {topology.workhours_dlq: 4}
        assert (tmp_path / "dlq.db").exists()
        assert await dlq_depth(channel, topology) == 0
        again = await dlq.ingest()
        assert (again["received"], again["stored"]) == (0, 0)
        assert (await dlq.json("list"))["total"] == 4
        said = await dlq("ingest")
        assert "ingested 0 new dead letters" in said.stderr

    async def test_ingest_takes_the_accounting_flows_dead_letters_too(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        """A pod with accounting on declares its flows' queues and DLQs; the one-shot ingest and the
        listing find them, and a deployment without them (the topology fixture) is not warned about."""
        flows = (work_hours_queue(topology), *accounting_flow_queues(topology))
        await declare_topology(channel, build_topology(topology, flows=flows))
        invoices = accounting_invoices_queue(topology).queue
        dlx = await channel.get_exchange(topology.dead_letter_exchange)
        await dlx.publish(
            aio_pika.Message(b'{"not": "an invoice"}', content_type="application/json", message_id="inv-1"),
            routing_key=invoices,
        )
        await park(channel, topology, 1)
        result = await dlq("ingest")
        assert result.exit_code == 0, result.output
        assert "no DLQ" not in result.stderr
        report = await dlq.ingest()  # nothing left; then list what was stored
        assert report["missing_queues"] == []
        listed = await dlq.json("list")
        by_queue = {row["original_queue"]: row for row in listed["dead_letters"]}
        assert set(by_queue) == {topology.workhours_queue, invoices}
        assert by_queue[invoices]["flow"] == "accounting_invoices"

    async def test_ingest_warns_only_when_no_dlq_exists(self, dlq: Dlq, tmp_path: Path) -> None:
        result = await dlq("ingest", env={"SEVERA_CONNECTOR_RABBITMQ__PREFIX": "t-nothing-here."})
        assert result.exit_code == 0, result.output
        assert "no DLQ on the broker" in result.stderr
        follow = await dlq("ingest", "--follow", env={"SEVERA_CONNECTOR_RABBITMQ__PREFIX": "t-nothing-here."})
        assert follow.exit_code == 2, follow.output
        assert one_line(follow.stderr), follow.stderr

    async def test_ingest_with_an_unreachable_broker_creates_no_store(self, dlq: Dlq, tmp_path: Path) -> None:
        result = await dlq("ingest", env=BROKER_DOWN)
        assert result.exit_code == 3, result.output
        assert one_line(result.stderr)
        assert not (tmp_path / "dlq.db").exists()

    async def test_an_unreachable_postgresql_store_is_one_line_and_exit_3(self, dlq: Dlq) -> None:
        down = {STORE_SETTING: "postgresql://postgres:secret@127.0.0.1:1/test"}
        result = await dlq("list", env=down)
        assert result.exit_code == 3, result.output
        assert one_line(result.stderr), result.stderr
        assert "cannot open the dead-letter store" in result.stderr
        assert "secret" not in result.stderr


async def dlq_depth(channel: AbstractChannel, names: Names) -> int:
    return await ready_count(channel, names.workhours_dlq)


class TestBrowse:
    async def test_list_filters_groups_and_counts(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 3)
        await park(channel, topology, 2, start=3, reason="unknown_user")
        await dlq.ingest()
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


LONG_MESSAGE = (
    "no work type with code 'NOPE' in Severa: add it to the mapping table (work_types) or correct the "
    "source system's code, then replay this dead letter"
)
NARROW = {"COLUMNS": "80", "NO_COLOR": "1"}
TESTS = Path(__file__).resolve().parents[1]


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


class TestListOutput:
    """``-o table`` fits 80 columns with one line per row, ``-o wide`` shows all, ``-o json`` is --json."""

    @pytest.fixture
    async def parked(self, dlq: Dlq, channel: AbstractChannel, topology: Names) -> list[dict[str, Any]]:
        for n in range(3):
            await park_event(channel, topology, event_dict(), **{"x-dl-message": f"{LONG_MESSAGE} #{n}"})
        await park(channel, topology, 2, start=3, reason="unknown_user")
        await dlq.ingest()
        listed = await dlq.json("list")
        rows: list[dict[str, Any]] = listed["dead_letters"]
        assert len(rows) == 5
        return rows

    async def test_the_table_fits_80_columns_one_line_per_dead_letter(
        self, dlq: Dlq, parked: list[dict[str, Any]]
    ) -> None:
        result = await dlq("list", env=NARROW)
        assert result.exit_code == 0, result.output
        assert widest(result.stdout) <= 80, result.stdout
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["id", "status", "last", "failure", "reason", "message"]
        for row in parked:
            (line,) = [line for line in lines if line.startswith(row["id"][:12])]
            assert row["reason"] in line
        assert any("no work type with" in line and line.endswith("…") for line in lines), result.stdout
        assert lines[-1] == "5 dead letters; details: dlq show <id>"

    async def test_wide_shows_every_column_in_full_on_one_line(
        self, dlq: Dlq, parked: list[dict[str, Any]]
    ) -> None:
        result = await dlq("list", "-o", "wide", env=NARROW)
        assert result.exit_code == 0, result.output
        header = result.stdout.splitlines()[0].split()
        assert header == [
            "id",
            "status",
            "last",
            "failure",
            "queue",
            "reason",
            "message",
            "tries",
            "replays",
            "group",
        ]
        for row in parked:
            (line,) = [line for line in result.stdout.splitlines() if line.startswith(row["id"][:12])]
            for value in (row["original_queue"], row["error_message"], row["group"], row["reason"]):
                assert value in line

    async def test_json_is_the_same_document_as_the_json_flag(
        self, dlq: Dlq, parked: list[dict[str, Any]]
    ) -> None:
        result = await dlq("list", "-o", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == await dlq.json("list")
        refused = await dlq("list", "-o", "wide", "--json")
        assert refused.exit_code == 2
        assert "contradicts" in refused.output

    async def test_groups_fit_80_columns_and_wide_shows_the_whole_example(
        self, dlq: Dlq, parked: list[dict[str, Any]]
    ) -> None:
        table = await dlq("list", "--group-by", "error", env=NARROW)
        assert table.exit_code == 0, table.output
        assert widest(table.stdout) <= 80, table.stdout
        groups = await dlq.json("list", "--group-by", "error")
        for group in groups:
            assert any(line.startswith(group["key"]) for line in table.stdout.splitlines())
        # the three long messages differ by their number, and numbers are part of a message's shape
        assert "4 groups, 5 dead letters" in " ".join(table.stdout.split())
        wide = await dlq("list", "--group-by", "error", "-o", "wide", env=NARROW)
        assert f"{LONG_MESSAGE} #0" in wide.stdout
        by_reason = await dlq("list", "--group-by", "reason", env=NARROW)
        assert widest(by_reason.stdout) <= 80
        assert by_reason.stdout.splitlines()[0].split()[:2] == ["reason", "count"]

    async def test_audit_fits_80_columns_and_has_the_same_json(
        self, dlq: Dlq, parked: list[dict[str, Any]]
    ) -> None:
        why = "looking at what a replay of the work-type failures would send, before the mapping fix"
        assert (await dlq("replay", "--all", "--dry-run", "--reason", why, env=NARROW)).exit_code == 0
        table = await dlq("audit", env=NARROW)
        assert table.exit_code == 0, table.output
        assert widest(table.stdout) <= 80, table.stdout
        assert len([line for line in table.stdout.splitlines() if "replay (dry run)" in line]) == 2
        wide = await dlq("audit", "-o", "wide", env=NARROW)
        assert why in wide.stdout
        assert json.loads((await dlq("audit", "-o", "json")).stdout) == await dlq.json("audit")

    async def test_a_dry_run_plan_fits_80_columns(self, dlq: Dlq, parked: list[dict[str, Any]]) -> None:
        result = await dlq("replay", "--all", "--dry-run", "--reason", "look", env=NARROW)
        assert result.exit_code == 0, result.output
        assert widest(result.stdout) <= 80, result.stdout
        assert "replay plan" in result.stdout

    async def test_piped_without_a_terminal_columns_or_term(
        self, dlq: Dlq, parked: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        """As in CI or ``| less``: a process whose stdin and stdout are no terminal, nothing set."""
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERM", "NO_COLOR", "LINES")}
        env = {**{k: v for k, v in env.items() if not k.startswith("SEVERA_CONNECTOR_")}, **dlq.env}
        env.pop("COLUMNS")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "connector", "dlq", "list", "--store-only"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=TESTS,  # no .env of the working copy
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "\x1b[" not in done.stdout
        assert widest(done.stdout) <= 80, done.stdout
        assert (
            len([line for line in done.stdout.splitlines() if line[:12] in {r["id"][:12] for r in parked}])
            == 5
        )


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
        await dlq.ingest()
        refused = await dlq("purge", "--error-code", "unknown_work_type", "--reason", "junk")
        assert refused.exit_code == 2
        assert "--yes" in refused.stderr
        purged = await dlq("purge", "--error-code", "unknown_work_type", "--reason", "junk", "--yes")
        assert purged.exit_code == 0, purged.output
        assert "purged 3 of 3" in purged.stderr
        assert (await dlq.json("list"))["total"] == 0
        kept = await dlq.json("list", "--status", "purged")
        assert kept["total"] == 3

    async def test_archive_sets_aside_and_restore_brings_back_without_deleting_anything(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 3)
        await dlq.ingest()
        unexplained = await dlq("archive", "--all")
        assert unexplained.exit_code == 2  # a reason is required: it goes into the audit log
        archived = await dlq("archive", "--error-code", "unknown_work_type", "--reason", "known noise")
        assert archived.exit_code == 0, archived.output
        assert "archived 3 of 3" in archived.stderr
        assert (await dlq.json("list"))["total"] == 0
        assert (await dlq.json("list", "--status", "archived"))["total"] == 3
        again = await dlq("archive", "--all", "--status", "archived", "--reason", "twice")
        assert again.exit_code == 1, again.output  # nothing moved: each row is named with why
        assert "already archived" in again.stderr
        restored = await dlq("restore", "--all", "--reason", "needed after all")
        assert restored.exit_code == 0, restored.output
        assert "restored 3 of 3" in restored.stderr
        assert (await dlq.json("list"))["total"] == 3
        audit = await dlq.json("audit")
        commands = [record["command"] for record in audit]
        assert "archive" in commands
        assert "restore" in commands

    async def test_an_export_imports_into_another_store(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names, tmp_path: Path
    ) -> None:
        await park(channel, topology, 4)
        await dlq.ingest()
        exported = tmp_path / "dead-letters.jsonl"
        result = await dlq("export", "--output", str(exported), "--reason", "ticket 42")
        assert result.exit_code == 0, result.output
        assert len(exported.read_text().splitlines()) == 4
        other = {"SEVERA_CONNECTOR_DLQ__STORE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
        refused = await dlq("import", str(exported), env=other)
        assert refused.exit_code == 2, refused.output  # an import fills a store; it does not make one
        await dlq.ingest(env=other)  # the DLQ is empty now: this only creates the other store
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
        await dlq.ingest()
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
        await dlq.ingest()
        result = await dlq("replay", "--all", "--canary", "2", "--reason", "try")
        assert result.exit_code == 1, result.output
        assert "stopped after the canary" in result.stderr
        assert (await dlq.json("list", "--status", "parked"))["total"] == 3

    async def test_the_audit_command_lists_who_did_what(
        self, dlq: Dlq, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 1)
        await dlq.ingest()
        assert (await dlq("replay", "--all", "--dry-run", "--reason", "look first")).exit_code == 0
        records = await dlq.json("audit")
        assert [(r["phase"], r["command"], r["dry_run"]) for r in records] == [
            ("finished", "replay", True),
            ("started", "replay", True),
        ]
        assert records[0]["operator"] == "ops-cli"
