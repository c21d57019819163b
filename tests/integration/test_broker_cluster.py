"""When one broker is not enough: several broker addresses, and a cluster that loses a node.

The fast tests fail over between two addresses of the local broker (each a :class:`TcpProxy`
whose wire can be cut). The slow one starts a real three-node RabbitMQ cluster on this machine
(:mod:`tests.fixtures.rabbit_cluster`), runs two connector processes on it with a PostgreSQL
ledger, SIGKILLs the node that leads ``q.workhours`` in the middle of a stream and later brings it
back: nothing lost, nothing written twice, nothing dead-lettered, and both processes consume again
on their own -- no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from adapters.severa.fake.faults import Phase
from adapters.severa.fake.server import FakeSevera
from connector.broker_addresses import masked_list
from connector.bus import Bus, FailoverConnection, OutgoingMessage, PublishFailed, Unroutable
from connector.state import open_ledger
from connector.topology import Names
from tests.fixtures.rabbit_cluster import RabbitCluster
from tests.harness import SEVERA_KEY, wait_until
from tests.integration.test_work_hours_reliability import assert_exactly_once, bulk_events, descriptions
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration]

POSTGRES_DSN = os.environ.get("LEDGER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _on_port(url: str, port: int) -> str:
    """``url`` on another port, reconnecting quickly (aio-pika waits 5 s between attempts by default)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}", query="reconnect_interval=0.2"))


async def _received(bus: Bus, queue: str, count: int) -> list[bytes]:
    """Consume ``count`` messages of ``queue`` through ``bus`` (acked), then stop consuming."""
    got: list[bytes] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        got.append(message.body)
        await message.ack()

    consumer = await bus.consumer(queue, on_message, prefetch=10)
    await consumer.start()
    try:
        await wait_until(lambda: len(got) >= count, timeout=20, what=f"{count} messages on {queue}")
    finally:
        await bus.discard(consumer)
    return got


async def test_several_addresses_connect_to_the_first_that_answers(amqp_url: str, topology: Names) -> None:
    async with (
        TcpProxy("127.0.0.1", urlsplit(amqp_url).port or 5672) as first,
        TcpProxy("127.0.0.1", urlsplit(amqp_url).port or 5672) as second,
    ):
        dead = _on_port(amqp_url, 1)  # nothing listens on port 1: refused at once
        bus = Bus(f"{dead},127.0.0.1:{first.port},127.0.0.1:{second.port}", name="failover-first")
        async with bus:
            connection = bus.connection
            assert isinstance(connection, FailoverConnection)
            assert connection.connected_index == 1
            assert (first.connections, second.connections) == (1, 0)
            await bus.publish(
                topology.workhours_exchange, OutgoingMessage(b"{}", routing_key="workhour.created")
            )
            assert await _received(bus, topology.workhours_queue, 1) == [b"{}"]


async def test_a_lost_address_reconnects_to_the_next_and_consuming_resumes(
    amqp_url: str, topology: Names
) -> None:
    port = urlsplit(amqp_url).port or 5672
    async with TcpProxy("127.0.0.1", port) as first, TcpProxy("127.0.0.1", port) as second:
        urls = [_on_port(amqp_url, first.port), _on_port(amqp_url, second.port)]
        got: list[bytes] = []

        async def on_message(message: AbstractIncomingMessage) -> None:
            got.append(message.body)
            await message.ack()

        async with Bus(urls, name="failover-next") as bus:
            consumer = await bus.consumer(topology.workhours_queue, on_message, prefetch=10)
            await consumer.start()
            await bus.publish(
                topology.workhours_exchange, OutgoingMessage(b"1", routing_key="workhour.created")
            )
            await wait_until(lambda: got == [b"1"], what="the first message")
            assert (first.connections, second.connections) == (1, 0)

            first.cut()  # the node behind the first address is lost
            await wait_until(lambda: second.connections == 1, what="a connection through the second address")
            await wait_until(lambda: consumer.active, what="the consumer back on the new connection")
            for attempt in range(50):  # the publish channel is restored a moment after the connection
                try:
                    await bus.publish(
                        topology.workhours_exchange, OutgoingMessage(b"2", routing_key="workhour.created")
                    )
                    break
                except PublishFailed:
                    await asyncio.sleep(0.1 * attempt)
            await wait_until(lambda: got == [b"1", b"2"], what="the message published after the failover")
            assert first.connections == 0
            connection = bus.connection
            assert isinstance(connection, FailoverConnection)
            assert connection.connected_index == 1


