"""``dlq export`` / ``dlq import``: dead letters as JSON lines (:class:`schemas.dlq.DeadLetterExport`).

An export is a faithful copy -- ids, headers, properties, the body (and the original body of an
edited one), the failure and what ops did -- so it can be archived before a purge, attached to a
ticket, or imported into another store (staging, a colleague's laptop). Import parks every row it
did not know (status ``parked``, replay state reset: replaying is this store's decision) and
leaves ids it already holds untouched, so importing a file twice is harmless.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Literal

import pydantic

from connector.dlq.grouping import group_id
from connector.dlq.records import DeadLetterRecord
from connector.errors import UsageError
from schemas.dlq import DeadLetterExport

Encoding = Literal["utf-8", "base64"]


def encode_body(body: bytes | None) -> tuple[str | None, Encoding]:
    """UTF-8 text when the body is (readable in the file), base64 otherwise (lossless)."""
    if body is None:
        return None, "utf-8"
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def decode_body(text: str | None, encoding: Encoding) -> bytes | None:
    if text is None:
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")


def to_export(record: DeadLetterRecord) -> DeadLetterExport:
    body, body_encoding = encode_body(record.body)
    original, original_encoding = encode_body(record.original_body)
    return DeadLetterExport(
        id=record.id,
        status=record.status,
        dead_letter_queue=record.dead_letter_queue,
        original_queue=record.original_queue,
        original_exchange=record.original_exchange,
        original_routing_key=record.original_routing_key,
        flow=record.flow,
        source=record.source,
        message_id=record.message_id,
        correlation_id=record.correlation_id,
        type=record.message_type,
        content_type=record.content_type,
        properties=record.properties,
        headers=record.headers,
        body=body,
        body_encoding=body_encoding,
        original_body=original,
        original_body_encoding=original_encoding,
        category=record.category,
        error_class=record.error_class,
        reason=record.reason,
        error_message=record.error_message,
        traceback=record.traceback,
        attempts=record.attempts,
        first_failure_at=record.first_failure_at,
        last_failure_at=record.last_failure_at,
        connector_version=record.connector_version,
        pod=record.pod,
        trace_id=record.trace_id,
        group_id=record.group_id,
        ingested_at=record.ingested_at,
        replayed_from=record.replayed_from,
        prior_replay_id=record.prior_replay_id,
        prior_replays=record.prior_replays,
        replay_count=record.replay_count,
        replayed_at=record.replayed_at,
        replayed_to=record.replayed_to,
        edit_count=record.edit_count,
    )


def export_lines(records: Iterable[DeadLetterRecord]) -> Iterator[str]:
    for record in records:
        yield to_export(record).model_dump_json()


def from_export(item: DeadLetterExport, *, now: dt.datetime) -> DeadLetterRecord:
    """A parked row for this store (the group is recomputed with this version's rules)."""
    body = decode_body(item.body, item.body_encoding)
    if body is None:
        raise UsageError(f"dead letter {item.id} has no body (it was purged): nothing to import")
    return DeadLetterRecord(
        id=item.id,
        dead_letter_queue=item.dead_letter_queue,
        original_queue=item.original_queue,
        original_exchange=item.original_exchange,
        original_routing_key=item.original_routing_key,
        flow=item.flow,
        source=item.source,
        category=item.category,
        error_class=item.error_class,
        reason=item.reason,
        error_message=item.error_message,
        traceback=item.traceback,
        attempts=item.attempts,
        first_failure_at=item.first_failure_at,
        last_failure_at=item.last_failure_at,
        group_id=group_id(
            queue=item.original_queue,
            error_class=item.error_class,
            reason=item.reason,
            message=item.error_message,
        ),
        connector_version=item.connector_version,
        pod=item.pod,
        trace_id=item.trace_id,
        message_id=item.message_id,
        correlation_id=item.correlation_id,
        message_type=item.type,
        content_type=item.content_type,
        properties=dict(item.properties),
        headers=dict(item.headers),
        body=body,
        original_body=decode_body(item.original_body, item.original_body_encoding),
        edit_count=item.edit_count,
        ingested_at=now,
        replayed_from=item.replayed_from,
        prior_replay_id=item.prior_replay_id,
        prior_replays=item.prior_replays,
    )


def read_lines(lines: Iterable[str], *, now: dt.datetime) -> list[DeadLetterRecord]:
    """Every line parsed, or :class:`UsageError` naming each bad line: an import is all or nothing."""
    records: list[DeadLetterRecord] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(from_export(DeadLetterExport.model_validate_json(line), now=now))
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(line)"
            problems.append(f"line {number}: {where}: {first['msg']}")
        except UsageError as exc:
            problems.append(f"line {number}: {exc.message}")
        if len(problems) >= 20:
            problems.append("… (stopped after 20 problems)")
            break
    if problems:
        raise UsageError("nothing imported; the file has problems:\n  " + "\n  ".join(problems))
    return records
