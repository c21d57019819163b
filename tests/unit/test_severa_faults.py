"""Every Severa failure maps to the right error class, category, reason and outcome_unknown."""

from __future__ import annotations

import aiohttp
import pytest

from adapters.severa.contract import OperationRef, Ops, SoapFault
from adapters.severa.faults import (
    MAX_SEVERA_NAME_CHARS,
    MAX_SEVERA_TEXT_CHARS,
    NOT_FOUND_ANSWER,
    TRUNCATED,
    classify_fault,
    classify_http,
    classify_transport,
    quote,
    redact,
)
from connector.errors import (
    Category,
    ConnectorError,
    SeveraAuthenticationFailed,
    SeveraQuotaExceeded,
    SeveraRejected,
    SeveraUnavailable,
    TransientError,
)

READ = Ops.GET_USER_BY_CODE
WRITE = Ops.ADD_HOUR_ENTRY
URL = "https://sync.severa.com/webservice/S3/API.svc"
KEY = "s3cr3t-KEY-value"


def typed(kind: str, description: str = "it went wrong", code: str = "s:Client") -> SoapFault:
    return SoapFault(code=code, string=description, detail_type=kind, description=description)


def fault(f: SoapFault, op: OperationRef = READ) -> ConnectorError | object:
    return classify_fault(f, op, key_origin="the setting X", secret=KEY, used_quota=100_001, quota=100_000)


@pytest.mark.parametrize(
    ("soap_fault", "op", "cls", "category", "reason", "outcome_unknown"),
    [
        pytest.param(
            typed("AuthenticationFailureException"),
            READ,
            SeveraAuthenticationFailed,
            Category.SYSTEMIC,
            "severa_authentication_failed",
            None,
            id="an authentication failure is systemic",
        ),
        pytest.param(
            SoapFault("s:Client", "Access denied", None, None),
            READ,
            SeveraAuthenticationFailed,
            Category.SYSTEMIC,
            "severa_authentication_failed",
            None,
            id="an untyped 'Access denied' is an authentication failure",
        ),
        pytest.param(
            typed("QuotaLimitExceededException", "Quota limit reached"),
            WRITE,
            SeveraQuotaExceeded,
            Category.SYSTEMIC,
            "severa_quota_exceeded",
            None,
            id="the quota fault is systemic",
        ),
        pytest.param(
            SoapFault("s:Client", "Quota limit reached", None, None),
            READ,
            SeveraQuotaExceeded,
            Category.SYSTEMIC,
            "severa_quota_exceeded",
            None,
            id="the quota faultstring without detail is still the quota",
        ),
        pytest.param(
            typed("TosNotApprovedException"),
            READ,
            SeveraAuthenticationFailed,
            Category.SYSTEMIC,
            "severa_tos_not_approved",
            None,
            id="unapproved terms of service stop everything",
        ),
        pytest.param(
            typed("ValidationException", "Quantity must be <= 999"),
            WRITE,
            SeveraRejected,
            Category.PERMANENT,
            "severa_validation",
            None,
            id="a validation fault on a write is a permanent rejection",
        ),
        pytest.param(
            typed("NoPermissionException"),
            WRITE,
            SeveraRejected,
            Category.PERMANENT,
            "severa_nopermission",
            None,
            id="no permission is a permanent rejection",
        ),
        pytest.param(
            typed("NotFoundException"),
            Ops.DELETE_HOUR_ENTRY,
            SeveraRejected,
            Category.PERMANENT,
            "severa_notfound",
            None,
            id="not found on a write is a rejection",
        ),
        pytest.param(
            typed("GeneralFailureException", code="s:Server"),
            READ,
            SeveraUnavailable,
            Category.TRANSIENT,
            "severa_general_failure",
            False,
            id="a general failure on a read is transient",
        ),
        pytest.param(
            typed("GeneralFailureException", code="s:Server"),
            WRITE,
            SeveraUnavailable,
            Category.TRANSIENT,
            "severa_general_failure",
            True,
            id="a general failure on a write leaves the outcome unknown",
        ),
        pytest.param(
            SoapFault("a:ActionNotSupported", "ContractFilter mismatch", None, None),
            READ,
            SeveraRejected,
            Category.PERMANENT,
            "severa_actionnotsupported",
            None,
            id="a WCF dispatcher fault is permanent",
        ),
        pytest.param(
            SoapFault("a:DeserializationFailed", "The formatter threw", None, None),
            WRITE,
            SeveraRejected,
            Category.PERMANENT,
            "severa_deserializationfailed",
            None,
            id="a body WCF cannot read is permanent",
        ),
        pytest.param(
            SoapFault("s:Server", "Object reference not set", None, None),
            WRITE,
            SeveraUnavailable,
            Category.TRANSIENT,
            "severa_fault",
            True,
            id="an untyped server fault on a write is transient with unknown outcome",
        ),
    ],
)
def test_faults_are_classified(
    soap_fault: SoapFault,
    op: OperationRef,
    cls: type[ConnectorError],
    category: Category,
    reason: str,
    outcome_unknown: bool | None,
) -> None:
    error = fault(soap_fault, op)
    assert type(error) is cls
    assert isinstance(error, ConnectorError)
    assert error.category is category
    assert error.reason == reason
    if outcome_unknown is not None:
        assert isinstance(error, TransientError)
        assert error.outcome_unknown is outcome_unknown
    assert op.name in error.message


