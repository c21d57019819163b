"""``adapters.netvisor.signing`` against the vendor's formula, written out by hand here.

The formula (our API notes): key = ``CustomerKey + "&" + PartnerKey``; message = URL, Sender,
CustomerId, Timestamp, Language, OrganisationId, TransactionId, TimestampUnix, CustomerKey,
PartnerKey joined with ``&``; both ISO-8859-1; MAC = lower-case hex HMAC-SHA256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from adapters.netvisor import signing

NOW = dt.datetime(2025, 6, 10, 9, 0, 0, 123456, tzinfo=dt.UTC)


def by_hand(
    url: str,
    sender: str,
    customer_id: str,
    timestamp: str,
    language: str,
    organisation_id: str,
    transaction_id: str,
    timestamp_unix: str,
    customer_key: str,
    partner_key: str,
) -> str:
    message = "&".join(
        [
            url,
            sender,
            customer_id,
            timestamp,
            language,
            organisation_id,
            transaction_id,
            timestamp_unix,
            customer_key,
            partner_key,
        ]
    )
    key = customer_key + "&" + partner_key
    return hmac.new(key.encode("iso-8859-1"), message.encode("iso-8859-1"), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("url", "sender", "customer_key", "partner_key"),
    [
        pytest.param(
            "https://isvapi.netvisor.fi/customerlist.nv",
            "Connector",
            "ck",
            "pk",
            id="a plain URL signs alike",
        ),
        pytest.param(
            "https://isvapi.netvisor.fi/salesinvoicelist.nv?invoicenumber=20250&invoicestatus=open",
            "Connector",
            "ck",
            "pk",
            id="a query string is part of the signed URL",
        ),
        pytest.param(
            "https://isvapi.netvisor.fi/customerlist.nv?keyword=Äänekoski Öljy",
            "Yhdistys ä/ö",
            "avain-ä",
            "kumppani-ö",
            id="ISO-8859-1 letters in URL, sender and keys sign as Latin-1 bytes",
        ),
    ],
)
def test_compute_mac_matches_the_formula_by_hand(
    url: str, sender: str, customer_key: str, partner_key: str
) -> None:
    fields = signing.SignedFields(
        url=url,
        sender=sender,
        customer_id="CUST-1",
        partner_id="PART-1",
        timestamp="2025-06-10 09:00:00.123",
        timestamp_unix="1749546000",
        transaction_id="0f9c1e4a",
        language="FI",
        organisation_id="1234567-8",
    )

    expected = by_hand(
        url,
        sender,
        "CUST-1",
        "2025-06-10 09:00:00.123",
        "FI",
        "1234567-8",
        "0f9c1e4a",
        "1749546000",
        customer_key,
        partner_key,
    )

    assert signing.compute_mac(fields, customer_key, partner_key) == expected
    assert expected == expected.lower()
    assert len(expected) == 64


def test_the_partner_id_is_not_part_of_the_message() -> None:
    base = dict(
        url="https://isvapi.netvisor.fi/customerlist.nv",
        sender="s",
        customer_id="c",
        timestamp="2025-06-10 09:00:00.000",
        timestamp_unix="1749546000",
        transaction_id="t",
        language="EN",
        organisation_id="o",
    )

    one = signing.compute_mac(signing.SignedFields(partner_id="A", **base), "ck", "pk")
    other = signing.compute_mac(signing.SignedFields(partner_id="B", **base), "ck", "pk")

    assert one == other


def test_letters_outside_latin_1_cannot_be_signed() -> None:
    fields = signing.SignedFields(
        url="https://isvapi.netvisor.fi/customerlist.nv?keyword=€",
        sender="s",
        customer_id="c",
        partner_id="p",
        timestamp="t",
        timestamp_unix="1",
        transaction_id="x",
        language="FI",
        organisation_id="o",
    )

    with pytest.raises(UnicodeEncodeError):
        signing.compute_mac(fields, "ck", "pk")


def test_sign_sends_every_header_and_a_mac_over_them() -> None:
    url = "https://isvapi.netvisor.fi/getcustomer.nv?id=101"

    headers = signing.sign(
        url=url,
        sender="Connector",
        customer_id="CUST-1",
        partner_id="PART-1",
        language="EN",
        organisation_id="1234567-8",
        transaction_id="tx-1",
        now=NOW,
        customer_key="ck",
        partner_key="pk",
    )

    assert headers[signing.TIMESTAMP] == "2025-06-10 09:00:00.123"
    assert headers[signing.TIMESTAMP_UNIX] == "1749546000"
    assert headers[signing.ALGORITHM] == "HMACSHA256"
    assert headers[signing.USE_HTTP_STATUS] == "1"
    assert "ck" not in headers.values()
    assert "pk" not in headers.values()
    assert headers[signing.MAC] == by_hand(
        url,
        "Connector",
        "CUST-1",
        "2025-06-10 09:00:00.123",
        "EN",
        "1234567-8",
        "tx-1",
        "1749546000",
        "ck",
        "pk",
    )


def test_the_timestamp_is_utc_whatever_the_zone_of_now() -> None:
    helsinki = dt.timezone(dt.timedelta(hours=3))

    assert signing.format_timestamp(NOW.astimezone(helsinki)) == "2025-06-10 09:00:00.123"


def test_mac_matches_accepts_upper_case_and_refuses_another_key() -> None:
    fields = signing.SignedFields.from_headers("https://x/customerlist.nv", {signing.SENDER: "s"})
    mac = signing.compute_mac(fields, "ck", "pk")

    assert signing.mac_matches(fields, mac.upper(), "ck", "pk")
    assert not signing.mac_matches(fields, mac, "ck", "other")
