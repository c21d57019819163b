"""NetvisorClient over real HTTP: against a small stub that checks every MAC and records every
request (the wire in detail, failures the fake cannot stage), and against the fake Netvisor
(what works there works against the service: element order, mandatory elements, the serial lane).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import structlog
from aiohttp import web
from lxml import etree
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from adapters.netvisor import signing
from adapters.netvisor.check import run_checks
from adapters.netvisor.client import NetvisorClient, company_lock
from adapters.netvisor.config import NetvisorClientConfig
from adapters.netvisor.fake.behaviour import Duplicates
from adapters.netvisor.fake.errors import ErrorCode
from adapters.netvisor.fake.faults import FaultKind, FaultRule, Phase
from adapters.netvisor.fake.server import FakeNetvisor
from adapters.netvisor.keys import NetvisorKeys, StaticKey, file_key
from connector.errors import (
    AccountingAuthenticationFailed,
    AccountingNoAccess,
    AccountingPeriodLocked,
    AccountingRejected,
    AccountingUnavailable,
    UnmappableRecord,
)
from connector.logging import redact_text
from connector.ports import (
    AccountingAddress,
    AccountingCustomer,
    AccountingGateway,
    AccountingInvoice,
    AccountingInvoiceLine,
    AccountingInvoiceState,
    VatTreatment,
)

pytestmark = pytest.mark.integration

CUSTOMER_KEY = "CK-must-not-leak-3f9a1c77"
PARTNER_KEY = "PK-must-not-leak-8e20b4d1"
NEW_CUSTOMER_KEY = "CK-rotated-00000-5b6c7d8e"  # same length as CUSTOMER_KEY
ORGANISATION = "1234567-8"
TRANSACTION_ID = re.compile(r"^[0-9a-f]{32}$")

CUSTOMER = AccountingCustomer(
    code="1042",
    name="Oy Esimerkki Ab",
    business_id="7654321-0",
    address=AccountingAddress("Mannerheimintie 1", None, "00100", "Helsinki", "FI"),
    email="info@example.fi",
    invoicing_email=None,
    e_invoice_address=None,
    e_invoice_operator=None,
    language="FI",
    payment_term_days=14,
    is_active=True,
    is_private_person=False,
    source_reference="severa:account-1",
)
LINE = AccountingInvoiceLine(
    product_code="CONSULT",
    name="Konsultointi",
    quantity=Decimal("2"),
    unit_price=Decimal("100.00"),
    vat_percent=Decimal("25.5"),
    vat_treatment=VatTreatment.DOMESTIC,
    net_sum=Decimal("200.00"),
    vat_sum=Decimal("51.00"),
)
INVOICE = AccountingInvoice(
    number="20250042",
    customer_code="1042",
    invoice_date=dt.date(2025, 3, 31),
    due_date=dt.date(2025, 4, 14),
    payment_term_days=14,
    reference_number="1232",
    currency_code="EUR",
    currency_rate=None,
    total_including_vat=Decimal("251.00"),
    total_vat=Decimal("51.00"),
    lines=(LINE,),
    source_reference="severa:invoice-1",
)


# --------------------------------------------------------------------------------------------------
# A stub Netvisor: verifies the MAC of every request, records it, answers what the test scripted
# --------------------------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    url: str
    resource: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    mac_ok: bool

    @property
    def transaction_id(self) -> str:
        return self.headers[signing.TRANSACTION_ID]

    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)


Handler = Callable[[Seen, web.Request], Awaitable[web.StreamResponse] | web.StreamResponse]


def ok(*inner: str, status: int = 200) -> web.Response:
    body = (
        "<Root><ResponseStatus><Status>OK</Status><TimeStamp>01.04.2025 12:00:00</TimeStamp></ResponseStatus>"
        + "".join(inner)
        + "</Root>"
    )
    return web.Response(status=status, body=body.encode(), content_type="text/xml", charset="utf-8")


def failed(code: str, text: str = "it failed", status: int = 400) -> web.Response:
    body = (
        f"<Root><ResponseStatus><Status>FAILED</Status><Status>{code} :: {text}</Status>"
        "<TimeStamp>01.04.2025 12:00:00</TimeStamp></ResponseStatus></Root>"
    )
    return web.Response(status=status, body=body.encode(), content_type="text/xml", charset="utf-8")


def inserted(key: str) -> web.Response:
    return ok(f"<Replies><InsertedDataIdentifier>{key}</InsertedDataIdentifier></Replies>")


def customers(*rows: tuple[str, str, str]) -> web.Response:
    items = "".join(
        f"<Customer><Netvisorkey>{key}</Netvisorkey><Name>{name}</Name><Code>{code}</Code></Customer>"
        for key, code, name in rows
    )
    return ok(f"<Customerlist>{items}</Customerlist>")


def invoices(*rows: dict[str, str]) -> web.Response:
    items = ""
    for row in rows:
        items += (
            f"<SalesInvoice><NetvisorKey>{row['key']}</NetvisorKey><InvoiceNumber>{row['number']}</InvoiceNumber>"
            f'<Invoicedate format="ansi">2025-03-31</Invoicedate>'
            f"<InvoiceStatus>{row.get('status', 'open')}</InvoiceStatus>"
            f"<CustomerCode>{row.get('customer', '1042')}</CustomerCode>"
            f"<ReferenceNumber>{row.get('reference', '1232')}</ReferenceNumber>"
            f"<InvoiceSum>{row.get('sum', '251,00')}</InvoiceSum>"
            f"<OpenSum>{row.get('open', '251,00')}</OpenSum>"
            "</SalesInvoice>"
        )
    return ok(f"<SalesInvoiceList>{items}</SalesInvoiceList>")


def payments(*rows: dict[str, str]) -> web.Response:
    items = "".join(
        f"<SalesPayment><NetvisorKey>{row['key']}</NetvisorKey><Date>{row['date']}</Date>"
        f"<Sum>{row.get('sum', '251,00')}</Sum><ReferenceNumber>{row.get('reference', '')}</ReferenceNumber>"
        f"<InvoiceNumber>{row.get('number', '')}</InvoiceNumber><BankStatus>OK</BankStatus></SalesPayment>"
        for row in rows
    )
    return ok(f"<SalesPaymentList>{items}</SalesPaymentList>")


@dataclass
class Stub:
    """Answers each resource from a queue of scripted handlers (then from ``default``)."""

    customer_key: str = CUSTOMER_KEY
    partner_key: str = PARTNER_KEY
    seen: list[Seen] = field(default_factory=list)
    script: dict[str, list[Handler]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def then(self, resource: str, *handlers: Handler) -> None:
        self.script.setdefault(resource, []).extend(handlers)

    def answer(self, resource: str, response: web.StreamResponse) -> None:
        self.then(resource, lambda seen, request: response)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            url = f"{request.scheme}://{request.host}{request.raw_path}"
            headers = dict(request.headers)
            fields = signing.SignedFields.from_headers(url, request.headers)
            seen = Seen(
                method=request.method,
                url=url,
                resource=request.match_info["resource"],
                query=dict(parse_qsl(urlsplit(url).query)),
                headers=headers,
                body=await request.read(),
                mac_ok=signing.mac_matches(
                    fields, request.headers.get(signing.MAC, ""), self.customer_key, self.partner_key
                ),
            )
            self.seen.append(seen)
            self.arrived.set()
            if not seen.mac_ok:
                return failed("AUTHENTICATION_FAILED", "MAC does not match", status=401)
            queue = self.script.get(seen.resource.removesuffix(".nv"), [])
            handler: Handler = queue.pop(0) if queue else (lambda seen, request: ok())
            response = handler(seen, request)
            if isinstance(response, web.StreamResponse):
                return response
            return await response
        finally:
            self.in_flight -= 1

    def of(self, resource: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.resource == f"{resource}.nv"]


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    stub = Stub()
    app = web.Application()
    app.router.add_route("*", "/{resource}", stub.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    stub.url = f"http://{host}:{port}"
    yield stub
    await runner.cleanup()


class Sleeps:
    """Stands in for asyncio.sleep in the retry loop: records the waits, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def settings(url: str, **overrides: Any) -> NetvisorClientConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "customer_id": "CUST-1",
        "partner_id": "PART-1",
        "organisation_id": ORGANISATION,
        "customer_key": CUSTOMER_KEY,
        "partner_key": PARTNER_KEY,
        "language": "FI",
        "retries": 2,
        "retry_backoff_seconds": 0.5,
        "timeout_seconds": 5,
        "connect_timeout_seconds": 2,
    }
    values.update(overrides)
    return NetvisorClientConfig(**values)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def make_client(sleeps: Sleeps) -> AsyncIterator[Callable[..., NetvisorClient]]:
    made: list[NetvisorClient] = []

    def make(url: str, **overrides: Any) -> NetvisorClient:
        client = NetvisorClient(settings(url, **overrides), registry=None, on_key_loaded=None, sleep=sleeps)
        made.append(client)
        return client

    yield make
    for client in reversed(made):
        await client.aclose()


