"""The console's aiohttp application: routes, security middleware, and the calls into ``connector.dlq``.

Every page opens a :func:`~connector.dlq.operations.open_session` as the ``dlq`` commands do and
calls the same operations (``list_groups``, ``list_page``, ``show``, ``replay``, ``edit``); the
console adds no DLQ logic of its own, so what the CLI guarantees -- frozen selections, claims,
confirms, "no audit, no action" -- holds here too. A replay runs inside its request: aiohttp does
not cancel a handler when the browser goes away, so closing the tab does not stop it halfway.

Order of checks on a state-changing request: authenticated (else 401 / login page), not
read-only (else 403), CSRF token matches (else 403) -- all before the form is acted on.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from multidict import MultiMapping

from connector.config import DlqSettings
from connector.console import views
from connector.console.auth import SESSION_COOKIE, SESSION_SECONDS, Authenticator, Identity, clean_operator
from connector.console.runs import ConsoleRun, RunRegistry
from connector.dlq.grouping import GroupBy
from connector.dlq.operations import (
    DlqSession,
    InvalidEdit,
    PeerUnreachable,
    ReplayOptions,
    ReplayOutcome,
    archive,
    edit,
    list_groups,
    list_page,
    narrow_by_body,
    open_session,
    replay,
    replay_selection,
    resolve_ids,
    restore,
    show,
)
from connector.dlq.records import Group, Status
from connector.dlq.selection import (
    OPEN_STATUSES,
    Filter,
    check_id_prefix,
    parse_body_match,
    parse_moment,
    parse_statuses,
)
from connector.dlq.store import StoreUnavailable
from connector.errors import ConfigError, ConnectorError, UsageError
from connector.logging import get_logger

log = get_logger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOGIN_COOKIE: Final = "console_login"
PUBLIC: Final = ("/login", "/healthz", "/static/")
REPLAY_STATUSES: Final[frozenset[Status]] = frozenset({"parked", "replaying", "replayed"})
GROUP_PAGE_ROWS: Final = 200
SEARCH_ROWS: Final = 200
TOP_GROUPS: Final = 3
SEARCH_FIELDS: Final = ("flow", "reason", "text", "source", "since", "until", "status", "body")
SOURCES: Final = ("connector", "broker", "unknown")
_GROUP_ID: Final = re.compile(r"^g-[0-9a-f]{12}$")
_REPLAY_ID: Final = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """How this console runs: the DLQ settings (store, broker), its authenticator and its mode."""

    settings: DlqSettings
    auth: Authenticator
    read_only: bool = False
    trace_url: str | None = None


CONFIG: Final = web.AppKey("console_config", ConsoleConfig)
RUNS: Final = web.AppKey("console_runs", RunRegistry)


def create_app(config: ConsoleConfig) -> web.Application:
    app = web.Application(middlewares=[security_headers, authenticate], client_max_size=256 * 1024)
    app[CONFIG] = config
    app[RUNS] = RunRegistry()

    async def stop_runs(app: web.Application) -> None:
        await app[RUNS].aclose()

    app.on_shutdown.append(stop_runs)
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/login", login_form),
            web.post("/login", login),
            web.post("/logout", logout),
            web.get("/", overview),
            web.get("/groups", groups),
            web.get("/groups/{group}", group),
            web.get("/search", search),
            web.get("/messages/{id}", message),
            web.post("/messages/{id}/edit", edit_message),
            web.post("/replay/preview", replay_preview),
            web.post("/replay", replay_confirmed),
            web.get("/runs/{replay_id}", run_page),
            web.post("/archive", archive_selected),
            web.post("/restore", restore_selected),
            web.get("/audit", audit),
            web.static("/static", STATIC_DIR, show_index=False, follow_symlinks=False),
        ]
    )
    return app


# -- middleware ------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The headers on every answer, errors included (an exception page is a page too)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC):
        return await handler(request)
    config = request.app[CONFIG]
    identity = config.auth.identify(request)
    if identity is None:
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(
            text="authentication required", headers={"WWW-Authenticate": 'Bearer realm="dlq-console"'}
        )
    if request.method != "GET":
        if config.read_only and request.path != "/logout":
            return _html(views.error_page(403, "this console is read-only", _viewer(request)), status=403)
        form = await request.post()
        submitted = form.get("csrf")
        if not config.auth.csrf_ok(identity, submitted if isinstance(submitted, str) else None):
            log.warning("console_csrf_refused", path=request.path, operator=identity.operator)
            return _html(
                views.error_page(403, "the form's CSRF token is missing or stale: reload the page", None),
                status=403,
            )
    return await handler(request)


# -- helpers ---------------------------------------------------------------------------------------


def _identity(request: web.Request) -> Identity:
    """Who sent the request (the middleware let it through, so somebody did; re-checked cheaply)."""
    identity = request.app[CONFIG].auth.identify(request)
    if identity is None:  # pragma: no cover - the middleware answered 401 already
        raise web.HTTPUnauthorized(text="authentication required")
    return identity


def _viewer(request: web.Request) -> views.Viewer:
    identity = _identity(request)
    return views.Viewer(
        operator=identity.operator,
        csrf=identity.csrf,
        read_only=request.app[CONFIG].read_only,
        via=identity.via,
    )


def _html(markup: views.Html, *, status: int = 200) -> web.Response:
    return web.Response(text=markup, status=status, content_type="text/html", charset="utf-8")


async def _with_session(
    request: web.Request,
    work: Callable[[DlqSession], Awaitable[web.Response]],
    *,
    need_broker: bool = False,
) -> web.Response:
    """Run ``work`` on a DLQ session of this operator; our errors become a page, never a traceback."""
    viewer = _viewer(request)
    try:
        async with open_session(
            request.app[CONFIG].settings, operator=viewer.operator, need_broker=need_broker
        ) as session:
            return await work(session)
    except UsageError as exc:
        return _html(views.error_page(400, exc.message, viewer), status=400)
    except ConfigError as exc:
        return _html(views.error_page(503, exc.message, viewer), status=503)
    except (PeerUnreachable, StoreUnavailable) as exc:
        return _html(views.error_page(503, exc.message, viewer), status=503)
    except ConnectorError as exc:
        log.warning("console_action_failed", path=request.path, error=exc.message)
        return _html(views.error_page(500, exc.message, viewer), status=500)


def _text(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value.strip() if isinstance(value, str) else ""


# -- public ----------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def login_form(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    """The form, with a fresh login nonce in a cookie and a hidden field (login CSRF: double submit)."""
    config = request.app[CONFIG]
    nonce = secrets.token_urlsafe(24)
    response = _html(
        views.login_page(nonce=nonce, error=error, accepts_token=config.auth.accepts_token), status=status
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        max_age=600,
        path="/login",
    )
    return response


async def login(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    form = await request.post()
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not secrets.compare_digest(nonce, _text(form, "login_nonce")):
        return await login_form(request, error="the sign-in form expired: try again", status=403)
    operator = clean_operator(_text(form, "operator"))
    if not operator:
        return await login_form(
            request, error="say who you are: your name goes into the audit log", status=400
        )
    if not config.auth.token_matches(_text(form, "token")):
        log.warning("console_login_refused", operator=operator)
        return await login_form(request, error="wrong token", status=401)
    log.info("console_login", operator=operator)
    response = _see_other("/")
    response.set_cookie(
        SESSION_COOKIE,
        config.auth.new_session(operator),
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        max_age=SESSION_SECONDS,
        path="/",
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def logout(request: web.Request) -> web.Response:
    response = _see_other("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages -----------------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    async def work(session: DlqSession) -> web.Response:
        now = dt.datetime.now(dt.UTC)
        summaries = []
        for flow_group in await list_groups(session, Filter(), GroupBy.FLOW):
            flow = flow_group.key
            base = Filter(flows=(flow,)) if flow else Filter()
            tops: list[Group] = await list_groups(session, base, GroupBy.ERROR) if flow else []
            summaries.append(
                views.FlowSummary(
                    flow=flow,
                    open=flow_group.count,
                    last_hour=await session.store.count(
                        Filter(flows=base.flows, since=now - dt.timedelta(hours=1))
                    ),
                    last_day=await session.store.count(
                        Filter(flows=base.flows, since=now - dt.timedelta(days=1))
                    ),
                    top_groups=tops[:TOP_GROUPS],
                    oldest=min(tops, key=lambda g: g.first_failure_at) if tops else None,
                )
            )
        pods = await session.store.pods()
        return _html(views.overview_page(summaries, pods, _viewer(request), now=now))

    return await _with_session(request, work)


def _search_values(request: web.Request) -> dict[str, str]:
    return {k: request.query.get(k, "").strip() for k in SEARCH_FIELDS}


async def _search_filter(session: DlqSession, values: dict[str, str]) -> Filter | None:
    """The filter the search form describes (None: the body field matches nothing).

    Flow, reason, source: exact; error text: substring of reason or message; since/until: the
    last failure (``2h``, ``7d`` or an ISO date); body: ``field=value`` or ``field~text``.
    """
    now = dt.datetime.now(dt.UTC)
    source = values["source"]
    if source and source not in SOURCES:
        raise UsageError(f"source {source!r}: one of {', '.join(SOURCES)}")
    selection = Filter(
        statuses=parse_statuses([values["status"]] if values["status"] else [], default=OPEN_STATUSES),
        flows=(values["flow"],) if values["flow"] else (),
        reasons=(values["reason"],) if values["reason"] else (),
        sources=(source,) if source else (),
        text=values["text"] or None,
        since=parse_moment(values["since"], now=now) if values["since"] else None,
        until=parse_moment(values["until"], now=now) if values["until"] else None,
    )
    if not values["body"]:
        return selection
    return await narrow_by_body(session, selection, [parse_body_match(values["body"])])


async def groups(request: web.Request) -> web.Response:
    values = _search_values(request)

    async def work(session: DlqSession) -> web.Response:
        selection = await _search_filter(session, values)
        found = await list_groups(session, selection, GroupBy.ERROR) if selection is not None else []
        return _html(views.groups_page(found, values, _viewer(request)))

    return await _with_session(request, work)


async def search(request: web.Request) -> web.Response:
    """The dead letters the filters select, with checkboxes: replay (dry run first) or archive them."""
    values = _search_values(request)

    async def work(session: DlqSession) -> web.Response:
        selection = await _search_filter(session, values)
        listed = await list_page(session, selection, limit=SEARCH_ROWS) if selection is not None else None
        records = listed.records if listed is not None else []
        total = listed.total if listed is not None else 0
        return _html(views.search_page(records, total, values, _viewer(request)))

    return await _with_session(request, work)


async def group(request: web.Request) -> web.Response:
    key = request.match_info["group"]
    if not _GROUP_ID.match(key):
        raise web.HTTPNotFound(text="no such failure group")

    async def work(session: DlqSession) -> web.Response:
        selection = Filter(groups=(key,), statuses=frozenset())
        summary = await list_groups(session, Filter(groups=(key,), statuses=OPEN_STATUSES), GroupBy.ERROR)
        listed = await list_page(session, selection, limit=GROUP_PAGE_ROWS)
        head = summary[0] if summary else None
        return _html(views.group_page(key, head, listed.records, listed.total, _viewer(request)))

    return await _with_session(request, work)


async def message(request: web.Request) -> web.Response:
    dead_letter_id = request.match_info["id"]

    async def work(session: DlqSession) -> web.Response:
        shown = await show(session, dead_letter_id)
        return _html(views.message_page(shown, _viewer(request), trace_url=request.app[CONFIG].trace_url))

    return await _with_session(request, work)


async def audit(request: web.Request) -> web.Response:
    async def work(session: DlqSession) -> web.Response:
        return _html(views.audit_page(await session.store.audits(limit=100), _viewer(request)))

    return await _with_session(request, work)


async def run_page(request: web.Request) -> web.Response:
    """A replay's progress (refreshing itself while it runs), then its result."""
    replay_id = request.match_info["replay_id"]
    if not _REPLAY_ID.match(replay_id):
        raise web.HTTPNotFound(text="no such replay")
    started = request.app[RUNS].get(replay_id)

    async def work(session: DlqSession) -> web.Response:
        recorded = await session.store.run(replay_id)
        if recorded is None and started is None:
            return _html(views.error_page(404, f"no replay {replay_id}", _viewer(request)), status=404)
        progress = await session.store.run_progress(replay_id)
        return _html(views.run_page(replay_id, recorded, progress, started, _viewer(request)))

    return await _with_session(request, work)


