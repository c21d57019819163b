"""The console's pages: server-rendered HTML where every value is escaped unless built here.

Bodies, headers and error messages of dead letters are hostile input (anyone who can publish to
the broker wrote them), so nothing from them is ever trusted as markup: :func:`esc` escapes every
value, and only :class:`Html` -- what this module built from escaped parts -- passes unescaped.
Templates are ``string.Template`` strings whose ``$names`` are filled through :func:`render`,
which escapes whatever is not :class:`Html` already. No JavaScript: every action is a plain form
(so the Content-Security-Policy allows no script at all in practice); the one live page, a
replay in progress, re-renders itself with ``<meta http-equiv="refresh">``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from connector.dlq import codec
from connector.dlq.operations import Moved, ReplayOutcome, Shown
from connector.dlq.records import DeadLetterRecord, Group, PodHeartbeat, ReplayRun, Status, StoreEvent
from connector.dlq.transfer import encode_body
from schemas.dlq import DlqAuditRecord

if TYPE_CHECKING:
    from connector.console.runs import ConsoleRun


class Html(str):
    """Markup built by this module from escaped parts: passed through :func:`render` as it is."""

    __slots__ = ()


def esc(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def render(template: str, **values: object) -> Html:
    """``template`` with each ``$name`` replaced by the escaped value (a missing name is an error)."""
    return Html(Template(template).substitute({k: esc(v) for k, v in values.items()}))


def when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def clip(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at a page, and what the page may offer them."""

    operator: str
    csrf: str | None
    read_only: bool
    via: str = "session"

    @property
    def can_act(self) -> bool:
        return not self.read_only


def csrf_field(viewer: Viewer) -> Html:
    if viewer.csrf is None:
        return Html("")
    return render('<input type="hidden" name="csrf" value="$token">', token=viewer.csrf)


# -- layout ----------------------------------------------------------------------------------------

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · dead-letter console</title>
$refresh<link rel="stylesheet" href="/static/console.css">
</head>
<body>
<header>
<nav><a class="brand" href="/">dead-letter console</a> <a href="/">Overview</a>
<a href="/groups">Failure groups</a> <a href="/search">Search</a> <a href="/audit">Audit log</a></nav>
$who
</header>
$banner
<main>
<h1>$title</h1>
$body
</main>
</body>
</html>
"""


def page(title: str, body: Html, viewer: Viewer | None, *, refresh_seconds: int | None = None) -> Html:
    refresh = (
        render('<meta http-equiv="refresh" content="$s">\n', s=refresh_seconds)
        if refresh_seconds
        else Html("")
    )
    who = Html("")
    banner = Html("")
    if viewer is not None:
        logout = (
            render(
                '<form class="inline" method="post" action="/logout">$csrf<button>Log out</button></form>',
                csrf=csrf_field(viewer),
            )
            if viewer.via == "session"
            else Html("")
        )
        who = render(
            '<div class="who">signed in as <b>$name</b> $logout</div>', name=viewer.operator, logout=logout
        )
        if viewer.read_only:
            banner = Html('<p class="banner">Read-only console: actions are switched off.</p>')
    return render(_LAYOUT, title=title, body=body, who=who, banner=banner, refresh=refresh)


def error_page(status: int, message: str, viewer: Viewer | None) -> Html:
    return page(f"Error {status}", render('<p class="error">$message</p>', message=message), viewer)


def login_page(*, nonce: str, error: str | None, accepts_token: bool) -> Html:
    if not accepts_token:
        body = Html("<p>Sign in through the identity proxy in front of this console.</p>")
        return page("Sign in", body, None)
    problem = render('<p class="error">$e</p>', e=error) if error else Html("")
    body = render(
        """$problem
<form method="post" action="/login" class="stack">
<input type="hidden" name="login_nonce" value="$nonce">
<label>Your name (goes into every audit record) <input name="operator" required maxlength="64"
 autocomplete="username"></label>