async def test_a_nacked_publish_moves_the_bus_to_a_new_channel(
    amqp_url: str, topology: Names, amqp_connection: aio_pika.abc.AbstractConnection
) -> None:
    """After a nack the next publish goes out on a fresh channel (RabbitMQ 3.10 can keep nacking a
    channel whose quorum queue changed leaders; here a full queue's reject-publish makes the nack)."""
    channel = await amqp_connection.channel()
    full = f"{topology.prefix}full"
    await channel.declare_queue(
        full, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    try:
        async with Bus(amqp_url, name="nacked", publish_timeout=1.0) as bus:
            await bus.publish("", OutgoingMessage(b"1", routing_key=full))
            first = bus._publish_channel
            with pytest.raises(PublishFailed, match="broker refused the message"):
                await bus.publish("", OutgoingMessage(b"2", routing_key=full))
            assert first is not None
            assert bus._publish_channel is not first
            # The old channel stays open for the confirms still due on it, then is closed.
            assert not first.is_closed
            await wait_until(lambda: first.is_closed, timeout=10, what="the replaced channel closed")
            with pytest.raises(Unroutable):  # the new channel still reports returns
                await bus.publish("", OutgoingMessage(b"x", routing_key=f"{topology.prefix}nobody"))
            await bus.publish(
                topology.workhours_exchange, OutgoingMessage(b"{}", routing_key="workhour.created")
            )
            assert await _received(bus, topology.workhours_queue, 1) == [b"{}"]
    finally:
        await channel.queue_delete(full)
        await channel.close()


# -- the cluster ---------------------------------------------------------------------------------

EVENTS = int(os.environ.get("CLUSTER_TEST_EVENTS", "600"))
#: Entries in Severa before the leader's node is killed, and more after it, to prove work goes on.
KILL_AT, MORE_AFTER = 150, 100


@pytest.fixture
async def cluster_database() -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own (the pods' ledger, poller state and dead-letter
    store on their production default table names), dropped at teardown."""
    name = f"sc_cluster_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(POSTGRES_DSN)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class Pod:
    """``severa-connector run`` as a process of its own, on the production defaults."""

    def __init__(self, name: str, env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.log = directory / "connector.log"
        self.env = {**env, "SEVERA_CONNECTOR_POD_NAME": name}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "connector", "run"],
                env=self.env,
                cwd=self.directory,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_events(self) -> Counter[str]:
        events: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                events[str(json.loads(line).get("event"))] += 1
        return events

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)


def pod_env(broker_url: str, names: Names, severa: FakeSevera, state_url: str) -> dict[str, str]:
    """What an operator sets; everything else stays at its production default."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEVERA_CONNECTOR_")},
        "SEVERA_CONNECTOR_SEVERA__URL": severa.url,
        "SEVERA_CONNECTOR_SEVERA__API_KEY": SEVERA_KEY,
        "SEVERA_CONNECTOR_RABBITMQ__URL": broker_url,
        "SEVERA_CONNECTOR_RABBITMQ__PREFIX": names.prefix,
        # The production way to keep every result for a source that wants them (a quorum queue, so
        # it survives the node loss too); the test reads it as that source would.
        "SEVERA_CONNECTOR_RABBITMQ__RESULTS_QUEUE": "true",
        "SEVERA_CONNECTOR_STATE_URL": state_url,
        "SEVERA_CONNECTOR_HTTP__ENABLED": "false",
        "SEVERA_CONNECTOR_LOG__FORMAT": "json",
    }


