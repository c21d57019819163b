"""SQLite group commit: concurrent writes share one commit, and each is durable when it returns.

The ledger's writes queue while a commit is in progress and go into the next transaction together
(``connector/state/sqlite.py``). What must hold: a write that returned is committed (another
connection reads it at that moment), concurrent writes need far fewer commits than writes, one
failing statement fails its own caller only, and a caller cancelled before its group started
writes nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from connector.state.ledger import LedgerUnavailable
from connector.state.sqlite import SqliteLedger


def _committed(path: Path, external_id: str) -> tuple[str, str | None] | None:
    """What another connection (another process, after a crash) reads for ``external_id``."""
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT state, severa_guid FROM ledger WHERE external_id = ?", (external_id,)
        ).fetchone()
    return None if row is None else (str(row[0]), row[1])


async def test_concurrent_writes_share_commits_and_each_is_committed_when_it_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    seen_at_return: dict[str, tuple[str, str | None] | None] = {}
    async with SqliteLedger(path) as ledger:

        async def write(i: int) -> None:
            external_id = f"tracker:e-{i}"
            async with ledger.lock(external_id):
                await ledger.mark_pending(external_id, 1, '{"print": 1}')
                assert await ledger.claim(external_id, 1, f"guid-{i}", content_hash="sha256:x")
            seen_at_return[external_id] = _committed(path, external_id)

        before = ledger.commits
        await asyncio.gather(*(write(i) for i in range(64)))
        commits = ledger.commits - before
        assert await ledger.count() == 64

    assert all(seen_at_return[f"tracker:e-{i}"] == ("applied", f"guid-{i}") for i in range(64))
    # 128 writes; one at a time would be 128 commits.
    assert commits < 64, f"{commits} commits for 128 concurrent writes: no group commit"


async def test_a_failing_statement_fails_only_its_own_write(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with SqliteLedger(path) as ledger:
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON ledger WHEN NEW.external_id = 'tracker:bad' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        ids = [f"tracker:ok-{i}" for i in range(20)]
        ids.insert(10, "tracker:bad")
        outcomes = await asyncio.gather(
            *(ledger.mark_applied(external_id, 1, f"g-{external_id}") for external_id in ids),
            return_exceptions=True,
        )
        failed = {external_id for external_id, outcome in zip(ids, outcomes, strict=True) if outcome}
        assert failed == {"tracker:bad"}
        assert isinstance(outcomes[10], LedgerUnavailable)
        assert "refused by the test" in str(outcomes[10])
        for external_id in ids:
            expected = None if external_id == "tracker:bad" else ("applied", f"g-{external_id}")
            assert _committed(path, external_id) == expected


async def test_a_write_cancelled_before_its_group_started_is_not_made(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with SqliteLedger(path) as ledger:
        # The first write occupies the worker; the next ones queue for the following group.
        first = asyncio.create_task(ledger.mark_applied("tracker:first", 1, "g-1"))
        await asyncio.sleep(0)
        queued = asyncio.create_task(ledger.mark_applied("tracker:cancelled", 1, "g-2"))
        kept = asyncio.create_task(ledger.mark_applied("tracker:kept", 1, "g-3"))
        await asyncio.sleep(0)
        queued.cancel()
        await first
        await kept
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await ledger.get("tracker:cancelled") is None
        assert _committed(path, "tracker:kept") == ("applied", "g-3")


async def test_writes_racing_close_fail_as_unavailable_instead_of_hanging(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    await ledger.setup()
    writes = [asyncio.create_task(ledger.mark_applied(f"tracker:c-{i}", 1, f"g-{i}")) for i in range(10)]
    await asyncio.sleep(0)
    await ledger.aclose()
    outcomes = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 10)
    # Each either committed before the close or was refused as closed; none waits for ever.
    assert all(outcome is None or isinstance(outcome, LedgerUnavailable) for outcome in outcomes)
    with pytest.raises(LedgerUnavailable):
        await ledger.mark_applied("tracker:late", 1, "g")


async def test_a_connection_closed_under_a_call_is_reported_as_a_closed_ledger(tmp_path: Path) -> None:
    """sqlite3's "Cannot operate on a closed database" (a ProgrammingError, itself a sqlite3.Error)
    means the ledger was closed under the call: ``ledger_closed``, not an unexplained failure."""
    async with SqliteLedger(tmp_path / "ledger.db") as ledger:
        await ledger.mark_pending("tracker:e-1", 1, '{"print": 1}')
        reader = ledger._reader
        assert reader is not None
        # Shutdown detaches its connections before it closes them, so this stands in for a close
        # under a call; what is tested is how sqlite3's error for it is reported.
        reader.close()
        with pytest.raises(LedgerUnavailable) as caught:
            await ledger.get("tracker:e-1")
    assert caught.value.reason == "ledger_closed"
    assert isinstance(caught.value.__cause__, sqlite3.ProgrammingError)
