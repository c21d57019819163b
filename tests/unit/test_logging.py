"""Logging: JSON lines with bound context, and secrets that never reach the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from connector.logging import (
    bind_message_context,
    configure_logging,
    forget_secrets,
    get_logger,
    redact_text,
    register_secret,
)

KEY = "sk-live-0123456789abcdef"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    forget_secrets()
    configure_logging("DEBUG", "json", stream=stream)
    register_secret(KEY)
    yield stream
    forget_secrets()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_the_bound_message_context(captured: io.StringIO) -> None:
    with bind_message_context(event_id="e-1", correlation_id="c-1", flow="work_hours"):
        get_logger("t").info("handled", outcome="created")
    get_logger("t").info("outside")
    first, second = lines(captured)
    assert first["event_id"] == "e-1"
    assert first["correlation_id"] == "c-1"
    assert first["outcome"] == "created"
    assert "event_id" not in second


@pytest.mark.parametrize(
    "log_call",
    [
        pytest.param(lambda log: log.info(f"key is {KEY}"), id="in the message"),
        pytest.param(lambda log: log.info("x", detail=f"Bearer {KEY}"), id="in a field"),
        pytest.param(lambda log: log.info("x", api_key="anything"), id="a field named like a secret"),
        pytest.param(lambda log: log.info("x", nested={"inner": [KEY]}), id="nested in structures"),
        pytest.param(
            lambda log: log.error("boom", exc_info=RuntimeError(f"auth with {KEY} failed")),
            id="in a traceback",
        ),
    ],
)
def test_registered_secrets_never_reach_the_output(captured: io.StringIO, log_call: object) -> None:
    log_call(get_logger("t"))  # type: ignore[operator]
    output = captured.getvalue()
    assert output
    assert KEY not in output
    assert "anything" not in output


def test_stdlib_loggers_of_libraries_are_redacted_too(captured: io.StringIO) -> None:
    logging.getLogger("some.library").warning("connecting with %s", KEY)
    assert KEY not in captured.getvalue()
    assert "***" in captured.getvalue()


def test_the_soap_key_header_is_masked_even_for_unregistered_keys() -> None:
    envelope = (
        '<s:Header><WebServicePassword xmlns="http://soap.severa.com/">unregistered-key</WebServicePassword>'
    )
    assert "unregistered-key" not in redact_text(envelope)
