"""Editing dead letters, moving them between stores, and where the store lives by default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.config import DlqSettings, default_dlq_store_url
from connector.dlq.contracts import CONTRACTS, WORK_HOURS_FLOW, contract_for
from connector.dlq.editing import apply_assignments, normalised, parse_assignment, validation_errors
from connector.dlq.replay import limiter_for
from connector.dlq.transfer import export_lines, read_lines
from connector.errors import UsageError
from connector.flows.work_hours import FLOW
from connector.topology import Names
from tests.dlq_factories import T0, record
from tests.factories import event_json


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        pytest.param("work_type_code=DEV", ["work_type_code"], "DEV", id="text stays text"),
        pytest.param("case_number=1001", ["case_number"], 1001, id="a JSON number is a number"),
        pytest.param("hours=7.5", ["hours"], 7.5, id="a JSON decimal is a number"),
        pytest.param("billable=false", ["billable"], False, id="a JSON boolean is a boolean"),
        pytest.param("description=null", ["description"], None, id="null clears a field"),
        pytest.param('user_code="007"', ["user_code"], "007", id="quotes force a string"),
        pytest.param("meta.tags=[1,2]", ["meta", "tags"], [1, 2], id="dotted paths reach nested fields"),
        pytest.param("note=a=b", ["note"], "a=b", id="the value may contain ="),
    ],
)
def test_assignments_read_values_as_json_when_they_parse(text: str, path: list[str], value: Any) -> None:
    assert parse_assignment(text) == (path, value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("no-equals-sign", id="without = there is no value"),
        pytest.param("=value", id="a value needs a field"),
        pytest.param("a..b=1", id="empty path segments are refused"),
    ],
)
def test_malformed_assignments_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_assignment(text)


def test_assignments_change_only_what_they_name_and_report_old_and_new() -> None:
    body, changes = apply_assignments(
        event_json(work_type_code="dev"), ["work_type_code=DEV", "extra.note=x"]
    )
    document = json.loads(body)
    assert document["work_type_code"] == "DEV"
    assert document["extra"] == {"note": "x"}
    assert document["hours"] == "7.5"
    assert changes == {
        "work_type_code": {"from": "dev", "to": "DEV"},
        "extra.note": {"from": None, "to": "x"},
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{oops", id="a body that is not JSON"),
        pytest.param(b"[1, 2]", id="a JSON array"),
    ],
)
def test_assignments_need_a_json_object(body: bytes) -> None:
    with pytest.raises(UsageError, match="--set needs a JSON object"):
        apply_assignments(body, ["a=1"])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(event_json(), None, id="a valid event passes"),
        pytest.param(event_json(hours="lots"), "hours", id="a bad value is named by its field"),
        pytest.param(event_json(case_number=...), "case_number", id="a missing required field is named"),
        pytest.param(b"{oops", "json", id="broken JSON is refused"),
    ],
)
def test_edits_are_validated_against_the_flow_s_schema(body: bytes, problem: str | None) -> None:
    errors = validation_errors(body, CONTRACTS[WORK_HOURS_FLOW])
    if problem is None:
        assert errors == []
    else:
        assert any(problem in e.lower() for e in errors), errors


def test_a_flow_without_a_schema_accepts_any_edit() -> None:
    assert validation_errors(b"anything", None) == []


def test_editor_output_goes_back_as_compact_json_or_as_typed() -> None:
    assert normalised('{\n  "a": 1\n}\n') == b'{"a": 1}'
    assert normalised("plain text\n") == b"plain text\n"


def test_the_dlq_tools_know_the_work_hours_flow_by_its_runtime_name() -> None:
    assert WORK_HOURS_FLOW == FLOW
    names = Names(prefix="p.")
    assert contract_for(record(flow=None, original_queue="p.q.workhours"), names) is CONTRACTS[FLOW]
    assert contract_for(record(flow=None, original_queue="p.q.other"), names) is None


def test_an_export_imports_back_as_the_same_dead_letter_parked() -> None:
    original = record(
        status="replayed",
        replay_count=2,
        body=b"\xff\x00 not utf-8",
        original_body=b'{"v": 1}',
        edit_count=1,
        replayed_from="b" * 32,
    )
    (line,) = export_lines([original])
    (back,) = read_lines([line, ""], now=T0)
    assert back.id == original.id
    assert back.body == original.body
    assert back.original_body == original.original_body
    assert back.headers == original.headers
    assert (back.status, back.replay_count, back.edit_count) == ("parked", 0, 1)
    assert back.group_id == original.group_id
    assert back.replayed_from == original.replayed_from


def test_an_import_with_bad_lines_imports_nothing_and_names_every_line() -> None:
    good = next(export_lines([record()]))
    purged = next(export_lines([record(body=None, status="purged")]))
    with pytest.raises(UsageError) as caught:
        read_lines([good, "{}", purged], now=T0)
    assert "line 2" in caught.value.message
    assert "line 3" in caught.value.message
    assert "line 1" not in caught.value.message


@pytest.mark.parametrize(
    ("state_url", "store_url"),
    [
        pytest.param(
            "sqlite:///severa-connector-state.db",
            "sqlite:///severa-connector-dlq.db",
            id="next to a relative ledger",
        ),
        pytest.param(
            "sqlite:////var/lib/sc/state.db",
            "sqlite:////var/lib/sc/severa-connector-dlq.db",
            id="absolute path",
        ),
        pytest.param(
            "sqlite:///data/state.db", "sqlite:///data/severa-connector-dlq.db", id="a relative directory"
        ),
        pytest.param("sqlite:///:memory:", "sqlite:///:memory:", id="in memory stays in memory"),
        pytest.param("memory://", "sqlite:///:memory:", id="the memory ledger"),
        pytest.param(
            "postgresql://u:p@db:5432/connector",
            "postgresql://u:p@db:5432/connector",
            id="the ledger's database",
        ),
    ],
)
def test_the_store_lives_next_to_the_ledger_by_default(state_url: str, store_url: str) -> None:
    assert default_dlq_store_url(state_url) == store_url


@pytest.mark.parametrize(
    ("dlq", "state_url", "audit_log"),
    [
        pytest.param(
            {},
            "sqlite:////var/lib/sc/state.db",
            "/var/lib/sc/severa-connector-dlq-audit.jsonl",
            id="beside a sqlite store",
        ),
        pytest.param({}, "postgresql://db/connector", None, id="stderr with a postgresql store"),
        pytest.param({"audit_log": "-"}, "sqlite:///state.db", None, id="a dash means stderr"),
        pytest.param(
            {"audit_log": "/logs/a.jsonl"}, "postgresql://db/c", "/logs/a.jsonl", id="an explicit file"
        ),
    ],
)
def test_the_audit_log_goes_beside_the_store_unless_told(
    dlq: dict[str, str], state_url: str, audit_log: str | None
) -> None:
    settings = DlqSettings(state_url=state_url, dlq=dlq)
    assert settings.dlq_audit_log() == (Path(audit_log) if audit_log else None)


@pytest.mark.parametrize(
    ("rate", "capacity", "period"),
    [
        pytest.param(300.0, 30.0, 0.1, id="a tenth of a second of burst at high rates"),
        pytest.param(5.0, 1.0, 0.2, id="one at a time at low rates"),
        pytest.param(0.5, 1.0, 2.0, id="slower than one per second"),
    ],
)
def test_the_replay_rate_limit_allows_a_small_burst(rate: float, capacity: float, period: float) -> None:
    limiter = limiter_for(rate)
    assert limiter.max_rate == pytest.approx(capacity)
    assert limiter.time_period == pytest.approx(period)


def test_every_flow_the_service_can_run_has_a_dead_letter_contract_on_its_queue() -> None:
    from connector.dlq.contracts import CONTRACTS
    from connector.topology import Names, accounting_flow_queues, work_hours_queue

    names = Names(prefix="p.")
    for flow in (work_hours_queue(names), *accounting_flow_queues(names)):
        assert flow.flow in CONTRACTS, flow.flow
        assert CONTRACTS[flow.flow].queue(names) == flow.queue
