"""The fake Netvisor's authenticator: order of checks, time window, TransactionId memory, secrecy."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.netvisor import signing
from adapters.netvisor.fake.auth import Authenticator, Credentials
from adapters.netvisor.fake.errors import ErrorCode, NetvisorError, RefusalKind

NOW = dt.datetime(2025, 6, 10, 9, 0, tzinfo=dt.UTC)
URL = "http://127.0.0.1:8090/customerlist.nv?keyword=a"
CREDENTIALS = Credentials("cust", "cust-key", "part", "part-key", "1234567-8")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def headers(transaction_id: str = "tx", *, now: dt.datetime = NOW, **overrides: str) -> dict[str, str]:
    values = {
        "url": URL,
        "sender": "tests",
        "customer_id": "cust",
        "partner_id": "part",
        "language": "FI",
        "organisation_id": "1234567-8",
        "customer_key": "cust-key",
        "partner_key": "part-key",
    }
    values.update(overrides)
    return signing.sign(transaction_id=transaction_id, now=now, **values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(clock: Clock) -> Authenticator:
    return Authenticator(CREDENTIALS, clock=clock)


def refusal(auth: Authenticator, sent: dict[str, str], url: str = URL) -> NetvisorError:
    with pytest.raises(NetvisorError) as caught:
        auth.verify(url, sent)
    return caught.value


def test_a_correct_request_passes_and_yields_its_fields(auth: Authenticator) -> None:
    fields = auth.verify(URL, headers())

    assert (fields.customer_id, fields.organisation_id, fields.transaction_id) == ("cust", "1234567-8", "tx")


@pytest.mark.parametrize(
    ("sent", "url", "kind"),
    [
        pytest.param(headers(customer_key="other"), URL, RefusalKind.SIGNATURE, id="another customer key"),
        pytest.param(headers(url=URL + "&x=1"), URL, RefusalKind.SIGNATURE, id="signed over another URL"),
        pytest.param(headers(), URL.replace("=a", "=%61"), RefusalKind.SIGNATURE, id="the URL re-encoded"),
        pytest.param(headers(customer_id="nobody"), URL, RefusalKind.CREDENTIALS, id="an unknown customer"),
        pytest.param(headers(partner_id="nobody"), URL, RefusalKind.CREDENTIALS, id="an unknown partner"),
        pytest.param(headers(organisation_id="1-1"), URL, RefusalKind.CREDENTIALS, id="another organisation"),
        pytest.param(headers(language="de"), URL, RefusalKind.CREDENTIALS, id="an unknown language"),
        pytest.param(
            headers(now=NOW - dt.timedelta(minutes=6)), URL, RefusalKind.TIMESTAMP, id="a stale time stamp"
        ),
    ],
)
def test_each_failure_is_refused_with_its_kind(
    auth: Authenticator, sent: dict[str, str], url: str, kind: RefusalKind
) -> None:
    error = refusal(auth, sent, url)

    assert (error.code, error.refusal) == (ErrorCode.AUTHENTICATION_FAILED, kind)


def test_an_unknown_partner_is_named_before_a_bad_signature(auth: Authenticator) -> None:
    error = refusal(auth, headers(partner_id="nobody", partner_key="wrong"))

    assert error.refusal is RefusalKind.CREDENTIALS


def test_a_bad_signature_is_named_before_a_stale_time_stamp(auth: Authenticator) -> None:
    error = refusal(auth, headers(now=NOW - dt.timedelta(hours=1), customer_key="wrong"))

    assert error.refusal is RefusalKind.SIGNATURE


def test_a_refused_request_does_not_use_up_its_transaction_id(auth: Authenticator) -> None:
    refusal(auth, headers("tx-1", customer_key="wrong"))

    auth.verify(URL, headers("tx-1"))


def test_a_transaction_id_is_unique_per_partner(auth: Authenticator) -> None:
    auth.verify(URL, headers("tx-1"))

    error = refusal(auth, headers("tx-1"))

    assert (error.code, error.refusal) == (ErrorCode.REQUEST_NOT_UNIQUE, RefusalKind.TRANSACTION_REUSE)


def test_transaction_ids_are_forgotten_once_their_time_stamp_could_not_pass(
    auth: Authenticator, clock: Clock
) -> None:
    for number in range(100):
        auth.verify(URL, headers(f"tx-{number}"))
    assert auth.remembered_transactions == 100

    clock.now += dt.timedelta(minutes=6)
    auth.verify(URL, headers("tx-new", now=clock.now))

    assert auth.remembered_transactions == 1
    assert refusal(auth, headers("tx-1")).refusal is RefusalKind.TIMESTAMP  # the old id is now too old anyway


def test_the_tolerance_is_read_on_every_request(clock: Clock) -> None:
    window = {"value": dt.timedelta(minutes=5)}
    auth = Authenticator(CREDENTIALS, clock=clock, tolerance=lambda: window["value"])
    auth.verify(URL, headers("tx-1", now=NOW - dt.timedelta(minutes=1)))

    window["value"] = dt.timedelta(seconds=30)

    assert refusal(auth, headers("tx-2", now=NOW - dt.timedelta(minutes=1))).refusal is RefusalKind.TIMESTAMP


def test_rotated_keys_replace_the_old_ones(auth: Authenticator) -> None:
    auth.rotate_keys(partner_key="new-part-key")

    assert refusal(auth, headers("tx-1")).refusal is RefusalKind.SIGNATURE
    auth.verify(URL, headers("tx-2", partner_key="new-part-key"))


def test_credentials_never_show_their_keys() -> None:
    shown = repr(CREDENTIALS) + str(CREDENTIALS.public())

    assert "cust-key" not in shown
    assert "part-key" not in shown


def test_empty_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="customer_key"):
        Credentials(customer_key="")
