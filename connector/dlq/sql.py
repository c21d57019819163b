"""The dead-letter store in SQL, once for both backends; they differ only in a :class:`Dialect`.

The ledger restates each write per backend because it has four statements; the store has a few
dozen (filters, groups, claims, history), so the statements are built here from one dialect-neutral
description and the backends supply placeholders, timestamp and JSON handling and a session:

=================  ==========================================  ===============================
                   SQLite                                      PostgreSQL
=================  ==========================================  ===============================
placeholder        ``?1``                                      ``$1``
timestamps         TEXT, fixed-width ISO UTC (sorts as time)   ``timestamptz``
headers            TEXT holding JSON, ``json_extract``         ``jsonb``, ``->>``
id lists           ``IN (SELECT value FROM json_each(?1))``    ``= ANY($1::text[])``
=================  ==========================================  ===============================

Schema (tables are prefixed on PostgreSQL, e.g. ``severa_connector_dead_letters``)::

    dead_letters   one row per dead-lettering (key ``id``; ``seq`` = ingest order = DLQ order)
    dlq_events     per-row history: ingested, imported, edited, replayed, replay_failed, purged
    dlq_replays    one row per replay run (status, counts, who, where) -- liveness is a lock
    dlq_audit      the audit records (started / finished) of every replay, edit, purge, import, export
    schema_version shared with the ledger on PostgreSQL (component 'dlq')
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import enum
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Literal, Protocol

from connector.dlq.grouping import GroupBy
from connector.dlq.records import DeadLetterRecord, Group, ReplayRun, RunStatus, StoreEvent
from connector.dlq.selection import Filter, ReplayCandidate
from connector.dlq.store import DeadLetterStore
from connector.errors import UsageError
from connector.logging import get_logger
from schemas.dlq import DlqAuditRecord

log = get_logger(__name__)

SCHEMA_VERSION: Final = 1
COMPONENT: Final = "dlq"
CHUNK: Final = 500
"""Ids per statement in claims and purges: keeps each transaction short for concurrent writers."""

RECORD_COLUMNS: Final = (
    "id",
    "status",
    "dead_letter_queue",
    "original_queue",
    "original_exchange",
    "original_routing_key",
    "flow",
    "source",
    "category",
    "error_class",
    "reason",
    "error_message",
    "traceback",
    "attempts",
    "first_failure_at",
    "last_failure_at",
    "group_id",
    "connector_version",
    "pod",
    "trace_id",
    "message_id",
    "correlation_id",
    "message_type",
    "content_type",
    "properties",
    "headers",
    "body",
    "body_size",
    "original_body",
    "edit_count",
    "ingested_at",
    "replayed_from",
    "prior_replay_id",
    "prior_replays",
    "replay_id",
    "replay_count",
    "replayed_at",
    "replayed_to",
    "last_error",
    "updated_at",
)
_TIMES: Final = frozenset({"first_failure_at", "last_failure_at", "ingested_at", "replayed_at", "updated_at"})
_JSON: Final = frozenset({"properties", "headers"})


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


class Session(Protocol):
    """One connection for the duration of a read or a write transaction."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Dialect(abc.ABC):
    """What differs between the SQL backends (see the module docstring)."""

    @abc.abstractmethod
    def param(self, index: int) -> str: ...

    @abc.abstractmethod
    def ts(self, moment: dt.datetime | None) -> Any:
        """A timestamp as the backend binds it."""

    @abc.abstractmethod
    def ts_out(self, value: Any) -> dt.datetime | None: ...

    @abc.abstractmethod
    def json_param(self, placeholder: str) -> str:
        """A placeholder for JSON text bound into a JSON column."""

    @abc.abstractmethod
    def contains_ci(self, column: str, placeholder: str) -> str: ...

    @abc.abstractmethod
    def header_key(self, name: str) -> Any:
        """The value to bind to address one header in the ``headers`` JSON."""

    @abc.abstractmethod
    def header_text(self, placeholder: str) -> str:
        """SQL text of a header's value (JSON's spelling of scalars), NULL when absent."""

    @abc.abstractmethod
    def header_exists(self, placeholder: str) -> str: ...

    @abc.abstractmethod
    def in_list(self, column: str, values: Sequence[str], params: Params) -> str: ...


