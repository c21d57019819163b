"""Tracing in tests: the real SDK with its in-memory exporter, installed and removed again.

The connector's provider is its own (:func:`connector.tracing.install`), never the process-wide
one, so a test can turn tracing on and off without leaking it into the next test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from connector import tracing

#: A publisher's trace context, as a time tracker with tracing of its own would send it.
PUBLISHER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLISHER_SPAN_ID = "00f067aa0ba902b7"
PUBLISHER_TRACEPARENT = f"00-{PUBLISHER_TRACE_ID}-{PUBLISHER_SPAN_ID}-01"


@contextmanager
def in_memory_tracing() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span exported (synchronously) to the returned exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()
        provider.shutdown()


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_span_id(span.context.span_id)


def parent_id(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The chain of recorded parents of ``span``, nearest first (stops at one not recorded here)."""
    by_id = {span_id(s): s for s in spans}
    chain: list[ReadableSpan] = []
    current = span
    while (parent := parent_id(current)) is not None and parent in by_id:
        current = by_id[parent]
        chain.append(current)
    return chain
