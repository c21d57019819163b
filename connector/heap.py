"""The garbage collector's share of a long-running pod, kept small.

After start-up a pod holds a large heap that lives as long as the process: imported modules, the
Severa WSDL that zeep parsed, SQLAlchemy's compiled statements, pydantic's validators. CPython's
cyclic collector walks every tracked object of a generation each time it collects it, so with the
default thresholds (a young collection every 700 allocations, an older one every tenth of those)
the steady state keeps re-examining objects that will never be garbage. A work-hours event
allocates thousands of short-lived objects (frames, futures, AMQP frames, log records), so those
collections come often: measured with ``perf`` on the connector at 0 ms Severa latency, the
collector was 3-4 % of the process's CPU.

:func:`freeze_startup_heap` runs once, after the pod is up: one full collection, then
:func:`gc.freeze` moves every survivor to the permanent generation, which the collector never
walks again (CPython documents it for pre-fork servers, to keep pages shared; here it is for the
time each collection takes), and the young generation's threshold is raised so that it runs about
ten times less often. Reference counting frees most objects the moment they are unused; only
cycles wait for the collector, and they are rarer than the allocations that trigger it. The cost:
an object made at start-up that later becomes part of a cycle (an old broker connection after a
reconnect) is never collected -- a few per reconnect. The soak bench (``bench/workhours.py
--soak``) is the check that memory stays flat. Only the commands that own their process call it
(``run``, ``dlq replay``), never a library caller.
"""

from __future__ import annotations

import gc
from typing import Final

#: Allocations (minus deallocations) between young-generation collections; CPython's default is 700.
YOUNG_THRESHOLD: Final = 7000


def freeze_startup_heap() -> None:
    """Collect once, freeze what survived start-up, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
