"""The production topology on a bench's vhost: declared as the connector declares it, deleted after.

Shared by the process-based benches (``workhours.py``, ``dlq_replay.py``), which publish a backlog
before the contender starts and so must declare what the connector would, exactly (its own
declare is then a no-op).
"""

from __future__ import annotations

import aio_pika

from connector.topology import Names, build_topology


async def declare_topology(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    """The production topology, exactly as the connector declares it."""
    topology = build_topology(names)
    for exchange in topology.exchanges:
        await channel.declare_exchange(exchange.name, aio_pika.ExchangeType(exchange.type), durable=True)
    for spec in topology.queues:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for exchange_name, key in spec.bindings:
            await queue.bind(exchange_name, key)


async def delete_topology(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    """Empty the broker of a contender's queues at once (the vhost goes at the end of the run)."""
    for spec in build_topology(names).queues:
        await channel.queue_delete(spec.name)
