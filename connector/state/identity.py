"""The identity of an external hour entry: the one string the ledger is keyed by.

A source system names an entry with two codes, ``source`` and ``source_entry_id``, while the
ledger (and every event's ``external_id``) keys it by one string. Joining the two as
``f"{source}:{source_entry_id}"`` is not injective once either may contain ``:`` --
``("hx:a0", "b")`` and ``("hx", "a0:b")`` both become ``"hx:a0:b"``, and one person's entry
overwrote another's. Escaping the source makes the join injective::

    entry_key(source, entry_id) = escape(source) + ":" + entry_id
    escape: "%" -> "%25", then ":" -> "%3A"

The escaped source holds no ``:``, so the first ``:`` of a key ends it and everything after is the
entry id verbatim. ``%`` is escaped first so that a source literally containing ``%3A`` stays
distinguishable from one containing ``:``. Only the source is escaped: for every source without
``:`` or ``%`` -- all sources seen in practice -- the key is byte for byte the old one, so existing
ledgers, logs and dead letters keep matching. The escape is percent-encoding of just those two
characters, so keys stay readable in ``psql`` and in log lines.

:func:`entry_key` itself lives in :mod:`schemas.identity`, because ``WorkHourEvent.external_id``
is part of the message contract and ``schemas/`` imports nothing from ``connector/``; it is
re-exported here so that the ledger's side -- the inverse, :func:`split_entry_key`, and the
re-keying of old ledgers -- sits next to the one encoder. :func:`legacy_entry_key` re-keys a
ledger written with the old join (schema version 2 of both SQL backends); its docstring states
the one assumption that re-keying has to make.
"""

from __future__ import annotations

from schemas.identity import SEPARATOR, entry_key, escape_source

__all__ = [
    "SEPARATOR",
    "entry_key",
    "escape_source",
    "is_ambiguous_legacy_key",
    "legacy_entry_key",
    "split_entry_key",
    "unescape_source",
]


def unescape_source(escaped: str) -> str:
    """The inverse of :func:`escape_source`; refuses text :func:`escape_source` cannot produce.

    Strict (only ``%25`` and ``%3A``, upper case) so that every source has exactly one key: a
    lenient decoder would let ``%3a`` and ``%3A`` name the same entry under two keys.
    """
    if SEPARATOR in escaped:
        raise ValueError(f"an escaped source never contains {SEPARATOR!r}: {escaped!r}")
    parts = escaped.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        code, rest = part[:2], part[2:]
        if code == "25":
            out.append("%" + rest)
        elif code == "3A":
            out.append(":" + rest)
        else:
            raise ValueError(f"invalid escape '%{code}' in the source part {escaped!r} of an entry key")
    return "".join(out)


def split_entry_key(key: str) -> tuple[str, str]:
    """``(source, source_entry_id)`` back from a key made by :func:`entry_key`.

    Raises :class:`ValueError` for a string :func:`entry_key` cannot have produced.
    """
    escaped, separator, source_entry_id = key.partition(SEPARATOR)
    if not separator:
        raise ValueError(f"an entry key is '<source>:<source_entry_id>', got {key!r}")
    source = unescape_source(escaped)
    _check_part("source", source)
    _check_part("source_entry_id", source_entry_id)
    return source, source_entry_id


def legacy_entry_key(old_key: str) -> str:
    """The key for ``old_key`` written by the old join ``f"{source}:{source_entry_id}"``.

    The old key no longer says where the source ended if either part contained ``:``. Re-keying
    assumes that **the old key's first ``:`` ended the source**, which holds for every source
    without ``:`` (all sources seen in practice): ``"hx:a0:b"`` is taken to be ``("hx", "a0:b")``.
    A key that joined a source containing ``:`` stays attributed to that wrong split -- the two
    entries had already been merged into one row, which no re-keying can take apart again; see
    :func:`is_ambiguous_legacy_key`. A key without ``:`` was not written by the connector and is
    returned unchanged.
    """
    source, separator, rest = old_key.partition(SEPARATOR)
    if not separator:
        return old_key
    return escape_source(source) + SEPARATOR + rest


def is_ambiguous_legacy_key(old_key: str) -> bool:
    """Whether ``old_key`` could have been written for more than one ``(source, entry id)`` pair."""
    return old_key.count(SEPARATOR) > 1


def _check_part(name: str, value: str) -> None:
    # No event has an empty part (the schema requires 1..100 characters), so a key with one was
    # not made for an event; refusing it keeps split_entry_key exact on the keys events produce.
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
