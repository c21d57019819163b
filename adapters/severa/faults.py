"""Every way a Severa call can fail, classified into :mod:`connector.errors` at the adapter edge.

Three sources of failure, three pure functions; the client calls them and raises the result
``from`` the original exception where there is one (a SOAP fault is an answer, not an exception):

* :func:`classify_fault` — Severa answered with a SOAP fault;
* :func:`classify_http` — an HTTP error without a readable SOAP envelope;
* :func:`classify_transport` — no (complete) answer: refused, reset, dropped, timed out.

``outcome_unknown`` follows one rule: it is True for a write (Add/Update/Delete) whenever the request
may have reached Severa and we cannot tell whether it was applied, and False when we know it was not
(connection refused, connect timeout, a typed refusal, HTTP 503/429 where the server says it did not
handle the request). The core must look before repeating such a write.

Server-provided text (fault strings, descriptions, fault codes, what was wrong with a body) goes into
messages with the API key redacted — a server that echoes the key back would otherwise smuggle it into
logs and DLQ headers — and cut to :data:`MAX_SEVERA_TEXT_CHARS`: the message travels into result
events, log lines and dead-letter headers, and a fault carrying a megabyte of description must not
make a megabyte event. Redaction comes first, so that a cut never leaves part of the key behind.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp

from adapters.severa.contract import OperationRef, SoapFault
from connector.errors import (
    ConnectorError,
    SeveraAuthenticationFailed,
    SeveraQuotaExceeded,
    SeveraRejected,
    SeveraUnavailable,
)

REDACTED: Final = "[redacted]"

#: The most of one piece of Severa's text an error message quotes; Severa's own descriptions are a
#: sentence or two, validation faults listing several problems a few hundred characters.
MAX_SEVERA_TEXT_CHARS: Final = 500
#: The same for a name Severa sends (fault code, detail type): real ones are under 40 characters.
MAX_SEVERA_NAME_CHARS: Final = 100
TRUNCATED: Final = " …[truncated]"

#: Severa's fault detail types, by what they mean for us.
AUTHENTICATION_FAILURE: Final = "AuthenticationFailureException"
QUOTA_EXCEEDED: Final = "QuotaLimitExceededException"
TOS_NOT_APPROVED: Final = "TosNotApprovedException"
NOT_FOUND: Final = "NotFoundException"
VALIDATION: Final = "ValidationException"
NO_PERMISSION: Final = "NoPermissionException"
GENERAL_FAILURE: Final = "GeneralFailureException"

_REJECTIONS: Final = {VALIDATION: "Validation", NO_PERMISSION: "NoPermission", NOT_FOUND: "NotFound"}

#: Untyped faults WCF raises itself (faultcode local name → the ``fault`` we report).
_PROTOCOL_FAULTS: Final = {
    "Client": "SoapClientFault",
    "ActionNotSupported": "ActionNotSupported",
    "DeserializationFailed": "DeserializationFailed",
    "MustUnderstand": "MustUnderstand",
    "VersionMismatch": "VersionMismatch",
}

_MAY_WRITE_LANDED: Final = "; the write may have been stored: look before repeating it"


class NotFound:
    """Severa said the record does not exist; for look-ups this is an answer, not an error."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND_ANSWER: Final = NotFound()


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced (no-op for an absent or empty secret)."""
    if secret and secret in text:
        return text.replace(secret, REDACTED)
    return text


def quote(text: str, secret: str | None, *, limit: int = MAX_SEVERA_TEXT_CHARS) -> str:
    """Server text as an error message may carry it: the key redacted, at most ``limit`` characters
    (a longer text is cut and ends in :data:`TRUNCATED`)."""
    text = redact(text, secret)
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def _said(fault: SoapFault, secret: str | None) -> str:
    """What Severa said, preferring the typed detail's description over the generic faultstring."""
    return quote(fault.description or fault.string or "no description", secret)