# -- actions ---------------------------------------------------------------------------------------

REPLAY_FIELDS: Final = ("group", "reason", "canary", "canary_only", "rate", "again")


def _ids(form: object) -> list[str]:
    """The dead-letter ids a form names (checkboxes ``id``), each checked to be a hex id."""
    values = form.getall("id", []) if isinstance(form, MultiMapping) else []
    return list(dict.fromkeys(check_id_prefix(v) for v in values if isinstance(v, str) and v.strip()))


def _replay_form(form: object) -> tuple[dict[str, str], ReplayOptions, str | None, list[str]]:
    """The replay form's fields, checked: (echo for the confirm form, options, group, ids)."""
    values = {k: _text(form, k) for k in REPLAY_FIELDS}
    if not values["reason"]:
        raise UsageError("say why you replay: the reason goes into the audit log")
    group_key = values["group"] or None
    if group_key is not None and not _GROUP_ID.match(group_key):
        raise UsageError(f"{group_key!r} is not a failure group id")
    ids = _ids(form)
    if group_key is None and not ids:
        raise UsageError("replay what? tick dead letters, or name a failure group or a dead letter")
    try:
        canary = int(values["canary"] or "0")
        rate = float(values["rate"]) if values["rate"] else None
    except ValueError:
        raise UsageError("canary must be a whole number and rate a number") from None
    if canary < 0 or (rate is not None and rate < 0.01):
        raise UsageError("canary must be 0 or more, rate at least 0.01 per second")
    canary_only = bool(values["canary_only"]) and canary > 0
    options = ReplayOptions(
        reason=values["reason"],
        again=bool(values["again"]),
        canary=canary,
        canary_only=canary_only,
        rate=rate,
    )
    return values, options, group_key, ids


