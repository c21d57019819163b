"""OpenTelemetry tracing: one trace from a publisher's event to Severa, the results, the DLQ and a replay.

W3C trace context travels in AMQP headers (``traceparent``, ``tracestate``): a consumed message's
span is the child of the context its publisher put there, and every message we publish -- result
events, retries, put-backs, dead letters, replays -- carries the context of the span that sent
it, so a dead letter replayed a week later continues the trace it failed in::

    publisher ─► process <flow> (CONSUMER) ─┬─► severa <operation> (CLIENT), netvisor <resource> (CLIENT)
                                            ├─► publish <results exchange> (PRODUCER)
                                            └─► dead-letter <queue> ─► publish <dlx> (PRODUCER)
    dlq replay <queue> (parent: the dead letter's stored context) ─► publish (default) (PRODUCER)
        └─► process <flow> ─► severa … ─► publish <results exchange>

Off unless an OTLP endpoint is configured (:class:`connector.config.TracingSettings`), and off
costs nothing that matters: no SDK is imported and no tracer provider installed, every hook
returns one shared no-op context manager after a single ``is None`` check, and no header is read
or written. The hooks live here so that the modules they sit in (processing, bus, dead-lettering,
replay, the adapters' one call site each) carry one ``with`` or one decorator, nothing more.

Nothing secret reaches a span: attributes are names, ids and reason codes; exception messages
and tracebacks are never recorded (an error's reason code and category say what happened, the
log line with the same trace id says the rest). The provider is the connector's own, not the
global one: a test installs an in-memory exporter and removes it again, and the process-wide
``opentelemetry.trace`` provider stays whatever the host set.

Why OTLP over HTTP (protobuf) rather than gRPC: it needs no grpcio (a large native wheel), it
passes through ordinary HTTP proxies and ingresses, and every collector serves it (port 4318).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from structlog.typing import EventDict, WrappedLogger

from connector import __version__
from connector.errors import classify, reason_of

if TYPE_CHECKING:
    from connector.config import TracingSettings

#: The instrumentation scope of every span the connector makes.
SCOPE: Final = "severa-connector"
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

# Span attributes: the messaging semantic conventions where they fit, ``connector.*`` for ours.
OUTCOME: Final = "connector.outcome"
REASON: Final = "connector.reason"
FLOW: Final = "connector.flow"
OPERATION: Final = "connector.operation"
DEPENDENCY: Final = "connector.dependency"
DEAD_LETTER_ID: Final = "connector.dead_letter_id"
REPLAY_ID: Final = "connector.replay_id"
CATEGORY: Final = "connector.category"

#: Consume outcomes (connector.processing) after which the message did not do what it was sent for.
_FAILED_OUTCOMES: Final = frozenset({"dead_lettered", "requeued"})


# --------------------------------------------------------------------------------------------------
# W3C trace context over AMQP headers


def _header_text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else None


class AmqpHeadersGetter(Getter[Mapping[str, Any]]):
    """Reads trace context from AMQP headers, whose values may arrive as ``str`` or ``bytes``.

    Header names are looked up as written (W3C names are lower-case) and then without regard to
    case, because some client libraries capitalise them.
    """

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            wanted = key.lower()
            value = next((v for k, v in carrier.items() if str(k).lower() == wanted), None)
        if isinstance(value, list | tuple):
            texts = [t for t in (_header_text(v) for v in value) if t is not None]
            return texts or None
        text = _header_text(value)
        return [text] if text is not None else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [str(k) for k in carrier]


class AmqpHeadersSetter(Setter[MutableMapping[str, Any]]):
    """Writes trace context into the headers of a message about to be published."""

    def set(self, carrier: MutableMapping[str, Any], key: str, value: str) -> None:
        carrier[key] = value


GETTER: Final = AmqpHeadersGetter()
SETTER: Final = AmqpHeadersSetter()
#: W3C TraceContext only, whatever OTEL_PROPAGATORS says: the AMQP contract names these headers.
PROPAGATOR: Final = TraceContextTextMapPropagator()


def trace_id_in(headers: Mapping[str, Any] | None) -> str | None:
    """The W3C trace id (32 hex digits) of a valid ``traceparent`` in ``headers``, else ``None``."""
    if not headers:
        return None
    context = PROPAGATOR.extract(headers, getter=GETTER)
    span_context = trace.get_current_span(context).get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def current_trace_id() -> str | None:
    """The trace id of the span in progress, if tracing is on and one is."""
    if _STATE.tracer is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


# --------------------------------------------------------------------------------------------------
# Turning it on and off


@dataclass(slots=True)
class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    owned: bool = False  # built by start(): shut down (flushed) by shutdown()


_STATE = _State()


def active() -> bool:
    """Whether spans are being made (a provider is installed)."""
    return _STATE.tracer is not None


def install(provider: TracerProvider, *, owned: bool = False) -> None:
    """Make spans with ``provider`` from now on (tests: an SDK provider with an in-memory exporter)."""
    _STATE.tracer = provider.get_tracer(SCOPE, __version__)
    _STATE.provider = provider
    _STATE.owned = owned


def start(settings: TracingSettings, *, pod: str) -> bool:
    """Install the SDK with an OTLP/HTTP exporter if an endpoint is configured; whether it did.

    Called once per process by the command line, after logging is configured. The SDK is imported
    only here, so a connector without tracing never loads it. Spans are exported in batches from a
    background thread (the event loop never waits for the collector) and flushed at exit.
    """
    if _STATE.tracer is not None:
        return True
    url = settings.traces_url()
    if url is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from connector.config_show import redact_url, secret_name
    from connector.logging import get_logger, register_secret

    # A collector's credentials never reach a log line: its password, a user name standing alone
    # (often a token) and credential-looking query parameters.
    parts = urlsplit(url)
    register_secret(parts.password if parts.password is not None else parts.username)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if secret_name(key):
            register_secret(value)

    provider = SdkTracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.resolved_service_name(),
                "service.version": __version__,
                "service.instance.id": pod,
            }
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    install(provider, owned=True)
    get_logger(__name__).info(
        "tracing_enabled",
        endpoint=redact_url(url),
        service_name=settings.resolved_service_name(),
        sampling_ratio=settings.sampling_ratio,
    )
    return True


def shutdown() -> None:
    """Stop making spans; a provider :func:`start` built is flushed and shut down."""
    provider, owned = _STATE.provider, _STATE.owned
    _STATE.tracer, _STATE.provider, _STATE.owned = None, None, False
    if owned and provider is not None:
        stop = getattr(provider, "shutdown", None)
        if callable(stop):
            stop()


# --------------------------------------------------------------------------------------------------
# Hooks


class Traced(Protocol):
    """What a hook hands back: a place to record how the traced work ended."""

    def outcome(self, value: str) -> None: ...


class _Off:
    """The one context manager every hook returns while tracing is off: it does nothing."""

    __slots__ = ()

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def outcome(self, value: str) -> None:
        return None


_OFF: Final = _Off()


class _SpanOutcome:
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def outcome(self, value: str) -> None:
        self._span.set_attribute(OUTCOME, value)
        if value in _FAILED_OUTCOMES:
            self._span.set_status(Status(StatusCode.ERROR, value))


def _failed(span: Span, error: BaseException) -> None:
    """Outcome and reason of a failure, never its message (it may quote a value from the body)."""
    if isinstance(error, asyncio.CancelledError):
        span.set_attribute(OUTCOME, "cancelled")
        return
    reason = reason_of(error)
    span.set_attribute(OUTCOME, classify(error).value)
    span.set_attribute(REASON, reason)
    span.set_status(Status(StatusCode.ERROR, reason))


@contextmanager
def _span(
    tracer: Tracer,
    name: str,
    *,
    kind: SpanKind,
    attributes: dict[str, str],
    parent: Any = None,
    ok: str | None = "ok",
) -> Iterator[_SpanOutcome]:
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        traced = _SpanOutcome(span)
        try:
            yield traced
        except BaseException as exc:
            _failed(span, exc)
            raise
        if ok is not None:
            traced.outcome(ok)


class Delivered(Protocol):
    """What the consume span needs of a delivery (:class:`connector.processing.Delivery`)."""

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def exchange(self) -> str: ...

    @property
    def routing_key(self) -> str: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...


def consuming(flow: str, delivery: Delivered) -> AbstractContextManager[Traced]:
    """The span of one delivery's handling (CONSUMER), child of the context its publisher sent.

    The processor records how it ended (``acked``, ``dead_lettered``, ``retry_scheduled`` …).
    """
    tracer = _STATE.tracer
    if tracer is None:
        return _OFF
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": delivery.exchange,
        "messaging.rabbitmq.destination.routing_key": delivery.routing_key,
        FLOW: flow,
    }
    if delivery.message_id is not None:
        attributes["messaging.message.id"] = delivery.message_id
    if delivery.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = delivery.correlation_id
    return _span(
        tracer,
        f"process {flow}",
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        parent=PROPAGATOR.extract(delivery.headers, getter=GETTER),
        ok=None,
    )


def publishing(
    exchange: str, routing_key: str, headers: MutableMapping[str, Any], *, message_id: str | None
) -> AbstractContextManager[Traced]:
    """The span of one confirmed publish (PRODUCER); its context is written into ``headers``.

    ``headers`` is the copy about to be sent: a trace context it already carries (a dead letter's,
    a retried message's) is replaced by this span's, which belongs to the same trace.
    """
    tracer = _STATE.tracer
    if tracer is None:
        return _OFF
    return _publish_span(tracer, exchange, routing_key, headers, message_id)


@contextmanager
def _publish_span(
    tracer: Tracer,
    exchange: str,
    routing_key: str,
    headers: MutableMapping[str, Any],
    message_id: str | None,
) -> Iterator[Traced]:
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    with _span(
        tracer, f"publish {exchange or '(default)'}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as traced:
        PROPAGATOR.inject(headers, setter=SETTER)
        yield traced


def dead_lettering(
    queue: str, *, dead_letter_id: str, category: str, reason: str
) -> AbstractContextManager[Traced]:
    """The span of parking a message: the DLQ record's id and why, in the message's own trace."""
    tracer = _STATE.tracer
    if tracer is None:
        return _OFF
    return _span(
        tracer,
        f"dead-letter {queue}",
        kind=SpanKind.INTERNAL,
        attributes={DEAD_LETTER_ID: dead_letter_id, CATEGORY: category, REASON: reason},
    )


def replaying(
    headers: Mapping[str, Any], *, queue: str, dead_letter_id: str, replay_id: str
) -> AbstractContextManager[Traced]:
    """The span of one replayed dead letter, child of the trace context it was parked with.

    So the replayed message, its handling and its result continue the trace it failed in; a dead
    letter that carries no context starts a trace of its own.
    """
    tracer = _STATE.tracer
    if tracer is None:
        return _OFF
    return _span(
        tracer,
        f"dlq replay {queue}",
        kind=SpanKind.INTERNAL,
        attributes={DEAD_LETTER_ID: dead_letter_id, REPLAY_ID: replay_id},
        parent=PROPAGATOR.extract(headers, getter=GETTER),
    )


class Operation(Protocol):
    """An adapter's operation reference: ``IHourEntry.AddNewHourEntry``, ``customerlist.nv`` …"""

    @property
    def label(self) -> str: ...


S = TypeVar("S")
OpT = TypeVar("OpT", bound=Operation)
P = ParamSpec("P")
R = TypeVar("R")
CallMethod = Callable[Concatenate[S, OpT, P], Awaitable[R]]
TracedMethod = Callable[Concatenate[S, OpT, P], Coroutine[Any, Any, R]]


def external_call(
    dependency: str,
) -> Callable[[CallMethod[S, OpT, P, R]], TracedMethod[S, OpT, P, R]]:
    """Decorate an adapter's one-request method (``self, operation, …``) with a CLIENT span.

    The span is named ``<dependency> <operation label>`` and says how the call ended: ``ok``, or
    the category of the error it raised (``transient``, ``permanent``, ``systemic``) with its
    reason code. Only the OpenTelemetry API is involved: the adapter learns nothing of the broker.
    """

    def decorate(
        method: CallMethod[S, OpT, P, R],
    ) -> Callable[Concatenate[S, OpT, P], Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def traced(self: S, operation: OpT, /, *args: P.args, **kwargs: P.kwargs) -> R:
            tracer = _STATE.tracer
            if tracer is None:
                return await method(self, operation, *args, **kwargs)
            label = operation.label
            with _span(
                tracer,
                f"{dependency} {label}",
                kind=SpanKind.CLIENT,
                attributes={DEPENDENCY: dependency, "peer.service": dependency, OPERATION: label},
            ):
                return await method(self, operation, *args, **kwargs)

        return traced

    return decorate


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` on every line logged inside a span."""
    if _STATE.tracer is None:
        return event_dict
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event_dict
