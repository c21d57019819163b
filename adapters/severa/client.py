"""``SeveraClient``: the :class:`connector.ports.SeveraGateway` over Severa's SOAP 1.1 API.

zeep knows the contract (:mod:`adapters.severa.contract`), aiohttp carries the bytes. zeep's own
transport is httpx, measured an order of magnitude slower than aiohttp here, so the client builds
envelopes with zeep, posts them itself, and hands the reply back to zeep to read.

One call, in order:

1. look up the operation and build the envelope, with the ``WebServicePassword`` header carrying
   the key from the :class:`~adapters.severa.keys.ApiKeySource` (every call except ``IAPI``'s two);
2. wait for a concurrency slot (``max_concurrency``) and, if configured, for the rate limiter;
3. POST it (``Content-Type: text/xml; charset=utf-8`` and the quoted ``SOAPAction`` WCF routes
   on) through one pooled :class:`aiohttp.ClientSession`, within ``timeout_seconds``;
4. read at most ``max_response_bytes`` into one buffer, its bytes reserved from a budget all calls
   of the client share (``max_buffered_bytes``, :mod:`adapters.severa.budget`), and hang up as soon
   as an answer outgrows the limit; parse safely, record the ``Quota``/``UsedQuota`` headers,
   turn a fault into a :mod:`connector.errors` error (:mod:`adapters.severa.faults`), or read the
   body with zeep and map it to a port record (:mod:`adapters.severa.mapping`).

Memory stays bounded across retries too: the buffer is emptied on every path, and an error leaving
the client has the local variables of its traceback's frames cleared (the frames and lines stay),
so an error the core keeps does not keep the answer, its parsed tree or its chunks with it.

No retries happen here. The core owns the retry policy (it knows whether a message may be retried,
how often, and must look before repeating a write whose ``outcome_unknown`` is set); a second,
hidden retry layer would multiply attempts and quota use and make the adapter unpredictable.

The key never leaves the envelope: it is not logged (the per-call debug line holds operation,
status, duration and outcome only), not put into errors (server text is redacted), not in reprs
or metrics. We never enable zeep's transport logging, and zeep's transport is not used at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from importlib import metadata
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from prometheus_client import REGISTRY, CollectorRegistry

from adapters.severa.budget import ByteBudget, Reservation
from adapters.severa.config import SeveraClientConfig
from adapters.severa.contract import (
    MalformedReply,
    Operation,
    OperationRef,
    Ops,
    Reply,
    RequestNotSerializable,
    SeveraContract,
    default_contract,
    parse_reply,
)
from adapters.severa.faults import (
    NOT_FOUND_ANSWER,
    classify_fault,
    classify_http,
    classify_transport,
    redact,
)
from adapters.severa.keys import ApiKeySource, api_key_source
from adapters.severa.mapping import (
    EntityMismatch,
    address_from_severa,
    as_list,
    case_from_severa,
    customer_from_severa,
    hour_entry_from_severa,
    hour_entry_update,
    invoice_from_severa,
    invoice_status_from_severa,
    new_hour_entry_to_severa,
    phase_from_severa,
    user_from_severa,
    work_type_from_severa,
)
from adapters.severa.metrics import SeveraMetrics, severa_metrics
from connector import tracing
from connector.errors import (
    ConnectorError,
    PermanentError,
    SeveraAuthenticationFailed,
    SeveraRejected,
    SeveraUnavailable,
)
from connector.ports import (
    Case,
    Customer,
    HourEntry,
    Invoice,
    InvoiceStatus,
    NewHourEntry,
    Phase,
    PostalAddress,
    QuotaReading,
    User,
    WorkType,
)

log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: The user code :meth:`SeveraClient.probe` looks up: no real user has it, so the answer is a small
#: NotFound — which proves that the key is accepted without transferring any data.
PROBE_USER_CODE: Final = "severa-connector-probe-0000"

try:
    _VERSION = metadata.version("severa-connector")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    _VERSION = "0"
USER_AGENT: Final = f"severa-connector/{_VERSION} aiohttp/{aiohttp.__version__}"


class _State(enum.Enum):
    IDLE = "idle"
    OPEN = "open"
    CLOSED = "closed"


class _ReplyTooLarge(Exception):
    pass


class _Timing:
    """When the request went on the wire (None: it never did) and the HTTP status of its answer."""

    __slots__ = ("sent", "status")

    def __init__(self) -> None:
        self.sent: float | None = None
        self.status: int | None = None


class SeveraClient:
    """The Severa gateway: typed look-ups and hour-entry writes, failures classified.

    Use it as an async context manager, or call :meth:`aclose` yourself; the HTTP session opens on
    first use. After :meth:`aclose` (idempotent) every call raises
    :class:`~connector.errors.SeveraUnavailable` (``reason="severa_client_closed"``, nothing sent),
    so a call racing shutdown is retried elsewhere rather than parked; re-entering raises
    :class:`RuntimeError`.

    ``registry`` receives the adapter's Prometheus metrics (pass your own in tests, ``None`` for
    none). ``contract`` defaults to the WSDL shipped in the package, parsed once per process.
    ``on_key_loaded`` is called with the key when the client is built and again whenever a
    rotated key is first used, so that log redaction can learn it (``connector.logging.register_secret``).
    """

    def __init__(
        self,
        config: SeveraClientConfig,
        *,
        key_source: ApiKeySource | None = None,
        contract: SeveraContract | None = None,
        registry: CollectorRegistry | None = REGISTRY,
        on_key_loaded: Callable[[str], None] | None = None,
    ) -> None:
        self._config = config
        self._url = config.endpoint
        self._keys = key_source if key_source is not None else api_key_source(config)
        self._contract = contract if contract is not None else default_contract()
        self._metrics: SeveraMetrics | None = severa_metrics(registry) if registry is not None else None
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._budget = ByteBudget(
            config.max_buffered_bytes, largest=config.max_response_bytes, holders=config.max_concurrency
        )
        self._limiter = _limiter(config.rate_limit_per_second)
        self._session: aiohttp.ClientSession | None = None
        self._state = _State.IDLE
        self._quota: QuotaReading | None = None
        self._on_key_loaded = on_key_loaded
        self._last_key: str | None = None
        if on_key_loaded is not None:
            self._key_for_call()

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RuntimeError("this SeveraClient is closed; create a new one")
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

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            config = self._config
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=config.connection_pool_size, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=config.timeout_seconds,
                    connect=config.connect_timeout_seconds,
                    sock_connect=config.connect_timeout_seconds,
                ),
                headers={"User-Agent": USER_AGENT},
                raise_for_status=False,
                trust_env=config.use_env_proxy,
            )
            self._state = _State.OPEN
        return self._session

    # -- what the core sees --------------------------------------------------------------------

    @property
    def quota(self) -> QuotaReading | None:
        """Severa's ``Quota``/``UsedQuota`` headers from the latest answer that had them."""
        return self._quota

    @property
    def contract(self) -> SeveraContract:
        return self._contract

    async def get_version(self) -> str:
        """``IAPI.GetVersion``, sent without the key: proves the endpoint answers SOAP."""
        return await self._call(Ops.GET_VERSION, {}, _text)

    async def get_entity_schema_version(self) -> str:
        """``IAPI.GetEntitySchemaVersion`` (no key): changes when Severa's entities change incompatibly."""
        return await self._call(Ops.GET_ENTITY_SCHEMA_VERSION, {}, _text)

    async def probe(self) -> None:
        """One small authenticated call (a user code that does not exist): raises if the key is refused,
        the quota is spent or Severa is unreachable."""
        await self._call(Ops.GET_USER_BY_CODE, {"userCode": PROBE_USER_CODE}, _ignore)

    async def get_user_by_code(self, code: str) -> User | None:
        return await self._call(Ops.GET_USER_BY_CODE, {"userCode": code}, _single(user_from_severa))

    async def get_all_users(self, *, include_inactive: bool = False) -> list[User]:
        params = {"businessUnitGUID": self._config.business_unit_guid, "includeInactive": include_inactive}
        return await self._call(Ops.GET_ALL_USERS, params, _many(user_from_severa))

    async def get_case_by_number(self, number: int) -> Case | None:
        return await self._call(Ops.GET_CASE_BY_NUMBER, {"caseNumber": number}, _single(case_from_severa))

    async def get_phases_by_code(self, phase_code: str, case_guid: str) -> list[Phase]:
        params = {"phaseCode": phase_code, "caseGUID": case_guid}
        return await self._call(Ops.GET_PHASES_BY_CODE, params, _many(phase_from_severa))

    async def get_all_work_types(self) -> list[WorkType]:
        return await self._call(Ops.GET_ALL_WORK_TYPES, {}, _many(work_type_from_severa))

    async def get_hour_entry(self, guid: str) -> HourEntry | None:
        params = {"hourEntryGUID": guid}
        return await self._call(Ops.GET_HOUR_ENTRY_BY_GUID, params, _single(hour_entry_from_severa))

    async def get_hour_entries_by_user_and_date(
        self, user_guid: str, start: dt.date, end: dt.date
    ) -> list[HourEntry]:
        """Entries of one user with EventDate from ``start`` to ``end``, both included."""
        params = {
            "businessUnitGUID": self._config.business_unit_guid,
            "startdate": _midnight(start),
            "enddate": _midnight(end),
            "userGUID": user_guid,
        }
        return await self._call(Ops.GET_HOUR_ENTRIES_BY_DATE_AND_USER, params, _many(hour_entry_from_severa))

    async def get_hour_entries_changed_since(self, since: dt.datetime) -> list[HourEntry]:
        """Entries added or changed at or after the start of ``since``'s minute (an aware datetime).

        Severa matches ``startDate`` to the minute and reads it as UTC, so the minute is floored here
        and sent as UTC (``Z``, which WCF reads as UTC rather than as the server's local time).
        """
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError(f"since must be an aware datetime (UTC), got the naive {since!r}")
        start = since.astimezone(dt.UTC).replace(second=0, microsecond=0)
        params = {"startDate": start}
        return await self._call(Ops.GET_HOUR_ENTRIES_CHANGED_SINCE, params, _many(hour_entry_from_severa))

    async def add_hour_entry(self, entry: NewHourEntry) -> HourEntry:
        params = {"hourEntryInfo": new_hour_entry_to_severa(entry)}
        return await self._call(Ops.ADD_HOUR_ENTRY, params, _required(hour_entry_from_severa))

    async def update_hour_entry(self, entry: HourEntry) -> HourEntry:
        """Change the entry to the record's values, keeping the members the record does not hold.

        Severa's UpdateHourEntry replaces the whole entry, so this reads it first
        (GetHourEntryByGUID) and sends it back with the record applied: two calls. An entry that
        does not exist is :class:`~connector.errors.SeveraRejected` (``fault="NotFound"``), and a
        failure of the read leaves nothing sent (``outcome_unknown`` False).
        """
        ref = Ops.UPDATE_HOUR_ENTRY
        current = await self._call(Ops.GET_HOUR_ENTRY_BY_GUID, {"hourEntryGUID": entry.guid}, _raw)
        if current is None:
            raise SeveraRejected(
                f"Severa rejected {ref}: there is no hour entry {entry.guid} to update (NotFound)",
                fault="NotFound",
                operation=ref.label,
            )
        params = {"hourEntryInfo": hour_entry_update(current, entry)}
        return await self._call(ref, params, _required(hour_entry_from_severa))

    async def delete_hour_entry(self, guid: str) -> bool:
        return await self._call(Ops.DELETE_HOUR_ENTRY, {"hourEntryGUID": guid}, _boolean)

    # -- customers and invoices (read by the accounting poller; not part of SeveraGateway) --------

    async def get_customers_changed_since(
        self, since: dt.datetime, *, include_inactive: bool = False, include_address_changes: bool = True
    ) -> list[Customer]:
        """Customers changed at or after the start of ``since``'s minute (aware; sent as UTC).

        ``include_address_changes`` (``CheckAddressChanges``) also returns customers whose address
        changed but who did not, since what goes to accounting includes the address. Inactive
        customers come only with ``include_inactive`` — so a customer made inactive is not seen
        by a poller that leaves it off.
        """
        options = _INCLUDE_INACTIVE if include_inactive else 0
        if include_address_changes:
            options |= _CHECK_ADDRESS_CHANGES
        params = {"startDateTime": _minute_utc(since), "options": options}
        return await self._call(Ops.GET_CUSTOMERS_CHANGED_SINCE, params, _many(customer_from_severa))

    async def get_head_office_address(self, account_guid: str) -> PostalAddress | None:
        """The customer's head-office address; ``None`` for an unknown customer or one without."""
        params = {"accountGUID": account_guid}
        return await self._call(Ops.GET_HEAD_OFFICE_ADDRESS, params, _single(address_from_severa))

    async def get_invoices_by_status(
        self, status: str, *, business_unit_guid: str | None = None, max_invoices: int | None = None
    ) -> list[Invoice]:
        """Invoices in ``status`` (a status name), with their rows; at most ``max_invoices``.

        An unknown status is a NotFound in Severa, which reads as "none" here, as for every look-up.
        """
        params = {
            "businessUnitGUID": business_unit_guid,
            "status": status,
            "options": 0,
            "maxInvoices": max_invoices,
        }
        return await self._call(Ops.GET_INVOICES_BY_STATUS, params, _many(invoice_from_severa))

    async def get_all_invoice_statuses(self) -> list[InvoiceStatus]:
        return await self._call(Ops.GET_ALL_INVOICE_STATUSES, {}, _many(invoice_status_from_severa))

    async def set_invoice_status(self, guid: str, status: str) -> None:
        """Move an invoice to ``status``; an unknown invoice or status is
        :class:`~connector.errors.SeveraRejected` (``fault="NotFound"``)."""
        params = {"invoiceGUID": guid, "status": status}
        await self._call(Ops.SET_INVOICE_STATUS, params, _ignore)

    async def set_invoice_payment_date(self, guid: str, date: dt.date | None) -> None:
        """Record when the invoice was paid (``None`` clears it), as the date's midnight, like every
        Severa date."""
        params = {"invoiceGUID": guid, "paymentDate": _midnight(date) if date is not None else None}
        await self._call(Ops.SET_INVOICE_PAYMENT_DATE, params, _ignore)

    async def get_invoice(self, guid: str) -> Invoice | None:
        """One invoice by GUID (its header: what the invoice write-backs check before writing)."""
        return await self._call(Ops.GET_INVOICE_BY_GUID, {"invoiceGUID": guid}, _single(invoice_from_severa))

    async def get_invoice_by_number(self, number: int) -> Invoice | None:
        """One invoice by number across business units (``businessUnitGUID`` null)."""
        params = {"invoiceNumber": number, "businessUnitGUID": None}
        return await self._call(Ops.GET_INVOICE_BY_NUMBER, params, _single(invoice_from_severa))

    async def add_invoice_log_entry(self, invoice_guid: str, text: str) -> None:
        """A line in the invoice's log, with Severa's own duplicate check (``ignoreDuplicates``), so
        a redelivered write-back adds it once."""
        params = {
            "invoiceGuid": invoice_guid,
            "context": "accounting",
            "text": text,
            "source": "severa-connector",
            "eventTimeUtc": None,
            "ignoreDuplicates": True,
        }
        await self._call(Ops.ADD_INVOICE_LOG_ENTRY, params, _ignore)

    async def call(self, ref: OperationRef, /, **params: Any) -> Any:
        """Any operation of the contract, returning zeep's objects (``None`` for NotFound).

        For adapter tools such as :mod:`adapters.severa.check`; the core uses the typed methods.
        Failures are classified exactly as for those.
        """
        return await self._call(ref, params, _raw)

    # -- one call ---------------------------------------------------------------------------------

    @tracing.external_call("severa")  # a CLIENT span per request while tracing is on
    async def _call(self, ref: OperationRef, params: Mapping[str, Any], convert: Callable[[Any], T]) -> T:
        timing = _Timing()
        try:
            result, found = await self._exchange(ref, params, convert, timing)
        except ConnectorError as error:
            # The core keeps errors (retry state, the circuit's last error); their tracebacks must
            # not keep the answer, its parsed tree or its chunks alive with them.
            _forget_locals(error)
            self._observe(ref, error.reason, timing, error)
            if isinstance(error, SeveraAuthenticationFailed):
                # The key may have been rotated a moment ago: make sure the next call reads it afresh.
                self._keys.refresh()
            raise
        self._observe(ref, "ok" if found else "not_found", timing, None)
        return result

    async def _exchange(
        self, ref: OperationRef, params: Mapping[str, Any], convert: Callable[[Any], T], timing: _Timing
    ) -> tuple[T, bool]:
        """One request and its answer: the converted result, and whether Severa found what was asked."""
        if self._state is _State.CLOSED:
            raise SeveraUnavailable(
                f"The Severa client is closed, so {ref} was not sent (the service is shutting down).",
                reason="severa_client_closed",
                outcome_unknown=False,
                operation=ref.label,
            )
        operation = self._contract.operation(ref)
        key = self._key_for_call() if ref.authenticated else None
        body = _build(operation, params, key)
        # The answer's bytes count against the budget until they are parsed, and the buffer is
        # emptied on every path.
        answer = bytearray()
        try:
            async with self._budget.reservation() as share:
                status = await self._post(operation, body, timing, share, answer)
                raw = self._read(operation, status, answer, key)
        finally:
            answer.clear()
        try:
            return convert(raw), raw is not NOT_FOUND_ANSWER
        except EntityMismatch as exc:
            raise classify_http(status, ref, url=self._url, problem=str(exc)) from exc

    def _key_for_call(self) -> str:
        key = self._keys.current().get_secret_value()
        if key != self._last_key:
            self._last_key = key
            if self._on_key_loaded is not None:
                self._on_key_loaded(key)
        return key

    async def _post(
        self, operation: Operation, body: bytes, timing: _Timing, share: Reservation, answer: bytearray
    ) -> int:
        """Send within the concurrency and rate limits; the answer's status, its body put into ``answer``."""
        ref = operation.ref
        session = self._session or self._open()
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            timing.sent = time.perf_counter()
            deadline = asyncio.get_running_loop().time() + self._config.timeout_seconds
            try:
                async with session.post(self._url, data=body, headers=operation.http_headers) as response:
                    status = timing.status = response.status
                    try:
                        # Waiting for the budget is part of the call's time, as reading is.
                        async with asyncio.timeout_at(deadline):
                            await self._receive(response, share, answer)
                    except _ReplyTooLarge:
                        # Raised without its cause: nothing of the answer is worth keeping.
                        raise classify_http(
                            status,
                            ref,
                            url=self._url,
                            problem=f"larger than the {self._limit_mib:g} MiB limit",
                        ) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise classify_transport(
                    exc, ref, url=self._url, timeout=self._config.timeout_seconds
                ) from exc
            except RuntimeError as exc:
                if self._state is not _State.CLOSED:
                    raise
                # aclose() ran while this call was waiting for its turn.
                raise SeveraUnavailable(
                    f"The Severa client was closed before {ref} was sent.",
                    reason="severa_client_closed",
                    outcome_unknown=False,
                    operation=ref.label,
                ) from exc
        return status

    @property
    def _limit_mib(self) -> float:
        return self._config.max_response_bytes / 2**20

    async def _receive(self, response: aiohttp.ClientResponse, share: Reservation, answer: bytearray) -> None:
        """Read the body into ``answer``, never holding more than ``share`` or ``max_response_bytes``.

        A body that outgrows the limit stops the read at once and closes the connection (the rest of
        an endless answer is never fetched); what was read is dropped before the error is raised.
        Not ``response.read()``: it joins a list of chunks into a second copy of the whole body.
        """
        limit = self._config.max_response_bytes
        length = response.content_length
        if length is not None and length > limit:
            response.close()
            raise _ReplyTooLarge
        if length is not None and "Content-Encoding" not in response.headers:
            # The parser delivers at most Content-Length bytes: reserve exactly that.
            await share.grow_to(length)
        else:
            # Chunked or compressed: the size is known only once it has been read.
            await share.grow_to(self._budget.initial)
        try:
            async for chunk in response.content.iter_any():
                size = len(answer) + len(chunk)
                if size > share.held:
                    if size > limit:
                        raise _ReplyTooLarge
                    await share.grow_to(limit)
                answer += chunk
        except BaseException:
            response.close()
            answer.clear()
            raise

    def _read(self, operation: Operation, status: int, content: bytearray, key: str | None) -> Any:
        """The body as zeep objects, :data:`NOT_FOUND_ANSWER`, or a classified error.

        Empties ``content`` once lxml holds the document: the tree is all that is needed from then on.
        """
        ref = operation.ref
        try:
            reply = parse_reply(content)
        except MalformedReply as exc:
            # lxml quotes bits of the document; a server echoing the key must not smuggle it out.
            raise classify_http(status, ref, url=self._url, problem=redact(str(exc), key)) from exc
        finally:
            content.clear()
        self._note_quota(reply)
        if reply.fault is not None:
            outcome = classify_fault(
                reply.fault,
                ref,
                key_origin=self._keys.origin,
                secret=key,
                used_quota=reply.used_quota,
                quota=reply.quota,
            )
            if outcome is NOT_FOUND_ANSWER:
                return NOT_FOUND_ANSWER
            assert isinstance(outcome, ConnectorError)
            raise outcome
        if status != 200:
            raise classify_http(status, ref, url=self._url, problem="an envelope without a fault")
        try:
            return operation.read_body(reply)
        except MalformedReply as exc:
            raise classify_http(status, ref, url=self._url, problem=redact(str(exc), key)) from exc

    def _note_quota(self, reply: Reply) -> None:
        if reply.quota is None or reply.used_quota is None:
            return
        self._quota = QuotaReading(quota=reply.quota, used=reply.used_quota)
        if self._metrics is not None:
            self._metrics.set_quota(self._quota)

    def _observe(
        self,
        ref: OperationRef,
        outcome: str,
        timing: _Timing,
        error: ConnectorError | None,
    ) -> None:
        seconds = time.perf_counter() - timing.sent if timing.sent is not None else None
        if self._metrics is not None:
            self._metrics.observe(ref.label, outcome, seconds)
        # Operation, status, timing and outcome only: envelopes carry the key and are never logged.
        # Checked first: at INFO a dropped line still cost every processor's work per call.
        if not _stdlib_log.isEnabledFor(logging.DEBUG):
            return
        log.debug(
            "severa.call",
            operation=ref.label,
            outcome=outcome,
            http_status=timing.status,
            duration_ms=round(seconds * 1000, 1) if seconds is not None else None,
            outcome_unknown=getattr(error, "outcome_unknown", None),
        )

    def __repr__(self) -> str:
        return f"SeveraClient(url={self._url!r}, key={self._keys!r}, state={self._state.value})"


