"""Ingest and replay against the real RabbitMQ: nothing lost, nothing twice, nothing swept in.

The "connector" here is either absent (replayed messages wait in the work queue, where the test
reads them) or a stand-in that dead-letters every replayed message again with the real
:class:`~connector.dlq.DeadLetterer` while a :class:`~connector.dlq.ingest.DeadLetterIngester`
stores what comes back, as the connector pods do, to see a canary fail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelNotFoundEntity

from connector.bus import Bus
from connector.config import DlqSettings
from connector.dlq import DeadLetterer
from connector.dlq.contracts import flows_by_queue
from connector.dlq.ingest import DEFAULT_LINGER_SECONDS, DeadLetterIngester, Ingestor
from connector.dlq.operations import DlqSession, ReplayOptions, open_session, replay
from connector.dlq.records import DeadLetterRecord
from connector.dlq.selection import Filter
from connector.dlq.sqlite import SqliteStore
from connector.dlq.store import DeadLetterStore, StoreUnavailable
from connector.errors import UnknownReference, UsageError
from connector.processing import Failure
from connector.topology import Names
from schemas.dead_letter import DeadLetterHeaders
from schemas.dlq import DlqAuditRecord
from tests.dlq_factories import record
from tests.integration.test_dlq_store import POSTGRES_DSN, require_postgres, store_tables

pytestmark = pytest.mark.integration


def headers_for(
    names: Names, *, queue: str | None = None, reason: str = "unknown_work_type"
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return DeadLetterHeaders(
        dead_letter_id=uuid.uuid4().hex,
        category="permanent",
        error_class="UnknownReference",
        reason=reason,
        message="no work type with code 'NOPE'",
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        original_exchange=names.workhours_exchange,
        original_routing_key="workhour.created",
        original_queue=queue or names.workhours_queue,
        flow="work_hours",
        connector_version="test",
        pod="pod-1",
    ).to_amqp()


async def park(channel: AbstractChannel, names: Names, count: int, *, start: int = 0, **kw: Any) -> None:
    """Put ``count`` dead letters in the DLQ as the connector would (numbered bodies, in order)."""
    dlx = await channel.get_exchange(names.dead_letter_exchange)
    for n in range(start, start + count):
        await dlx.publish(
            aio_pika.Message(
                json.dumps({"event_id": str(uuid.uuid4()), "n": n}).encode(),
                content_type="application/json",
                message_id=str(uuid.uuid4()),
                headers={**headers_for(names, **kw), "x-retry-step": 2, "producer": "tracker"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=names.workhours_queue,
        )


def numbers(records: Sequence[DeadLetterRecord]) -> list[int]:
    return [json.loads(r.body or b"{}")["n"] for r in records]


@pytest.fixture
async def channel(
    amqp_connection: aio_pika.abc.AbstractConnection, topology: Names
) -> AsyncIterator[AbstractChannel]:
    ch = await amqp_connection.channel(publisher_confirms=True)
    yield ch
    await ch.close()


def settings_for(amqp_url: str, names: Names, tmp_path: Path, **dlq: Any) -> DlqSettings:
    return DlqSettings(
        rabbitmq={"url": amqp_url, "prefix": names.prefix},
        dlq={
            "store_url": f"sqlite:///{tmp_path / 'dlq.db'}",
            "audit_log": str(tmp_path / "audit.jsonl"),
            **dlq,
        },
    )


@pytest.fixture
async def session(amqp_url: str, topology: Names, tmp_path: Path) -> AsyncIterator[DlqSession]:
    settings = settings_for(amqp_url, topology, tmp_path, canary_timeout_seconds=10, replay_batch=10)
    async with open_session(settings, operator="ops-test", need_broker=True, create_store=True) as opened:
        yield opened


async def ingest(session: DlqSession) -> int:
    """What ``dlq ingest`` does: drain the DLQs into the session's store."""
    assert session.bus is not None
    ingestor = Ingestor(session.bus, session.store, flows_by_queue=flows_by_queue(session.names))
    return (await ingestor.ingest(session.names.dead_letter_queues)).received


