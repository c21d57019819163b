"""The fake Netvisor over real HTTP: an aiohttp app and :class:`FakeNetvisor`, its owner.

Resources answer at ``http://host:port/<resource>.nv`` (names case-insensitive; see
:mod:`.resources`), the admin API under ``/admin`` (:mod:`.admin`). Each request to a known
resource goes through, in order:

1. ``calls[resource] += 1``; an unknown resource is HTTP 404, a wrong HTTP method 405;
2. an active maintenance window answers ``SYSTEM_MAINTENANCE`` (before authentication);
3. authentication (:mod:`.auth`): headers, ids, MAC over the URL as sent, time stamps,
   TransactionId — refused as ``AUTHENTICATION_FAILED`` / ``REQUEST_NOT_UNIQUE``;
4. **one request at a time per company**: a request while another one for the same
   organisation is in flight is refused ``TECHNICAL_ERROR`` (refusal ``concurrency``). Why that
   code: the vendor says overlapping requests "cause assorted errors" without naming one, and
   TECHNICAL_ERROR is the code whose documented advice — retry after a pause — is the right
   reaction. The request counts as in flight from here until its answer is written, injected
   latency included;
5. injected faults for the ``before`` phase (latency, then HTTP error / drop / a Netvisor error);
6. the resource enabled? (else ``SERVICE_ACCESS_ERROR``); the body read within the size bound
   (else ``INVALID_DATA_SIZE``), parsed defensively and checked against the resource's DTD table
   (:mod:`.dtd`); then the resource runs against the store;
7. injected faults for the ``after`` phase (the resource ran; the answer is delayed, lost or
   replaced).

Every refusal of steps 3-6 is counted by kind in :attr:`FakeNetvisor.refusals`; every request is
kept in a bounded :attr:`FakeNetvisor.requests` log — identifiers, TransactionId, query, outcome,
never a key, a MAC or a body. The HTTP status of a Netvisor answer is 200 unless the request sent
``X-Netvisor-Authentication-UseHTTPResponseStatusCodes: 1`` (:data:`.errors.HTTP_STATUS`).

Defaults (also the CLI's, ``severa-connector fake-netvisor``):

================= ======================== ===================================
customer id       ``fake-customer``        ``FAKE_NETVISOR_CUSTOMER_ID``
customer key      ``fake-customer-key``    ``FAKE_NETVISOR_CUSTOMER_KEY``
partner id        ``fake-partner``         ``FAKE_NETVISOR_PARTNER_ID``
partner key       ``fake-partner-key``     ``FAKE_NETVISOR_PARTNER_KEY``
organisation id   ``1234567-8``            ``FAKE_NETVISOR_ORGANISATION_ID``
================= ======================== ===================================
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import structlog
from aiohttp import web

from adapters.fake_server import SHUTDOWN_TIMEOUT as SHUTDOWN_TIMEOUT  # re-exported
from adapters.fake_server import FakeServer, transport_failure
from adapters.netvisor import signing
from adapters.netvisor.fake import dtd
from adapters.netvisor.fake.auth import (
    DEFAULT_CUSTOMER_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_ORGANISATION_ID,
    DEFAULT_PARTNER_ID,
    DEFAULT_PARTNER_KEY,
    Authenticator,
    Credentials,
)
from adapters.netvisor.fake.behaviour import Behaviour
from adapters.netvisor.fake.errors import HTTP_STATUS, ErrorCode, NetvisorError, RefusalKind
from adapters.netvisor.fake.faults import FaultInjector, FaultKind, FaultRule
from adapters.netvisor.fake.refusals import Refusals
from adapters.netvisor.fake.resources import RESOURCES, Context, Resource
from adapters.netvisor.fake.seed import (
    SeedSource,
    apply_seed,
    customer_sections,
    decimal,
    invoice_draft,
    invoice_values,
    read_seed,
)
from adapters.netvisor.fake.store import Customer, Invoice, NetvisorStore, Payment
from adapters.netvisor.fake.wire import CONTENT_TYPE, failed_answer, ok_answer, parse_body, response_timestamp

log = structlog.get_logger(__name__)

DEFAULT_REQUEST_LOG_SIZE: Final = 1000
CONCURRENCY_TEXT: Final = (
    "Another request for this organisation is still being processed; send one request at a time"
)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def company_zone() -> dt.tzinfo:
    """Europe/Helsinki, Netvisor's time zone; UTC (with a warning) where no tz database is installed."""
    try:
        return zoneinfo.ZoneInfo("Europe/Helsinki")
    except zoneinfo.ZoneInfoNotFoundError:
        log.warning("fake_netvisor.no_tz_database", fallback="UTC")
        return dt.UTC


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the fake saw it; holds nothing secret (no keys, MAC or body)."""

    at: str
    method: str
    resource: str
    query: str
    sender: str
    customer_id: str
    partner_id: str
    organisation_id: str
    transaction_id: str
    http_status: int
    outcome: str
    """``OK``, a Netvisor error code, or ``injected:<kind>``."""
    refusal: str | None
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FakeNetvisor(FakeServer):
    """An in-process fake Netvisor: store, authentication, fault injection and an HTTP server.

    ``async with FakeNetvisor() as fake:`` serves on ``host:port`` (port 0 picks a free one);
    ``fake.url`` is the base URL (``fake.url + "/customerlist.nv"``). The credentials default to
    the ones in the module docstring. ``seed`` (a YAML/JSON path or a mapping, see :mod:`.seed`)
    is loaded at start and on :meth:`reset`; ``None`` starts with an empty company. ``clock``
    (aware UTC) drives time stamps, change times and the time-stamp check; ``zone`` is the
    company's time zone (answers' ``TimeStamp``, date-time query parameters, "today").

    The test's window into the service: ``store``, ``calls`` (requests per resource),
    ``refusals`` (:class:`~.refusals.Refusals`), ``faults`` (:class:`~.faults.FaultInjector`),
    ``behaviour`` (:class:`~.behaviour.Behaviour`), ``requests`` (the log),
    ``internal_errors`` (bugs of the fake itself; tests assert none), :meth:`in_flight` /
    :meth:`wait_for_in_flight`. A closed fake cannot be started again.
    """

    NAME = "fake Netvisor"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        customer_id: str = DEFAULT_CUSTOMER_ID,
        customer_key: str = DEFAULT_CUSTOMER_KEY,
        partner_id: str = DEFAULT_PARTNER_ID,
        partner_key: str = DEFAULT_PARTNER_KEY,
        organisation_id: str = DEFAULT_ORGANISATION_ID,
        seed: SeedSource = None,
        behaviour: Behaviour | None = None,
        clock: Clock | None = None,
        zone: dt.tzinfo | None = None,
        random_seed: int = 0,
        request_log_size: int = DEFAULT_REQUEST_LOG_SIZE,
    ) -> None:
        super().__init__(host=host, port=port)
        self.clock: Clock = clock or utc_now
        self.zone = zone or company_zone()
        self.behaviour = behaviour or Behaviour()
        self.authenticator = Authenticator(
            Credentials(customer_id, customer_key, partner_id, partner_key, organisation_id),
            clock=self._now,
            tolerance=lambda: self.behaviour.timestamp_tolerance,
        )
        self.store = NetvisorStore(self.behaviour)
        self.faults = FaultInjector(clock=self._now, random_seed=random_seed)
        self.refusals = Refusals()
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=request_log_size)
        self.internal_errors: list[BaseException] = []
        """Exceptions the fake itself raised while answering (a bug in the fake); tests assert none."""
        self._seed_document = read_seed(seed)
        apply_seed(self.store, self._seed_document, now=self._now())
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._in_flight_changed = asyncio.Event()
        self._release = asyncio.Event()

    def _now(self) -> dt.datetime:
        return self.clock()

    # ------------------------------------------------------------------------------- lifecycle

    def _on_started(self) -> None:
        log.info("fake_netvisor.started", url=self.url, **self.authenticator.credentials.public())

    async def close(self) -> None:
        """Stop serving (idempotent). Injected latencies end at once; in-flight requests get
        ``SHUTDOWN_TIMEOUT`` to finish."""
        self.release_latency()
        await super().close()

    def _on_stopped(self) -> None:
        log.info("fake_netvisor.stopped", calls=sum(self.calls.values()), refusals=self.refusals.total)

    # ------------------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``http://host:port``, the base URL the connector is configured with."""
        return self.base_url

    def resource_url(self, resource: str, query: str = "") -> str:
        return f"{self.url}/{resource}" + (f"?{query}" if query else "")

    @property
    def credentials(self) -> Credentials:
        """The accepted credentials (the keys are in it: for signing in tests, never for logs)."""
        return self.authenticator.credentials

    # -------------------------------------------------------------------------- control plane

    def rotate_keys(self, *, customer_key: str | None = None, partner_key: str | None = None) -> None:
        """Replace the key(s) at once, as regenerating them in Netvisor does."""
        self.authenticator.rotate_keys(customer_key=customer_key, partner_key=partner_key)
        log.info("fake_netvisor.keys_rotated")

    def load_seed(self, source: SeedSource, *, replace: bool = True) -> None:
        """Load seed data, all or nothing.

        ``replace`` (default) empties the store first and makes the seed the :meth:`reset` point.
        """
        document = read_seed(source)
        staged = NetvisorStore(self.behaviour)
        if not replace:
            staged.take_contents(self.store)
        apply_seed(staged, document, now=self._now())
        self.store.take_contents(staged)
        if replace:
            self._seed_document = document

    def reset(self) -> None:
        """Back to the seed: store reloaded; counters, log, fault rules and used TransactionIds cleared."""
        self.store.clear()
        apply_seed(self.store, self._seed_document, now=self._now())
        self.calls.clear()
        self.refusals.clear()
        self.requests.clear()
        self.faults.clear()
        self.faults.reseed()
        self.authenticator.forget_transactions()

    def in_flight(self, organisation_id: str | None = None) -> int:
        """Requests being processed now (for one organisation, or all)."""
        if organisation_id is None:
            return sum(self._in_flight.values())
        return self._in_flight[organisation_id]

    async def wait_for_in_flight(
        self, count: int = 1, *, organisation_id: str | None = None, timeout: float = 10.0
    ) -> None:
        """Return once at least *count* requests are in flight: a test's synchronisation point."""
        async with asyncio.timeout(timeout):
            while self.in_flight(organisation_id) < count:
                await self._in_flight_changed.wait()

    def release_latency(self) -> None:
        """End every injected latency now being waited out (the requests carry on at once)."""
        release, self._release = self._release, asyncio.Event()
        release.set()

    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot for humans and the admin API (never a key)."""
        return {
            "url": self._base_url,
            "credentials": self.credentials.public(),
            "calls": dict(self.calls),
            "refusals": self.refusals.to_json(),
            "in_flight": dict(self._in_flight),
            "faults": self.faults.to_json(),
            "behaviour": self.behaviour.to_json(),
            "store": self.store.counts(),
            "remembered_transaction_ids": self.authenticator.remembered_transactions,
            "internal_errors": len(self.internal_errors),
        }

    # ----------------------------------------------------------------- the company "by hand"
    # What a person does in Netvisor's UI: no request, no signature, nothing counted; the same
    # store rules (NetvisorError where Netvisor refuses, KeyError-like NOT_FOUND for unknown keys).

    def add_customer(self, values: Mapping[str, Any]) -> Customer:
        sections, dimensions = customer_sections(values, "customer")
        return self.store.add_customer(sections, dimensions, now=self._now())

    def change_customer(self, key: int, changes: Mapping[str, Any]) -> Customer:
        """Change some members (the others keep their values, unlike an API edit)."""
        sections, _ = customer_sections(changes, "customer")
        return self.store.change_customer(key, sections, now=self._now())

    def add_invoice(self, values: Mapping[str, Any]) -> Invoice:
        return self.store.add_invoice(invoice_draft(values, "invoice"), now=self._now())

    def change_invoice(self, key: int, changes: Mapping[str, Any]) -> Invoice:
        """Change some fields of an invoice (lines replaced if given); status: :meth:`set_invoice_status`."""
        if "status" in changes:
            raise ValueError("change the status with set_invoice_status / POST …/status")
        values = {**invoice_values(self.store.invoice(key)), **changes}
        if "customer_code" in changes:
            values.pop("customer_key", None)
        return self.store.edit_invoice(key, invoice_draft(values, "invoice"), now=self._now())

    def set_invoice_status(self, key: int, status: str) -> Invoice:
        return self.store.set_invoice_status([key], status.lower(), now=self._now())[0]

    def register_payment(
        self,
        key: int,
        *,
        amount: Any = None,
        date: dt.date | None = None,
        name: str | None = None,
        foreign_currency_amount: Any = None,
    ) -> Payment:
        """A customer paid (all that is open unless *amount*): a SalesPayment, the invoice's open sum
        lowered (``paid`` when nothing is left) and its last-modified time moved."""
        now = self._now()
        return self.store.register_payment(
            key,
            now=now,
            date=date or now.astimezone(self.zone).date(),
            amount=decimal(amount, "amount") if amount is not None else None,
            name=name,
            foreign_currency_amount=(
                decimal(foreign_currency_amount, "foreign_currency_amount")
                if foreign_currency_amount is not None
                else None
            ),
        )

    def mark_invoice_paid(self, key: int) -> Payment:
        """Pay the invoice in full today."""
        return self.register_payment(key)

    # ----------------------------------------------------------------------------------- HTTP

    def create_app(self) -> web.Application:
        """The aiohttp application (resources and admin API)."""
        from adapters.netvisor.fake.admin import admin_routes  # admin needs FakeNetvisor: import late

        app = web.Application()
        app.router.add_routes(admin_routes(self))
        app.router.add_route("*", "/{resource}", self._handle)
        return app

    def _enter(self, organisation_id: str) -> None:
        self._in_flight[organisation_id] += 1
        self._signal_in_flight()

    def _leave(self, organisation_id: str) -> None:
        self._in_flight[organisation_id] -= 1
        if self._in_flight[organisation_id] <= 0:
            del self._in_flight[organisation_id]
        self._signal_in_flight()

    def _signal_in_flight(self) -> None:
        changed, self._in_flight_changed = self._in_flight_changed, asyncio.Event()
        changed.set()

    async def _pause(self, seconds: float) -> None:
        release = self._release
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), timeout=seconds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        name = request.match_info["resource"].lower()
        resource = RESOURCES.get(name)
        if resource is None:
            return web.Response(status=404, text=f"Resource not found: /{request.match_info['resource']}")
        if request.method != resource.method:
            return web.Response(
                status=405, text=f"{name} takes {resource.method}", headers={"Allow": resource.method}
            )
        self.calls[name] += 1
        exchange = _Exchange(self, request, name, started)
        maintenance = self.faults.maintenance(name)
        if maintenance is not None:
            return exchange.failure(
                NetvisorError(ErrorCode.SYSTEM_MAINTENANCE, maintenance.text), injected=True
            )
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        try:
            fields = self.authenticator.verify(url, request.headers)
        except NetvisorError as error:
            return exchange.failure(error)
        organisation = fields.organisation_id.strip()
        if self._in_flight[organisation]:
            return exchange.failure(
                NetvisorError(ErrorCode.TECHNICAL_ERROR, CONCURRENCY_TEXT, RefusalKind.CONCURRENCY)
            )
        self._enter(organisation)
        try:
            return await self._serve(exchange, resource)
        finally:
            self._leave(organisation)

    async def _serve(self, exchange: _Exchange, resource: Resource) -> web.StreamResponse:
        plan = self.faults.plan(resource.name)
        if plan.latency_before:
            await self._pause(plan.latency_before)
        if plan.before is not None:
            if plan.before.is_transport_failure:
                return exchange.transport_failure(plan.before)
            status, payload, outcome, refusal = exchange.injected(plan.before)
        else:
            status, payload, outcome, refusal = await self._answer(exchange, resource)
        if plan.latency_after:
            await self._pause(plan.latency_after)
        if plan.after is not None:
            if plan.after.is_transport_failure:
                return exchange.transport_failure(plan.after)
            status, payload, outcome, refusal = exchange.injected(plan.after)
        return exchange.respond(status, payload, outcome, refusal)

    async def _answer(
        self, exchange: _Exchange, resource: Resource
    ) -> tuple[int, bytes, str, RefusalKind | None]:
        request = exchange.request
        now = self._now()
        try:
            if resource.name in self.behaviour.disabled_resources:
                raise NetvisorError(
                    ErrorCode.SERVICE_ACCESS_ERROR,
                    f"The company has no access to {resource.name}",
                    RefusalKind.ACCESS,
                )
            body = None
            if resource.method == "POST":
                data = await self._read_body(request)
                if resource.schema is not None:
                    body = parse_body(data, request.charset)
                    dtd.validate(resource.schema, body)
            context = Context(
                store=self.store,
                now=now,
                zone=self.zone,
                base_url=f"{request.scheme}://{request.host}",
                query={key.lower(): value for key, value in reversed(list(request.query.items()))},
                body=body,
            )
            content = resource.handler(context)
        except NetvisorError as error:
            status, payload = exchange.failed_payload(error)
            return status, payload, error.code.value, error.refusal
        except Exception as exc:
            # A bug in the fake: answer as the service does for its own failures, keep the trace.
            self.internal_errors.append(exc)
            log.exception("fake_netvisor.internal_error", resource=resource.name)
            internal = NetvisorError(ErrorCode.TECHNICAL_ERROR, "An internal error occurred")
            status, payload = exchange.failed_payload(internal)
            return status, payload, "internal_error", None
        return 200, ok_answer(response_timestamp(now, self.zone), *content), "OK", None

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.behaviour.max_body_bytes
        too_large = NetvisorError(
            ErrorCode.INVALID_DATA_SIZE, f"The request is larger than {limit} bytes", RefusalKind.SIZE
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)


class _Exchange:
    """One request's answer in the making: status per the client's choice, log and counters."""

    def __init__(self, fake: FakeNetvisor, request: web.Request, resource: str, started: float) -> None:
        self.fake = fake
        self.request = request
        self.resource = resource
        self.started = started
        self.use_http_status = request.headers.get(signing.USE_HTTP_STATUS, "").strip() == "1"

    def failed_payload(self, error: NetvisorError) -> tuple[int, bytes]:
        status = HTTP_STATUS[error.code] if self.use_http_status else 200
        timestamp = response_timestamp(self.fake.clock(), self.fake.zone)
        return status, failed_answer(timestamp, error)

    def failure(self, error: NetvisorError, *, injected: bool = False) -> web.Response:
        status, payload = self.failed_payload(error)
        outcome = f"injected:{error.code.value}" if injected else error.code.value
        return self.respond(status, payload, outcome, error.refusal)

    def injected(self, rule: FaultRule) -> tuple[int, bytes, str, RefusalKind | None]:
        status, payload = self.failed_payload(NetvisorError(rule.code, rule.text))
        return status, payload, f"injected:{rule.code.value}", None

    def respond(self, status: int, payload: bytes, outcome: str, refusal: RefusalKind | None) -> web.Response:
        if refusal is not None:
            self.fake.refusals.add(refusal)
        self._record(status, outcome, refusal)
        return web.Response(body=payload, status=status, content_type=CONTENT_TYPE, charset="utf-8")

    def transport_failure(self, rule: FaultRule) -> web.StreamResponse:
        self._record(
            rule.status if rule.kind is FaultKind.HTTP_ERROR else 0, f"injected:{rule.kind.value}", None
        )
        return transport_failure(self.request, rule)

    def _record(self, status: int, outcome: str, refusal: RefusalKind | None) -> None:
        headers = self.request.headers
        duration = round((time.perf_counter() - self.started) * 1000, 2)
        record = RequestRecord(
            at=self.fake.clock().isoformat(),
            method=self.request.method,
            resource=self.resource,
            query=self.request.query_string,
            sender=headers.get(signing.SENDER, ""),
            customer_id=headers.get(signing.CUSTOMER_ID, ""),
            partner_id=headers.get(signing.PARTNER_ID, ""),
            organisation_id=headers.get(signing.ORGANISATION_ID, ""),
            transaction_id=headers.get(signing.TRANSACTION_ID, ""),
            http_status=status,
            outcome=outcome,
            refusal=refusal.value if refusal is not None else None,
            duration_ms=duration,
        )
        self.fake.requests.append(record)
        log.debug(
            "fake_netvisor.request",
            resource=self.resource,
            status=status,
            outcome=outcome,
            refusal=record.refusal,
            duration_ms=duration,
        )


async def serve(
    host: str,
    port: int,
    *,
    customer_id: str = DEFAULT_CUSTOMER_ID,
    customer_key: str = DEFAULT_CUSTOMER_KEY,
    partner_id: str = DEFAULT_PARTNER_ID,
    partner_key: str = DEFAULT_PARTNER_KEY,
    organisation_id: str = DEFAULT_ORGANISATION_ID,
    seed: SeedSource = None,
) -> None:
    """Run a fake Netvisor until cancelled. Logs the URLs and the identifiers once listening; never a key."""
    async with FakeNetvisor(
        host,
        port,
        customer_id=customer_id,
        customer_key=customer_key,
        partner_id=partner_id,
        partner_key=partner_key,
        organisation_id=organisation_id,
        seed=seed,
    ) as fake:
        log.info("fake_netvisor.serving", url=fake.url, admin=fake.admin_url, **fake.credentials.public())
        await asyncio.Event().wait()  # until the caller cancels us