<label>Console token <input name="token" type="password" required autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>""",
        problem=problem,
        nonce=nonce,
    )
    return page("Sign in", body, None)


# -- overview --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowSummary:
    flow: str | None
    open: int
    last_hour: int
    last_day: int
    top_groups: list[Group]
    oldest: Group | None


def _group_link(group: Group) -> Html:
    return render('<a href="/groups/$key">$key</a>', key=group.key or "-")


def _age(now: dt.datetime, moment: dt.datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _circuits(circuits: Mapping[str, str]) -> Html:
    return join(
        (
            render(
                '<span class="circuit circuit-$state">$name $label</span>',
                state=state,
                name=name,
                label=state.replace("_", "-"),
            )
            for name, state in sorted(circuits.items())
        ),
        " ",
    )


def pods_section(pods: Sequence[PodHeartbeat], now: dt.datetime) -> Html:
    """Every pod's last heartbeat; one silent for three of its intervals is shown as down."""
    if not pods:
        return Html(
            '<section class="pods" id="pods"><h2>Pods</h2><p class="empty">No pod has reported a '
            "heartbeat to this store (dlq.heartbeat_seconds is 0, or no pod runs).</p></section>"
        )
    rows = []
    for pod in pods:
        alive = pod.alive(now)
        state = ("ready" if pod.ready else "not ready") if alive else "down"
        detail = "; ".join(pod.reasons) if alive and not pod.ready else ""
        if not alive:
            detail = f"no heartbeat for {_age(now, pod.beat_at).removesuffix(' ago')}"
        rows.append(
            render(
                """<tr class="pod pod-$cls" data-pod="$pod"><td>$pod</td><td>$role</td><td>$flows</td>
<td>$circuits</td><td class="state">$state</td><td>$beat</td><td class="message">$detail</td></tr>""",
                cls=state.replace(" ", "-"),
                pod=pod.pod,
                role=pod.role,
                flows=", ".join(pod.flows) or "-",
                circuits=_circuits(pod.circuits) if alive else Html('<span class="muted">unknown</span>'),
                state=state,
                beat=_age(now, pod.beat_at),
                detail=detail,
            )
        )
    return render(
        """<section class="pods" id="pods"><h2>Pods</h2><table><thead><tr><th>pod</th><th>role</th>
<th>flows</th><th>circuits</th><th>state</th><th>last heartbeat</th><th></th></tr></thead>
<tbody>$rows</tbody></table></section>""",
        rows=join(rows),
    )


def _flow_pods(flow: str | None, pods: Sequence[PodHeartbeat], now: dt.datetime) -> Html:
    """Who consumes ``flow`` now: pods up and ready, and the circuits they report."""
    serving = [p for p in pods if flow is not None and flow in p.flows]
    if not serving:
        return Html('<span class="muted">no pod reports this flow</span>')
    up = [p for p in serving if p.alive(now)]
    ready = [p for p in up if p.ready]
    states: dict[str, str] = {}
    for pod in up:
        for name, state in pod.circuits.items():
            # The worst state any pod reports for a circuit is the one to see first.
            order = ("closed", "half_open", "open")
            known = states.get(name, "closed")
            states[name] = max(known, state, key=lambda v: order.index(v) if v in order else len(order))
    return render(
        "$ready of $n pods ready$down; circuits: $circuits",
        ready=len(ready),
        n=len(serving),
        down=f", {len(serving) - len(up)} down" if len(up) < len(serving) else "",
        circuits=_circuits(states) if states else "-",
    )


def overview_page(
    flows: Sequence[FlowSummary], pods: Sequence[PodHeartbeat], viewer: Viewer, *, now: dt.datetime
) -> Html:
    pod_part = pods_section(pods, now)
    if not flows:
        body = Html('<p class="empty">No unresolved dead letters. All clear.</p>')
        return page("Overview", Html(body + pod_part), viewer)
    sections = []
    for f in flows:
        tops = join(
            render(
                "<li>$link <span class=count>$count</span> $reason: $message</li>",
                link=_group_link(g),
                count=g.count,
                reason=g.reason,
                message=clip(g.example_message, 70),
            )
            for g in f.top_groups
        )
        oldest = (
            render("$when in $link", when=when(f.oldest.first_failure_at), link=_group_link(f.oldest))
            if f.oldest
            else "-"
        )
        flow_link = (
            render('<a href="/groups?$q">$flow</a>', q=urlencode({"flow": f.flow}), flow=f.flow)
            if f.flow
            else Html("(no flow)")
        )
        sections.append(
            render(
                """<section class="flow" data-flow="$flowname">
<h2>$flow</h2>
<dl class="facts">
<dt>unresolved</dt><dd class="depth">$open</dd>
<dt>new in the last hour</dt><dd>$hour</dd>
<dt>new in the last day</dt><dd>$day</dd>
<dt>oldest unresolved</dt><dd>$oldest</dd>
<dt>pods</dt><dd class="flow-pods">$pods</dd>
</dl>
<h3>Top failure groups</h3>
<ul>$tops</ul>
</section>""",
                flowname=f.flow or "",
                flow=flow_link,
                open=f.open,
                hour=f.last_hour,
                day=f.last_day,
                oldest=oldest,
                pods=_flow_pods(f.flow, pods, now),
                tops=tops,
            )
        )
    return page("Overview", Html(join(sections, "\n") + pod_part), viewer)


