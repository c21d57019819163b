"""What the accounting flows share: the outbound ledger's keys and how they publish.

The outbound ledger is the work-hours idempotency ledger, used with keys of their own
(``accounting:<kind>:<Severa GUID>``): the same store, the same cross-pod locks, the same
migrations. Its ``severa_guid`` column holds the *other* side's id there, written
``<system>:<key>`` (``netvisor:1802``), so that a GUID and an accounting key can never be taken for
one another by :meth:`~connector.state.ledger.Ledger.owners_of`. ``version`` is the change stamp
in microseconds since the epoch, which orders a customer's changes as Severa made them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from connector.bus import OutgoingMessage

#: ``notify(exchange, message)``: publish with confirms (:class:`connector.results.NotificationPublisher`
#: for notifications nobody need hear, :meth:`connector.bus.Bus.publish` where a flow of ours
#: consumes the event and its loss would be a lost step).
Notify = Callable[[str, OutgoingMessage], Awaitable[None]]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def outbound_key(kind: str, severa_guid: str) -> str:
    """The ledger key of one Severa entity's outbound record."""
    return f"accounting:{kind}:{severa_guid.lower()}"


def stamp_version(moment: dt.datetime) -> int:
    """A change stamp as a ledger version: microseconds since the epoch (0 before it)."""
    delta = moment.astimezone(dt.UTC) - _EPOCH
    return max(0, delta // dt.timedelta(microseconds=1))


def stored_key(system: str, key: str) -> str:
    """How an accounting key is kept in the ledger's GUID column."""
    return f"{system}:{key}"


def accounting_key_of(stored: str | None) -> str | None:
    """The accounting key back from :func:`stored_key`'s form (None for none)."""
    if not stored or ":" not in stored:
        return None
    return stored.split(":", 1)[1]
