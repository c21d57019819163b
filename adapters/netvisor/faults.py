"""Every way a Netvisor request can fail, classified into :mod:`connector.errors` in one place.

Three sources of failure, three pure functions; the client calls them and raises the result
``from`` the original exception where there is one (a FAILED status is an answer, not an exception):

* :func:`classify_status` — Netvisor answered ``FAILED`` with ``CODE :: text``;
* :func:`classify_http` — an HTTP answer without a readable Netvisor document;
* :func:`classify_transport` — no (complete) answer: refused, reset, dropped, timed out.

The XML decides, not the HTTP status: with ``UseHTTPResponseStatusCodes: 1`` Netvisor answers 400,
401, 403 or 500 for some codes, but the status of DUPLICATE_DATA, PERIOD_LOCK and REQUEST_NOT_UNIQUE
is unverified, so the HTTP status is only context here.

=========================  ==========================================  ===========================
Netvisor says              raised                                      the client then
=========================  ==========================================  ===========================
AUTHENTICATION_FAILED      AccountingAuthenticationFailed (systemic)   re-reads the keys; retries
                                                                       once if they changed
SERVICE_ACCESS_ERROR       AccountingNoAccess (systemic)               raises
SYSTEM_MAINTENANCE,        AccountingUnavailable, outcome known        retries in process, then
SYSTEM_MAINTANANCE                                                     raises (→ AccountingOutage)
TECHNICAL_ERROR            AccountingUnavailable; outcome unknown      retries a read; raises a
                           for a write                                 write at once
REQUEST_NOT_UNIQUE         AccountingUnavailable, outcome known        signs anew (new
                                                                       TransactionId) and retries
INVALID_DATA,              AccountingRejected (permanent) with a fix   raises
INVALID_DATA_SIZE
PERIOD_LOCK                AccountingPeriodLocked (permanent)          raises
DUPLICATE_DATA             AccountingRejected(code=DUPLICATE_DATA)     looks the record up and
                                                                       adopts it
anything else              AccountingUnavailable; outcome unknown      as TECHNICAL_ERROR
                           for a write
=========================  ==========================================  ===========================

Overlapping requests to one company are answered by the real service with "assorted errors"; the
client never overlaps within a process (:mod:`adapters.netvisor.client`), and what another pod's
overlap provokes lands in the rows above, TECHNICAL_ERROR or an unknown code, and is retried.

``outcome_unknown`` is True for a write whenever the request may have been stored and we cannot
tell (timeout after sending, connection dropped mid-answer, an internal error), and False when we
know it was not (connection refused, maintenance, a typed refusal, a 4xx such as 429). A 5xx
without a Netvisor document, 503 included, leaves a write open: it may come from a proxy that
forwarded the request and lost the answer. The client never retries a write whose outcome is
unknown; the flow looks before writing again.

Netvisor's text is quoted with both keys redacted and cut to :data:`MAX_NETVISOR_TEXT_CHARS`
(the message travels into result events, logs and dead-letter headers); redaction comes first,
so that a cut never leaves part of a key behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from typing import Any, Final

import aiohttp

from adapters.netvisor.codec import Operation, ResponseStatus
from connector.errors import (
    AccountingAuthenticationFailed,
    AccountingNoAccess,
    AccountingPeriodLocked,
    AccountingRejected,
    AccountingUnavailable,
    ConnectorError,
)

REDACTED: Final = "[redacted]"
#: The most of Netvisor's text one message quotes (its texts are a sentence or two).
MAX_NETVISOR_TEXT_CHARS: Final = 500
#: The same for a code: Netvisor's are under 30 characters.
MAX_NETVISOR_CODE_CHARS: Final = 60
TRUNCATED: Final = " …[truncated]"

AUTHENTICATION_FAILED: Final = "AUTHENTICATION_FAILED"
SERVICE_ACCESS_ERROR: Final = "SERVICE_ACCESS_ERROR"
SYSTEM_MAINTENANCE: Final = "SYSTEM_MAINTENANCE"
SYSTEM_MAINTANANCE: Final = "SYSTEM_MAINTANANCE"  # (sic) the spelling clients also accept
TECHNICAL_ERROR: Final = "TECHNICAL_ERROR"
REQUEST_NOT_UNIQUE: Final = "REQUEST_NOT_UNIQUE"
INVALID_DATA: Final = "INVALID_DATA"
INVALID_DATA_SIZE: Final = "INVALID_DATA_SIZE"
PERIOD_LOCK: Final = "PERIOD_LOCK"
DUPLICATE_DATA: Final = "DUPLICATE_DATA"

KNOWN_CODES: Final = frozenset(
    {
        AUTHENTICATION_FAILED,
        SERVICE_ACCESS_ERROR,
        SYSTEM_MAINTENANCE,
        SYSTEM_MAINTANANCE,
        TECHNICAL_ERROR,
        REQUEST_NOT_UNIQUE,
        INVALID_DATA,
        INVALID_DATA_SIZE,
        PERIOD_LOCK,
        DUPLICATE_DATA,
    }
)

_MAY_HAVE_LANDED: Final = "; it may have been stored: look before repeating it"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def quote(text: str, secrets: Iterable[str], *, limit: int = MAX_NETVISOR_TEXT_CHARS) -> str:
    """Netvisor's text as a message may carry it: the keys redacted, at most ``limit`` characters."""
    text = redact(text, secrets)
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def retryable(error: BaseException) -> bool:
    """Whether the client may repeat the request at once: transient, and surely not stored."""
    return isinstance(error, AccountingUnavailable) and not error.outcome_unknown


