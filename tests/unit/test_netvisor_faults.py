"""Every Netvisor failure classified in one place: codes, HTTP statuses without a document, transport."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from adapters.netvisor.codec import Operation, Ops, ResponseStatus
from adapters.netvisor.faults import (
    MAX_NETVISOR_TEXT_CHARS,
    REDACTED,
    classify_http,
    classify_status,
    classify_transport,
    quote,
    retryable,
)
from connector.errors import (
    AccountingAuthenticationFailed,
    AccountingNoAccess,
    AccountingOutage,
    AccountingPeriodLocked,
    AccountingRejected,
    AccountingUnavailable,
    Category,
    ConnectorError,
)

CUSTOMER_KEY = "customer-key-5f1e0c9a"
PARTNER_KEY = "partner-key-77ab31d2"
READ = Ops.SALES_INVOICE_LIST
WRITE = Ops.SALES_INVOICE_ADD


def failed(code: str | None, text: str = "something") -> ResponseStatus:
    return ResponseStatus(ok=False, code=code, text=text)


def classify(code: str | None, op: Operation, text: str = "something", **kwargs: object) -> ConnectorError:
    return classify_status(
        failed(code, text),
        op,
        http_status=400,
        secrets=(CUSTOMER_KEY, PARTNER_KEY),
        key_origin="the key files",
        organisation_id="1234567-8",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("code", "op", "kind", "category", "outcome_unknown", "may_retry"),
    [
        pytest.param(
            "AUTHENTICATION_FAILED",
            READ,
            AccountingAuthenticationFailed,
            Category.SYSTEMIC,
            None,
            False,
            id="a refused signature is systemic",
        ),
        pytest.param(
            "SERVICE_ACCESS_ERROR",
            WRITE,
            AccountingNoAccess,
            Category.SYSTEMIC,
            None,
            False,
            id="a missing right is systemic",
        ),
        pytest.param(
            "SYSTEM_MAINTENANCE",
            WRITE,
            AccountingUnavailable,
            Category.TRANSIENT,
            False,
            True,
            id="maintenance is transient and surely not stored",
        ),
        pytest.param(
            "SYSTEM_MAINTANANCE",
            READ,
            AccountingUnavailable,
            Category.TRANSIENT,
            False,
            True,
            id="the misspelt maintenance too",
        ),
        pytest.param(
            "REQUEST_NOT_UNIQUE",
            WRITE,
            AccountingUnavailable,
            Category.TRANSIENT,
            False,
            True,
            id="a reused transaction id is signed anew and retried",
        ),
        pytest.param(
            "TECHNICAL_ERROR",
            READ,
            AccountingUnavailable,
            Category.TRANSIENT,
            False,
            True,
            id="a technical error on a read is retried",
        ),
        pytest.param(
            "TECHNICAL_ERROR",
            WRITE,
            AccountingUnavailable,
            Category.TRANSIENT,
            True,
            False,
            id="a technical error on a write leaves its outcome open",
        ),
        pytest.param(
            "INVALID_DATA",
            WRITE,
            AccountingRejected,
            Category.PERMANENT,
            None,
            False,
            id="invalid data is permanent",
        ),
        pytest.param(
            "INVALID_DATA_SIZE",
            WRITE,
            AccountingRejected,
            Category.PERMANENT,
            None,
            False,
            id="too large data is permanent",
        ),
        pytest.param(
            "PERIOD_LOCK",
            WRITE,
            AccountingPeriodLocked,
            Category.PERMANENT,
            None,
            False,
            id="a locked period is permanent",
        ),
        pytest.param(
            "DUPLICATE_DATA",
            WRITE,
            AccountingRejected,
            Category.PERMANENT,
            None,
            False,
            id="a duplicate is a rejection the client adopts",
        ),
        pytest.param(
            "SOMETHING_NEW",
            WRITE,
            AccountingUnavailable,
            Category.TRANSIENT,
            True,
            False,
            id="an unknown code on a write is transient with its outcome open",
        ),
        pytest.param(
            None,
            READ,
            AccountingUnavailable,
            Category.TRANSIENT,
            False,
            True,
            id="a failure without a code on a read is retried",
        ),
    ],
)
def test_codes(
    code: str | None,
    op: Operation,
    kind: type[ConnectorError],
    category: Category,
    outcome_unknown: bool | None,
    may_retry: bool,
) -> None:
    error = classify(code, op)
    assert type(error) is kind
    assert error.category is category
    if outcome_unknown is not None:
        assert isinstance(error, AccountingUnavailable)
        assert error.outcome_unknown is outcome_unknown
    assert retryable(error) is may_retry


def test_transient_accounting_errors_escalate_to_an_outage() -> None:
    error = classify("SYSTEM_MAINTENANCE", READ)
    assert isinstance(error, AccountingUnavailable)
    assert error.escalates_to is AccountingOutage


def test_rejections_carry_a_code_a_fix_and_netvisors_words() -> None:
    error = classify(
        "INVALID_DATA", WRITE, "Data form incorrect:. Customer not found with customer code: 1042."
    )
    assert isinstance(error, AccountingRejected)
    assert error.code == "INVALID_DATA"
    assert error.reason == "accounting_invalid_data"
    assert error.operation == "salesinvoice.add"
    assert "Customer not found with customer code: 1042" in error.message
    assert "customer flow" in error.context["fix"]
    assert error.context["fix"] in error.message


@pytest.mark.parametrize(
    ("op", "text", "hint"),
    [
        pytest.param(Ops.CUSTOMER_ADD, "Name too long", "correct the customer in Severa", id="a customer"),
        pytest.param(
            Ops.CUSTOMER_EDIT,
            "Customer not found with Netvisor identifier: 123",
            "removed from Netvisor",
            id="a customer edited after it was removed",
        ),
        pytest.param(WRITE, "Product not found: CONSULT", "product register", id="an unknown product"),
        pytest.param(WRITE, "Invalid VAT percentage", "VAT rate", id="a VAT problem"),
        pytest.param(Ops.MATCH_CREDIT_NOTE, "Invoice has no voucher", "same currency", id="a credit match"),
        pytest.param(WRITE, "Something else", "correct the invoice in Severa", id="anything else"),
    ],
)
def test_invalid_data_fixes(op: Operation, text: str, hint: str) -> None:
    error = classify("INVALID_DATA", op, text)
    assert hint in error.context["fix"]


def test_a_locked_period_names_the_date() -> None:
    error = classify("PERIOD_LOCK", WRITE, "Accounting period is locked", period=dt.date(2025, 3, 31))
    assert isinstance(error, AccountingPeriodLocked)
    assert error.reason == "accounting_period_locked"
    assert "open the accounting period for 2025-03-31 in Netvisor or re-date the invoice, then replay" in (
        error.message
    )


def test_keys_in_netvisors_text_are_redacted_and_the_text_is_cut() -> None:
    text = f"bad key {CUSTOMER_KEY}&{PARTNER_KEY} " + "x" * 5000
    for code in ("AUTHENTICATION_FAILED", "INVALID_DATA", "TECHNICAL_ERROR", f"X{CUSTOMER_KEY}"):
        error = classify(code, WRITE, text)
        assert CUSTOMER_KEY not in error.message
        assert PARTNER_KEY not in error.message
        assert CUSTOMER_KEY not in str(error.context)
        assert REDACTED in error.message
        assert len(error.message) < MAX_NETVISOR_TEXT_CHARS + 1000


def test_quote_redacts_before_it_cuts() -> None:
    secret = "s3cr3t-value"
    text = "y" * (MAX_NETVISOR_TEXT_CHARS - 5) + secret
    assert "s3cr" not in quote(text, (secret,))


@pytest.mark.parametrize(
    ("status", "op", "kind", "outcome_unknown"),
    [
        pytest.param(401, READ, AccountingAuthenticationFailed, None, id="401 without a document"),
        pytest.param(403, WRITE, AccountingNoAccess, None, id="403 without a document"),
        pytest.param(
            200, WRITE, AccountingUnavailable, True, id="an unreadable 200 on a write may have landed"
        ),
        pytest.param(200, READ, AccountingUnavailable, False, id="an unreadable 200 on a read"),
        pytest.param(502, WRITE, AccountingUnavailable, True, id="a gateway error leaves a write open"),
        pytest.param(503, WRITE, AccountingUnavailable, True, id="a 503 may follow a write that landed"),
        pytest.param(404, WRITE, AccountingUnavailable, False, id="a 4xx was refused before it was handled"),
    ],
)
def test_http_without_a_document(
    status: int, op: Operation, kind: type[ConnectorError], outcome_unknown: bool | None
) -> None:
    error = classify_http(status, op, url="https://nv.example", problem="not XML")
    assert type(error) is kind
    if outcome_unknown is not None:
        assert isinstance(error, AccountingUnavailable)
        assert error.outcome_unknown is outcome_unknown


def _connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("nv.example", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


@pytest.mark.parametrize(
    ("exc", "op", "reason", "outcome_unknown"),
    [
        pytest.param(_connector_error(), WRITE, "netvisor_connect_failed", False, id="refused: not sent"),
        pytest.param(
            aiohttp.ConnectionTimeoutError(), WRITE, "netvisor_connect_timeout", False, id="connect timeout"
        ),
        pytest.param(TimeoutError(), WRITE, "netvisor_timeout", True, id="a write that timed out"),
        pytest.param(TimeoutError(), READ, "netvisor_timeout", False, id="a read that timed out"),
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            WRITE,
            "netvisor_connection_lost",
            True,
            id="dropped mid-answer",
        ),
        pytest.param(
            aiohttp.ClientPayloadError("cut"),
            WRITE,
            "netvisor_connection_lost",
            True,
            id="a truncated answer",
        ),
        pytest.param(OSError("odd"), READ, "netvisor_transport_error", False, id="anything else on a read"),
    ],
)
def test_transport(exc: BaseException, op: Operation, reason: str, outcome_unknown: bool) -> None:
    error = classify_transport(exc, op, url="https://nv.example", timeout=120)
    assert isinstance(error, AccountingUnavailable)
    assert (error.reason, error.outcome_unknown) == (reason, outcome_unknown)
    assert retryable(error) is not outcome_unknown
