"""The fake's admin HTTP API: steer a running fake from another process (demos, e2e, k8s).

Everything here is also reachable in-process through :class:`FakeSevera`; these routes exist for
when the fake runs as its own process (``severa-connector fake-severa``). JSON in, JSON out; a bad
request answers 400 with ``{"error": "..."}``. There is no authentication: bind the fake to
loopback or a private network only.

====================================  =============================================================
``GET    /admin/state``               calls per operation, quota, active fault rules, store counts
``GET    /admin/faults``              active fault rules
``POST   /admin/faults``              add one rule (object) or several (list); 201 with the rules
``DELETE /admin/faults``              remove every rule
``DELETE /admin/faults/{id}``         remove one rule (404 if unknown)
``POST   /admin/reset``               back to the seed; counters, quota and rules cleared
``POST   /admin/seed``                load a seed document (JSON body); ``?replace=false`` merges
``POST   /admin/api-key``             ``{"api_key": "..."}``: rotate the key
``POST   /admin/quota``               ``{"limit": n, "used": m}`` and/or ``{"exhaust": true}``
``DELETE /admin/calls``               zero the per-operation call counters
``POST   /admin/hour-entries``        an entry typed in by hand (seed-style JSON); 201 with it
``PATCH  /admin/hour-entries/{guid}`` change members of an entry by hand; 200 with it (404 if unknown)
``DELETE /admin/hour-entries/{guid}`` delete an entry by hand (404 if unknown)
``POST   /admin/customers``           a new customer: its members, plus optional ``Company``,
                                      ``HeadOfficeAddress`` and ``Contact`` objects; 201 with it
``PATCH  /admin/customers/{guid}``    change members of a customer; 200 with it
``PUT    /admin/customers/{guid}/head-office-address``
                                      create or change the head-office address; 200 with it
``POST   /admin/customers/{guid}/contacts``  a new contact person; 201 with it
``PATCH  /admin/contacts/{guid}``     change a contact person; 200 with it
``POST   /admin/invoices``            a new invoice with ``InvoiceRows``; 201 with it
``PATCH  /admin/invoices/{guid}``     change members of an invoice (rows replaced if given)
``POST   /admin/invoices/{guid}/status``  ``{"status": "Paid"}``: mark the invoice's status
``GET    /admin/invoices/{guid}/log`` what ``AddNewInvoiceLogEntry`` wrote for the invoice
====================================  =============================================================

Entries made or changed by hand get the fake's current time as their change time, as the ones
written through the API do: ``GetHourEntriesChangedSince`` finds them. Customers, their addresses
and contacts, and invoices changed here are stamped the same way (customers' ``UpdatedTS`` too), so
``GetCustomersChangedSince`` and its address/contact flags find them. An unknown GUID in the path
is a 404; a change Severa would refuse is a 400 saying why.

Fault rule JSON: ``{"kind": "latency|http_error|drop|soap_fault|wrong_key|quota_exhausted",
"operation": "AddNewHourEntry" | null, "probability": 1.0, "times": 3 | null,
"phase": "before|after", "seconds": 0.5, "status": 503, "body": "…",
"fault": "Validation|NotFound|NoPermission|GeneralFailure|AuthenticationFailure|QuotaLimitExceeded",
"message": "…"}`` (only ``kind`` is required).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.severa.fake.faults import FaultRule, FaultRuleError
from adapters.severa.fake.seed import SeedError

if TYPE_CHECKING:
    from adapters.severa.fake.server import FakeSevera

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Records hold datetimes, Decimals and bytes: JSON gets their ``str`` (ISO dates, exact numbers).
_dumps = functools.partial(json.dumps, default=str)


class _BadRequest(Exception):
    pass


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"body is not JSON: {exc}") from exc


def _guarded(handler: _Handler) -> _Handler:
    """Turn the admin API's own validation errors into 400 answers."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (_BadRequest, FaultRuleError, SeedError, ValueError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return wrapper


