"""The fake Severa service over real HTTP: an aiohttp app and :class:`FakeSevera`, its owner.

It answers at ``/webservice/S3/API.svc`` exactly where and how Severa's WCF endpoint does:

* ``GET …/API.svc/WSDL`` or ``GET …/API.svc?wsdl`` — the shipped WSDL, every ``soap:address``
  rewritten to the URL the request came in on;
* ``POST …/API.svc`` — SOAP 1.1, routed on the ``SOAPAction`` header (quoted or not). An action no
  contract declares gets WCF's ``ActionNotSupported`` fault (HTTP 500); a content type other than
  ``text/xml`` gets HTTP 415; a body that is not well-formed XML (or carries a DTD) gets HTTP 400.

Each call to a known operation goes through, in order:

1. ``calls[operation] += 1`` (the call reached the service);
2. injected faults for the ``before`` phase (latency, then 5xx / drop, or a SOAP-level fault);
3. the daily quota (every answered call counts, faults included; over quota → quota fault);
4. envelope checks (``mustUnderstand`` headers), then the ``WebServicePassword`` header —
   required for everything except ``IAPI.GetVersion`` / ``GetEntitySchemaVersion``;
5. zeep decodes the parameters, the handler runs, zeep encodes the answer;
6. injected faults for the ``after`` phase (the operation ran; the answer is delayed, lost or
   replaced).

Every SOAP answer (success or fault) carries the ``Quota`` / ``UsedQuota`` headers. The API key is
never logged.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hmac
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import quoteattr

import structlog
from aiohttp import web
from lxml import etree

from adapters.fake_server import SHUTDOWN_TIMEOUT as SHUTDOWN_TIMEOUT  # re-exported
from adapters.fake_server import FakeServer, transport_failure
from adapters.severa.fake import backoffice
from adapters.severa.fake.codec import SoapCodec, get_codec
from adapters.severa.fake.faults import FaultInjector, FaultKind, FaultRule
from adapters.severa.fake.handlers import HANDLERS, NULL_WHEN_EMPTY, Context
from adapters.severa.fake.quota import DEFAULT_DAILY_QUOTA, QuotaMeter
from adapters.severa.fake.seed import (
    DEMO_SEED_PATH,
    SeedError,
    SeedSource,
    apply_seed,
    coerce_record,
    coerce_value,
    read_seed,
)
from adapters.severa.fake.soap import (
    CONTENT_TYPE,
    QUOTA_LIMIT_MESSAGE,
    MalformedMessage,
    ProtocolFault,
    ServiceFault,
    action_not_supported,
    check_must_understand,
    internal_error,
    parse_envelope,
    protocol_fault_envelope,
    quota_headers,
    service_fault_envelope,
    web_service_password,
)
from adapters.severa.fake.store import Record, SeveraStore
from adapters.severa.wsdl import WSDL_PATH
from adapters.severa.wsdl.spec import DEFAULT_ADDRESS, SPEC, Fault, Operation

log = structlog.get_logger(__name__)

ENDPOINT_PATH: Final = "/webservice/S3/API.svc"
NO_AUTH_OPERATIONS: Final = frozenset({"GetVersion", "GetEntitySchemaVersion"})
"""The only operations Severa answers without an API key."""
MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
"""Severa's advice for message size; requests up to this are accepted."""
AUTH_MISSING: Final = "Access denied: no API key was sent (WebServicePassword SOAP header)."
AUTH_INVALID: Final = "Access denied: the API key is not valid."


def auth_refused_for(operation: str) -> str:
    """The description of an AuthenticationFailure injected on one operation only: it names the fix."""
    contract = SPEC.operation(operation).contract
    access = "write" if operation.startswith(("Add", "Update", "Delete", "Set")) else "read"
    return (
        f"Access denied to {contract}.{operation}: the API key's user lacks the right to {access} "
        f"{contract.removeprefix('I')} records, or the API key was regenerated."
    )


_INJECTED_DESCRIPTIONS: Final = {
    Fault.AUTHENTICATION_FAILURE: AUTH_INVALID,
    Fault.NOT_FOUND: "The requested object was not found.",
    Fault.NO_PERMISSION: "The user has no permission for this operation.",
    Fault.VALIDATION: "The request did not pass validation.",
    Fault.GENERAL_FAILURE: "An unexpected error occurred. Please try again later.",
    Fault.QUOTA_LIMIT_EXCEEDED: QUOTA_LIMIT_MESSAGE,
    Fault.TOS_NOT_APPROVED: "The terms of service have not been approved.",
}

