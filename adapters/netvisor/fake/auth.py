"""The fake's side of Netvisor's HMAC-SHA256 authentication: who may call, and is this call genuine.

:class:`Authenticator` checks, in this order, and answers ``AUTHENTICATION_FAILED`` (HTTP 401)
unless noted:

1. every ``X-Netvisor-*`` header present (Language included: the doc lists it on every request),
   the algorithm ``HMACSHA256`` (the legacy SHA256/MD5 scheme is refused, it is being retired) and
   the language ``FI``/``EN``/``SE``;  → refusal ``credentials``
2. a known PartnerId, then a known CustomerId, then an OrganisationId that customer may use;
   → ``credentials``
3. the MAC, over the URL *exactly as it arrived* (scheme, ``Host`` header, raw path and query as
   sent, percent-encoding untouched) and the header values;  → ``signature``
4. the time stamps: ``TimestampUnix`` within ``tolerance`` of the fake's clock (either side), and
   ``Timestamp`` (``YYYY-MM-DD HH:MM:SS.fff`` UTC) naming the same second;  → ``timestamp``
5. the TransactionId not seen before for this PartnerId → else ``REQUEST_NOT_UNIQUE`` (HTTP 400,
   see :mod:`.errors`).  → ``transaction_reuse``

A TransactionId counts as used once the request passed steps 1-4, whatever happens to it next:
a retry must bring a new one. Ids are remembered only as long as their time stamp could still
pass step 4, which bounds the memory.

**Unverified:** the tolerance window (default :data:`DEFAULT_TIMESTAMP_TOLERANCE`); whether the
real service verifies the MAC over the raw or the percent-decoded URL (the fake: raw, so sign the
URL you send, already encoded); the scope of TransactionId uniqueness (the fake: per PartnerId,
as one integration guide says); error texts (the real ones are Finnish unless EN is asked for;
the fake always writes English).

The keys are secrets: they appear in no log line, no answer, no ``repr``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from adapters.netvisor.fake.errors import ErrorCode, NetvisorError, RefusalKind
from adapters.netvisor.signing import (
    ALGORITHM,
    CUSTOMER_ID,
    HMAC_SHA256,
    LANGUAGE,
    LANGUAGES,
    MAC,
    ORGANISATION_ID,
    PARTNER_ID,
    SENDER,
    TIMESTAMP,
    TIMESTAMP_UNIX,
    TRANSACTION_ID,
    SignedFields,
    mac_matches,
)

DEFAULT_CUSTOMER_ID: Final = "fake-customer"
DEFAULT_CUSTOMER_KEY: Final = "fake-customer-key"
DEFAULT_PARTNER_ID: Final = "fake-partner"
DEFAULT_PARTNER_KEY: Final = "fake-partner-key"
DEFAULT_ORGANISATION_ID: Final = "1234567-8"
DEFAULT_TIMESTAMP_TOLERANCE: Final = dt.timedelta(minutes=5)

REQUIRED_HEADERS: Final = (
    SENDER,
    CUSTOMER_ID,
    PARTNER_ID,
    TIMESTAMP,
    TIMESTAMP_UNIX,
    TRANSACTION_ID,
    LANGUAGE,
    ORGANISATION_ID,
    ALGORITHM,
    MAC,
)

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the fake accepts: one API user (customer) of one integration partner, for one company."""

    customer_id: str = DEFAULT_CUSTOMER_ID
    customer_key: str = field(default=DEFAULT_CUSTOMER_KEY, repr=False)
    partner_id: str = DEFAULT_PARTNER_ID
    partner_key: str = field(default=DEFAULT_PARTNER_KEY, repr=False)
    organisation_id: str = DEFAULT_ORGANISATION_ID

    def __post_init__(self) -> None:
        for name in ("customer_id", "customer_key", "partner_id", "partner_key", "organisation_id"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")

    def public(self) -> dict[str, str]:
        """The identifiers, never the keys (for state dumps and logs)."""
        return {
            "customer_id": self.customer_id,
            "partner_id": self.partner_id,
            "organisation_id": self.organisation_id,
        }


def _refused(text: str, refusal: RefusalKind) -> NetvisorError:
    return NetvisorError(ErrorCode.AUTHENTICATION_FAILED, text, refusal)


def parse_header_timestamp(value: str) -> dt.datetime:
    """``YYYY-MM-DD HH:MM:SS.fff`` (the fraction optional) as an aware UTC datetime."""
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(value.strip(), pattern).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    raise ValueError(value)


class Authenticator:
    """Verifies each request's headers against :class:`Credentials`; remembers TransactionIds."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        clock: Clock,
        tolerance: Callable[[], dt.timedelta] = lambda: DEFAULT_TIMESTAMP_TOLERANCE,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._tolerance = tolerance  # read per request: the admin API may change it
        # (partner id, transaction id) -> the moment after which its time stamp can no longer pass.
        # Insertion order is roughly time order, so expired ids are dropped from the front.
        self._seen: dict[tuple[str, str], dt.datetime] = {}

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def rotate_keys(self, *, customer_key: str | None = None, partner_key: str | None = None) -> None:
        """Replace one or both keys at once; requests signed with an old key fail from now on."""
        self._credentials = replace(
            self._credentials,
            customer_key=customer_key or self._credentials.customer_key,
            partner_key=partner_key or self._credentials.partner_key,
        )

    def forget_transactions(self) -> None:
        self._seen.clear()

    @property
    def remembered_transactions(self) -> int:
        return len(self._seen)

    def verify(self, url: str, headers: Mapping[str, str]) -> SignedFields:
        """The request's signed fields, or :class:`NetvisorError` saying what is wrong."""
        missing = [name for name in REQUIRED_HEADERS if not headers.get(name, "").strip()]
        if missing:
            raise _refused(f"Missing authentication header(s): {', '.join(missing)}", RefusalKind.CREDENTIALS)
        fields = SignedFields.from_headers(url, headers)
        algorithm = headers[ALGORITHM].strip()
        if algorithm.upper() != HMAC_SHA256:
            raise _refused(
                f"MAC hash calculation algorithm {algorithm!r} is not supported; use {HMAC_SHA256}",
                RefusalKind.CREDENTIALS,
            )
        if fields.language.upper() not in LANGUAGES:
            raise _refused(
                f"Interface language {fields.language!r} is not one of {', '.join(sorted(LANGUAGES))}",
                RefusalKind.CREDENTIALS,
            )
        credentials = self._credentials
        if not _same(fields.partner_id, credentials.partner_id):
            raise _refused("Integration partner not found", RefusalKind.CREDENTIALS)
        if not _same(fields.customer_id, credentials.customer_id):
            raise _refused("Customer (integration user) not found", RefusalKind.CREDENTIALS)
        if not _same(fields.organisation_id, credentials.organisation_id):
            raise _refused(
                "The integration user has no access to the organisation "
                f"{fields.organisation_id!r} (X-Netvisor-Organisation-ID)",
                RefusalKind.CREDENTIALS,
            )
        if not mac_matches(fields, headers[MAC], credentials.customer_key, credentials.partner_key):
            raise _refused(
                "MAC is not valid: it must be HMAC-SHA256 over the URL exactly as sent and the header values",
                RefusalKind.SIGNATURE,
            )
        now = self._clock()
        stamp = self._check_timestamps(fields, now)
        self._remember(fields, stamp, now)
        return fields

    def _check_timestamps(self, fields: SignedFields, now: dt.datetime) -> dt.datetime:
        try:
            unix = int(fields.timestamp_unix.strip())
            stamp = dt.datetime.fromtimestamp(unix, dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise _refused(
                f"TimestampUnix {fields.timestamp_unix!r} is not a number of seconds", RefusalKind.TIMESTAMP
            ) from None
        try:
            written = parse_header_timestamp(fields.timestamp)
        except ValueError:
            raise _refused(
                f"Timestamp {fields.timestamp!r} is not 'YYYY-MM-DD HH:MM:SS.fff' (UTC)",
                RefusalKind.TIMESTAMP,
            ) from None
        if abs(written.replace(microsecond=0) - stamp) > dt.timedelta(seconds=1):
            raise _refused("Timestamp and TimestampUnix name different moments", RefusalKind.TIMESTAMP)
        tolerance = self._tolerance()
        if abs(now - stamp) > tolerance:
            raise _refused(
                "Request timestamp is outside the allowed window "
                f"(±{int(tolerance.total_seconds())} s of the server's clock)",
                RefusalKind.TIMESTAMP,
            )
        return stamp

    def _remember(self, fields: SignedFields, stamp: dt.datetime, now: dt.datetime) -> None:
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] >= now:
                break
            del self._seen[oldest]
        key = (fields.partner_id, fields.transaction_id)
        if key in self._seen:
            raise NetvisorError(
                ErrorCode.REQUEST_NOT_UNIQUE,
                f"TransactionId {fields.transaction_id!r} has already been used",
                RefusalKind.TRANSACTION_REUSE,
            )
        self._seen[key] = max(stamp, now) + self._tolerance() + dt.timedelta(seconds=1)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), expected.encode())
