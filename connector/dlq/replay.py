"""Replay: put a frozen selection of dead letters back on their queues, safely, at a bounded rate.

The selection is a list of ids fixed before the first message is sent; dead letters that arrive
while the replay runs (its own canaries failing again included) are not swept in. Per batch::

    claim (one UPDATE: parked/orphaned → replaying under this run)   ← two runs never share a row
    publish each, via the default exchange to its queue, waiting for the broker's confirm
    mark the confirmed ones replayed / put the refused ones back, in one transaction

The dead copy (the store row) is settled only after the confirm, so a crash anywhere leaves rows
in ``replaying`` under a run whose lock died with it; the next replay resends them. A resend may
deliver a message twice, and the flows are idempotent (the work-hours ledger answers
"unchanged"), so nothing is lost and nothing is applied twice.

Batches run one after the other. Timed phase by phase (``bench/dlq_replay.py``, 20,000 on
SQLite), the sequence waits on the store for about a third of its time (claims 5.4 s, settles
1.5 s of 14.7 s). Claiming batch N+1 and settling N-1 while N is published was built and measured:
0.32x/0.33x raw confirmed publish became 0.37x/0.41x, because the process is CPU-bound (the
publishing alone costs what the whole baseline does). It was not kept: a batch claimed ahead and
then not sent (a stop, an error, a cancellation) must go back exactly as it was -- ``parked``, or
``replaying`` under the dead run it was resumed from, with that run's id -- and ``claim`` does
not return the state it replaced, so putting it back would change what the next replay does.
The sequence is simple to reason about under every interruption; a claim that reports the
replaced state is the prerequisite for the overlap.

``canary`` sends the first N, waits for their verdict (:mod:`connector.dlq.canary`) and stops if
any failed again or showed no outcome; ``rate`` caps messages per second (aiolimiter's leaky
bucket, a tenth of a second of burst); a stop event (SIGINT/SIGTERM, or the console shutting down)
ends the run after the batch in flight, with everything sent so far settled -- with a rate, batches
are cut to about :data:`STOP_WITHIN_SECONDS` of messages, so that waiting for one stays short.

A replayed message keeps the W3C trace context it was parked with; with tracing on, each one is
published inside a span that is a child of that context (:func:`connector.tracing.replaying`), so
its new attempt continues the trace it failed in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Final, Protocol

from aiolimiter import AsyncLimiter

from connector import tracing
from connector.bus import OutgoingMessage
from connector.dlq.canary import CanaryVerdict
from connector.dlq.envelope import replay_message
from connector.dlq.records import DeadLetterRecord, RunStatus
from connector.dlq.store import DeadLetterStore
from connector.errors import ConnectorError
from connector.logging import get_logger

log = get_logger(__name__)

Publish = Callable[[str, OutgoingMessage], Awaitable[None]]
Progress = Callable[[int], None]
Prepared = list[DeadLetterRecord]


class CanaryWatchLike(Protocol):
    async def wait(self, timeout: float) -> CanaryVerdict: ...


class CanaryWatching(Protocol):
    def watching(
        self, records: Sequence[DeadLetterRecord], *, replay_id: str, target: str | None
    ) -> AbstractAsyncContextManager[CanaryWatchLike]: ...


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """A replay, decided: the frozen ids in order and how to send them."""

    replay_id: str
    ids: tuple[str, ...]
    target: str | None = None  # --to; None: each dead letter's original queue
    again: bool = False
    canary: int = 0
    canary_only: bool = False
    canary_timeout: float = 60.0
    rate: float | None = None
    batch: int = 500  # DeadLetterSettings.replay_batch's default (a test keeps the two equal)


@dataclass(slots=True)
class ReplayReport:
    replay_id: str
    selected: int
    replayed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    taken_by_others: list[str] = field(default_factory=list)
    canary: CanaryVerdict | None = None
    interrupted: bool = False

    @property
    def stopped_by_canary(self) -> bool:
        return self.canary is not None and not self.canary.ok

    @property
    def not_sent(self) -> int:
        return self.selected - len(self.replayed) - len(self.failed) - len(self.taken_by_others)

    @property
    def status(self) -> RunStatus:
        if self.stopped_by_canary:
            return "canary_failed"
        if self.interrupted:
            return "interrupted"
        if self.failed:
            return "partial"
        return "completed"


#: A stop ends a run after the batch in flight; with a rate, a batch is cut to about this long.
STOP_WITHIN_SECONDS: Final = 5.0


def batch_size(batch: int, rate: float | None) -> int:
    """The batch a run uses: ``batch``, but no more than :data:`STOP_WITHIN_SECONDS` of messages at
    ``rate``, so that Ctrl-C (which waits for the batch in flight) stays prompt at a slow rate."""
    if rate is None:
        return batch
    return max(1, min(batch, math.ceil(rate * STOP_WITHIN_SECONDS)))


def limiter_for(rate: float) -> AsyncLimiter:
    """At most ``rate`` messages per second, with a tenth of a second's worth as burst."""
    capacity = max(1.0, rate / 10)
    return AsyncLimiter(capacity, capacity / rate)