def test_not_found_on_a_read_is_an_answer_not_an_error() -> None:
    assert fault(typed("NotFoundException"), READ) is NOT_FOUND_ANSWER


def test_rejection_message_names_operation_text_and_fault() -> None:
    error = fault(typed("ValidationException", "Quantity must be <= 999"), WRITE)
    assert isinstance(error, SeveraRejected)
    assert error.message == "Severa rejected AddNewHourEntry: Quantity must be <= 999 (ValidationException)"
    assert (error.fault, error.operation) == ("Validation", "IHourEntry.AddNewHourEntry")


def test_authentication_message_tells_where_the_key_comes_from() -> None:
    error = fault(typed("AuthenticationFailureException", "Access denied"))
    assert isinstance(error, SeveraAuthenticationFailed)
    assert "Severa refused the API key (AuthenticationFailureException)" in error.message
    assert "check the setting X" in error.message
    assert "a regenerated key invalidates the old one" in error.message


def test_quota_message_shows_usage() -> None:
    error = fault(typed("QuotaLimitExceededException", "Quota limit reached"))
    assert "(100001/100000 calls used)" in str(error)
    assert "00:00 UTC" in str(error)


def test_a_key_echoed_by_the_server_is_redacted() -> None:
    for kind in ("ValidationException", "AuthenticationFailureException", "GeneralFailureException", None):
        error = fault(
            SoapFault("s:Server", f"bad key {KEY}", kind, f"bad key {KEY}" if kind else None), WRITE
        )
        assert isinstance(error, ConnectorError)
        assert KEY not in str(error)
        assert KEY not in repr(error)
        assert "[redacted]" in str(error)


def test_an_authentication_failure_on_a_write_names_the_missing_right() -> None:
    """Refused on AddNewHourEntry while look-ups pass: still systemic, and the message says why."""
    error = fault(typed("AuthenticationFailureException", "Access denied"), WRITE)
    assert isinstance(error, SeveraAuthenticationFailed)
    assert error.category is Category.SYSTEMIC
    assert "if look-ups still succeed, the key's user lacks the right to write HourEntry records" in (
        error.message
    )
    assert "a regenerated key invalidates the old one" in error.message
    read_error = fault(typed("AuthenticationFailureException", "Access denied"), READ)
    assert isinstance(read_error, SeveraAuthenticationFailed)
    assert "right to write" not in read_error.message


MEGABYTE_OF_TEXT = "Quantity is wrong. " * 55_189  # a little over 1 MiB


@pytest.mark.parametrize(
    "soap_fault",
    [
        pytest.param(typed("ValidationException", MEGABYTE_OF_TEXT), id="a rejection"),
        pytest.param(typed("GeneralFailureException", MEGABYTE_OF_TEXT, code="s:Server"), id="a failure"),
        pytest.param(typed("AuthenticationFailureException", MEGABYTE_OF_TEXT), id="a refused key"),
        pytest.param(SoapFault("s:Server", MEGABYTE_OF_TEXT, None, None), id="an untyped fault"),
        pytest.param(SoapFault("s:" + "X" * 2**20, "boom", None, None), id="a huge fault code"),
        pytest.param(typed("Y" * 2**20 + "Exception"), id="a huge detail type"),
    ],
)
def test_severas_text_is_cut_to_a_few_hundred_characters(soap_fault: SoapFault) -> None:
    error = fault(soap_fault, WRITE)
    assert isinstance(error, ConnectorError)
    # The text quoted at most once at full length, the names short, the rest is our own sentence.
    assert len(error.message) < MAX_SEVERA_TEXT_CHARS + 2 * MAX_SEVERA_NAME_CHARS + 400
    assert TRUNCATED in error.message
    assert all(len(str(value)) <= MAX_SEVERA_NAME_CHARS for value in error.context.values())