def _landed(op: Operation) -> str:
    return _MAY_HAVE_LANDED if op.write else ""


def classify_status(
    status: ResponseStatus,
    op: Operation,
    *,
    http_status: int,
    secrets: Iterable[str],
    key_origin: str,
    organisation_id: str,
    period: dt.date | None = None,
) -> ConnectorError:
    """The error for a ``FAILED`` answer (``status.ok`` must be False).

    ``period`` is the date whose accounting period a PERIOD_LOCK refers to (the invoice date).
    """
    secrets = tuple(secrets)
    code = quote(status.code or "", secrets, limit=MAX_NETVISOR_CODE_CHARS) or None
    said = quote(status.text or "no explanation", secrets)
    context: dict[str, Any] = {"operation": op.label, "http_status": http_status, "netvisor_code": code or ""}

    if code == AUTHENTICATION_FAILED:
        return AccountingAuthenticationFailed(
            f"Netvisor refused the authentication of {op} ({code}): check {key_origin}, the customer id, "
            f"the partner id and the organisation id {organisation_id}, and that this host's clock is "
            f"right (every request is signed with a time stamp). Netvisor said: {said}",
            **context,
        )
    if code == SERVICE_ACCESS_ERROR:
        return AccountingNoAccess(
            f"Netvisor refused {op} for lack of rights ({code}): give the integration user the right "
            f"to use {op.resource}.nv in Netvisor, or have the resource enabled for company "
            f"{organisation_id}. Netvisor said: {said}",
            **context,
        )
    if code in (SYSTEM_MAINTENANCE, SYSTEM_MAINTANANCE):
        return AccountingUnavailable(
            f"Netvisor is in maintenance and did not run {op} ({code}); it will be tried again. "
            f"Netvisor said: {said}",
            reason="netvisor_maintenance",
            outcome_unknown=False,
            **context,
        )
    if code == REQUEST_NOT_UNIQUE:
        # The TransactionId was seen before: Netvisor refused the request without running it.
        return AccountingUnavailable(
            f"Netvisor refused {op} as a repeated transaction ({code}); it is signed anew and tried again.",
            reason="netvisor_request_not_unique",
            outcome_unknown=False,
            **context,
        )
    if code in (INVALID_DATA, INVALID_DATA_SIZE, PERIOD_LOCK, DUPLICATE_DATA):
        fix = _fix(code, op, said, period)
        message = f"Netvisor rejected {op} ({code}): {said.rstrip('. ')}. To fix: {fix}"
        if code == PERIOD_LOCK:
            return AccountingPeriodLocked(
                message,
                code=code,
                operation=op.label,
                reason="accounting_period_locked",
                fix=fix,
                http_status=http_status,
                netvisor_code=code,
                period=period.isoformat() if period is not None else None,
            )
        return AccountingRejected(
            message, code=code, operation=op.label, fix=fix, http_status=http_status, netvisor_code=code
        )
    if code == TECHNICAL_ERROR:
        return AccountingUnavailable(
            f"Netvisor failed internally on {op} ({code}){_landed(op)}. Netvisor said: {said}",
            reason="netvisor_technical_error",
            outcome_unknown=op.write,
            **context,
        )
    return AccountingUnavailable(
        f"Netvisor answered {op} with FAILED ({code or 'no code'}){_landed(op)}. Netvisor said: {said}",
        reason="netvisor_failed",
        outcome_unknown=op.write,
        **context,
    )


