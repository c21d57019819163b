"""The ledger key of an entry: two different identities never share one, and old keys keep theirs."""

from __future__ import annotations

import pytest

from schemas.identity import entry_key


@pytest.mark.parametrize(
    ("source", "source_entry_id", "key"),
    [
        pytest.param("tracker", "e-1", "tracker:e-1", id="a plain source keeps the key it always had"),
        pytest.param("hx:a0", "b", "hx%3Aa0:b", id="a colon in the source is escaped"),
        pytest.param("hx", "a0:b", "hx:a0:b", id="a colon in the entry id is kept as it is"),
        pytest.param("100%", "x", "100%25:x", id="a percent sign in the source is escaped"),
        pytest.param("a%3Ab", "c", "a%253Ab:c", id="a source spelling out an escape is escaped itself"),
        pytest.param("trä cker", "e 1", "trä cker:e 1", id="blanks and accents are taken verbatim"),
    ],
)
def test_entry_keys_escape_only_what_makes_the_source_ambiguous(
    source: str, source_entry_id: str, key: str
) -> None:
    assert entry_key(source, source_entry_id) == key


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(("hx:a0", "b"), ("hx", "a0:b"), id="a colon moved across the separator"),
        pytest.param(("a%3Ab", "c"), ("a:b", "c"), id="an escaped colon and a real one"),
        pytest.param(("a%", "3A:b"), ("a:", "b"), id="a percent sign before the separator"),
        pytest.param(("a", ":b"), ("a:", "b"), id="a colon on either side of the separator"),
        pytest.param(("tracker", "E-1"), ("tracker", "e-1"), id="letters differing only in case"),
        pytest.param(
            ("tracker", "caf\u00e9"), ("tracker", "cafe\u0301"), id="composed and decomposed accents"
        ),
        pytest.param(("tracker", "e\u00a01"), ("tracker", "e 1"), id="a no-break space and a space"),
        pytest.param(
            ("s" * 100, "x" * 99 + "1"), ("s" * 100, "x" * 99 + "2"), id="maximal ids differing last"
        ),
    ],
)
def test_identities_that_differ_get_different_keys(one: tuple[str, str], other: tuple[str, str]) -> None:
    assert entry_key(*one) != entry_key(*other)
