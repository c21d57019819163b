"""The replay loop against fakes: an in-memory store, a publisher that confirms or refuses, canaries."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from connector.bus import OutgoingMessage, PublishFailed
from connector.config import DeadLetterSettings
from connector.dlq.canary import CanaryVerdict
from connector.dlq.records import DeadLetterRecord, ReplayRun
from connector.dlq.replay import STOP_WITHIN_SECONDS, CanaryWatchLike, Replayer, ReplayRequest, batch_size
from connector.dlq.selection import Filter
from connector.dlq.sqlite import SqliteStore
from tests.dlq_factories import T0, record


class FakePublisher:
    """Confirms everything except the bodies it is told to refuse; records what it was sent."""

    def __init__(self, refuse: set[bytes] | None = None) -> None:
        self.sent: list[OutgoingMessage] = []
        self.refuse = refuse or set()

    async def __call__(self, exchange: str, message: OutgoingMessage) -> None:
        assert exchange == ""  # replays go through the default exchange
        if message.body in self.refuse:
            raise PublishFailed(f"broker refused the message for (default)/{message.routing_key}")
        self.sent.append(message)


class FakeCanaries:
    """Gives the verdict it was told, for whatever canaries it is shown."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.watched: list[str] = []

    @asynccontextmanager
    async def watching(
        self, records: Sequence[DeadLetterRecord], *, replay_id: str, target: str | None
    ) -> AsyncIterator[CanaryWatchLike]:
        self.watched = [r.id for r in records]
        fail = self.fail

        class Watch:
            async def wait(self, timeout: float) -> CanaryVerdict:
                ids = [r.id for r in records]
                if fail:
                    return CanaryVerdict(failed={i: "failed again: unknown_work_type" for i in ids})
                return CanaryVerdict(passed=ids)

        yield Watch()


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    async with SqliteStore(":memory:") as opened:
        yield opened


async def parked(store: SqliteStore, count: int) -> list[str]:
    rows = [record(body=f'{{"n": {i}}}'.encode()) for i in range(count)]
    await store.add(rows)
    return [r.id for r in rows]


async def start(store: SqliteStore, replay_id: str) -> None:
    await store.start_run(ReplayRun(replay_id, "ops", "h", 1, T0, "running", 0, None, None))


def replayer(store: SqliteStore, publish: FakePublisher, **kwargs: object) -> Replayer:
    return Replayer(store, publish, operator="ops", audit_id="a1", clock=lambda: T0, **kwargs)  # type: ignore[arg-type]


async def statuses(store: SqliteStore) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in await store.find(Filter(statuses=frozenset())):
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


async def test_every_row_is_sent_in_order_and_settled_after_its_confirm(store: SqliteStore) -> None:
    ids = await parked(store, 25)
    publish = FakePublisher()
    report = await replayer(store, publish).run(ReplayRequest("r1", tuple(ids), batch=10))
    assert report.status == "completed"
    assert [m.headers["x-replayed-from"] for m in publish.sent] == ids
    assert await statuses(store) == {"replayed": 25}


async def test_refused_messages_stay_parked_with_the_error_and_the_run_is_partial(store: SqliteStore) -> None:
    ids = await parked(store, 5)
    publish = FakePublisher(refuse={b'{"n": 3}'})
    report = await replayer(store, publish).run(ReplayRequest("r1", tuple(ids), batch=2))
    assert report.status == "partial"
    assert list(report.failed) == [ids[3]]
    refused = await store.get(ids[3])
    assert refused is not None
    assert (refused.status, refused.last_error) == ("parked", report.failed[ids[3]])
    assert await statuses(store) == {"replayed": 4, "parked": 1}


async def test_rows_another_run_took_meanwhile_are_left_to_it(store: SqliteStore) -> None:
    ids = await parked(store, 4)
    async with store.run_lock("other"):
        await start(store, "other")
        await store.claim(ids[:2], replay_id="other", again=False, now=T0)
        report = await replayer(store, FakePublisher()).run(ReplayRequest("r1", tuple(ids)))
    assert report.taken_by_others == ids[:2]
    assert report.replayed == ids[2:]