async def drain(channel: AbstractChannel, queue: str) -> list[AbstractIncomingMessage]:
    q = await channel.get_queue(queue)
    taken: list[AbstractIncomingMessage] = []
    while (message := await q.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


async def depth(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


class FlakyStore(DeadLetterStore):
    """Delegates to a real store; its ``fail_on``-th ``add`` fails before or after committing.

    It records the ids of each ``add`` that returned (the ingest acks those) and of the one that
    failed, so a test can say exactly what must come back, wherever the batches were cut.
    """

    def __init__(self, inner: DeadLetterStore, *, fail_on: int, when: Literal["before", "after"]) -> None:
        self._inner = inner
        self._fail_on = fail_on
        self._when = when
        self.adds = 0
        self.returned: list[list[str]] = []
        self.failed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, records: Sequence[DeadLetterRecord], **kw: Any) -> list[str]:
        self.adds += 1
        if self.adds == self._fail_on:
            self.failed = [r.id for r in records]
            if self._when == "before":
                raise StoreUnavailable("disk full")
        added = await self._inner.add(records, **kw)
        if self.adds == self._fail_on:
            raise StoreUnavailable("lost the answer after the commit")
        self.returned.append([r.id for r in records])
        return added

    setup = aclose = get = resolve = find = count = groups = candidates = load = related = events = None  # type: ignore[assignment]
    run_lock = start_run = live_runs = claim = mark_replayed = release = finish_run = run = None  # type: ignore[assignment]
    edit = purge = record_audit = audits = None  # type: ignore[assignment]
    archive = restore = run_progress = beat = pods = None  # type: ignore[assignment]


class TestIngest:
    async def test_every_dead_letter_lands_in_the_store_once_and_in_dlq_order(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 120)
        assert session.bus is not None
        ingestor = Ingestor(session.bus, session.store, batch=50)
        report = await ingestor.ingest(topology.dead_letter_queues)
        assert (report.received, report.stored, report.already_stored) == (120, 120, 0)
        assert await depth(channel, topology.workhours_dlq) == 0
        assert numbers(await session.store.find(Filter())) == list(range(120))
        assert (await ingestor.ingest(topology.dead_letter_queues)).received == 0

    @pytest.mark.parametrize(
        "linger",
        [
            pytest.param(DEFAULT_LINGER_SECONDS, id="batches fill as usual"),
            # What CPU starvation does: the linger runs out before the deliveries already read are
            # handed over, so batches close short -- and the failure splits the DLQ elsewhere.
            pytest.param(0.0, id="batches close early as on a starved event loop"),
        ],
    )
    @pytest.mark.parametrize(
        "when",
        [
            pytest.param("before", id="the store fails before committing a batch"),
            pytest.param("after", id="the store committed but the ack never went out"),
        ],
    )
    async def test_a_failing_store_loses_and_doubles_nothing(
        self,
        session: DlqSession,
        channel: AbstractChannel,
        topology: Names,
        when: Literal["before", "after"],
        linger: float,
    ) -> None:
        await park(channel, topology, 60)
        assert session.bus is not None
        flaky = FlakyStore(session.store, fail_on=2, when=when)
        with pytest.raises(StoreUnavailable):
            await Ingestor(session.bus, flaky, batch=20, linger_seconds=linger).ingest(
                topology.dead_letter_queues
            )
        (acked,) = flaky.returned  # the first batch, whatever its size; the second one failed
        # What was not acked went back to the DLQ when the ingest's channel closed.
        await wait_until_depth(channel, topology.workhours_dlq, 60 - len(acked))
        report = await Ingestor(session.bus, session.store, batch=20, linger_seconds=linger).ingest(
            topology.dead_letter_queues
        )
        assert report.received == 60 - len(acked)
        assert report.already_stored == (len(flaky.failed) if when == "after" else 0)
        stored = await session.store.find(Filter())
        assert sorted(numbers(stored)) == list(range(60))  # each dead letter once: none lost, none twice
        assert len({r.message_id for r in stored}) == 60
        for row in stored:
            assert [e.kind for e in await session.store.events(row.id)] == ["ingested"]
        assert await depth(channel, topology.workhours_dlq) == 0

    async def test_a_message_the_broker_dead_lettered_for_its_delivery_limit_keeps_its_story(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        poison = f"{topology.prefix}q.poison"
        queue = await channel.declare_queue(
            poison,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": 1,
                "x-dead-letter-exchange": topology.dead_letter_exchange,
                "x-dead-letter-routing-key": topology.workhours_queue,
            },
        )
        try:
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"crash": true}', message_id="m-1"), poison
            )
            for _ in range(5):  # a consumer that crashes on it, again and again
                message = await queue.get(fail=False)
                if message is None:
                    break
                await message.nack(requeue=True)
            await wait_until_depth(channel, topology.workhours_dlq, 1)
            await ingest(session)
            (row,) = await session.store.find(Filter())
            assert (row.source, row.reason, row.original_queue) == ("broker", "delivery_limit", poison)
            assert row.body == b'{"crash": true}'
            assert row.message_id == "m-1"
        finally:
            await channel.queue_delete(poison)


