"""The fake Netvisor's admin HTTP API: steer a running fake from another process (demos, e2e, compose).

Everything here is also reachable in-process through :class:`~.server.FakeNetvisor`; these routes
exist for when the fake runs as its own process (``severa-connector fake-netvisor``). JSON in, JSON
out; a bad request answers 400 with ``{"error": "..."}``, an unknown NetvisorKey 404. Like the fake
Severa's, it has **no authentication**: bind the fake to loopback or a private network only. No
answer ever holds a key.

========================================  ==========================================================
``GET    /admin/state``                   calls, refusals, in-flight, faults, behaviour, store counts
``POST   /admin/reset``                   back to the seed; counters, log, faults, TransactionIds cleared
``POST   /admin/seed``                    load a seed document (JSON body); ``?replace=false`` merges
``GET    /admin/refusals``                refusal counters by kind
``DELETE /admin/refusals``                zero them
``GET    /admin/requests``                the request log (``?limit=N``: the last N); no secrets
``DELETE /admin/requests``                empty it
``GET    /admin/in-flight``               requests in flight per organisation
``GET    /admin/behaviour``               the tunable behaviours (:mod:`.behaviour`)
``PATCH  /admin/behaviour``               change some of them
``POST   /admin/keys``                    ``{"customer_key": …, "partner_key": …}`` (either): rotate
``GET    /admin/faults``                  active fault rules
``POST   /admin/faults``                  add one rule (object) or several (list); 201 with them
``DELETE /admin/faults``                  remove every rule
``DELETE /admin/faults/{id}``             remove one rule (404 if unknown)
``POST   /admin/faults/release``          end every injected latency being waited out now
``POST   /admin/maintenance``             ``{"seconds": N}``: SYSTEM_MAINTENANCE for N seconds; 201
``DELETE /admin/maintenance``             end every maintenance window
``GET    /admin/customers``               every customer
``POST   /admin/customers``               a new customer (:mod:`.seed` shape); 201 with it
``GET    /admin/customers/{key}``         one customer
``PATCH  /admin/customers/{key}``         change some members (the others stay)
``GET    /admin/invoices``                every sales invoice
``POST   /admin/invoices``                a new invoice (:mod:`.seed` shape); 201 with it
``GET    /admin/invoices/{key}``          one invoice
``PATCH  /admin/invoices/{key}``          change some fields (lines replaced if given)
``POST   /admin/invoices/{key}/status``   ``{"status": "paid"}`` (what updatesalesinvoicestatus.nv sets)
``POST   /admin/invoices/{key}/payments`` register a payment: ``{"sum": "12.40", "date": "2025-06-10",
                                          "name": …}``, all optional (default: what is open, today);
                                          201 with the SalesPayment; the invoice is ``paid`` when
                                          nothing is left open, its last-modified time moves
``POST   /admin/invoices/{key}/paid``     pay it in full today (201 with the SalesPayment)
``GET    /admin/payments``                every SalesPayment
``GET    /admin/credit-note-matches``     every credit-note match
========================================  ==========================================================

Fault rule JSON: ``{"kind": "latency|http_error|drop|error|maintenance", "resource":
"salesinvoice.nv" | null, "probability": 1.0, "times": 3 | null, "phase": "before|after",
"seconds": 0.5, "status": 503, "body": "…", "code": "TECHNICAL_ERROR|PERIOD_LOCK|…",
"message": "…"}`` (only ``kind`` is required; see :mod:`.faults`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.netvisor.fake.errors import NetvisorError, RefusalKind
from adapters.netvisor.fake.faults import FaultKind, FaultRule, FaultRuleError
from adapters.netvisor.fake.seed import SeedError, date

if TYPE_CHECKING:
    from adapters.netvisor.fake.server import FakeNetvisor

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(Exception):
    pass


class _NotFound(Exception):
    pass


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"body is not JSON: {exc}") from exc


async def _object(request: web.Request, what: str) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise _BadRequest(f"expected {what} object")
    return body


def _key(request: web.Request) -> int:
    try:
        return int(request.match_info["key"])
    except ValueError as exc:
        raise _BadRequest("a NetvisorKey is an integer") from exc


def _guarded(handler: _Handler) -> _Handler:
    """The admin API's own errors as 400/404 answers; Netvisor's refusals say their code."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _NotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except NetvisorError as exc:
            status = 404 if exc.refusal is RefusalKind.NOT_FOUND else 400
            return web.json_response({"error": exc.status_text, "code": exc.code.value}, status=status)
        except (_BadRequest, FaultRuleError, SeedError, ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return wrapper


def admin_routes(fake: FakeNetvisor) -> list[web.RouteDef]:
    """The admin routes bound to *fake*."""

    async def state(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.state())

    async def reset(request: web.Request) -> web.StreamResponse:
        fake.reset()
        return web.Response(status=204)

    async def seed(request: web.Request) -> web.StreamResponse:
        body = await _object(request, "a seed document")
        replace = request.query.get("replace", "true").lower() not in ("false", "0", "no")
        fake.load_seed(body, replace=replace)
        return web.json_response(fake.store.counts())

    async def refusals(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.refusals.to_json())

    async def clear_refusals(request: web.Request) -> web.StreamResponse:
        fake.refusals.clear()
        return web.Response(status=204)

    async def requests(request: web.Request) -> web.StreamResponse:
        records = [record.to_json() for record in fake.requests]
        if "limit" in request.query:
            try:
                limit = int(request.query["limit"])
            except ValueError as exc:
                raise _BadRequest("limit must be an integer") from exc
            records = records[-limit:] if limit > 0 else []
        return web.json_response(records)

    async def clear_requests(request: web.Request) -> web.StreamResponse:
        fake.requests.clear()
        return web.Response(status=204)

    async def in_flight(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.state()["in_flight"])

    async def behaviour(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.behaviour.to_json())

    async def change_behaviour(request: web.Request) -> web.StreamResponse:
        fake.behaviour.update(await _object(request, "a behaviour"))
        return web.json_response(fake.behaviour.to_json())

    async def keys(request: web.Request) -> web.StreamResponse:
        body = await _object(request, 'a {"customer_key": …, "partner_key": …}')
        if set(body) - {"customer_key", "partner_key"} or not body:
            raise _BadRequest('expected {"customer_key": "…", "partner_key": "…"} (either or both)')
        if not all(isinstance(value, str) and value for value in body.values()):
            raise _BadRequest("keys must be non-empty strings")
        fake.rotate_keys(customer_key=body.get("customer_key"), partner_key=body.get("partner_key"))
        return web.Response(status=204)

    async def list_faults(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.faults.to_json())

    async def add_faults(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        items = body if isinstance(body, list) else [body]
        if not all(isinstance(item, dict) for item in items):
            raise _BadRequest("expected a rule object or a list of rule objects")
        rules = [FaultRule.from_json(item) for item in items]  # all valid before any is added
        added = [rule.to_json() for rule in fake.faults.extend(rules)]
        return web.json_response(added if isinstance(body, list) else added[0], status=201)

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        fake.faults.clear()
        return web.Response(status=204)

    async def remove_fault(request: web.Request) -> web.StreamResponse:
        try:
            rule_id = int(request.match_info["rule_id"])
        except ValueError as exc:
            raise _BadRequest("rule id must be an integer") from exc
        if not fake.faults.remove(rule_id):
            raise _NotFound(f"no fault rule {rule_id}")
        return web.Response(status=204)

    async def release(request: web.Request) -> web.StreamResponse:
        fake.release_latency()
        return web.Response(status=204)

    async def maintenance(request: web.Request) -> web.StreamResponse:
        body = await _object(request, 'a {"seconds": N}')
        if set(body) - {"seconds", "resource", "message"}:
            raise _BadRequest('expected {"seconds": N, "resource": …, "message": …}')
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise _BadRequest("seconds must be a number")
        rule = fake.faults.maintenance_window(
            seconds, resource=body.get("resource"), message=body.get("message")
        )
        return web.json_response(rule.to_json(), status=201)

    async def end_maintenance(request: web.Request) -> web.StreamResponse:
        fake.faults.clear(FaultKind.MAINTENANCE)
        return web.Response(status=204)

    async def customers(request: web.Request) -> web.StreamResponse:
        return web.json_response([c.to_json() for c in fake.store.customers.values()])

    async def add_customer(request: web.Request) -> web.StreamResponse:
        customer = fake.add_customer(await _object(request, "a customer"))
        return web.json_response(customer.to_json(), status=201)

    async def customer(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.store.customer(_key(request)).to_json())

    async def change_customer(request: web.Request) -> web.StreamResponse:
        changes = await _object(request, "a customer changes")
        return web.json_response(fake.change_customer(_key(request), changes).to_json())

    async def invoices(request: web.Request) -> web.StreamResponse:
        return web.json_response([i.to_json() for i in fake.store.invoices.values()])

    async def add_invoice(request: web.Request) -> web.StreamResponse:
        invoice = fake.add_invoice(await _object(request, "an invoice"))
        return web.json_response(invoice.to_json(), status=201)

    async def invoice(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.store.invoice(_key(request)).to_json())

    async def change_invoice(request: web.Request) -> web.StreamResponse:
        changes = await _object(request, "an invoice changes")
        return web.json_response(fake.change_invoice(_key(request), changes).to_json())

    async def invoice_status(request: web.Request) -> web.StreamResponse:
        body = await _object(request, 'a {"status": "…"}')
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise _BadRequest(
                'expected {"status": "<open|overdue|reminded|requested|collected|paid|creditloss>"}'
            )
        return web.json_response(fake.set_invoice_status(_key(request), status).to_json())

    async def payment(request: web.Request) -> web.StreamResponse:
        body = await _object(request, "a payment")
        unknown = set(body) - {"sum", "date", "name", "foreign_currency_amount"}
        if unknown:
            raise _BadRequest(f"unknown payment field(s) {sorted(unknown)}")
        paid_on: dt.date | None = date(body["date"], "date") if body.get("date") else None
        made = fake.register_payment(
            _key(request),
            amount=body.get("sum"),
            date=paid_on,
            name=body.get("name"),
            foreign_currency_amount=body.get("foreign_currency_amount"),
        )
        return web.json_response(made.to_json(), status=201)

    async def paid(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.mark_invoice_paid(_key(request)).to_json(), status=201)

    async def payments(request: web.Request) -> web.StreamResponse:
        return web.json_response([p.to_json() for p in fake.store.payments.values()])

    async def matches(request: web.Request) -> web.StreamResponse:
        return web.json_response([m.to_json() for m in fake.store.credit_note_matches])

    routes: list[tuple[str, str, _Handler]] = [
        ("GET", "/admin/state", state),
        ("POST", "/admin/reset", reset),
        ("POST", "/admin/seed", seed),
        ("GET", "/admin/refusals", refusals),
        ("DELETE", "/admin/refusals", clear_refusals),
        ("GET", "/admin/requests", requests),
        ("DELETE", "/admin/requests", clear_requests),
        ("GET", "/admin/in-flight", in_flight),
        ("GET", "/admin/behaviour", behaviour),
        ("PATCH", "/admin/behaviour", change_behaviour),
        ("POST", "/admin/keys", keys),
        ("GET", "/admin/faults", list_faults),
        ("POST", "/admin/faults", add_faults),
        ("DELETE", "/admin/faults", clear_faults),
        ("POST", "/admin/faults/release", release),
        ("DELETE", "/admin/faults/{rule_id}", remove_fault),
        ("POST", "/admin/maintenance", maintenance),
        ("DELETE", "/admin/maintenance", end_maintenance),
        ("GET", "/admin/customers", customers),
        ("POST", "/admin/customers", add_customer),
        ("GET", "/admin/customers/{key}", customer),
        ("PATCH", "/admin/customers/{key}", change_customer),
        ("GET", "/admin/invoices", invoices),
        ("POST", "/admin/invoices", add_invoice),
        ("GET", "/admin/invoices/{key}", invoice),
        ("PATCH", "/admin/invoices/{key}", change_invoice),
        ("POST", "/admin/invoices/{key}/status", invoice_status),
        ("POST", "/admin/invoices/{key}/payments", payment),
        ("POST", "/admin/invoices/{key}/paid", paid),
        ("GET", "/admin/payments", payments),
        ("GET", "/admin/credit-note-matches", matches),
    ]
    return [web.route(method, path, _guarded(handler)) for method, path, handler in routes]