def admin_routes(fake: FakeSevera) -> list[web.RouteDef]:
    """The admin routes bound to *fake*."""

    async def state(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.state())

    async def list_faults(request: web.Request) -> web.StreamResponse:
        return web.json_response(fake.faults.to_json())

    async def add_faults(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        items = body if isinstance(body, list) else [body]
        if not all(isinstance(item, dict) for item in items):
            raise _BadRequest("expected a rule object or a list of rule objects")
        rules = [FaultRule.from_json(item) for item in items]  # all valid before any is added
        added = fake.faults.extend(rules)
        payload: Any = [rule.to_json() for rule in added]
        return web.json_response(payload if isinstance(body, list) else payload[0], status=201)

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        fake.faults.clear()
        return web.Response(status=204)

    async def remove_fault(request: web.Request) -> web.StreamResponse:
        try:
            rule_id = int(request.match_info["rule_id"])
        except ValueError as exc:
            raise _BadRequest("rule id must be an integer") from exc
        if not fake.faults.remove(rule_id):
            return web.json_response({"error": f"no fault rule {rule_id}"}, status=404)
        return web.Response(status=204)

    async def reset(request: web.Request) -> web.StreamResponse:
        fake.reset()
        return web.Response(status=204)

    async def seed(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _BadRequest("the seed must be a JSON object of sections")
        replace = request.query.get("replace", "true").lower() not in ("false", "0", "no")
        fake.load_seed(body, replace=replace)
        return web.json_response(fake.store.counts())

    async def api_key(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        key = body.get("api_key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise _BadRequest('expected {"api_key": "<non-empty string>"}')
        fake.set_api_key(key)
        return web.Response(status=204)

    async def quota(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) - {"limit", "used", "exhaust"}:
            raise _BadRequest('expected {"limit": int, "used": int, "exhaust": bool} (any of them)')
        for key in ("limit", "used"):
            if key in body and (not isinstance(body[key], int) or isinstance(body[key], bool)):
                raise _BadRequest(f"{key} must be an integer")
        fake.quota.set(limit=body.get("limit"), used=body.get("used"))
        if body.get("exhaust"):
            fake.quota.exhaust()
        return web.json_response(fake.state()["quota"])

    async def clear_calls(request: web.Request) -> web.StreamResponse:
        fake.calls.clear()
        return web.Response(status=204)

    async def enter_hour_entry(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _BadRequest("expected an HourEntry object")
        return web.json_response(fake.enter_hour_entry(body), status=201, dumps=_dumps)

    async def edit_hour_entry(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _BadRequest("expected an object of the HourEntry members to change")
        guid = request.match_info["guid"]
        if guid not in fake.store.hour_entries:
            return web.json_response({"error": f"no hour entry {guid}"}, status=404)
        return web.json_response(fake.edit_hour_entry(guid, body), dumps=_dumps)

    async def remove_hour_entry(request: web.Request) -> web.StreamResponse:
        guid = request.match_info["guid"]
        if not fake.remove_hour_entry(guid):
            return web.json_response({"error": f"no hour entry {guid}"}, status=404)
        return web.Response(status=204)

    async def object_body(request: web.Request, what: str) -> dict[str, Any]:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _BadRequest(f"expected {what} object")
        return body

    def found(action: Callable[[], Any], *, status: int = 200) -> web.StreamResponse:
        """Run a change by hand; an unknown GUID (KeyError from the lookup) is a 404."""
        try:
            result = action()
        except KeyError as exc:
            if str(exc.args[0] if exc.args else "").startswith("no "):
                return web.json_response({"error": exc.args[0]}, status=404)
            raise
        return web.json_response(result, status=status, dumps=_dumps)

    async def add_customer(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "a Customer")
        nested = {key: body.pop(key, None) for key in ("Company", "HeadOfficeAddress", "Contact")}
        for key, value in nested.items():
            if value is not None and not isinstance(value, dict):
                raise _BadRequest(f"{key} must be an object")
        return web.json_response(
            fake.add_customer(
                body,
                company=nested["Company"],
                head_office_address=nested["HeadOfficeAddress"],
                contact=nested["Contact"],
            ),
            status=201,
            dumps=_dumps,
        )

    async def change_customer(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "an object of the Customer members to change")
        return found(lambda: fake.change_customer(request.match_info["guid"], body))

    async def head_office_address(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "an Address")
        return found(lambda: fake.set_head_office_address(request.match_info["guid"], body))

    async def add_contact(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "a contact")
        return found(lambda: fake.add_contact(request.match_info["guid"], body), status=201)

    async def change_contact(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "an object of the contact members to change")
        return found(lambda: fake.change_contact(request.match_info["guid"], body))

    async def add_invoice(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "an Invoice")
        return web.json_response(fake.add_invoice(body), status=201, dumps=_dumps)

    async def change_invoice(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, "an object of the Invoice members to change")
        return found(lambda: fake.change_invoice(request.match_info["guid"], body))

    async def invoice_status(request: web.Request) -> web.StreamResponse:
        body = await object_body(request, 'a {"status": "<name>"}')
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise _BadRequest('expected {"status": "<invoice status name>"}')
        return found(lambda: fake.mark_invoice_status(request.match_info["guid"], status))

    async def invoice_log(request: web.Request) -> web.StreamResponse:
        guid = request.match_info["guid"]
        if guid not in fake.store.invoices:
            return web.json_response({"error": f"no invoice {guid}"}, status=404)
        return web.json_response(fake.store.invoice_log.get(guid, []), dumps=_dumps)

    return [
        web.get("/admin/state", _guarded(state)),
        web.get("/admin/faults", _guarded(list_faults)),
        web.post("/admin/faults", _guarded(add_faults)),
        web.delete("/admin/faults", _guarded(clear_faults)),
        web.delete("/admin/faults/{rule_id}", _guarded(remove_fault)),
        web.post("/admin/reset", _guarded(reset)),
        web.post("/admin/seed", _guarded(seed)),
        web.post("/admin/api-key", _guarded(api_key)),
        web.post("/admin/quota", _guarded(quota)),
        web.delete("/admin/calls", _guarded(clear_calls)),
        web.post("/admin/hour-entries", _guarded(enter_hour_entry)),
        web.patch("/admin/hour-entries/{guid}", _guarded(edit_hour_entry)),
        web.delete("/admin/hour-entries/{guid}", _guarded(remove_hour_entry)),
        web.post("/admin/customers", _guarded(add_customer)),
        web.patch("/admin/customers/{guid}", _guarded(change_customer)),
        web.put("/admin/customers/{guid}/head-office-address", _guarded(head_office_address)),
        web.post("/admin/customers/{guid}/contacts", _guarded(add_contact)),
        web.patch("/admin/contacts/{guid}", _guarded(change_contact)),
        web.post("/admin/invoices", _guarded(add_invoice)),
        web.patch("/admin/invoices/{guid}", _guarded(change_invoice)),
        web.post("/admin/invoices/{guid}/status", _guarded(invoice_status)),
        web.get("/admin/invoices/{guid}/log", _guarded(invoice_log)),
    ]