# -- groups ----------------------------------------------------------------------------------------


def filter_form(filters: Mapping[str, str], *, action: str) -> Html:
    """The search filters, shared by the groups and the search page (a GET form: links keep them)."""
    return render(
        """<form method="get" action="$action" class="filters" id="filters">
<label>flow <input name="flow" value="$flow"></label>
<label>reason <input name="reason" value="$reason" placeholder="unknown_user"></label>
<label>error text <input name="text" value="$text"></label>
<label>source <select name="source">$sources</select></label>
<label>failed since <input name="since" value="$since" placeholder="2h, 7d, 2026-11-20"></label>
<label>failed before <input name="until" value="$until" placeholder="1h, 2026-11-21T12:00"></label>
<label>status <input name="status" value="$status" placeholder="open, parked, archived, all"></label>
<label>body field <input name="body" value="$body" placeholder="user_code=NEWBIE or description~text"></label>
<button type="submit">Filter</button>
</form>""",
        action=action,
        flow=filters.get("flow", ""),
        reason=filters.get("reason", ""),
        text=filters.get("text", ""),
        sources=join(
            render(
                '<option value="$v"$sel>$label</option>',
                v=v,
                label=v or "any",
                sel=Html(" selected") if filters.get("source", "") == v else Html(""),
            )
            for v in ("", "connector", "broker", "unknown")
        ),
        since=filters.get("since", ""),
        until=filters.get("until", ""),
        status=filters.get("status", ""),
        body=filters.get("body", ""),
    )


def _query(filters: Mapping[str, str]) -> str:
    return urlencode({k: v for k, v in filters.items() if v})


def groups_page(groups: Sequence[Group], filters: Mapping[str, str], viewer: Viewer) -> Html:
    form = Html(
        filter_form(filters, action="/groups")
        + render(
            '<p><a href="/search?$q" id="list-matching">List the matching dead letters</a></p>',
            q=_query(filters),
        )
    )
    rows = join(
        render(
            """<tr class="group" data-group="$key"><td>$link</td><td class="num">$count</td><td>$first</td>
<td>$last</td><td>$queue</td><td>$cls</td><td>$reason</td><td class="message">$message</td></tr>""",
            key=g.key or "",
            link=_group_link(g),
            count=g.count,
            first=when(g.first_failure_at),
            last=when(g.last_failure_at),
            queue=g.queue,
            cls=g.error_class,
            reason=g.reason,
            message=clip(g.example_message),
        )
        for g in groups
    )
    total = sum(g.count for g in groups)
    table = (
        render(
            """<table><thead><tr><th>group</th><th>count</th><th>first failure</th><th>last failure</th>
<th>queue</th><th>error class</th><th>reason</th><th>example message</th></tr></thead>
<tbody>$rows</tbody></table><p>$n groups, $total dead letters</p>""",
            rows=rows,
            n=len(groups),
            total=total,
        )
        if groups
        else Html('<p class="empty">No failure group matches.</p>')
    )
    return page("Failure groups", Html(form + table), viewer)


def replay_form(viewer: Viewer, *, group: str | None = None, dead_letter_id: str | None = None) -> Html:
    """Reason, canary and rate; submitting it asks for the dry-run preview, never replays directly."""
    if not viewer.can_act:
        return Html("")
    target = render('<input type="hidden" name="group" value="$g">', g=group) if group else Html("")
    if dead_letter_id:
        target = render('<input type="hidden" name="id" value="$i">', i=dead_letter_id)
    return render(
        """<form method="post" action="/replay/preview" class="action stack" id="replay-form">
$csrf $target
<h2>Replay</h2>
<label>Reason (goes into the audit log) <input name="reason" required maxlength="500"></label>
<label>Canary: replay this many first, stop if any fails again <input name="canary" type="number"
 min="0" value="0"></label>
<label><input type="checkbox" name="canary_only" value="1"> stop after a good canary</label>
<label>Rate limit, messages per second (empty: no limit) <input name="rate" type="number" min="0.01"
 step="any"></label>
<label><input type="checkbox" name="again" value="1"> also replay ones replayed before</label>
<button type="submit">Preview replay (dry run)</button>
</form>""",
        csrf=csrf_field(viewer),
        target=target,
    )


