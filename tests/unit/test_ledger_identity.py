"""The ledger's side of entry keys: the inverse of the encoding and the re-keying of old ledgers.

The encoder is :func:`schemas.identity.entry_key` (re-exported by :mod:`connector.state.identity`);
these tables pin the encoding as the ledger relies on it -- every key splits back into the pair it
was made from -- and what schema version 2 does to keys written with the old join.
"""

from __future__ import annotations

import itertools

import pytest

from connector.state.identity import (
    entry_key,
    escape_source,
    is_ambiguous_legacy_key,
    legacy_entry_key,
    split_entry_key,
    unescape_source,
)
from connector.state.ledger import rekey_plan

KEYS = [
    pytest.param("tracker", "entry-1", "tracker:entry-1", id="a plain pair keeps the old key"),
    pytest.param("hx:a0", "b", "hx%3Aa0:b", id="a colon in the source is escaped"),
    pytest.param("hx", "a0:b", "hx:a0:b", id="a colon in the entry id is kept verbatim"),
    pytest.param("a%b", "x", "a%25b:x", id="a percent sign in the source is escaped"),
    pytest.param("a%3Ab", "x", "a%253Ab:x", id="a literal escape in the source is escaped again"),
    pytest.param("a", "x%3Ay", "a:x%3Ay", id="percent signs in the entry id are kept verbatim"),
    pytest.param("::", "::", "%3A%3A:::", id="separators only on both sides"),
    pytest.param("my app", "id 1", "my app:id 1", id="blanks are ordinary characters"),
    pytest.param("zeitmaß", "eintrag-ü", "zeitmaß:eintrag-ü", id="unicode passes through"),
    pytest.param("😀:😀", "𝄞", "😀%3A😀:𝄞", id="astral characters beside an escape"),
    pytest.param("%", "%", "%25:%", id="a lone percent sign"),
]


@pytest.mark.parametrize(("source", "entry_id", "key"), KEYS)
def test_every_key_splits_back_into_the_pair_it_was_made_from(source: str, entry_id: str, key: str) -> None:
    assert entry_key(source, entry_id) == key
    assert split_entry_key(key) == (source, entry_id)


def test_the_pairs_that_collided_under_the_old_join_get_different_keys() -> None:
    def old_join(source: str, entry_id: str) -> str:
        return f"{source}:{entry_id}"

    assert old_join("hx:a0", "b") == old_join("hx", "a0:b")  # the bug: one key for two entries
    assert entry_key("hx:a0", "b") != entry_key("hx", "a0:b")
    assert split_entry_key(entry_key("hx:a0", "b")) == ("hx:a0", "b")


def test_keys_are_injective_over_every_pair_of_awkward_strings() -> None:
    parts = ["a", ":", "%", "%3A", "%25", "a:b", "a%b", "::", "%%", "3A", "%3", " "]
    pairs = list(itertools.product(parts, parts))
    keys = {entry_key(source, entry_id) for source, entry_id in pairs}
    assert len(keys) == len(pairs)
    assert all(split_entry_key(entry_key(s, e)) == (s, e) for s, e in pairs)


@pytest.mark.parametrize(
    ("source", "entry_id", "length"),
    [
        pytest.param("s" * 100, "e" * 100, 201, id="the longest plain pair is 201 characters"),
        pytest.param(":" * 100, "e" * 100, 401, id="a source of colons only triples in length"),
        pytest.param("%" * 100, "𝄞" * 100, 401, id="so does one of percent signs"),
    ],
)
def test_keys_of_maximum_length_codes_round_trip(source: str, entry_id: str, length: int) -> None:
    key = entry_key(source, entry_id)
    assert len(key) == length
    assert split_entry_key(key) == (source, entry_id)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        pytest.param("no-separator", "<source>:<source_entry_id>", id="a key without a colon"),
        pytest.param(":x", "non-empty", id="a key with an empty source"),
        pytest.param("x:", "non-empty", id="a key with an empty entry id"),
        pytest.param("a%3ab:x", "invalid escape '%3a'", id="a lower-case escape is not ours"),
        pytest.param("a%20b:x", "invalid escape '%20'", id="other percent escapes are not ours"),
        pytest.param("a%:x", "invalid escape '%'", id="a bare percent sign in the source"),
        pytest.param("a%2:x", "invalid escape '%2'", id="a truncated escape"),
    ],
)
def test_strings_no_event_can_produce_are_refused(key: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        split_entry_key(key)


def test_an_escaped_source_never_holds_the_separator() -> None:
    assert ":" not in escape_source("a:b:%:c")
    assert unescape_source(escape_source("a:b:%:c")) == "a:b:%:c"
    with pytest.raises(ValueError, match="never contains"):
        unescape_source("a:b")


@pytest.mark.parametrize(
    ("old", "new", "ambiguous"),
    [
        pytest.param("tracker:entry-1", "tracker:entry-1", False, id="a plain old key is unchanged"),
        pytest.param("a%b:x", "a%25b:x", False, id="a percent sign before the first colon is escaped"),
        pytest.param("a:x%y", "a:x%y", False, id="one after it is not"),
        pytest.param("hx:a0:b", "hx:a0:b", True, id="the first colon is taken to end the source"),
        pytest.param("a%b:c:d", "a%25b:c:d", True, id="an ambiguous key is still re-escaped"),
        pytest.param("lonely", "lonely", False, id="a key without a colon is left alone"),
    ],
)
def test_legacy_keys_are_split_at_their_first_colon(old: str, new: str, ambiguous: bool) -> None:
    assert legacy_entry_key(old) == new
    assert is_ambiguous_legacy_key(old) is ambiguous


def test_a_rekey_plan_lists_changed_keys_only_longest_first() -> None:
    old = ["a%b:x", "tracker:1", "a%25b:x", "a%2525b:x", "b%:y"]
    plan = rekey_plan(old)
    assert plan == [
        ("a%2525b:x", "a%252525b:x"),
        ("a%25b:x", "a%2525b:x"),
        ("a%b:x", "a%25b:x"),
        ("b%:y", "b%25:y"),
    ]
    # Applied in order, no step lands on a key that is still taken.
    keys = set(old)
    for before, after in plan:
        assert after not in keys
        keys.remove(before)
        keys.add(after)
    assert keys == {legacy_entry_key(k) for k in old}
