"""AMQP field values ↔ JSON, losslessly: how the dead-letter store and ``dlq export`` keep headers.

AMQP headers hold types JSON has not (timestamps, byte arrays, decimals). They are written as
single-key tagged objects -- ``{"$ts": iso}``, ``{"$bytes": base64}``, ``{"$decimal": digits}`` --
and a table that itself has a key starting with ``$`` is wrapped as ``{"$table": {...}}``, so a
producer's header can never be mistaken for a tag. ``decode(encode(v)) == v`` for every value
aio-pika can deliver (tested from a table).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

TS: Final = "$ts"
BYTES: Final = "$bytes"
DECIMAL: Final = "$decimal"
TABLE: Final = "$table"


def encode(value: Any) -> Any:
    """An AMQP field value as JSON-able data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return {TS: moment.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Decimal):
        return {DECIMAL: str(value)}
    if isinstance(value, Mapping):
        table = {str(k): encode(v) for k, v in value.items()}
        return {TABLE: table} if any(k.startswith("$") for k in table) else table
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    # Anything else is not an AMQP field value; keep its text rather than fail an ingest.
    return str(value)


def decode(value: Any) -> Any:
    """The AMQP field value :func:`encode` was given."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == TS and isinstance(inner, str):
            return dt.datetime.fromisoformat(inner)
        if key == BYTES and isinstance(inner, str):
            return base64.b64decode(inner)
        if key == DECIMAL and isinstance(inner, str):
            return Decimal(inner)
        if key == TABLE and isinstance(inner, dict):
            return {k: decode(v) for k, v in inner.items()}
    return {k: decode(v) for k, v in value.items()}


def encode_table(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A header table as JSON-able data (never wrapped: its keys are the header names)."""
    return {str(k): encode(v) for k, v in (headers or {}).items()}


def decode_table(data: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(k): decode(v) for k, v in (data or {}).items()}


def dumps_table(headers: Mapping[str, Any] | None) -> str:
    """Compact, key-sorted JSON of a header table (stable: content hashes are built from it)."""
    return json.dumps(encode_table(headers), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads_table(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a header table must be a JSON object")
    return decode_table(data)