def _fix(code: str, op: Operation, said: str, period: dt.date | None) -> str:
    """What an accountant (or whoever owns the Severa record) can do about a refusal."""
    text = said.lower()
    if code == PERIOD_LOCK:
        when = f"for {period.isoformat()}" if period is not None else "of the invoice date"
        return f"open the accounting period {when} in Netvisor or re-date the invoice, then replay."
    if code == INVALID_DATA_SIZE:
        return (
            "a value is longer than Netvisor allows (see the field it names): shorten it in Severa, "
            "then replay."
        )
    if code == DUPLICATE_DATA:
        return (
            "Netvisor already holds a record with this identity that the connector could not adopt "
            "(see above): compare the two in Netvisor, remove or renumber the wrong one, then replay."
        )
    # INVALID_DATA
    if op.resource == "customer" and "not found" in text:
        return (
            "the customer was removed from Netvisor after the connector looked it up: replay the "
            "message (it is looked up again and added anew)."
        )
    if op.resource == "customer":
        return "correct the customer in Severa (the field Netvisor names above), then replay."
    if op.resource == "matchcreditnote":
        return (
            "both the credit note and the invoice must be open (sent, with vouchers) in the same currency "
            "in Netvisor: check them there, then replay."
        )
    if "customer" in text or "asiakas" in text:
        return (
            "the invoice's customer is missing or wrong in Netvisor: let the customer flow add it (or add "
            "it in Netvisor with the Severa customer number as its code), then replay."
        )
    if "product" in text or "tuote" in text:
        return (
            "the row's product is not in Netvisor's product register: add it there, or set the product "
            "code on the Severa row (or the default_product_code setting), then replay."
        )
    if "vat" in text or "alv" in text:
        return "correct the row's VAT rate in Severa (or the VAT mapping table), then replay."
    return "correct the invoice in Severa (the field Netvisor names above), then replay."


def classify_http(status: int, op: Operation, *, url: str, problem: str) -> ConnectorError:
    """The error for an HTTP answer that carries no Netvisor document we can read.

    ``problem`` says what was wrong with the body (free of secrets already; cut here).
    """
    problem = quote(problem, ())
    context: dict[str, Any] = {"operation": op.label, "http_status": status}
    if status == 401:
        return AccountingAuthenticationFailed(
            f"HTTP 401 from {url} on {op} without a Netvisor answer: something between us and Netvisor "
            f"(a proxy?) refused the request; check the base_url setting and the network path ({problem}).",
            reason="netvisor_http_unauthorized",
            **context,
        )
    if status == 403:
        return AccountingNoAccess(
            f"HTTP 403 from {url} on {op} without a Netvisor answer: a proxy or firewall refused the "
            f"request; check the base_url setting and the network path ({problem}).",
            reason="netvisor_http_forbidden",
            **context,
        )
    if 200 <= status < 300:
        return AccountingUnavailable(
            f"Netvisor answered {op} with HTTP {status} but an unreadable body ({problem}){_landed(op)}.",
            reason="netvisor_bad_reply",
            outcome_unknown=op.write,
            **context,
        )
    # A 4xx (429 included) was refused before it was handled. Every 5xx leaves a write's fate open,
    # 503 too: without a Netvisor document it comes from something in front of Netvisor (a load
    # balancer, a proxy, a mesh sidecar), and those answer 503 also when the upstream failed after
    # the request was forwarded (Envoy: "upstream reset before response started"). Netvisor keeps
    # no idempotency key, so retrying such an add here would store the invoice twice.
    not_handled = 400 <= status < 500
    return AccountingUnavailable(
        f"Netvisor answered {op} with HTTP {status} and no Netvisor status ({problem})"
        f"{_landed(op) if not not_handled else ''}.",
        reason="netvisor_http_error",
        outcome_unknown=op.write and not not_handled,
        **context,
    )


def classify_transport(
    exc: BaseException, op: Operation, *, url: str, timeout: float
) -> AccountingUnavailable:
    """The error for a request that got no complete answer (the caller raises it ``from exc``)."""
    context: dict[str, Any] = {"operation": op.label, "error": type(exc).__name__}
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return AccountingUnavailable(
            f"Could not connect to Netvisor at {url} for {op} in time: the request was not sent.",
            reason="netvisor_connect_timeout",
            outcome_unknown=False,
            **context,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return AccountingUnavailable(
            f"Could not connect to Netvisor at {url} for {op} ({exc.os_error.strerror or exc.os_error}): "
            "the request was not sent.",
            reason="netvisor_connect_failed",
            outcome_unknown=False,
            **context,
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return AccountingUnavailable(
            f"Netvisor did not answer {op} within {timeout:g} s{_landed(op)}.",
            reason="netvisor_timeout",
            outcome_unknown=op.write,
            **context,
        )
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)):
        return AccountingUnavailable(
            f"The connection to Netvisor broke during {op} ({type(exc).__name__}){_landed(op)}.",
            reason="netvisor_connection_lost",
            outcome_unknown=op.write,
            **context,
        )
    return AccountingUnavailable(
        f"The request {op} to Netvisor failed ({type(exc).__name__}){_landed(op)}.",
        reason="netvisor_transport_error",
        outcome_unknown=op.write,
        **context,
    )
