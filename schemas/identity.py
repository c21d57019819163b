"""The ledger key of an external entry: ``(source, source_entry_id)`` encoded as one string.

The key joins the two parts with ``:``. Joining them verbatim let two identities share a key --
``("hx:a0", "b")`` and ``("hx", "a0:b")`` both read ``hx:a0:b`` -- so one entry's events would
update or delete the other's Severa entry. Escaping the *source* removes the ambiguity: after
:func:`entry_key` the first ``:`` of a key is always the separator, and the entry id after it may
hold anything. Sources without ``%`` or ``:`` (every source seen so far) keep the key they always
had, so existing ledgers stay valid.

This module is pure and imports nothing from ``connector/`` (``schemas/`` is the contract layer);
``connector.state.identity`` re-exports :func:`entry_key` and adds the inverse.
"""

from __future__ import annotations

from typing import Final

SEPARATOR: Final = ":"


def escape_source(source: str) -> str:
    """``source`` with ``%`` and ``:`` percent-encoded, ``%`` first so the encoding is reversible."""
    return source.replace("%", "%25").replace(":", "%3A")


def entry_key(source: str, source_entry_id: str) -> str:
    """The collision-free key ``escape(source) + ":" + source_entry_id``.

    Two different pairs never give the same key; the parts are taken exactly as given (no
    stripping, case folding or Unicode normalisation), because they are identities, not look-up
    keys.
    """
    return f"{escape_source(source)}{SEPARATOR}{source_entry_id}"