def _with_dry_run(options: ReplayOptions, dry_run: bool) -> ReplayOptions:
    return ReplayOptions(
        reason=options.reason,
        again=options.again,
        canary=options.canary,
        canary_only=options.canary_only,
        rate=options.rate,
        dry_run=dry_run,
    )


async def _replay_target(session: DlqSession, group_key: str | None, ids: list[str]) -> Filter:
    """Ticked ids win over the group (a selection within it); ids are resolved as ``dlq`` does."""
    if ids:
        return replay_selection(await resolve_ids(session.store, ids), Filter(), everything=False)
    return replay_selection(
        [], Filter(groups=(group_key,) if group_key else (), statuses=REPLAY_STATUSES), everything=False
    )


async def replay_preview(request: web.Request) -> web.Response:
    """The dry run: the plan, audited as a dry run, and the form that confirms exactly it."""
    form = await request.post()
    viewer = _viewer(request)
    try:
        values, options, group_key, ids = _replay_form(form)
    except UsageError as exc:
        return _html(views.error_page(400, exc.message, viewer), status=400)

    async def work(session: DlqSession) -> web.Response:
        selection = await _replay_target(session, group_key, ids)
        outcome = await replay(session, selection, _with_dry_run(options, True))
        return _html(views.plan_page(outcome, values, ids, viewer))

    return await _with_session(request, work, need_broker=True)


