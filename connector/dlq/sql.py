"""The dead-letter store in SQL, once for both backends: SQLAlchemy Core on an async engine.

The statements are built from the tables of :mod:`connector.state.dlq_schema` and run on
aiosqlite or asyncpg; the backends (:mod:`~connector.dlq.sqlite`, :mod:`~connector.dlq.postgres`)
supply the engine, run locks and what a failure means. The schema is created and upgraded by the
one migration runner of the connector's state (:func:`connector.state.migrations.migrate`, tree
:data:`~connector.state.migrations.DEAD_LETTERS`), which also adopts stores made by the
hand-written runner of earlier releases. Opening and closing follow
:class:`~connector.state.lifecycle.StoreLifecycle`, as the ledger's and the poller's stores do.

Why Core here, unlike the ledger's hot path: nothing in the store runs per event on the
consumers' path; listing, grouping, claiming, purging and replay bookkeeping are operator commands,
run once per command or per replay batch. Nothing is ever spliced into a statement: values are
bound parameters, and the only names that vary -- the table prefix and a group-by column -- come
from the checked prefix and from an enum.

**Ingest is the exception, by measurement.** :meth:`SqlStore.add` runs once per dead letter in the
pods' continuous ingester (which commits whatever arrived together, often one). Through the
engine it took 1.5-3x the CPU per dead letter of the hand-written store, and on SQLite ran
single-letter commits at a third of the rate: each statement costs the aiosqlite adapter extra
round trips to its thread, plus SQLAlchemy's per-statement work (``bench/dlq_store.py --core``;
figures in ``docs/dead-letters.md``). So its three statements are still built with Core
from the same tables, compiled once per store (:class:`DriverStatement`), and run with their bound
parameters on the bare driver connection of one of the engine's connections, in one transaction:
the speed of the old store, and no second description of the tables.

**So is marking a replay batch replayed.** :meth:`SqlStore.mark_replayed` runs once per replay
batch, but binds one row of the update and one of the history per dead letter, and through the
engine SQLAlchemy's per-row parameter processing was a tenth of ``dlq replay``'s CPU
(``bench/dlq_replay.py`` under a sampling profiler). It runs on the same driver path.

What differs between the backends is said once, in the helpers below:

=================  =========================================  ===================================
                   SQLite                                     PostgreSQL
=================  =========================================  ===================================
id lists           ``IN (SELECT value FROM json_each(?))``:   ``= ANY(CAST($1 AS TEXT[]))``
                   one parameter, however many ids
headers            ``json_type`` / ``json_extract``           ``->`` / ``->>`` on ``jsonb``
text search        ``instr(lower(col), ?) > 0``               ``strpos(lower(col), $1) > 0``
=================  =========================================  ===================================
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Final, Literal, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from connector.dlq.grouping import GroupBy
from connector.dlq.records import (
    DeadLetterRecord,
    Group,
    PodHeartbeat,
    ReplayRun,
    RunStatus,
    Status,
    StoreEvent,
)
from connector.dlq.selection import Filter, ReplayCandidate
from connector.dlq.store import DeadLetterStore, StoreUnavailable
from connector.errors import ConnectorError, UsageError
from connector.logging import get_logger
from connector.state.dlq_schema import dlq_metadata
from connector.state.ledger import LedgerUnavailable
from connector.state.lifecycle import StoreLifecycle
from connector.state.migrations import DEAD_LETTERS, READ_ONLY, migrate, recorded
from connector.state.schema import check_prefix
from schemas.dlq import DlqAuditRecord

log = get_logger(__name__)

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
_EDITABLE: Final = ("parked", "replayed")

BUGS: Final = (
    sa.exc.IntegrityError,
    sa.exc.DataError,
    sqlite3.IntegrityError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
"""Errors from the database that are bugs of ours (a value it cannot take), not outages: left alone."""
# Failures that mean "the store cannot be used right now" (after BUGS, which are caught first).
UNAVAILABLE: Final = (
    sa.exc.DBAPIError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def one_line(exc: BaseException) -> str:
    """The driver's first line: SQLAlchemy appends the statement and a link on further lines."""
    inner = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()
    if isinstance(inner, ConnectorError):
        return text[0] if text else inner.reason
    return f"{type(inner).__name__}: {text[0]}" if text else type(inner).__name__


EVENT_COLUMNS: Final = ("dead_letter_id", "at", "kind", "operator", "audit_id", "replay_id", "detail")