@pytest.mark.parametrize(
    ("fail", "canary_only", "sent", "status"),
    [
        pytest.param(True, False, 3, "canary_failed", id="failing canaries stop the replay"),
        pytest.param(False, True, 3, "completed", id="canary-only stops after good canaries"),
        pytest.param(False, False, 10, "completed", id="good canaries let the rest go"),
    ],
)
async def test_canaries_go_first_and_decide(
    store: SqliteStore, fail: bool, canary_only: bool, sent: int, status: str
) -> None:
    ids = await parked(store, 10)
    publish = FakePublisher()
    canaries = FakeCanaries(fail=fail)
    report = await replayer(store, publish, canaries=canaries).run(
        ReplayRequest("r1", tuple(ids), canary=3, canary_only=canary_only, batch=4)
    )
    assert canaries.watched == ids[:3]
    assert len(publish.sent) == sent
    assert report.status == status


async def test_a_stop_ends_the_run_after_the_batch_in_flight(store: SqliteStore) -> None:
    ids = await parked(store, 30)
    stop = asyncio.Event()
    done: list[int] = []

    def progress(size: int) -> None:
        done.append(size)
        stop.set()  # SIGINT arrives while the first batch is being settled

    report = await replayer(store, FakePublisher(), on_progress=progress).run(
        ReplayRequest("r1", tuple(ids), batch=10), stop
    )
    assert report.interrupted
    assert (len(report.replayed), report.not_sent) == (10, 20)
    assert await statuses(store) == {"replayed": 10, "parked": 20}


async def test_a_rate_limit_spaces_the_messages(store: SqliteStore) -> None:
    ids = await parked(store, 6)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await replayer(store, FakePublisher()).run(ReplayRequest("r1", tuple(ids), rate=20))
    # 6 messages at 20/s with a burst of 2: at least (6 - 2) / 20 s.
    assert loop.time() - started >= 0.19


async def test_replay_headers_count_every_replay_of_the_message(store: SqliteStore) -> None:
    (row_id,) = await parked(store, 1)
    publish = FakePublisher()
    await replayer(store, publish).run(ReplayRequest("r1", (row_id,)))
    await replayer(store, publish).run(ReplayRequest("r2", (row_id,), again=True))
    assert [m.headers["x-replay-count"] for m in publish.sent] == [1, 2]
    assert [m.headers["x-replay-id"] for m in publish.sent] == ["r1", "r2"]
    row = await store.get(row_id)
    assert row is not None
    assert row.replay_count == 2
    assert row.replayed_at == T0
    assert isinstance(row.replayed_at, dt.datetime)


@pytest.mark.parametrize(
    ("batch", "rate", "size"),
    [(500, None, 500), (500, 200.0, 500), (500, 5.0, 25), (500, 0.1, 1), (10, 5.0, 10), (500, 2.5, 13)],
)
def test_a_rate_cuts_the_batch_to_a_few_seconds_of_messages(
    batch: int, rate: float | None, size: int
) -> None:
    """Ctrl-C waits for the batch in flight: at 5 msg/s, 500 would be a 100 s wait."""
    assert batch_size(batch, rate) == size


async def test_a_stop_during_a_slow_paced_run_waits_for_a_short_batch(store: SqliteStore) -> None:
    ids = await parked(store, 12)
    stop = asyncio.Event()
    report = await replayer(store, FakePublisher(), on_progress=lambda _: stop.set()).run(
        ReplayRequest("r1", tuple(ids), batch=500, rate=1 / STOP_WITHIN_SECONDS), stop
    )
    assert report.interrupted
    assert (len(report.replayed), report.not_sent) == (1, 11)


def test_the_request_and_the_setting_default_to_one_batch_size() -> None:
    assert ReplayRequest("r", ()).batch == DeadLetterSettings().replay_batch