class Params:
    """Collects bind values while a statement is built; calling it returns the placeholder."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self._dialect.param(len(self.values))


def compile_filter(selection: Filter, dialect: Dialect, params: Params) -> str:
    """The ``WHERE`` condition for ``selection`` (the SQL twin of :meth:`Filter.matches`)."""
    clauses: list[str] = []
    if selection.ids:
        clauses.append(dialect.in_list("id", selection.ids, params))
    if selection.statuses:
        clauses.append(dialect.in_list("status", sorted(selection.statuses), params))
    for column, values in (
        ("flow", selection.flows),
        ("original_queue", selection.queues),
        ("error_class", selection.error_classes),
        ("reason", selection.reasons),
        ("category", selection.categories),
        ("group_id", selection.groups),
        ("message_id", selection.message_ids),
        ("prior_replay_id", selection.replay_ids),
    ):
        if values:
            clauses.append(dialect.in_list(column, values, params))
    if selection.text:
        needle = params(selection.text.lower())
        clauses.append(
            f"({dialect.contains_ci('reason', needle)} OR {dialect.contains_ci('error_message', needle)})"
        )
    if selection.since:
        clauses.append(f"last_failure_at >= {params(dialect.ts(selection.since))}")
    if selection.until:
        clauses.append(f"last_failure_at < {params(dialect.ts(selection.until))}")
    for match in selection.headers:
        key = params(dialect.header_key(match.name))
        if match.value is None:
            clauses.append(dialect.header_exists(key))
        else:
            clauses.append(f"{dialect.header_text(key)} = {params(match.value)}")
    return " AND ".join(clauses) if clauses else "1 = 1"


class _Lifecycle(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SqlStore(DeadLetterStore):
    """The store's statements; backends add connections, migrations and run locks."""

    def __init__(self, dialect: Dialect, *, table_prefix: str = "") -> None:
        self._dialect = dialect
        self.dead_letters = f"{table_prefix}dead_letters"
        self.events_table = f"{table_prefix}dlq_events"
        self.runs_table = f"{table_prefix}dlq_replays"
        self.audit_table = f"{table_prefix}dlq_audit"
        self._lifecycle = _Lifecycle.NEW
        self._lifecycle_lock = asyncio.Lock()

    # -- backend hooks -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    def _session(self, *, write: bool) -> AbstractAsyncContextManager[Session]: ...

    @abc.abstractmethod
    async def _lock_held(self, replay_id: str) -> bool:
        """Whether some live process holds the run lock of ``replay_id``."""

    # -- lifecycle ---------------------------------------------------------------------------------

    async def setup(self) -> None:
        async with self._lifecycle_lock:
            if self._lifecycle is _Lifecycle.OPEN:
                return
            if self._lifecycle is _Lifecycle.CLOSED:
                raise RuntimeError(f"{type(self).__name__} is closed and cannot be reopened")
            await self._open()
            self._lifecycle = _Lifecycle.OPEN

    async def aclose(self) -> None:
        async with self._lifecycle_lock:
            was_open = self._lifecycle is _Lifecycle.OPEN
            self._lifecycle = _Lifecycle.CLOSED
            if was_open:
                await self._close()

    @asynccontextmanager
    async def _use(self, *, write: bool) -> AsyncIterator[Session]:
        if self._lifecycle is not _Lifecycle.OPEN:
            raise RuntimeError(f"{type(self).__name__} is {self._lifecycle.value}: call setup() first")
        async with self._session(write=write) as session:
            yield session

    # -- conversions -------------------------------------------------------------------------------

    def _record_values(self, record: DeadLetterRecord) -> list[Any]:
        values: list[Any] = []
        for column in RECORD_COLUMNS:
            if column == "body_size":
                values.append(record.body_size)
                continue
            value = getattr(record, column)
            if column in _TIMES:
                value = self._dialect.ts(value)
            elif column in _JSON:
                value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            values.append(value)
        return values

    def _record(self, row: Row) -> DeadLetterRecord:
        values: dict[str, Any] = {}
        for column in RECORD_COLUMNS:
            if column == "body_size":
                continue
            value = row[column]
            if column in _TIMES:
                value = self._dialect.ts_out(value)
            elif column in _JSON:
                value = json.loads(value) if isinstance(value, str) else dict(value or {})
            elif column in ("body", "original_body") and value is not None:
                value = bytes(value)
            values[column] = value
        values["seq"] = int(row["seq"])
        return DeadLetterRecord(**values)

    @property
    def _columns(self) -> str:
        return ", ".join(RECORD_COLUMNS)

    def _select(self) -> str:
        return f"SELECT seq, {self._columns} FROM {self.dead_letters}"

    # -- ingest ------------------------------------------------------------------------------------

    async def add(
        self,
        records: Sequence[DeadLetterRecord],
        *,
        kind: Literal["ingested", "imported"] = "ingested",
        operator: str | None = None,
        audit_id: str | None = None,
    ) -> list[str]:
        if not records:
            return []
        d = self._dialect
        marks = ", ".join(
            d.json_param(d.param(i)) if column in _JSON else d.param(i)
            for i, column in enumerate(RECORD_COLUMNS, start=1)
        )
        insert = (
            f"INSERT INTO {self.dead_letters} ({self._columns}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"
        )
        async with self._use(write=True) as session:
            existing = await self._existing(session, [r.id for r in records])
            new: list[DeadLetterRecord] = []
            for record in records:
                if record.id not in existing:
                    existing.add(record.id)  # a copy twice in one batch is stored once
                    new.append(record)
            if new:
                await session.executemany(insert, [self._record_values(r) for r in new])
                await self._add_events(
                    session,
                    [
                        StoreEvent(r.id, r.ingested_at, kind, operator=operator, audit_id=audit_id)
                        for r in new
                    ],
                )
        return [r.id for r in new]

    async def _existing(self, session: Session, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            params = Params(self._dialect)
            where = self._dialect.in_list("id", chunk, params)
            rows = await session.fetch(f"SELECT id FROM {self.dead_letters} WHERE {where}", params.values)
            found.update(str(row["id"]) for row in rows)
        return found

    async def _add_events(self, session: Session, events: Sequence[StoreEvent]) -> None:
        if not events:
            return
        d = self._dialect
        await session.executemany(
            f"INSERT INTO {self.events_table} "
            "(dead_letter_id, at, kind, operator, audit_id, replay_id, detail) "
            f"VALUES ({d.param(1)}, {d.param(2)}, {d.param(3)}, {d.param(4)}, {d.param(5)}, "
            f"{d.param(6)}, {d.json_param(d.param(7))})",
            [
                (
                    e.dead_letter_id,
                    d.ts(e.at),
                    e.kind,
                    e.operator,
                    e.audit_id,
                    e.replay_id,
                    json.dumps(e.detail, sort_keys=True, default=str),
                )
                for e in events
            ],
        )

    # -- queries -----------------------------------------------------------------------------------

    async def get(self, dead_letter_id: str) -> DeadLetterRecord | None:
        d = self._dialect
        async with self._use(write=False) as session:
            rows = await session.fetch(f"{self._select()} WHERE id = {d.param(1)}", [dead_letter_id])
        return self._record(rows[0]) if rows else None

    async def resolve(self, prefix: str, *, limit: int = 5) -> list[str]:
        d = self._dialect
        async with self._use(write=False) as session:
            rows = await session.fetch(
                f"SELECT id FROM {self.dead_letters} WHERE id LIKE {d.param(1)} "
                f"ORDER BY id LIMIT {int(limit)}",
                [prefix.replace("%", "").replace("_", "") + "%"],
            )
        return [str(row["id"]) for row in rows]

    async def find(
        self, selection: Filter, *, limit: int | None = None, offset: int = 0
    ) -> list[DeadLetterRecord]:
        params = Params(self._dialect)
        where = compile_filter(selection, self._dialect, params)
        page = ""
        if limit is not None:
            page = f" LIMIT {int(limit)}"
        elif offset and self.backend == "sqlite":
            page = " LIMIT -1"  # SQLite has no OFFSET without a LIMIT
        if offset:
            page += f" OFFSET {int(offset)}"
        async with self._use(write=False) as session:
            rows = await session.fetch(f"{self._select()} WHERE {where} ORDER BY seq{page}", params.values)
        return [self._record(row) for row in rows]

    async def count(self, selection: Filter) -> int:
        params = Params(self._dialect)
        where = compile_filter(selection, self._dialect, params)
        async with self._use(write=False) as session:
            rows = await session.fetch(
                f"SELECT count(*) AS n FROM {self.dead_letters} WHERE {where}", params.values
            )
        return int(rows[0]["n"])

    async def groups(self, selection: Filter, by: GroupBy) -> list[Group]:
        params = Params(self._dialect)
        where = compile_filter(selection, self._dialect, params)
        column = by.column  # an enum's fixed column name, never user input
        sql = (
            f"WITH g AS (SELECT {column} AS key, count(*) AS n, min(first_failure_at) AS first_at, "
            f"max(last_failure_at) AS last_at, min(seq) AS example_seq FROM {self.dead_letters} "
            f"WHERE {where} GROUP BY {column}) "
            "SELECT g.key, g.n, g.first_at, g.last_at, d.id, d.original_queue, d.error_class, d.reason, "
            f"d.error_message FROM g JOIN {self.dead_letters} d ON d.seq = g.example_seq "
            "ORDER BY g.n DESC, g.key"
        )
        async with self._use(write=False) as session:
            rows = await session.fetch(sql, params.values)
        groups: list[Group] = []
        for row in rows:
            first = self._dialect.ts_out(row["first_at"])
            last = self._dialect.ts_out(row["last_at"])
            assert first is not None  # NOT NULL columns
            assert last is not None
            groups.append(
                Group(
                    key=None if row["key"] is None else str(row["key"]),
                    count=int(row["n"]),
                    first_failure_at=first,
                    last_failure_at=last,
                    example_id=str(row["id"]),
                    queue=str(row["original_queue"]),
                    error_class=str(row["error_class"]),
                    reason=str(row["reason"]),
                    example_message=str(row["error_message"]),
                )
            )
        return groups

    async def candidates(self, selection: Filter) -> list[ReplayCandidate]:
        params = Params(self._dialect)
        where = compile_filter(selection, self._dialect, params)
        async with self._use(write=False) as session:
            rows = await session.fetch(
                "SELECT id, status, replay_id, CASE WHEN body IS NULL THEN 0 ELSE 1 END AS has_body "
                f"FROM {self.dead_letters} WHERE {where} ORDER BY seq",
                params.values,
            )
        return [
            ReplayCandidate(
                id=str(row["id"]),
                status=row["status"],
                replay_id=None if row["replay_id"] is None else str(row["replay_id"]),
                has_body=bool(row["has_body"]),
            )
            for row in rows
        ]

    async def load(self, ids: Sequence[str]) -> list[DeadLetterRecord]:
        found: dict[str, DeadLetterRecord] = {}
        async with self._use(write=False) as session:
            for chunk in _chunks(ids):
                params = Params(self._dialect)
                where = self._dialect.in_list("id", chunk, params)
                for row in await session.fetch(f"{self._select()} WHERE {where}", params.values):
                    record = self._record(row)
                    found[record.id] = record
        return [found[i] for i in ids if i in found]

    async def related(self, record: DeadLetterRecord) -> list[DeadLetterRecord]:
        d = self._dialect
        seen: dict[str, DeadLetterRecord] = {record.id: record}
        async with self._use(write=False) as session:
            if record.message_id:
                for row in await session.fetch(
                    f"{self._select()} WHERE message_id = {d.param(1)}", [record.message_id]
                ):
                    seen.setdefault(str(row["id"]), self._record(row))
            # Walk the replay chain both ways: what this was replayed from, and what came back.
            frontier = {r.id for r in seen.values()} | {
                r.replayed_from for r in seen.values() if r.replayed_from
            }
            while frontier:
                params = Params(d)
                ids = sorted(frontier)
                where = f"{d.in_list('id', ids, params)} OR {d.in_list('replayed_from', ids, params)}"
                frontier = set()
                for row in await session.fetch(f"{self._select()} WHERE {where}", params.values):
                    found = self._record(row)
                    if found.id not in seen:
                        seen[found.id] = found
                        frontier.add(found.id)
                        if found.replayed_from and found.replayed_from not in seen:
                            frontier.add(found.replayed_from)
        del seen[record.id]
        return sorted(seen.values(), key=lambda r: (r.first_failure_at, r.seq))

    async def events(self, dead_letter_id: str) -> list[StoreEvent]:
        d = self._dialect
        async with self._use(write=False) as session:
            rows = await session.fetch(
                "SELECT dead_letter_id, at, kind, operator, audit_id, replay_id, detail "
                f"FROM {self.events_table} WHERE dead_letter_id = {d.param(1)} ORDER BY seq",
                [dead_letter_id],
            )
        events: list[StoreEvent] = []
        for row in rows:
            at = d.ts_out(row["at"])
            assert at is not None
            detail = row["detail"]
            events.append(
                StoreEvent(
                    dead_letter_id=str(row["dead_letter_id"]),
                    at=at,
                    kind=row["kind"],
                    operator=row["operator"],
                    audit_id=row["audit_id"],
                    replay_id=row["replay_id"],
                    detail=json.loads(detail) if isinstance(detail, str) else dict(detail or {}),
                )
            )
        return events

    # -- replay ------------------------------------------------------------------------------------

    async def start_run(self, run: ReplayRun) -> None:
        d = self._dialect
        async with self._use(write=True) as session:
            await session.execute(
                f"INSERT INTO {self.runs_table} (replay_id, operator, host, pid, started_at, status, "
                "selected, target, audit_id, replayed, failed) VALUES "
                f"({', '.join(d.param(i) for i in range(1, 12))})",
                [
                    run.replay_id,
                    run.operator,
                    run.host,
                    run.pid,
                    d.ts(run.started_at),
                    run.status,
                    run.selected,
                    run.target,
                    run.audit_id,
                    run.replayed,
                    run.failed,
                ],
            )

    async def live_runs(self) -> set[str]:
        async with self._use(write=False) as session:
            rows = await session.fetch(f"SELECT replay_id FROM {self.runs_table} WHERE status = 'running'")
        alive: set[str] = set()
        dead: list[str] = []
        for row in rows:
            replay_id = str(row["replay_id"])
            (alive.add if await self._lock_held(replay_id) else dead.append)(replay_id)
        if dead:
            d = self._dialect
            async with self._use(write=True) as session:
                params = Params(d)
                now = params(d.ts(dt.datetime.now(dt.UTC)))
                where = d.in_list("replay_id", dead, params)
                await session.execute(
                    f"UPDATE {self.runs_table} SET status = 'interrupted', finished_at = {now} "
                    f"WHERE status = 'running' AND {where}",
                    params.values,
                )
            log.warning("dlq.replay_runs_found_dead", runs=dead)
        return alive

    async def claim(self, ids: Sequence[str], *, replay_id: str, again: bool, now: dt.datetime) -> list[str]:
        claimed: list[str] = []
        d = self._dialect
        eligible = (
            "status = 'parked' OR (status = 'replaying' AND (replay_id IS NULL OR replay_id NOT IN "
            f"(SELECT replay_id FROM {self.runs_table} WHERE status = 'running')))"
        )
        if again:
            eligible += " OR status = 'replayed'"
        async with self._use(write=True) as session:
            for chunk in _chunks(ids):
                params = Params(d)
                run = params(replay_id)
                at = params(d.ts(now))
                where = d.in_list("id", chunk, params)
                rows = await session.fetch(
                    f"UPDATE {self.dead_letters} SET status = 'replaying', replay_id = {run}, "
                    f"updated_at = {at} WHERE {where} AND body IS NOT NULL AND ({eligible}) RETURNING id",
                    params.values,
                )
                claimed.extend(str(row["id"]) for row in rows)
        return claimed

    async def mark_replayed(
        self,
        targets: Mapping[str, str],
        *,
        replay_id: str,
        operator: str,
        audit_id: str | None,
        now: dt.datetime,
    ) -> None:
        if not targets:
            return
        d = self._dialect
        p = d.param
        async with self._use(write=True) as session:
            await session.executemany(
                f"UPDATE {self.dead_letters} SET status = 'replayed', replay_count = replay_count + 1, "
                f"replayed_at = {p(1)}, replayed_to = {p(2)}, last_error = NULL, updated_at = {p(1)} "
                f"WHERE id = {p(3)} AND replay_id = {p(4)} AND status = 'replaying'",
                [
                    (d.ts(now), target, dead_letter_id, replay_id)
                    for dead_letter_id, target in targets.items()
                ],
            )
            await self._add_events(
                session,
                [
                    StoreEvent(
                        i,
                        now,
                        "replayed",
                        operator=operator,
                        audit_id=audit_id,
                        replay_id=replay_id,
                        detail={"to": target},
                    )
                    for i, target in targets.items()
                ],
            )

    async def release(
        self,
        errors: Mapping[str, str],
        *,
        replay_id: str,
        operator: str,
        audit_id: str | None,
        now: dt.datetime,
    ) -> None:
        if not errors:
            return
        d = self._dialect
        p = d.param
        async with self._use(write=True) as session:
            await session.executemany(
                f"UPDATE {self.dead_letters} SET status = CASE WHEN replay_count > 0 THEN 'replayed' "
                f"ELSE 'parked' END, last_error = {p(1)}, updated_at = {p(2)} "
                f"WHERE id = {p(3)} AND replay_id = {p(4)} AND status = 'replaying'",
                [(error, d.ts(now), dead_letter_id, replay_id) for dead_letter_id, error in errors.items()],
            )
            await self._add_events(
                session,
                [
                    StoreEvent(
                        i,
                        now,
                        "replay_failed",
                        operator=operator,
                        audit_id=audit_id,
                        replay_id=replay_id,
                        detail={"error": error},
                    )
                    for i, error in errors.items()
                ],
            )

    async def finish_run(
        self, replay_id: str, *, status: RunStatus, replayed: int, failed: int, now: dt.datetime
    ) -> None:
        d = self._dialect
        p = d.param
        async with self._use(write=True) as session:
            await session.execute(
                f"UPDATE {self.runs_table} SET status = {p(1)}, replayed = {p(2)}, failed = {p(3)}, "
                f"finished_at = {p(4)} WHERE replay_id = {p(5)}",
                [status, replayed, failed, d.ts(now), replay_id],
            )

    async def run(self, replay_id: str) -> ReplayRun | None:
        d = self._dialect
        async with self._use(write=False) as session:
            rows = await session.fetch(
                "SELECT replay_id, operator, host, pid, started_at, finished_at, status, selected, target, "
                f"audit_id, replayed, failed FROM {self.runs_table} WHERE replay_id = {d.param(1)}",
                [replay_id],
            )
        if not rows:
            return None
        row = rows[0]
        started = d.ts_out(row["started_at"])
        assert started is not None
        return ReplayRun(
            replay_id=str(row["replay_id"]),
            operator=str(row["operator"]),
            host=str(row["host"]),
            pid=int(row["pid"]),
            started_at=started,
            finished_at=d.ts_out(row["finished_at"]),
            status=row["status"],
            selected=int(row["selected"]),
            target=row["target"],
            audit_id=row["audit_id"],
            replayed=int(row["replayed"]),
            failed=int(row["failed"]),
        )

    # -- edit, purge, audit ------------------------------------------------------------------------

    async def edit(
        self,
        dead_letter_id: str,
        body: bytes,
        *,
        operator: str,
        audit_id: str,
        detail: Mapping[str, object],
        now: dt.datetime,
    ) -> DeadLetterRecord:
        d = self._dialect
        p = d.param
        async with self._use(write=True) as session:
            rows = await session.fetch(
                f"UPDATE {self.dead_letters} SET original_body = COALESCE(original_body, body), "
                f"body = {p(1)}, body_size = {p(2)}, edit_count = edit_count + 1, updated_at = {p(3)} "
                f"WHERE id = {p(4)} AND status IN ('parked', 'replayed') AND body IS NOT NULL "
                f"RETURNING seq, {self._columns}",
                [body, len(body), d.ts(now), dead_letter_id],
            )
            if not rows:
                found = await session.fetch(
                    f"SELECT status FROM {self.dead_letters} WHERE id = {p(1)}", [dead_letter_id]
                )
                if not found:
                    raise UsageError(f"no dead letter {dead_letter_id}")
                raise UsageError(
                    f"dead letter {dead_letter_id} is {found[0]['status']}: only parked or replayed "
                    "dead letters can be edited"
                )
            await self._add_events(
                session,
                [
                    StoreEvent(
                        dead_letter_id,
                        now,
                        "edited",
                        operator=operator,
                        audit_id=audit_id,
                        detail=dict(detail),
                    )
                ],
            )
        return self._record(rows[0])

    async def purge(self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime) -> list[str]:
        d = self._dialect
        purged: list[str] = []
        async with self._use(write=True) as session:
            for chunk in _chunks(ids):
                params = Params(d)
                at = params(d.ts(now))
                where = d.in_list("id", chunk, params)
                rows = await session.fetch(
                    f"UPDATE {self.dead_letters} SET status = 'purged', body = NULL, original_body = NULL, "
                    f"updated_at = {at} WHERE {where} AND status IN ('parked', 'replayed') RETURNING id",
                    params.values,
                )
                purged.extend(str(row["id"]) for row in rows)
            await self._add_events(
                session, [StoreEvent(i, now, "purged", operator=operator, audit_id=audit_id) for i in purged]
            )
        return purged

    async def record_audit(self, record: DlqAuditRecord) -> None:
        d = self._dialect
        p = d.param
        async with self._use(write=True) as session:
            await session.execute(
                f"INSERT INTO {self.audit_table} (audit_id, phase, at, operator, command, outcome, record) "
                f"VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)}, {p(5)}, {p(6)}, {d.json_param(p(7))}) "
                "ON CONFLICT (audit_id, phase) DO NOTHING",
                [
                    record.audit_id,
                    record.phase,
                    d.ts(record.at),
                    record.operator,
                    record.command,
                    record.outcome,
                    record.model_dump_json(),
                ],
            )

    async def audits(self, *, limit: int = 50) -> list[DlqAuditRecord]:
        async with self._use(write=False) as session:
            rows = await session.fetch(
                f"SELECT record FROM {self.audit_table} ORDER BY at DESC, phase DESC LIMIT {int(limit)}"
            )
        return [
            DlqAuditRecord.model_validate_json(r["record"])
            if isinstance(r["record"], str)
            else DlqAuditRecord.model_validate(r["record"])
            for r in rows
        ]


def schema_statements(store: SqlStore, types: Mapping[str, str]) -> tuple[str, ...]:
    """The DDL of schema version 1, idempotent (``IF NOT EXISTS``), in a backend's column types.

    ``types`` maps ``seq`` (auto-increment primary key), ``text``, ``int``, ``blob``, ``ts`` and
    ``json`` to the backend's spelling.
    """
    t = types
    statuses = "'parked', 'replaying', 'replayed', 'purged'"
    dl = store.dead_letters
    return (
        f"""CREATE TABLE IF NOT EXISTS {dl} (
            seq                  {t["seq"]},
            id                   {t["text"]} NOT NULL UNIQUE,
            status               {t["text"]} NOT NULL CHECK (status IN ({statuses})),
            dead_letter_queue    {t["text"]} NOT NULL,
            original_queue       {t["text"]} NOT NULL,
            original_exchange    {t["text"]} NOT NULL,
            original_routing_key {t["text"]} NOT NULL,
            flow                 {t["text"]},
            source               {t["text"]} NOT NULL,
            category             {t["text"]} NOT NULL,
            error_class          {t["text"]} NOT NULL,
            reason               {t["text"]} NOT NULL,
            error_message        {t["text"]} NOT NULL,
            traceback            {t["text"]} NOT NULL,
            attempts             {t["int"]} NOT NULL,
            first_failure_at     {t["ts"]} NOT NULL,
            last_failure_at      {t["ts"]} NOT NULL,
            group_id             {t["text"]} NOT NULL,
            connector_version    {t["text"]},
            pod                  {t["text"]},
            trace_id             {t["text"]},
            message_id           {t["text"]},
            correlation_id       {t["text"]},
            message_type         {t["text"]},
            content_type         {t["text"]},
            properties           {t["json"]} NOT NULL,
            headers              {t["json"]} NOT NULL,
            body                 {t["blob"]},
            body_size            {t["int"]} NOT NULL,
            original_body        {t["blob"]},
            edit_count           {t["int"]} NOT NULL DEFAULT 0,
            ingested_at          {t["ts"]} NOT NULL,
            replayed_from        {t["text"]},
            prior_replay_id      {t["text"]},
            prior_replays        {t["int"]} NOT NULL DEFAULT 0,
            replay_id            {t["text"]},
            replay_count         {t["int"]} NOT NULL DEFAULT 0,
            replayed_at          {t["ts"]},
            replayed_to          {t["text"]},
            last_error           {t["text"]},
            updated_at           {t["ts"]}
        )""",
        f"CREATE INDEX IF NOT EXISTS {dl}_status ON {dl} (status, seq)",
        f"CREATE INDEX IF NOT EXISTS {dl}_group ON {dl} (group_id, status)",
        f"CREATE INDEX IF NOT EXISTS {dl}_last_failure ON {dl} (last_failure_at)",
        f"CREATE INDEX IF NOT EXISTS {dl}_message_id ON {dl} (message_id)",
        f"CREATE INDEX IF NOT EXISTS {dl}_replayed_from ON {dl} (replayed_from)",
        f"CREATE INDEX IF NOT EXISTS {dl}_prior_replay ON {dl} (prior_replay_id)",
        f"CREATE INDEX IF NOT EXISTS {dl}_replay ON {dl} (replay_id)",
        f"""CREATE TABLE IF NOT EXISTS {store.events_table} (
            seq            {t["seq"]},
            dead_letter_id {t["text"]} NOT NULL,
            at             {t["ts"]} NOT NULL,
            kind           {t["text"]} NOT NULL,
            operator       {t["text"]},
            audit_id       {t["text"]},
            replay_id      {t["text"]},
            detail         {t["json"]} NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {store.events_table}_dead_letter "
        f"ON {store.events_table} (dead_letter_id, seq)",
        f"""CREATE TABLE IF NOT EXISTS {store.runs_table} (
            replay_id   {t["text"]} PRIMARY KEY,
            operator    {t["text"]} NOT NULL,
            host        {t["text"]} NOT NULL,
            pid         {t["int"]} NOT NULL,
            started_at  {t["ts"]} NOT NULL,
            finished_at {t["ts"]},
            status      {t["text"]} NOT NULL,
            selected    {t["int"]} NOT NULL,
            target      {t["text"]},
            audit_id    {t["text"]},
            replayed    {t["int"]} NOT NULL DEFAULT 0,
            failed      {t["int"]} NOT NULL DEFAULT 0
        )""",
        f"CREATE INDEX IF NOT EXISTS {store.runs_table}_status ON {store.runs_table} (status)",
        f"""CREATE TABLE IF NOT EXISTS {store.audit_table} (
            audit_id {t["text"]} NOT NULL,
            phase    {t["text"]} NOT NULL,
            at       {t["ts"]} NOT NULL,
            operator {t["text"]} NOT NULL,
            command  {t["text"]} NOT NULL,
            outcome  {t["text"]} NOT NULL,
            record   {t["json"]} NOT NULL,
            PRIMARY KEY (audit_id, phase)
        )""",
        f"CREATE INDEX IF NOT EXISTS {store.audit_table}_at ON {store.audit_table} (at)",
    )


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
