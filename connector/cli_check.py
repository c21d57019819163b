"""What ``severa-connector check`` prints: each check's status, the count of them, or one JSON document.

The checks themselves are the adapters' (:mod:`adapters.severa.check`, :mod:`adapters.netvisor.check`):
plain data, one row per check. Here they get one vocabulary -- ``ok``, ``warning``, ``failed``,
``not_checked`` -- and one rendering for every peer, so that Severa's and Netvisor's sections read
alike and a summary counts a failure apart from what it kept from being checked.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any, Protocol

from rich.text import Text

from connector.cli_output import Column, OutputFormat, print_table, stdout_console


class CheckRow(Protocol):
    """One row of ``check``: the shape both adapters' ``CheckResult`` have (``warning`` only
    Severa's, so it is read with a default)."""

    @property
    def name(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...
    @property
    def fix(self) -> str | None: ...
    @property
    def skipped(self) -> bool: ...


class CheckStatus(enum.StrEnum):
    """A check's verdict in ``check``'s output; ``failed`` and ``not_checked`` make it exit 1."""

    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    NOT_CHECKED = "not_checked"


_MARKS = {
    CheckStatus.OK: ("✓", "green"),
    CheckStatus.WARNING: ("!", "yellow"),
    CheckStatus.FAILED: ("✗", "red"),
    CheckStatus.NOT_CHECKED: ("-", "yellow"),
}
_CHECK_COLUMNS = (
    Column(""),
    Column("check", max_width=34),
    Column("status", wide_only=True),
    Column("result", flex=True, wrap=True),
    Column("fix", flex=True, wrap=True, wide_only=True),
)


def check_status(result: CheckRow) -> CheckStatus:
    if result.skipped:
        return CheckStatus.NOT_CHECKED
    if not result.ok:
        return CheckStatus.FAILED
    return CheckStatus.WARNING if getattr(result, "warning", False) else CheckStatus.OK


@dataclasses.dataclass(frozen=True, slots=True)
class CheckSection:
    """The checks of one peer (``severa``, ``netvisor``) and the line that introduces them."""

    peer: str
    title: str
    results: Sequence[CheckRow]


def print_check_section(section: CheckSection, output: OutputFormat) -> None:
    """One peer's checks as a table; one renderer for every peer, so that they read alike.

    ``table`` keeps the mark and the check's name on the first line of its row and wraps the
    result below itself, then the fix (``fix: …``); ``wide`` gives each its own column on one line.
    The cells are ``Text``: a peer's message quoted in a detail (``[…]``) is not read as markup.
    The rows hold only what the check functions put in them, which never includes a key.
    """
    rows = []
    for result in section.results:
        status = check_status(result)
        mark, style = _MARKS[status]
        text = Text(result.detail)
        if result.fix and output is OutputFormat.TABLE:
            text.append("\nfix: " + result.fix, style="dim" if status is CheckStatus.OK else "")
        rows.append((Text(mark, style=style), result.name, status.value, text, Text(result.fix or "")))
    print_table(stdout_console(), _CHECK_COLUMNS, rows, output, title=section.title)


def summarise_checks(statuses: Sequence[CheckStatus]) -> str:
    """``all 8 checks passed``, or what went wrong first: ``1 failed, 6 not checked, 1 passed``."""
    count = {status: statuses.count(status) for status in CheckStatus}
    if not count[CheckStatus.FAILED] and not count[CheckStatus.NOT_CHECKED]:
        warned = count[CheckStatus.WARNING]
        return f"all {len(statuses)} checks passed" + (f", {warned} with a warning" if warned else "")
    parts = [
        (count[CheckStatus.FAILED], "failed"),
        (count[CheckStatus.NOT_CHECKED], "not checked"),
        (count[CheckStatus.WARNING], "passed with a warning"),
        (count[CheckStatus.OK], "passed"),
    ]
    return ", ".join(f"{n} {what}" for n, what in parts if n)


def checks_document(sections: Sequence[CheckSection]) -> dict[str, Any]:
    """``check -o json``: the verdict, the counts, and every check in order (docs/operations.md)."""
    rows = [
        (section.peer, result, check_status(result)) for section in sections for result in section.results
    ]
    statuses = [status for _, _, status in rows]
    checks = [
        {"peer": peer, "name": r.name, "status": status.value, "message": r.detail, "fix": r.fix}
        for peer, r, status in rows
    ]
    return {
        "ok": all(s in (CheckStatus.OK, CheckStatus.WARNING) for s in statuses),
        "summary": summarise_checks(statuses),
        "counts": {status.value: statuses.count(status) for status in CheckStatus},
        "peers": [{"peer": section.peer, "title": section.title} for section in sections],
        "checks": checks,
    }