async def test_the_client_is_an_accounting_gateway(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    assert isinstance(make_client(stub.url), AccountingGateway)


# -- the wire ------------------------------------------------------------------------------------


async def test_every_request_is_signed_over_the_url_as_sent(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("customerlist", customers(("7", "1042", "Oy Esimerkki Ab")))
    await client.find_customer("1042")
    await client.probe()
    first, second = stub.seen
    assert first.mac_ok
    assert second.mac_ok
    assert first.url == f"{stub.url}/customerlist.nv?customercodelist=1042"
    assert second.url == f"{stub.url}/customerlist.nv?keyword=severa-connector-probe-0000"
    headers = first.headers
    assert headers[signing.USE_HTTP_STATUS] == "1"
    assert headers[signing.ALGORITHM] == "HMACSHA256"
    assert headers[signing.ORGANISATION_ID] == ORGANISATION
    assert headers[signing.LANGUAGE] == "FI"
    assert (headers[signing.CUSTOMER_ID], headers[signing.PARTNER_ID]) == ("CUST-1", "PART-1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", headers[signing.TIMESTAMP])
    assert abs(int(headers[signing.TIMESTAMP_UNIX]) - dt.datetime.now(dt.UTC).timestamp()) < 60
    assert TRANSACTION_ID.match(first.transaction_id)
    assert first.transaction_id != second.transaction_id
    for seen in stub.seen:
        assert CUSTOMER_KEY not in str(seen.headers)
        assert PARTNER_KEY not in str(seen.headers)


async def test_a_query_with_reserved_characters_is_signed_as_encoded(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    await client.find_invoice("2025 / 42&x")
    (seen,) = stub.seen
    assert seen.mac_ok
    assert seen.url.endswith("/salesinvoicelist.nv?invoicenumber=2025%20%2F%2042%26x")
    assert seen.query == {"invoicenumber": "2025 / 42&x"}


async def test_find_customer_compares_codes_exactly(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("customerlist", customers(("7", "10420", "Prefix Oy"), ("8", "1042", "Oy Esimerkki Ab")))
    found = await client.find_customer("1042")
    assert found is not None
    assert (found.key, found.code, found.name) == ("8", "1042", "Oy Esimerkki Ab")
    stub.answer("customerlist", customers(("7", "10420", "Prefix Oy")))
    assert await client.find_customer("1042") is None
    with pytest.raises(UnmappableRecord):
        await client.find_customer("1042,1043")


async def test_add_and_update_a_customer(stub: Stub, make_client: Callable[..., NetvisorClient]) -> None:
    client = make_client(stub.url)
    stub.answer("customer", inserted("101"))
    added = await client.add_customer(CUSTOMER)
    assert (added.key, added.code, added.name) == ("101", "1042", "Oy Esimerkki Ab")
    updated = await client.update_customer("101", dataclasses.replace(CUSTOMER, name="Uusi Nimi Oy"))
    assert updated.key == "101"
    add, edit = stub.of("customer")
    assert (add.method, add.query) == ("POST", {"method": "add"})
    assert edit.query == {"method": "edit", "id": "101"}
    assert add.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert edit.xml().findtext("customer/customerbaseinformation/name") == "Uusi Nimi Oy"
    assert edit.xml().findtext("customer/customerbaseinformation/internalidentifier") == "1042"


async def test_add_an_invoice_and_find_it(stub: Stub, make_client: Callable[..., NetvisorClient]) -> None:
    client = make_client(stub.url)
    stub.answer("salesinvoice", inserted("1001"))
    ref = await client.add_invoice(INVOICE)
    assert (ref.key, ref.number, ref.state, ref.open_sum) == (
        "1001",
        "20250042",
        AccountingInvoiceState.OPEN,
        Decimal("251.00"),
    )
    (sent,) = stub.of("salesinvoice")
    assert sent.query == {"method": "add"}
    assert sent.xml().findtext("salesinvoice/salesinvoicestatus") == "open"
    stub.answer(
        "salesinvoicelist",
        invoices({"key": "999", "number": "200250042"}, {"key": "1001", "number": "20250042"}),
    )
    found = await client.find_invoice("20250042")
    assert found is not None
    assert (found.key, found.total_including_vat, found.reference_number) == (
        "1001",
        Decimal("251.00"),
        "1232",
    )


async def test_a_credit_note_is_matched(stub: Stub, make_client: Callable[..., NetvisorClient]) -> None:
    client = make_client(stub.url)
    await client.match_credit_note("1002", "1001")
    # A repeat after a lost answer: refused, but the credit note is settled, so it is done.
    stub.answer("matchcreditnote", failed("INVALID_DATA", "Credit note 1002 has already been matched"))
    stub.answer(
        "getsalesinvoice",
        ok('<SalesInvoice><InvoiceStatus status="paid">Paid</InvoiceStatus></SalesInvoice>'),
    )
    await client.match_credit_note("1002", "1001")
    assert stub.of("getsalesinvoice")[0].query == {"netvisorkey": "1002"}
    # Refused while the credit note is still open: the refusal stands.
    stub.answer("matchcreditnote", failed("INVALID_DATA", "Credit note has no voucher"))
    stub.answer(
        "getsalesinvoice",
        ok('<SalesInvoice><InvoiceStatus status="open">Open</InvoiceStatus></SalesInvoice>'),
    )
    with pytest.raises(AccountingRejected, match="same currency"):
        await client.match_credit_note("1002", "1001")
    first = stub.of("matchcreditnote")[0].xml()
    assert [(child.tag, child.text) for child in first[0]] == [
        ("creditnotenetvisorkey", "1002"),
        ("invoicenetvisorkey", "1001"),
    ]


# -- duplicates ------------------------------------------------------------------------------------


async def test_a_duplicate_customer_is_adopted(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("customer", failed("DUPLICATE_DATA", "Customer code exists"))
    stub.answer("customerlist", customers(("55", "1042", "Oy Esimerkki Ab")))
    with structlog.testing.capture_logs() as logs:
        adopted = await client.add_customer(CUSTOMER)
    assert adopted.key == "55"
    assert "netvisor.duplicate_adopted" in [entry["event"] for entry in logs]


async def test_a_duplicate_with_nothing_to_adopt_is_rejected(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("customer", failed("DUPLICATE_DATA", "Business id exists"))
    stub.answer("customerlist", customers())
    with pytest.raises(AccountingRejected) as info:
        await client.add_customer(CUSTOMER)
    assert info.value.code == "DUPLICATE_DATA"
    assert "give it the code 1042" in info.value.message


async def test_a_duplicate_invoice_is_adopted_only_if_it_is_the_same(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("salesinvoice", failed("DUPLICATE_DATA", "Invoice number exists"))
    stub.answer("salesinvoicelist", invoices({"key": "1001", "number": "20250042"}))
    assert (await client.add_invoice(INVOICE)).key == "1001"

    stub.answer("salesinvoice", failed("DUPLICATE_DATA", "Invoice number exists"))
    stub.answer("salesinvoicelist", invoices({"key": "1001", "number": "20250042", "customer": "9999"}))
    with pytest.raises(AccountingRejected, match="for customer 9999") as info:
        await client.add_invoice(INVOICE)
    assert info.value.code == "DUPLICATE_DATA"

    stub.answer("salesinvoice", failed("DUPLICATE_DATA", "Invoice number exists"))
    stub.answer("salesinvoicelist", invoices({"key": "1001", "number": "20250042", "sum": "1,00"}))
    with pytest.raises(AccountingRejected, match=r"totals 1\.00"):
        await client.add_invoice(INVOICE)


# -- retries and outcomes ----------------------------------------------------------------------------


async def test_request_not_unique_is_signed_anew_and_retried(
    stub: Stub, make_client: Callable[..., NetvisorClient], sleeps: Sleeps
) -> None:
    client = make_client(stub.url)
    stub.answer("salesinvoice", failed("REQUEST_NOT_UNIQUE", "TransactionId used"))
    stub.answer("salesinvoice", inserted("1001"))
    assert (await client.add_invoice(INVOICE)).key == "1001"
    first, second = stub.of("salesinvoice")
    assert first.transaction_id != second.transaction_id
    assert first.headers[signing.TIMESTAMP_UNIX] <= second.headers[signing.TIMESTAMP_UNIX]
    assert len(sleeps.waits) == 1


async def test_maintenance_is_retried_then_raised(
    stub: Stub, make_client: Callable[..., NetvisorClient], sleeps: Sleeps
) -> None:
    client = make_client(stub.url, retries=3)
    for _ in range(4):
        stub.answer("salesinvoice", failed("SYSTEM_MAINTANANCE", "Huoltokatko", status=500))
    with pytest.raises(AccountingUnavailable) as info:
        await client.add_invoice(INVOICE)
    assert info.value.reason == "netvisor_maintenance"
    assert info.value.outcome_unknown is False
    assert len(stub.of("salesinvoice")) == 4
    assert len({seen.transaction_id for seen in stub.of("salesinvoice")}) == 4
    # Exponential backoff with jitter: each wait at least the one before it doubled (less jitter).
    assert len(sleeps.waits) == 3
    assert sleeps.waits[0] >= 0.5
    assert sleeps.waits[2] >= 2.0


async def test_metrics_count_attempts_retries_and_the_lane(stub: Stub, sleeps: Sleeps) -> None:
    registry = CollectorRegistry()
    client = NetvisorClient(settings(stub.url), registry=registry, on_key_loaded=None, sleep=sleeps)
    stub.answer("salesinvoicelist", failed("SYSTEM_MAINTENANCE", "Huolto", status=500))
    await client.find_invoice("1")
    await client.aclose()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    calls = "netvisor_calls_total"
    assert value(calls, operation="salesinvoicelist", outcome="netvisor_maintenance") == 1
    assert value(calls, operation="salesinvoicelist", outcome="ok") == 1
    assert value("netvisor_retries_total", operation="salesinvoicelist", reason="netvisor_maintenance") == 1
    assert value("netvisor_call_duration_seconds_count", operation="salesinvoicelist") == 2
    assert value("netvisor_call_duration_seconds_bucket", operation="salesinvoicelist", le="120.0") == 2
    assert value("netvisor_company_lock_wait_seconds_count") == 2


async def test_a_technical_error_on_a_write_is_not_repeated(
    stub: Stub, make_client: Callable[..., NetvisorClient], sleeps: Sleeps
) -> None:
    client = make_client(stub.url)
    stub.answer("salesinvoice", failed("TECHNICAL_ERROR", "Unexpected", status=500))
    with pytest.raises(AccountingUnavailable) as info:
        await client.add_invoice(INVOICE)
    assert info.value.outcome_unknown is True
    assert len(stub.of("salesinvoice")) == 1
    assert sleeps.waits == []


async def test_a_technical_error_on_a_read_is_retried(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("salesinvoicelist", failed("TECHNICAL_ERROR", "Busy", status=500))
    stub.answer("salesinvoicelist", invoices({"key": "1001", "number": "20250042"}))
    found = await client.find_invoice("20250042")
    assert found is not None
    assert len(stub.of("salesinvoicelist")) == 2


async def test_a_write_that_times_out_has_an_unknown_outcome(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    never = asyncio.Event()

    async def hang(seen: Seen, request: web.Request) -> web.StreamResponse:
        await never.wait()
        return ok()

    client = make_client(stub.url, timeout_seconds=0.3, connect_timeout_seconds=0.3)
    stub.then("salesinvoice", hang)
    with pytest.raises(AccountingUnavailable) as info:
        await client.add_invoice(INVOICE)
    assert (info.value.reason, info.value.outcome_unknown) == ("netvisor_timeout", True)
    assert len(stub.of("salesinvoice")) == 1
    never.set()


async def test_a_write_dropped_mid_answer_has_an_unknown_outcome(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    async def drop(seen: Seen, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Length": "500", "Content-Type": "text/xml"}
        )
        await response.prepare(request)
        await response.write(b"<Root><ResponseStatus><Status>OK")
        assert request.transport is not None
        request.transport.close()
        return response

    client = make_client(stub.url)
    stub.then("customer", drop)
    with pytest.raises(AccountingUnavailable) as info:
        await client.add_customer(CUSTOMER)
    assert info.value.outcome_unknown is True
    assert info.value.reason == "netvisor_connection_lost"
    assert len(stub.of("customer")) == 1


async def test_a_refused_connection_is_retried_and_known_not_sent(
    make_client: Callable[..., NetvisorClient], sleeps: Sleeps
) -> None:
    client = make_client("http://127.0.0.1:9", retries=2)
    with pytest.raises(AccountingUnavailable) as info:
        await client.add_invoice(INVOICE)
    assert (info.value.reason, info.value.outcome_unknown) == ("netvisor_connect_failed", False)
    assert len(sleeps.waits) == 2


async def test_an_oversized_answer_is_cut_off(stub: Stub, make_client: Callable[..., NetvisorClient]) -> None:
    client = make_client(stub.url, max_response_bytes=2048, retries=0)
    stub.answer("customerlist", customers(*[(str(i), str(i), "x" * 100) for i in range(100)]))
    with pytest.raises(AccountingUnavailable, match="larger than the 2048 bytes") as info:
        await client.find_customer("1")
    assert info.value.outcome_unknown is False


async def test_a_doctype_in_an_answer_is_refused(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url, retries=0)
    evil = b'<!DOCTYPE Root [<!ENTITY k SYSTEM "file:///etc/passwd">]><Root><ResponseStatus><Status>OK</Status></ResponseStatus><Customerlist><Customer><Netvisorkey>1</Netvisorkey><Code>1</Code><Name>&k;</Name></Customer></Customerlist></Root>'
    stub.answer("customerlist", web.Response(body=evil, content_type="text/xml"))
    with pytest.raises(AccountingUnavailable, match="DOCTYPE"):
        await client.find_customer("1")


async def test_rejections_and_systemic_refusals(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer("salesinvoice", failed("PERIOD_LOCK", "Accounting period locked"))
    with pytest.raises(AccountingPeriodLocked, match="open the accounting period for 2025-03-31"):
        await client.add_invoice(INVOICE)
    stub.answer("salesinvoice", failed("INVALID_DATA", "Product not found: CONSULT"))
    with pytest.raises(AccountingRejected, match="product register"):
        await client.add_invoice(INVOICE)
    stub.answer("salesinvoicelist", failed("SERVICE_ACCESS_ERROR", "No rights", status=403))
    with pytest.raises(AccountingNoAccess, match=r"salesinvoicelist\.nv"):
        await client.find_invoice("1")


async def test_a_closed_client_sends_nothing(stub: Stub, make_client: Callable[..., NetvisorClient]) -> None:
    client = make_client(stub.url)
    await client.aclose()
    await client.aclose()
    with pytest.raises(AccountingUnavailable) as info:
        await client.probe()
    assert info.value.reason == "netvisor_client_closed"
    assert stub.seen == []
    with pytest.raises(RuntimeError):
        async with client:
            pass


# -- keys ------------------------------------------------------------------------------------------


def file_keys(tmp_path: Path, *, recheck_seconds: float = 3600) -> tuple[Path, NetvisorKeys]:
    path = tmp_path / "customer-key"
    path.write_text(CUSTOMER_KEY)
    keys = NetvisorKeys(
        customer=file_key(path, what="customer key", setting="X", recheck_seconds=recheck_seconds),
        partner=StaticKey(SecretStr(PARTNER_KEY), what="partner key", setting="Y"),
    )
    return path, keys


async def test_a_rewritten_key_file_signs_the_next_request(stub: Stub, tmp_path: Path) -> None:
    registered: list[str] = []
    path, keys = file_keys(tmp_path)
    client = NetvisorClient(settings(stub.url), keys=keys, registry=None, on_key_loaded=registered.append)
    try:
        await client.probe()
        path.write_text(NEW_CUSTOMER_KEY + "-v2")  # a new size: the stat signature changes
        stub.customer_key = NEW_CUSTOMER_KEY + "-v2"
        await client.probe()
    finally:
        await client.aclose()
    assert [seen.mac_ok for seen in stub.seen] == [True, True]
    assert registered == [CUSTOMER_KEY, PARTNER_KEY, NEW_CUSTOMER_KEY + "-v2"]


async def test_keys_are_registered_for_log_redaction_by_default(stub: Stub) -> None:
    client = NetvisorClient(settings(stub.url, customer_key="CK-registered-by-default-91ab"), registry=None)
    await client.aclose()
    assert "CK-registered-by-default-91ab" not in redact_text("signed with CK-registered-by-default-91ab")
    assert PARTNER_KEY not in redact_text(f"and {PARTNER_KEY}")


async def test_a_request_waiting_for_its_turn_when_the_client_closes_is_not_sent(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    release = asyncio.Event()

    async def held(seen: Seen, request: web.Request) -> web.StreamResponse:
        await release.wait()
        return ok()

    other, closing = make_client(stub.url), make_client(stub.url)
    stub.then("customerlist", held)
    a = asyncio.create_task(other.probe())
    await asyncio.wait_for(stub.arrived.wait(), timeout=5)
    b = asyncio.create_task(closing.probe())
    lane = company_lock(closing.config.root, ORGANISATION)
    for _ in range(1000):  # yield until b waits for the company's turn (asyncio.Lock's own queue)
        if lane._waiters:
            break
        await asyncio.sleep(0)
    assert lane._waiters, "the second request never queued for the company lock"
    await closing.aclose()
    release.set()
    await a
    with pytest.raises(AccountingUnavailable) as info:
        await b
    assert info.value.reason == "netvisor_client_closed"
    assert len(stub.seen) == 1
    assert closing.closed


async def test_a_refused_key_is_reread_and_the_request_retried_once(
    stub: Stub, tmp_path: Path, sleeps: Sleeps
) -> None:
    path, keys = file_keys(tmp_path)
    before = os.stat(path)
    assert len(NEW_CUSTOMER_KEY) == len(CUSTOMER_KEY)
    client = NetvisorClient(settings(stub.url), keys=keys, registry=None, on_key_loaded=None, sleep=sleeps)
    try:
        # Rotated within one timestamp tick: stat cannot tell, so the old key signs first.
        path.write_text(NEW_CUSTOMER_KEY)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        stub.customer_key = NEW_CUSTOMER_KEY
        stub.answer("salesinvoice", inserted("1001"))
        await client.add_invoice(INVOICE)
        assert [seen.mac_ok for seen in stub.seen] == [False, True]
        assert sleeps.waits == []

        stub.customer_key = "yet-another-key-nobody-has"
        with pytest.raises(AccountingAuthenticationFailed, match="customer key"):
            await client.probe()
        assert [seen.mac_ok for seen in stub.seen[2:]] == [False]  # the same key: no second try
    finally:
        await client.aclose()


async def test_keys_never_reach_logs_errors_reprs_or_metrics(stub: Stub, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    client = NetvisorClient(settings(stub.url, retries=0), registry=registry, on_key_loaded=None)
    echo = f"key {CUSTOMER_KEY}&{PARTNER_KEY} refused"
    stub.answer("customerlist", failed("AUTHENTICATION_FAILED", echo, status=401))
    stub.answer("salesinvoice", failed("INVALID_DATA", echo))
    stub.answer("salesinvoicelist", web.Response(status=200, body=f"<html>{echo}".encode()))
    errors: list[BaseException] = []
    with structlog.testing.capture_logs() as logs:
        for call in (client.probe(), client.add_invoice(INVOICE), client.find_invoice("1")):
            try:
                await call
            except Exception as exc:
                errors.append(exc)
    await client.aclose()
    assert len(errors) == 3
    texts = [str(logs), repr(client), generate_latest(registry).decode()]
    texts += [f"{error!s} {error!r} {getattr(error, 'context', '')}" for error in errors]
    for text in texts:
        assert CUSTOMER_KEY not in text
        assert PARTNER_KEY not in text


# -- one request per company -----------------------------------------------------------------------


async def test_requests_for_one_company_never_overlap(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    release = asyncio.Event()

    async def held(seen: Seen, request: web.Request) -> web.StreamResponse:
        await release.wait()
        return ok()

    first, second = make_client(stub.url), make_client(stub.url)  # two clients, one company
    stub.then("customerlist", held)
    a = asyncio.create_task(first.probe())
    await asyncio.wait_for(stub.arrived.wait(), timeout=5)
    stub.arrived.clear()
    b = asyncio.create_task(second.find_customer("1042"))
    # While the first request is held, the second must not reach Netvisor (a bounded wait for
    # something that must not happen; a broken lane sends it within milliseconds).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(stub.arrived.wait()), timeout=0.5)
    assert company_lock(first.config.root, ORGANISATION).locked()
    release.set()
    await asyncio.gather(a, b)
    assert len(stub.seen) == 2
    assert stub.max_in_flight == 1


async def test_another_company_is_not_held_up(stub: Stub, make_client: Callable[..., NetvisorClient]) -> None:
    release = asyncio.Event()

    async def held(seen: Seen, request: web.Request) -> web.StreamResponse:
        await release.wait()
        return ok()

    mine, theirs = make_client(stub.url), make_client(stub.url, organisation_id="7654321-0")
    stub.then("customerlist", held)
    a = asyncio.create_task(mine.probe())
    await asyncio.wait_for(stub.arrived.wait(), timeout=5)
    await asyncio.wait_for(theirs.probe(), timeout=5)  # answered while the first is still held
    assert stub.max_in_flight == 2
    release.set()
    await a


# -- payments ----------------------------------------------------------------------------------------


async def test_paid_invoices_with_their_payment_dates(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url)
    stub.answer(
        "salesinvoicelist",
        invoices(
            {"key": "1001", "number": "20250042", "status": "paid", "open": "0"},
            {"key": "1002", "number": "20250043", "status": "paid", "open": "0", "reference": "1245"},
            {"key": "1003", "number": "20250044", "status": "paid", "open": "0", "reference": "1258"},
            {"key": "1004", "number": "20250045", "status": "paid", "open": "0", "reference": "1261"},
        ),
    )
    stub.answer(
        "salespaymentlist",
        payments(
            {"key": "5001", "date": "2.4.2025", "number": "20250042", "sum": "200,00"},
            {"key": "5002", "date": "3.4.2025", "number": "20250042", "sum": "51,00"},
            {"key": "5003", "date": "2025-04-04", "reference": "12 45"},
        ),
    )
    stub.answer("salespaymentlist", payments({"key": "4000", "date": "28.3.2025", "number": "20250044"}))
    stub.answer("salespaymentlist", payments())  # settled without a payment (a credit note)
    since = dt.datetime(2025, 4, 1, 6, 30, 15, tzinfo=dt.UTC)
    paid = await client.list_paid_invoices(since)
    assert [(p.invoice_key, p.invoice_number, p.paid_on, p.amount) for p in paid] == [
        ("1001", "20250042", dt.date(2025, 4, 3), Decimal("251.00")),
        ("1002", "20250043", dt.date(2025, 4, 4), Decimal("251.00")),
        ("1003", "20250044", dt.date(2025, 3, 28), Decimal("251.00")),
    ]
    listing = stub.of("salesinvoicelist")[0].query
    assert listing["invoicestatus"] == "paid"
    assert listing["lastmodifiedstart"] == "2025-04-01T06:30:15"
    assert listing["includemodifiedpayments"] == "1"
    assert listing["lastmodifiedend"] > dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    first_payments, looked_up, nothing = stub.of("salespaymentlist")
    assert first_payments.query["lastmodifiedstart"] == "2025-04-01T06:30:15"
    assert looked_up.query == {"invoicenumber": "20250044"}
    assert nothing.query == {"invoicenumber": "20250045"}
    with pytest.raises(ValueError, match="aware"):
        await client.list_paid_invoices(dt.datetime(2025, 4, 1))


async def test_paid_invoices_are_read_page_by_page(
    stub: Stub, make_client: Callable[..., NetvisorClient]
) -> None:
    client = make_client(stub.url, list_page_size=2)
    stub.answer(
        "salesinvoicelist",
        invoices(
            {"key": "7", "number": "1", "status": "paid"}, {"key": "9", "number": "2", "status": "paid"}
        ),
    )
    stub.answer("salesinvoicelist", invoices({"key": "12", "number": "3", "status": "paid"}))
    stub.answer(
        "salespaymentlist",
        payments(*[{"key": str(50 + i), "date": "1.4.2025", "number": str(i)} for i in (1, 2, 3)]),
    )
    paid = await client.list_paid_invoices(dt.datetime(2025, 4, 1, tzinfo=dt.UTC))
    assert [p.invoice_key for p in paid] == ["7", "9", "12"]
    first, second = stub.of("salesinvoicelist")
    assert "invoicesabovenetvisorkey" not in first.query
    assert second.query["invoicesabovenetvisorkey"] == "9"


# -- check ---------------------------------------------------------------------------------------------


async def test_check_reports_every_right(stub: Stub) -> None:
    for resource in ("customer", "salesinvoice", "matchcreditnote"):
        stub.answer(resource, failed("INVALID_DATA", "Data form incorrect:. Parameter 'method' is missing"))
    stub.answer("salespaymentlist", failed("SERVICE_ACCESS_ERROR", "No access", status=403))
    results = await run_checks(settings(stub.url))
    by_name = {result.name: result for result in results}
    assert by_name["Netvisor keys readable"].ok
    assert by_name["Netvisor reachable"].ok
    assert by_name["Netvisor signature accepted"].ok
    for resource in (
        "customerlist",
        "salesinvoicelist",
        "getsalesinvoice",
        "customer",
        "salesinvoice",
        "matchcreditnote",
    ):
        assert by_name[f"Right to use {resource}.nv"].ok, resource
    payments_right = by_name["Right to use salespaymentlist.nv"]
    assert not payments_right.ok
    assert payments_right.fix is not None
    assert "salespaymentlist.nv" in payments_right.fix
    posted = [seen for seen in stub.seen if seen.method == "POST"]
    assert {seen.resource for seen in posted} == {"customer.nv", "salesinvoice.nv", "matchcreditnote.nv"}
    assert all(seen.xml().tag == "root" and len(seen.xml()) == 0 for seen in posted)
    assert all("method" not in seen.query for seen in posted)


async def test_check_without_write_probes_and_with_a_refused_signature(stub: Stub) -> None:
    results = await run_checks(settings(stub.url), probe_writes=False)
    skipped = [result.name for result in results if result.skipped]
    assert skipped == [
        "Right to use customer.nv",
        "Right to use salesinvoice.nv",
        "Right to use matchcreditnote.nv",
    ]
    assert not any(seen.method == "POST" for seen in stub.seen)

    stub.customer_key = "another-key-entirely"
    results = await run_checks(settings(stub.url))
    assert [(result.name, result.ok, result.skipped) for result in results[:3]] == [
        ("Netvisor keys readable", True, False),
        ("Netvisor reachable", True, False),
        ("Netvisor signature accepted", False, False),
    ]
    assert all(result.skipped for result in results[3:])


async def test_check_with_nothing_listening(tmp_path: Path) -> None:
    results = await run_checks(
        settings("http://127.0.0.1:9", customer_key=None, customer_key_file=tmp_path / "absent")
    )
    assert [(result.name, result.ok) for result in results[:2]] == [
        ("Netvisor keys readable", False),
        ("Netvisor reachable", False),
    ]
    assert all(result.skipped for result in results[2:])


# --------------------------------------------------------------------------------------------------
# Against the fake Netvisor
# --------------------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeNetvisor]:
    async with FakeNetvisor(
        customer_key=CUSTOMER_KEY, partner_key=PARTNER_KEY, organisation_id=ORGANISATION
    ) as fake:
        yield fake
        assert fake.internal_errors == []


def fake_settings(fake: FakeNetvisor, **overrides: Any) -> NetvisorClientConfig:
    credentials = fake.credentials
    return settings(
        fake.url,
        customer_id=credentials.customer_id,
        partner_id=credentials.partner_id,
        **overrides,
    )


@pytest.fixture
async def netvisor(fake: FakeNetvisor, sleeps: Sleeps) -> AsyncIterator[NetvisorClient]:
    async with NetvisorClient(fake_settings(fake), registry=None, on_key_loaded=None, sleep=sleeps) as client:
        yield client


def assert_nothing_refused_for_order_signature_or_concurrency(fake: FakeNetvisor) -> None:
    refusals = fake.refusals
    assert (refusals.ordering, refusals.mandatory, refusals.signature, refusals.concurrency) == (0, 0, 0, 0)


async def test_fake_customers_are_added_found_and_updated(
    fake: FakeNetvisor, netvisor: NetvisorClient
) -> None:
    assert await netvisor.find_customer("1042") is None
    added = await netvisor.add_customer(CUSTOMER)
    found = await netvisor.find_customer("1042")
    assert found == added
    await netvisor.update_customer(added.key, dataclasses.replace(CUSTOMER, name="Uusi Nimi Oy", email=None))
    stored = fake.store.customer(int(added.key))
    assert stored.name == "Uusi Nimi Oy"
    assert stored.base["email"] == ""  # an edit blanks what it leaves out
    assert stored.code == "1042"
    assert_nothing_refused_for_order_signature_or_concurrency(fake)


async def test_fake_duplicate_customer_is_adopted(fake: FakeNetvisor, netvisor: NetvisorClient) -> None:
    first = await netvisor.add_customer(CUSTOMER)
    again = await netvisor.add_customer(CUSTOMER)  # DUPLICATE_DATA in the fake: adopted
    assert again.key == first.key
    assert len(fake.store.customers) == 1


async def test_fake_invoices_are_added_and_found(fake: FakeNetvisor, netvisor: NetvisorClient) -> None:
    await netvisor.add_customer(CUSTOMER)
    invoice = await netvisor.add_invoice(INVOICE)
    found = await netvisor.find_invoice(INVOICE.number)
    assert found is not None
    assert (found.key, found.total_including_vat, found.customer_code, found.reference_number) == (
        invoice.key,
        Decimal("251.00"),
        "1042",
        "1232",
    )
    assert found.state is AccountingInvoiceState.OVERDUE  # open, and its due date has passed
    stored = fake.store.invoice(int(invoice.key))
    assert (stored.amount, stored.status, stored.number) == (Decimal("251.00"), "open", "20250042")
    assert [row.gross_sum for row in stored.rows] == [Decimal("251.00")]  # type: ignore[union-attr]
    assert_nothing_refused_for_order_signature_or_concurrency(fake)


CREDIT_NOTE = dataclasses.replace(
    INVOICE,
    number="20250043",
    reference_number="1245",
    total_including_vat=Decimal("-251.00"),
    total_vat=Decimal("-51.00"),
    lines=(
        dataclasses.replace(
            LINE, quantity=Decimal("-2"), net_sum=Decimal("-200.00"), vat_sum=Decimal("-51.00")
        ),
    ),
    credits_invoice_number=INVOICE.number,
)


async def test_fake_credit_note_is_matched_once_and_a_repeat_is_harmless(
    fake: FakeNetvisor, netvisor: NetvisorClient
) -> None:
    await netvisor.add_customer(CUSTOMER)
    invoice = await netvisor.add_invoice(INVOICE)
    credit = await netvisor.add_invoice(CREDIT_NOTE)
    await netvisor.match_credit_note(credit.key, invoice.key)
    await netvisor.match_credit_note(credit.key, invoice.key)  # a replay: already settled
    assert len(fake.store.credit_note_matches) == 1
    assert fake.store.invoice(int(invoice.key)).open_sum == 0
    assert_nothing_refused_for_order_signature_or_concurrency(fake)


async def test_fake_paid_invoices_show_up_after_a_payment(
    fake: FakeNetvisor, netvisor: NetvisorClient
) -> None:
    await netvisor.add_customer(CUSTOMER)
    since = fake.clock() - dt.timedelta(minutes=5)
    invoice = await netvisor.add_invoice(INVOICE)
    other = await netvisor.add_invoice(dataclasses.replace(INVOICE, number="20250050", reference_number=None))
    assert await netvisor.list_paid_invoices(since) == []
    payment = fake.mark_invoice_paid(int(invoice.key))
    paid = await netvisor.list_paid_invoices(since)
    assert [(p.invoice_key, p.invoice_number, p.reference_number, p.paid_on, p.amount) for p in paid] == [
        (invoice.key, "20250042", "1232", payment.date, Decimal("251.00"))
    ]
    assert other.key not in {p.invoice_key for p in paid}
    assert_nothing_refused_for_order_signature_or_concurrency(fake)


async def test_fake_an_invoice_settled_by_a_credit_note_is_not_reported_as_paid(
    fake: FakeNetvisor, netvisor: NetvisorClient
) -> None:
    await netvisor.add_customer(CUSTOMER)
    since = fake.clock() - dt.timedelta(minutes=5)
    invoice = await netvisor.add_invoice(INVOICE)
    credit = await netvisor.add_invoice(CREDIT_NOTE)
    await netvisor.match_credit_note(credit.key, invoice.key)
    assert fake.store.invoice(int(invoice.key)).status == "paid"
    with structlog.testing.capture_logs() as logs:
        assert await netvisor.list_paid_invoices(since) == []
    skipped = [entry["key"] for entry in logs if entry["event"] == "netvisor.paid_without_payment"]
    assert sorted(skipped) == sorted([invoice.key, credit.key])


async def test_fake_lost_answer_after_an_add_then_the_look_up_finds_it(
    fake: FakeNetvisor, netvisor: NetvisorClient
) -> None:
    await netvisor.add_customer(CUSTOMER)
    fake.faults.add(FaultRule(FaultKind.DROP, resource="salesinvoice.nv", phase=Phase.AFTER, times=1))
    with pytest.raises(AccountingUnavailable) as info:
        await netvisor.add_invoice(INVOICE)
    assert info.value.outcome_unknown is True
    assert fake.calls["salesinvoice.nv"] == 1  # never repeated blindly
    found = await netvisor.find_invoice(INVOICE.number)
    assert found is not None
    assert len(fake.store.invoices) == 1


async def test_fake_maintenance_window_is_waited_out_in_process(
    fake: FakeNetvisor, netvisor: NetvisorClient, sleeps: Sleeps
) -> None:
    fake.faults.add(FaultRule(FaultKind.ERROR, code=ErrorCode.SYSTEM_MAINTENANCE, times=2))
    await netvisor.probe()
    assert len(sleeps.waits) == 2


async def test_fake_period_lock_and_missing_customer(fake: FakeNetvisor, netvisor: NetvisorClient) -> None:
    with pytest.raises(AccountingRejected, match="customer") as info:
        await netvisor.add_invoice(INVOICE)  # the customer does not exist yet
    assert info.value.code == "INVALID_DATA"
    await netvisor.add_customer(CUSTOMER)
    fake.behaviour.period_locked_until = dt.date(2025, 3, 31)
    with pytest.raises(AccountingPeriodLocked, match="2025-03-31"):
        await netvisor.add_invoice(INVOICE)


async def test_fake_duplicate_invoice_numbers_refused_are_adopted(
    fake: FakeNetvisor, netvisor: NetvisorClient
) -> None:
    fake.behaviour.duplicate_invoice_number = Duplicates.REFUSE
    await netvisor.add_customer(CUSTOMER)
    first = await netvisor.add_invoice(INVOICE)
    again = await netvisor.add_invoice(INVOICE)
    assert again.key == first.key
    assert len(fake.store.invoices) == 1


async def test_fake_many_concurrent_requests_are_served_one_at_a_time(fake: FakeNetvisor) -> None:
    # Each request stays in flight a moment, so that any overlap would reach the fake (which refuses
    # it as TECHNICAL_ERROR, and retries=0 turns that into a failure here).
    fake.faults.add(FaultRule(FaultKind.LATENCY, seconds=0.02))
    clients = [
        NetvisorClient(fake_settings(fake, retries=0), registry=None, on_key_loaded=None) for _ in range(3)
    ]
    try:
        await asyncio.gather(*(client.probe() for client in clients for _ in range(5)))
    finally:
        for client in clients:
            await client.aclose()
    assert fake.calls["customerlist.nv"] == 15
    assert fake.refusals.concurrency == 0


async def test_fake_check_passes(fake: FakeNetvisor) -> None:
    results = await run_checks(fake_settings(fake))
    assert [(result.name, result.ok) for result in results if not result.ok] == []
    assert fake.refusals.signature == 0
