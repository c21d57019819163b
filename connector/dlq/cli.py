"""``severa-connector dlq …``: the ops console for dead letters (thin typer over :mod:`.operations`).

The commands work on the dead-letter store the connector pods fill; they open it and never create
it, and none of them takes a message off the broker -- except ``dlq ingest``, the deliberate act
(one-shot, or ``--follow`` as a long-running role) that moves dead letters into the store. Exit
codes: 0 done; 1 the command ran but not everything succeeded (the ids that failed are named);
2 usage or configuration error (a missing store included), nothing was changed; 3 the broker or
the store did not answer, nothing was changed.

Filters (``list``, ``replay``, ``purge``, ``export``): each option may repeat (alternatives), and
different options combine with AND. ``--since``/``--until`` take ``30m``, ``2h``, ``7d`` or an ISO
date/time and compare the last failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from connector import tracing
from connector.cli_help import ConnectorTyper
from connector.cli_output import OutputFormat, OutputOpt, output_format, print_listing, stdout_console
from connector.config import DlqSettings, load_settings
from connector.dlq import console as view
from connector.dlq.audit import default_operator
from connector.dlq.editing import run_editor
from connector.dlq.envelope import STRIPPED_ON_REPLAY
from connector.dlq.grouping import GroupBy
from connector.dlq.operations import (
    InvalidEdit,
    PeerUnreachable,
    ReplayOptions,
    archive,
    edit,
    export,
    import_lines,
    ingest_now,
    ingest_until_stopped,
    list_groups,
    list_page,
    open_session,
    purge,
    replay,
    replay_selection,
    resolve_ids,
    restore,
    show,
    waiting_in_dlqs,
)
from connector.dlq.records import Group
from connector.dlq.selection import (
    OPEN_STATUSES,
    Filter,
    parse_header_match,
    parse_moment,
    parse_statuses,
)
from connector.dlq.store import StoreUnavailable
from connector.errors import ConfigError, ConnectorError, UsageError
from connector.heap import freeze_startup_heap
from connector.logging import configure_logging

EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
T = TypeVar("T")

dlq_app = ConnectorTyper(
    help="Dead letters: ingest, list, show, replay, edit, archive/restore, purge, export/import (audited).",
    no_args_is_help=True,
)
err = Console(stderr=True)
_state: dict[str, bool] = {"verbose": False}


@dlq_app.callback()
def dlq_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens (stderr).")] = False,
) -> None:
    """Dead letters: ingest, list, show, replay, edit, archive/restore, purge, export/import (audited)."""
    _state["verbose"] = verbose


# -- shared options --------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout (progress and notes go to stderr).")]
ListJsonOpt = Annotated[bool, typer.Option("--json", help="Same as -o json.")]
# Commands no longer ingest; the flag stays accepted (and hidden) so that scripts passing it still run.
NoIngestOpt = Annotated[
    bool, typer.Option("--no-ingest", hidden=True, help="No effect: commands do not ingest.")
]
OperatorOpt = Annotated[
    str | None, typer.Option("--operator", help="Who you are, for the audit (default: your login name).")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why you do this; goes into the audit record.")]
OptionalReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why; goes into the audit record.")]
IdsArg = Annotated[list[str] | None, typer.Argument(help="Dead-letter ids (or unique prefixes, 6+ hex).")]
FlowOpt = Annotated[list[str] | None, typer.Option("--flow", help="Flow, e.g. work_hours.")]
QueueOpt = Annotated[list[str] | None, typer.Option("--queue", help="Original queue, e.g. q.workhours.")]
ClassOpt = Annotated[
    list[str] | None, typer.Option("--error-class", help="Exception class, e.g. UnknownReference.")
]
CodeOpt = Annotated[
    list[str] | None, typer.Option("--error-code", help="Reason code, e.g. unknown_work_type.")
]
CategoryOpt = Annotated[
    list[str] | None, typer.Option("--category", help="permanent, transient or systemic.")
]
GroupOpt = Annotated[
    list[str] | None, typer.Option("--group", help="Failure group id (g-…), from --group-by error.")
]
TextOpt = Annotated[
    str | None, typer.Option("--text", help="Text in the reason code or error message (any case).")
]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Last failure at/after: 30m, 2h, 7d or ISO time.")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Last failure before: 30m, 2h, 7d or ISO time.")
]
HeaderOpt = Annotated[
    list[str] | None, typer.Option("--header", help="name=value (as text) or name (present).")
]
MessageIdOpt = Annotated[list[str] | None, typer.Option("--message-id", help="AMQP message_id (event id).")]
ReplayIdOpt = Annotated[
    list[str] | None, typer.Option("--replay-id", help="Dead letters that came back from this replay run.")
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option("--status", help="parked, replaying, replayed, purged, open (parked+replaying) or all."),
]


def _filter(
    *,
    default_statuses: frozenset[Any],
    status: list[str] | None,
    flow: list[str] | None,
    queue: list[str] | None,
    error_class: list[str] | None,
    error_code: list[str] | None,
    category: list[str] | None,
    group: list[str] | None,
    text: str | None,
    since: str | None,
    until: str | None,
    header: list[str] | None,
    message_id: list[str] | None,
    replay_id: list[str] | None,
) -> Filter:
    now = dt.datetime.now(dt.UTC)
    return Filter(
        statuses=parse_statuses(status or [], default=default_statuses),
        flows=tuple(flow or ()),
        queues=tuple(queue or ()),
        error_classes=tuple(error_class or ()),
        reasons=tuple(error_code or ()),
        categories=tuple(category or ()),
        groups=tuple(group or ()),
        text=text or None,
        since=parse_moment(since, now=now) if since else None,
        until=parse_moment(until, now=now) if until else None,
        headers=tuple(parse_header_match(h) for h in header or ()),
        message_ids=tuple(message_id or ()),
        replay_ids=tuple(replay_id or ()),
    )


# -- plumbing --------------------------------------------------------------------------------------


def _settings() -> DlqSettings:
    try:
        settings = load_settings(DlqSettings)
    except ConfigError as exc:
        err.print(f"[bold red]configuration error:[/] {exc.message}")
        raise typer.Exit(EXIT_USAGE) from None
    configure_logging(settings.log.level if _state["verbose"] else "WARNING", settings.log.format)
    tracing.start(settings.tracing, pod=settings.pod_name)  # replays continue their messages' traces
    if not _state["verbose"]:
        # An unreachable broker is said once, in our words (exit code 3); the AMQP libraries' own
        # errors about it are for --verbose.
        for library in ("aio_pika", "aiormq"):
            logging.getLogger(library).setLevel(logging.CRITICAL)
    return settings


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """One ``asyncio.run``; our errors become one message and an exit code, never a traceback."""
    try:
        return asyncio.run(factory())
    except UsageError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except ConfigError as exc:
        err.print(f"[bold red]configuration error:[/] {exc.message}", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (PeerUnreachable, StoreUnavailable) as exc:
        err.print(f"[bold red]unreachable:[/] {exc.message}", soft_wrap=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except ConnectorError as exc:
        err.print(f"[bold red]failed:[/] {exc.message}", soft_wrap=True)
        raise typer.Exit(EXIT_PARTIAL) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(view.as_json(data) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM only set ``stop``: the batch in flight finishes and is settled first.

    Signals reach the main thread only; run elsewhere (a test's worker thread) there is nothing
    to install.
    """
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


