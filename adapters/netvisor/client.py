"""``NetvisorClient``: the :class:`connector.ports.AccountingGateway` over Visma Netvisor's XML API.

One request, in order:

1. build the URL with its query string, each value percent-encoded once
   (:func:`adapters.netvisor.codec.resource_url`), and the body in the resource's element order;
2. wait for the company's turn (below);
3. sign it (:func:`adapters.netvisor.signing.sign`) with a fresh TransactionId (uuid4 hex), the
   current UTC time and the keys as they are *now* (a rotated key file is used at once), over the
   URL exactly as it is sent -- aiohttp gets it as ``yarl.URL(url, encoded=True)`` so nothing re-encodes
   it after signing;
4. send it through one pooled :class:`aiohttp.ClientSession` within ``timeout_seconds`` and read at
   most ``max_response_bytes`` of the answer (hanging up on a larger one);
5. release the turn, parse the answer defensively (:mod:`adapters.netvisor.codec`) and turn a
   ``FAILED`` status into a :mod:`connector.errors` error (:mod:`adapters.netvisor.faults`).

**Serial per company.** Netvisor serves one request at a time per company ("customer environment")
and answers an overlapping one with assorted errors. Every client in the process therefore takes
one :class:`asyncio.Lock` per (base URL, organisation id) -- a module-level registry, per event
loop -- around steps 3-4, so at most one request per Netvisor company is in flight in this pod, however
many clients, flows or consumers share it. Signing happens inside the turn so that a request that
waited long still carries a fresh time stamp. Waiting is measured
(``netvisor_company_lock_wait_seconds``) and is not part of a request's timeout.

**Across pods**, the in-process lock is not enough: measured against the fake with 20 ms per request,
two consumer pods overlapped in up to half their requests, and the refusals (retried, escalated to
an outage, counted as poison strikes) parked messages that had nothing wrong with them. So the
client takes a second, shared turn inside its own -- ``shared_lane``, a context manager factory the
composition root passes in (:mod:`connector.service`: the ledger's lock on the company, a
PostgreSQL advisory lock where the ledger is PostgreSQL) -- and holds it for the request. The
adapter knows nothing of the store behind it. Without it (a ``check`` run beside the service, or a
poller-only pod, which has no ledger) the real service answers an overlap with an error, which the
adapter classifies as transient (TECHNICAL_ERROR, REQUEST_NOT_UNIQUE, an unknown code, a 5xx) and
retries; a write caught by it surfaces as ``outcome_unknown`` and the flow looks before writing
again, so an overlap costs time, never a duplicate.

**Retries here** are limited to requests that surely did not take effect (:func:`faults.retryable`:
maintenance, REQUEST_NOT_UNIQUE, a refused connection, a failed *read*): ``retries`` times with
exponential backoff and jitter, then the error is raised (the runtime escalates
:class:`~connector.errors.AccountingUnavailable` to ``AccountingOutage``). A write whose outcome is
unknown (a timeout after sending, a connection dropped mid-answer, TECHNICAL_ERROR) is never retried
here: it raises ``AccountingUnavailable(outcome_unknown=True)`` so that the caller looks first. Every
attempt is signed anew, so a retry never reuses a TransactionId. A refused signature
(AUTHENTICATION_FAILED) makes the client re-read both keys; if either changed (a rotation that
crossed the request), the request is tried once more with them.

**Adopting duplicates.** Netvisor has no idempotency key. If an add is refused as DUPLICATE_DATA the
client looks the record up by its identity (customer code, invoice number) and returns it; only if
nothing matching is found does the caller see ``AccountingRejected(code="DUPLICATE_DATA")``.

The keys never leave the MAC: not logged (the per-attempt debug line holds operation, status,
duration, TransactionId and outcome), not in errors (Netvisor's text is redacted), not in reprs or
metrics; each key is registered with :func:`connector.logging.register_secret` when first read and
after every rotation, so even a key that reaches a log line by accident is masked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import time
import traceback
import uuid
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from decimal import Decimal
from importlib import metadata
from types import TracebackType
from typing import Final, Protocol, Self, TypeVar

import aiohttp
import structlog
import yarl
from prometheus_client import REGISTRY, CollectorRegistry
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.netvisor import signing
from adapters.netvisor.codec import (
    Answer,
    MalformedAnswer,
    Operation,
    Ops,
    PaymentRow,
    Query,
    SalesInvoiceRow,
    customer_xml,
    format_timestamp_query,
    match_credit_note_xml,
    parse_answer,
    parse_customer_list,
    parse_inserted_key,
    parse_sales_invoice_list,
    parse_sales_invoice_status,
    parse_sales_payment_list,
    resource_url,
    sales_invoice_xml,
)
from adapters.netvisor.config import NetvisorClientConfig
from adapters.netvisor.faults import (
    DUPLICATE_DATA,
    INVALID_DATA,
    classify_http,
    classify_status,
    classify_transport,
    redact,
    retryable,
)
from adapters.netvisor.keys import KeyPair, NetvisorKeys, key_sources
from adapters.netvisor.metrics import NetvisorMetrics, netvisor_metrics
from connector import tracing
from connector.errors import (
    AccountingAuthenticationFailed,
    AccountingRejected,
    AccountingUnavailable,
    ConnectorError,
    UnmappableRecord,
)
from connector.logging import register_secret
from connector.ports import (
    AccountingCustomer,
    AccountingCustomerRef,
    AccountingInvoice,
    AccountingInvoiceRef,
    AccountingInvoiceState,
    AccountingPayment,
)

log = structlog.get_logger(__name__)


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


R = TypeVar("R", bound=_Keyed)

#: The keyword :meth:`NetvisorClient.probe` searches customers for. ``keyword`` is a prefix match
#: over name, code and business id, so this matches no real customer and the answer is an empty
#: list: it proves the signature and the customer-list right without transferring any data.
PROBE_KEYWORD: Final = "severa-connector-probe-0000"

try:
    _VERSION = metadata.version("severa-connector")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    _VERSION = "0"
USER_AGENT: Final = f"severa-connector/{_VERSION} aiohttp/{aiohttp.__version__}"

_XML_CONTENT_TYPE: Final = "text/xml; charset=utf-8"

# --------------------------------------------------------------------------------------------------
# One lane per company: at most one request per Netvisor organisation in flight in this process
# --------------------------------------------------------------------------------------------------

_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def company_lock(base_url: str, organisation_id: str) -> asyncio.Lock:
    """The lock every client of this event loop takes for requests to ``organisation_id`` at ``base_url``.

    Per event loop because an :class:`asyncio.Lock` belongs to one loop (tests run a loop each; the
    service runs one); the registry forgets a loop when it is gone.
    """
    loop = asyncio.get_running_loop()
    per_loop = _lanes.get(loop)
    if per_loop is None:
        per_loop = _lanes[loop] = {}
    key = (base_url.rstrip("/").lower(), organisation_id.strip())
    lock = per_loop.get(key)
    if lock is None:
        lock = per_loop[key] = asyncio.Lock()
    return lock


class _State(enum.Enum):
    IDLE = "idle"
    OPEN = "open"
    CLOSED = "closed"


class _ReplyTooLarge(Exception):
    pass


class _Attempt:
    """What one attempt used and saw, for the error path, the metrics and the log line."""

    __slots__ = ("keys", "sent", "status", "transaction_id")

    def __init__(self) -> None:
        self.keys: KeyPair | None = None
        self.transaction_id: str | None = None
        self.sent: float | None = None
        self.status: int | None = None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_transaction_id() -> str:
    return uuid.uuid4().hex


class NetvisorClient:
    """The Netvisor gateway for one company: customers, sales invoices, credit notes, payments.

    Use it as an async context manager, or call :meth:`aclose` yourself; the HTTP session opens on
    first use. After :meth:`aclose` (idempotent) every call raises
    :class:`~connector.errors.AccountingUnavailable` (``reason="netvisor_client_closed"``, nothing
    sent); re-entering raises :class:`RuntimeError`.

    ``keys`` defaults to the sources the config names (a :class:`~connector.errors.ConfigError` for
    an unreadable key file is raised here, at start-up). ``registry`` receives the metrics (``None``
    for none). ``on_key_loaded`` is called with each key when it is first read and after every
    rotation; it defaults to :func:`connector.logging.register_secret`. ``clock``, ``sleep`` and
    ``transaction_id`` are for tests (time stamps, backoff waits, TransactionIds).
    """

    def __init__(
        self,
        config: NetvisorClientConfig,
        *,
        keys: NetvisorKeys | None = None,
        registry: CollectorRegistry | None = REGISTRY,
        on_key_loaded: Callable[[str], None] | None = register_secret,
        clock: Callable[[], dt.datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transaction_id: Callable[[], str] = _new_transaction_id,
        shared_lane: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._config = config
        self._shared_lane = shared_lane
        self._root = config.root
        self._keys = keys if keys is not None else key_sources(config)
        self._metrics: NetvisorMetrics | None = netvisor_metrics(registry) if registry is not None else None
        self._on_key_loaded = on_key_loaded
        self._clock = clock
        self._sleep = sleep
        self._transaction_id = transaction_id
        self._session: aiohttp.ClientSession | None = None
        self._state = _State.IDLE
        self._last_keys: KeyPair | None = None
        self._current_keys()  # read (and register) the keys now, not on the first request

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RuntimeError("this NetvisorClient is closed; create a new one")
        self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; later calls are refused. Safe to call more than once."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def config(self) -> NetvisorClientConfig:
        return self._config

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            config = self._config
            self._session = aiohttp.ClientSession(
                # One request per company at a time: a couple of connections cover it (and a check
                # run or a second company sharing the session).
                connector=aiohttp.TCPConnector(limit=4, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=config.timeout_seconds,
                    connect=config.connect_timeout_seconds,
                    sock_connect=config.connect_timeout_seconds,
                ),
                headers={"User-Agent": USER_AGENT, "Accept": "text/xml"},
                raise_for_status=False,
                trust_env=config.use_env_proxy,
            )
            self._state = _State.OPEN
        return self._session

    # -- the gateway ---------------------------------------------------------------------------

    async def probe(self) -> None:
        """One cheap authenticated read (customerlist.nv with a keyword nothing matches): raises the
        classified error if the keys, the rights or Netvisor are not usable."""
        await self.call(Ops.CUSTOMER_LIST, [("keyword", PROBE_KEYWORD)])

    async def find_customer(self, code: str) -> AccountingCustomerRef | None:
        """The customer whose code is exactly ``code`` (``customerlist.nv?customercodelist=``)."""
        code = _code(code)
        rows = parse_customer_list(await self.call(Ops.CUSTOMER_LIST, [("customercodelist", code)]))
        matches = sorted((row for row in rows if row.code == code), key=lambda row: _key_order(row.key))
        if not matches:
            return None
        if len(matches) > 1:
            log.warning(
                "netvisor.customer_code_ambiguous",
                code=code,
                keys=[row.key for row in matches],
                action="using the oldest",
            )
        row = matches[0]
        return AccountingCustomerRef(key=row.key, code=row.code, name=row.name)

    async def add_customer(self, customer: AccountingCustomer) -> AccountingCustomerRef:
        """``customer.nv?method=add``; a DUPLICATE_DATA answer adopts the customer with the same code."""
        body = customer_xml(customer)
        try:
            answer = await self.call(Ops.CUSTOMER_ADD, [("method", "add")], body)
        except AccountingRejected as exc:
            if exc.code != DUPLICATE_DATA:
                raise
            found = await self.find_customer(customer.code)
            if found is None:
                raise AccountingRejected(
                    f"Netvisor refused to add customer {customer.code} as a duplicate (DUPLICATE_DATA), but "
                    f"no customer with that code is there to adopt. To fix: look in Netvisor for a customer "
                    f"with the same business id or name, give it the code {customer.code} (or remove it), "
                    f"then replay. Netvisor said: {exc.message}",
                    code=DUPLICATE_DATA,
                    operation=Ops.CUSTOMER_ADD.label,
                ) from exc
            log.info("netvisor.duplicate_adopted", kind="customer", code=customer.code, key=found.key)
            return found
        return AccountingCustomerRef(key=parse_inserted_key(answer), code=customer.code, name=customer.name)

    async def update_customer(self, key: str, customer: AccountingCustomer) -> AccountingCustomerRef:
        """``customer.nv?method=edit&id=<key>`` with every detail (what is left out is emptied)."""
        body = customer_xml(customer)
        await self.call(Ops.CUSTOMER_EDIT, [("method", "edit"), ("id", key.strip())], body)
        return AccountingCustomerRef(key=key.strip(), code=customer.code, name=customer.name)

    async def find_invoice(self, number: str) -> AccountingInvoiceRef | None:
        """The sales invoice whose number is exactly ``number`` (``salesinvoicelist.nv?invoicenumber=``)."""
        number = number.strip()
        rows = parse_sales_invoice_list(await self.call(Ops.SALES_INVOICE_LIST, [("invoicenumber", number)]))
        matches = sorted((row for row in rows if row.number == number), key=lambda row: _key_order(row.key))
        if not matches:
            return None
        if len(matches) > 1:
            log.warning(
                "netvisor.invoice_number_ambiguous",
                number=number,
                keys=[row.key for row in matches],
                action="using the oldest",
            )
        return _invoice_ref(matches[0])

    async def add_invoice(self, invoice: AccountingInvoice) -> AccountingInvoiceRef:
        """``salesinvoice.nv?method=add`` in status open, numbered and referenced as Severa did.

        A DUPLICATE_DATA answer adopts the invoice with the same number if it is for the same
        customer and total; anything else is :class:`~connector.errors.AccountingRejected`.
        """
        body = sales_invoice_xml(invoice, default_product_code=self._config.default_product_code)
        try:
            answer = await self.call(
                Ops.SALES_INVOICE_ADD, [("method", "add")], body, period=invoice.invoice_date
            )
        except AccountingRejected as exc:
            if exc.code != DUPLICATE_DATA:
                raise
            return await self._adopt_invoice(invoice, exc)
        return AccountingInvoiceRef(
            key=parse_inserted_key(answer),
            number=invoice.number,
            customer_code=invoice.customer_code,
            reference_number=invoice.reference_number,
            total_including_vat=invoice.total_including_vat,
            open_sum=invoice.total_including_vat,
            state=AccountingInvoiceState.OPEN,
        )

    async def _adopt_invoice(
        self, invoice: AccountingInvoice, refusal: AccountingRejected
    ) -> AccountingInvoiceRef:
        found = await self.find_invoice(invoice.number)
        if found is None:
            problem = "but no invoice with that number is there to adopt"
        elif found.customer_code not in (None, invoice.customer_code):
            problem = f"and the invoice {invoice.number} there is for customer {found.customer_code}"
        elif (
            found.total_including_vat is not None and found.total_including_vat != invoice.total_including_vat
        ):
            problem = f"and the invoice {invoice.number} there totals {found.total_including_vat}"
        else:
            assert found is not None
            log.info("netvisor.duplicate_adopted", kind="invoice", number=invoice.number, key=found.key)
            return found
        raise AccountingRejected(
            f"Netvisor refused to add invoice {invoice.number} (customer {invoice.customer_code}, total "
            f"{invoice.total_including_vat}) as a duplicate (DUPLICATE_DATA), {problem}. To fix: compare "
            f"the two in Netvisor; if the one there is wrong, credit or remove it, then replay. Netvisor "
            f"said: {refusal.message}",
            code=DUPLICATE_DATA,
            operation=Ops.SALES_INVOICE_ADD.label,
        ) from refusal

    async def match_credit_note(self, credit_note_key: str, invoice_key: str) -> None:
        """``matchcreditnote.nv``: tie a credit note to the invoice it credits.

        A repeat (after a lost answer, or a replay) is refused by Netvisor -- with which code is
        unverified (DUPLICATE_DATA or INVALID_DATA "already matched"). So when a match is refused,
        the client reads the credit note (``getsalesinvoice.nv``): if it is already settled
        (``paid``) the match is taken as done, with a log line; otherwise the refusal stands.
        """
        body = match_credit_note_xml(credit_note_key, invoice_key)
        try:
            await self.call(Ops.MATCH_CREDIT_NOTE, (), body)
        except AccountingRejected as exc:
            if exc.code not in (DUPLICATE_DATA, INVALID_DATA) or not await self._settled(credit_note_key):
                raise
            log.info(
                "netvisor.credit_note_already_settled",
                credit_note=credit_note_key,
                invoice=invoice_key,
                refused_as=exc.code,
                action="taking the match as done",
            )

    async def _settled(self, key: str) -> bool:
        answer = await self.call(Ops.GET_SALES_INVOICE, [("netvisorkey", key.strip())])
        return parse_sales_invoice_status(answer) == "paid"

    async def list_paid_invoices(self, modified_since: dt.datetime) -> list[AccountingPayment]:
        """Invoices Netvisor holds as paid that changed (or whose payments changed) since ``modified_since``.

        Two reads, both in the doc: ``salesinvoicelist.nv?invoicestatus=paid`` with the last-modified
        range and ``includemodifiedpayments=1`` says *which* invoices are paid in full (a payment list
        alone cannot: payments may be partial or unmatched); ``salespaymentlist.nv`` over the same
        range says *when* (the list of invoices has no payment date). An invoice whose payment is
        not in that range (paid earlier, status changed now) gets one ``salespaymentlist.nv
        ?invoicenumber=`` look-up. ``paid_on`` is the latest payment's day, ``amount`` the sum of
        the payments found. An invoice settled without any payment -- by a credit note matched to
        it (the credit note is then "paid" too) or marked paid by hand -- is left out, with a log
        line: no payment day exists, and a made-up one would differ from poll to poll.

        Netvisor's time zone for the range is unverified. The range is sent as UTC wall-clock time
        and ends a day in the future: if Netvisor reads it as Finnish time, the answer starts up to
        three hours earlier (more rows, never fewer), and nothing recent is cut off. ``modified_at``
        is ``None``: Netvisor's lists give no modification time, so the caller advances its cursor
        from its own clock. Callers must be idempotent per invoice (they are: the flow writes the
        same payment date again).
        """
        if modified_since.tzinfo is None or modified_since.utcoffset() is None:
            raise ValueError(
                f"modified_since must be an aware datetime (UTC), got the naive {modified_since!r}"
            )
        start = format_timestamp_query(modified_since.astimezone(dt.UTC))
        end = format_timestamp_query(self._clock().astimezone(dt.UTC) + dt.timedelta(days=1))
        invoices = await self._pages(
            Ops.SALES_INVOICE_LIST,
            [
                ("invoicestatus", "paid"),
                ("lastmodifiedstart", start),
                ("lastmodifiedend", end),
                ("includemodifiedpayments", "1"),
            ],
            parse_sales_invoice_list,
            cursor="invoicesabovenetvisorkey",
        )
        if not invoices:
            return []
        payments = await self._pages(
            Ops.SALES_PAYMENT_LIST,
            [("lastmodifiedstart", start), ("lastmodifiedend", end)],
            parse_sales_payment_list,
            cursor="abovenetvisorkey",
        )
        by_number: dict[str, list[PaymentRow]] = {}
        by_reference: dict[str, list[PaymentRow]] = {}
        for payment in payments:
            if payment.invoice_number:
                by_number.setdefault(payment.invoice_number, []).append(payment)
            if payment.reference_number:
                by_reference.setdefault(_digits(payment.reference_number), []).append(payment)
        result: list[AccountingPayment] = []
        for row in invoices:
            found = by_number.get(row.number or "") or by_reference.get(_digits(row.reference_number or ""))
            if not found and row.number:
                found = [
                    payment
                    for payment in parse_sales_payment_list(
                        await self.call(Ops.SALES_PAYMENT_LIST, [("invoicenumber", row.number)])
                    )
                    if payment.invoice_number in (None, row.number)
                ]
            paid = self._payment(row, found or [])
            if paid is not None:
                result.append(paid)
        return result

    def _payment(self, row: SalesInvoiceRow, payments: list[PaymentRow]) -> AccountingPayment | None:
        dated = [payment.paid_on for payment in payments if payment.paid_on is not None]
        if not dated:
            # Settled without a payment: a credit note matched to it (or the credit note itself),
            # or marked paid by hand. There is no payment day to report, and inventing one ("today")
            # would change from poll to poll and report the same invoice twice, on two days.
            log.info(
                "netvisor.paid_without_payment",
                invoice=row.number,
                key=row.key,
                action="not reported: no payment to date it by",
            )
            return None
        amounts = [payment.amount for payment in payments if payment.amount is not None]
        return AccountingPayment(
            invoice_key=row.key,
            invoice_number=row.number,
            reference_number=row.reference_number,
            paid_on=max(dated),
            amount=sum(amounts, Decimal(0)) if amounts else None,
            modified_at=None,
        )

    async def _pages(
        self,
        op: Operation,
        query: Query,
        parse: Callable[[Answer], list[R]],
        *,
        cursor: str,
    ) -> list[R]:
        """Every row of a keyset-paged list: a full page asks for the next one above its largest key."""
        rows: list[R] = []
        seen: set[str] = set()
        above: int | None = None
        while True:
            page_query = [*query, (cursor, str(above))] if above is not None else list(query)
            page = parse(await self.call(op, page_query))
            for row in page:
                if row.key not in seen:
                    rows.append(row)
                    seen.add(row.key)
            if len(page) < self._config.list_page_size:
                return rows
            highest = max(_key_order(row.key) for row in page)
            if highest[0] != 0 or (above is not None and highest[1] <= above):
                # Keys that are not numbers, or a page that did not move past the last: stop rather
                # than loop (a server that ignores the cursor would answer the same page for ever).
                log.warning("netvisor.paging_stopped", operation=op.label, rows=len(rows))
                return rows
            above = highest[1]

    # -- one request -------------------------------------------------------------------------------

    async def call(
        self, op: Operation, query: Query = (), body: bytes | None = None, *, period: dt.date | None = None
    ) -> Answer:
        """Any request, answered OK, or the classified error; retries as described in the module.

        For the typed methods and adapter tools such as :mod:`adapters.netvisor.check`.
        """
        used: list[_Attempt] = []
        try:
            try:
                return await self._with_retries(op, query, body, period, used)
            except AccountingAuthenticationFailed:
                tried = used[-1].keys if used else None
                self._keys.refresh()
                if tried is None or self._current_keys() == tried:
                    raise
                log.info("netvisor.keys_changed_retrying", operation=op.label)
                return await self._with_retries(op, query, body, period, used)
        except ConnectorError as error:
            # The core keeps errors (retry state, the circuit's last error); their tracebacks must
            # not keep the answer's bytes or parsed tree alive with them.
            _forget_locals(error)
            raise

    async def _with_retries(
        self, op: Operation, query: Query, body: bytes | None, period: dt.date | None, used: list[_Attempt]
    ) -> Answer:
        config = self._config
        retrying = AsyncRetrying(
            stop=stop_after_attempt(config.retries + 1),
            wait=wait_exponential_jitter(
                multiplier=config.retry_backoff_seconds,
                max=config.retry_backoff_max_seconds,
                jitter=config.retry_backoff_seconds,
            ),
            retry=retry_if_exception(lambda error: retryable(error) and not self.closed),
            sleep=self._sleep,
            before_sleep=lambda state: self._before_retry(op, state),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                current = _Attempt()
                used.append(current)
                return await self._attempt(op, query, body, period, current)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _before_retry(self, op: Operation, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = getattr(error, "reason", type(error).__name__)
        wait = state.next_action.sleep if state.next_action is not None else None
        if self._metrics is not None:
            self._metrics.retried(op.label, reason)
        log.info(
            "netvisor.retry",
            operation=op.label,
            reason=reason,
            attempt=state.attempt_number,
            attempts_left=self._config.retries + 1 - state.attempt_number,
            wait_s=round(wait, 3) if wait is not None else None,
        )

    @tracing.external_call("netvisor")  # a CLIENT span per request while tracing is on
    async def _attempt(
        self, op: Operation, query: Query, body: bytes | None, period: dt.date | None, attempt: _Attempt
    ) -> Answer:
        outcome = "ok"
        error: ConnectorError | None = None
        try:
            status, content, charset = await self._exchange(op, query, body, attempt)
            return self._read(op, status, content, charset, attempt, period)
        except ConnectorError as exc:
            outcome, error = exc.reason, exc
            raise
        finally:
            self._observe(op, outcome, attempt, error)

    async def _exchange(
        self, op: Operation, query: Query, body: bytes | None, attempt: _Attempt
    ) -> tuple[int, bytes, str | None]:
        if self._state is _State.CLOSED:
            raise AccountingUnavailable(
                f"The Netvisor client is closed, so {op} was not sent (the service is shutting down).",
                reason="netvisor_client_closed",
                outcome_unknown=False,
                operation=op.label,
            )
        config = self._config
        url = resource_url(self._root, op.resource, query)
        lane = company_lock(self._root, config.organisation_id)
        waiting = time.perf_counter()
        async with lane, self._shared_lane() if self._shared_lane is not None else nullcontext():
            if self._metrics is not None:
                self._metrics.waited(time.perf_counter() - waiting)
            if self.closed:
                # aclose() ran while this request waited for its turn: never reopen a session.
                raise AccountingUnavailable(
                    f"The Netvisor client was closed before {op} was sent.",
                    reason="netvisor_client_closed",
                    outcome_unknown=False,
                    operation=op.label,
                )
            session = self._session or self._open()
            keys = attempt.keys = self._current_keys()
            transaction_id = attempt.transaction_id = self._transaction_id()
            headers = signing.sign(
                url=url,
                sender=config.sender,
                customer_id=config.customer_id,
                partner_id=config.partner_id,
                language=config.language,
                organisation_id=config.organisation_id,
                transaction_id=transaction_id,
                now=self._clock(),
                customer_key=keys.customer_key,
                partner_key=keys.partner_key,
            )
            if body is not None:
                headers["Content-Type"] = _XML_CONTENT_TYPE
            attempt.sent = time.perf_counter()
            try:
                async with asyncio.timeout(config.timeout_seconds):
                    async with session.request(
                        op.method, yarl.URL(url, encoded=True), data=body, headers=headers
                    ) as response:
                        status = attempt.status = response.status
                        try:
                            content = await self._receive(response)
                        except _ReplyTooLarge:
                            raise classify_http(
                                status,
                                op,
                                url=self._root,
                                problem=f"larger than the {config.max_response_bytes} bytes allowed",
                            ) from None
                        return status, content, response.charset
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise classify_transport(exc, op, url=self._root, timeout=config.timeout_seconds) from exc
            except RuntimeError as exc:
                if not self.closed:
                    raise
                # aclose() ran while this request was waiting for its turn.
                raise AccountingUnavailable(
                    f"The Netvisor client was closed before {op} was sent.",
                    reason="netvisor_client_closed",
                    outcome_unknown=False,
                    operation=op.label,
                ) from exc

    async def _receive(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, never more than ``max_response_bytes``: a larger one is cut off at once."""
        limit = self._config.max_response_bytes
        length = response.content_length
        if length is not None and length > limit:
            response.close()
            raise _ReplyTooLarge
        buffer = bytearray()
        try:
            async for chunk in response.content.iter_any():
                if len(buffer) + len(chunk) > limit:
                    raise _ReplyTooLarge
                buffer += chunk
        except BaseException:
            response.close()
            buffer.clear()
            raise
        return bytes(buffer)

    def _read(
        self,
        op: Operation,
        status: int,
        content: bytes,
        charset: str | None,
        attempt: _Attempt,
        period: dt.date | None,
    ) -> Answer:
        secrets = attempt.keys.values if attempt.keys is not None else ()
        try:
            answer = parse_answer(content, charset=charset)
        except MalformedAnswer as exc:
            # lxml quotes bits of the document; a server echoing a key must not smuggle it out.
            raise classify_http(status, op, url=self._root, problem=redact(str(exc), secrets)) from exc
        if not answer.status.ok:
            raise classify_status(
                answer.status,
                op,
                http_status=status,
                secrets=secrets,
                key_origin=self._keys.origin,
                organisation_id=self._config.organisation_id,
                period=period,
            )
        if not 200 <= status < 300:
            raise classify_http(status, op, url=self._root, problem="an OK status with an error code")
        return answer

    def _current_keys(self) -> KeyPair:
        keys = self._keys.current()
        if keys != self._last_keys:
            previous, self._last_keys = self._last_keys, keys
            if self._on_key_loaded is not None:
                for value, before in zip(
                    keys.values, previous.values if previous else (None, None), strict=True
                ):
                    if value != before:
                        self._on_key_loaded(value)
        return keys

    def _observe(self, op: Operation, outcome: str, attempt: _Attempt, error: ConnectorError | None) -> None:
        seconds = time.perf_counter() - attempt.sent if attempt.sent is not None else None
        if self._metrics is not None:
            self._metrics.observe(op.label, outcome, seconds)
        # Operation, status, timing, TransactionId and outcome only: never headers or bodies.
        log.debug(
            "netvisor.call",
            operation=op.label,
            outcome=outcome,
            http_status=attempt.status,
            transaction_id=attempt.transaction_id,
            duration_ms=round(seconds * 1000, 1) if seconds is not None else None,
            outcome_unknown=getattr(error, "outcome_unknown", None),
        )

    def __repr__(self) -> str:
        return (
            f"NetvisorClient(base_url={self._root!r}, organisation_id={self._config.organisation_id!r}, "
            f"keys={self._keys!r}, state={self._state.value})"
        )


def _code(code: str) -> str:
    code = code.strip()
    if not code or "," in code:
        # customercodelist is comma-separated: a comma would turn one code into a look-up of two.
        raise UnmappableRecord(
            f"The customer code {code!r} is empty or contains a comma, which Netvisor cannot look up: "
            "correct the customer number in Severa.",
            field="customer.code",
        )
    return code


def _key_order(key: str) -> tuple[int, int]:
    """Numeric keys in numeric order (first), anything else after them."""
    return (0, int(key)) if key.isdigit() else (1, 0)


def _digits(reference: str) -> str:
    return "".join(reference.split())


def _invoice_ref(row: SalesInvoiceRow) -> AccountingInvoiceRef:
    return AccountingInvoiceRef(
        key=row.key,
        number=row.number or "",
        customer_code=row.customer_code,
        reference_number=row.reference_number,
        total_including_vat=row.total,
        open_sum=row.open_sum,
        state=row.state,
    )


def _forget_locals(error: BaseException) -> None:
    """Drop the local variables of every finished frame in ``error``'s tracebacks (its chain too).

    The frames stay (a logged traceback still shows every line); their variables, which may hold
    an answer of ``max_response_bytes``, go. Frames still running are left alone by ``clear_frames``.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]
