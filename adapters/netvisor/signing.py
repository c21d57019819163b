"""Netvisor's request authentication: the ``X-Netvisor-*`` headers and their HMAC-SHA256 MAC.

One implementation for both sides -- the client signs with it, the fake Netvisor verifies with it --
checked against the vendor's formula written out by hand in ``tests/unit/test_netvisor_signing.py``.

The MAC is ``hex(HMAC-SHA256(key, message))`` in lower case, where ``key`` is
``CustomerKey + "&" + PartnerKey`` and ``message`` is the ten values

    URL, Sender, CustomerId, Timestamp, Language, OrganisationId, TransactionId, TimestampUnix,
    CustomerKey, PartnerKey

joined with ``&``; URL is the full request URL with its query string *exactly as sent* (so the
caller signs the URL it is about to request, never a re-encoded copy), and both key and message are
encoded ISO-8859-1. The keys never travel in a header. The legacy SHA256/MD5 scheme is not
implemented (it is being retired).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

SENDER: Final = "X-Netvisor-Authentication-Sender"
CUSTOMER_ID: Final = "X-Netvisor-Authentication-CustomerId"
PARTNER_ID: Final = "X-Netvisor-Authentication-PartnerId"
TIMESTAMP: Final = "X-Netvisor-Authentication-Timestamp"
TIMESTAMP_UNIX: Final = "X-Netvisor-Authentication-TimestampUnix"
TRANSACTION_ID: Final = "X-Netvisor-Authentication-TransactionId"
LANGUAGE: Final = "X-Netvisor-Interface-Language"
ORGANISATION_ID: Final = "X-Netvisor-Organisation-ID"
ALGORITHM: Final = "X-Netvisor-Authentication-MACHashCalculationAlgorithm"
USE_HTTP_STATUS: Final = "X-Netvisor-Authentication-UseHTTPResponseStatusCodes"
MAC: Final = "X-Netvisor-Authentication-MAC"

HMAC_SHA256: Final = "HMACSHA256"
LANGUAGES: Final = frozenset({"FI", "EN", "SE"})


@dataclass(frozen=True, slots=True)
class SignedFields:
    """The non-secret values that go into the MAC, as they travel in the headers."""

    url: str
    sender: str
    customer_id: str
    partner_id: str
    timestamp: str
    timestamp_unix: str
    transaction_id: str
    language: str
    organisation_id: str

    @classmethod
    def from_headers(cls, url: str, headers: Mapping[str, str]) -> SignedFields:
        """The fields of a received request (a header that is missing reads as empty)."""
        return cls(
            url=url,
            sender=headers.get(SENDER, ""),
            customer_id=headers.get(CUSTOMER_ID, ""),
            partner_id=headers.get(PARTNER_ID, ""),
            timestamp=headers.get(TIMESTAMP, ""),
            timestamp_unix=headers.get(TIMESTAMP_UNIX, ""),
            transaction_id=headers.get(TRANSACTION_ID, ""),
            language=headers.get(LANGUAGE, ""),
            organisation_id=headers.get(ORGANISATION_ID, ""),
        )


def format_timestamp(moment: dt.datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS.fff`` in UTC, as the Timestamp header wants it."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


def compute_mac(fields: SignedFields, customer_key: str, partner_key: str) -> str:
    """The lower-case hex HMAC-SHA256 of a request, per the vendor's formula."""
    message = "&".join(
        (
            fields.url,
            fields.sender,
            fields.customer_id,
            fields.timestamp,
            fields.language,
            fields.organisation_id,
            fields.transaction_id,
            fields.timestamp_unix,
            customer_key,
            partner_key,
        )
    )
    key = f"{customer_key}&{partner_key}"
    return hmac.new(key.encode("iso-8859-1"), message.encode("iso-8859-1"), hashlib.sha256).hexdigest()


def sign(
    *,
    url: str,
    sender: str,
    customer_id: str,
    partner_id: str,
    language: str,
    organisation_id: str,
    transaction_id: str,
    now: dt.datetime,
    customer_key: str,
    partner_key: str,
) -> dict[str, str]:
    """Every header of one request, the MAC included. ``url`` must be the URL exactly as sent."""
    fields = SignedFields(
        url=url,
        sender=sender,
        customer_id=customer_id,
        partner_id=partner_id,
        timestamp=format_timestamp(now),
        timestamp_unix=str(int(now.timestamp())),
        transaction_id=transaction_id,
        language=language,
        organisation_id=organisation_id,
    )
    return {
        SENDER: fields.sender,
        CUSTOMER_ID: fields.customer_id,
        PARTNER_ID: fields.partner_id,
        TIMESTAMP: fields.timestamp,
        TIMESTAMP_UNIX: fields.timestamp_unix,
        TRANSACTION_ID: fields.transaction_id,
        LANGUAGE: fields.language,
        ORGANISATION_ID: fields.organisation_id,
        ALGORITHM: HMAC_SHA256,
        USE_HTTP_STATUS: "1",
        MAC: compute_mac(fields, customer_key, partner_key),
    }


def mac_matches(fields: SignedFields, mac: str, customer_key: str, partner_key: str) -> bool:
    """Constant-time check of a received MAC (the fake's side)."""
    return hmac.compare_digest(compute_mac(fields, customer_key, partner_key), mac.strip().lower())