# -- commands --------------------------------------------------------------------------------------


@dlq_app.command("ingest")
def ingest_command(
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Keep ingesting as dead letters arrive, until SIGTERM/SIGINT (a long-running role).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Move the dead letters waiting in the DLQs into the store (creating it): the one command that does.

    The connector pods do this all the time; run it where they do not (a dedicated role with
    --follow), or to take in at once what waits now. Point it at the store everyone uses.
    """
    settings = _settings()

    async def once() -> None:
        report = await ingest_now(settings, operator=default_operator())
        if json_:
            _print_json(
                {
                    "received": report.received,
                    "stored": report.stored,
                    "already_stored": report.already_stored,
                    "per_queue": report.per_queue,
                    "missing_queues": report.missing_queues,
                    "stopped_early": report.stopped_early,
                }
            )
        err.print(view.ingest_note(report), highlight=False)

    async def following() -> None:
        stop = asyncio.Event()

        def started(queues: Sequence[str]) -> None:
            err.print(f"ingesting {', '.join(queues)} until SIGTERM/SIGINT", highlight=False)

        with _stop_on_signals(stop):
            counts = await ingest_until_stopped(
                settings, operator=default_operator(), stop=stop, on_started=started
            )
        if json_:
            _print_json(dataclasses.asdict(counts))
        err.print(
            f"stopped: {counts.received} received, {counts.stored} new, {counts.already_stored} already "
            f"stored, {counts.requeued} put back after a store failure",
            highlight=False,
        )

    _run(following if follow else once)


@dlq_app.command("list")
def list_command(
    output: OutputOpt = None,
    json_: ListJsonOpt = False,
    group_by: Annotated[
        GroupBy | None, typer.Option("--group-by", help="Count per failure group (error) or per field.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows to show (without --group-by).")] = 50,
    status: StatusOpt = None,
    flow: FlowOpt = None,
    queue: QueueOpt = None,
    error_class: ClassOpt = None,
    error_code: CodeOpt = None,
    category: CategoryOpt = None,
    group: GroupOpt = None,
    text: TextOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    header: HeaderOpt = None,
    message_id: MessageIdOpt = None,
    replay_id: ReplayIdOpt = None,
    store_only: Annotated[
        bool,
        typer.Option(
            "--store-only", help="Do not ask the broker how many dead letters wait there (it may be down)."
        ),
    ] = False,
    no_ingest: NoIngestOpt = False,
) -> None:
    """List dead letters (parked and replaying unless --status says otherwise), or count them by group.

    Also says how many dead letters still wait in the DLQs, not yet ingested (asked of the broker,
    which hands nothing out for it); --store-only skips that. -o json: without --group-by
    {"total": N, "dead_letters": [...]}, with it a list of groups.
    """
    fmt = output_format(output, json_)
    settings = _settings()

    async def main() -> None:
        selection = _filter(
            # Counting by status is asking about every status.
            default_statuses=frozenset() if group_by is GroupBy.STATUS else OPEN_STATUSES,
            status=status,
            flow=flow,
            queue=queue,
            error_class=error_class,
            error_code=error_code,
            category=category,
            group=group,
            text=text,
            since=since,
            until=until,
            header=header,
            message_id=message_id,
            replay_id=replay_id,
        )
        async with open_session(settings, operator=default_operator()) as session:
            if not (store_only or no_ingest):
                note = view.waiting_note(await waiting_in_dlqs(settings, operator=session.operator))
                if note:
                    err.print(note)
            if group_by is not None:
                groups = await list_groups(session, selection, group_by)
                if fmt is OutputFormat.JSON:
                    _print_json([view.group_summary(g, group_by) for g in groups])
                else:
                    print_listing(stdout_console(), view.groups_listing(groups, group_by, fmt), fmt)
                return
            page = await list_page(session, selection, limit=limit)
            if fmt is OutputFormat.JSON:
                _print_json(
                    {"total": page.total, "dead_letters": [view.record_summary(r) for r in page.records]}
                )
            else:
                print_listing(stdout_console(), view.records_listing(page.records, page.total, fmt), fmt)

    _run(main)


@dlq_app.command("show")
def show_command(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="Dead-letter id or a unique prefix.")],
    json_: JsonOpt = False,
    no_ingest: NoIngestOpt = False,
) -> None:
    """One dead letter: properties, headers, the body (pretty JSON), traceback and its history."""
    settings = _settings()

    async def main() -> None:
        async with open_session(settings, operator=default_operator()) as session:
            shown = await show(session, dead_letter_id)
        if json_:
            _print_json(view.shown_json(shown))
        else:
            out = stdout_console()
            for part in view.show_renderables(shown):
                out.print(part)

    _run(main)


@dlq_app.command("replay")
def replay_command(
    reason: ReasonOpt,
    ids: IdsArg = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; change nothing.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.01, help="At most this many messages per second.")
    ] = None,
    canary: Annotated[
        int,
        typer.Option("--canary", min=0, help="Replay N first; stop if any fails again or has no outcome."),
    ] = 0,
    canary_only: Annotated[
        bool, typer.Option("--canary-only", help="Stop after a good canary (inspect, then replay the rest).")
    ] = False,
    to: Annotated[
        str | None, typer.Option("--to", help="Send to this queue instead of the original one.")
    ] = None,
    again: Annotated[bool, typer.Option("--again", help="Also replay dead letters replayed before.")] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="No filter: every dead letter in the store.")
    ] = False,
    status: StatusOpt = None,
    flow: FlowOpt = None,
    queue: QueueOpt = None,
    error_class: ClassOpt = None,
    error_code: CodeOpt = None,
    category: CategoryOpt = None,
    group: GroupOpt = None,
    text: TextOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    header: HeaderOpt = None,
    message_id: MessageIdOpt = None,
    replay_id: ReplayIdOpt = None,
    operator: OperatorOpt = None,
    json_: JsonOpt = False,
    no_ingest: NoIngestOpt = False,
) -> None:
    """Republish dead letters to their queue (or --to), with confirms; a frozen selection, audited.

    Select by ids, --group or any filter. A dead letter is marked replayed only after the broker\b
    confirmed its copy; an interrupted replay (even by SIGKILL) is resumed by running it again.
    """
    if canary_only and not canary:
        raise typer.BadParameter("--canary-only needs --canary N", param_hint="--canary-only")
    settings = _settings()
    options = ReplayOptions(
        reason=_required_reason(reason),
        target=to,
        again=again,
        canary=canary,
        canary_only=canary_only,
        rate=rate,
        dry_run=dry_run,
    )

    async def main() -> int:
        selection = _filter(
            default_statuses=frozenset({"parked", "replaying", "replayed"}),
            status=status,
            flow=flow,
            queue=queue,
            error_class=error_class,
            error_code=error_code,
            category=category,
            group=group,
            text=text,
            since=since,
            until=until,
            header=header,
            message_id=message_id,
            replay_id=replay_id,
        )
        stop = asyncio.Event()
        progress = Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )

        def tracker(total: int) -> Callable[[int], None]:
            task = progress.add_task("replay", total=total)
            progress.start()
            return lambda done: progress.advance(task, done)

        async with open_session(
            settings, operator=operator or default_operator(), need_broker=True
        ) as session:
            chosen = replay_selection(
                await resolve_ids(session.store, ids or []), selection, everything=everything
            )
            freeze_startup_heap()  # the store, the broker and the selection are up: see connector.heap
            with _stop_on_signals(stop):
                try:
                    outcome = await replay(
                        session, chosen, options, stop=stop, progress=None if json_ else tracker
                    )
                finally:
                    progress.stop()
        if json_:
            _print_json(view.replay_json(outcome))
        elif outcome.dry_run or outcome.report is None:
            out = stdout_console()
            for part in view.plan_renderables(outcome, stripped=sorted({"x-dl-*", *STRIPPED_ON_REPLAY})):
                out.print(part)
            if outcome.groups:
                table = OutputFormat.TABLE
                print_listing(out, view.groups_listing(outcome.groups, GroupBy.ERROR, table), table)
        for line in view.replay_summary(outcome):
            err.print(line, highlight=False)
        return 0 if outcome.ok else EXIT_PARTIAL

    code = _run(main)
    if code:
        raise typer.Exit(code)


@dlq_app.command("edit")
def edit_command(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="Dead-letter id or a unique prefix.")],
    reason: ReasonOpt,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="field=value (JSON value, else text; nested: a.b=value). Repeatable."),
    ] = None,
    operator: OperatorOpt = None,
    json_: JsonOpt = False,
    no_ingest: NoIngestOpt = False,
) -> None:
    """Change a dead letter's body with --set or in $EDITOR; validated against the flow's schema."""
    settings = _settings()
    why = _required_reason(reason)
    interactive = sys.stdin.isatty()

    def propose(text: str, errors: list[str]) -> str | None:
        if errors:
            err.print("[bold red]the body fails validation:[/]\n  " + "\n  ".join(errors))
            if not interactive or not typer.confirm("edit again?", default=True, err=True):
                return None
        return run_editor(text)

    async def main() -> None:
        async with open_session(
            settings, operator=operator or default_operator(), need_broker=True
        ) as session:
            # Without --set, an editor needs a terminal (or one named in $VISUAL/$EDITOR).
            can_edit = interactive or bool(os.environ.get("VISUAL") or os.environ.get("EDITOR"))
            try:
                edited = await edit(
                    session,
                    dead_letter_id,
                    reason=why,
                    assignments=set_ or (),
                    propose=propose if can_edit else None,
                )
            except InvalidEdit as exc:
                raise UsageError(exc.message) from None
        if json_:
            _print_json({"id": edited.record.id, "changes": edited.changes, "audit_id": edited.audit_id})
        else:
            err.print(
                f"edited {edited.record.id} (edit #{edited.record.edit_count}; original kept); "
                f'replay it with: dlq replay {edited.record.id[:12]} --reason "…"'
            )
        if edited.audit_error:
            err.print(f"[yellow]warning:[/] {edited.audit_error}")
            raise typer.Exit(EXIT_PARTIAL)

    _run(main)


@dlq_app.command("purge")
def purge_command(
    reason: ReasonOpt,
    ids: IdsArg = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="No filter: every matching dead letter.")] = False,
    status: StatusOpt = None,
    flow: FlowOpt = None,
    queue: QueueOpt = None,
    error_class: ClassOpt = None,
    error_code: CodeOpt = None,
    category: CategoryOpt = None,
    group: GroupOpt = None,
    text: TextOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    header: HeaderOpt = None,
    message_id: MessageIdOpt = None,
    replay_id: ReplayIdOpt = None,
    operator: OperatorOpt = None,
    no_ingest: NoIngestOpt = False,
) -> None:
    """Drop the bodies of parked dead letters (--status replayed: replayed ones); rows stay, for the audit."""
    settings = _settings()
    why = _required_reason(reason)
    interactive = sys.stdin.isatty()

    def confirm(count: int, groups: list[Group]) -> bool:
        table = OutputFormat.TABLE
        print_listing(stdout_console(), view.groups_listing(groups, GroupBy.ERROR, table), table)
        if yes:
            return True
        if not interactive:
            raise UsageError(
                f"purge of {count} dead letters needs confirmation: run it in a terminal or pass --yes"
            )
        return typer.confirm(f"purge {count} dead letter(s)? This cannot be undone", default=False, err=True)

    async def main() -> int:
        selection = _filter(
            default_statuses=frozenset({"parked"}),
            status=status,
            flow=flow,
            queue=queue,
            error_class=error_class,
            error_code=error_code,
            category=category,
            group=group,
            text=text,
            since=since,
            until=until,
            header=header,
            message_id=message_id,
            replay_id=replay_id,
        )
        async with open_session(
            settings, operator=operator or default_operator(), need_broker=True
        ) as session:
            resolved = await resolve_ids(session.store, ids or [])
            if resolved:
                selection = Filter(ids=tuple(resolved), statuses=selection.statuses)
            result = await purge(session, selection, reason=why, everything=everything, confirm=confirm)
        if not result.selected:
            err.print("nothing to purge")
            return 0
        if not result.confirmed:
            err.print("not purged")
            return 0
        missed = result.selected - len(result.purged)
        err.print(
            f"purged {len(result.purged)} of {result.selected}"
            + (f"; {missed} changed status meanwhile (being replayed?) and were left alone" if missed else "")
        )
        if result.audit_error:
            err.print(f"[yellow]warning:[/] {result.audit_error}")
        return EXIT_PARTIAL if missed or result.audit_error else 0

    code = _run(main)
    if code:
        raise typer.Exit(code)


def _move_command(
    *,
    archiving: bool,
    reason: str,
    ids: list[str] | None,
    everything: bool,
    filters: dict[str, Any],
    operator: str | None,
) -> None:
    """``archive`` and ``restore``: the same selection options, one operation each in operations.py."""
    settings = _settings()
    why = _required_reason(reason)
    verb = "archived" if archiving else "restored"

    async def main() -> int:
        default = frozenset({"parked", "replayed"}) if archiving else frozenset({"archived"})
        selection = _filter(default_statuses=default, **filters)
        async with open_session(
            settings, operator=operator or default_operator(), need_broker=True
        ) as session:
            resolved = await resolve_ids(session.store, ids or [])
            if resolved:
                selection = Filter(ids=tuple(resolved), statuses=frozenset())
            move = archive if archiving else restore
            result = await move(session, selection, reason=why, everything=everything)
        if not result.selected:
            err.print(f"nothing to {'archive' if archiving else 'restore'}")
            return 0
        err.print(f"{verb} {len(result.moved)} of {result.selected}")
        for dead_letter_id, why_not in sorted(result.skipped.items()):
            err.print(f"  left {dead_letter_id}: {why_not}", soft_wrap=True)
        if result.audit_error:
            err.print(f"[yellow]warning:[/] {result.audit_error}")
        return EXIT_PARTIAL if result.skipped or result.audit_error else 0

    code = _run(main)
    if code:
        raise typer.Exit(code)


@dlq_app.command("archive")
def archive_command(
    reason: ReasonOpt,
    ids: IdsArg = None,
    everything: Annotated[bool, typer.Option("--all", help="No filter: every matching dead letter.")] = False,
    status: StatusOpt = None,
    flow: FlowOpt = None,
    queue: QueueOpt = None,
    error_class: ClassOpt = None,
    error_code: CodeOpt = None,
    category: CategoryOpt = None,
    group: GroupOpt = None,
    text: TextOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    header: HeaderOpt = None,
    message_id: MessageIdOpt = None,
    replay_id: ReplayIdOpt = None,
    operator: OperatorOpt = None,
) -> None:
    """Set parked or replayed dead letters aside (status archived; nothing deleted), audited."""
    _move_command(
        archiving=True,
        reason=reason,
        ids=ids,
        everything=everything,
        filters=dict(
            status=status,
            flow=flow,
            queue=queue,
            error_class=error_class,
            error_code=error_code,
            category=category,
            group=group,
            text=text,
            since=since,
            until=until,
            header=header,
            message_id=message_id,
            replay_id=replay_id,
        ),
        operator=operator,
    )


@dlq_app.command("restore")
def restore_command(
    reason: ReasonOpt,
    ids: IdsArg = None,
    everything: Annotated[bool, typer.Option("--all", help="No filter: every archived dead letter.")] = False,
    flow: FlowOpt = None,
    queue: QueueOpt = None,
    error_class: ClassOpt = None,
    error_code: CodeOpt = None,
    category: CategoryOpt = None,
    group: GroupOpt = None,
    text: TextOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    header: HeaderOpt = None,
    message_id: MessageIdOpt = None,
    replay_id: ReplayIdOpt = None,
    operator: OperatorOpt = None,
) -> None:
    """Put archived dead letters back (replayed if they ever were, else parked), audited."""
    _move_command(
        archiving=False,
        reason=reason,
        ids=ids,
        everything=everything,
        filters=dict(
            status=None,
            flow=flow,
            queue=queue,
            error_class=error_class,
            error_code=error_code,
            category=category,
            group=group,
            text=text,
            since=since,
            until=until,
            header=header,
            message_id=message_id,
            replay_id=replay_id,
        ),
        operator=operator,
    )


@dlq_app.command("export")
def export_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    reason: OptionalReasonOpt = None,
    status: StatusOpt = None,
    flow: FlowOpt = None,
    queue: QueueOpt = None,
    error_class: ClassOpt = None,
    error_code: CodeOpt = None,
    category: CategoryOpt = None,
    group: GroupOpt = None,
    text: TextOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    header: HeaderOpt = None,
    message_id: MessageIdOpt = None,
    replay_id: ReplayIdOpt = None,
    operator: OperatorOpt = None,
    no_ingest: NoIngestOpt = False,
) -> None:
    """Write matching dead letters as JSON lines (schemas/generated/DeadLetterExport.schema.json)."""
    settings = _settings()

    async def main() -> None:
        selection = _filter(
            default_statuses=OPEN_STATUSES,
            status=status,
            flow=flow,
            queue=queue,
            error_class=error_class,
            error_code=error_code,
            category=category,
            group=group,
            text=text,
            since=since,
            until=until,
            header=header,
            message_id=message_id,
            replay_id=replay_id,
        )
        async with open_session(
            settings, operator=operator or default_operator(), need_broker=True
        ) as session:
            with _output(output) as stream:
                written, audit_error = await export(session, selection, stream, reason=reason)
        err.print(f"exported {written} dead letter(s)" + (f" to {output}" if output else ""))
        if audit_error:
            err.print(f"[yellow]warning:[/] {audit_error}")
            raise typer.Exit(EXIT_PARTIAL)

    _run(main)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as stream:
        yield stream


@dlq_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSON lines written by `dlq export` ('-' for stdin).")],
    reason: OptionalReasonOpt = None,
    operator: OperatorOpt = None,
    no_ingest: NoIngestOpt = False,
) -> None:
    """Add dead letters from an export to the store (parked); ids already there are left alone."""
    settings = _settings()

    async def main() -> None:
        if str(file) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise UsageError(f"cannot read {file}: {exc.strerror}") from None
        async with open_session(
            settings, operator=operator or default_operator(), need_broker=True
        ) as session:
            result = await import_lines(session, lines, reason=reason)
        err.print(
            f"imported {len(result.imported)} of {result.read}; "
            f"{result.read - len(result.imported)} already stored"
        )
        if result.audit_error:
            err.print(f"[yellow]warning:[/] {result.audit_error}")
            raise typer.Exit(EXIT_PARTIAL)

    _run(main)


@dlq_app.command("audit")
def audit_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Records to show, newest first.")] = 20,
    output: OutputOpt = None,
    json_: ListJsonOpt = False,
) -> None:
    """The latest audit records (who replayed, edited, purged, imported or exported what, and why).

    -o json: a list of audit records (schemas/generated/DlqAuditRecord.schema.json), newest first.
    """
    fmt = output_format(output, json_)
    settings = _settings()

    async def main() -> None:
        async with open_session(settings, operator=default_operator()) as session:
            records = await session.store.audits(limit=limit)
        if fmt is OutputFormat.JSON:
            _print_json([r.model_dump(mode="json") for r in records])
        else:
            print_listing(stdout_console(), view.audit_listing(records, fmt), fmt)

    _run(main)


def _required_reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise typer.BadParameter("say why (it goes into the audit record)", param_hint="--reason")
    return reason.strip()
