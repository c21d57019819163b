"""Reading a DLQ back (ours, the broker's, a stranger's) and building what a replay sends."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from connector.dlq import codec
from connector.dlq.envelope import STRIPPED_ON_REPLAY, Envelope, content_id, parse_dead_letter, replay_message
from connector.dlq.grouping import GroupBy, group_id, message_shape
from schemas.dead_letter import DeadLetterHeaders
from tests.dlq_factories import T0, record

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def ours(**overrides: Any) -> dict[str, Any]:
    headers = DeadLetterHeaders(
        dead_letter_id="d" * 32,
        category="permanent",
        error_class="UnknownReference",
        reason="unknown_work_type",
        message="no work type with code 'NOPE'",
        traceback="Traceback …",
        attempts=3,
        first_failure_at=T0,
        last_failure_at=T0 + dt.timedelta(minutes=5),
        original_exchange="workhours",
        original_routing_key="workhour.created",
        original_queue="q.workhours",
        flow="work_hours",
        connector_version="0.1.0",
        pod="pod-7",
        trace_id="corr-1",
    ).to_amqp()
    return {**headers, **overrides}


def envelope(headers: dict[str, Any], **fields: Any) -> Envelope:
    values: dict[str, Any] = {
        "body": b'{"event_id": "e-1"}',
        "routing_key": "q.workhours",
        "exchange": "dlx",
        "headers": headers,
        "message_id": "e-1",
        "correlation_id": "corr-1",
        "content_type": "application/json",
    }
    values.update(fields)
    return Envelope(**values)


class TestParsing:
    def test_our_envelope_gives_its_id_failure_and_coordinates(self) -> None:
        parsed = parse_dead_letter(envelope(ours()), dead_letter_queue="q.workhours.dlq", now=NOW)
        assert parsed.id == "d" * 32
        assert parsed.source == "connector"
        assert (parsed.category, parsed.error_class, parsed.reason) == (
            "permanent",
            "UnknownReference",
            "unknown_work_type",
        )
        assert parsed.attempts == 3
        assert parsed.first_failure_at == T0
        assert parsed.last_failure_at == T0 + dt.timedelta(minutes=5)
        assert (parsed.original_queue, parsed.original_exchange, parsed.original_routing_key) == (
            "q.workhours",
            "workhours",
            "workhour.created",
        )
        assert (parsed.flow, parsed.pod, parsed.trace_id) == ("work_hours", "pod-7", "corr-1")
        assert parsed.body == b'{"event_id": "e-1"}'
        assert parsed.status == "parked"

    def test_an_envelope_from_before_x_dl_id_gets_a_stable_id_from_its_content(self) -> None:
        headers = {k: v for k, v in ours().items() if k != "x-dl-id"}
        first = parse_dead_letter(envelope(headers), dead_letter_queue="q.workhours.dlq", now=NOW)
        redelivered = parse_dead_letter(
            envelope({**headers, "x-delivery-count": 1}), dead_letter_queue="q.workhours.dlq", now=NOW
        )
        assert first.id == redelivered.id
        assert len(first.id) == 32

    def test_the_broker_s_delivery_limit_dead_letter_is_described_from_x_death(self) -> None:
        deaths = [
            {
                "queue": "q.workhours",
                "reason": "delivery_limit",
                "count": 1,
                "exchange": "workhours",
                "routing-keys": ["workhour.created"],
                "time": T0,
            }
        ]
        parsed = parse_dead_letter(
            envelope({"x-death": deaths, "x-delivery-count": 20}),
            dead_letter_queue="q.workhours.dlq",
            now=NOW,
            flows_by_queue={"q.workhours": "work_hours"},
        )
        assert parsed.source == "broker"
        assert parsed.reason == "delivery_limit"
        assert parsed.error_class == "BrokerDeadLettered"
        assert "delivered too many times" in parsed.error_message
        assert (parsed.original_queue, parsed.original_routing_key, parsed.flow) == (
            "q.workhours",
            "workhour.created",
            "work_hours",
        )
        assert parsed.attempts == 20
        assert parsed.first_failure_at == T0

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            pytest.param({}, "unknown", id="a message published to the DLQ by hand"),
            pytest.param(
                {"x-dl-reason": "x", "x-dl-attempts": "many"}, "invalid_envelope", id="mangled x-dl headers"
            ),
        ],
    )
    def test_what_is_not_a_dead_letter_envelope_is_still_kept(
        self, headers: dict[str, Any], reason: str
    ) -> None:
        parsed = parse_dead_letter(envelope(headers), dead_letter_queue="q.workhours.dlq", now=NOW)
        assert parsed.source == "unknown"
        assert parsed.reason == reason
        assert parsed.original_queue == "q.workhours"  # the DLX routing key names it
        assert parsed.body == b'{"event_id": "e-1"}'

    def test_a_failed_replay_links_back_to_the_dead_letter_it_came_from(self) -> None:
        headers = ours(**{"x-replayed-from": "a" * 32, "x-replay-id": "r-1", "x-replay-count": 2})
        parsed = parse_dead_letter(envelope(headers), dead_letter_queue="q.workhours.dlq", now=NOW)
        assert (parsed.replayed_from, parsed.prior_replay_id, parsed.prior_replays) == ("a" * 32, "r-1", 2)

    def test_content_ids_differ_when_anything_differs(self) -> None:
        base = envelope({"x-death": [{"queue": "q", "time": T0}]})
        other_body = envelope({"x-death": [{"queue": "q", "time": T0}]}, body=b"{}")
        other_time = envelope({"x-death": [{"queue": "q", "time": T0 + dt.timedelta(seconds=1)}]})
        ids = {content_id(e, "q.dlq") for e in (base, other_body, other_time)}
        assert len(ids) == 3


class TestReplayMessage:
    def test_a_replay_strips_the_failure_and_retry_state_and_says_where_it_comes_from(self) -> None:
        headers = {
            **ours(),
            "x-retry-step": 2,
            "x-attempts": 6,
            "x-retry-reason": "severa_unavailable",
            "x-death": [{"queue": "q.workhours"}],
            "x-delivery-count": 4,
            "producer": "tracker",
            "x-replay-count": 1,
        }
        row = record(headers=codec.encode_table(headers), prior_replays=1, replay_count=1)
        message = replay_message(row, replay_id="r-2", target_queue="q.workhours", now=NOW)
        assert not [k for k in message.headers if k.startswith("x-dl-") or k in STRIPPED_ON_REPLAY - _ADDED]
        assert message.headers["producer"] == "tracker"
        assert message.headers["x-replay-count"] == 3  # replayed once before it failed, once since
        assert message.headers["x-replay-id"] == "r-2"
        assert message.headers["x-replayed-from"] == row.id
        assert message.headers["x-replayed-at"] == "2026-11-24T12:00:00Z"
        assert message.routing_key == "q.workhours"
        assert (message.message_id, message.body) == (row.message_id, row.body)

    def test_the_producer_s_properties_go_back_with_the_message(self) -> None:
        properties = codec.encode_table({"timestamp": T0, "app_id": "tracker", "priority": 5, "user_id": "x"})
        message = replay_message(record(properties=properties), replay_id="r", target_queue="q", now=NOW)
        assert (message.timestamp, message.app_id, message.priority) == (T0, "tracker", 5)

    def test_a_purged_dead_letter_cannot_be_replayed(self) -> None:
        with pytest.raises(ValueError, match="purged"):
            replay_message(record(body=None), replay_id="r", target_queue="q", now=NOW)


_ADDED = frozenset({"x-replay-count", "x-replay-id", "x-replayed-at", "x-replayed-from"})


@pytest.mark.parametrize(
    ("value"),
    [
        pytest.param("text", id="a string"),
        pytest.param(42, id="an integer"),
        pytest.param(1.5, id="a float"),
        pytest.param(True, id="a boolean"),
        pytest.param(None, id="void"),
        pytest.param(T0, id="a timestamp"),
        pytest.param(b"\x00\xff", id="a byte array"),
        pytest.param(Decimal("7.50"), id="a decimal keeps its scale"),
        pytest.param([1, "a", T0], id="an array of mixed values"),
        pytest.param({"queue": "q", "time": T0, "routing-keys": ["k"]}, id="a table like x-death"),
        pytest.param({"$ts": "not a tag", "n": 1}, id="a table whose key looks like a tag"),
        pytest.param({"$bytes": "QQ=="}, id="a one-key table that looks exactly like a tag"),
    ],
)
def test_header_values_survive_the_store_unchanged(value: Any) -> None:
    stored = json.loads(json.dumps(codec.encode(value)))
    assert codec.decode(stored) == value


@pytest.mark.parametrize(
    ("message", "shape"),
    [
        pytest.param("no work type with code 'NOPE'", "no work type with code 'NOPE'", id="codes are kept"),
        pytest.param(
            "entry 5f0c6b1e-1d2a-4c3b-9e8f-0123456789ab is locked",
            "entry <uuid> is locked",
            id="uuids are masked",
        ),
        pytest.param(
            "at 2026-11-20T14:03:12.5+02:00 it broke", "at <time> it broke", id="timestamps are masked"
        ),
        pytest.param("day 2026-11-20 is closed", "day <date> is closed", id="dates are masked"),
        pytest.param("object at 0x7f3a9c0d1e20 failed", "object at <addr> failed", id="addresses are masked"),
        pytest.param(
            "token 9f86d081884c7d659a2feaa0c55ad015 bad", "token <hex> bad", id="long hex ids are masked"
        ),
        pytest.param("case 1001 is closed", "case 1001 is closed", id="numbers that name a cause are kept"),
        pytest.param("a  \n b", "a b", id="whitespace is collapsed"),
    ],
)
def test_message_shapes_mask_what_identifies_one_message(message: str, shape: str) -> None:
    assert message_shape(message) == shape


def test_one_group_for_many_messages_of_the_same_failure_and_another_for_another_cause() -> None:
    def gid(message: str, reason: str = "severa_validation") -> str:
        return group_id(queue="q.workhours", error_class="SeveraRejected", reason=reason, message=message)

    same = {
        gid(f"entry {u} is locked")
        for u in ("5f0c6b1e-1d2a-4c3b-9e8f-0123456789ab", "0" * 8 + "-1111-2222-3333-" + "4" * 12)
    }
    assert len(same) == 1
    assert gid("entry x is locked") != gid("entry x is locked", reason="other")
    assert next(iter(same)).startswith("g-")


def test_every_group_by_names_a_store_column() -> None:
    assert {g.column for g in GroupBy} == {
        "group_id",
        "reason",
        "error_class",
        "original_queue",
        "flow",
        "category",
        "status",
    }
