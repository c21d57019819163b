"""The fake Netvisor over real HTTP: signature, element order, answer shapes, books, faults, admin API.

Requests are signed by :class:`NetvisorCaller` below, a minimal client written for these tests
from the vendor's formula (through ``adapters.netvisor.signing``); the connector's own Netvisor
client is a separate piece. Time comes from a :class:`FakeClock` shared by the fake and the
caller, so time-stamp windows and maintenance windows are tested without sleeping; overlapping
requests are synchronised on the fake's in-flight state, never on a sleep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import pytest
import structlog
import yarl
from lxml import etree

from adapters.netvisor import signing
from adapters.netvisor.fake import FakeNetvisor, Phase

pytestmark = pytest.mark.integration

START: Final = dt.datetime(2025, 6, 10, 9, 0, 0, tzinfo=dt.UTC)  # 12:00 in Helsinki


class FakeClock:
    """An aware UTC clock that only moves when told to."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass(frozen=True)
class Reply:
    """One answer: HTTP status, raw text and the parsed ``Root``."""

    status: int
    text: str
    root: etree._Element

    @property
    def statuses(self) -> list[str]:
        return [element.text or "" for element in self.root.findall("ResponseStatus/Status")]

    @property
    def ok(self) -> bool:
        return self.statuses == ["OK"]

    @property
    def code(self) -> str | None:
        """``INVALID_DATA`` of a failure's ``INVALID_DATA :: text``."""
        return self.statuses[1].split(" :: ", 1)[0] if len(self.statuses) == 2 else None

    @property
    def message(self) -> str:
        return self.statuses[1].split(" :: ", 1)[1] if len(self.statuses) == 2 else ""

    def find(self, path: str) -> etree._Element:
        found = self.root.find(path)
        assert found is not None, f"no {path} in {self.text}"
        return found

    def findtext(self, path: str) -> str:
        return self.find(path).text or ""


class NetvisorCaller:
    """Signs and sends one request the way the vendor documents it (URL signed exactly as sent)."""

    def __init__(self, session: aiohttp.ClientSession, fake: FakeNetvisor, clock: FakeClock) -> None:
        self.session = session
        self.fake = fake
        self.clock = clock

    def headers(
        self,
        url: str,
        *,
        customer_key: str | None = None,
        partner_key: str | None = None,
        transaction_id: str | None = None,
        moment: dt.datetime | None = None,
        language: str = "EN",
    ) -> dict[str, str]:
        credentials = self.fake.credentials
        return signing.sign(
            url=url,
            sender="fake-netvisor tests",
            customer_id=credentials.customer_id,
            partner_id=credentials.partner_id,
            language=language,
            organisation_id=credentials.organisation_id,
            transaction_id=transaction_id or uuid.uuid4().hex,
            now=moment or self.clock(),
            customer_key=customer_key or credentials.customer_key,
            partner_key=partner_key or credentials.partner_key,
        )

    async def __call__(
        self,
        method: str,
        resource: str,
        query: str = "",
        body: str | bytes | None = None,
        *,
        sign_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        without: tuple[str, ...] = (),
        content_type: str = "text/xml; charset=utf-8",
        **signing_options: Any,
    ) -> Reply:
        url = self.fake.resource_url(resource, query)
        sent = self.headers(sign_url or url, **signing_options)
        sent.update(headers or {})
        for name in without:
            sent.pop(name, None)
        if body is not None:
            sent["Content-Type"] = content_type
        data = body.encode("utf-8") if isinstance(body, str) else body
        # encoded=True: the URL goes out byte for byte as signed, never re-encoded.
        async with self.session.request(
            method, yarl.URL(url, encoded=True), headers=sent, data=data
        ) as response:
            text = await response.text()
        return Reply(response.status, text, etree.fromstring(text.encode("utf-8")))


# ------------------------------------------------------------------------------------- bodies

PRODUCT_LINE: Final = (
    "<invoiceline><salesinvoiceproductline>"
    '<productidentifier type="customer">DEV</productidentifier>'
    "<productname>Development</productname>"
    '<productunitprice type="net">100,00</productunitprice>'
    '<productvatpercentage vatcode="KOMY">25,5</productvatpercentage>'
    "<salesinvoiceproductlinequantity>2</salesinvoiceproductlinequantity>"
    "</salesinvoiceproductline></invoiceline>"
)


DATE: Final = '<salesinvoicedate format="ansi">2025-06-01</salesinvoicedate>'
AMOUNT: Final = "<salesinvoiceamount></salesinvoiceamount>"
DELIVERY_DATE: Final = '<salesinvoicedeliverydate format="ansi">2025-06-01</salesinvoicedeliverydate>'
DUE_DATE: Final = '<salesinvoiceduedate format="ansi">2025-06-15</salesinvoiceduedate>'


def customer_xml(code: str = "1001", name: str = "Acme Oy", *, between: str = "", after: str = "") -> str:
    """A customer body in DTD order; *between* goes after ``name``, *after* after the base section."""
    return (
        "<root><customer><customerbaseinformation>"
        f"<internalidentifier>{code}</internalidentifier><name>{name}</name>{between}"
        f"</customerbaseinformation>{after}</customer></root>"
    )


def invoice_xml(
    *,
    number: str = "20250",
    date: str = "2025-06-01",
    customer: str = "1001",
    amount: str = "",
    status: str = "open",
    before_amount: str = "",
    after_customer: str = "<paymenttermnetdays>14</paymenttermnetdays>",
    lines: str = PRODUCT_LINE,
    header_extra: str = "",
) -> str:
    """A sales invoice body in DTD order (the pieces let a test put one element out of place)."""
    number_element = f"<salesinvoicenumber>{number}</salesinvoicenumber>" if number else ""
    return (
        f"<root><salesinvoice>{number_element}"
        f'<salesinvoicedate format="ansi">{date}</salesinvoicedate>{before_amount}'
        f"<salesinvoiceamount>{amount}</salesinvoiceamount>"
        f'<salesinvoicestatus type="netvisor">{status}</salesinvoicestatus>{header_extra}'
        f'<invoicingcustomeridentifier type="customer">{customer}</invoicingcustomeridentifier>'
        f"{after_customer}<invoicelines>{lines}</invoicelines></salesinvoice></root>"
    )


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeNetvisor]:
    async with FakeNetvisor(clock=clock) as running:
        yield running
    assert running.internal_errors == [], "the fake Netvisor hit a bug of its own"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def netvisor(session: aiohttp.ClientSession, fake: FakeNetvisor, clock: FakeClock) -> NetvisorCaller:
    return NetvisorCaller(session, fake, clock)


