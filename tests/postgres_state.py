"""Dropping what the state migrations made under a test's table prefix, in one place.

The state tree makes tables and, on PostgreSQL, a function (:func:`connector.state.schema.
state_functions`); a test that made them under a prefix of its own drops them all, so the shared
database keeps nothing of the run.
"""

from __future__ import annotations

from typing import Any

from connector.state.dlq_schema import dlq_metadata
from connector.state.migrations import DEAD_LETTERS, version_table
from connector.state.schema import state_functions, state_metadata


async def drop_state(conn: Any, prefix: str, *, dead_letters: bool = False) -> None:
    """Drop the state tree under ``prefix`` (and the dead-letter tree's tables) on an asyncpg
    connection, in one script."""
    tables = [table.name for table in reversed(state_metadata(prefix).sorted_tables)]
    tables.append(version_table(prefix))
    if dead_letters:
        tables += [table.name for table in reversed(dlq_metadata(prefix).sorted_tables)]
        tables.append(version_table(prefix, DEAD_LETTERS))
    drops = [f"DROP TABLE IF EXISTS {', '.join(tables)}"]
    drops += [f"DROP FUNCTION IF EXISTS {function}" for function in state_functions(prefix)]
    await conn.execute("; ".join(drops))
