"""open_ledger: which URL gives which backend, and what a wrong URL says."""

from __future__ import annotations

import pytest

from connector.errors import Category, ConfigError
from connector.state import InMemoryLedger, InvalidLedgerURL, open_ledger
from connector.state.postgres import PostgresLedger
from connector.state.sqlite import SqliteLedger


@pytest.mark.parametrize(
    ("url", "expected_path"),
    [
        pytest.param("sqlite:///data/ledger.db", "data/ledger.db", id="three slashes give a relative path"),
        pytest.param(
            "sqlite:////var/lib/sc/ledger.db", "/var/lib/sc/ledger.db", id="four give an absolute one"
        ),
        pytest.param("sqlite:///:memory:", ":memory:", id="sqlite can live in memory"),
        pytest.param("sqlite:///my%20dir/l.db", "my dir/l.db", id="percent escapes are decoded"),
        pytest.param("SQLite:///l.db", "l.db", id="the scheme is case-insensitive"),
    ],
)
def test_sqlite_urls_name_a_file(url: str, expected_path: str) -> None:
    ledger = open_ledger(url)
    assert isinstance(ledger, SqliteLedger)
    assert ledger.path == expected_path


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://app:pw@db:5432/connector", id="postgresql is accepted"),
        pytest.param("postgres://app@db/connector", id="so is the short postgres scheme"),
        pytest.param("postgresql:///connector", id="a socket connection needs no host"),
    ],
)
def test_postgres_urls_give_a_postgres_ledger(url: str) -> None:
    ledger = open_ledger(url)
    assert isinstance(ledger, PostgresLedger)


def test_memory_url_gives_the_in_memory_ledger() -> None:
    assert isinstance(open_ledger("memory://"), InMemoryLedger)


def test_the_lock_timeout_is_passed_through() -> None:
    assert open_ledger("memory://", lock_timeout=2.5).lock_timeout == 2.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        pytest.param("mysql://u@h/db", "unsupported ledger URL scheme 'mysql'", id="an unknown scheme"),
        pytest.param("/var/lib/ledger.db", "unsupported ledger URL scheme none", id="a bare path"),
        pytest.param("sqlite://host/ledger.db", "has no host", id="sqlite with a host"),
        pytest.param("sqlite:///", "needs a path", id="sqlite without a path"),
        pytest.param("sqlite:///l.db?mode=ro", "no query parameters", id="sqlite with options"),
        pytest.param("memory://x", "exactly 'memory://'", id="memory with a name"),
        pytest.param("postgresql://", "needs at least a host", id="postgresql with nothing"),
    ],
)
def test_a_wrong_url_is_a_config_error_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidLedgerURL, match=says) as caught:
        open_ledger(url)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.category is Category.PERMANENT


def test_an_unknown_scheme_lists_the_accepted_ones_and_hides_credentials() -> None:
    with pytest.raises(ValueError, match="unsupported") as caught:
        open_ledger("redis://user:hunter2@cache/0")
    message = str(caught.value)
    for scheme in ("sqlite:///", "postgresql://", "postgres://", "memory://"):
        assert scheme in message
    assert "hunter2" not in message