def classify_fault(
    fault: SoapFault,
    op: OperationRef,
    *,
    key_origin: str,
    secret: str | None,
    used_quota: int | None = None,
    quota: int | None = None,
) -> ConnectorError | NotFound:
    """The error for a SOAP fault, or :data:`NOT_FOUND_ANSWER` for a NotFound on a read."""
    kind = fault.detail_type
    if kind is not None:
        kind = quote(kind, secret, limit=MAX_SEVERA_NAME_CHARS)
    said = _said(fault, secret)
    fault_code = quote(fault.code or "", secret, limit=MAX_SEVERA_NAME_CHARS)
    context = {"operation": op.label, "fault_code": fault_code}
    faultstring = fault.string.lower()

    if kind == AUTHENTICATION_FAILURE or (kind is None and "access denied" in faultstring):
        # Systemic even when only a write is refused and look-ups (and the probe) pass: every write
        # would fail the same way, and no message is to blame for it. Say what that pattern means.
        rights = (
            f"; if look-ups still succeed, the key's user lacks the right to write {_entity(op)} records "
            "(Severa user rights)"
            if op.write
            else ""
        )
        return SeveraAuthenticationFailed(
            f"Severa refused the API key ({kind or 'Access denied'}) on {op}: check {key_origin}; "
            "a regenerated key invalidates the old one, and the key's user needs the API right with the "
            f"API add-on active{rights}. Severa said: {said}",
            fault=kind or "AccessDenied",
            **context,
        )
    if kind == QUOTA_EXCEEDED or "quota limit reached" in faultstring:
        usage = f" ({used_quota}/{quota} calls used)" if used_quota is not None and quota else ""
        return SeveraQuotaExceeded(
            f"Severa's daily API quota is spent{usage}, so {op} was not run: every call fails until the "
            "quota resets at 00:00 UTC (raise the quota with Visma or lower the call rate).",
            fault=kind or QUOTA_EXCEEDED,
            **context,
        )
    if kind == TOS_NOT_APPROVED:
        return SeveraAuthenticationFailed(
            f"Severa refused {op} because the API terms of service are not approved ({kind}): "
            "an administrator must approve them in Severa.",
            reason="severa_tos_not_approved",
            fault=kind,
            **context,
        )
    if kind == NOT_FOUND and not op.write:
        return NOT_FOUND_ANSWER
    if kind in _REJECTIONS:
        hint = (
            "; the API key's user lacks the right for this (Severa user rights)"
            if kind == NO_PERMISSION
            else ""
        )
        return SeveraRejected(
            f"Severa rejected {op}: {said} ({kind}){hint}",
            fault=_REJECTIONS[kind],
            operation=op.label,
            fault_code=fault_code,
        )
    if kind == GENERAL_FAILURE:
        # Severa hit an internal error; whether a write was committed before it is not knowable.
        return SeveraUnavailable(
            f"Severa failed internally on {op}: {said} ({kind}){_MAY_WRITE_LANDED if op.write else ''}",
            reason="severa_general_failure",
            outcome_unknown=op.write,
            fault=kind,
            **context,
        )
    code = fault_code.rpartition(":")[2]
    if kind is None and code in _PROTOCOL_FAULTS:
        # WCF's dispatcher refused the request before Severa's code ran (unknown action, a body
        # that does not deserialize, an unknown mustUnderstand header): it can never succeed as is.
        return SeveraRejected(
            f"Severa's SOAP layer rejected {op}: {said} ({code})",
            fault=_PROTOCOL_FAULTS[code],
            operation=op.label,
            fault_code=fault_code,
        )
    return SeveraUnavailable(
        f"Severa answered {op} with an unexpected fault: {said} ({kind or fault_code or 'no code'})"
        f"{_MAY_WRITE_LANDED if op.write else ''}",
        reason="severa_fault",
        outcome_unknown=op.write,
        fault=kind or "",
        **context,
    )


def _entity(op: OperationRef) -> str:
    """``HourEntry`` for ``IHourEntry``: what a contract's writes change."""
    return op.contract.removeprefix("I")


def classify_http(status: int, op: OperationRef, *, url: str, problem: str) -> ConnectorError:
    """The error for an HTTP answer that carries no SOAP envelope we can read.

    ``problem`` says what was wrong with the body (already free of secrets; it may quote the body,
    so it is cut to :data:`MAX_SEVERA_TEXT_CHARS` here).
    """
    problem = quote(problem, None)
    context = {"operation": op.label, "http_status": status}
    if status in (401, 403):
        return SeveraAuthenticationFailed(
            f"HTTP {status} from {url} on {op}: a proxy or firewall refused the request before Severa "
            "saw it; check the url setting and the network path.",
            reason="severa_http_forbidden",
            **context,
        )
    if 200 <= status < 300:
        return SeveraUnavailable(
            f"Severa answered {op} with HTTP {status} but an unreadable body ({problem})"
            f"{_MAY_WRITE_LANDED if op.write else ''}",
            reason="severa_bad_reply",
            outcome_unknown=op.write,
            **context,
        )
    # 503 and 429 say the server did not handle the request; any other error status leaves it open.
    not_handled = status in (429, 503)
    return SeveraUnavailable(
        f"Severa answered {op} with HTTP {status} and no SOAP fault ({problem})"
        f"{_MAY_WRITE_LANDED if op.write and not not_handled else ''}",
        reason="severa_http_error",
        outcome_unknown=op.write and not not_handled,
        **context,
    )


def classify_transport(
    exc: BaseException, op: OperationRef, *, url: str, timeout: float
) -> SeveraUnavailable:
    """The error for a call that got no complete answer (the caller raises it ``from exc``)."""
    context = {"operation": op.label, "error": type(exc).__name__}
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return SeveraUnavailable(
            f"Could not connect to Severa at {url} for {op} in time: the request was not sent.",
            reason="severa_connect_timeout",
            outcome_unknown=False,
            **context,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return SeveraUnavailable(
            f"Could not connect to Severa at {url} for {op} ({exc.os_error.strerror or exc.os_error}): "
            "the request was not sent.",
            reason="severa_connect_failed",
            outcome_unknown=False,
            **context,
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return SeveraUnavailable(
            f"Severa did not answer {op} within {timeout:g} s{_MAY_WRITE_LANDED if op.write else ''}.",
            reason="severa_timeout",
            outcome_unknown=op.write,
            **context,
        )
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)):
        return SeveraUnavailable(
            f"The connection to Severa broke during {op} ({type(exc).__name__})"
            f"{_MAY_WRITE_LANDED if op.write else ''}.",
            reason="severa_connection_lost",
            outcome_unknown=op.write,
            **context,
        )
    return SeveraUnavailable(
        f"The call {op} to Severa failed ({type(exc).__name__}){_MAY_WRITE_LANDED if op.write else ''}.",
        reason="severa_transport_error",
        outcome_unknown=op.write,
        **context,
    )