_WSDL_CACHE_SIZE: Final = 16

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class HourEntryRefused(ValueError):
    """An hour entry entered or edited by hand that Severa would refuse; the message says why."""


@functools.cache
def _wsdl_template(path: Path) -> bytes:
    return path.read_bytes()


def soap_action(header: str | None) -> str:
    """The action from a ``SOAPAction`` header: quotes and surrounding blanks removed."""
    return (header or "").strip().strip('"').strip()


class FakeSevera(FakeServer):
    """An in-process fake Severa: store, quota, fault injection and an HTTP server around them.

    ``async with FakeSevera(api_key="k", seed=DEMO_SEED_PATH) as fake:`` starts it on
    ``host:port`` (port 0 picks a free one); ``fake.url`` is the SOAP endpoint, ``fake.wsdl_url``
    the WSDL. ``seed`` is a YAML/JSON path or a mapping; ``None`` (the default) loads the demo
    organisation (:data:`DEMO_SEED_PATH`) and ``{}`` starts empty. The seed is kept, so
    :meth:`reset` returns to it. ``clock`` (aware UTC) drives change timestamps and the
    quota day; ``random_seed`` makes probabilistic fault injection reproducible.

    The object is the test's window into the service: ``store`` (entities), ``calls`` (requests
    per operation), ``faults`` (:class:`FaultInjector`), ``quota`` (:class:`QuotaMeter`),
    ``internal_errors`` (bugs of the fake itself, answered as WCF's InternalServiceFault).
    :meth:`enter_hour_entry`, :meth:`edit_hour_entry` and :meth:`remove_hour_entry` change hour
    entries as a person in Severa's UI would (also over the admin API), stamped by ``clock``; so do
    :meth:`add_customer`, :meth:`change_customer`, :meth:`set_head_office_address`,
    :meth:`add_contact`, :meth:`change_contact`, :meth:`add_invoice`, :meth:`change_invoice` and
    :meth:`mark_invoice_status` for customers and invoices (:class:`~.backoffice.ChangeRefused`
    when Severa would refuse, :class:`KeyError` for an unknown GUID).
    A closed fake cannot be started again.
    """

    NAME = "fake Severa"

    def __init__(
        self,
        *,
        api_key: str,
        seed: SeedSource = None,
        host: str = "127.0.0.1",
        port: int = 0,
        quota_limit: int = DEFAULT_DAILY_QUOTA,
        random_seed: int = 0,
        clock: Clock | None = None,
        wsdl_path: Path = WSDL_PATH,
    ) -> None:
        if not api_key:
            raise ValueError("the fake needs a non-empty API key")
        super().__init__(host=host, port=port)
        self._api_key = api_key
        self._wsdl_path = wsdl_path
        self.clock: Clock = clock or utc_now
        self.store = SeveraStore()
        self.calls: collections.Counter[str] = collections.Counter()
        self.faults = FaultInjector(random_seed=random_seed)
        self.quota = QuotaMeter(quota_limit)
        self._seed_document = read_seed(DEMO_SEED_PATH if seed is None else seed)
        apply_seed(self.store, self._seed_document, now=self.clock())
        self._codec: SoapCodec | None = None
        self._wsdl_cache: dict[str, bytes] = {}
        self.internal_errors: list[BaseException] = []
        """Exceptions the fake itself raised while answering (a bug in the fake); tests assert none."""

    # ------------------------------------------------------------------------------- lifecycle

    async def _prepare(self) -> None:
        # Building the codec parses the WSDL (once per process): keep it off the event loop.
        self._codec = await asyncio.to_thread(get_codec, self._wsdl_path)

    def _on_started(self) -> None:
        log.info("fake_severa.started", url=self.url)

    def _on_stopped(self) -> None:
        log.info("fake_severa.stopped", calls=sum(self.calls.values()))

    # ------------------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """The SOAP endpoint (what the connector is configured with)."""
        return f"{self.base_url}{ENDPOINT_PATH}"

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}/WSDL"

    @property
    def codec(self) -> SoapCodec:
        """The zeep codec (available once started)."""
        if self._codec is None:
            self._codec = get_codec(self._wsdl_path)
        return self._codec

    # -------------------------------------------------------------------------- control plane

    def set_api_key(self, api_key: str) -> None:
        """Replace the API key at once, as regenerating it in Severa does; the old key stops working."""
        if not api_key:
            raise ValueError("the API key must not be empty")
        self._api_key = api_key
        log.info("fake_severa.api_key_changed")

    def api_key_matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._api_key.encode())

    def load_seed(self, source: SeedSource, *, replace: bool = True) -> None:
        """Load seed data, all or nothing (a broken seed raises :class:`SeedError`, store untouched).

        ``replace`` (default) empties the store first and makes the seed the :meth:`reset` point;
        ``replace=False`` adds to / overwrites what is there.
        """
        document = read_seed(source)
        staged = SeveraStore() if replace else self.store.copy()
        apply_seed(staged, document, now=self.clock())
        self.store.take_contents(staged)
        if replace:
            self._seed_document = document

    def reset(self) -> None:
        """Back to the seed: store reloaded, call counters, quota and fault rules cleared, RNG reseeded."""
        self.store.clear()
        apply_seed(self.store, self._seed_document, now=self.clock())
        self.calls.clear()
        self.quota.reset()
        self.faults.clear()
        self.faults.reseed()

    # ------------------------------------------------------------------ hour entries "by hand"
    # What a person does in Severa's own UI: no API call, no quota, no fault injection, but the
    # same validation and the same change time (from ``clock``) that GetHourEntriesChangedSince reads.

    def enter_hour_entry(self, values: Mapping[str, Any]) -> Record:
        """Store an hour entry typed in by hand (seed-style values: ISO dates, numbers as strings …).

        Validated and completed exactly as ``AddNewHourEntry`` does (a new GUID, the account and
        work type filled in); raises :class:`HourEntryRefused` with Severa's words when it would
        refuse the entry.
        """
        record = coerce_record("HourEntry", values, "hour entry")
        return self._by_hand("AddNewHourEntry", record)

    def edit_hour_entry(self, guid: str, changes: Mapping[str, Any]) -> Record:
        """Change members of a stored entry by hand; the others keep their values (unlike the API's
        UpdateHourEntry, which replaces the whole entry). :class:`KeyError` for an unknown GUID."""
        current = self.store.hour_entries.get(guid)
        if current is None:
            raise KeyError(f"no hour entry {guid}")
        entity = SPEC.complex_type("HourEntry")
        record = dict(current)
        for name, value in changes.items():
            if name == "GUID":
                raise SeedError("GUID cannot be changed")
            record[name] = coerce_value(entity.member(name).type, value, f"hour entry.{name}")
        return self._by_hand("UpdateHourEntry", record)

    def remove_hour_entry(self, guid: str) -> bool:
        """Delete an entry by hand (``False`` if there is none). Severa reports no deletions through
        ``*ChangedSince``: the entry simply stops being there."""
        return self.store.hour_entries.delete(guid)

    def _by_hand(self, operation: str, record: Record) -> Record:
        context = Context(self.store, self.clock(), SPEC.operation(operation))
        try:
            stored: Record = HANDLERS[operation](context, hourEntryInfo=record)
        except ServiceFault as fault:
            raise HourEntryRefused(f"{fault.fault.value}: {fault.description}") from None
        return stored

    # ------------------------------------------------------------- customers and invoices "by hand"
    # Severa-side changes the connector will poll for; see adapters.severa.fake.backoffice.

    def add_customer(
        self,
        values: Mapping[str, Any],
        *,
        company: Mapping[str, Any] | None = None,
        head_office_address: Mapping[str, Any] | None = None,
        contact: Mapping[str, Any] | None = None,
    ) -> Record:
        """A new customer with its company and optionally head-office address and contact."""
        return backoffice.add_customer(
            self.store,
            values,
            now=self.clock(),
            company=company,
            head_office_address=head_office_address,
            contact=contact,
        )

    def change_customer(self, guid: str, changes: Mapping[str, Any]) -> Record:
        """Change members of a customer; its ``UpdatedTS`` becomes the clock's time."""
        return backoffice.change_customer(self.store, guid, changes, now=self.clock())

    def set_head_office_address(self, account_guid: str, values: Mapping[str, Any]) -> Record:
        """Create or change the customer's head-office address (an address change, not an account one)."""
        return backoffice.set_head_office_address(self.store, account_guid, values, now=self.clock())

    def add_contact(self, account_guid: str, values: Mapping[str, Any]) -> Record:
        return backoffice.add_contact(self.store, account_guid, values, now=self.clock())

    def change_contact(self, guid: str, changes: Mapping[str, Any]) -> Record:
        return backoffice.change_contact(self.store, guid, changes, now=self.clock())

    def add_invoice(self, values: Mapping[str, Any]) -> Record:
        """A new invoice with its rows; amounts, due date, receiver and reference are filled in."""
        return backoffice.add_invoice(self.store, values, now=self.clock())

    def change_invoice(self, guid: str, changes: Mapping[str, Any]) -> Record:
        return backoffice.change_invoice(self.store, guid, changes, now=self.clock())

    def mark_invoice_status(self, guid: str, status: str) -> Record:
        """Move an invoice to *status* (numbering it or marking it paid where the status says so)."""
        return backoffice.mark_invoice_status(self.store, guid, status, now=self.clock())

    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot for humans and the admin endpoint (never the key)."""
        quota = self.quota.peek(self.clock())
        return {
            "url": self.url if self._base_url else None,
            "calls": dict(self.calls),
            "quota": {"limit": quota.limit, "used": quota.used, "exceeded": quota.exceeded},
            "faults": self.faults.to_json(),
            "store": self.store.counts(),
            "version": self.store.version,
        }

    # ----------------------------------------------------------------------------------- HTTP

    def create_app(self) -> web.Application:
        """The aiohttp application (SOAP endpoint, WSDL, admin API)."""
        from adapters.severa.fake.admin import admin_routes  # admin needs FakeSevera: import late

        app = web.Application(client_max_size=MAX_MESSAGE_SIZE)
        app.router.add_post(ENDPOINT_PATH, self._handle_soap)
        app.router.add_get(ENDPOINT_PATH, self._handle_get)
        app.router.add_get(f"{ENDPOINT_PATH}/WSDL", self._handle_wsdl)
        app.router.add_get(f"{ENDPOINT_PATH}/wsdl", self._handle_wsdl)
        app.router.add_routes(admin_routes(self))
        return app

    def wsdl_for(self, address: str) -> bytes:
        """The shipped WSDL with every port's ``soap:address`` set to *address*."""
        cached = self._wsdl_cache.get(address)
        if cached is None:
            template = _wsdl_template(self._wsdl_path)
            cached = template.replace(
                f"location={quoteattr(DEFAULT_ADDRESS)}".encode(),
                f"location={quoteattr(address)}".encode(),
            )
            if len(self._wsdl_cache) >= _WSDL_CACHE_SIZE:  # the Host header is the client's to choose
                self._wsdl_cache.clear()
            self._wsdl_cache[address] = cached
        return cached

    async def _handle_wsdl(self, request: web.Request) -> web.Response:
        address = f"{request.scheme}://{request.host}{ENDPOINT_PATH}"
        return web.Response(body=self.wsdl_for(address), content_type="text/xml", charset="utf-8")

    async def _handle_get(self, request: web.Request) -> web.Response:
        if {key.lower() for key in request.query} & {"wsdl", "singlewsdl"}:
            return await self._handle_wsdl(request)
        page = (
            "<html><head><title>API Service</title></head><body><h1>API Service</h1>"
            f"<p>Fake Severa. WSDL: <a href='{ENDPOINT_PATH}?wsdl'>{ENDPOINT_PATH}?wsdl</a></p></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _handle_soap(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        content_type = request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("text/xml"):
            return web.Response(
                status=415,
                text=f"Cannot process the message because the content type '{content_type}' was not the "
                f"expected type '{CONTENT_TYPE}'.",
            )
        action = soap_action(request.headers.get("SOAPAction"))
        body = await request.read()
        operation = SPEC.operation_for_action(action)
        if operation is None:
            log.debug("fake_severa.action_not_supported", action=action)
            return _xml(protocol_fault_envelope(action_not_supported(action)), status=500)

        self.calls[operation.name] += 1
        plan = self.faults.plan(operation.name)
        if plan.latency_before:
            await asyncio.sleep(plan.latency_before)
        if plan.before is not None and plan.before.is_transport_failure:
            return self._transport_failure(request, operation, plan.before, started)

        status, payload, outcome = self._answer(operation, body, injected=plan.before)

        if plan.latency_after:
            await asyncio.sleep(plan.latency_after)
        if plan.after is not None:
            if plan.after.is_transport_failure:
                return self._transport_failure(request, operation, plan.after, started)
            quota = self.quota.peek(self.clock())
            fault = self._injected_fault(plan.after)
            status = 500
            payload = service_fault_envelope(fault, quota_headers(quota.limit, quota.used))
            outcome = f"injected:{fault.fault.value}"
        log.debug(
            "fake_severa.call",
            operation=operation.name,
            status=status,
            outcome=outcome,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return _xml(payload, status=status)

    def _answer(
        self, operation: Operation, body: bytes, *, injected: FaultRule | None
    ) -> tuple[int, bytes, str]:
        """Steps 3-5 of the pipeline: (HTTP status, envelope, outcome label)."""
        now = self.clock()
        quota = self.quota.count(now)
        headers = quota_headers(quota.limit, quota.used)
        try:
            if injected is not None:
                raise self._injected_fault(injected)
            if quota.exceeded:
                raise ServiceFault(Fault.QUOTA_LIMIT_EXCEEDED, QUOTA_LIMIT_MESSAGE)
            envelope = parse_envelope(body)
            check_must_understand(envelope)
            if operation.name not in NO_AUTH_OPERATIONS:
                password = web_service_password(envelope)
                if not self.api_key_matches(password):
                    raise ServiceFault(
                        Fault.AUTHENTICATION_FAILURE, AUTH_MISSING if password is None else AUTH_INVALID
                    )
            arguments = self.codec.decode_arguments(operation, envelope)
            result = self._execute(operation, arguments, now)
            response = self.codec.encode_result(operation, result, headers)
            return 200, bytes(etree.tostring(response)), "ok"
        except ServiceFault as fault:
            return 500, service_fault_envelope(fault, headers), fault.fault.value
        except ProtocolFault as fault:
            return 500, protocol_fault_envelope(fault, headers), fault.code
        except MalformedMessage as exc:
            return 400, b"", f"bad_request: {exc}"
        except Exception as exc:
            # A bug in the fake (or an answer the WSDL rejects): answer as WCF does, keep the trace.
            self.internal_errors.append(exc)
            log.exception("fake_severa.internal_error", operation=operation.name)
            return 500, protocol_fault_envelope(internal_error(), headers), "internal_error"

    def _execute(self, operation: Operation, arguments: dict[str, Any], now: dt.datetime) -> Any:
        handler = HANDLERS.get(operation.name)
        if handler is None:
            raise ServiceFault(
                Fault.GENERAL_FAILURE,
                f"{operation.contract}.{operation.name} is not implemented by the fake Severa service.",
            )
        result = handler(Context(self.store, now, operation), **arguments)
        if operation.name in NULL_WHEN_EMPTY and result == []:
            return None
        return result

    @staticmethod
    def _injected_fault(rule: FaultRule) -> ServiceFault:
        if rule.kind is FaultKind.WRONG_KEY:
            return ServiceFault(Fault.AUTHENTICATION_FAILURE, AUTH_INVALID)
        if rule.kind is FaultKind.QUOTA_EXHAUSTED:
            return ServiceFault(Fault.QUOTA_LIMIT_EXCEEDED, QUOTA_LIMIT_MESSAGE)
        if rule.message is None and rule.fault is Fault.AUTHENTICATION_FAILURE and rule.operation:
            # Refused on one operation while the others pass: the key is fine, its user's rights are not.
            return ServiceFault(rule.fault, auth_refused_for(rule.operation))
        return ServiceFault(rule.fault, rule.message or _INJECTED_DESCRIPTIONS[rule.fault])

    @staticmethod
    def _transport_failure(
        request: web.Request, operation: Operation, rule: FaultRule, started: float
    ) -> web.StreamResponse:
        log.debug(
            "fake_severa.call",
            operation=operation.name,
            outcome=f"injected:{rule.kind.value}",
            phase=rule.phase.value,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return transport_failure(request, rule)


def _xml(payload: bytes, *, status: int) -> web.Response:
    if status == 400:
        return web.Response(status=400)
    return web.Response(body=payload, status=status, content_type="text/xml", charset="utf-8")


async def serve(host: str, port: int, api_key: str, seed: SeedSource = None) -> None:
    """Run a fake Severa until cancelled (``seed=None``: the demo organisation; ``{}``: empty).

    Logs the endpoint, WSDL and admin URLs once listening; never the key.
    """
    async with FakeSevera(api_key=api_key, seed=seed, host=host, port=port) as fake:
        log.info("fake_severa.serving", url=fake.url, wsdl=fake.wsdl_url, admin=fake.admin_url)
        await asyncio.Event().wait()  # until the caller cancels us
