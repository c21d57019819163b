"""docs/work-hours-events.md names only reason codes the code can produce.

The reason-code tables of that page are what integrators build their handling on, so a code listed
there that no code path can produce (a renamed reason, an example that never occurs) is a bug in
the docs. Every code in the first column of a table in the "Reason codes" section must be one of:

* a literal reason in ``connector/``, ``adapters/`` or ``schemas/`` (``reason = "…"`` on a class,
  ``reason="…"`` passed to an error);
* ``unknown_<kind>`` for a ``kind`` some ``UnknownReference(kind="…")`` passes;
* ``severa_<fault>`` for a fault :func:`adapters.severa.faults.classify_fault` turns into
  :class:`~connector.errors.SeveraRejected`;
* ``<literal>_persistent``: a transient reason escalated by :func:`connector.errors.outage_behind`;
* a reason the broker writes into ``x-death`` that the dead-letter envelope reads;
* one of the placeholders below, written as such (``unexpected_<ExceptionClass>``) or filled in.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.severa import faults
from connector.errors import (
    SeveraRejected,
    SystemicError,
    TransientError,
    UnknownReference,
    outage_behind,
    reason_of,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "work-hours-events.md"
SOURCE_DIRS = ("connector", "adapters", "schemas")
SECTION = "## Reason codes"
#: Reasons RabbitMQ itself puts into ``x-death``; each must be one the envelope code handles.
BROKER_REASONS = {"delivery_limit"}
BROKER_ENVELOPE = ROOT / "connector" / "dlq" / "envelope.py"
UNEXPECTED = re.compile(r"unexpected_[A-Za-z_][A-Za-z0-9_]*")
CODE = re.compile(r"`([A-Za-z0-9_<>]+)`")


def _python_sources() -> Iterator[Path]:
    for directory in SOURCE_DIRS:
        yield from sorted((ROOT / directory).rglob("*.py"))


def _trees() -> list[ast.AST]:
    return [ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in _python_sources()]


def _text(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _texts(node: ast.AST | None) -> set[str]:
    """The strings an expression can evaluate to: a literal, or either branch of ``a if c else b``."""
    if isinstance(node, ast.IfExp):
        return _texts(node.body) | _texts(node.orelse)
    text = _text(node)
    return {text} if text else set()


def _names_reason(node: ast.AST) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == "reason" for target in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == "reason"
    return isinstance(node, ast.keyword) and node.arg == "reason"


def _reason_literals(trees: list[ast.AST]) -> set[str]:
    """``reason = "…"`` (class attributes) and ``reason="…"`` (keyword arguments)."""
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if _names_reason(node):
                found |= _texts(getattr(node, "value", None))
    return found


def _unknown_reference_reasons(trees: list[ast.AST]) -> set[str]:
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name != UnknownReference.__name__:
                continue
            for keyword in node.keywords:
                if keyword.arg == "kind" and (kind := _text(keyword.value)):
                    found.add(UnknownReference("x", kind=kind, value="").reason)
    return found


def _severa_rejection_reasons() -> set[str]:
    """What classify_fault can hand to SeveraRejected (typed refusals and WCF protocol faults)."""
    known = {*faults._REJECTIONS.values(), *faults._PROTOCOL_FAULTS.values()}
    assert known, "adapters/severa/faults.py names no rejected faults any more: update this test"
    return {SeveraRejected("x", fault=fault, operation="op").reason for fault in known}


class _Escalating(TransientError):
    """A transient error with a systemic counterpart, as LedgerLockTimeout has."""

    escalates_to = SystemicError


def _persistent(reasons: set[str]) -> set[str]:
    """The reasons :func:`outage_behind` gives transient failures that outlived their retries."""
    escalated = (outage_behind(_Escalating("x", reason=reason)) for reason in reasons)
    return {error.reason for error in escalated if error is not None}


@functools.cache
def _producible() -> frozenset[str]:
    trees = _trees()
    literals = _reason_literals(trees)
    return frozenset(
        literals | _unknown_reference_reasons(trees) | _severa_rejection_reasons() | _persistent(literals)
    )


def _placeholders() -> dict[str, bool]:
    """Placeholder spellings allowed in the docs, each with a check that the code still fills it."""
    return {
        "unexpected_<ExceptionClass>": reason_of(KeyError("x")) == "unexpected_KeyError",
        "severa_<fault>": bool(_severa_rejection_reasons()),
        "unknown_<kind>": UnknownReference("x", kind="k", value="").reason == "unknown_k",
    }


def _documented_codes() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else None]
    codes: list[str] = []
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-", " ", ":"}:
            continue
        first_cell = line.split("|")[1]
        codes.extend(CODE.findall(first_cell))
    return codes


def test_the_reason_section_lists_codes() -> None:
    codes = _documented_codes()
    assert len(codes) >= 20, codes  # the parser found the tables
    for expected in ("invalid_json", "schema_violation", "version_conflict", "delivery_limit"):
        assert expected in codes


def test_broker_reasons_are_read_by_the_dead_letter_envelope() -> None:
    source = BROKER_ENVELOPE.read_text(encoding="utf-8")
    for reason in BROKER_REASONS:
        assert f'"{reason}"' in source, reason


@pytest.mark.parametrize("code", _documented_codes())
def test_every_documented_reason_code_can_be_produced(code: str) -> None:
    placeholders = _placeholders()
    if "<" in code:
        assert code in placeholders, f"unknown placeholder {code!r}; known: {sorted(placeholders)}"
        assert placeholders[code], f"the code no longer produces {code!r}"
        return
    if UNEXPECTED.fullmatch(code):
        return
    assert code in _producible() | BROKER_REASONS, (
        f"docs/work-hours-events.md names the reason code {code!r}, which no code in "
        f"{', '.join(SOURCE_DIRS)} produces"
    )


def test_a_code_the_code_cannot_produce_is_caught() -> None:
    producible = _producible()
    assert "invalid_json" in producible
    assert "unknown_work_type" in producible
    assert "severa_validation" in producible
    assert "severa_not_a_fault" not in producible
    assert "unknown_project" not in producible