def selection_table(records: Sequence[DeadLetterRecord], total: int, viewer: Viewer) -> Html:
    """Dead letters with a checkbox each: replay the ticked ones (dry run first), archive or restore them."""
    act = viewer.can_act
    rows = join(
        render(
            """<tr data-id="$id">$tick<td><a href="/messages/$id">$short</a></td>
<td class="status-$status">$status</td><td>$last</td><td class="num">$tries</td><td>$message_id</td>
<td class="message">$message</td></tr>""",
            tick=(
                render(
                    '<td><input type="checkbox" name="id" value="$id" aria-label="select $short"$off></td>',
                    id=r.id,
                    short=r.id[:12],
                    off=Html(" disabled") if r.status == "purged" else Html(""),
                )
                if act
                else Html("")
            ),
            id=r.id,
            short=r.id[:12],
            status=r.status,
            last=when(r.last_failure_at),
            tries=r.attempts,
            message_id=r.message_id or "-",
            message=clip(r.error_message, 70),
        )
        for r in records
    )
    more = render("<p>showing $n of $total</p>", n=len(records), total=total) if len(records) < total else ""
    table = render(
        """<table class="messages"><thead><tr>$tick<th>id</th><th>status</th><th>last failure</th>
<th>tries</th><th>message id</th><th>error</th></tr></thead><tbody>$rows</tbody></table>$more""",
        tick=Html("<th></th>") if act else Html(""),
        rows=rows,
        more=more,
    )
    if not act or not records:
        return table
    return render(
        """<form method="post" action="/replay/preview" class="action stack" id="selection-form">$csrf
$table
<h2>The ticked dead letters</h2>
<label>Reason (goes into the audit log) <input name="reason" required maxlength="500"></label>
<label>Canary: replay this many first, stop if any fails again <input name="canary" type="number"
 min="0" value="0"></label>
<label>Rate limit, messages per second (empty: no limit) <input name="rate" type="number" min="0.01"
 step="any"></label>
<label><input type="checkbox" name="again" value="1"> also replay ones replayed before</label>
<button type="submit">Preview replay of the ticked (dry run)</button>
<button type="submit" formaction="/archive" class="secondary">Archive the ticked</button>
<button type="submit" formaction="/restore" class="secondary">Restore the ticked</button>
</form>""",
        csrf=csrf_field(viewer),
        table=table,
    )


def move_form(
    viewer: Viewer, *, archiving: bool, group: str | None = None, dead_letter_id: str | None = None
) -> Html:
    """Archive (or restore) one dead letter or a whole group, with a reason; nothing is deleted."""
    if not viewer.can_act:
        return Html("")
    target = (
        render('<input type="hidden" name="id" value="$i">', i=dead_letter_id)
        if dead_letter_id
        else render('<input type="hidden" name="group" value="$g">', g=group or "")
    )
    what = "this dead letter" if dead_letter_id else "the whole group"
    verb = "Archive" if archiving else "Restore"
    return render(
        """<form method="post" action="$action" class="action stack" id="$form_id">$csrf $target
<h2>$verb $what</h2>
<p class="muted">$why</p>
<label>Reason (goes into the audit log) <input name="reason" required maxlength="500"></label>
<button type="submit" class="secondary">$verb $what</button>
</form>""",
        action="/archive" if archiving else "/restore",
        form_id="archive-form" if archiving else "restore-form",
        csrf=csrf_field(viewer),
        target=target,
        verb=verb,
        what=what,
        why=(
            "Archived dead letters leave the open lists and every replay; nothing is deleted and "
            "Restore puts them back."
            if archiving
            else "Back to parked (or replayed, if it was), where replays and edits see it again."
        ),
    )