async def replay_confirmed(request: web.Request) -> web.Response:
    """Start the replay as a task of the console and send the browser to its live page."""
    form = await request.post()
    viewer = _viewer(request)
    try:
        _, options, group_key, ids = _replay_form(form)
    except UsageError as exc:
        return _html(views.error_page(400, exc.message, viewer), status=400)
    settings = request.app[CONFIG].settings
    replay_id = uuid.uuid4().hex

    run = ConsoleRun(replay_id=replay_id, operator=viewer.operator, selected=0)

    async def work() -> ReplayOutcome:
        async with open_session(settings, operator=viewer.operator, need_broker=True) as session:
            selection = await _replay_target(session, group_key, ids)
            outcome = await replay(
                session, selection, _with_dry_run(options, False), replay_id=replay_id, stop=run.stop
            )
        log.info(
            "console_replay",
            operator=viewer.operator,
            replay_id=replay_id,
            selected=len(outcome.plan.eligible),
            status=outcome.report.status if outcome.report else "nothing eligible",
        )
        return outcome

    request.app[RUNS].start(run, work())
    return _see_other(f"/runs/{replay_id}")


async def _move(request: web.Request, *, archiving: bool) -> web.Response:
    form = await request.post()
    viewer = _viewer(request)
    reason = _text(form, "reason")
    group_key = _text(form, "group") or None
    try:
        ids = _ids(form)
        if not reason:
            raise UsageError(
                f"say why you {'archive' if archiving else 'restore'}: the reason goes into the audit log"
            )
        if group_key is not None and not _GROUP_ID.match(group_key):
            raise UsageError(f"{group_key!r} is not a failure group id")
        if not ids and group_key is None:
            raise UsageError("tick the dead letters first, or name a failure group")
    except UsageError as exc:
        return _html(views.error_page(400, exc.message, viewer), status=400)

    async def work(session: DlqSession) -> web.Response:
        if ids:
            selection = Filter(ids=tuple(await resolve_ids(session.store, ids)), statuses=frozenset())
        else:
            selection = Filter(groups=(group_key,) if group_key else (), statuses=frozenset())
        act = archive if archiving else restore
        moved = await act(session, selection, reason=reason)
        log.info(
            "console_archive" if archiving else "console_restore",
            operator=viewer.operator,
            moved=len(moved.moved),
        )
        return _html(views.moved_page(moved, archiving=archiving, group=group_key, viewer=viewer))

    return await _with_session(request, work, need_broker=True)


async def archive_selected(request: web.Request) -> web.Response:
    return await _move(request, archiving=True)


async def restore_selected(request: web.Request) -> web.Response:
    return await _move(request, archiving=False)


async def edit_message(request: web.Request) -> web.Response:
    dead_letter_id = request.match_info["id"]
    form = await request.post()
    viewer = _viewer(request)
    reason = _text(form, "reason")
    text = _text(form, "set")
    assignments = [line.strip() for line in text.splitlines() if line.strip()]
    if not reason or not assignments:
        return _html(
            views.error_page(400, "an edit needs field=value lines and a reason", viewer), status=400
        )

    async def work(session: DlqSession) -> web.Response:
        try:
            edited = await edit(session, dead_letter_id, reason=reason, assignments=assignments)
        except InvalidEdit as exc:
            shown = await show(session, dead_letter_id)
            markup = views.message_page(
                shown, viewer, trace_url=request.app[CONFIG].trace_url, edit_errors=exc.errors, edit_text=text
            )
            return _html(markup, status=422)
        return _html(views.edited_page(edited.record.id, edited.changes, viewer))

    return await _with_session(request, work, need_broker=True)
