"""Which dead letters a dlq command acts on: parsing what ops type, filter semantics, replay eligibility."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connector.dlq import codec
from connector.dlq.selection import (
    OPEN_STATUSES,
    Filter,
    HeaderMatch,
    ReplayCandidate,
    check_id_prefix,
    header_text,
    parse_header_match,
    parse_moment,
    parse_statuses,
    plan_replay,
)
from connector.errors import UsageError
from tests.dlq_factories import T0, record

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30m", NOW - dt.timedelta(minutes=30), id="thirty minutes ago"),
        pytest.param("2h", NOW - dt.timedelta(hours=2), id="two hours ago"),
        pytest.param(" 7D ", NOW - dt.timedelta(days=7), id="seven days ago, any case and spacing"),
        pytest.param("1.5h", NOW - dt.timedelta(minutes=90), id="fractions of a unit"),
        pytest.param("1w", NOW - dt.timedelta(weeks=1), id="a week ago"),
        pytest.param(
            "2026-11-20", dt.datetime(2026, 11, 20, tzinfo=dt.UTC), id="a bare date is its UTC midnight"
        ),
        pytest.param(
            "2026-11-20T14:00:00+02:00",
            dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC),
            id="an offset is honoured",
        ),
        pytest.param(
            "2026-11-20T14:00", dt.datetime(2026, 11, 20, 14, tzinfo=dt.UTC), id="no offset means UTC"
        ),
    ],
)
def test_moments_are_read_as_relative_or_absolute_times(text: str, expected: dt.datetime) -> None:
    assert parse_moment(text, now=NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("yesterday", id="words are not times"),
        pytest.param("5 parsecs", id="unknown units are refused"),
        pytest.param("", id="nothing is not a time"),
    ],
)
def test_unreadable_moments_are_usage_errors_that_show_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError, match="30m, 2h, 7d"):
        parse_moment(text, now=NOW)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([], OPEN_STATUSES, id="nothing given means the default"),
        pytest.param(["parked"], {"parked"}, id="one status"),
        pytest.param(["parked,replayed"], {"parked", "replayed"}, id="comma separated"),
        pytest.param(["parked", "Replayed"], {"parked", "replayed"}, id="repeated, any case"),
        pytest.param(["open"], {"parked", "replaying"}, id="open is parked and replaying"),
        pytest.param(["parked", "all"], set(), id="all means no status limit"),
    ],
)
def test_statuses_are_parsed_from_repeatable_options(values: list[str], expected: set[str]) -> None:
    assert parse_statuses(values, default=OPEN_STATUSES) == frozenset(expected)


def test_an_unknown_status_names_the_accepted_ones() -> None:
    with pytest.raises(UsageError, match="parked, replaying, replayed, purged, archived, open, all"):
        parse_statuses(["lost"], default=OPEN_STATUSES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("x-tenant=acme", HeaderMatch("x-tenant", "acme"), id="name and value"),
        pytest.param("x-tenant", HeaderMatch("x-tenant", None), id="a name alone asks for presence"),
        pytest.param("x-note=a=b", HeaderMatch("x-note", "a=b"), id="the value may contain ="),
        pytest.param("x-empty=", HeaderMatch("x-empty", ""), id="an empty value is a value"),
    ],
)
def test_header_matches_are_parsed(text: str, expected: HeaderMatch) -> None:
    assert parse_header_match(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("9FA26321", "9fa26321", id="prefixes are lower-cased"),
        pytest.param("9fa26321a4964d0f831f446544784160", "9fa26321a4964d0f831f446544784160", id="a full id"),
    ],
)
def test_id_prefixes_are_normalised(text: str, expected: str) -> None:
    assert check_id_prefix(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("9fa26", id="five characters are too few to be unique"),
        pytest.param("g-ff6307adf9f5", id="a group id is not a dead-letter id"),
        pytest.param("9fa2632%", id="wildcards are refused"),
    ],
)
def test_what_is_not_a_dead_letter_id_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        check_id_prefix(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("acme", "acme", id="strings as they are"),
        pytest.param(3, "3", id="integers as digits"),
        pytest.param(True, "true", id="booleans spelt as in JSON"),
        pytest.param(None, "null", id="void as null"),
        pytest.param(b"raw", "raw", id="byte arrays as UTF-8"),
    ],
)
def test_header_values_compare_as_their_json_spelling(value: Any, text: str) -> None:
    assert header_text(value) == text


ROW = record(
    id="a" * 32,
    headers=codec.encode_table({"x-tenant": "acme", "x-priority": 3, "x-flag": True}),
    last_failure_at=T0,
)


@pytest.mark.parametrize(
    ("selection", "matches"),
    [
        pytest.param(Filter(), True, id="the default filter takes a parked row"),
        pytest.param(Filter(statuses=frozenset({"replayed"})), False, id="a parked row is not replayed"),
        pytest.param(Filter(statuses=frozenset()), True, id="no status limit"),
        pytest.param(Filter(ids=("a" * 32,)), True, id="by its id"),
        pytest.param(Filter(ids=("b" * 32,)), False, id="another id"),
        pytest.param(Filter(queues=("q.other", "q.workhours")), True, id="one of several queues"),
        pytest.param(Filter(flows=("invoices",)), False, id="another flow"),
        pytest.param(Filter(error_classes=("UnknownReference",)), True, id="by error class"),
        pytest.param(Filter(reasons=("unknown_user",)), False, id="another reason code"),
        pytest.param(Filter(categories=("transient",)), False, id="another category"),
        pytest.param(Filter(groups=(ROW.group_id,)), True, id="by failure group"),
        pytest.param(Filter(text="WORK TYPE"), True, id="text in the message, any case"),
        pytest.param(Filter(text="unknown_work"), True, id="text in the reason code"),
        pytest.param(Filter(text="quota"), False, id="text found nowhere"),
        pytest.param(Filter(since=T0), True, id="since is inclusive"),
        pytest.param(Filter(until=T0), False, id="until is exclusive"),
        pytest.param(Filter(since=T0 + dt.timedelta(seconds=1)), False, id="failed before the range"),
        pytest.param(Filter(headers=(HeaderMatch("x-tenant", "acme"),)), True, id="a header with its value"),
        pytest.param(
            Filter(headers=(HeaderMatch("x-tenant", "other"),)), False, id="a header with another value"
        ),
        pytest.param(Filter(headers=(HeaderMatch("x-priority", "3"),)), True, id="a number header as text"),
        pytest.param(
            Filter(headers=(HeaderMatch("x-flag", "true"),)), True, id="a boolean header as JSON text"
        ),
        pytest.param(Filter(headers=(HeaderMatch("x-tenant"),)), True, id="a header that is present"),
        pytest.param(Filter(headers=(HeaderMatch("x-missing"),)), False, id="a header that is absent"),
        pytest.param(Filter(message_ids=(ROW.message_id or "",)), True, id="by message id"),
        pytest.param(Filter(replay_ids=("r1",)), False, id="not back from that replay"),
        pytest.param(
            Filter(queues=("q.workhours",), reasons=("unknown_user",)), False, id="criteria combine with AND"
        ),
    ],
)
def test_filters_match_by_every_criterion(selection: Filter, matches: bool) -> None:
    assert selection.matches(ROW) is matches


@pytest.mark.parametrize(
    ("selection", "narrows"),
    [
        pytest.param(Filter(), False, id="the default status alone selects everything open"),
        pytest.param(Filter(statuses=frozenset({"parked"})), False, id="a status alone does not narrow"),
        pytest.param(Filter(groups=("g-1",)), True, id="a group narrows"),
        pytest.param(Filter(text="x"), True, id="text narrows"),
        pytest.param(Filter(since=T0), True, id="a time range narrows"),
    ],
)
def test_purge_and_replay_can_tell_a_filter_from_everything(selection: Filter, narrows: bool) -> None:
    assert selection.narrows is narrows


def test_a_filter_describes_itself_for_the_audit_without_empty_criteria() -> None:
    described = Filter(groups=("g-1",), since=T0, headers=(HeaderMatch("x-t", "a"),)).describe()
    assert described == {
        "statuses": ["parked", "replaying"],
        "groups": ["g-1"],
        "since": T0.isoformat(),
        "headers": ["x-t=a"],
    }


def candidate(id_: str, status: str, replay_id: str | None = None, has_body: bool = True) -> ReplayCandidate:
    return ReplayCandidate(id=id_, status=status, replay_id=replay_id, has_body=has_body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("row", "again", "sent", "resumed", "why"),
    [
        pytest.param(candidate("a", "parked"), False, True, False, None, id="a parked row is sent"),
        pytest.param(
            candidate("a", "replaying", "dead-run"),
            False,
            True,
            True,
            None,
            id="a row left replaying by a dead run is resumed",
        ),
        pytest.param(
            candidate("a", "replaying", "live-run"),
            False,
            False,
            False,
            "being replayed by another run",
            id="a row of a live run is left to it",
        ),
        pytest.param(
            candidate("a", "replayed"),
            False,
            False,
            False,
            "already replayed (use --again)",
            id="a replayed row is not sent twice by accident",
        ),
        pytest.param(
            candidate("a", "replayed"), True, True, False, None, id="a replayed row is sent with --again"
        ),
        pytest.param(
            candidate("a", "purged", has_body=False), True, False, False, "purged", id="purged never"
        ),
    ],
)
def test_replay_eligibility_row_by_row(
    row: ReplayCandidate, again: bool, sent: bool, resumed: bool, why: str | None
) -> None:
    plan = plan_replay([row], again=again, live_runs={"live-run"})
    assert (row.id in plan.eligible) is sent
    assert (row.id in plan.resumed) is resumed
    assert plan.skipped.get(row.id) == why


def test_a_replay_plan_keeps_the_selection_order_and_counts_what_it_skips() -> None:
    rows = [
        candidate("c", "parked"),
        candidate("a", "replayed"),
        candidate("b", "parked"),
        candidate("d", "replayed"),
    ]
    plan = plan_replay(rows, again=False, live_runs=())
    assert plan.eligible == ("c", "b")
    assert plan.skipped_by_reason == {"already replayed (use --again)": 2}