def group_page(
    key: str, group: Group | None, records: Sequence[DeadLetterRecord], total: int, viewer: Viewer
) -> Html:
    head = (
        render(
            """<dl class="facts"><dt>queue</dt><dd>$queue</dd><dt>error class</dt><dd>$cls</dd>
<dt>reason</dt><dd>$reason</dd><dt>example message</dt><dd class="message">$message</dd>
<dt>first / last failure</dt><dd>$first / $last</dd>
<dt>dead letters</dt><dd class="depth">$count</dd></dl>""",
            queue=group.queue,
            cls=group.error_class,
            reason=group.reason,
            message=group.example_message,
            first=when(group.first_failure_at),
            last=when(group.last_failure_at),
            count=group.count,
        )
        if group
        else Html('<p class="empty">Nothing open in this group.</p>')
    )
    parts = [head, selection_table(records, total, viewer), replay_form(viewer, group=key)]
    if group is not None:
        parts.append(move_form(viewer, archiving=True, group=key))
    if any(r.status == "archived" for r in records):
        parts.append(move_form(viewer, archiving=False, group=key))
    return page(f"Group {key}", join(parts, "\n"), viewer)


def search_page(
    records: Sequence[DeadLetterRecord], total: int, filters: Mapping[str, str], viewer: Viewer
) -> Html:
    found = (
        render(
            '<p id="found"><b>$total</b> dead letter$s match.</p>', total=total, s="" if total == 1 else "s"
        )
        if records
        else Html('<p class="empty" id="found">No dead letter matches.</p>')
    )
    body = join(
        [filter_form(filters, action="/search"), found, selection_table(records, total, viewer)], "\n"
    )
    return page("Search dead letters", body, viewer)


# -- message ---------------------------------------------------------------------------------------


def pretty_body(body: bytes | None) -> str:
    """The body as text for a ``<pre>``: pretty JSON if it is JSON, else UTF-8 or base64."""
    if body is None:
        return "(purged: the body is gone)"
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        text, encoding = encode_body(body)
        return (text or "") if encoding == "utf-8" else f"(binary, base64) {text}"


def body_diff(before: bytes | None, after: bytes | None) -> Html:
    """A line diff of the pretty-printed bodies: removed lines marked ``-``, added ``+`` (escaped)."""
    lines = difflib.unified_diff(
        pretty_body(before).splitlines(), pretty_body(after).splitlines(), "original", "now", lineterm="", n=2
    )
    marked = []
    for line in lines:
        cls = "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        if line.startswith(("+++", "---")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        marked.append(render('<span class="$cls">$line</span>', cls=cls, line=line))
    return join(marked, "\n")


def _facts(pairs: Iterable[tuple[str, object]]) -> Html:
    return render(
        '<dl class="facts">$items</dl>',
        items=join(render("<dt>$k</dt><dd>$v</dd>", k=k, v=v) for k, v in pairs),
    )


def trace_link(trace_id: str | None, template: str | None) -> Html:
    """The trace id, linked through the configured template (``{trace_id}``; http(s) only)."""
    if not trace_id:
        return Html("-")
    if template and template.startswith(("https://", "http://")):
        url = template.replace("{trace_id}", quote(trace_id, safe=""))
        return render('<a href="$url" rel="noreferrer">$id</a>', url=url, id=trace_id)
    return esc(trace_id)


def _event_row(e: StoreEvent) -> Html:
    detail = json.dumps(e.detail, ensure_ascii=False, default=str) if e.detail else ""
    return render(
        "<tr><td>$at</td><td>$kind</td><td>$op</td><td>$replay</td><td class=message>$detail</td></tr>",
        at=when(e.at),
        kind=e.kind,
        op=e.operator or "-",
        replay=e.replay_id or "-",
        detail=clip(detail, 120),
    )


