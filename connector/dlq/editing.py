"""``dlq edit``: change a dead letter's body, and refuse a body the flow would reject anyway.

Two ways in: ``--set path=value`` (repeatable; ``a.b=value`` reaches into nested objects; the value
is read as JSON when it parses -- ``7.5``, ``true``, ``null``, ``"007"`` -- and as a plain string
otherwise) or ``$VISUAL`` / ``$EDITOR`` on a pretty-printed copy. Either way the result is
validated against the flow's schema (:mod:`connector.dlq.contracts`) before the store takes it, so
an edit can never turn a dead letter into a different poison message. The original body is kept in
the store (``original_body``, first edit only) and in the audit record.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from connector.dlq.contracts import FlowContract
from connector.errors import UsageError

_MISSING = object()


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], value as JSON if it parses, else the string)."""
    path, sep, raw = text.partition("=")
    keys = [k.strip() for k in path.split(".")]
    if not sep or not all(keys):
        raise UsageError(f"--set {text!r}: expected field=value (nested: a.b=value)")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return keys, value


def apply_assignments(body: bytes, assignments: Sequence[str]) -> tuple[bytes, dict[str, Any]]:
    """The body with each assignment applied, and what changed (``{path: {"from", "to"}}``)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UsageError("--set needs a JSON object body; this one is not JSON: use the editor") from None
    if not isinstance(document, dict):
        raise UsageError("--set needs a JSON object body; this one is JSON but not an object")
    changes: dict[str, Any] = {}
    for text in assignments:
        keys, value = parse_assignment(text)
        target = document
        for key in keys[:-1]:
            child = target.get(key, _MISSING)
            if child is _MISSING:
                child = target[key] = {}
            if not isinstance(child, dict):
                raise UsageError(f"--set {text!r}: {key!r} is not an object")
            target = child
        old = target.get(keys[-1], _MISSING)
        target[keys[-1]] = value
        changes[".".join(keys)] = {"from": None if old is _MISSING else old, "to": value}
    return json.dumps(document, ensure_ascii=False).encode(), changes


def validation_errors(body: bytes, contract: FlowContract | None) -> list[str]:
    """Why the flow would reject ``body`` (empty: it would not)."""
    if contract is None or contract.schema is None:
        return []
    try:
        contract.schema.model_validate_json(body)
    except pydantic.ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
    return []


def editor_command() -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return shlex.split(editor)


def for_editing(body: bytes) -> str:
    """Pretty JSON when the body is JSON (easier to edit), else the text as it is."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False) + "\n"
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


def run_editor(text: str, *, suffix: str = ".json") -> str:
    """Open ``text`` in the operator's editor and return what they saved."""
    with tempfile.TemporaryDirectory(prefix="severa-dlq-edit-") as directory:
        path = Path(directory) / f"dead-letter{suffix}"
        path.write_text(text, encoding="utf-8")
        command = [*editor_command(), str(path)]
        try:
            completed = subprocess.run(command, check=False)
        except OSError as exc:
            raise UsageError(f"cannot start the editor {command[0]!r}: {exc.strerror}; set $EDITOR") from None
        if completed.returncode != 0:
            raise UsageError(f"the editor exited with {completed.returncode}: nothing changed")
        return path.read_text(encoding="utf-8")


def normalised(text: str) -> bytes:
    """What goes back from the editor: compact JSON when it is JSON (as producers send it)."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False).encode()
    except ValueError:
        return text.encode()
