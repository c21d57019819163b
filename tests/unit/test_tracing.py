"""Tracing: trace context over AMQP headers, the settings, the hooks' spans, and "off costs nothing"."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import structlog.testing
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from connector import tracing
from connector.config import Settings, TracingSettings, load_settings
from connector.dlq.envelope import Envelope, parse_dead_letter
from connector.errors import (
    ConfigError,
    SeveraAuthenticationFailed,
    SeveraUnavailable,
    UnknownReference,
)
from connector.logging import configure_logging, get_logger, redact_text
from connector.processing import Delivery
from tests.tracing_support import (
    PUBLISHER_SPAN_ID,
    PUBLISHER_TRACE_ID,
    PUBLISHER_TRACEPARENT,
    in_memory_tracing,
    parent_id,
    span_id,
    trace_id,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with in_memory_tracing() as exporter:
        yield exporter


@pytest.fixture(autouse=True)
def _no_tracing_left_behind() -> Iterator[None]:
    yield
    tracing.shutdown()


class TestAmqpHeaders:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(PUBLISHER_TRACEPARENT, id="a string"),
            pytest.param(PUBLISHER_TRACEPARENT.encode(), id="bytes (an AMQP byte array)"),
            pytest.param([PUBLISHER_TRACEPARENT], id="a list"),
        ],
    )
    def test_the_getter_reads_a_header_however_the_client_typed_it(self, value: Any) -> None:
        assert tracing.GETTER.get({"traceparent": value}, "traceparent") == [PUBLISHER_TRACEPARENT]

    def test_the_getter_finds_a_capitalised_header_and_misses_an_absent_or_odd_one(self) -> None:
        assert tracing.GETTER.get({"Traceparent": PUBLISHER_TRACEPARENT}, "traceparent") == [
            PUBLISHER_TRACEPARENT
        ]
        assert tracing.GETTER.get({}, "traceparent") is None
        assert tracing.GETTER.get({"traceparent": 42}, "traceparent") is None
        assert tracing.GETTER.keys({"a": 1, "traceparent": "x"}) == ["a", "traceparent"]

    def test_the_setter_writes_into_the_headers(self) -> None:
        headers: dict[str, Any] = {"schema_version": "1"}
        tracing.SETTER.set(headers, "traceparent", PUBLISHER_TRACEPARENT)
        assert headers == {"schema_version": "1", "traceparent": PUBLISHER_TRACEPARENT}

    def test_the_trace_id_of_a_traceparent_header(self) -> None:
        assert tracing.trace_id_in({"traceparent": PUBLISHER_TRACEPARENT.encode()}) == PUBLISHER_TRACE_ID
        assert tracing.trace_id_in({"traceparent": "00-not-a-trace-01"}) is None
        assert tracing.trace_id_in({"traceparent": f"00-{'0' * 32}-{PUBLISHER_SPAN_ID}-01"}) is None
        assert tracing.trace_id_in({}) is None
        assert tracing.trace_id_in(None) is None

    def test_context_injected_into_headers_is_extracted_back_as_the_same_span(
        self, spans: InMemorySpanExporter
    ) -> None:
        headers: dict[str, Any] = {}
        with tracing.publishing("workhours.results", "workhour.synced", headers, message_id="m-1"):
            pass
        (published,) = spans.get_finished_spans()
        assert published.kind is SpanKind.PRODUCER
        assert published.context is not None
        version, trace_hex, span_hex, flags = headers["traceparent"].split("-")
        assert (version, trace_hex, span_hex) == ("00", trace_id(published), span_id(published))
        assert int(flags, 16) & 0x01  # sampled
        assert tracing.trace_id_in(headers) == trace_id(published)


class TestSettings:
    def test_tracing_is_off_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ):
            monkeypatch.delenv(name, raising=False)
        settings = TracingSettings()
        assert settings.traces_url() is None
        assert settings.resolved_service_name() == "severa-connector"
        assert settings.sampling_ratio == 1.0

    @pytest.mark.parametrize(
        ("endpoint", "url"),
        [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("https://collector:4318/", "https://collector:4318/v1/traces"),
            ("http://collector:4318/custom/path", "http://collector:4318/custom/path"),
        ],
    )
    def test_an_endpoint_without_a_path_gets_the_traces_path(self, endpoint: str, url: str) -> None:
        assert TracingSettings(otlp_endpoint=endpoint).traces_url(environ={}) == url

    def test_the_standard_otel_variables_are_honoured_and_ours_win(self) -> None:
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
            "OTEL_SERVICE_NAME": "connector-eu",
        }
        assert TracingSettings().traces_url(environ) == "http://base:4318/v1/traces"
        assert TracingSettings().resolved_service_name(environ) == "connector-eu"
        signal = {**environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/exact"}
        assert TracingSettings().traces_url(signal) == "http://traces:4318/exact"
        ours = TracingSettings(otlp_endpoint="http://ours:4318", service_name="mine")
        assert ours.traces_url(signal) == "http://ours:4318/v1/traces"
        assert ours.resolved_service_name(signal) == "mine"

    @pytest.mark.parametrize(
        ("variable", "value", "named"),
        [
            (
                "SEVERA_CONNECTOR_TRACING__OTLP_ENDPOINT",
                "collector:4318",
                "SEVERA_CONNECTOR_TRACING__OTLP_ENDPOINT",
            ),
            ("SEVERA_CONNECTOR_TRACING__SAMPLING_RATIO", "1.5", "SEVERA_CONNECTOR_TRACING__SAMPLING_RATIO"),
            ("SEVERA_CONNECTOR_TRACING__SAMPLING_RATIO", "half", "SEVERA_CONNECTOR_TRACING__SAMPLING_RATIO"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ],
    )
    def test_a_bad_value_stops_the_start_with_one_line_naming_it(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
    ) -> None:
        monkeypatch.setenv("SEVERA_CONNECTOR_SEVERA__API_KEY", "k" * 12)
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings)
        message = caught.value.message
        assert "\n" not in message
        assert named in message


class TestOnAndOff:
    def test_without_an_endpoint_start_installs_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        assert tracing.start(TracingSettings(), pod="pod-1") is False
        assert not tracing.active()
        assert not isinstance(trace.get_tracer_provider(), SdkTracerProvider)
        with tracing.consuming("work_hours", _delivery({"traceparent": PUBLISHER_TRACEPARENT})) as traced:
            traced.outcome("acked")
        headers: dict[str, Any] = {}
        with tracing.publishing("x", "y", headers, message_id=None):
            pass
        assert headers == {}  # nothing written while off
        assert tracing.current_trace_id() is None

    def test_a_connector_without_tracing_never_imports_the_sdk(self) -> None:
        """Off costs nothing: the SDK and the exporter are not even loaded."""
        code = (
            "import sys\n"
            "from connector import tracing\n"
            "import connector.service, connector.dlq.cli, connector.cli\n"
            "from connector.config import TracingSettings\n"
            "assert tracing.start(TracingSettings(), pod='p') is False\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')"
            " or m.startswith('opentelemetry.exporter'))\n"
            "print(loaded)\n"
        )
        env = {"PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"

    def test_with_an_endpoint_spans_are_exported_over_otlp_http(self) -> None:
        with _collector() as received:
            url = f"http://127.0.0.1:{received.port}"
            assert tracing.start(
                TracingSettings(otlp_endpoint=url, service_name="connector-test"), pod="pod-9"
            )
            assert tracing.active()
            headers: dict[str, Any] = {}
            with tracing.publishing("workhours.results", "workhour.synced", headers, message_id="m-1"):
                pass
            tracing.shutdown()  # flushes the batch
            assert not tracing.active()
        assert received.paths == ["/v1/traces"]
        request = ExportTraceServiceRequest.FromString(received.bodies[0])
        (resource_spans,) = request.resource_spans
        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        assert resource["service.name"] == "connector-test"
        assert resource["service.instance.id"] == "pod-9"
        names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
        assert names == ["publish workhours.results"]

    def test_the_collectors_credentials_never_reach_a_log_line(self) -> None:
        url = "https://tok3n-abcdef@127.0.0.1:9/v1/traces?api_key=k3y-secret-value&region=eu"
        with structlog.testing.capture_logs() as logs:
            assert tracing.start(TracingSettings(otlp_endpoint=url), pod="pod-1")
        tracing.shutdown()
        (enabled,) = [e for e in logs if e["event"] == "tracing_enabled"]
        assert "tok3n-abcdef" not in enabled["endpoint"]
        assert "k3y-secret-value" not in enabled["endpoint"]
        assert "region=eu" in enabled["endpoint"]
        assert redact_text(f"x {url} y").count("k3y-secret-value") == 0
        assert "tok3n-abcdef" not in redact_text(url)


class TestSpans:
    def test_a_consumed_message_continues_its_publishers_trace(self, spans: InMemorySpanExporter) -> None:
        delivery = _delivery({"traceparent": PUBLISHER_TRACEPARENT}, message_id="e-1")
        with tracing.consuming("work_hours", delivery) as traced:
            assert tracing.current_trace_id() == PUBLISHER_TRACE_ID
            traced.outcome("dead_lettered")
        (span,) = spans.get_finished_spans()
        assert span.name == "process work_hours"
        assert span.kind is SpanKind.CONSUMER
        assert trace_id(span) == PUBLISHER_TRACE_ID
        assert parent_id(span) == PUBLISHER_SPAN_ID
        assert span.attributes is not None
        assert span.attributes["connector.outcome"] == "dead_lettered"
        assert span.attributes["messaging.message.id"] == "e-1"
        assert span.status.status_code is StatusCode.ERROR

    def test_a_message_without_context_starts_a_trace(self, spans: InMemorySpanExporter) -> None:
        with tracing.consuming("work_hours", _delivery({})) as traced:
            traced.outcome("acked")
        (span,) = spans.get_finished_spans()
        assert span.parent is None
        assert span.status.status_code is StatusCode.UNSET

    @pytest.mark.parametrize(
        ("error", "outcome", "reason"),
        [
            (None, "ok", None),
            (SeveraUnavailable("timeout after 30 s"), "transient", "severa_unavailable"),
            (
                UnknownReference("no work type 'QA'", kind="work_type", value="QA"),
                "permanent",
                "unknown_work_type",
            ),
            (SeveraAuthenticationFailed("key sk-secret-123 refused"), "systemic", None),
        ],
    )
    async def test_an_external_call_says_its_operation_and_outcome_never_the_error_text(
        self, spans: InMemorySpanExporter, error: Exception | None, outcome: str, reason: str | None
    ) -> None:
        client = _Client(error)
        if error is None:
            assert await client.call(_Op("IHourEntry.AddNewHourEntry"), 1, extra=2) == (1, 2)
        else:
            with pytest.raises(type(error)):
                await client.call(_Op("IHourEntry.AddNewHourEntry"), 1, extra=2)
        (span,) = spans.get_finished_spans()
        assert span.name == "severa IHourEntry.AddNewHourEntry"
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["connector.operation"] == "IHourEntry.AddNewHourEntry"
        assert span.attributes["connector.outcome"] == outcome
        if error is not None:
            assert span.attributes["connector.reason"] == (reason or error.reason)  # type: ignore[attr-defined]
            assert span.status.status_code is StatusCode.ERROR
            assert span.events == ()  # no exception event: its message might quote a secret
            assert str(error) not in repr(dict(span.attributes))

    async def test_a_cancelled_call_is_marked_cancelled(self, spans: InMemorySpanExporter) -> None:
        client = _Client(asyncio.CancelledError())
        with pytest.raises(asyncio.CancelledError):
            await client.call(_Op("IUser.GetUserByCode"), 0, extra=0)
        (span,) = spans.get_finished_spans()
        assert span.attributes is not None
        assert span.attributes["connector.outcome"] == "cancelled"

    async def test_calls_are_untouched_while_tracing_is_off(self) -> None:
        assert await _Client(None).call(_Op("IUser.GetUserByCode"), 3, extra=4) == (3, 4)

    def test_a_replay_span_is_a_child_of_the_context_the_dead_letter_kept(
        self, spans: InMemorySpanExporter
    ) -> None:
        headers = {"traceparent": PUBLISHER_TRACEPARENT}
        with tracing.replaying(headers, queue="q.workhours", dead_letter_id="d-1", replay_id="r-1"):
            out: dict[str, Any] = dict(headers)
            with tracing.publishing("", "q.workhours", out, message_id="e-1"):
                pass
        publish, replay = spans.get_finished_spans()
        assert replay.name == "dlq replay q.workhours"
        assert parent_id(replay) == PUBLISHER_SPAN_ID
        assert trace_id(replay) == trace_id(publish) == PUBLISHER_TRACE_ID
        assert out["traceparent"] != PUBLISHER_TRACEPARENT  # the replay's own publish span now
        assert tracing.trace_id_in(out) == PUBLISHER_TRACE_ID


class TestLogsAndDeadLetters:
    def test_lines_logged_inside_a_span_carry_its_ids(self, spans: InMemorySpanExporter) -> None:
        stream = io.StringIO()
        configure_logging("INFO", "json", stream=stream)
        with tracing.consuming("work_hours", _delivery({"traceparent": PUBLISHER_TRACEPARENT})):
            get_logger("t").info("inside")
            logging.getLogger("some.library").warning("a library line")
        get_logger("t").info("outside")
        inside, library, outside = (json.loads(line) for line in stream.getvalue().splitlines())
        (span,) = spans.get_finished_spans()
        assert span.context is not None
        assert inside["trace_id"] == library["trace_id"] == PUBLISHER_TRACE_ID
        assert inside["span_id"] == trace.format_span_id(span.context.span_id)
        assert "trace_id" not in outside

    def test_no_trace_ids_in_logs_while_tracing_is_off(self) -> None:
        stream = io.StringIO()
        configure_logging("INFO", "json", stream=stream)
        with tracing.consuming("work_hours", _delivery({"traceparent": PUBLISHER_TRACEPARENT})):
            get_logger("t").info("inside")
        (line,) = (json.loads(text) for text in stream.getvalue().splitlines())
        assert "trace_id" not in line

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            pytest.param({"traceparent": PUBLISHER_TRACEPARENT}, PUBLISHER_TRACE_ID, id="W3C trace id"),
            pytest.param({}, "corr-1", id="no trace context: the correlation id"),
        ],
    )
    def test_a_dead_letter_the_broker_parked_keeps_its_trace_id(
        self, headers: dict[str, Any], expected: str
    ) -> None:
        envelope = Envelope(
            body=b"{}",
            routing_key="q.workhours",
            exchange="dlx",
            headers={
                **headers,
                "x-death": [{"queue": "q.workhours", "reason": "delivery_limit", "count": 1}],
            },
            message_id="e-1",
            correlation_id="corr-1",
        )
        parsed = parse_dead_letter(
            envelope, dead_letter_queue="q.workhours.dlq", now=dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
        )
        assert parsed.trace_id == expected


# --------------------------------------------------------------------------------------------------


def _delivery(headers: dict[str, Any], *, message_id: str | None = None) -> Delivery:
    return Delivery(
        body=b"{}",
        routing_key="workhour.created",
        exchange="workhours",
        message_id=message_id,
        headers=headers,
    )


class _Op:
    def __init__(self, label: str) -> None:
        self.label = label


class _Client:
    """An adapter's one-request method, decorated as the Severa and Netvisor clients' are."""

    def __init__(self, error: BaseException | None) -> None:
        self._error = error

    @tracing.external_call("severa")
    async def call(self, op: _Op, value: int, *, extra: int) -> tuple[int, int]:
        if self._error is not None:
            raise self._error
        return value, extra


class _Received:
    def __init__(self) -> None:
        self.port = 0
        self.paths: list[str] = []
        self.bodies: list[bytes] = []


@contextmanager
def _collector() -> Iterator[_Received]:
    """A minimal OTLP/HTTP collector on a free port: it stores what is POSTed and answers 200."""
    received = _Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.paths.append(self.path)
            received.bodies.append(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