def message_page(
    shown: Shown,
    viewer: Viewer,
    *,
    trace_url: str | None,
    edit_errors: Sequence[str] = (),
    edit_text: str = "",
) -> Html:
    r = shown.record
    facts = _facts(
        (
            ("status", r.status),
            ("group", Html(render('<a href="/groups/$g">$g</a>', g=r.group_id))),
            ("queue", f"{r.original_queue} (from {r.dead_letter_queue})"),
            ("flow", r.flow or "-"),
            ("error", f"{r.category} {r.error_class} / {r.reason}"),
            ("message", r.error_message),
            ("tries", r.attempts),
            ("first / last failure", f"{when(r.first_failure_at)} / {when(r.last_failure_at)}"),
            ("message id", r.message_id or "-"),
            ("correlation id", r.correlation_id or "-"),
            ("trace id", trace_link(r.trace_id, trace_url)),
            ("pod", r.pod or "-"),
            ("edits", r.edit_count),
            ("replays", r.prior_replays + r.replay_count),
        )
    )
    headers = codec.decode_table(r.headers)
    header_rows = join(
        render("<tr><th>$k</th><td>$v</td></tr>", k=k, v=_header_text(v)) for k, v in sorted(headers.items())
    )
    history = join(
        render(
            """<tr><td><a href="/messages/$id">$short</a></td><td>$status</td><td>$at</td><td>$reason</td>
<td class="message">$message</td></tr>""",
            id=o.id,
            short=o.id[:12],
            status=o.status,
            at=when(o.last_failure_at),
            reason=o.reason,
            message=clip(o.error_message, 80),
        )
        for o in shown.related
    )
    parts: list[object] = [
        facts,
        render('<h2>Body</h2><pre class="body" id="body">$body</pre>', body=pretty_body(r.body)),
    ]
    if r.original_body is not None and r.original_body != r.body:
        parts.append(
            render(
                '<h2>Edits: the body against the original</h2><pre class="diff" id="diff">$d</pre>'
                '<h2>Original body (before edits)</h2><pre class="body" id="original-body">$b</pre>',
                d=body_diff(r.original_body, r.body),
                b=pretty_body(r.original_body),
            )
        )
    parts.append(render("<h2>Headers</h2><table class=headers>$rows</table>", rows=header_rows))
    if r.traceback:
        parts.append(render("<h2>Traceback</h2><pre>$tb</pre>", tb=r.traceback))
    parts.append(
        render(
            """<h2>Failure history</h2><table><thead><tr><th>dead letter</th><th>status</th><th>failed</th>
<th>reason</th><th>error</th></tr></thead><tbody>$rows</tbody></table>""",
            rows=history or Html('<tr><td colspan="5">no other failure of this message</td></tr>'),
        )
    )
    parts.append(
        render(
            """<h2>What ops did</h2><table><thead><tr><th>at</th><th>what</th><th>operator</th><th>replay</th>
<th>detail</th></tr></thead><tbody>$rows</tbody></table>""",
            rows=join(_event_row(e) for e in shown.events),
        )
    )
    if viewer.can_act and r.body is not None:
        if r.status == "archived":
            parts.append(move_form(viewer, archiving=False, dead_letter_id=r.id))
        else:
            parts.append(replay_form(viewer, dead_letter_id=r.id))
            parts.append(edit_form(r.id, viewer, errors=edit_errors, text=edit_text))
            if r.status in ("parked", "replayed"):
                parts.append(move_form(viewer, archiving=True, dead_letter_id=r.id))
    return page(f"Dead letter {r.id[:12]}", join(parts, "\n"), viewer)


def _header_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def edit_form(dead_letter_id: str, viewer: Viewer, *, errors: Sequence[str], text: str) -> Html:
    problems = (
        render(
            '<div class="error" id="edit-errors"><p>The edited body fails validation:</p>'
            "<ul>$items</ul></div>",
            items=join(render("<li>$e</li>", e=e) for e in errors),
        )
        if errors
        else Html("")
    )
    return render(
        """<form method="post" action="/messages/$id/edit" class="action stack" id="edit-form">
$csrf
<h2>Edit the body</h2>
$problems
<label>Changes, one <code>field=value</code> per line (JSON value, else text; nested: <code>a.b=value</code>)
<textarea name="set" rows="4" required>$text</textarea></label>
<label>Reason (goes into the audit log) <input name="reason" required maxlength="500"></label>
<button type="submit">Validate and save the edit</button>
</form>""",
        id=dead_letter_id,
        csrf=csrf_field(viewer),
        problems=problems,
        text=text,
    )


# -- replay ----------------------------------------------------------------------------------------


