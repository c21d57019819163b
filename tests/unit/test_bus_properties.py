"""The publisher's AMQP properties are the ones ``aio_pika.Message`` would have built.

:func:`connector.bus.amqp_properties` replaces an ``aio_pika.Message`` on every publish (the
message object cost more than the rest of the call's Python); the broker must see the same
properties either way, for every shape of :class:`connector.bus.OutgoingMessage` the connector
publishes: results, dead letters, retries and replays, whose producers' properties are kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import DeliveryMode

from connector.bus import OutgoingMessage, _Publishable, amqp_properties

WHEN = dt.datetime(2026, 12, 2, 1, 2, 3, tzinfo=dt.UTC)

MESSAGES = [
    pytest.param(OutgoingMessage(body=b"{}", routing_key="k"), id="bare"),
    pytest.param(
        OutgoingMessage(
            body=b'{"a": 1}',
            routing_key="workhour.synced",
            message_id="m-1",
            correlation_id="c-1",
            type="workhour.synced",
            headers={"schema_version": "1"},
        ),
        id="a result event",
    ),
    pytest.param(
        OutgoingMessage(
            body=b"\x00\xff",
            routing_key="q",
            message_id="m-2",
            content_type="application/octet-stream",
            headers={"x-death": [{"count": 2}], "x-retry-step": 3, "flag": True, "n": None},
            timestamp=WHEN,
            content_encoding="gzip",
            app_id="tracker",
            reply_to="replies",
            priority=5,
        ),
        id="a republished message with every property",
    ),
    pytest.param(OutgoingMessage(body=b"{}", routing_key="k", timestamp=1764637323), id="an int timestamp"),
    pytest.param(OutgoingMessage(body=b"{}", routing_key="k", timestamp=1764637323.5), id="float timestamp"),
    pytest.param(
        OutgoingMessage(body=b"{}", routing_key="k", message_id="", correlation_id="", type="", app_id=""),
        id="empty strings",
    ),
    pytest.param(OutgoingMessage(body=b"{}", routing_key="k", priority=0), id="priority zero"),
]


def _via_aio_pika(message: OutgoingMessage, headers: dict[str, Any]) -> Any:
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        headers=headers,
        timestamp=message.timestamp,
        content_encoding=message.content_encoding,
        app_id=message.app_id,
        reply_to=message.reply_to,
        priority=message.priority,
    ).properties


@pytest.mark.parametrize("message", MESSAGES)
def test_the_properties_are_aio_pikas(message: OutgoingMessage) -> None:
    headers = dict(message.headers)
    ours, theirs = amqp_properties(message, headers), _via_aio_pika(message, headers)
    assert dict(ours) == dict(theirs)
    # Field by field, types included: the frame encodes each by its Python type.
    for name, value in theirs:
        assert type(dict(ours)[name]) is type(value), name


class _Underlay:
    """The aiormq channel under an aio-pika channel: records what aio-pika hands it."""

    def __init__(self) -> None:
        self.published: list[tuple[bytes, dict[str, Any]]] = []

    async def basic_publish(self, body: bytes, **options: Any) -> None:
        self.published.append((body, options))


class _Channel:
    is_closed = False

    def __init__(self, underlay: _Underlay) -> None:
        self._underlay = underlay

    async def get_underlay_channel(self) -> _Underlay:
        return self._underlay


async def test_aio_pikas_publish_takes_the_slotted_message_whole() -> None:
    """aio-pika's own ``Exchange.publish`` reads only the body and properties of what the bus
    passes (a slotted object: anything else it read would raise here), and hands both on."""
    underlay = _Underlay()
    exchange = aio_pika.Exchange(channel=_Channel(underlay), name="x")  # type: ignore[arg-type]
    message = OutgoingMessage(body=b"{}", routing_key="k", message_id="m-1", headers={"h": "1"})
    properties = amqp_properties(message, dict(message.headers))
    await exchange.publish(_Publishable(message.body, properties), routing_key="k")  # type: ignore[arg-type]
    [(body, options)] = underlay.published
    assert body == b"{}"
    assert options["properties"] is properties
    assert (options["exchange"], options["routing_key"], options["mandatory"]) == ("x", "k", True)
