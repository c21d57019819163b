"""structlog set-up: JSON lines in containers, a readable console on a TTY, secrets redacted.

Every log line, ours or a library's (aio-pika, aiohttp, zeep go through the stdlib bridge), passes
through :func:`redact_secrets` last, so a secret that reached a message, an exception text or a
field is replaced by ``***``. Secrets are registered at start-up and whenever a rotated API key is
read (:func:`register_secret`); field names that look secret are masked whatever their value.

Bound context (``event_id``, ``correlation_id``, ``flow``) travels in contextvars: bind it once
per message with :func:`bind_message_context`; every line logged while handling it carries it.
With tracing on, every line logged inside a span also carries its ``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from connector.tracing import add_trace_ids

REDACTED = "***"
_SECRET_FIELD = re.compile(r"(api[_-]?key|password|passwd|secret|token|webservicepassword)", re.IGNORECASE)
# The SOAP header carrying the key, should an envelope ever be logged.
_SOAP_KEY = re.compile(r"(<(?:\w+:)?WebServicePassword[^>]*>)[^<]*(</)", re.IGNORECASE)
_MIN_SECRET_LEN = 4  # shorter values would mask innocent text everywhere

_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Make ``value`` unloggable from now on (API keys, broker passwords)."""
    global _secrets
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        _secrets = _secrets | {value}


def forget_secrets() -> None:
    """Tests only: start from an empty registry."""
    global _secrets
    with _secrets_lock:
        _secrets = frozenset()


def redact_text(text: str) -> str:
    if "<" in text:  # the SOAP pattern needs a tag; most values have none, and the scan is not free
        text = _SOAP_KEY.sub(rf"\1{REDACTED}\2", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_field(key: str) -> bool:
    """Whether a field's name says it holds a secret (the names a pod logs are few: cached)."""
    return _SECRET_FIELD.search(key) is not None


def _redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _secret_field(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(None, v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact_text(str(value))


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last line of defence before rendering."""
    return {k: _redact_value(k if k != "event" else None, v) for k, v in event_dict.items()}


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto", *, stream: Any = None
) -> None:
    """Configure structlog and route stdlib logging through the same processors."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not (hasattr(out, "isatty") and out.isatty()))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,  # trace_id / span_id inside a span (nothing while tracing is off)
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty() if hasattr(out, "isatty") else False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter stays at WARNING; zeep.transports at DEBUG would print whole envelopes.
    for noisy in ("aio_pika", "aiormq", "zeep", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))

    # Where each call was made from is never rendered; finding it walks the stack on every line
    # (the logging HOWTO's "Optimization" section names this switch).
    logging._srcfile = None
    structlog.configure(
        # A call below the level is dropped first, before the other processors run for nothing.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bind_message_context(**context: Any) -> Iterator[None]:
    """Bind per-message context (event id, correlation id, flow) for everything logged inside."""
    tokens = structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v is not None})
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