class Replayer:
    """Runs one :class:`ReplayRequest` against a store and a confirmed publisher."""

    def __init__(
        self,
        store: DeadLetterStore,
        publish: Publish,
        *,
        operator: str,
        audit_id: str | None,
        canaries: CanaryWatching | None = None,
        on_progress: Progress | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = store
        self._publish = publish
        self._operator = operator
        self._audit_id = audit_id
        self._canaries = canaries
        self._on_progress = on_progress
        self._clock = clock

    async def run(self, request: ReplayRequest, stop: asyncio.Event | None = None) -> ReplayReport:
        stop = stop or asyncio.Event()
        report = ReplayReport(replay_id=request.replay_id, selected=len(request.ids))
        limiter = limiter_for(request.rate) if request.rate else None
        remaining = list(request.ids)
        if request.canary > 0 and remaining:
            canary_ids, remaining = remaining[: request.canary], remaining[request.canary :]
            await self._canary(request, canary_ids, report, limiter)
            if report.stopped_by_canary or request.canary_only:
                return report
        size = batch_size(request.batch, request.rate)
        batches = [remaining[i : i + size] for i in range(0, len(remaining), size)]
        for ids in batches:
            if stop.is_set():
                report.interrupted = True
                break
            await self._send(request, ids, report, limiter)
        return report

    async def _canary(
        self, request: ReplayRequest, ids: list[str], report: ReplayReport, limiter: AsyncLimiter | None
    ) -> None:
        if self._canaries is None:
            raise ValueError("a canary replay needs a canary watcher")
        records = await self._store.load(ids)
        async with self._canaries.watching(
            records, replay_id=request.replay_id, target=request.target
        ) as watch:
            sent = await self._send(request, ids, report, limiter)
            if not sent:
                report.canary = CanaryVerdict(failed={i: report.failed.get(i, "not sent") for i in ids})
                return
            verdict = await watch.wait(request.canary_timeout)
        # Only what was actually sent can pass or fail.
        verdict.passed = [i for i in verdict.passed if i in sent]
        for dead_letter_id in ids:
            if dead_letter_id in report.failed:
                verdict.failed.setdefault(dead_letter_id, report.failed[dead_letter_id])
        report.canary = verdict
        log.info(
            "dlq.canary_verdict",
            replay_id=request.replay_id,
            passed=len(verdict.passed),
            failed=len(verdict.failed),
            unresolved=len(verdict.unresolved),
        )

    async def _send(
        self, request: ReplayRequest, ids: Sequence[str], report: ReplayReport, limiter: AsyncLimiter | None
    ) -> set[str]:
        """Claim, publish and settle one batch, one step after the other; the confirmed ids."""
        prepared = await self._prepare(request, ids, report)
        confirmed, errors = await self._publish_batch(request, prepared, limiter)
        await self._settle(request, confirmed, errors, report, len(ids))
        return set(confirmed)

    async def _prepare(self, request: ReplayRequest, ids: Sequence[str], report: ReplayReport) -> Prepared:
        """Claim the batch's rows (those another run took meanwhile are reported) and load them."""
        claimed = set(
            await self._store.claim(ids, replay_id=request.replay_id, again=request.again, now=self._clock())
        )
        report.taken_by_others.extend(i for i in ids if i not in claimed)
        return await self._store.load([i for i in ids if i in claimed])

    async def _publish_batch(
        self, request: ReplayRequest, records: Prepared, limiter: AsyncLimiter | None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Publish every record and wait for each confirm: (id → queue confirmed, id → error)."""
        now = self._clock()
        tasks: list[tuple[DeadLetterRecord, str, asyncio.Future[None]]] = []
        confirmed: dict[str, str] = {}
        errors: dict[str, str] = {}
        try:
            for record in records:
                target = request.target or record.original_queue
                message = replay_message(record, replay_id=request.replay_id, target_queue=target, now=now)
                if limiter is not None:
                    await limiter.acquire()
                # Publishes of a batch are pipelined on the confirm channel (sent in order,
                # confirmed together); each one still waits for its own confirm before it counts.
                tasks.append(
                    (record, target, asyncio.ensure_future(self._publish_one(request, record, message)))
                )
            for record, target, task in tasks:
                try:
                    await task
                except ConnectorError as exc:
                    errors[record.id] = exc.message
                except Exception as exc:  # never leave a claimed row behind for an unexpected error
                    errors[record.id] = f"{type(exc).__name__}: {exc}"
                else:
                    confirmed[record.id] = target
        except BaseException:
            for _, _, task in tasks:
                task.cancel()
            await asyncio.gather(*(task for _, _, task in tasks), return_exceptions=True)
            raise
        return confirmed, errors

    async def _publish_one(
        self, request: ReplayRequest, record: DeadLetterRecord, message: OutgoingMessage
    ) -> None:
        """Publish one replayed message inside a span that continues the trace it was parked with."""
        with tracing.replaying(
            message.headers, queue=message.routing_key, dead_letter_id=record.id, replay_id=request.replay_id
        ):
            await self._publish("", message)

    async def _settle(
        self,
        request: ReplayRequest,
        confirmed: dict[str, str],
        errors: dict[str, str],
        report: ReplayReport,
        size: int,
    ) -> None:
        """Mark what the broker confirmed replayed and put what it refused back (one step each)."""
        settled = self._clock()
        await self._store.mark_replayed(
            confirmed,
            replay_id=request.replay_id,
            operator=self._operator,
            audit_id=self._audit_id,
            now=settled,
        )
        await self._store.release(
            errors, replay_id=request.replay_id, operator=self._operator, audit_id=self._audit_id, now=settled
        )
        report.replayed.extend(confirmed)
        report.failed.update(errors)
        if errors:
            log.warning("dlq.replay_publish_failed", replay_id=request.replay_id, failed=len(errors))
        if self._on_progress is not None:
            self._on_progress(size)
