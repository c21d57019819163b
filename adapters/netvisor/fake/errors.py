"""Netvisor's error vocabulary, as the fake answers it, and the fake's own refusal kinds.

A failure travels as two ``Status`` siblings, ``FAILED`` then ``CODE :: text``
(:class:`NetvisorError` carries both parts). The HTTP status depends on the request's
``X-Netvisor-Authentication-UseHTTPResponseStatusCodes`` header: without ``1`` every answer is
HTTP 200; with it, :data:`HTTP_STATUS` decides.

Documented: 400 invalid data, 401 authentication, 403 service access, 500 internal. **Unverified
choices** (the vendor documents no status for them; a client must read the XML, not the status):

* ``DUPLICATE_DATA``, ``PERIOD_LOCK``, ``REQUEST_NOT_UNIQUE`` → 400: each says "this request, as
  sent, is refused", which is what 400 means for ``INVALID_DATA``;
* ``INVALID_DATA_SIZE`` → 400 (a kind of invalid data, not 413);
* ``SYSTEM_MAINTENANCE`` → 500 (no 503 is documented; 500 is the documented "internal").

:class:`RefusalKind` is the fake's own classification of *why* it refused, counted per kind so a
test suite can assert e.g. "no request was refused for ordering, signature or concurrency".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final


class ErrorCode(enum.StrEnum):
    """The codes Netvisor puts before ``::`` in the second ``Status``."""

    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    INVALID_DATA = "INVALID_DATA"
    INVALID_DATA_SIZE = "INVALID_DATA_SIZE"
    DUPLICATE_DATA = "DUPLICATE_DATA"
    REQUEST_NOT_UNIQUE = "REQUEST_NOT_UNIQUE"
    PERIOD_LOCK = "PERIOD_LOCK"
    SERVICE_ACCESS_ERROR = "SERVICE_ACCESS_ERROR"
    SYSTEM_MAINTENANCE = "SYSTEM_MAINTENANCE"
    TECHNICAL_ERROR = "TECHNICAL_ERROR"


HTTP_STATUS: Final[Mapping[ErrorCode, int]] = {
    ErrorCode.AUTHENTICATION_FAILED: 401,
    ErrorCode.INVALID_DATA: 400,
    ErrorCode.INVALID_DATA_SIZE: 400,  # unverified
    ErrorCode.DUPLICATE_DATA: 400,  # unverified
    ErrorCode.REQUEST_NOT_UNIQUE: 400,  # unverified
    ErrorCode.PERIOD_LOCK: 400,  # unverified
    ErrorCode.SERVICE_ACCESS_ERROR: 403,
    ErrorCode.SYSTEM_MAINTENANCE: 500,  # unverified
    ErrorCode.TECHNICAL_ERROR: 500,
}
"""HTTP status per code when the client asked for HTTP status codes (header value ``1``)."""


class RefusalKind(enum.StrEnum):
    """Why the fake refused a request; each value is also an attribute of :class:`Refusals`."""

    ORDERING = "ordering"
    """An element out of the DTD's order (or repeated where it may occur once)."""
    MANDATORY = "mandatory"
    """A mandatory element or attribute missing, or a mandatory element empty."""
    UNKNOWN_ELEMENT = "unknown_element"
    """An element the resource's DTD does not know at that place."""
    INVALID_VALUE = "invalid_value"
    """A value of the wrong form (date, number, code list, length) or a bad query parameter."""
    NOT_FOUND = "not_found"
    """A NetvisorKey or customer identifier that names nothing."""
    DUPLICATE = "duplicate"
    PERIOD_LOCK = "period_lock"
    ACCESS = "access"
    """A resource not enabled for the company (SERVICE_ACCESS_ERROR)."""
    MALFORMED = "malformed"
    """Not well-formed XML, a DTD or entity, an undecodable body."""
    SIZE = "size"
    CREDENTIALS = "credentials"
    """A missing authentication header, unknown customer / partner / organisation id, wrong algorithm."""
    SIGNATURE = "signature"
    """The MAC does not match (wrong key, or signed over another URL or other header values)."""
    TIMESTAMP = "timestamp"
    """A time stamp outside the tolerance window, unparsable, or the two time stamps disagree."""
    TRANSACTION_REUSE = "transaction_reuse"
    CONCURRENCY = "concurrency"
    """A request overlapping another in-flight request for the same company."""


class NetvisorError(Exception):
    """A failure answered in Netvisor's shape: ``code`` and human ``text``; ``refusal`` for counting."""

    def __init__(self, code: ErrorCode, text: str, refusal: RefusalKind | None = None) -> None:
        super().__init__(f"{code} :: {text}")
        self.code = code
        self.text = text
        self.refusal = refusal

    @property
    def status_text(self) -> str:
        """The second ``Status`` element's text."""
        return f"{self.code} :: {self.text}"

    def __repr__(self) -> str:
        return f"NetvisorError({self.code.value!r}, {self.text!r}, refusal={self.refusal})"


def invalid(text: str, refusal: RefusalKind = RefusalKind.INVALID_VALUE) -> NetvisorError:
    """An ``INVALID_DATA`` failure in Netvisor's wording (``Data form incorrect:. …``)."""
    return NetvisorError(ErrorCode.INVALID_DATA, f"Data form incorrect:. {text}", refusal)
