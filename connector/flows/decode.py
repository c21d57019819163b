"""Decoding a message body into its contract model: one error per body, naming every bad field.

Every flow starts the same way -- JSON, then the pydantic contract -- and a body that fails either is
one :class:`~connector.errors.InvalidMessage` (dead-lettered at once: no retry makes it valid),
whose message lists each problem as ``field.path: what is wrong`` so the person reading the dead
letter knows what to fix before an edit-and-replay. Input values are never quoted (a body may
carry personal data or be huge).
"""

from __future__ import annotations

from typing import TypeVar

import pydantic

from connector.errors import InvalidMessage

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def decode(body: bytes, model: type[ModelT]) -> ModelT:
    """``model`` from ``body``, or :class:`InvalidMessage` (``invalid_json`` / ``schema_violation``)."""
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise InvalidMessage(
                f"body is not valid JSON: {errors[0]['msg']}", reason="invalid_json"
            ) from None
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in errors)
        raise InvalidMessage(
            f"event violates the {model.__name__} schema: {problems}", reason="schema_violation"
        ) from None