class OutageStore(DeadLetterStore):
    """Delegates to a real store; every ``add`` fails while ``down`` is set, or waits on ``gate``."""

    def __init__(self, inner: DeadLetterStore) -> None:
        self._inner = inner
        self.down = True
        self.failures = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, records: Sequence[DeadLetterRecord], **kw: Any) -> list[str]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            self.failures += 1
            raise StoreUnavailable("the database is down")
        return await self._inner.add(records, **kw)

    setup = aclose = get = resolve = find = count = groups = candidates = load = related = events = None  # type: ignore[assignment]
    run_lock = start_run = live_runs = claim = mark_replayed = release = finish_run = run = None  # type: ignore[assignment]
    edit = purge = record_audit = audits = None  # type: ignore[assignment]
    archive = restore = run_progress = beat = pods = None  # type: ignore[assignment]


async def eventually(check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 15.0) -> None:
    """Poll an observable state until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def ingester_bus(amqp_url: str, topology: Names) -> AsyncIterator[Bus]:
    """The pod's own connection: closing it hands back whatever its ingester left unacked."""
    bus = Bus(amqp_url, name="dlq-ingester-test")
    await bus.connect()
    yield bus
    await bus.close()


class TestDeadLetterIngester:
    async def test_dead_letters_arriving_while_it_runs_are_stored_once_in_order_and_acked(
        self, session: DlqSession, channel: AbstractChannel, topology: Names, ingester_bus: Bus
    ) -> None:
        await park(channel, topology, 30)
        ingester = DeadLetterIngester(ingester_bus, session.store, (topology.workhours_dlq,), prefetch=8)
        await ingester.start()
        assert ingester.healthy
        await park(channel, topology, 30, start=30)  # and more while it runs
        await eventually(lambda: _counted(session.store, 60), what="60 dead letters in the store")
        await ingester.stop()
        await ingester.stop()  # idempotent
        assert not ingester.healthy
        with pytest.raises(RuntimeError, match="cannot be restarted"):
            await ingester.start()
        await ingester_bus.close()  # anything unacked would be back in the DLQ now
        assert await depth(channel, topology.workhours_dlq) == 0
        assert numbers(await session.store.find(Filter())) == list(range(60))
        assert (ingester.counts.received, ingester.counts.stored, ingester.counts.requeued) == (60, 60, 0)

    async def test_a_store_outage_puts_every_message_back_marks_it_unhealthy_and_it_recovers(
        self, session: DlqSession, channel: AbstractChannel, topology: Names, ingester_bus: Bus
    ) -> None:
        store = OutageStore(session.store)
        ingester = DeadLetterIngester(
            ingester_bus,
            store,
            (topology.workhours_dlq,),
            retry_initial_seconds=0.01,
            retry_max_seconds=0.05,
        )
        async with ingester:
            await park(channel, topology, 10)
            await eventually(lambda: _true(store.failures >= 3), what="the store to be tried and fail")
            assert not ingester.healthy
            assert ingester.last_error is not None
            assert "the database is down" in ingester.last_error
            assert await session.store.count(Filter()) == 0
            store.down = False
            await eventually(lambda: _counted(session.store, 10), what="10 dead letters after the outage")
            await eventually(lambda: _true(ingester.healthy), what="the ingester to report healthy again")
            assert ingester.last_error is None
        await ingester_bus.close()
        assert await depth(channel, topology.workhours_dlq) == 0
        assert sorted(numbers(await session.store.find(Filter()))) == list(range(10))
        assert ingester.counts.requeued >= 1
        assert ingester.counts.stored == 10

    async def test_stop_waits_for_the_commits_in_flight_and_acks_them(
        self, session: DlqSession, channel: AbstractChannel, topology: Names, ingester_bus: Bus
    ) -> None:
        store = OutageStore(session.store)
        store.down = False
        store.gate = asyncio.Event()
        ingester = DeadLetterIngester(ingester_bus, store, (topology.workhours_dlq,), prefetch=5)
        await ingester.start()
        await park(channel, topology, 5)
        await store.entered.wait()  # a commit is in flight, held by the gate
        stopping = asyncio.create_task(ingester.stop())
        try:
            await eventually(lambda: _true(not ingester.running), what="the stop to begin")
            assert not stopping.done()
            store.gate.set()
            await stopping
        finally:
            store.gate.set()
            await asyncio.gather(stopping, return_exceptions=True)
        assert ingester.counts.stored == await session.store.count(Filter()) > 0
        await ingester_bus.close()
        # What was committed was acked; whatever was not yet delivered is still waiting.
        assert await depth(channel, topology.workhours_dlq) == 5 - ingester.counts.received

    async def test_a_missing_dlq_fails_the_start_and_leaves_nothing_consuming(
        self, session: DlqSession, topology: Names, ingester_bus: Bus
    ) -> None:
        queues = [topology.workhours_dlq, f"{topology.prefix}q.nowhere.dlq"]
        ingester = DeadLetterIngester(ingester_bus, session.store, queues)
        with pytest.raises(ChannelNotFoundEntity):
            await ingester.start()
        assert not ingester.healthy


