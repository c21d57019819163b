"""In-memory ledger: the fake that flow unit tests run against.

It applies the reference semantics of :mod:`connector.state.ledger` verbatim and passes the same
contract tests as the real backends, so a flow proven against it behaves the same on SQLite or
PostgreSQL. Nothing survives the process, and its lock only excludes tasks of this event loop:
never use it to run the connector.
"""

from __future__ import annotations

from collections.abc import Collection

from connector.state import ledger as _ledger
from connector.state.ledger import DEFAULT_LOCK_TIMEOUT, BaseLedger, LedgerRecord


class InMemoryLedger(BaseLedger):
    """A dict of :class:`LedgerRecord` behind a per-id :class:`asyncio.Lock`.

    Locks are dropped when no task holds or waits for them (see
    :class:`connector.state.locks.KeyedLock`), so a long test run does not accumulate them.
    """

    backend = "memory"

    def __init__(self, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        super().__init__(lock_timeout=lock_timeout)
        self._records: dict[str, LedgerRecord] = {}

    def snapshot(self) -> dict[str, LedgerRecord]:
        """A copy of every record, for assertions in tests."""
        return dict(self._records)

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _probe(self) -> None:
        pass

    async def _get(self, external_id: str) -> LedgerRecord | None:
        return self._records.get(external_id)

    async def _mark_pending(self, external_id: str, version: int, fingerprint: str) -> None:
        previous = self._records.get(external_id)
        self._records[external_id] = _ledger.pending(
            previous, external_id, version, fingerprint, _ledger.utc_now()
        )

    async def _mark_applied(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> None:
        previous = self._records.get(external_id)
        self._records[external_id] = _ledger.applied(
            previous, external_id, version, severa_guid, _ledger.utc_now(), content_hash=content_hash
        )

    async def _claim(
        self, external_id: str, version: int, severa_guid: str, content_hash: str | None
    ) -> bool:
        # No await between the check and the write: atomic against every other task of the loop.
        record = _ledger.claimed(
            self._records, external_id, version, severa_guid, _ledger.utc_now(), content_hash
        )
        if record is None:
            return False
        self._records[external_id] = record
        return True

    async def _mark_deleted(self, external_id: str, version: int) -> None:
        previous = self._records.get(external_id)
        self._records[external_id] = _ledger.deleted(previous, external_id, version, _ledger.utc_now())

    async def _owners_of(self, guids: Collection[str]) -> dict[str, str]:
        pairs: list[tuple[str, str]] = []
        for record in self._records.values():
            guid = record.severa_guid
            if guid is not None and guid in guids and record.state != "deleted":
                pairs.append((guid, record.external_id))
        return _ledger.resolve_owners(pairs)

    async def _count(self) -> int:
        return len(self._records)
