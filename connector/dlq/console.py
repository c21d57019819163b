"""How the ``dlq`` commands look: tables for people, plain JSON documents for scripts.

The listings (``list``, ``list --group-by``, ``audit``) are :class:`~connector.cli_output.Listing`
objects, laid out by :mod:`connector.cli_output` for ``-o table`` (the terminal's width, 80 without one) or
``-o wide`` (every column in full).

JSON output goes to stdout with nothing else on it (progress bars, notes and warnings go to
stderr), so ``severa-connector dlq list --json | jq …`` always works.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from connector.cli_output import Cell, Column, Listing, OutputFormat
from connector.dlq import codec
from connector.dlq.grouping import GroupBy
from connector.dlq.ingest import IngestReport
from connector.dlq.operations import ReplayOutcome, Shown
from connector.dlq.records import DeadLetterRecord, Group, StoreEvent
from connector.dlq.transfer import encode_body
from schemas.dlq import DlqAuditRecord

SHORT_ID = 12
_MESSAGE_WIDTH = 70
_STATUS_STYLE = {"parked": "yellow", "replaying": "cyan", "replayed": "green", "purged": "dim"}


def when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def clip(text: str, width: int = _MESSAGE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def ingest_note(report: IngestReport) -> str:
    """What one ``dlq ingest`` did, on one line."""
    notes = [
        f"ingested {report.stored} new dead letter{'s' if report.stored != 1 else ''}"
        + (f" from {', '.join(report.per_queue)}" if report.per_queue else "")
        + (f" ({report.already_stored} already stored)" if report.already_stored else "")
    ]
    if report.stopped_early:
        notes.append("[yellow]the DLQ kept filling; ingest stopped at its time limit (run it again)[/]")
    if report.missing_queues and len(report.missing_queues) == report.queues_asked:
        # Every DLQ missing: nothing ever ran under this prefix. A few missing is normal (the
        # accounting flows' queues exist only where accounting is on).
        notes.append(
            f"[yellow]no DLQ on the broker ({', '.join(report.missing_queues)}): has the connector run "
            "with this prefix?[/]"
        )
    return "; ".join(notes)


def waiting_note(waiting: dict[str, int]) -> str | None:
    """Dead letters still in the broker: the store does not show them yet, so say so."""
    parts = [f"{n} dead letter{'s' if n != 1 else ''} still in {queue}" for queue, n in waiting.items() if n]
    if not parts:
        return None
    return (
        f"[yellow]note:[/] {', '.join(parts)}, not yet ingested -- is the connector running? "
        "(`severa-connector dlq ingest` takes them in now)"
    )


# -- list ------------------------------------------------------------------------------------------

#: The columns of ``dlq list``: in an 80-column ``table``, id, status, last failure, reason and as
#: much of the message as fits; the rest as the terminal allows (``-o wide``: all of them).
RECORD_COLUMNS: Final = (
    Column("id"),
    Column("status"),
    Column("last failure"),
    Column("queue", priority=5, max_width=24),
    Column("reason", priority=1, max_width=24),
    Column("message", priority=2, flex=True),
    Column("tries", justify="right", priority=4),
    Column("replays", justify="right", priority=6),
    Column("group", priority=3),
)


def when_compact(moment: dt.datetime | None) -> str:
    """A moment in 12 characters (``05-01 12:00Z``): in a table, the year and seconds rarely matter."""
    if moment is None:
        return "-"
    return moment.astimezone(dt.UTC).strftime("%m-%d %H:%MZ")


def _stamp(output: OutputFormat) -> Callable[[dt.datetime | None], str]:
    return when if output is OutputFormat.WIDE else when_compact


def records_listing(records: Sequence[DeadLetterRecord], total: int, output: OutputFormat) -> Listing:
    stamp = _stamp(output)
    rows = [
        (
            r.id[:SHORT_ID],
            Text(r.status, style=_STATUS_STYLE.get(r.status, "")),
            stamp(r.last_failure_at),
            r.original_queue,
            r.reason,
            r.error_message,
            str(r.attempts),
            str(r.prior_replays + r.replay_count),
            r.group_id,
        )
        for r in records
    ]
    shown = len(records)
    footer = (
        f"{total} dead letter{'s' if total != 1 else ''}"
        + (f", showing the first {shown} (--limit)" if shown < total else "")
        + "; details: dlq show <id>"
    )
    return Listing(RECORD_COLUMNS, rows, footer=footer)


def groups_listing(groups: Sequence[Group], by: GroupBy, output: OutputFormat) -> Listing:
    stamp = _stamp(output)
    columns: list[Column] = [
        Column("group" if by is GroupBy.ERROR else by.value, flex=by is not GroupBy.ERROR),
        Column("count", justify="right"),
        Column("first failure", priority=5),
        Column("last failure", priority=1),
    ]
    if by is GroupBy.ERROR:
        columns += [
            Column("queue", priority=4, max_width=24),
            Column("error class", priority=3, max_width=20),
            Column("reason", priority=1, max_width=24),
            Column("example message", priority=2, flex=True),
        ]
    rows: list[list[Cell]] = []
    for g in groups:
        row: list[Cell] = [g.key or "-", str(g.count), stamp(g.first_failure_at), stamp(g.last_failure_at)]
        if by is GroupBy.ERROR:
            row += [g.queue, g.error_class, g.reason, g.example_message]
        rows.append(row)
    total = sum(g.count for g in groups)
    footer = f"{len(groups)} group{'s' if len(groups) != 1 else ''}, {total} dead letters" + (
        '\nreplay one: dlq replay --group <group> --reason "…" --dry-run' if by is GroupBy.ERROR else ""
    )
    return Listing(columns, rows, footer=footer)


def record_summary(r: DeadLetterRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "status": r.status,
        "group": r.group_id,
        "dead_letter_queue": r.dead_letter_queue,
        "original_queue": r.original_queue,
        "flow": r.flow,
        "source": r.source,
        "category": r.category,
        "error_class": r.error_class,
        "reason": r.reason,
        "error_message": r.error_message,
        "attempts": r.attempts,
        "first_failure_at": r.first_failure_at.isoformat(),
        "last_failure_at": r.last_failure_at.isoformat(),
        "message_id": r.message_id,
        "correlation_id": r.correlation_id,
        "body_size": r.body_size,
        "edit_count": r.edit_count,
        "replayed_from": r.replayed_from,
        "prior_replays": r.prior_replays,
        "replay_count": r.replay_count,
        "replay_id": r.replay_id,
        "replayed_at": r.replayed_at.isoformat() if r.replayed_at else None,
        "replayed_to": r.replayed_to,
        "last_error": r.last_error,
    }


def group_summary(g: Group, by: GroupBy) -> dict[str, Any]:
    return {
        "by": by.value,
        "key": g.key,
        "count": g.count,
        "first_failure_at": g.first_failure_at.isoformat(),
        "last_failure_at": g.last_failure_at.isoformat(),
        "queue": g.queue,
        "error_class": g.error_class,
        "reason": g.reason,
        "example_id": g.example_id,
        "example_message": g.example_message,
    }


# -- show ------------------------------------------------------------------------------------------


def body_renderable(body: bytes | None, content_type: str | None) -> RenderableType:
    if body is None:
        return Text("(purged: the body is gone)", style="dim")
    try:
        pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        text, encoding = encode_body(body)
        return Text((text or "") if encoding == "utf-8" else f"(binary, base64) {text}")
    return Syntax(pretty, "json", word_wrap=True, background_color="default")


def show_renderables(shown: Shown) -> list[RenderableType]:
    r = shown.record
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in (
        ("id", r.id),
        ("status", r.status + (f" (replay {r.replay_id})" if r.status == "replaying" else "")),
        ("group", r.group_id),
        ("queue", f"{r.original_queue}  (from {r.dead_letter_queue})"),
        ("published to", f"{r.original_exchange or '(default)'} / {r.original_routing_key or '-'}"),
        ("flow", r.flow or "-"),
        ("dead-lettered by", r.source + (f", pod {r.pod}, version {r.connector_version}" if r.pod else "")),
        ("failure", f"{r.category} · {r.error_class} · {r.reason}"),
        ("message", r.error_message),
        ("attempts", str(r.attempts)),
        ("first / last failure", f"{when(r.first_failure_at)} / {when(r.last_failure_at)}"),
        ("message_id", r.message_id or "-"),
        ("correlation_id", r.correlation_id or "-"),
        ("trace id", r.trace_id or "-"),
        ("type / content type", f"{r.message_type or '-'} / {r.content_type or '-'}"),
        ("replays", f"{r.prior_replays} before this failure, {r.replay_count} from this dead letter"),
        ("edited", f"{r.edit_count} time(s), original body kept" if r.edit_count else "no"),
    ):
        facts.add_row(label, value)
    if r.last_error:
        facts.add_row("last replay error", Text(r.last_error, style="red"))
    headers = Table(title="headers", title_justify="left")
    headers.add_column("name", no_wrap=True)
    headers.add_column("value", overflow="fold")
    decoded = codec.decode_table(r.headers)
    for name in sorted(decoded):
        if name == "x-dl-traceback":
            continue
        value = decoded[name]
        headers.add_row(
            name, json.dumps(codec.encode(value), ensure_ascii=False) if not isinstance(value, str) else value
        )
    parts: list[RenderableType] = [
        Panel(facts, title=f"dead letter {r.id[:SHORT_ID]}", title_align="left"),
        headers,
        Panel(body_renderable(r.body, r.content_type), title="body", title_align="left"),
    ]
    if r.traceback:
        parts.append(Panel(Text(r.traceback.rstrip()), title="traceback", title_align="left"))
    parts.append(history_table(r, shown.related, shown.events))
    return parts


def history_table(
    r: DeadLetterRecord, related: Sequence[DeadLetterRecord], events: Sequence[StoreEvent]
) -> Table:
    """Every failure of this message (this one marked) and everything done to this dead letter."""
    table = Table(title="history", title_justify="left")
    for column in ("when", "what", "detail"):
        table.add_column(column, overflow="fold")
    rows: list[tuple[dt.datetime, str, str]] = []
    for other in [*related, r]:
        this = " (this one)" if other.id == r.id else ""
        rows.append(
            (
                other.last_failure_at,
                f"failed{this}",
                f"{other.id[:SHORT_ID]} {other.reason}: {clip(other.error_message, 60)} [{other.status}]",
            )
        )
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items() if k != "before_sha256")
        who = f"by {e.operator}" if e.operator else ""
        run = f"replay {e.replay_id[:SHORT_ID]}" if e.replay_id else ""
        rows.append((e.at, e.kind, " ".join(x for x in (who, run, detail) if x)))
    for moment, what, detail in sorted(rows, key=lambda row: row[0]):
        table.add_row(when(moment), what, detail)
    return table


def shown_json(shown: Shown) -> dict[str, Any]:
    r = shown.record
    body, encoding = encode_body(r.body)
    original, original_encoding = encode_body(r.original_body)
    return {
        **record_summary(r),
        "original_exchange": r.original_exchange,
        "original_routing_key": r.original_routing_key,
        "traceback": r.traceback,
        "connector_version": r.connector_version,
        "pod": r.pod,
        "trace_id": r.trace_id,
        "type": r.message_type,
        "content_type": r.content_type,
        "properties": r.properties,
        "headers": r.headers,
        "body": body,
        "body_encoding": encoding,
        "original_body": original,
        "original_body_encoding": original_encoding,
        "history": {
            "failures": [record_summary(o) for o in shown.related],
            "events": [
                {
                    "at": e.at.isoformat(),
                    "kind": e.kind,
                    "operator": e.operator,
                    "audit_id": e.audit_id,
                    "replay_id": e.replay_id,
                    "detail": e.detail,
                }
                for e in shown.events
            ],
        },
    }


# -- replay ----------------------------------------------------------------------------------------


def plan_renderables(outcome: ReplayOutcome, *, stripped: Sequence[str]) -> list[RenderableType]:
    """The plan: a heading, then one labelled fact a line, a long one wrapped under itself (not under
    its label). The caller prints ``groups_listing(outcome.groups, …)`` below."""
    plan = outcome.plan
    target = outcome.target or "each dead letter's original queue"
    heading = (
        "[bold]replay plan[/] (dry run: nothing is sent, nothing changes)"
        if outcome.dry_run
        else "[bold]replay[/]"
    )
    facts: list[tuple[str, str]] = [
        ("selected:", f"{len(plan.eligible)} dead letter(s) in {len(outcome.groups)} group(s), frozen now"),
        ("target:", f"{target} (default exchange, publisher confirms)"),
    ]
    if plan.resumed:
        facts.append(("resuming:", f"{len(plan.resumed)} left 'replaying' by a replay that died"))
    for why, count in sorted(plan.skipped_by_reason.items()):
        facts.append(("skipped:", f"{count} {why}"))
    if outcome.dry_run:
        facts.append(("removes:", ", ".join(stripped)))
        facts.append(("adds:", "x-replay-count, x-replayed-at, x-replay-id, x-replayed-from"))
        if plan.eligible:
            first = ", ".join(i[:SHORT_ID] for i in plan.eligible[:5])
            facts.append(
                ("order:", f"ingest order (the DLQ's): {first}{' …' if len(plan.eligible) > 5 else ''}")
            )
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in facts:
        grid.add_row(Text("  " + label), Text(value))
    return [Text.from_markup(heading), grid]


def replay_json(outcome: ReplayOutcome) -> dict[str, Any]:
    plan = outcome.plan
    data: dict[str, Any] = {
        "dry_run": outcome.dry_run,
        "target": outcome.target,
        "selected": len(plan.eligible),
        "ids": list(plan.eligible),
        "resumed": list(plan.resumed),
        "skipped": plan.skipped,
        "groups": [group_summary(g, GroupBy.ERROR) for g in outcome.groups],
        "audit_id": outcome.audit_id,
        "audit_error": outcome.audit_error,
    }
    report = outcome.report
    if report is not None:
        data.update(
            {
                "replay_id": report.replay_id,
                "status": report.status,
                "replayed": len(report.replayed),
                "failed": report.failed,
                "taken_by_others": report.taken_by_others,
                "not_sent": report.not_sent,
                "canary": None
                if report.canary is None
                else {
                    "passed": report.canary.passed,
                    "failed": report.canary.failed,
                    "unresolved": report.canary.unresolved,
                },
            }
        )
    return data


def replay_summary(outcome: ReplayOutcome) -> list[str]:
    """Lines for stderr after a replay: counts, and every failed id by name."""
    report = outcome.report
    if report is None:
        return ["nothing to replay"] if not outcome.dry_run else []
    lines = [
        f"replay {report.replay_id}: {len(report.replayed)} of {report.selected} replayed "
        f"(published and confirmed), status {report.status}"
    ]
    if report.canary is not None:
        c = report.canary
        lines.append(
            f"canary: {len(c.passed)} passed, {len(c.failed)} failed again, "
            f"{len(c.unresolved)} without outcome"
        )
        for dead_letter_id, why in {**c.failed, **c.unresolved}.items():
            lines.append(f"  {dead_letter_id}: {why}")
        if not c.ok:
            lines.append("stopped after the canary; nothing else was sent. Fix the cause, then replay again.")
    if report.failed:
        lines.append(f"{len(report.failed)} not replayed (they stay in the store; rerun to retry):")
        for dead_letter_id, why in report.failed.items():
            lines.append(f"  {dead_letter_id}: {why}")
    if report.taken_by_others:
        lines.append(f"{len(report.taken_by_others)} were taken by another replay meanwhile")
    if report.interrupted:
        lines.append(f"interrupted: {report.not_sent} not sent; rerun the same command to continue")
    if outcome.audit_error:
        lines.append(f"warning: {outcome.audit_error}")
    return lines


# -- audit -----------------------------------------------------------------------------------------


AUDIT_COLUMNS: Final = (
    Column("when"),
    Column("operator", priority=1, max_width=20),
    Column("command"),
    Column("phase", priority=2),
    Column("outcome", priority=1),
    Column("ids", justify="right", priority=2),
    Column("reason", priority=3, flex=True),
    Column("audit id", priority=4),
)


def audit_listing(records: Sequence[DlqAuditRecord], output: OutputFormat) -> Listing:
    stamp = _stamp(output)
    rows = [
        (
            stamp(a.at),
            f"{a.operator}@{a.host}",
            a.command + (" (dry run)" if a.dry_run else ""),
            a.phase,
            a.outcome,
            str(a.selection.id_count),
            a.reason or "-",
            a.audit_id[:SHORT_ID],
        )
        for a in records
    ]
    return Listing(AUDIT_COLUMNS, rows, footer=f"{len(rows)} audit record{'s' if len(rows) != 1 else ''}")


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def group_renderables(parts: Sequence[RenderableType]) -> RenderableType:
    return RichGroup(*parts)