async def add_customer(netvisor: NetvisorCaller, code: str = "1001", name: str = "Acme Oy") -> int:
    reply = await netvisor("POST", "customer.nv", "method=add", customer_xml(code, name))
    assert reply.ok, reply.text
    return int(reply.findtext("Replies/InsertedDataIdentifier"))


async def add_invoice(netvisor: NetvisorCaller, **parts: str) -> int:
    reply = await netvisor("POST", "salesinvoice.nv", "method=add", invoice_xml(**parts))
    assert reply.ok, reply.text
    return int(reply.findtext("Replies/InsertedDataIdentifier"))


async def admin(
    session: aiohttp.ClientSession, fake: FakeNetvisor, method: str, path: str, body: Any = None
) -> Any:
    async with session.request(method, f"{fake.admin_url}{path}", json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json() if response.status != 204 else None


# ----------------------------------------------------------------------------------- signature


class TestSignature:
    async def test_a_correctly_signed_request_is_answered_ok(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        reply = await netvisor("GET", "customerlist.nv")

        assert reply.status == 200
        assert reply.ok
        assert reply.findtext("ResponseStatus/TimeStamp") == "10.06.2025 12:00:00"  # Helsinki time
        assert reply.root.find("Customerlist") is not None
        assert reply.text.startswith('<?xml version="1.0" encoding="utf-8" standalone="yes"?>')
        assert fake.refusals.total == 0

    @pytest.mark.parametrize(
        ("signing_options", "sign_url"),
        [
            pytest.param({"customer_key": "wrong"}, None, id="a wrong customer key is refused"),
            pytest.param({"partner_key": "wrong"}, None, id="a wrong partner key is refused"),
            pytest.param({}, "/salesinvoicelist.nv", id="a signature over another resource is refused"),
            pytest.param({}, "/customerlist.nv?keyword=b", id="a signature over another query is refused"),
            pytest.param({}, "/customerlist.nv", id="a signature over the URL without its query is refused"),
        ],
    )
    async def test_a_wrong_signature_is_refused_and_counted(
        self,
        netvisor: NetvisorCaller,
        fake: FakeNetvisor,
        signing_options: dict[str, str],
        sign_url: str | None,
    ) -> None:
        reply = await netvisor(
            "GET",
            "customerlist.nv",
            "keyword=a",
            sign_url=f"{fake.url}{sign_url}" if sign_url else None,
            **signing_options,
        )

        assert reply.status == 401
        assert reply.statuses[0] == "FAILED"
        assert reply.code == "AUTHENTICATION_FAILED"
        assert "MAC" in reply.message
        assert fake.refusals.signature == 1
        assert fake.refusals.total == 1

    async def test_a_header_value_other_than_the_signed_one_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        reply = await netvisor("GET", "customerlist.nv", headers={signing.SENDER: "someone else"})

        assert (reply.status, reply.code) == (401, "AUTHENTICATION_FAILED")
        assert fake.refusals.signature == 1

    @pytest.mark.parametrize(
        ("headers", "without", "words"),
        [
            pytest.param(
                {signing.CUSTOMER_ID: "stranger"}, (), "Customer", id="an unknown customer id is refused"
            ),
            pytest.param(
                {signing.PARTNER_ID: "stranger"}, (), "partner", id="an unknown partner id is refused"
            ),
            pytest.param(
                {signing.ORGANISATION_ID: "7654321-4"},
                (),
                "organisation",
                id="another organisation is refused",
            ),
            pytest.param({}, (signing.MAC,), "Missing", id="a request without a MAC is refused"),
            pytest.param({}, (signing.LANGUAGE,), "Missing", id="a request without a language is refused"),
            pytest.param(
                {signing.ALGORITHM: "SHA256"}, (), "algorithm", id="the legacy algorithm is refused"
            ),
            pytest.param({signing.LANGUAGE: "DE"}, (), "language", id="an unknown language is refused"),
        ],
    )
    async def test_unknown_credentials_are_refused_and_counted(
        self,
        netvisor: NetvisorCaller,
        fake: FakeNetvisor,
        headers: dict[str, str],
        without: tuple[str, ...],
        words: str,
    ) -> None:
        reply = await netvisor("GET", "customerlist.nv", headers=headers, without=without)

        assert (reply.status, reply.code) == (401, "AUTHENTICATION_FAILED")
        assert words in reply.message
        assert fake.refusals.credentials == 1
        assert fake.refusals.signature == 0

    @pytest.mark.parametrize(
        ("offset", "accepted"),
        [
            pytest.param(-240, True, id="four minutes old is accepted"),
            pytest.param(240, True, id="four minutes ahead is accepted"),
            pytest.param(-360, False, id="six minutes old is refused"),
            pytest.param(360, False, id="six minutes ahead is refused"),
        ],
    )
    async def test_time_stamps_outside_the_window_are_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, clock: FakeClock, offset: int, accepted: bool
    ) -> None:
        reply = await netvisor("GET", "customerlist.nv", moment=clock() + dt.timedelta(seconds=offset))

        assert reply.ok is accepted
        assert fake.refusals.timestamp == (0 if accepted else 1)
        if not accepted:
            assert (reply.status, reply.code) == (401, "AUTHENTICATION_FAILED")
            assert "timestamp" in reply.message

    async def test_the_tolerance_is_configurable(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, clock: FakeClock, session: aiohttp.ClientSession
    ) -> None:
        await admin(session, fake, "PATCH", "/behaviour", {"timestamp_tolerance_seconds": 30})

        reply = await netvisor("GET", "customerlist.nv", moment=clock() - dt.timedelta(seconds=60))

        assert reply.code == "AUTHENTICATION_FAILED"
        assert fake.refusals.timestamp == 1

    async def test_time_stamps_that_disagree_are_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        url = fake.resource_url("customerlist.nv")
        headers = netvisor.headers(url)
        headers[signing.TIMESTAMP] = "2020-01-01 00:00:00.000"  # re-signed below, so only the time is wrong
        fields = signing.SignedFields.from_headers(url, headers)
        headers[signing.MAC] = signing.compute_mac(
            fields, fake.credentials.customer_key, fake.credentials.partner_key
        )

        reply = await netvisor("GET", "customerlist.nv", headers=headers)

        assert reply.code == "AUTHENTICATION_FAILED"
        assert fake.refusals.timestamp == 1

    async def test_a_reused_transaction_id_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        first = await netvisor("GET", "customerlist.nv", transaction_id="tx-1")
        second = await netvisor("GET", "customerlist.nv", transaction_id="tx-1")

        assert first.ok
        assert (second.status, second.code) == (400, "REQUEST_NOT_UNIQUE")
        assert fake.refusals.transaction_reuse == 1

    async def test_a_transaction_id_counts_as_used_even_when_the_request_failed(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        failed = await netvisor("GET", "getcustomer.nv", "id=1", transaction_id="tx-2")
        retried = await netvisor("GET", "customerlist.nv", transaction_id="tx-2")

        assert failed.code == "INVALID_DATA"
        assert retried.code == "REQUEST_NOT_UNIQUE"

    async def test_without_http_status_codes_every_answer_is_200(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        reply = await netvisor(
            "GET", "customerlist.nv", customer_key="wrong", headers={signing.USE_HTTP_STATUS: "0"}
        )

        assert reply.status == 200
        assert reply.code == "AUTHENTICATION_FAILED"

    async def test_a_query_with_scandinavian_letters_is_signed_as_sent(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor, "1001", "Äänekosken Öljy Oy")

        reply = await netvisor("GET", "customerlist.nv", "keyword=%C3%84%C3%A4nekosken")

        assert reply.ok, reply.text
        assert [c.findtext("Name") for c in reply.root.iterfind("Customerlist/Customer")] == [
            "Äänekosken Öljy Oy"
        ]

    async def test_rotated_keys_take_effect_at_once(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await admin(session, fake, "POST", "/keys", {"customer_key": "rotated-key"})

        old = await netvisor("GET", "customerlist.nv", customer_key="fake-customer-key")
        new = await netvisor("GET", "customerlist.nv", customer_key="rotated-key")

        assert old.code == "AUTHENTICATION_FAILED"
        assert new.ok

    async def test_the_keys_appear_in_no_answer_log_or_state(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        keys = (fake.credentials.customer_key, fake.credentials.partner_key)
        with structlog.testing.capture_logs() as logs:
            answers = [
                await netvisor("GET", "customerlist.nv"),
                await netvisor("GET", "customerlist.nv", customer_key="wrong"),
                await netvisor("GET", "customerlist.nv", moment=START - dt.timedelta(hours=1)),
                await netvisor("POST", "customer.nv", "method=add", "<root/>"),
            ]
        async with session.get(f"{fake.admin_url}/state") as response:
            state = await response.text()
        async with session.get(f"{fake.admin_url}/requests") as response:
            requests = await response.text()

        everything = [reply.text for reply in answers] + [state, requests, repr(logs), repr(fake.credentials)]
        for key in keys:
            assert not any(key in text for text in everything)
        assert len(fake.requests) == 4


# --------------------------------------------------------------------------------- element order


class TestElementOrder:
    @pytest.mark.parametrize(
        ("resource", "body", "kind", "words"),
        [
            pytest.param(
                "customer.nv",
                "<root><customer><customerbaseinformation><name>Acme</name>"
                "<internalidentifier>1</internalidentifier></customerbaseinformation></customer></root>",
                "ordering",
                ("internalidentifier", "name", "out of order"),
                id="a customer code after the name is out of order",
            ),
            pytest.param(
                "customer.nv",
                customer_xml(after="<customercontactdetails/><customerfinvoicedetails/>"),
                "ordering",
                ("customerfinvoicedetails", "out of order"),
                id="customer sections out of order are refused",
            ),
            pytest.param(
                "customer.nv",
                "<root><customer><customerbaseinformation><city>Turku</city></customerbaseinformation>"
                "</customer></root>",
                "mandatory",
                ("name",),
                id="a customer without a name is refused",
            ),
            pytest.param(
                "customer.nv",
                customer_xml(between="<name>Twice</name>"),
                "ordering",
                ("name", "only once"),
                id="an element given twice is refused",
            ),
            pytest.param(
                "customer.nv",
                customer_xml(between="<nickname>A</nickname>"),
                "unknown_element",
                ("nickname",),
                id="an unknown customer element is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml().replace(DATE + AMOUNT, AMOUNT + DATE),
                "ordering",
                ("salesinvoicedate", "salesinvoiceamount", "out of order"),
                id="the invoice date after the amount is out of order",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(before_amount=DELIVERY_DATE + DUE_DATE),
                "ordering",
                ("salesinvoiceduedate", "salesinvoicedeliverydate"),
                id="the due date comes before the delivery date",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(after_customer="").replace(
                    '<salesinvoicestatus type="netvisor">open</salesinvoicestatus>',
                    '<salesinvoicestatus type="netvisor">open</salesinvoicestatus>'
                    "<paymenttermnetdays>14</paymenttermnetdays>",
                ),
                "ordering",
                ("paymenttermnetdays", "invoicingcustomeridentifier"),
                id="the payment term before the customer is out of order",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml().replace('<salesinvoicestatus type="netvisor">open</salesinvoicestatus>', ""),
                "mandatory",
                ("salesinvoicestatus",),
                id="an invoice without a status is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml().replace("<salesinvoiceamount></salesinvoiceamount>", ""),
                "mandatory",
                ("salesinvoiceamount",),
                id="an invoice without an amount element is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(after_customer=""),
                "mandatory",
                ("paymenttermnetdays", "salesinvoiceduedate", "paymentterm"),
                id="an invoice without any payment term is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(
                    lines="<invoiceline><salesinvoicecommentline><comment>Hi</comment>"
                    "</salesinvoicecommentline></invoiceline>"
                ),
                "mandatory",
                ("salesinvoiceproductline",),
                id="an invoice with only a comment line is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(lines=PRODUCT_LINE.replace(' vatcode="KOMY"', "")),
                "mandatory",
                ("vatcode",),
                id="a VAT percentage without its VAT code is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(
                    lines=PRODUCT_LINE.replace("<productname>Development</productname>", "<productname/>")
                ),
                "mandatory",
                ("productname", "empty"),
                id="an empty product name is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml().replace(' format="ansi"', ""),
                "mandatory",
                ("format",),
                id="an invoice date without format ansi is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(lines=PRODUCT_LINE.replace('vatcode="KOMY"', 'vatcode="ALV24"')),
                "invalid_value",
                ("vatcode", "ALV24"),
                id="an unknown VAT code is refused",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(status="paid"),
                "invalid_value",
                ("paid",),
                id="an invoice cannot be added as paid",
            ),
            pytest.param(
                "salesinvoice.nv",
                invoice_xml(date="1.6.2025"),
                "invalid_value",
                ("1.6.2025", "date"),
                id="a Finnish-style date is refused",
            ),
        ],
    )
    async def test_a_body_against_the_dtd_is_refused_with_its_reason(
        self,
        netvisor: NetvisorCaller,
        fake: FakeNetvisor,
        resource: str,
        body: str,
        kind: str,
        words: tuple[str, ...],
    ) -> None:
        await add_customer(netvisor)

        reply = await netvisor("POST", resource, "method=add", body)

        assert (reply.status, reply.code) == (400, "INVALID_DATA"), reply.text
        for word in words:
            assert word in reply.message
        assert fake.refusals[kind] == 1
        assert fake.refusals.total == 1

    async def test_element_and_resource_names_are_case_insensitive(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        body = (
            "<Root><Customer><CustomerBaseInformation><InternalIdentifier>7</InternalIdentifier>"
            "<Name>Pascal Oy</Name><Country Type='ISO-3166'>FI</Country></CustomerBaseInformation>"
            "</Customer></Root>"
        )
        added = await netvisor("POST", "Customer.NV", "Method=add", body)
        listed = await netvisor("GET", "CustomerList.nv", "CustomerCodeList=7")

        assert added.ok, added.text
        assert [c.findtext("Name") for c in listed.root.iterfind("Customerlist/Customer")] == ["Pascal Oy"]
        assert fake.refusals.total == 0


# ----------------------------------------------------------------------------------- customers


class TestCustomers:
    async def test_an_added_customer_is_listed_and_read_back(self, netvisor: NetvisorCaller) -> None:
        key = await add_customer(netvisor, "1001", "Acme Oy")

        listed = await netvisor("GET", "customerlist.nv", "customercodelist=1001,1002")
        read = await netvisor("GET", "getcustomer.nv", f"id={key}")

        item = listed.find("Customerlist/Customer")
        assert item.findtext("Netvisorkey") == str(key)  # sic: the list's casing
        assert (item.findtext("Code"), item.findtext("Name")) == ("1001", "Acme Oy")
        assert item.findtext("Uri").endswith(f"/getcustomer.nv?id={key}")
        base = read.find("Customer/CustomerBaseInformation")
        assert (base.findtext("NetvisorKey"), base.findtext("InternalIdentifier")) == (str(key), "1001")

    async def test_an_edit_blanks_what_it_leaves_out(self, netvisor: NetvisorCaller) -> None:
        full = customer_xml(
            between="<city>Turku</city><email>a@example.com</email>",
            after="<customeradditionalinformation><yourdefaultreference>Aino</yourdefaultreference>"
            "</customeradditionalinformation>",
        )
        added = await netvisor("POST", "customer.nv", "method=add", full)
        key = added.findtext("Replies/InsertedDataIdentifier")

        edited = await netvisor(
            "POST", "customer.nv", f"method=edit&id={key}", customer_xml(between="<city>Oulu</city>")
        )
        read = await netvisor("GET", "getcustomer.nv", f"id={key}")

        assert edited.ok
        assert edited.root.find("Replies") is None  # an edit answers the status only
        assert read.findtext("Customer/CustomerBaseInformation/City") == "Oulu"
        assert read.findtext("Customer/CustomerBaseInformation/Email") == ""
        assert read.findtext("Customer/CustomerAdditionalInformation/YourDefaultReference") == ""

    async def test_a_second_customer_with_the_same_code_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor, "1001")

        reply = await netvisor("POST", "customer.nv", "method=add", customer_xml("1001", "Copy Oy"))

        assert (reply.status, reply.code) == (400, "DUPLICATE_DATA")
        assert fake.refusals.duplicate == 1
        assert len(fake.store.customers) == 1

    async def test_duplicate_codes_can_be_accepted(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await admin(session, fake, "PATCH", "/behaviour", {"duplicate_customer_code": "accept"})
        await add_customer(netvisor, "1001")

        reply = await netvisor("POST", "customer.nv", "method=add", customer_xml("1001", "Copy Oy"))

        assert reply.ok
        assert len(fake.store.customers) == 2

    async def test_an_automatic_code_is_the_next_free_number(self, netvisor: NetvisorCaller) -> None:
        await add_customer(netvisor, "41")
        body = "<root><customer><customerbaseinformation><internalidentifier type='automatic'/>"
        body += "<name>Auto Oy</name></customerbaseinformation></customer></root>"

        added = await netvisor("POST", "customer.nv", "method=add", body)
        read = await netvisor(
            "GET", "getcustomer.nv", f"id={added.findtext('Replies/InsertedDataIdentifier')}"
        )

        assert read.findtext("Customer/CustomerBaseInformation/InternalIdentifier") == "42"

    @pytest.mark.parametrize(
        ("query", "words"),
        [
            pytest.param("", "method", id="a write without method is refused"),
            pytest.param("method=delete", "method", id="an unknown method is refused"),
            pytest.param("method=edit", "id", id="an edit without id is refused"),
            pytest.param("method=edit&id=999", "not found", id="an edit of an unknown customer is refused"),
        ],
    )
    async def test_a_write_without_a_valid_method_or_id_is_refused(
        self, netvisor: NetvisorCaller, query: str, words: str
    ) -> None:
        reply = await netvisor("POST", "customer.nv", query, customer_xml())

        assert (reply.status, reply.code) == (400, "INVALID_DATA")
        assert words in reply.message

    async def test_an_unknown_customer_is_a_failure_in_netvisor_words(self, netvisor: NetvisorCaller) -> None:
        reply = await netvisor("GET", "getcustomer.nv", "id=123")

        assert reply.statuses == [
            "FAILED",
            "INVALID_DATA :: Data form incorrect:. Customer not found with Netvisor identifier: 123",
        ]

    async def test_the_customer_list_filters(self, netvisor: NetvisorCaller, clock: FakeClock) -> None:
        await add_customer(netvisor, "1001", "Acme Oy")
        await add_customer(netvisor, "1002", "Acme Industries")
        clock.advance(3600)
        await add_customer(netvisor, "2001", "Globex")

        async def names(query: str) -> list[str]:
            reply = await netvisor("GET", "customerlist.nv", query)
            assert reply.ok, reply.text
            return [c.findtext("Name") or "" for c in reply.root.iterfind("Customerlist/Customer")]

        assert await names("keyword=acme") == ["Acme Oy", "Acme Industries"]  # prefix, any case
        assert await names("keyword=100") == ["Acme Oy", "Acme Industries"]  # code prefix too
        assert await names("customercodelist=1002,2001") == ["Acme Industries", "Globex"]
        assert await names("changedsince=2025-06-10T12:30:00") == ["Globex"]  # local time
        assert await names("keyword=acme&changedsince=2025-06-10T12:30:00") == ["Acme Oy", "Acme Industries"]


# ------------------------------------------------------------------------------------ invoices


class TestInvoices:
    async def test_an_added_invoice_is_summed_with_decimal_commas(self, netvisor: NetvisorCaller) -> None:
        await add_customer(netvisor)
        line = PRODUCT_LINE.replace("100,00", "100.005")  # a decimal point is accepted too
        key = await add_invoice(netvisor, lines=line + PRODUCT_LINE)

        listed = await netvisor("GET", "salesinvoicelist.nv", "invoicenumber=20250")
        read = await netvisor("GET", "getsalesinvoice.nv", f"netvisorkey={key}")

        item = listed.find("SalesInvoiceList/SalesInvoice")
        # 200.01 net + 51.00 VAT, then 200.00 + 51.00: each line rounded to cents.
        assert item.findtext("InvoiceSum") == "502,01"
        assert item.findtext("OpenSum") == "502,01"
        assert item.find("Invoicedate").get("format") == "ansi"  # sic: the list's casing
        assert item.findtext("Invoicedate") == "2025-06-01"
        assert item.findtext("InvoiceDueDate") == "2025-06-15"
        assert item.find("InvoiceStatus").attrib == {"substatus": "open", "isincollection": "0"}
        invoice = read.find("SalesInvoice")
        assert invoice.findtext("SalesInvoiceReferencenumber") == item.findtext("ReferenceNumber")  # sic
        assert invoice.findtext("SalesInvoiceAmount") == "502,01"
        lines = invoice.findall("InvoiceLines/InvoiceLine/SalesInvoiceProductLine")
        assert [
            (x.findtext("SalesInvoiceProductLineVatSum"), x.findtext("SalesInvoiceProductLineSum"))
            for x in lines
        ] == [
            ("51,00", "251,01"),
            ("51,00", "251,00"),
        ]

    async def test_a_due_date_stands_in_for_the_payment_term(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor)

        key = await add_invoice(netvisor, before_amount=DUE_DATE + DELIVERY_DATE, after_customer="")

        invoice = fake.store.invoices[key]
        assert (invoice.due_date, invoice.delivery_date) == (dt.date(2025, 6, 15), dt.date(2025, 6, 1))

    async def test_explicit_line_sums_and_amount_are_kept(self, netvisor: NetvisorCaller) -> None:
        await add_customer(netvisor)
        line = PRODUCT_LINE.replace(
            "</salesinvoiceproductlinequantity>",
            "</salesinvoiceproductlinequantity><salesinvoiceproductlinevatsum>50,99</salesinvoiceproductlinevatsum>"
            "<salesinvoiceproductlinesum>250,99</salesinvoiceproductlinesum>",
        )
        key = await add_invoice(netvisor, lines=line, amount="999,999")

        read = await netvisor("GET", "getsalesinvoice.nv", f"netvisorkey={key}")

        assert read.findtext("SalesInvoice/SalesInvoiceAmount") == "1000,00"
        assert read.findtext(".//SalesInvoiceProductLineSum") == "250,99"

    async def test_number_and_reference_default_to_the_next_free_and_a_valid_one(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor)
        await add_invoice(netvisor, number="41")
        key = await add_invoice(netvisor, number="")

        invoice = fake.store.invoices[key]
        assert invoice.number == "42"
        from adapters.netvisor.fake.store import valid_reference

        assert valid_reference(invoice.reference_number)

    async def test_an_invalid_reference_number_is_refused(self, netvisor: NetvisorCaller) -> None:
        await add_customer(netvisor)
        body = invoice_xml(before_amount="<salesinvoicereferencenumber>12345</salesinvoicereferencenumber>")

        reply = await netvisor("POST", "salesinvoice.nv", "method=add", body)

        assert reply.code == "INVALID_DATA"
        assert "reference" in reply.message

    async def test_an_unknown_invoicing_customer_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        reply = await netvisor("POST", "salesinvoice.nv", "method=add", invoice_xml(customer="404"))

        assert reply.code == "INVALID_DATA"
        assert "Customer not found" in reply.message
        assert fake.refusals.not_found == 1

    async def test_a_duplicate_invoice_number_is_accepted_unless_told_otherwise(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await add_customer(netvisor)
        await add_invoice(netvisor, number="20250")
        await add_invoice(netvisor, number="20250")
        await admin(session, fake, "PATCH", "/behaviour", {"duplicate_invoice_number": "refuse"})

        refused = await netvisor("POST", "salesinvoice.nv", "method=add", invoice_xml(number="20250"))

        assert refused.code == "DUPLICATE_DATA"
        assert len(fake.store.invoices) == 2

    async def test_an_invoice_in_a_locked_period_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await add_customer(netvisor)
        await admin(session, fake, "PATCH", "/behaviour", {"period_locked_until": "2025-05-31"})

        locked = await netvisor("POST", "salesinvoice.nv", "method=add", invoice_xml(date="2025-05-31"))
        open_period = await netvisor("POST", "salesinvoice.nv", "method=add", invoice_xml(date="2025-06-01"))

        assert (locked.status, locked.code) == (400, "PERIOD_LOCK")
        assert open_period.ok
        assert fake.refusals.period_lock == 1

    async def test_an_edit_replaces_the_whole_invoice(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor)
        key = await add_invoice(
            netvisor,
            header_extra="<salesinvoiceourreference>Severa 20250</salesinvoiceourreference>",
            lines=PRODUCT_LINE + PRODUCT_LINE,
        )

        edited = await netvisor("POST", "salesinvoice.nv", f"method=edit&id={key}", invoice_xml())
        read = await netvisor("GET", "getsalesinvoice.nv", f"netvisorkey={key}")

        assert edited.ok
        assert read.findtext("SalesInvoice/SalesInvoiceOurReference") == ""
        assert len(read.root.findall(".//SalesInvoiceProductLine")) == 1
        assert fake.store.invoices[key].amount == 251

    async def test_an_unknown_key_reads_as_an_empty_invoice(self, netvisor: NetvisorCaller) -> None:
        reply = await netvisor("GET", "getsalesinvoice.nv", "netvisorkey=4242")

        assert reply.ok
        invoice = reply.find("SalesInvoice")
        assert len(invoice) == 0
        assert not invoice.text

    async def test_a_key_list_answers_several_invoices(self, netvisor: NetvisorCaller) -> None:
        await add_customer(netvisor)
        first = await add_invoice(netvisor, number="1")
        second = await add_invoice(netvisor, number="2")

        reply = await netvisor("GET", "getsalesinvoice.nv", f"netvisorkeylist={first},{second},4242")

        numbers = [
            i.findtext("SalesInvoiceNumber") for i in reply.root.iterfind("SalesInvoices/SalesInvoice")
        ]
        assert numbers == ["1", "2"]

    async def test_the_invoice_list_filters(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, clock: FakeClock
    ) -> None:
        await add_customer(netvisor, "1001")
        await add_customer(netvisor, "1002", "Globex")
        first = await add_invoice(netvisor, number="1", date="2025-05-01")  # due 2025-05-15: overdue
        clock.advance(3600)
        second = await add_invoice(netvisor, number="2", customer="1002", status="unsent")
        clock.advance(3600)
        third = await add_invoice(netvisor, number="3")

        async def keys(query: str) -> list[int]:
            reply = await netvisor("GET", "salesinvoicelist.nv", query)
            assert reply.ok, reply.text
            return [
                int(i.findtext("NetvisorKey") or 0)
                for i in reply.root.iterfind("SalesInvoiceList/SalesInvoice")
            ]

        assert await keys("") == [first, second, third]
        assert await keys("invoicenumber=2") == [second]
        assert await keys("invoicestatus=open") == [first, third]
        assert await keys("invoicestatus=overdue") == [first]
        assert await keys("invoicestatus=unsent") == [second]
        assert await keys("customercode=1002") == [second]
        assert await keys(f"invoicesabovenetvisorkey={first}") == [second, third]
        assert await keys("begininvoicedate=2025-06-01&endinvoicedate=2025-06-30") == [second, third]
        # Local (Helsinki) times: the second was written at 13:00, the third at 14:00.
        assert await keys("lastmodifiedstart=2025-06-10T12:30:00&lastmodifiedend=2025-06-10T13:30:00") == [
            second
        ]
        assert await keys("lastmodifiedstart=2025-06-10&lastmodifiedend=2025-06-10") == [first, second, third]
        overdue = (await netvisor("GET", "salesinvoicelist.nv", "invoicenumber=1")).find(".//InvoiceStatus")
        assert (overdue.text, overdue.get("substatus")) == ("open", "overdue")

    async def test_the_invoice_list_is_paged_by_netvisor_key(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await add_customer(netvisor)
        keys = [await add_invoice(netvisor, number=str(n)) for n in range(1, 6)]
        await admin(session, fake, "PATCH", "/behaviour", {"list_page_size": 2})

        pages: list[list[int]] = []
        above = 0
        while True:
            reply = await netvisor("GET", "salesinvoicelist.nv", f"invoicesabovenetvisorkey={above}")
            page = [int(i.findtext("NetvisorKey") or 0) for i in reply.root.iterfind(".//SalesInvoice")]
            if not page:
                break
            pages.append(page)
            above = page[-1]

        assert pages == [keys[0:2], keys[2:4], keys[4:5]]

    async def test_a_bad_list_parameter_is_refused(self, netvisor: NetvisorCaller) -> None:
        reply = await netvisor("GET", "salesinvoicelist.nv", "invoicestatus=lost")

        assert reply.code == "INVALID_DATA"

    async def test_the_status_is_updated_from_the_query_alone(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor)
        first = await add_invoice(netvisor, number="1", status="unsent")
        second = await add_invoice(netvisor, number="2", status="unsent")

        reply = await netvisor(
            "POST", "updatesalesinvoicestatus.nv", f"netvisorkeylist={first},{second}&status=open"
        )
        unknown = await netvisor("POST", "updatesalesinvoicestatus.nv", "netvisorkey=4242&status=paid")

        assert reply.ok, reply.text
        assert [fake.store.invoices[k].status for k in (first, second)] == ["open", "open"]
        assert unknown.code == "INVALID_DATA"

    async def test_a_payment_registered_by_hand_shows_as_paid_and_in_the_payment_list(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, clock: FakeClock, session: aiohttp.ClientSession
    ) -> None:
        await add_customer(netvisor)
        key = await add_invoice(netvisor)
        clock.advance(86400)

        payment = await admin(session, fake, "POST", f"/invoices/{key}/payments", {"date": "2025-06-11"})
        paid = await netvisor(
            "GET", "salesinvoicelist.nv", "invoicestatus=paid&lastmodifiedstart=2025-06-11T00:00:00"
        )
        payments = await netvisor("GET", "salespaymentlist.nv", f"invoicenetvisorkey={key}")

        assert payment["sum"] == "251.00"
        item = paid.find("SalesInvoiceList/SalesInvoice")
        assert (item.findtext("NetvisorKey"), item.findtext("OpenSum")) == (str(key), "0,00")
        assert item.findtext("InvoiceStatus") == "paid"
        entry = payments.find("SalesPaymentList/SalesPayment")
        assert entry.findtext("Sum") == "251,00"
        assert entry.findtext("Date") == "11.6.2025"  # d.M.yyyy, as this list writes dates
        assert entry.findtext("InvoiceNumber") == "20250"
        assert entry.findtext("ReferenceNumber") == fake.store.invoices[key].reference_number
        assert entry.findtext("Name") == "Acme Oy"

    async def test_a_partial_payment_leaves_the_rest_open(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor)
        key = await add_invoice(netvisor)

        fake.register_payment(key, amount="100.50")
        listed = await netvisor("GET", "salesinvoicelist.nv", "invoicestatus=open")

        assert listed.findtext(".//OpenSum") == "150,50"

    async def test_a_credit_note_is_matched_to_its_invoice(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        await add_customer(netvisor)
        invoice = await add_invoice(netvisor, number="1")
        credit = await add_invoice(
            netvisor,
            number="2",
            lines=PRODUCT_LINE.replace(
                ">2</salesinvoiceproductlinequantity", ">-2</salesinvoiceproductlinequantity"
            ),
        )
        body = (
            f"<root><matchcreditnote><creditnotenetvisorkey>{credit}</creditnotenetvisorkey>"
            f"<invoicenetvisorkey>{invoice}</invoicenetvisorkey></matchcreditnote></root>"
        )

        matched = await netvisor("POST", "matchcreditnote.nv", "", body)
        again = await netvisor("POST", "matchcreditnote.nv", "", body)

        assert matched.ok, matched.text
        assert fake.store.invoices[credit].amount == -251
        assert (fake.store.invoices[invoice].status, fake.store.invoices[invoice].open_sum) == ("paid", 0)
        assert again.code == "INVALID_DATA"


# --------------------------------------------------------------------------------- concurrency


class TestOneRequestAtATime:
    async def test_an_overlapping_request_for_the_company_is_refused_and_counted(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        fake.faults.latency(60, resource="customerlist.nv", times=1)  # holds the first one open
        first = asyncio.create_task(netvisor("GET", "customerlist.nv"))
        await fake.wait_for_in_flight(1, organisation_id=fake.credentials.organisation_id)

        overlapping = await netvisor("GET", "salesinvoicelist.nv")
        fake.release_latency()
        held = await first
        after = await netvisor("GET", "salesinvoicelist.nv")

        assert (overlapping.status, overlapping.code) == (500, "TECHNICAL_ERROR")
        assert "one request at a time" in overlapping.message
        assert held.ok
        assert after.ok
        assert fake.refusals.concurrency == 1
        assert fake.in_flight() == 0

    async def test_sequential_requests_are_never_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        for _ in range(20):
            assert (await netvisor("GET", "customerlist.nv")).ok
        assert fake.refusals.concurrency == 0


# -------------------------------------------------------------------------------------- faults


class TestFaults:
    async def test_a_maintenance_window_answers_system_maintenance_until_it_ends(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, clock: FakeClock, session: aiohttp.ClientSession
    ) -> None:
        await admin(session, fake, "POST", "/maintenance", {"seconds": 120})

        during = await netvisor("GET", "customerlist.nv")
        unsigned = await netvisor("GET", "customerlist.nv", customer_key="wrong")
        clock.advance(121)
        after = await netvisor("GET", "customerlist.nv")

        assert (during.status, during.code) == (500, "SYSTEM_MAINTENANCE")
        assert unsigned.code == "SYSTEM_MAINTENANCE"  # before the signature is even looked at
        assert after.ok
        assert fake.refusals.total == 0

    async def test_an_injected_http_error_is_plain_text(
        self, session: aiohttp.ClientSession, fake: FakeNetvisor
    ) -> None:
        fake.faults.http_error(502, body="Bad Gateway", times=1)
        caller = NetvisorCaller(session, fake, FakeClock())
        url = fake.resource_url("customerlist.nv")

        async with session.get(yarl.URL(url, encoded=True), headers=caller.headers(url)) as response:
            assert (response.status, await response.text()) == (502, "Bad Gateway")

    @pytest.mark.parametrize(
        ("phase", "lands"),
        [
            pytest.param(Phase.BEFORE, False, id="a connection dropped before the write leaves nothing"),
            pytest.param(Phase.AFTER, True, id="a connection dropped after the write leaves the write done"),
        ],
    )
    async def test_a_dropped_connection_gives_no_answer(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, phase: Phase, lands: bool
    ) -> None:
        # A POST: aiohttp retries an idempotent GET on a dropped connection by itself, with the
        # same headers, which Netvisor would answer REQUEST_NOT_UNIQUE.
        fake.faults.drop(resource="customer.nv", phase=phase, times=1)

        with pytest.raises(aiohttp.ClientError):
            await netvisor("POST", "customer.nv", "method=add", customer_xml())
        assert len(fake.store.customers) == (1 if lands else 0)
        assert (await netvisor("GET", "customerlist.nv")).ok

    async def test_an_injected_error_code_answers_at_its_status(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await admin(
            session, fake, "POST", "/faults", {"kind": "error", "code": "SERVICE_ACCESS_ERROR", "times": 1}
        )

        reply = await netvisor("GET", "customerlist.nv")

        assert (reply.status, reply.code) == (403, "SERVICE_ACCESS_ERROR")
        assert fake.refusals.total == 0

    async def test_an_error_after_the_write_leaves_the_write_done(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        fake.faults.error("TECHNICAL_ERROR", resource="customer.nv", phase=Phase.AFTER, times=1)

        reply = await netvisor("POST", "customer.nv", "method=add", customer_xml())

        assert reply.code == "TECHNICAL_ERROR"
        assert len(fake.store.customers) == 1  # the outcome was unknown to the caller, not undone

    async def test_a_disabled_resource_is_a_service_access_error(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await admin(session, fake, "PATCH", "/behaviour", {"disabled_resources": ["salesinvoice"]})

        reply = await netvisor("POST", "salesinvoice.nv", "method=add", invoice_xml())

        assert (reply.status, reply.code) == (403, "SERVICE_ACCESS_ERROR")
        assert fake.refusals.access == 1


# ------------------------------------------------------------------------------ defensive parsing


class TestDefensiveParsing:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param("<!DOCTYPE root [<!ELEMENT root ANY>]><root/>", id="a DTD is refused"),
            pytest.param(
                '<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><root>&b;</root>',
                id="an entity expansion is refused",
            ),
            pytest.param(
                '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><root>&x;</root>',
                id="an external entity is refused",
            ),
            pytest.param("<root><customer>", id="unclosed XML is refused"),
            pytest.param("name=Acme", id="a body that is not XML is refused"),
            pytest.param("", id="an empty body is refused"),
        ],
    )
    async def test_a_hostile_or_broken_body_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, body: str
    ) -> None:
        reply = await netvisor("POST", "customer.nv", "method=add", body)

        assert (reply.status, reply.code) == (400, "INVALID_DATA")
        assert fake.refusals.malformed == 1
        assert fake.store.customers == {}

    async def test_an_oversized_body_is_refused(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await admin(session, fake, "PATCH", "/behaviour", {"max_body_bytes": 1024})

        reply = await netvisor(
            "POST", "customer.nv", "method=add", customer_xml(between=f"<city>{'x' * 2000}</city>")
        )

        assert (reply.status, reply.code) == (400, "INVALID_DATA_SIZE")
        assert fake.refusals.size == 1

    async def test_an_iso_8859_15_body_keeps_its_letters(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        body = '<?xml version="1.0" encoding="ISO-8859-15"?>' + customer_xml(name="Öljy-Äijä Oy €")

        reply = await netvisor("POST", "customer.nv", "method=add", body.encode("iso-8859-15"))

        assert reply.ok, reply.text
        assert [c.name for c in fake.store.customers.values()] == ["Öljy-Äijä Oy €"]

    async def test_a_charset_without_declaration_is_honoured(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor
    ) -> None:
        body = customer_xml(name="Pörssi Oy").encode("iso-8859-15")

        reply = await netvisor(
            "POST", "customer.nv", "method=add", body, content_type="text/xml; charset=ISO-8859-15"
        )

        assert reply.ok, reply.text
        assert [c.name for c in fake.store.customers.values()] == ["Pörssi Oy"]


# ------------------------------------------------------------------------------------ admin API


class TestAdminApi:
    async def test_state_counts_calls_and_refusals_by_kind(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await netvisor("GET", "customerlist.nv")
        await netvisor("GET", "customerlist.nv", customer_key="wrong")

        state = await admin(session, fake, "GET", "/state")
        refusals = await admin(session, fake, "GET", "/refusals")

        assert state["calls"] == {"customerlist.nv": 2}
        assert state["credentials"] == {
            "customer_id": "fake-customer",
            "partner_id": "fake-partner",
            "organisation_id": "1234567-8",
        }
        assert refusals["signature"] == 1
        assert {refusals[kind] for kind in ("ordering", "concurrency", "timestamp")} == {0}

    async def test_the_request_log_names_each_request_without_secrets(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await netvisor("GET", "customerlist.nv", "keyword=ac", transaction_id="tx-log")
        await netvisor("GET", "customerlist.nv", customer_key="wrong")

        log = await admin(session, fake, "GET", "/requests")

        assert [(r["resource"], r["query"], r["outcome"], r["refusal"]) for r in log] == [
            ("customerlist.nv", "keyword=ac", "OK", None),
            ("customerlist.nv", "", "AUTHENTICATION_FAILED", "signature"),
        ]
        assert log[0]["transaction_id"] == "tx-log"
        assert "mac" not in {key.lower() for key in log[0]}

    async def test_customers_and_invoices_made_by_hand_are_served(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        customer = await admin(
            session, fake, "POST", "/customers", {"code": "5", "name": "Hand Oy", "city": "Vaasa"}
        )
        invoice = await admin(
            session,
            fake,
            "POST",
            "/invoices",
            {
                "customer_code": "5",
                "number": "900",
                "date": "2025-06-01",
                "payment_term_net_days": 7,
                "lines": [{"name": "Work", "unit_price": "10.00", "quantity": 3, "vat_percent": "25.5"}],
            },
        )
        changed = await admin(
            session, fake, "PATCH", f"/customers/{customer['netvisor_key']}", {"city": "Oulu"}
        )

        listed = await netvisor("GET", "salesinvoicelist.nv", "invoicenumber=900")
        read = await netvisor("GET", "getcustomer.nv", f"id={customer['netvisor_key']}")

        assert invoice["amount"] == "37.65"
        assert listed.findtext(".//InvoiceSum") == "37,65"
        assert changed["sections"]["customerbaseinformation"]["name"] == "Hand Oy"
        assert read.findtext(".//City") == "Oulu"
        assert [c["code"] for c in await admin(session, fake, "GET", "/customers")] == ["5"]

    async def test_an_unknown_key_is_a_404(self, fake: FakeNetvisor, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{fake.admin_url}/invoices/4242/paid") as response:
            assert response.status == 404

    async def test_reset_returns_to_the_seed(
        self, netvisor: NetvisorCaller, fake: FakeNetvisor, session: aiohttp.ClientSession
    ) -> None:
        await add_customer(netvisor)
        await netvisor("GET", "customerlist.nv", customer_key="wrong")
        fake.faults.latency(1)

        await admin(session, fake, "POST", "/reset")

        assert fake.store.counts()["customers"] == 0
        assert fake.refusals.total == 0
        assert fake.faults.rules == []
        assert list(fake.requests) == []

    async def test_the_demo_seed_loads(self, fake: FakeNetvisor, netvisor: NetvisorCaller) -> None:
        from adapters.netvisor.fake import DEMO_SEED_PATH

        fake.load_seed(DEMO_SEED_PATH)

        paid = await netvisor("GET", "salesinvoicelist.nv", "invoicestatus=paid")
        payments = await netvisor("GET", "salespaymentlist.nv")

        assert [i.findtext("InvoiceNumber") for i in paid.root.iterfind(".//SalesInvoice")] == ["20241"]
        assert payments.findtext(".//Date") == "15.4.2025"
