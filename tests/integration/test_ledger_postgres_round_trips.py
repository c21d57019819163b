"""The PostgreSQL ledger's one-round-trip claim and its unlock on release, on the real server.

The claim goes as one simple-protocol script with its values inlined as literals, and an entry's
lock is released by the pool's reset (``connector/state/postgres.py``). What must hold: any text
the ledger accepts comes back exactly (no quoting can break out of its literal), a claim still
refuses a GUID another entry holds, and the session holds no advisory lock once the block is left,
so another pod takes the entry at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from connector.state.migrations import version_table
from connector.state.postgres import PostgresLedger
from connector.state.schema import state_metadata
from tests.integration.test_ledger import POSTGRES_DSN, _require_postgres

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
    names = [t.name for t in state_metadata(table_prefix).sorted_tables] + [version_table(table_prefix)]
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(names)}")
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
