"""The error taxonomy: every exception gets exactly one category, decided in one place."""

from __future__ import annotations

import pytest

from connector.errors import (
    Category,
    InvalidMessage,
    SeveraAuthenticationFailed,
    SeveraOutage,
    SeveraQuotaExceeded,
    SeveraRejected,
    SeveraUnavailable,
    UnknownReference,
    classify,
    describe,
    outage_behind,
)


@pytest.mark.parametrize(
    ("error", "category"),
    [
        pytest.param(InvalidMessage("bad"), Category.PERMANENT, id="invalid message is permanent"),
        pytest.param(
            UnknownReference("x", kind="user", value="u"),
            Category.PERMANENT,
            id="unknown reference is permanent",
        ),
        pytest.param(
            SeveraRejected("x", fault="ValidationException", operation="Add"),
            Category.PERMANENT,
            id="severa validation is permanent",
        ),
        pytest.param(SeveraUnavailable("x"), Category.TRANSIENT, id="severa unavailable is transient"),
        pytest.param(SeveraAuthenticationFailed("x"), Category.SYSTEMIC, id="auth failure is systemic"),
        pytest.param(SeveraQuotaExceeded("x"), Category.SYSTEMIC, id="quota is systemic"),
        pytest.param(SeveraOutage("x"), Category.SYSTEMIC, id="outage is systemic"),
        pytest.param(KeyError("bug"), Category.PERMANENT, id="a bug is parked, not retried forever"),
    ],
)
def test_every_error_has_one_category(error: Exception, category: Category) -> None:
    assert classify(error) is category


def test_only_severa_unavailability_escalates_to_an_outage() -> None:
    assert isinstance(outage_behind(SeveraUnavailable("down")), SeveraOutage)
    assert outage_behind(InvalidMessage("bad")) is None


def test_describe_carries_reason_and_safe_context() -> None:
    info = describe(UnknownReference("no such user", kind="user", value="JDOE"))
    assert info == {
        "category": "permanent",
        "class": "UnknownReference",
        "reason": "unknown_user",
        "message": "no such user",
        "kind": "user",
        "value": "JDOE",
    }


def test_a_lock_timeout_that_outlives_the_retries_is_escalated_to_a_systemic_ledger_error() -> None:
    from connector.errors import Category, outage_behind
    from connector.state.ledger import LedgerLockTimeout, LedgerUnavailable

    escalated = outage_behind(LedgerLockTimeout("gave up waiting 240s for the lock on 'x'"))
    assert isinstance(escalated, LedgerUnavailable)
    assert escalated.category is Category.SYSTEMIC
    assert escalated.reason == "ledger_lock_timeout_persistent"


def test_a_transient_error_without_a_systemic_counterpart_climbs_the_ladder() -> None:
    from connector.bus import PublishFailed
    from connector.errors import outage_behind

    assert outage_behind(PublishFailed("no confirm")) is None
