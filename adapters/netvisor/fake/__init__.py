"""A fake Visma Netvisor XML API that behaves like the real one over real HTTP.

Built from our Netvisor API notes so that what works against the fake works against the service:
it verifies the HMAC-SHA256 signature of every request (keys, URL as sent, time stamp window,
TransactionId reuse), enforces each resource's element order and
mandatory elements, parses bodies defensively, answers in Netvisor's XML shapes (decimal commas,
its casing quirks, ``FAILED`` + ``CODE :: text``), refuses a request overlapping another one for
the same company, and keeps customers, invoices, payments and credit-note matches in memory.
Every refusal is counted by kind, so a suite can assert that nothing was refused for ordering,
signature or concurrency. Tests can inject latency, HTTP errors, dropped connections, any
Netvisor error code and maintenance windows, and steer it through an admin API.

Start it in-process with :class:`FakeNetvisor` (``async with FakeNetvisor() as fake``), or as a
process with :func:`serve` / ``python -m adapters.netvisor.fake`` / ``severa-connector
fake-netvisor``.
"""

from adapters.netvisor.fake.auth import (
    DEFAULT_CUSTOMER_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_ORGANISATION_ID,
    DEFAULT_PARTNER_ID,
    DEFAULT_PARTNER_KEY,
    DEFAULT_TIMESTAMP_TOLERANCE,
    Credentials,
)
from adapters.netvisor.fake.behaviour import Behaviour, Duplicates
from adapters.netvisor.fake.errors import HTTP_STATUS, ErrorCode, NetvisorError, RefusalKind
from adapters.netvisor.fake.faults import FaultInjector, FaultKind, FaultRule, FaultRuleError, Phase
from adapters.netvisor.fake.refusals import Refusals
from adapters.netvisor.fake.resources import RESOURCES
from adapters.netvisor.fake.seed import DEMO_SEED_PATH, SeedError, SeedSource
from adapters.netvisor.fake.server import FakeNetvisor, RequestRecord, serve
from adapters.netvisor.fake.store import Customer, Invoice, NetvisorStore, Payment

__all__ = [
    "DEFAULT_CUSTOMER_ID",
    "DEFAULT_CUSTOMER_KEY",
    "DEFAULT_ORGANISATION_ID",
    "DEFAULT_PARTNER_ID",
    "DEFAULT_PARTNER_KEY",
    "DEFAULT_TIMESTAMP_TOLERANCE",
    "DEMO_SEED_PATH",
    "HTTP_STATUS",
    "RESOURCES",
    "Behaviour",
    "Credentials",
    "Customer",
    "Duplicates",
    "ErrorCode",
    "FakeNetvisor",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "FaultRuleError",
    "Invoice",
    "NetvisorError",
    "NetvisorStore",
    "Payment",
    "Phase",
    "RefusalKind",
    "Refusals",
    "RequestRecord",
    "SeedError",
    "SeedSource",
    "serve",
]
