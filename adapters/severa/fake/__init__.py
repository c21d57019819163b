"""A fake Visma Severa SOAP service that behaves like the real one over real HTTP.

Whatever works against it should work against Severa: it serves the shipped WSDL, parses and
answers through zeep from that same WSDL, enforces the API key and the daily quota, and sends
WCF-shaped faults. On top it lets tests inject latency, HTTP errors, dropped connections and typed
faults, and look into its store and call counters.

Start it in-process with :class:`FakeSevera` (``async with FakeSevera(api_key=..., seed=...)``), or
as a process with :func:`serve` / ``python -m adapters.severa.fake``.
"""

from adapters.severa.fake.backoffice import ChangeRefused
from adapters.severa.fake.faults import FaultInjector, FaultKind, FaultRule, FaultRuleError, Phase
from adapters.severa.fake.handlers import NULL_WHEN_EMPTY
from adapters.severa.fake.quota import DEFAULT_DAILY_QUOTA, QuotaMeter
from adapters.severa.fake.seed import DEMO_SEED_PATH, SeedError, SeedSource
from adapters.severa.fake.server import ENDPOINT_PATH, NO_AUTH_OPERATIONS, FakeSevera, HourEntryRefused, serve
from adapters.severa.fake.store import Record, SeveraStore, Table

__all__ = [
    "DEFAULT_DAILY_QUOTA",
    "DEMO_SEED_PATH",
    "ENDPOINT_PATH",
    "NO_AUTH_OPERATIONS",
    "NULL_WHEN_EMPTY",
    "ChangeRefused",
    "FakeSevera",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "FaultRuleError",
    "HourEntryRefused",
    "Phase",
    "QuotaMeter",
    "Record",
    "SeedError",
    "SeedSource",
    "SeveraStore",
    "Table",
    "serve",
]
