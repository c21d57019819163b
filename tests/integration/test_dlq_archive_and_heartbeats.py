"""Archive and restore, run progress and pod heartbeats in the dead-letter store, on both backends.

The store half of the console's second slice: an archived dead letter keeps its body and history,
leaves every replay and the open views, and comes back as it was; a pod's heartbeat row is
replaced, not added to, and rows silent for long are dropped. Uses the store contract's fixtures
(tests/integration/test_dlq_store.py): one SQLite file or one PostgreSQL prefix per case.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connector.dlq.records import PodHeartbeat
from connector.dlq.selection import BodyMatch, Filter, ReplayCandidate, plan_replay
from connector.dlq.sql import SqlStore
from connector.dlq.store import open_store
from connector.heartbeats import HeartbeatWriter, PodState
from tests.dlq_factories import T0, record
from tests.harness import wait_until
from tests.integration.test_dlq_store import NOW, backend, running, store

__all__ = ["backend", "store"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.integration


def beat(pod: str, at: dt.datetime, **overrides: object) -> PodHeartbeat:
    values: dict[str, object] = {
        "pod": pod,
        "role": "consumer",
        "flows": ("work_hours",),
        "circuits": {"severa": "closed"},
        "ready": True,
        "reasons": (),
        "version": "0.1.0",
        "interval_seconds": 15.0,
        "started_at": T0,
        "beat_at": at,
    }
    values.update(overrides)
    return PodHeartbeat(**values)  # type: ignore[arg-type]


class TestArchive:
    async def test_archived_rows_keep_everything_and_restore_to_the_status_they_had(
        self, store: SqlStore
    ) -> None:
        parked, replayed, other = record(), record(), record()
        await store.add([parked, replayed, other])
        await running(store, "r1")
        await store.claim([replayed.id], replay_id="r1", again=False, now=NOW)
        await store.mark_replayed(
            {replayed.id: "q.workhours"}, replay_id="r1", operator="o", audit_id=None, now=NOW
        )

        moved = await store.archive([parked.id, replayed.id], operator="olivia", audit_id="a1", now=NOW)
        assert sorted(moved) == sorted([parked.id, replayed.id])
        kept = await store.get(parked.id)
        assert kept is not None
        assert kept.status == "archived"
        assert kept.body == parked.body
        # Out of the open views and of every replay; the explicit status still finds them.
        assert [r.id for r in await store.find(Filter())] == [other.id]
        assert await store.count(Filter(statuses=frozenset({"archived"}))) == 2
        assert await store.claim([parked.id], replay_id="r2", again=True, now=NOW) == []
        plan = plan_replay(
            await store.candidates(Filter(ids=(parked.id,), statuses=frozenset())), again=True, live_runs=()
        )
        assert plan.eligible == ()
        assert plan.skipped == {parked.id: "archived (restore it first)"}
        assert await store.archive([parked.id], operator="olivia", audit_id="a2", now=NOW) == []

        assert sorted(
            await store.restore([parked.id, replayed.id, other.id], operator="olivia", audit_id="a3", now=NOW)
        ) == sorted([parked.id, replayed.id])
        assert [(await store.get(i)).status for i in (parked.id, replayed.id)] == ["parked", "replayed"]  # type: ignore[union-attr]
        kinds = [(e.kind, e.operator, e.audit_id) for e in await store.events(parked.id)]
        assert kinds[-2:] == [("archived", "olivia", "a1"), ("restored", "olivia", "a3")]

    async def test_a_row_being_replayed_is_not_archived(self, store: SqlStore) -> None:
        row = record()
        await store.add([row])
        await running(store, "r1")
        await store.claim([row.id], replay_id="r1", again=False, now=NOW)
        assert await store.archive([row.id], operator="o", audit_id="a", now=NOW) == []
        assert await store.run_progress("r1") == {"replaying": 1}

    def test_the_plan_skips_archived_rows(self) -> None:
        rows = [
            ReplayCandidate("a" * 32, "archived", None, True),
            ReplayCandidate("b" * 32, "parked", None, True),
        ]
        assert plan_replay(rows, again=True, live_runs=()).eligible == ("b" * 32,)


class TestHeartbeats:
    async def test_a_pod_has_one_row_that_each_beat_replaces(self, store: SqlStore) -> None:
        await store.beat(beat("pod-a", NOW))
        later = NOW + dt.timedelta(seconds=15)
        await store.beat(
            beat("pod-a", later, circuits={"severa": "open"}, ready=False, reasons=("paused: x",))
        )
        await store.beat(beat("pod-b", later, role="poller", flows=()))
        pods = await store.pods()
        assert [p.pod for p in pods] == ["pod-a", "pod-b"]
        assert pods[0] == beat(
            "pod-a", later, circuits={"severa": "open"}, ready=False, reasons=("paused: x",)
        )
        assert pods[0].alive(later + dt.timedelta(seconds=45))
        assert not pods[0].alive(later + dt.timedelta(seconds=46))

    async def test_rows_silent_for_long_are_forgotten(self, store: SqlStore) -> None:
        await store.beat(beat("gone", NOW - dt.timedelta(days=2)))
        await store.beat(beat("here", NOW), forget_before=NOW - dt.timedelta(days=1))
        assert [p.pod for p in await store.pods()] == ["here"]


async def test_the_writer_beats_at_once_when_the_state_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dlq.db'}"
    state = PodState(
        role="consumer", flows=("work_hours",), circuits={"severa": "open"}, ready=False, reasons=("paused",)
    )
    current = [state]
    writer = HeartbeatWriter(
        lambda: open_store(url), lambda: current[0], pod="pod-x", version="1", interval=3600
    )
    task = asyncio.create_task(writer.run())
    reader = open_store(url)
    try:
        await wait_until(lambda: writer.beats == 1, what="the first beat")
        current[0] = PodState(
            role="consumer", flows=("work_hours",), circuits={"severa": "closed"}, ready=True, reasons=()
        )
        # An hour's interval: only the change can have written the second beat.
        await wait_until(lambda: writer.beats == 2, what="the beat of the change")
        async with reader:
            (pod,) = await reader.pods()
        assert (pod.pod, pod.circuits, pod.ready, pod.interval_seconds) == (
            "pod-x",
            {"severa": "closed"},
            True,
            3600.0,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class TestBodySearch:
    async def test_every_match_is_found_while_rows_leave_the_selection_during_the_scan(
        self, store: SqlStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Bodies are read page by page; an archive between two pages must not hide later matches
        (paging the filter by offset would shift them past the next page)."""
        from connector.dlq import operations

        rows = [record(body=json.dumps({"user": {"code": f"u{i % 2}"}}).encode()) for i in range(7)]
        await store.add(rows)
        monkeypatch.setattr(operations, "BODY_SCAN_PAGE", 2)
        archived_once: list[str] = []

        def archiving_after(read: Any) -> Any:
            async def read_then_archive(*args: Any, **kwargs: Any) -> list[Any]:
                found: list[Any] = await read(*args, **kwargs)
                if not archived_once:  # another operator archives the first page's rows meanwhile
                    archived_once.extend(r.id for r in found)
                    await store.archive(archived_once, operator="other", audit_id=None, now=NOW)
                return found

            return read_then_archive

        # Whichever way the scan reads bodies: by ids, or by the filter page by page.
        monkeypatch.setattr(store, "load", archiving_after(store.load))
        monkeypatch.setattr(store, "find", archiving_after(store.find))
        session = SimpleNamespace(store=store)
        narrowed = await operations.narrow_by_body(
            session,  # type: ignore[arg-type]
            Filter(),
            [BodyMatch(path=("user", "code"), value="u0")],
        )
        assert narrowed is not None
        assert set(narrowed.ids) == {r.id for i, r in enumerate(rows) if i % 2 == 0}
