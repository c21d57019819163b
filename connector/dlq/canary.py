"""Canary verdicts: did the first N replayed messages go through, or did they fail again?

A replay's success is not the broker's confirm -- that only says the message is back on its queue
-- but what the connector then does with it. Two signals, watched from *before* the canaries are
published so that none is missed:

* the flow's result events (``workhour.synced`` / ``workhour.failed`` on the results exchange,
  matched on the event id): a synced canary passed, a failed one failed;
* the dead-letter store, read every ``poll`` seconds: a new dead letter carrying
  ``x-replayed-from = <a canary's id>`` is a canary that failed again (this covers messages whose
  body has no event id, and flows without result events). The watch only reads the store: the
  connector pods (or ``dlq ingest --follow``) put what comes back to the DLQ there, so a replay
  never takes messages off the broker itself.

A canary with neither signal within the timeout counts against the replay ("no outcome within
60 s: is the connector consuming q.workhours?"): better to stop than to replay thousands of
messages into a queue nobody reads. For a flow without result events, no failure within the
timeout is the only evidence available and counts as a pass.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage

from connector.bus import Bus
from connector.dlq.contracts import contract_for
from connector.dlq.records import DeadLetterRecord
from connector.dlq.selection import Filter
from connector.dlq.store import DeadLetterStore
from connector.logging import get_logger
from connector.topology import Names

log = get_logger(__name__)


@dataclass(slots=True)
class CanaryVerdict:
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unresolved: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unresolved


class CanaryWatch:
    """Outcomes of one replay's canaries, as they arrive."""

    def __init__(
        self,
        records: Sequence[DeadLetterRecord],
        *,
        replay_id: str,
        target: str | None,
        store: DeadLetterStore,
        by_event_id: dict[str, str],
        confirmable: set[str],
        poll: float,
    ) -> None:
        self._ids = [r.id for r in records]
        self._queues = {r.id: target or r.original_queue for r in records}
        self._replay_id = replay_id
        self._store = store
        self._by_event_id = by_event_id
        self._confirmable = confirmable
        self._poll = poll
        self.verdict = CanaryVerdict()
        self._changed = asyncio.Event()

    def on_result(self, routing_key: str, body: bytes, *, synced_key: str, failed_key: str) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        event_id = str(data.get("event_id") or "").lower() if isinstance(data, dict) else ""
        dead_letter_id = self._by_event_id.get(event_id)
        if dead_letter_id is None or self._resolved(dead_letter_id):
            return
        if routing_key == synced_key:
            self.verdict.passed.append(dead_letter_id)
        elif routing_key == failed_key:
            reason = data.get("reason") if isinstance(data, dict) else None
            self.verdict.failed[dead_letter_id] = f"failed again: {reason or 'see the DLQ'}"
        self._changed.set()

    def _resolved(self, dead_letter_id: str) -> bool:
        return dead_letter_id in self.verdict.passed or dead_letter_id in self.verdict.failed

    def _pending(self) -> list[str]:
        return [i for i in self._ids if not self._resolved(i)]

    async def _check_dlq(self) -> None:
        back = await self._store.find(Filter(replay_ids=(self._replay_id,), statuses=frozenset()))
        for record in back:
            source = record.replayed_from
            if source in self._ids and source not in self.verdict.failed:
                if source in self.verdict.passed:
                    self.verdict.passed.remove(source)
                self.verdict.failed[source] = f"failed again: {record.reason}: {record.error_message}"

    async def wait(self, timeout: float) -> CanaryVerdict:
        """Until every canary has an outcome or ``timeout`` seconds passed; then the verdict."""
        deadline = time.monotonic() + timeout
        while True:
            await self._check_dlq()
            pending = self._pending()
            if not any(i in self._confirmable for i in pending) or self.verdict.failed:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._changed.clear()
            with suppress(TimeoutError):
                async with asyncio.timeout(min(self._poll, remaining)):
                    await self._changed.wait()
        if not self.verdict.failed:
            for dead_letter_id in self._pending():
                if dead_letter_id in self._confirmable:
                    self.verdict.unresolved[dead_letter_id] = (
                        f"no outcome within {timeout:g} s: is the connector consuming "
                        f"{self._queues[dead_letter_id]}?"
                    )
                else:
                    self.verdict.passed.append(dead_letter_id)  # no failure seen: all we can know
        return self.verdict


class CanaryWatcher:
    """Sets up a :class:`CanaryWatch` before the canaries are published."""

    def __init__(self, bus: Bus, store: DeadLetterStore, names: Names, *, poll: float = 0.25) -> None:
        self._bus = bus
        self._store = store
        self._names = names
        self._poll = poll

    @asynccontextmanager
    async def watching(
        self, records: Sequence[DeadLetterRecord], *, replay_id: str, target: str | None
    ) -> AsyncIterator[CanaryWatch]:
        by_event_id: dict[str, str] = {}
        exchanges: dict[str, tuple[str, str]] = {}
        confirmable: set[str] = set()
        for record in records:
            contract = contract_for(record, self._names)
            if contract is None or contract.results_exchange is None:
                continue
            event_id = contract.event_id(record)
            if event_id is None or contract.synced_key is None or contract.failed_key is None:
                continue
            by_event_id[event_id] = record.id
            confirmable.add(record.id)
            exchanges[contract.results_exchange(self._names)] = (contract.synced_key, contract.failed_key)
        watch = CanaryWatch(
            records,
            replay_id=replay_id,
            target=target,
            store=self._store,
            by_event_id=by_event_id,
            confirmable=confirmable,
            poll=self._poll,
        )
        channel = await self._bus.connection.channel()
        try:
            for exchange, (synced_key, failed_key) in exchanges.items():
                queue = await channel.declare_queue(exclusive=True, auto_delete=True)
                await queue.bind(exchange, "#")

                async def on_message(
                    message: AbstractIncomingMessage, synced: str = synced_key, failed: str = failed_key
                ) -> None:
                    watch.on_result(
                        message.routing_key or "", message.body, synced_key=synced, failed_key=failed
                    )

                await queue.consume(on_message, no_ack=True)
            yield watch
        finally:
            if not channel.is_closed:
                await channel.close()
