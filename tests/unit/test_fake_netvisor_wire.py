"""The fake Netvisor's wire: defensive parsing, answer shapes, number and date formats, refusals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from lxml import etree

from adapters.netvisor.fake.behaviour import Behaviour, Duplicates
from adapters.netvisor.fake.errors import HTTP_STATUS, ErrorCode, NetvisorError, RefusalKind
from adapters.netvisor.fake.refusals import Refusals
from adapters.netvisor.fake.wire import (
    amount,
    failed_answer,
    finnish_date,
    inserted,
    number,
    ok_answer,
    parse_body,
    response_timestamp,
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<!DOCTYPE root><root/>", id="a doctype"),
        pytest.param(b'<!doctype root SYSTEM "http://example.com/x.dtd"><root/>', id="an external DTD"),
        pytest.param(b'<root><!ENTITY x "y"></root>', id="an entity declaration"),
        pytest.param(b"<root>&nbsp;</root>", id="an undeclared entity"),
        pytest.param(b"<root>", id="unclosed XML"),
        pytest.param(b"   ", id="only blanks"),
        pytest.param(b"<a/><b/>", id="two roots"),
        pytest.param(
            '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE r [<!ENTITY a "b">]><root>&a;</root>'.encode(
                "utf-16"
            ),
            id="a UTF-16 body, where a byte scan for DTDs is blind",
        ),
    ],
)
def test_hostile_or_broken_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(NetvisorError) as caught:
        parse_body(body)

    assert (caught.value.code, caught.value.refusal) == (ErrorCode.INVALID_DATA, RefusalKind.MALFORMED)


def test_names_are_lowered_and_comments_dropped() -> None:
    root = parse_body(
        b"<Root><!-- note --><CustomerBaseInformation Type='X'><?pi x?>A</CustomerBaseInformation></Root>"
    )

    assert root.tag == "root"
    child = root[0]
    assert (child.tag, dict(child.attrib), child.text) == ("customerbaseinformation", {"type": "X"}, "A")
    assert len(root) == 1


@pytest.mark.parametrize(
    ("body", "charset", "text"),
    [
        pytest.param("<r>Ä€</r>".encode(), None, "Ä€", id="UTF-8 without a declaration"),
        pytest.param("<r>Ä€</r>".encode("iso-8859-15"), "ISO-8859-15", "Ä€", id="the Content-Type charset"),
        pytest.param(
            '<?xml version="1.0" encoding="iso-8859-15"?><r>Ä€</r>'.encode("iso-8859-15"),
            "utf-8",
            "Ä€",
            id="the declaration wins over the header",
        ),
        pytest.param("\ufeff<r>Ä</r>".encode(), None, "Ä", id="a byte-order mark"),
    ],
)
def test_encodings_are_honoured(body: bytes, charset: str | None, text: str) -> None:
    assert parse_body(body, charset).text == text


def test_an_unknown_charset_is_malformed() -> None:
    with pytest.raises(NetvisorError) as caught:
        parse_body(b"<r/>", "klingon")

    assert caught.value.refusal is RefusalKind.MALFORMED


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(Decimal("123.45"), "123,45", id="a decimal comma"),
        pytest.param(Decimal("250"), "250,00", id="always two decimals"),
        pytest.param(Decimal("0.005"), "0,01", id="half a cent rounds up"),
        pytest.param(Decimal("-0.005"), "-0,01", id="and away from zero when negative"),
        pytest.param(Decimal("1234567.8"), "1234567,80", id="no thousands separator"),
    ],
)
def test_amounts_are_answered_with_a_decimal_comma(value: Decimal, text: str) -> None:
    assert amount(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(Decimal("25.5"), "25,5", id="a percentage keeps its decimals"),
        pytest.param(Decimal("2.000"), "2", id="a whole quantity drops trailing zeros"),
        pytest.param(Decimal("6.9000"), "6,9000", id="a price keeps the precision given"),
    ],
)
def test_numbers_are_answered_as_given_with_a_comma(value: Decimal, text: str) -> None:
    assert number(value) == text


def test_dates_and_time_stamps_have_the_services_formats() -> None:
    zone = dt.timezone(dt.timedelta(hours=3))

    assert finnish_date(dt.date(2014, 2, 7)) == "7.2.2014"
    assert response_timestamp(dt.datetime(2018, 1, 1, 9, 0, tzinfo=dt.UTC), zone) == "01.01.2018 12:00:00"


def test_a_success_and_a_failure_have_netvisors_shapes() -> None:
    ok = etree.fromstring(ok_answer("01.01.2018 12:00:00", inserted(1802)))
    failed = etree.fromstring(
        failed_answer("01.01.2018 12:00:00", NetvisorError(ErrorCode.INVALID_DATA, "x"))
    )

    assert [e.tag for e in ok] == ["ResponseStatus", "Replies"]
    assert ok.findtext("Replies/InsertedDataIdentifier") == "1802"
    assert [e.text for e in failed.iterfind("ResponseStatus/Status")] == ["FAILED", "INVALID_DATA :: x"]
    assert failed.findtext("ResponseStatus/TimeStamp") == "01.01.2018 12:00:00"


def test_every_error_code_has_an_http_status_from_the_documented_four() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert set(HTTP_STATUS.values()) == {400, 401, 403, 500}


def test_refusal_counters_have_one_attribute_per_kind() -> None:
    refusals = Refusals()
    for kind in RefusalKind:
        refusals.add(kind)

    assert refusals.to_json() == {kind.value: 1 for kind in RefusalKind}
    assert refusals["ordering"] == refusals.ordering == 1
    assert refusals.total == len(RefusalKind)
    refusals.clear()
    assert refusals.total == 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({"duplicate_customer_code": "maybe"}, "maybe", id="an unknown duplicates policy"),
        pytest.param({"timestamp_tolerance_seconds": 0}, "> 0", id="a zero tolerance"),
        pytest.param({"list_page_size": 1.5}, "positive integer", id="a fractional page size"),
        pytest.param({"disabled_resources": "customer"}, "list", id="resources not as a list"),
        pytest.param({"colour": "red"}, "unknown behaviour", id="an unknown behaviour"),
    ],
)
def test_bad_behaviour_changes_are_refused_whole(changes: dict[str, object], words: str) -> None:
    behaviour = Behaviour()
    before = behaviour.to_json()

    with pytest.raises(ValueError, match=words):
        behaviour.update({"list_page_size": 3, **changes})

    assert behaviour.to_json() == before


def test_behaviour_changes_apply() -> None:
    behaviour = Behaviour()

    behaviour.update(
        {
            "duplicate_invoice_number": "refuse",
            "period_locked_until": "2024-12-31",
            "disabled_resources": ["SalesInvoice.nv"],
        }
    )

    assert behaviour.duplicate_invoice_number is Duplicates.REFUSE
    assert behaviour.period_locked_until == dt.date(2024, 12, 31)
    assert behaviour.disabled_resources == {"salesinvoice.nv"}
