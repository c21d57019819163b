"""Which dead letters a command acts on: filters, time ranges, header matches, replay eligibility.

Pure functions and values only (no I/O), so the rules are unit-tested from tables; the store
turns a :class:`Filter` into SQL (:mod:`connector.dlq.sql`) and the integration tests hold every
backend to the same results.

Filter semantics: values of one criterion are alternatives (``--queue a --queue b``: either), and
criteria combine with AND. Text matching (``--text``) is a case-insensitive substring of the reason
code or the error message. Times compare the *last* failure: ``--since 2h`` means "failed within
the last two hours".
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from connector.dlq import codec
from connector.dlq.records import STATUSES, DeadLetterRecord, Status
from connector.errors import UsageError

OPEN_STATUSES: Final[frozenset[Status]] = frozenset({"parked", "replaying"})
"""What ``list``/``export`` show unless told otherwise: what still needs a decision."""
MIN_ID_PREFIX: Final = 6
_RELATIVE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HEX_ID: Final = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """``--header name=value`` (the header's value, compared as text) or ``--header name`` (present)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class Filter:
    """A selection of dead letters; the empty filter (with ``statuses`` empty) is every row."""

    ids: tuple[str, ...] = ()
    statuses: frozenset[Status] = OPEN_STATUSES
    flows: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    error_classes: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    replay_ids: tuple[str, ...] = ()
    text: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    headers: tuple[HeaderMatch, ...] = ()

    @property
    def narrows(self) -> bool:
        """True when something besides the status limits the selection (purge refuses "everything")."""
        return bool(
            self.ids
            or self.flows
            or self.sources
            or self.queues
            or self.error_classes
            or self.reasons
            or self.categories
            or self.groups
            or self.message_ids
            or self.replay_ids
            or self.text
            or self.since
            or self.until
            or self.headers
        )

    def describe(self) -> dict[str, Any]:
        """The filter as the audit records it (explicit ids are listed in the selection instead)."""
        described: dict[str, Any] = {"statuses": sorted(self.statuses) or ["any"]}
        for name in (
            "flows",
            "sources",
            "queues",
            "error_classes",
            "reasons",
            "categories",
            "groups",
            "message_ids",
            "replay_ids",
        ):
            values = getattr(self, name)
            if values:
                described[name] = list(values)
        if self.text:
            described["text"] = self.text
        if self.since:
            described["since"] = self.since.isoformat()
        if self.until:
            described["until"] = self.until.isoformat()
        if self.headers:
            described["headers"] = [str(h) for h in self.headers]
        return described

    def matches(self, record: DeadLetterRecord) -> bool:
        """The reference semantics the SQL backends restate (the integration tests compare them)."""
        if self.ids and record.id not in self.ids:
            return False
        if self.statuses and record.status not in self.statuses:
            return False
        checks: tuple[tuple[tuple[str, ...], str | None], ...] = (
            (self.flows, record.flow),
            (self.sources, record.source),
            (self.queues, record.original_queue),
            (self.error_classes, record.error_class),
            (self.reasons, record.reason),
            (self.categories, record.category),
            (self.groups, record.group_id),
            (self.message_ids, record.message_id),
            (self.replay_ids, record.prior_replay_id),
        )
        for wanted, actual in checks:
            if wanted and actual not in wanted:
                return False
        if self.text:
            needle = self.text.lower()
            if needle not in record.reason.lower() and needle not in record.error_message.lower():
                return False
        if self.since and record.last_failure_at < self.since:
            return False
        if self.until and record.last_failure_at >= self.until:
            return False
        headers = codec.decode_table(record.headers)
        for match in self.headers:
            if match.name not in headers:
                return False
            if match.value is not None and header_text(headers[match.name]) != match.value:
                return False
        return True


def header_text(value: Any) -> str:
    """How a header value compares with ``--header name=value`` (JSON's spelling of scalars)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return "null"
    return str(value)


@dataclass(frozen=True, slots=True)
class BodyMatch:
    """``field=value`` (the body's JSON field equals ``value`` as text) or ``field~text`` (contains,
    case-insensitively). ``field`` is a dotted path into the JSON body: ``user.code``."""

    path: tuple[str, ...]
    value: str
    contains: bool = False

    def __str__(self) -> str:
        return ".".join(self.path) + ("~" if self.contains else "=") + self.value

    def matches(self, body: bytes | None) -> bool:
        found = body_field(body, self.path)
        if found is None:
            return False
        if self.contains:
            return self.value.lower() in found.lower()
        return found == self.value


def body_field(body: bytes | None, path: Sequence[str]) -> str | None:
    """The body's JSON field at ``path`` as text (JSON's spelling of scalars, objects as JSON), or
    None when the body is not JSON or has no such field."""
    if body is None:
        return None
    try:
        value: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str):
        return value
    return header_text(value)


# --------------------------------------------------------------------------------------------------
# Parsing what operators type


def parse_moment(text: str, *, now: dt.datetime) -> dt.datetime:
    """``30m``, ``2h``, ``7d``, ``1w`` (that long before now) or an ISO-8601 date / date-time.

    A date-time without an offset is taken as UTC (the store's times are UTC); a bare date is its
    midnight UTC.
    """
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return now - dt.timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"cannot read {text!r} as a time: use 30m, 2h, 7d, 1w or an ISO date/time "
            "like 2026-11-20 or 2026-11-20T14:00:00+02:00"
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def parse_header_match(text: str) -> HeaderMatch:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not name:
        raise UsageError(f"--header {text!r}: expected name=value or name")
    return HeaderMatch(name, value if sep else None)


def parse_body_match(text: str) -> BodyMatch:
    """``user_code=NEWBIE`` (equals) or ``description~overtime`` (contains, any case)."""
    at = min((i for i in (text.find("="), text.find("~")) if i >= 0), default=-1)
    if at <= 0:
        raise UsageError(f"body field {text!r}: expected field=value or field~text, e.g. user_code=NEWBIE")
    path = tuple(part.strip() for part in text[:at].split("."))
    if not all(path):
        raise UsageError(f"body field {text!r}: the field is a dotted path like user.code")
    return BodyMatch(path, text[at + 1 :].strip(), contains=text[at] == "~")


def parse_statuses(values: Iterable[str], *, default: frozenset[Status]) -> frozenset[Status]:
    """``--status parked --status replayed``; ``all`` means every status; none given: ``default``."""
    chosen: set[Status] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name == "all":
                return frozenset()
            if name == "open":
                chosen |= OPEN_STATUSES
                continue
            if name not in STATUSES:
                raise UsageError(f"unknown status {name!r}; one of {', '.join(STATUSES)}, open, all")
            chosen.add(name)
    return frozenset(chosen) if chosen else default


def check_id_prefix(text: str) -> str:
    """A dead-letter id or a unique prefix of one (at least :data:`MIN_ID_PREFIX` hex chars)."""
    value = text.strip().lower()
    if len(value) < MIN_ID_PREFIX or not _HEX_ID.match(value):
        raise UsageError(
            f"{text!r} is not a dead-letter id: ids are hex, give at least {MIN_ID_PREFIX} characters"
        )
    return value


# --------------------------------------------------------------------------------------------------
# Replay eligibility


@dataclass(frozen=True, slots=True)
class ReplayCandidate:
    """What eligibility needs to know about a selected row."""

    id: str
    status: Status
    replay_id: str | None
    has_body: bool


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """The frozen selection of a replay: what will be sent, in order, and what is left out and why."""

    eligible: tuple[str, ...]
    resumed: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for why in self.skipped.values():
            counts[why] = counts.get(why, 0) + 1
        return counts


def plan_replay(
    candidates: Sequence[ReplayCandidate], *, again: bool, live_runs: Iterable[str]
) -> ReplayPlan:
    """Decide, row by row and in order, what a replay sends; the store's claim enforces the same.

    * ``parked``: sent.
    * ``replaying`` under a run that is no longer alive: sent again (resumed after a crash; its
      first copy may or may not have reached the broker -- idempotent consumers absorb a twin).
    * ``replaying`` under a live run: left alone (another operator's replay owns it).
    * ``replayed``: only with ``again`` (replaying a success twice is rarely what anyone wants).
    * ``purged`` or without a body: never.
    * ``archived``: never (set aside on purpose; restore it first).
    """
    alive = set(live_runs)
    eligible: list[str] = []
    resumed: list[str] = []
    skipped: dict[str, str] = {}
    for row in candidates:
        if row.status == "purged" or not row.has_body:
            skipped[row.id] = "purged"
        elif row.status == "replaying" and row.replay_id in alive:
            skipped[row.id] = "being replayed by another run"
        elif row.status == "archived":
            skipped[row.id] = "archived (restore it first)"
        elif row.status == "replayed" and not again:
            skipped[row.id] = "already replayed (use --again)"
        else:
            eligible.append(row.id)
            if row.status == "replaying":
                resumed.append(row.id)
    return ReplayPlan(tuple(eligible), tuple(resumed), skipped)
