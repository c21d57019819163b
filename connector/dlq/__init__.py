"""Dead letters: how the connector parks a message it gives up on, and how ops put it right.

The runtime side is :class:`DeadLetterer` (:mod:`connector.dlq.envelope`), and the
:class:`~connector.dlq.ingest.DeadLetterIngester` the pods run to keep the store filled (ingest
happens there, or in ``dlq ingest``, never as a side effect of a command). The rest of the package
is the ops side behind ``severa-connector dlq``, built as a **dead-letter store** in the manner of
NServiceBus ServiceControl / ServicePulse rather than as a queue browser::

      q.workhours.dlq  ──ingest: consume → upsert → commit → ack──►  dead-letter store (SQL)
      (durable inbox)                                                 │ list / group / show /
                                                                      │ edit / export: queries
      q.workhours  ◄──replay: claim → publish + confirm → mark replayed┘

Why a store and not "peek the queue": a quorum queue counts every ``basic.get`` + requeue as a
delivery (it burns the delivery limit and moves the message), a queue cannot be filtered, grouped
or edited in place, and two operators browsing one queue see each other's in-flight messages
vanish. Ingest takes every message out of the DLQ exactly once (a row is committed before its ack;
ids are stable, so a redelivery after a crash is an idempotent upsert) and from then on everything
is a query that cannot lose, reorder or re-deliver anything.

Modules, one concept each: :mod:`~connector.dlq.envelope` (dead-letter, parse, replay message),
:mod:`~connector.dlq.records` (what the store holds), :mod:`~connector.dlq.codec` (AMQP values ↔
JSON), :mod:`~connector.dlq.grouping` (failure groups), :mod:`~connector.dlq.selection` (filters,
replay eligibility), :mod:`~connector.dlq.store` (the port) with :mod:`~connector.dlq.sql` (its
statements, SQLAlchemy Core on the state layer of :mod:`connector.state`: its tables in
:mod:`connector.state.dlq_schema`, its migrations, URL parser and lifecycle) and the backends
:mod:`~connector.dlq.sqlite` and :mod:`~connector.dlq.postgres`,
:mod:`~connector.dlq.ingest`, :mod:`~connector.dlq.replay`, :mod:`~connector.dlq.canary`,
:mod:`~connector.dlq.contracts` (per-flow schema and result events), :mod:`~connector.dlq.audit`,
:mod:`~connector.dlq.editing`, :mod:`~connector.dlq.transfer` (export/import),
:mod:`~connector.dlq.operations` (the commands), :mod:`~connector.dlq.console` (their output) and
:mod:`~connector.dlq.cli`. Ops guide: ``docs/dead-letters.md``.
"""

from connector.dlq.envelope import DeadLetterer

__all__ = ["DeadLetterer"]
