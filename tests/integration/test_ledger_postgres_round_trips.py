"""The PostgreSQL ledger's one-round-trip claim and its unlock on release, on the real server.

The claim goes as one simple-protocol script with its values inlined as literals, and an entry's
lock is released by the pool's reset (``connector/state/postgres.py``). What must hold: any text
the ledger accepts comes back exactly (no quoting can break out of its literal), a claim still
refuses a GUID another entry holds, and the session holds no advisory lock once the block is left,
so another pod takes the entry at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from connector.state.postgres import PostgresLedger
from tests.integration.test_ledger import POSTGRES_DSN, _require_postgres
from tests.postgres_state import drop_state

NASTY = [
    "tracker:it's",
    "tracker:''",
    "tracker:back\\slash\\'",
    "tracker:'); DROP TABLE ledger; --",
    "tracker:$$ $tag$ E'\\x41'",
    "tracker:Työ \u2013 日本 🕒",
]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await _require_postgres()
    table_prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield table_prefix
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        await drop_state(conn, table_prefix)
    finally:
        await conn.close()


@pytest.mark.parametrize("text", NASTY)
async def test_a_claim_stores_any_text_exactly(prefix: str, text: str) -> None:
    async with PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=3) as ledger:
        guid = f"guid-{text}"
        async with ledger.lock(text):
            await ledger.mark_pending(text, 2, '{"fingerprint": "x"}')
            assert await ledger.claim(text, 2, guid, content_hash=f"sha256:{text}")
        record = await ledger.get(text)
        assert record is not None
        assert (record.external_id, record.state, record.version) == (text, "applied", 2)
        assert (record.severa_guid, record.content_hash) == (guid, f"sha256:{text}")
        assert await ledger.owners_of([guid]) == {guid: text}
        # Another entry cannot take the same GUID, however it is spelled.
        async with ledger.lock("tracker:other"):
            assert not await ledger.claim("tracker:other", 1, guid)
        assert await ledger.get("tracker:other") is None
        assert await ledger.count() == 1


async def test_no_advisory_lock_outlives_its_block(prefix: str) -> None:
    async with (
        PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=2, application_name=prefix) as pod_a,
        PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=2, lock_timeout=0.5) as pod_b,
    ):
        for round_ in range(3):
            async with pod_a.lock("tracker:e-1"):
                await pod_a.mark_applied("tracker:e-1", round_ + 1, "g-1")
            # pod_a's pooled sessions hold nothing now; pod_b takes the entry without waiting.
            conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
            try:
                held = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND a.application_name = $1",
                    prefix,
                )
            finally:
                await conn.close()
            assert held == 0
            async with pod_b.lock("tracker:e-1"):
                record = await pod_b.get("tracker:e-1")
                assert record is not None
                assert record.version == round_ + 1


async def _statements_of(ledger: PostgresLedger, pool_size: int) -> list[str]:
    """Every statement the ledger's pooled connections send from now on, in order."""
    sent: list[str] = []
    pool = ledger._pool  # the test listens on the ledger's own sessions
    held = [await pool.acquire() for _ in range(pool_size)]
    for conn in held:
        conn.add_query_logger(lambda record: sent.append(" ".join(record.query.split())))
    for conn in held:
        await pool.release(conn)
    sent.clear()  # the releases' own resets
    return sent


async def _delivered() -> None:
    """asyncpg hands each statement to its loggers with ``call_soon``: one pass of the loop
    delivers every statement already sent (a loop pass, not a wait for time to pass)."""
    await asyncio.sleep(0)


async def test_an_events_cycle_sends_four_statements(prefix: str) -> None:
    """Lock and read in one (``ledger_lock_get``), the pending mark, the claim, the release: one
    round trip each once asyncpg has prepared them (its Parse/Describe, once per statement and
    connection, is not logged)."""
    async with PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=2, min_size=2) as ledger:
        sent = await _statements_of(ledger, 2)
        async with ledger.lock("tracker:e-1"):
            assert await ledger.get("tracker:e-1") is None
            await ledger.mark_pending("tracker:e-1", 1, '{"fingerprint": "x"}')
            assert await ledger.claim("tracker:e-1", 1, "g-1")
        await _delivered()
        assert len(sent) == 4, sent
        assert f"{prefix}ledger_lock_get" in sent[0]
        assert sent[-1] == "SELECT pg_advisory_unlock_all()"


async def test_the_read_that_came_with_the_lock_is_used_once_and_only_for_its_entry(prefix: str) -> None:
    async with PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=2, min_size=2) as ledger:
        async with ledger.lock("tracker:other"):
            await ledger.mark_applied("tracker:other", 3, "g-other")
        async with ledger.lock("tracker:e-1"):
            await ledger.mark_applied("tracker:e-1", 1, "g-1")
        sent = await _statements_of(ledger, 2)
        async with ledger.lock("tracker:e-1"):
            first = await ledger.get("tracker:e-1")
            assert first is not None
            assert (first.version, first.severa_guid) == (1, "g-1")
            # Another entry's record is read from the table.
            other = await ledger.get("tracker:other")
            assert other is not None
            assert other.severa_guid == "g-other"
            # After a write, a read shows the write, not the record the lock came with.
            await ledger.mark_applied("tracker:e-1", 2, "g-2")
            again = await ledger.get("tracker:e-1")
            assert again is not None
            assert (again.version, again.severa_guid) == (2, "g-2")
        await _delivered()
        # The lock with its read, the other entry's read, the write, the read after it, the release:
        # the first get() of the entry took no round trip of its own.
        assert len(sent) == 5, sent


async def test_a_lock_taken_inside_another_drops_the_outer_locks_read(prefix: str) -> None:
    """Not what the flows do, but it must stay correct: inside the inner block the task's statements
    run on the inner lock's connection, so a write of the outer entry there is seen afterwards."""
    ledger = PostgresLedger(POSTGRES_DSN, table_prefix=prefix, pool_size=3, min_size=2)
    async with ledger, ledger.lock("tracker:outer"):
        async with ledger.lock("tracker:inner"):
            await ledger.mark_applied("tracker:outer", 1, "g-outer")
        record = await ledger.get("tracker:outer")
        assert record is not None
        assert record.severa_guid == "g-outer"