def _forget_locals(error: BaseException) -> None:
    """Drop the local variables of every finished frame in ``error``'s tracebacks (its chain too).

    The frames stay (a logged traceback still shows every line); their variables, which may hold
    a 64 MiB answer, go. Frames still running (the caller's) are left alone by ``clear_frames``.
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


def _build(operation: Operation, params: Mapping[str, Any], key: str | None) -> bytes:
    try:
        return operation.build(params, key)
    except RequestNotSerializable as exc:
        raise PermanentError(
            f"Could not build the {operation.ref} request from the given values: {exc}",
            reason="severa_request_invalid",
            operation=operation.ref.label,
        ) from exc


def _limiter(rate: float | None) -> AsyncLimiter | None:
    if rate is None:
        return None
    # A leaky bucket holding one second of calls (at least one call, so rates below 1/s work).
    burst = max(1.0, rate)
    return AsyncLimiter(burst, burst / rate)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


_INCLUDE_INACTIVE: Final = 2
_CHECK_ADDRESS_CHANGES: Final = 64
"""``AccountGetOptions`` flags, which the ``int options`` of the account/customer ChangedSince take."""


def _minute_utc(since: dt.datetime) -> dt.datetime:
    """``since`` floored to its minute, in UTC: Severa matches ``startDateTime`` to the minute."""
    if since.tzinfo is None or since.utcoffset() is None:
        raise ValueError(f"since must be an aware datetime (UTC), got the naive {since!r}")
    return since.astimezone(dt.UTC).replace(second=0, microsecond=0)


# -- result converters: what a raw zeep result (or NotFound) becomes for each kind of call -------


def _raw(value: Any) -> Any:
    return None if value is NOT_FOUND_ANSWER else value


def _ignore(value: Any) -> None:
    return None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise EntityMismatch("expected a string result")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EntityMismatch("expected a boolean result")
    return value


def _single(convert: Callable[[Any], R]) -> Callable[[Any], R | None]:
    """A look-up: NotFound and nil both mean "no such record"."""

    def single(value: Any) -> R | None:
        if value is NOT_FOUND_ANSWER or value is None:
            return None
        return convert(value)

    return single


def _many(convert: Callable[[Any], R]) -> Callable[[Any], list[R]]:
    """A list: NotFound, nil and an empty array all mean "none"."""

    def many(value: Any) -> list[R]:
        if value is NOT_FOUND_ANSWER:
            return []
        return [convert(item) for item in as_list(value) if item is not None]

    return many


def _required(convert: Callable[[Any], R]) -> Callable[[Any], R]:
    """A write's answer: the stored entity must come back."""

    def required(value: Any) -> R:
        if value is None or value is NOT_FOUND_ANSWER:
            raise EntityMismatch("Severa returned no entity")
        return convert(value)

    return required
