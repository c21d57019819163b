"""open_ledger: which URL gives which backend, what a wrong URL says, which options reach it."""

from __future__ import annotations

import pytest

from connector.errors import Category, ConfigError
from connector.state import InMemoryLedger, InvalidLedgerURL, open_ledger
from connector.state.ledger import DEFAULT_LOCK_TIMEOUT
from connector.state.postgres import DEFAULT_POOL_SIZE, PostgresLedger
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
    "url",
    [
        pytest.param("memory://", id="to the in-memory ledger"),
        pytest.param("sqlite:///l.db", id="to sqlite"),
        pytest.param("postgresql://db/x", id="to postgresql"),
    ],
)
def test_no_lock_timeout_means_the_default(url: str) -> None:
    assert open_ledger(url, lock_timeout=None).lock_timeout == DEFAULT_LOCK_TIMEOUT  # type: ignore[attr-defined]


def test_the_pool_size_is_passed_to_postgresql() -> None:
    ledger = open_ledger("postgresql://db/x", pool_size=34, lock_timeout=4)
    assert isinstance(ledger, PostgresLedger)
    assert (ledger.pool_size, ledger.lock_timeout) == (34, 4.0)
    default = open_ledger("postgresql://db/x", pool_size=None)
    assert isinstance(default, PostgresLedger)
    assert default.pool_size == DEFAULT_POOL_SIZE


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("memory://", id="the in-memory ledger"),
        pytest.param("sqlite:///l.db", id="sqlite"),
        pytest.param("postgresql://db/x", id="postgresql"),
    ],
)
@pytest.mark.parametrize(
    "pool_size",
    [
        pytest.param(1, id="one connection, which a lock holder would keep from everyone else"),
        pytest.param(0, id="no connection at all"),
        pytest.param(True, id="a bool"),
    ],
)
def test_a_pool_too_small_to_work_is_refused_for_every_backend(url: str, pool_size: int) -> None:
    with pytest.raises(ValueError, match="pool_size must be an int >= 2"):
        open_ledger(url, pool_size=pool_size)


def test_sqlite_and_memory_have_no_pool_and_accept_any_valid_size() -> None:
    assert isinstance(open_ledger("sqlite:///l.db", pool_size=40), SqliteLedger)
    assert isinstance(open_ledger("memory://", pool_size=40), InMemoryLedger)


def test_postgres_ledger_takes_the_pool_size_or_its_former_name() -> None:
    assert PostgresLedger("postgresql://db/x", pool_size=7).pool_size == 7
    assert PostgresLedger("postgresql://db/x", max_size=7).pool_size == 7
    with pytest.raises(ValueError, match="give pool_size only"):
        PostgresLedger("postgresql://db/x", pool_size=7, max_size=8)
    with pytest.raises(ValueError, match="pool_size must be"):
        PostgresLedger("postgresql://db/x", pool_size=1)
    with pytest.raises(ValueError, match="min_size <= pool_size"):
        PostgresLedger("postgresql://db/x", pool_size=2, min_size=3)


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