async def _counted(store: DeadLetterStore, expected: int) -> bool:
    return await store.count(Filter()) == expected


async def _counted_back(store: DeadLetterStore, replay_id: str, expected: int) -> bool:
    return await store.count(Filter(replay_ids=(replay_id,))) == expected


async def _true(value: bool) -> bool:
    return value


async def wait_until_depth(channel: AbstractChannel, queue: str, expected: int) -> None:
    for _ in range(500):
        if await depth(channel, queue) == expected:
            return
        await asyncio.sleep(0.02)
    assert await depth(channel, queue) == expected


class TestReplay:
    async def test_a_replay_republishes_with_fresh_headers_and_settles_each_row_after_its_confirm(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 25)
        await ingest(session)
        outcome = await replay(
            session, Filter(queues=(topology.workhours_queue,)), ReplayOptions(reason="fixed")
        )
        assert outcome.report is not None
        assert (outcome.report.status, len(outcome.report.replayed)) == ("completed", 25)
        sent = await drain(channel, topology.workhours_queue)
        assert [json.loads(m.body)["n"] for m in sent] == list(range(25))  # the DLQ's order
        headers = dict(sent[0].headers or {})
        assert not [k for k in headers if k.startswith("x-dl-") or k in ("x-retry-step", "x-attempts")]
        assert headers["producer"] == "tracker"
        assert headers["x-replay-count"] == 1
        assert headers["x-replay-id"] == outcome.report.replay_id
        assert await session.store.count(Filter(statuses=frozenset({"replayed"}))) == 25
        audit = [
            DlqAuditRecord.model_validate_json(m.body) for m in await drain(channel, topology.dlq_audit_queue)
        ]
        assert [(a.phase, a.outcome, a.operator, a.reason) for a in audit] == [
            ("started", "started", "ops-test", "fixed"),
            ("finished", "ok", "ops-test", "fixed"),
        ]
        assert audit[1].counts["replayed"] == 25

    async def test_a_dry_run_sends_and_changes_nothing_but_is_audited(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 5)
        await ingest(session)
        outcome = await replay(
            session, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="r", dry_run=True)
        )
        assert len(outcome.plan.eligible) == 5
        assert outcome.report is None
        assert await depth(channel, topology.workhours_queue) == 0
        assert await session.store.count(Filter(statuses=frozenset({"parked"}))) == 5
        audit = [
            DlqAuditRecord.model_validate_json(m.body) for m in await drain(channel, topology.dlq_audit_queue)
        ]
        assert [(a.outcome, a.dry_run) for a in audit] == [("started", True), ("dry_run", True)]

    async def test_to_redirects_and_a_missing_target_is_refused_before_anything_is_sent(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 3)
        await ingest(session)
        everything = Filter(queues=(topology.workhours_queue,))
        with pytest.raises(UsageError, match="no such queue"):
            await replay(session, everything, ReplayOptions(reason="r", target=f"{topology.prefix}nowhere"))
        assert await session.store.count(Filter(statuses=frozenset({"parked"}))) == 3
        other = topology.retry_queue(0.5)  # any existing queue will do; this one sends back later
        outcome = await replay(session, everything, ReplayOptions(reason="r", target=other))
        assert outcome.report is not None
        assert len(outcome.report.replayed) == 3
        row = (await session.store.find(Filter(statuses=frozenset({"replayed"}))))[0]
        assert row.replayed_to == other

    async def test_a_message_whose_queue_is_gone_fails_alone_and_stays_parked(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 4)
        await park(channel, topology, 1, start=4, queue=f"{topology.prefix}q.deleted-since")
        await ingest(session)
        outcome = await replay(session, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="r"))
        report = outcome.report
        assert report is not None
        assert report.status == "partial"
        assert len(report.replayed) == 4
        (failed_id,) = report.failed
        assert "q.deleted-since" in report.failed[failed_id]
        row = await session.store.get(failed_id)
        assert row is not None
        assert (row.status, row.last_error) == ("parked", report.failed[failed_id])

    async def test_the_selection_is_frozen_when_the_replay_starts(
        self,
        session: DlqSession,
        channel: AbstractChannel,
        topology: Names,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await park(channel, topology, 30)
        await ingest(session)
        # Hold the replay after its first claim while more of the same failure arrives and is ingested.
        claim = session.store.claim
        first_batch_claimed, more_arrived = asyncio.Event(), asyncio.Event()

        async def claim_then_wait(*args: Any, **kwargs: Any) -> list[str]:
            claimed = await claim(*args, **kwargs)
            if not first_batch_claimed.is_set():
                first_batch_claimed.set()
                await more_arrived.wait()
            return claimed

        monkeypatch.setattr(session.store, "claim", claim_then_wait)
        replaying = asyncio.create_task(
            replay(session, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="r"))
        )
        try:
            await first_batch_claimed.wait()
            await park(channel, topology, 10, start=100)
            assert await ingest(session) == 10
            more_arrived.set()
            outcome = await replaying
        finally:
            more_arrived.set()
            await asyncio.gather(replaying, return_exceptions=True)
        assert outcome.report is not None
        assert len(outcome.report.replayed) == 30
        assert numbers(await session.store.find(Filter())) == list(range(100, 110))  # still parked
        sent = await drain(channel, topology.workhours_queue)
        assert sorted(json.loads(m.body)["n"] for m in sent) == list(range(30))

    async def test_a_canary_that_fails_again_stops_the_replay_and_links_the_new_failures(
        self, session: DlqSession, channel: AbstractChannel, topology: Names
    ) -> None:
        await park(channel, topology, 20)
        await ingest(session)
        async with still_broken(session, topology):
            outcome = await replay(
                session, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="r", canary=3)
            )
            report = outcome.report
            assert report is not None
            # The pods' ingester stores the canaries as they come back; the first failure is enough.
            await eventually(
                lambda: _counted_back(session.store, report.replay_id, 3), what="the 3 canaries back"
            )
        assert report.status == "canary_failed"
        assert report.canary is not None
        assert 1 <= len(report.canary.failed) <= 3
        assert all("unknown_work_type" in why for why in report.canary.failed.values())
        assert len(report.replayed) == 3
        back = await session.store.find(Filter(replay_ids=(report.replay_id,)))
        assert sorted(r.replayed_from or "" for r in back) == sorted(report.replayed)
        assert set(report.canary.failed) <= set(report.replayed)
        assert (
            await session.store.count(Filter(statuses=frozenset({"parked"}), groups=(back[0].group_id,)))
            == 20
        )

    async def test_a_canary_without_an_outcome_stops_the_replay(
        self, amqp_url: str, channel: AbstractChannel, topology: Names, tmp_path: Path
    ) -> None:
        settings = settings_for(amqp_url, topology, tmp_path, canary_timeout_seconds=0.5)
        async with open_session(settings, operator="ops", need_broker=True, create_store=True) as opened:
            await park(channel, topology, 5)
            await ingest(opened)
            outcome = await replay(
                opened, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="r", canary=2)
            )
        assert outcome.report is not None
        assert outcome.report.status == "canary_failed"
        assert outcome.report.canary is not None
        assert all("is the connector consuming" in why for why in outcome.report.canary.unresolved.values())
        assert len(outcome.report.replayed) == 2  # the canaries; nothing more

    async def test_two_operators_replaying_the_same_dead_letters_at_once_send_each_one_once(
        self, amqp_url: str, channel: AbstractChannel, topology: Names, tmp_path: Path
    ) -> None:
        await require_postgres()
        prefix = f"t{uuid.uuid4().hex[:12]}_"
        settings = DlqSettings(
            rabbitmq={"url": amqp_url, "prefix": topology.prefix},
            dlq={
                "store_url": POSTGRES_DSN,
                "store_table_prefix": prefix,
                "audit_log": str(tmp_path / "audit.jsonl"),
                "replay_batch": 7,
            },
        )
        try:
            await park(channel, topology, 200)
            async with (
                open_session(settings, operator="alice", need_broker=True, create_store=True) as alice,
                open_session(settings, operator="bob", need_broker=True) as bob,
            ):
                await ingest(alice)
                assert await alice.store.count(Filter()) == 200
                both = await asyncio.gather(
                    replay(alice, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="a")),
                    replay(bob, Filter(reasons=("unknown_work_type",)), ReplayOptions(reason="b")),
                )
            reports = [o.report for o in both if o.report is not None]
            assert sum(len(r.replayed) for r in reports) == 200
            sent = await drain(channel, topology.workhours_queue)
            origins = [dict(m.headers or {})["x-replayed-from"] for m in sent]
            assert len(origins) == 200
            assert len(set(origins)) == 200
        finally:
            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                await conn.execute("DROP TABLE IF EXISTS " + ", ".join(store_tables(prefix)))
            finally:
                await conn.close()