class DriverStatement:
    """A Core statement compiled once for the engine's dialect, to run on the bare driver connection.

    The text is the one SQLAlchemy itself would send, parameters bound by position. :meth:`bind`
    (from a mapping) and :meth:`bind_attributes` (from an object's attributes of the same names)
    put values in that order through each column type's own bind processing, so the driver gets
    what it would get through the engine -- at C speed for the columns that need no processing.
    """

    __slots__ = ("_attributes", "_items", "_processing", "_processors", "keys", "text")

    def __init__(
        self, text: str, keys: Sequence[str], processors: Sequence[Callable[[Any], Any] | None]
    ) -> None:
        if not keys:
            raise ValueError("a driver statement binds at least one parameter")
        self.text = text
        self.keys = tuple(keys)
        self._items: Callable[[Mapping[str, Any]], Any] = itemgetter(*self.keys)
        self._attributes: Callable[[object], Any] = attrgetter(*self.keys)
        self._processors = tuple(processors)
        self._processing = tuple((i, process) for i, process in enumerate(processors) if process is not None)

    @classmethod
    def compile(
        cls, statement: sa.ClauseElement, dialect: sa.Dialect, column_keys: Sequence[str] | None = None
    ) -> DriverStatement:
        compiled = statement.compile(
            dialect=dialect,
            column_keys=None if column_keys is None else list(column_keys),
            for_executemany=True,  # no implicit RETURNING of the new row's key
        )
        assert isinstance(compiled, SQLCompiler)
        keys = tuple(compiled.positiontup or ())
        # dialect_impl: a TypeDecorator's processing as this dialect runs it (its load_dialect_impl).
        processors = [compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys]
        return cls(str(compiled), keys, processors)

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        return self._processed(self._items(values))

    def bind_attributes(self, source: object) -> list[Any]:
        return self._processed(self._attributes(source))

    def binder(self, constants: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], list[Any]]:
        """:meth:`bind` for many rows that share ``constants``, which are processed once, not per row
        (a batch's timestamp through its type's processing was most of what binding a row cost)."""
        template: list[Any] = [None] * len(self.keys)
        varying: list[tuple[int, str, Callable[[Any], Any] | None]] = []
        for i, (key, process) in enumerate(zip(self.keys, self._processors, strict=True)):
            if key in constants:
                template[i] = constants[key] if process is None else process(constants[key])
            else:
                varying.append((i, key, process))

        def bind(values: Mapping[str, Any]) -> list[Any]:
            row = template.copy()
            for i, key, process in varying:
                value = values[key]
                row[i] = value if process is None else process(value)
            return row

        return bind

    def _processed(self, got: Any) -> list[Any]:
        row = [got] if len(self.keys) == 1 else list(got)  # itemgetter of one key: the value itself
        for i, process in self._processing:
            row[i] = process(row[i])
        return row


@dataclass(frozen=True, slots=True)
class IngestStatements:
    """The statements of :meth:`SqlStore.add`, compiled for one store's dialect and table prefix."""

    existing: DriverStatement
    letter: DriverStatement
    event: DriverStatement
    replayed: DriverStatement  # one claimed row marked replayed (:meth:`SqlStore.mark_replayed`)


class Driver(Protocol):
    """The bare driver connection of one write transaction (see :meth:`SqlStore.add`)."""

    async def scalars(self, statement: DriverStatement, params: Sequence[Any]) -> list[Any]:
        """The first column of the rows ``statement`` returns, run with ``params`` (bound)."""

    async def executemany(self, statement: DriverStatement, rows: Sequence[Sequence[Any]]) -> None:
        """``statement`` once per row of bound parameters."""


def _event_values(event: StoreEvent) -> dict[str, Any]:
    return {
        "dead_letter_id": event.dead_letter_id,
        "at": event.at,
        "kind": event.kind,
        "operator": event.operator,
        "audit_id": event.audit_id,
        "replay_id": event.replay_id,
        "detail": event.detail,
    }