def plan_page(outcome: ReplayOutcome, form: Mapping[str, str], ids: Sequence[str], viewer: Viewer) -> Html:
    """The dry run's plan, and the form that confirms it (same selection, reason and options)."""
    plan = outcome.plan
    skipped = join(
        render("<li>$n: $why</li>", n=n, why=why) for why, n in sorted(plan.skipped_by_reason.items())
    )
    groups = join(
        render(
            "<tr><td>$link</td><td class=num>$count</td><td>$reason</td><td class=message>$m</td></tr>",
            link=_group_link(g),
            count=g.count,
            reason=g.reason,
            m=clip(g.example_message),
        )
        for g in outcome.groups
    )
    hidden = join(
        [
            *(
                render('<input type="hidden" name="$k" value="$v">', k=k, v=v)
                for k, v in form.items()
                if k in ("group", "reason", "canary", "canary_only", "rate", "again") and v
            ),
            *(render('<input type="hidden" name="id" value="$v">', v=i) for i in ids),
        ]
    )
    options = [f"reason: {form.get('reason', '')}"]
    if form.get("canary", "0") not in ("", "0"):
        options.append(f"canary: {form['canary']}" + (" (then stop)" if form.get("canary_only") else ""))
    if form.get("rate"):
        options.append(f"at most {form['rate']} per second")
    confirm = (
        render(
            """<form method="post" action="/replay" class="action" id="confirm-form">$csrf $hidden
<button type="submit">Replay $n dead letter$s now</button> <a href="/groups">cancel</a></form>""",
            csrf=csrf_field(viewer),
            hidden=hidden,
            n=len(plan.eligible),
            s="" if len(plan.eligible) == 1 else "s",
        )
        if plan.eligible and viewer.can_act
        else Html("<p>Nothing to replay.</p>")
    )
    body = render(
        """<div class="plan" id="plan"><p class="lead"><b>$n</b> dead letter$s would be replayed
$resumed to their original queue.</p>
<p>$options</p>
<ul class="skipped">$skipped</ul>
<table><thead><tr><th>group</th><th>count</th><th>reason</th><th>example</th></tr></thead>
<tbody>$groups</tbody></table></div>
<p>Nothing was sent: this was a dry run (audited as such).</p>
$confirm""",
        n=len(plan.eligible),
        s="" if len(plan.eligible) == 1 else "s",
        resumed=f"({len(plan.resumed)} resumed from an interrupted run)" if plan.resumed else "",
        options="; ".join(options),
        skipped=skipped,
        groups=groups,
        confirm=confirm,
    )
    return page("Replay plan (dry run)", body, viewer)


def result_body(outcome: ReplayOutcome) -> Html:
    report = outcome.report
    if report is None:
        return Html('<p id="result">Nothing was replayed: no dead letter in the selection is eligible.</p>')
    failed = join(render("<li>$id: $why</li>", id=i[:12], why=why) for i, why in report.failed.items())
    canary = ""
    if report.canary is not None:
        canary = (
            f"canary: {len(report.canary.passed)} passed, {len(report.canary.failed)} failed again, "
            f"{len(report.canary.unresolved)} without an outcome"
        )
    return render(
        """<div id="result" class="status-$status"><p class="lead">Replay $status:
<b>$replayed</b> of $selected replayed.</p><p>$canary</p><ul>$failed</ul>
<p>replay id $replay_id · audit id $audit_id</p>$audit_error</div>
<p><a href="/groups">back to the failure groups</a></p>""",
        status=report.status,
        replayed=len(report.replayed),
        selected=report.selected,
        canary=canary,
        failed=failed,
        replay_id=report.replay_id,
        audit_id=outcome.audit_id or "-",
        audit_error=render('<p class="error">$e</p>', e=outcome.audit_error) if outcome.audit_error else "",
    )


def result_page(outcome: ReplayOutcome, viewer: Viewer) -> Html:
    return page("Replay", result_body(outcome), viewer)


RUN_REFRESH_SECONDS = 1