@asynccontextmanager
async def still_broken(session: DlqSession, names: Names) -> AsyncIterator[None]:
    """A stand-in connector whose mapping is still wrong: it dead-letters every message again, and
    its ingester stores what comes back to the DLQ (where the canary watch looks)."""
    bus = Bus(session.settings.rabbitmq.url.get_secret_value(), name="still-broken")
    await bus.connect()
    ingester = DeadLetterIngester(
        bus, session.store, (names.workhours_dlq,), flows_by_queue=flows_by_queue(names)
    )
    dead_letters = DeadLetterer(
        bus, exchange=names.dead_letter_exchange, queue=names.workhours_queue, flow="work_hours", pod="p"
    )

    async def handle(message: AbstractIncomingMessage) -> None:
        now = dt.datetime.now(dt.UTC)
        error = UnknownReference("no work type with code 'NOPE'", kind="work_type", value="NOPE")
        await dead_letters.dead_letter(message, Failure(error, 1, now, now))
        await message.ack()

    consumer = await bus.consumer(names.workhours_queue, handle, prefetch=10)
    await consumer.start()
    await ingester.start()
    try:
        yield
    finally:
        await consumer.stop()
        await ingester.stop()
        await bus.close()


def test_flows_are_found_by_queue_for_what_the_broker_dead_lettered() -> None:
    assert flows_by_queue(Names(prefix="x.")) == {
        "x.q.workhours": "work_hours",
        "x.q.accounting.customers": "accounting_customers",
        "x.q.accounting.invoices": "accounting_invoices",
        "x.q.severa.invoice-updates": "severa_invoice_updates",
    }


async def test_the_sqlite_store_is_shared_by_processes_on_one_host(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.db") as one, SqliteStore(tmp_path / "s.db") as two:
        row = record()
        await one.add([row])
        assert await two.get(row.id) is not None
