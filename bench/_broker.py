"""The production topology on a bench's vhost: declared as the connector declares it, deleted after.

Shared by the process-based benches (``workhours.py``, ``dlq_replay.py``), which publish a backlog
before the contender starts and so must declare what the connector would, exactly (its own
declare is then a no-op).
"""

from __future__ import annotations

import aio_pika

from connector import bus
from connector.topology import Names, build_topology


async def declare_topology(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    """The production topology, declared by the connector's own code (``bus.declare_topology``)."""
    await bus.declare_topology(channel, build_topology(names))


async def delete_topology(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    """Empty the broker of a contender's queues at once (the vhost goes at the end of the run)."""
    for spec in build_topology(names).queues:
        await channel.queue_delete(spec.name)