def run_page(
    replay_id: str,
    recorded: ReplayRun | None,
    progress: Mapping[Status, int],
    started: ConsoleRun | None,
    viewer: Viewer,
) -> Html:
    """A replay while it runs (the page re-renders itself every second), then its result.

    Progress is read from the store -- rows of this run replayed, still replaying, put back -- so
    any replica shows it; the canary's verdict is known only to the console that ran it.
    """
    running_here = started is not None and not started.done.is_set()
    running = running_here or (recorded is not None and recorded.status == "running")
    if started is not None and started.error:
        body = render(
            '<div id="result" class="status-failed"><p class="error">The replay failed: $e</p></div>'
            '<p><a href="/groups">back to the failure groups</a></p>',
            e=started.error,
        )
        return page("Replay", body, viewer)
    if not running and started is not None and started.outcome is not None:
        return page("Replay", result_body(started.outcome), viewer)
    done = progress.get("replayed", 0)
    selected = recorded.selected if recorded is not None else None
    if running:
        body = render(
            """<div id="progress" class="running"><p class="lead">Replaying: <b>$done</b> of $selected
replayed so far, $claimed in flight, $back put back.</p>
<progress max="$max" value="$done"></progress>
<p class="muted">This page refreshes every second until the replay ends; closing it does not stop
the replay. Replay id $replay_id.</p></div>""",
            done=done,
            selected=selected if selected is not None else "?",
            max=selected or 1,
            claimed=progress.get("replaying", 0),
            back=progress.get("parked", 0),
            replay_id=replay_id,
        )
        return page("Replay in progress", body, viewer, refresh_seconds=RUN_REFRESH_SECONDS)
    assert recorded is not None  # not running, not ours: the store has it (else 404 before)
    body = render(
        """<div id="result" class="status-$status"><p class="lead">Replay $status:
<b>$replayed</b> of $selected replayed.</p><p>$failed failed; started by $operator at $at.</p>
<p>replay id $replay_id · audit id $audit_id</p></div>
<p><a href="/groups">back to the failure groups</a></p>""",
        status=recorded.status,
        replayed=recorded.replayed,
        selected=recorded.selected,
        failed=recorded.failed,
        operator=recorded.operator,
        at=when(recorded.started_at),
        replay_id=replay_id,
        audit_id=recorded.audit_id or "-",
    )
    return page("Replay", body, viewer)


def moved_page(moved: Moved, *, archiving: bool, group: str | None, viewer: Viewer) -> Html:
    verb = "Archived" if archiving else "Restored"
    skipped: dict[str, int] = {}
    for why in moved.skipped.values():
        skipped[why] = skipped.get(why, 0) + 1
    back = (
        render('<a href="/groups/$g">back to the group</a>', g=group)
        if group
        else Html(
            '<a href="/search?status=archived">the archived dead letters</a>'
            if archiving
            else '<a href="/groups">back to the failure groups</a>'
        )
    )
    body = render(
        """<div id="moved"><p class="lead">$verb <b>$n</b> of $selected dead letter$s.</p>
<ul>$skipped</ul>$ids<p>Audited (audit id $audit_id). Nothing was deleted.</p>$audit_error</div>
<p>$back</p>""",
        verb=verb,
        n=len(moved.moved),
        selected=moved.selected,
        s="" if moved.selected == 1 else "s",
        skipped=join(render("<li>$n left: $why</li>", n=n, why=why) for why, n in sorted(skipped.items())),
        ids=render(
            "<p>$links</p>",
            links=join(
                (render('<a href="/messages/$i">$short</a>', i=i, short=i[:12]) for i in moved.moved[:50]),
                " ",
            ),
        ),
        audit_id=moved.audit_id or "-",
        audit_error=render('<p class="error">$e</p>', e=moved.audit_error) if moved.audit_error else "",
        back=back,
    )
    return page(f"{verb}", body, viewer)


def edited_page(dead_letter_id: str, changes: Mapping[str, object], viewer: Viewer) -> Html:
    rows = join(
        render("<tr><th>$k</th><td>$v</td></tr>", k=k, v=json.dumps(v, ensure_ascii=False, default=str))
        for k, v in changes.items()
    )
    body = render(
        """<p id="edited">Edited; the original body is kept. Replay it from its page.</p>
<table>$rows</table><p><a href="/messages/$id">back to the dead letter</a></p>""",
        rows=rows,
        id=dead_letter_id,
    )
    return page("Edited", body, viewer)


# -- audit -----------------------------------------------------------------------------------------


def audit_page(records: Sequence[DlqAuditRecord], viewer: Viewer) -> Html:
    rows = join(
        render(
            """<tr><td>$at</td><td class="operator">$op</td><td>$cmd</td><td>$phase</td><td>$outcome</td>
<td>$dry</td><td class="reason">$reason</td><td class="num">$n</td></tr>""",
            at=when(a.at),
            op=a.operator,
            cmd=a.command,
            phase=a.phase,
            outcome=a.outcome,
            dry="dry run" if a.dry_run else "",
            reason=a.reason or "",
            n=a.selection.id_count,
        )
        for a in records
    )
    body = render(
        """<table class="audit"><thead><tr><th>at</th><th>operator</th><th>command</th><th>phase</th>
<th>outcome</th><th></th><th>reason</th><th>dead letters</th></tr></thead><tbody>$rows</tbody></table>""",
        rows=rows,
    )
    return page("Audit log", body, viewer)