def test_a_key_is_redacted_before_the_text_is_cut() -> None:
    """A cut through the middle of the key must not leave its first half in the message."""
    text = "x" * (MAX_SEVERA_TEXT_CHARS - 8) + KEY + "y" * 100
    quoted = quote(text, KEY)
    assert KEY[:8] not in quoted
    assert quoted.endswith(TRUNCATED)
    assert len(quoted) == MAX_SEVERA_TEXT_CHARS
    assert quote("short", KEY) == "short"


def test_a_body_quoted_by_an_http_problem_is_cut() -> None:
    error = classify_http(200, READ, url=URL, problem=f"root element is {'z' * 2**20!r}")
    assert len(error.message) < MAX_SEVERA_TEXT_CHARS + 200
    assert TRUNCATED in error.message


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        pytest.param("a KEY b KEY", "KEY", "a [redacted] b [redacted]", id="every occurrence is replaced"),
        pytest.param("nothing here", "KEY", "nothing here", id="text without the secret is unchanged"),
        pytest.param("anything", None, "anything", id="no secret means no change"),
        pytest.param("anything", "", "anything", id="an empty secret is not replaced everywhere"),
    ],
)
def test_redact(text: str, secret: str | None, expected: str) -> None:
    assert redact(text, secret) == expected


@pytest.mark.parametrize(
    ("status", "op", "cls", "reason", "outcome_unknown"),
    [
        pytest.param(
            503, WRITE, SeveraUnavailable, "severa_http_error", False, id="503 says it was not handled"
        ),
        pytest.param(
            429, WRITE, SeveraUnavailable, "severa_http_error", False, id="429 says it was not handled"
        ),
        pytest.param(
            500, WRITE, SeveraUnavailable, "severa_http_error", True, id="a bare 500 on a write is unknown"
        ),
        pytest.param(
            502, WRITE, SeveraUnavailable, "severa_http_error", True, id="502 on a write is unknown"
        ),
        pytest.param(
            504, READ, SeveraUnavailable, "severa_http_error", False, id="504 on a read is just transient"
        ),
        pytest.param(
            200, WRITE, SeveraUnavailable, "severa_bad_reply", True, id="garbage with 200 on a write"
        ),
        pytest.param(
            200, READ, SeveraUnavailable, "severa_bad_reply", False, id="garbage with 200 on a read"
        ),
        pytest.param(
            403, READ, SeveraAuthenticationFailed, "severa_http_forbidden", None, id="403 is systemic"
        ),
        pytest.param(
            401, WRITE, SeveraAuthenticationFailed, "severa_http_forbidden", None, id="401 is systemic"
        ),
    ],
)
def test_http_errors_without_envelope(
    status: int, op: OperationRef, cls: type[ConnectorError], reason: str, outcome_unknown: bool | None
) -> None:
    error = classify_http(status, op, url=URL, problem="not XML")
    assert type(error) is cls
    assert error.reason == reason
    if outcome_unknown is not None:
        assert isinstance(error, TransientError)
        assert error.outcome_unknown is outcome_unknown
    assert str(status) in error.message
    assert op.name in error.message


def _connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.parametrize(
    ("exc", "op", "reason", "outcome_unknown"),
    [
        pytest.param(_connector_error(), WRITE, "severa_connect_failed", False, id="refused: never sent"),
        pytest.param(
            aiohttp.ConnectionTimeoutError(),
            WRITE,
            "severa_connect_timeout",
            False,
            id="connect timeout: never sent",
        ),
        pytest.param(TimeoutError(), WRITE, "severa_timeout", True, id="total timeout on a write: unknown"),
        pytest.param(TimeoutError(), READ, "severa_timeout", False, id="total timeout on a read"),
        pytest.param(
            aiohttp.SocketTimeoutError(), WRITE, "severa_timeout", True, id="read timeout on a write: unknown"
        ),
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            WRITE,
            "severa_connection_lost",
            True,
            id="dropped on a write: unknown",
        ),
        pytest.param(
            aiohttp.ClientPayloadError("truncated"),
            WRITE,
            "severa_connection_lost",
            True,
            id="truncated answer",
        ),
        pytest.param(ConnectionResetError(), READ, "severa_connection_lost", False, id="reset on a read"),
    ],
)
def test_transport_errors(exc: BaseException, op: OperationRef, reason: str, outcome_unknown: bool) -> None:
    error = classify_transport(exc, op, url=URL, timeout=30)
    assert type(error) is SeveraUnavailable
    assert error.category is Category.TRANSIENT
    assert error.reason == reason
    assert error.outcome_unknown is outcome_unknown
    assert op.name in error.message