class SqlStore(StoreLifecycle, DeadLetterStore):
    """The store's statements; backends add the engine, run locks and what a failure means.

    ``create=False``: :meth:`setup` raises :class:`~connector.dlq.store.StoreMissing` rather than
    create a store that is not there; an existing one is still migrated (adopted, upgraded).
    """

    backend: str = "abstract"

    def __init__(self, *, table_prefix: str = "", create: bool = True) -> None:
        super().__init__()
        self.table_prefix = check_prefix(table_prefix)
        self._create = create
        self._engine: AsyncEngine | None = None
        # Set by backends whose sessions must take turns (SQLite: one connection).
        self._serial: asyncio.Lock | None = None
        tables = dlq_metadata(self.table_prefix).tables
        p = self.table_prefix
        self._letters = tables[f"{p}dead_letters"]
        self._events = tables[f"{p}dlq_events"]
        self._runs = tables[f"{p}dlq_replays"]
        self._audit = tables[f"{p}dlq_audit"]
        self._beats = tables[f"{p}pod_heartbeats"]
        self._record_columns = [self._letters.c[name] for name in ("seq", *RECORD_COLUMNS)]
        self._ingest: IngestStatements | None = None

    # -- backend hooks -----------------------------------------------------------------------------

    @abc.abstractmethod
    def _unavailable(self, action: str, exc: BaseException) -> StoreUnavailable:
        """What a failure to ``action`` because of ``exc`` means to the caller."""

    @abc.abstractmethod
    def _describe(self) -> str:
        """Where the store is, for messages (never a password)."""

    @abc.abstractmethod
    async def _lock_held(self, replay_id: str) -> bool:
        """Whether some live process holds the run lock of ``replay_id``."""

    @abc.abstractmethod
    def _driver_transaction(self, action: str) -> AbstractAsyncContextManager[Driver]:
        """A write transaction on the bare driver connection of one of the engine's connections."""

    # -- lifecycle ---------------------------------------------------------------------------------

    def _closed_error(self) -> Exception:
        return StoreUnavailable(f"the {self.backend} dead-letter store is closed", reason="dlq_store_closed")

    async def _migrate(self, engine: AsyncEngine) -> None:
        """Create, adopt or upgrade the store's tables (call inside :meth:`_translating`)."""
        await migrate(engine, table_prefix=self.table_prefix, tree=DEAD_LETTERS)

    async def _recorded(self, engine: AsyncEngine) -> bool:
        """Whether the store's tables exist (made by this code or an earlier runner); reads only."""
        async with engine.connect() as conn:
            return await conn.run_sync(recorded, self.table_prefix, DEAD_LETTERS)

    @contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except LedgerUnavailable as exc:  # from migrate()
            if isinstance(exc.__cause__, UNAVAILABLE):
                raise self._unavailable(action, exc.__cause__) from exc
            too_new = exc.reason == "ledger_schema_too_new"
            raise StoreUnavailable(
                f"the dead-letter store {self._describe()} could not {action}: {exc.message}",
                reason="dlq_store_schema_too_new" if too_new else "dlq_store_migration_failed",
            ) from exc
        except BUGS:
            raise  # a bug of ours, not an outage
        except UNAVAILABLE as exc:
            raise self._unavailable(action, exc) from exc

    @asynccontextmanager
    async def _session(self, action: str, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """A transaction: ``write`` takes the write lock up front (SQLite), a read a snapshot."""
        self._check_open()
        engine = self._engine
        if engine is None:
            raise self._closed_error()
        turn: AbstractAsyncContextManager[Any] = (
            self._serial if self._serial is not None else contextlib.nullcontext()
        )
        async with turn:
            with self._translating(action):
                if write:
                    async with engine.begin() as conn:
                        yield conn
                else:
                    async with engine.connect() as conn:
                        await conn.execution_options(**{READ_ONLY: True})
                        yield conn

    async def _close_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    # -- statements: what differs between the backends ---------------------------------------------

    @property
    def _postgres(self) -> bool:
        return self.backend == "postgres"

    def _insert(self, table: sa.Table) -> pg_dialect.Insert | sqlite_dialect.Insert:
        return pg_dialect.insert(table) if self._postgres else sqlite_dialect.insert(table)

    def _listed(self, values: Sequence[str]) -> Any:
        """How a list of values is bound: an array on PostgreSQL, a JSON array on SQLite."""
        return list(values) if self._postgres else json.dumps(list(values))

    @property
    def _list_type(self) -> sa.types.TypeEngine[Any]:
        return pg_dialect.ARRAY(sa.Text()) if self._postgres else sa.Text()

    def _in(
        self, column: sa.ColumnElement[Any], values: Sequence[str] | sa.BindParameter[Any]
    ) -> sa.ColumnElement[bool]:
        """``column`` is one of ``values``, with one bound parameter however many values there are."""
        listed = (
            values
            if isinstance(values, sa.BindParameter)
            else sa.literal(self._listed(values), self._list_type)
        )
        if self._postgres:
            return column == sa.any_(sa.cast(listed, pg_dialect.ARRAY(sa.Text())))
        # SQLite caps bound parameters per statement: one JSON array instead.
        return column.in_(sa.select(sa.func.json_each(listed).table_valued("value").c.value))

    def _contains(self, column: sa.ColumnElement[str], needle: str) -> sa.ColumnElement[bool]:
        """Case-insensitive substring (``needle`` already lower-case); LIKE would read ``_`` and ``%``."""
        find = sa.func.strpos if self._postgres else sa.func.instr
        return find(sa.func.lower(column), sa.literal(needle, sa.Text())) > 0

    def _header(self, name: str) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[str]]:
        """Whether header ``name`` is present, and its value as text (JSON's spelling of scalars)."""
        headers = self._letters.c.headers
        if self._postgres:
            key = sa.cast(sa.literal(name, sa.Text()), sa.Text())
            value = headers.op("->", return_type=pg_dialect.JSONB())(key)
            text = sa.case(
                (sa.func.jsonb_typeof(value) == "null", "null"),
                else_=headers.op("->>", return_type=sa.Text())(key),
            )
            return value.is_not(None), text
        path = sa.literal('$."' + name.replace('"', "") + '"', sa.Text())
        kind = sa.func.json_type(headers, path)
        text = sa.case(
            (kind == "true", "true"),
            (kind == "false", "false"),
            (kind == "null", "null"),
            else_=sa.cast(sa.func.json_extract(headers, path), sa.Text()),
        )
        return kind.is_not(None), text

    def _where(self, selection: Filter) -> sa.ColumnElement[bool]:
        """The condition for ``selection`` (the SQL twin of :meth:`Filter.matches`)."""
        t = self._letters
        clauses: list[sa.ColumnElement[bool]] = []
        if selection.ids:
            clauses.append(self._in(t.c.id, selection.ids))
        if selection.statuses:
            clauses.append(self._in(t.c.status, sorted(selection.statuses)))
        for column, values in (
            ("flow", selection.flows),
            ("source", selection.sources),
            ("original_queue", selection.queues),
            ("error_class", selection.error_classes),
            ("reason", selection.reasons),
            ("category", selection.categories),
            ("group_id", selection.groups),
            ("message_id", selection.message_ids),
            ("prior_replay_id", selection.replay_ids),
        ):
            if values:
                clauses.append(self._in(t.c[column], values))
        if selection.text:
            needle = selection.text.lower()
            clauses.append(
                sa.or_(self._contains(t.c.reason, needle), self._contains(t.c.error_message, needle))
            )
        if selection.since:
            clauses.append(t.c.last_failure_at >= selection.since)
        if selection.until:
            clauses.append(t.c.last_failure_at < selection.until)
        for match in selection.headers:
            present, text = self._header(match.name)
            clauses.append(present if match.value is None else text == sa.literal(match.value, sa.Text()))
        return sa.and_(sa.true(), *clauses)

    # -- conversions -------------------------------------------------------------------------------

    @staticmethod
    def _values(record: DeadLetterRecord) -> dict[str, Any]:
        return {column: getattr(record, column) for column in RECORD_COLUMNS}

    @staticmethod
    def _record(row: sa.Row[Any]) -> DeadLetterRecord:
        found = row._mapping
        values: dict[str, Any] = {column: found[column] for column in RECORD_COLUMNS if column != "body_size"}
        for column in ("body", "original_body"):
            if values[column] is not None:
                values[column] = bytes(values[column])
        values["properties"] = dict(values["properties"] or {})
        values["headers"] = dict(values["headers"] or {})
        values["seq"] = int(found["seq"])
        return DeadLetterRecord(**values)

    def _select(self) -> sa.Select[Any]:
        return sa.select(*self._record_columns)

    # -- ingest ------------------------------------------------------------------------------------

    async def add(
        self,
        records: Sequence[DeadLetterRecord],
        *,
        kind: Literal["ingested", "imported"] = "ingested",
        operator: str | None = None,
        audit_id: str | None = None,
    ) -> list[str]:
        # On the driver connection, with statements compiled from Core: see the module docstring.
        if not records:
            return []
        batch: dict[str, DeadLetterRecord] = {}
        for record in records:
            batch.setdefault(record.id, record)  # a copy twice in one batch is stored once
        ingest = self._ingest_statements()
        async with self._driver_transaction("store dead letters") as db:
            existing: set[str] = set()
            for chunk in _chunks(list(batch)):
                found = await db.scalars(ingest.existing, ingest.existing.bind({"ids": self._listed(chunk)}))
                existing.update(str(i) for i in found)
            new = [r for r in batch.values() if r.id not in existing]
            if new:
                await db.executemany(ingest.letter, [ingest.letter.bind_attributes(r) for r in new])
                history = [
                    StoreEvent(r.id, r.ingested_at, kind, operator=operator, audit_id=audit_id) for r in new
                ]
                await db.executemany(ingest.event, [ingest.event.bind_attributes(e) for e in history])
        return [r.id for r in new]

    def _ingest_statements(self) -> IngestStatements:
        if self._ingest is None:
            engine = self._engine
            if engine is None:
                raise self._closed_error()
            t = self._letters
            dialect = engine.dialect
            self._ingest = IngestStatements(
                existing=DriverStatement.compile(
                    sa.select(t.c.id).where(self._in(t.c.id, sa.bindparam("ids", type_=self._list_type))),
                    dialect,
                ),
                letter=DriverStatement.compile(
                    self._insert(t).on_conflict_do_nothing(index_elements=[t.c.id]), dialect, RECORD_COLUMNS
                ),
                event=DriverStatement.compile(sa.insert(self._events), dialect, EVENT_COLUMNS),
                replayed=DriverStatement.compile(self._replayed_update(), dialect),
            )
        return self._ingest

    async def _add_events(self, conn: AsyncConnection, events: Sequence[StoreEvent]) -> None:
        if not events:
            return
        await conn.execute(sa.insert(self._events), [_event_values(e) for e in events])

    # -- queries -----------------------------------------------------------------------------------

    async def get(self, dead_letter_id: str) -> DeadLetterRecord | None:
        statement = self._select().where(self._letters.c.id == dead_letter_id)
        async with self._session("read a dead letter", write=False) as conn:
            row = (await conn.execute(statement)).first()
        return None if row is None else self._record(row)

    async def resolve(self, prefix: str, *, limit: int = 5) -> list[str]:
        t = self._letters
        pattern = prefix.replace("%", "").replace("_", "") + "%"
        statement = sa.select(t.c.id).where(t.c.id.like(pattern)).order_by(t.c.id).limit(int(limit))
        async with self._session("resolve an id", write=False) as conn:
            return [str(i) for i in (await conn.execute(statement)).scalars()]

    async def find(
        self, selection: Filter, *, limit: int | None = None, offset: int = 0
    ) -> list[DeadLetterRecord]:
        statement = self._select().where(self._where(selection)).order_by(self._letters.c.seq)
        if limit is not None:
            statement = statement.limit(int(limit))
        if offset:
            statement = statement.offset(int(offset))
        async with self._session("list dead letters", write=False) as conn:
            rows = (await conn.execute(statement)).all()
        return [self._record(row) for row in rows]

    async def count(self, selection: Filter) -> int:
        statement = sa.select(sa.func.count()).select_from(self._letters).where(self._where(selection))
        async with self._session("count dead letters", write=False) as conn:
            return int((await conn.execute(statement)).scalar_one())

    async def groups(self, selection: Filter, by: GroupBy) -> list[Group]:
        t = self._letters
        key = t.c[by.column]  # an enum's fixed column name, never user input
        g = (
            sa.select(
                key.label("key"),
                sa.func.count().label("n"),
                sa.func.min(t.c.first_failure_at).label("first_at"),
                sa.func.max(t.c.last_failure_at).label("last_at"),
                sa.func.min(t.c.seq).label("example_seq"),
            )
            .where(self._where(selection))
            .group_by(key)
            .cte("g")
        )
        d = t.alias("d")
        statement = (
            sa.select(
                g.c.key,
                g.c.n,
                g.c.first_at,
                g.c.last_at,
                d.c.id,
                d.c.original_queue,
                d.c.error_class,
                d.c.reason,
                d.c.error_message,
            )
            .join_from(g, d, d.c.seq == g.c.example_seq)
            .order_by(g.c.n.desc(), g.c.key)
        )
        async with self._session("group dead letters", write=False) as conn:
            rows = (await conn.execute(statement)).all()
        return [
            Group(
                key=None if row.key is None else str(row.key),
                count=int(row.n),
                first_failure_at=row.first_at,
                last_failure_at=row.last_at,
                example_id=str(row.id),
                queue=str(row.original_queue),
                error_class=str(row.error_class),
                reason=str(row.reason),
                example_message=str(row.error_message),
            )
            for row in rows
        ]

    async def candidates(self, selection: Filter) -> list[ReplayCandidate]:
        t = self._letters
        has_body = sa.case((t.c.body.is_(None), 0), else_=1).label("has_body")
        statement = (
            sa.select(t.c.id, t.c.status, t.c.replay_id, has_body)
            .where(self._where(selection))
            .order_by(t.c.seq)
        )
        async with self._session("plan a replay", write=False) as conn:
            rows = (await conn.execute(statement)).all()
        return [
            ReplayCandidate(
                id=str(row.id),
                status=row.status,
                replay_id=None if row.replay_id is None else str(row.replay_id),
                has_body=bool(row.has_body),
            )
            for row in rows
        ]

    async def load(self, ids: Sequence[str]) -> list[DeadLetterRecord]:
        found: dict[str, DeadLetterRecord] = {}
        async with self._session("load dead letters", write=False) as conn:
            for chunk in _chunks(ids):
                statement = self._select().where(self._in(self._letters.c.id, chunk))
                for row in await conn.execute(statement):
                    record = self._record(row)
                    found[record.id] = record
        return [found[i] for i in ids if i in found]

    async def related(self, record: DeadLetterRecord) -> list[DeadLetterRecord]:
        t = self._letters
        seen: dict[str, DeadLetterRecord] = {record.id: record}
        async with self._session("find related dead letters", write=False) as conn:
            if record.message_id:
                for row in await conn.execute(self._select().where(t.c.message_id == record.message_id)):
                    seen.setdefault(str(row.id), self._record(row))
            # Walk the replay chain both ways: what this was replayed from, and what came back.
            frontier = {r.id for r in seen.values()} | {
                r.replayed_from for r in seen.values() if r.replayed_from
            }
            while frontier:
                ids = sorted(frontier)
                frontier = set()
                statement = self._select().where(
                    sa.or_(self._in(t.c.id, ids), self._in(t.c.replayed_from, ids))
                )
                for row in await conn.execute(statement):
                    found = self._record(row)
                    if found.id not in seen:
                        seen[found.id] = found
                        frontier.add(found.id)
                        if found.replayed_from and found.replayed_from not in seen:
                            frontier.add(found.replayed_from)
        del seen[record.id]
        return sorted(seen.values(), key=lambda r: (r.first_failure_at, r.seq))

    async def events(self, dead_letter_id: str) -> list[StoreEvent]:
        e = self._events
        statement = (
            sa.select(
                e.c.dead_letter_id, e.c.at, e.c.kind, e.c.operator, e.c.audit_id, e.c.replay_id, e.c.detail
            )
            .where(e.c.dead_letter_id == dead_letter_id)
            .order_by(e.c.seq)
        )
        async with self._session("read a dead letter's history", write=False) as conn:
            rows = (await conn.execute(statement)).all()
        return [
            StoreEvent(
                dead_letter_id=str(row.dead_letter_id),
                at=row.at,
                kind=row.kind,
                operator=row.operator,
                audit_id=row.audit_id,
                replay_id=row.replay_id,
                detail=dict(row.detail or {}),
            )
            for row in rows
        ]

    # -- replay ------------------------------------------------------------------------------------

    async def start_run(self, run: ReplayRun) -> None:
        statement = sa.insert(self._runs).values(
            replay_id=run.replay_id,
            operator=run.operator,
            host=run.host,
            pid=run.pid,
            started_at=run.started_at,
            status=run.status,
            selected=run.selected,
            target=run.target,
            audit_id=run.audit_id,
            replayed=run.replayed,
            failed=run.failed,
        )
        async with self._session("record a replay run", write=True) as conn:
            await conn.execute(statement)

    async def live_runs(self) -> set[str]:
        runs = self._runs
        async with self._session("list replay runs", write=False) as conn:
            running = (
                await conn.execute(sa.select(runs.c.replay_id).where(runs.c.status == "running"))
            ).scalars()
            recorded_running = [str(i) for i in running]
        alive: set[str] = set()
        dead: list[str] = []
        for replay_id in recorded_running:
            (alive.add if await self._lock_held(replay_id) else dead.append)(replay_id)
        if dead:
            statement = (
                sa.update(runs)
                .where(runs.c.status == "running", self._in(runs.c.replay_id, dead))
                .values(status="interrupted", finished_at=dt.datetime.now(dt.UTC))
            )
            async with self._session("mark replay runs interrupted", write=True) as conn:
                await conn.execute(statement)
            log.warning("dlq.replay_runs_found_dead", runs=dead)
        return alive

    async def claim(self, ids: Sequence[str], *, replay_id: str, again: bool, now: dt.datetime) -> list[str]:
        t, runs = self._letters, self._runs
        running = sa.select(runs.c.replay_id).where(runs.c.status == "running")
        eligible = sa.or_(
            t.c.status == "parked",
            sa.and_(
                t.c.status == "replaying", sa.or_(t.c.replay_id.is_(None), t.c.replay_id.not_in(running))
            ),
        )
        if again:
            eligible = sa.or_(eligible, t.c.status == "replayed")
        claimed: list[str] = []
        async with self._session("claim dead letters", write=True) as conn:
            for chunk in _chunks(ids):
                # One conditional UPDATE: of two runs claiming a row, the second finds it taken.
                statement = (
                    sa.update(t)
                    .where(self._in(t.c.id, chunk), t.c.body.is_not(None), eligible)
                    .values(status="replaying", replay_id=replay_id, updated_at=now)
                    .returning(t.c.id)
                )
                claimed.extend(str(i) for i in (await conn.execute(statement)).scalars())
        return claimed

    def _settle(self, **values: Any) -> sa.Update:
        """The UPDATE of one claimed row per parameter set (``b_id``, ``b_run``), as ``executemany``.

        No anonymous parameter of its own, so that it also compiles into a :class:`DriverStatement`
        (which binds by name) when ``values`` are named parameters or SQL expressions.
        """
        t = self._letters
        return (
            sa.update(t)
            .where(
                t.c.id == sa.bindparam("b_id", type_=sa.Text()),
                t.c.replay_id == sa.bindparam("b_run", type_=sa.Text()),
                t.c.status == sa.literal_column("'replaying'"),
            )
            .values(**values)
        )

    def _replayed_update(self) -> sa.Update:
        """:meth:`_settle` marking a row replayed, for the driver path of :meth:`mark_replayed`."""
        t = self._letters
        return self._settle(
            status=sa.literal_column("'replayed'"),
            replay_count=t.c.replay_count + sa.literal_column("1", sa.Integer()),
            replayed_at=sa.bindparam("b_at", type_=t.c.replayed_at.type),
            replayed_to=sa.bindparam("b_to", type_=sa.Text()),
            last_error=sa.null(),
            updated_at=sa.bindparam("b_updated", type_=t.c.updated_at.type),
        )

    async def mark_replayed(
        self,
        targets: Mapping[str, str],
        *,
        replay_id: str,
        operator: str,
        audit_id: str | None,
        now: dt.datetime,
    ) -> None:
        # On the driver connection, with statements compiled from Core: see the module docstring.
        if not targets:
            return
        statements = self._ingest_statements()
        update = statements.replayed.binder({"b_run": replay_id, "b_at": now, "b_updated": now})
        shared = StoreEvent("", now, "replayed", operator=operator, audit_id=audit_id, replay_id=replay_id)
        event = statements.event.binder(
            {k: v for k, v in _event_values(shared).items() if k not in ("dead_letter_id", "detail")}
        )
        async with self._driver_transaction("mark dead letters replayed") as db:
            await db.executemany(
                statements.replayed, [update({"b_id": i, "b_to": to}) for i, to in targets.items()]
            )
            await db.executemany(
                statements.event,
                [event({"dead_letter_id": i, "detail": {"to": to}}) for i, to in targets.items()],
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
        t = self._letters
        statement = self._settle(
            status=sa.case((t.c.replay_count > 0, "replayed"), else_="parked"),
            last_error=sa.bindparam("b_error", type_=sa.Text()),
            updated_at=now,
        )
        async with self._session("release dead letters", write=True) as conn:
            await conn.execute(
                statement,
                [{"b_id": i, "b_run": replay_id, "b_error": error} for i, error in errors.items()],
            )
            await self._add_events(
                conn,
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
        runs = self._runs
        statement = (
            sa.update(runs)
            .where(runs.c.replay_id == replay_id)
            .values(status=status, replayed=replayed, failed=failed, finished_at=now)
        )
        async with self._session("finish a replay run", write=True) as conn:
            await conn.execute(statement)

    async def run(self, replay_id: str) -> ReplayRun | None:
        runs = self._runs
        async with self._session("read a replay run", write=False) as conn:
            row = (await conn.execute(sa.select(runs).where(runs.c.replay_id == replay_id))).first()
        if row is None:
            return None
        return ReplayRun(
            replay_id=str(row.replay_id),
            operator=str(row.operator),
            host=str(row.host),
            pid=int(row.pid),
            started_at=row.started_at,
            finished_at=row.finished_at,
            status=row.status,
            selected=int(row.selected),
            target=row.target,
            audit_id=row.audit_id,
            replayed=int(row.replayed),
            failed=int(row.failed),
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
        t = self._letters
        statement = (
            sa.update(t)
            .where(t.c.id == dead_letter_id, t.c.status.in_(_EDITABLE), t.c.body.is_not(None))
            .values(
                original_body=sa.func.coalesce(t.c.original_body, t.c.body),
                body=body,
                body_size=len(body),
                edit_count=t.c.edit_count + 1,
                updated_at=now,
            )
            .returning(*self._record_columns)
        )
        async with self._session("edit a dead letter", write=True) as conn:
            row = (await conn.execute(statement)).first()
            if row is None:
                found = (await conn.execute(sa.select(t.c.status).where(t.c.id == dead_letter_id))).first()
                if found is None:
                    raise UsageError(f"no dead letter {dead_letter_id}")
                raise UsageError(
                    f"dead letter {dead_letter_id} is {found.status}: only parked or replayed "
                    "dead letters can be edited"
                )
            await self._add_events(
                conn,
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
        return self._record(row)

    async def purge(self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime) -> list[str]:
        t = self._letters
        purged: list[str] = []
        async with self._session("purge dead letters", write=True) as conn:
            for chunk in _chunks(ids):
                statement = (
                    sa.update(t)
                    .where(self._in(t.c.id, chunk), t.c.status.in_(_EDITABLE))
                    .values(status="purged", body=None, original_body=None, updated_at=now)
                    .returning(t.c.id)
                )
                purged.extend(str(i) for i in (await conn.execute(statement)).scalars())
            await self._add_events(
                conn, [StoreEvent(i, now, "purged", operator=operator, audit_id=audit_id) for i in purged]
            )
        return purged

    async def archive(
        self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime
    ) -> list[str]:
        t = self._letters
        return await self._move(
            ids,
            t.c.status.in_(_EDITABLE),
            "archived",
            kind="archived",
            operator=operator,
            audit_id=audit_id,
            now=now,
            action="archive dead letters",
        )

    async def restore(
        self, ids: Sequence[str], *, operator: str, audit_id: str, now: dt.datetime
    ) -> list[str]:
        t = self._letters
        # The status it had: release() keeps the rule that a row replayed once is "replayed".
        back = sa.case((t.c.replay_count > 0, "replayed"), else_="parked")
        return await self._move(
            ids,
            t.c.status == "archived",
            back,
            kind="restored",
            operator=operator,
            audit_id=audit_id,
            now=now,
            action="restore dead letters",
        )

    async def _move(
        self,
        ids: Sequence[str],
        allowed: sa.ColumnElement[bool],
        status: Any,
        *,
        kind: Literal["archived", "restored"],
        operator: str,
        audit_id: str,
        now: dt.datetime,
        action: str,
    ) -> list[str]:
        """One conditional UPDATE per chunk (rows a replay holds are never moved), with events."""
        t = self._letters
        moved: list[str] = []
        async with self._session(action, write=True) as conn:
            for chunk in _chunks(ids):
                statement = (
                    sa.update(t)
                    .where(self._in(t.c.id, chunk), allowed)
                    .values(status=status, updated_at=now)
                    .returning(t.c.id)
                )
                moved.extend(str(i) for i in (await conn.execute(statement)).scalars())
            await self._add_events(
                conn, [StoreEvent(i, now, kind, operator=operator, audit_id=audit_id) for i in moved]
            )
        return moved

    async def run_progress(self, replay_id: str) -> dict[Status, int]:
        t = self._letters
        statement = (
            sa.select(t.c.status, sa.func.count().label("n"))
            .where(t.c.replay_id == replay_id)
            .group_by(t.c.status)
        )
        async with self._session("read a replay's progress", write=False) as conn:
            rows = (await conn.execute(statement)).all()
        return {row.status: int(row.n) for row in rows}

    async def beat(self, heartbeat: PodHeartbeat, *, forget_before: dt.datetime | None = None) -> None:
        beats = self._beats
        values = {
            "pod": heartbeat.pod,
            "role": heartbeat.role,
            "flows": list(heartbeat.flows),
            "circuits": dict(heartbeat.circuits),
            "ready": heartbeat.ready,
            "reasons": list(heartbeat.reasons),
            "version": heartbeat.version,
            "interval_seconds": heartbeat.interval_seconds,
            "started_at": heartbeat.started_at,
            "beat_at": heartbeat.beat_at,
        }
        insert = self._insert(beats).values(**values)
        statement = insert.on_conflict_do_update(
            index_elements=[beats.c.pod], set_={k: insert.excluded[k] for k in values if k != "pod"}
        )
        async with self._session("write a pod heartbeat", write=True) as conn:
            await conn.execute(statement)
            if forget_before is not None:
                await conn.execute(sa.delete(beats).where(beats.c.beat_at < forget_before))

    async def pods(self) -> list[PodHeartbeat]:
        beats = self._beats
        async with self._session("read pod heartbeats", write=False) as conn:
            rows = (await conn.execute(sa.select(beats).order_by(beats.c.pod))).all()
        return [
            PodHeartbeat(
                pod=str(row.pod),
                role=str(row.role),
                flows=tuple(str(f) for f in row.flows or ()),
                circuits={str(k): str(v) for k, v in (row.circuits or {}).items()},
                ready=bool(row.ready),
                reasons=tuple(str(r) for r in row.reasons or ()),
                version=row.version,
                interval_seconds=float(row.interval_seconds),
                started_at=row.started_at,
                beat_at=row.beat_at,
            )
            for row in rows
        ]

    async def record_audit(self, record: DlqAuditRecord) -> None:
        audit = self._audit
        statement = (
            self._insert(audit)
            .values(
                audit_id=record.audit_id,
                phase=record.phase,
                at=record.at,
                operator=record.operator,
                command=record.command,
                outcome=record.outcome,
                record=record.model_dump(mode="json"),
            )
            .on_conflict_do_nothing(index_elements=[audit.c.audit_id, audit.c.phase])
        )
        async with self._session("record an audit record", write=True) as conn:
            await conn.execute(statement)

    async def audits(self, *, limit: int = 50) -> list[DlqAuditRecord]:
        audit = self._audit
        # The document as JSON text, parsed by the model itself (its own rules for every field).
        statement = (
            sa.select(sa.cast(audit.c.record, sa.Text()))
            .order_by(audit.c.at.desc(), audit.c.phase.desc())
            .limit(int(limit))
        )
        async with self._session("read audit records", write=False) as conn:
            texts = (await conn.execute(statement)).scalars().all()
        return [DlqAuditRecord.model_validate_json(text) for text in texts]


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