class Stream:
    """Publishes the events one by one with confirms through the cluster, re-sending what the
    broker did not confirm (as a producer must): a re-send may duplicate a message in the queue,
    which is the connector's to absorb."""

    def __init__(self, bus: Bus, names: Names, events: list[dict[str, Any]]) -> None:
        self.bus = bus
        self.names = names
        self.events = events
        self.confirmed = 0
        self.resent = 0
        self.resent_ids: set[str] = set()
        self.last_error = ""

    async def run(self) -> None:
        for event in self.events:
            message = OutgoingMessage(
                json.dumps(event).encode(), routing_key=event["event_type"], message_id=event["event_id"]
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    await self.bus.publish(self.names.workhours_exchange, message)
                    break
                except PublishFailed as exc:
                    self.last_error = repr(exc)
                    if time.monotonic() > deadline:
                        raise
                    self.resent += 1
                    self.resent_ids.add(event["event_id"])
                    await asyncio.sleep(0.2)  # a producer's back-off, not a synchronisation
            self.confirmed += 1
            await asyncio.sleep(0.03)  # a steady stream (~25/s), so that the kill falls inside it


class Results:
    """The results queue as a source system reads it: every result event, de-duplicated by its
    message id (a redelivery of the same message); acked after it was recorded."""

    def __init__(self) -> None:
        self.by_message: dict[str, tuple[str, dict[str, Any]]] = {}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.by_message[message.message_id or str(uuid.uuid4())] = (
            message.routing_key or "",
            json.loads(message.body),
        )
        with contextlib.suppress(Exception):  # a channel lost with its node: redelivered, de-duplicated
            await message.ack()

    def per_event(self) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for routing_key, body in self.by_message.values():
            found[str(body.get("event_id"))].append((routing_key, str(body.get("outcome"))))
        return found

    def synced_ids(self) -> set[str]:
        return {
            str(body.get("event_id")) for key, body in self.by_message.values() if key == "workhour.synced"
        }


async def in_thread(call: Callable[..., Any], *args: Any) -> Any:
    """Blocking cluster calls (rabbitmqctl) off the loop: the fake Severa serves from this loop."""
    return await asyncio.to_thread(call, *args)


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    """Poll an async ``check`` (each call asks the cluster) until true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_losing_the_node_that_leads_the_work_queue_loses_and_duplicates_nothing(
    rabbit_cluster: RabbitCluster, names: Names, severa: FakeSevera, cluster_database: str, tmp_path: Path
) -> None:
    cluster = rabbit_cluster
    started = time.monotonic()
    events = bulk_events(EVENTS, "cluster")
    want = {e["event_id"] for e in events}
    # The answer takes a moment after the write lands: a node lost mid-call leaves work whose
    # entry is in Severa but whose message was never acked.
    severa.faults.latency(0.01, operation="AddNewHourEntry", phase=Phase.AFTER)

    # Pod A lists node 1 first, declares the topology there, and so holds the queues' leaders
    # (quorum leaders start on the declaring client's node); pod B lists node 2 first. The bare
    # host:port form for the others takes the first URL's credentials.
    first = cluster.url(cluster.nodes[0])
    url_a = ",".join([first, *(f"127.0.0.1:{n.amqp_port}" for n in cluster.nodes[1:])])
    url_b = ",".join(cluster.urls([2, 3, 1]))
    pods = [
        Pod("pod-a", pod_env(url_a, names, severa, cluster_database), tmp_path / "pod-a"),
        Pod("pod-b", pod_env(url_b, names, severa, cluster_database), tmp_path / "pod-b"),
    ]
    queue = names.workhours_queue

    async def consumers_on_queue(count: int) -> bool:
        info = (await in_thread(cluster.queues)).get(queue)
        return info is not None and info.get("consumers") == count

    results = Results()
    bus = Bus(cluster.urls([1, 2, 3]), name="cluster-test-source")
    stream_task: asyncio.Task[None] | None = None
    try:
        pods[0].start()
        await eventually(lambda: consumers_on_queue(1), timeout=60, what="pod A consuming q.workhours")
        pods[1].start()
        await eventually(lambda: consumers_on_queue(2), timeout=60, what="pod B consuming q.workhours too")
        info = (await in_thread(cluster.queues))[queue]
        assert info["type"] == "quorum"
        assert sorted(info["members"]) == sorted(n.name for n in cluster.nodes), info

        await bus.connect(retry_seconds=30, safe_url=masked_list(",".join(cluster.urls())))
        consumer = await bus.consumer(names.results_queue, results.on_message, prefetch=100)
        await consumer.start()
        stream = Stream(bus, names, events)
        stream_task = asyncio.create_task(stream.run())

        await wait_until(
            lambda: len(descriptions(severa, "cluster")) >= KILL_AT, timeout=60, what=f"{KILL_AT} entries"
        )
        leader = await in_thread(cluster.leader, queue)
        connected = await in_thread(cluster.connections)
        on_leader = sorted(name for name, node in connected if node == leader.name)
        assert any(name.endswith("pod-a") for name in on_leader), (
            f"pod A should be connected to the leader {leader.name}, so that the kill cuts its "
            f"connection: {connected}"
        )
        await in_thread(cluster.kill, leader)
        killed_at = time.monotonic()
        landed_at_kill, confirmed_at_kill = len(descriptions(severa, "cluster")), stream.confirmed
        assert not stream_task.done(), "the stream ended before the kill: the test proved nothing"

        # Publishing and processing go on through the surviving nodes, with no restart.
        await wait_until(
            lambda: (
                len(descriptions(severa, "cluster")) >= landed_at_kill + MORE_AFTER
                and stream.confirmed >= confirmed_at_kill + MORE_AFTER
            ),
            timeout=60,
            what=f"{MORE_AFTER} more entries and confirms after the kill",
        )
        recovered_in = time.monotonic() - killed_at
        new_leader = await in_thread(cluster.leader, queue)
        assert new_leader is not leader
        await eventually(
            lambda: consumers_on_queue(2), timeout=30, what="both pods consuming from the new leader"
        )

        await in_thread(cluster.restart, leader)  # it rejoins by itself, on its own data

        async def back_in_the_group() -> bool:
            info = (await in_thread(cluster.queues)).get(queue, {})
            return leader.name in info.get("online", [])

        await eventually(back_in_the_group, timeout=60, what=f"{leader.name} back among the queue's members")

        await asyncio.wait_for(stream_task, timeout=120)
        await wait_until(lambda: want <= results.synced_ids(), timeout=120, what="a result for every event")

        async def all_settled() -> bool:  # re-sent duplicates, too, are handled and acked
            found = await in_thread(cluster.queues)
            return all(q["messages"] == 0 for name, q in found.items() if name.startswith(names.prefix))

        await eventually(all_settled, timeout=60, what="every queue empty")

        # -- what came out ----------------------------------------------------------------------
        assert all(pod.alive for pod in pods), "a connector process died: it must survive a node loss"
        await eventually(lambda: consumers_on_queue(2), timeout=30, what="both pods consuming at the end")
        connected = await in_thread(cluster.connections)
        for pod in pods:
            assert [n for name, n in connected if name.endswith(pod.name)], f"{pod.name} is not connected"

        async with open_ledger(cluster_database) as ledger:
            await assert_exactly_once(severa, events, "cluster", ledger)  # 0 lost, 0 duplicated

        per_event = results.per_event()
        failed = {eid: r for eid, r in per_event.items() if any(key != "workhour.synced" for key, _ in r)}
        assert not failed, f"failed results: {list(failed.items())[:3]}"
        created = Counter(eid for eid, r in per_event.items() for _, outcome in r if outcome == "created")
        twice = [eid for eid, count in created.items() if count > 1]
        assert not twice, f"events created twice: {twice[:3]}"
        extra = sum(len(r) for r in per_event.values()) - len(want)

        queues = await in_thread(cluster.queues)
        parked = {
            name: q["messages"] for name, q in queues.items() if name.endswith(".dlq") and q["messages"]
        }
        assert not parked, f"dead-lettered: {parked}"
        store = await asyncpg.connect(cluster_database)
        try:
            stored = await store.fetchval("SELECT count(*) FROM severa_connector_dead_letters")
        finally:
            await store.close()
        assert stored == 0, f"{stored} dead letters in the store"

        for pod in pods:
            text = pod.log.read_text(errors="replace")
            assert cluster.password not in text, f"{pod.name} logged the broker password"
        reconnects = pods[0].log_events()["broker_connected"]
        assert reconnects >= 2, f"pod A never reconnected through another address ({reconnects})"
        print(  # the figures of this run, for the record (pytest -s)
            f"\ncluster test: {EVENTS} events, kill at {landed_at_kill} entries; work went on "
            f"{recovered_in:.1f}s after the kill; {stream.resent} publishes re-sent "
            f"({len(stream.resent_ids)} events), {extra} extra result events (unchanged re-runs); "
            f"{time.monotonic() - started:.0f}s in all"
        )
    finally:
        if stream_task is not None and not stream_task.done():
            stream_task.cancel()
            with contextlib.suppress(BaseException):
                await stream_task
        await bus.close()
        for pod in pods:
            await pod.stop()
