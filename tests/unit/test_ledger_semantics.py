"""Pure pieces of the ledger: reference transitions, owner resolution, lock keys, DSN redaction."""

from __future__ import annotations

import datetime as dt

import pytest

from connector.state.ledger import LedgerRecord, applied, claimed, deleted, pending, resolve_owners
from connector.state.postgres import PostgresLedger, advisory_key, describe_dsn, guid_lock_keys

NOW = dt.datetime(2024, 5, 2, 12, 0, tzinfo=dt.UTC)


def _record(**changes: object) -> LedgerRecord:
    base: dict[str, object] = {
        "external_id": "x",
        "version": 3,
        "state": "applied",
        "severa_guid": "G3",
        "pending_version": None,
        "fingerprint": None,
        "updated_at": NOW,
        "content_hash": "H3",
    }
    base.update(changes)
    return LedgerRecord(**base)  # type: ignore[arg-type]


def test_pending_keeps_the_applied_version_and_guid() -> None:
    rec = pending(_record(), "x", 4, "{}", NOW)
    assert (rec.state, rec.version, rec.severa_guid, rec.pending_version, rec.fingerprint) == (
        "pending",
        3,
        "G3",
        4,
        "{}",
    )


def test_pending_of_a_new_id_starts_at_version_zero() -> None:
    rec = pending(None, "x", 1, "{}", NOW)
    assert (rec.version, rec.severa_guid, rec.content_hash) == (0, None, None)


def test_pending_keeps_the_content_hash_of_the_applied_version_like_its_guid() -> None:
    assert pending(_record(), "x", 4, "{}", NOW).content_hash == "H3"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("H4", "H4", id="applied stores the hash it is given"),
        pytest.param(None, None, id="applied without a hash clears the old one"),
    ],
)
def test_applied_sets_the_content_hash(given: str | None, stored: str | None) -> None:
    assert applied(_record(), "x", 4, "G4", NOW, content_hash=given).content_hash == stored
    assert applied(None, "x", 4, "G4", NOW, content_hash=given).content_hash == stored


def test_deleted_keeps_the_content_hash_for_audit() -> None:
    assert deleted(_record(), "x", 4, NOW).content_hash == "H3"
    assert deleted(None, "x", 4, NOW).content_hash is None


def test_applied_never_lowers_the_version() -> None:
    assert applied(_record(version=7), "x", 5, "G", NOW).version == 7
    assert applied(_record(version=7), "x", 9, "G", NOW).version == 9


def test_deleted_keeps_the_guid_and_clears_pending() -> None:
    rec = deleted(_record(state="pending", pending_version=4, fingerprint="{}"), "x", 4, NOW)
    assert (rec.state, rec.version, rec.severa_guid, rec.pending_version, rec.fingerprint) == (
        "deleted",
        4,
        "G3",
        None,
        None,
    )


def test_a_claim_applies_the_pending_version_and_clears_the_hash() -> None:
    mine = _record(state="pending", pending_version=4, fingerprint="{}")
    rec = claimed({"x": mine}, "x", 4, "G4", NOW)
    assert rec is not None
    assert (rec.state, rec.version, rec.severa_guid, rec.pending_version, rec.fingerprint) == (
        "applied",
        4,
        "G4",
        None,
        None,
    )
    assert rec.content_hash is None


@pytest.mark.parametrize(
    ("holder_state", "claimable"),
    [
        pytest.param("applied", False, id="a guid another applied record holds is refused"),
        pytest.param("pending", False, id="a guid another pending record still holds is refused"),
        pytest.param("deleted", True, id="a guid only a tombstone holds may be claimed"),
    ],
)
def test_a_claim_is_refused_while_another_live_record_holds_the_guid(
    holder_state: str, claimable: bool
) -> None:
    records = {
        "x": _record(state="pending", pending_version=4),
        "y": _record(external_id="y", state=holder_state),
    }
    assert (claimed(records, "x", 4, "G3", NOW) is not None) is claimable
    assert claimed(records, "x", 4, "G-other", NOW) is not None


def test_a_claim_of_a_new_id_or_of_its_own_guid_succeeds() -> None:
    assert claimed({}, "x", 2, "G", NOW) == applied(None, "x", 2, "G", NOW)
    rec = claimed({"x": _record(version=7)}, "x", 5, "G3", NOW)
    assert rec is not None
    assert (rec.version, rec.severa_guid) == (7, "G3")


@pytest.mark.parametrize(
    ("state", "active"),
    [
        pytest.param("applied", "G3", id="an applied record's guid is live"),
        pytest.param("pending", None, id="a pending record's guid must be looked up"),
        pytest.param("deleted", None, id="a tombstone's guid is gone from Severa"),
    ],
)
def test_active_guid(state: str, active: str | None) -> None:
    assert _record(state=state).active_guid == active


def test_a_guid_claimed_twice_goes_to_the_smallest_external_id() -> None:
    assert resolve_owners([("G", "b:1"), ("G", "a:1"), ("H", "c:1")]) == {"G": "a:1", "H": "c:1"}


def test_advisory_keys_never_change_between_releases() -> None:
    # Pods of two connector versions run side by side during a rolling update: if the key of an
    # id changed, they would not exclude each other. Update these values only with a migration.
    assert advisory_key("severa_connector_", "tracker:42") == -1941431369306896541
    assert -(2**63) <= advisory_key("", "x") < 2**63


def test_guid_lock_keys_never_change_between_releases_and_fit_two_int4() -> None:
    # Pods of two releases must serialise claims of one GUID alike: change only with a migration.
    assert guid_lock_keys("severa_connector_", "694bc928-0000-4000-8000-000000000001") == (
        -738013748,
        523663330,
    )
    for guid in ("a", "b", "694bc928-0000-4000-8000-000000000001", "\U0001d11e" * 40):
        for key in guid_lock_keys("p_", guid):
            assert -(2**31) <= key < 2**31
    assert guid_lock_keys("a_", "G") != guid_lock_keys("b_", "G")


def test_advisory_keys_differ_by_prefix_and_id() -> None:
    keys = {advisory_key(p, i) for p in ("a_", "b_") for i in ("x", "y")}
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        pytest.param(
            "postgresql://u:secret@db.internal:6543/ledger", "db.internal:6543/ledger", id="full URL"
        ),
        pytest.param("postgres://u@db/ledger", "db:5432/ledger", id="the default port is filled in"),
        pytest.param("postgresql://h1:5432,h2:5432/db", "postgresql", id="multi-host DSNs stay opaque"),
    ],
)
def test_dsns_are_described_without_credentials(dsn: str, shown: str) -> None:
    assert describe_dsn(dsn) == shown


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("Bad", id="upper case"),
        pytest.param("a-b_", id="a dash"),
        pytest.param("x; DROP TABLE y; --", id="an injection attempt"),
        pytest.param("p" * 41, id="too long for PostgreSQL identifiers"),
    ],
)
def test_unsafe_table_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        PostgresLedger("postgresql://db/x", table_prefix=prefix)
