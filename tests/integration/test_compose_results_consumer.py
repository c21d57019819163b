"""docker-compose.yml's results consumer against the real broker and the production topology.

It must see every result event the connector publishes to ``workhours.results`` (whatever the
routing key), print it as one JSON line, stop on SIGTERM with exit 0, and leave nothing behind:
its queue is exclusive, so the broker deletes it with the connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aio_pika
import pytest

from connector.topology import Names
from tests.harness import wait_until

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "results_consumer.py"


async def test_it_prints_every_result_event_and_stops_cleanly(
    topology: Names, amqp_connection: aio_pika.abc.AbstractConnection, amqp_url: str, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("SEVERA_CONNECTOR_")},
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": topology.prefix,
        "RESULTS_CONSUMER_READY_FILE": str(ready),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until(
            lambda: ready.exists() or process.returncode is not None, timeout=20, what="the consumer up"
        )
        assert ready.exists(), await process.stderr.read() if process.stderr else b""
        channel = await amqp_connection.channel()
        exchange = await channel.get_exchange(topology.results_exchange)
        sent = [
            ("workhour.synced", {"event_id": "e-1", "outcome": "synced"}),
            ("workhour.failed", {"event_id": "e-2", "outcome": "failed"}),
        ]
        for key, body in sent:
            await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key=key)
        assert process.stdout is not None
        lines = [json.loads(await asyncio.wait_for(process.stdout.readline(), 20)) for _ in sent]
        assert lines == [{"routing_key": key, "body": body} for key, body in sent]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0
    assert not ready.exists()


async def test_without_the_connector_exchange_it_exits_with_one_line_and_no_password(
    amqp_url: str, tmp_path: Path
) -> None:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("SEVERA_CONNECTOR_")},
        "SEVERA_CONNECTOR_RABBITMQ__URL": amqp_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": Names(prefix="t-nothing-declared.").prefix,
        "RESULTS_CONSUMER_READY_FILE": str(tmp_path / "ready"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("results consumer stopped:")
    password = aio_pika.connection.make_url(amqp_url).password
    assert not password or password not in lines[0]
