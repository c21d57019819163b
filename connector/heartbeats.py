"""Pod heartbeats in the dead-letter store: what every connector pod says about itself, for the console.

The console runs apart from the pods (its own Deployment) and cannot ask them over HTTP -- the
NetworkPolicy admits no such traffic, and it would not know their addresses. So every pod writes
one row of ``<prefix>pod_heartbeats`` in the central dead-letter store every
``dlq.heartbeat_seconds``, and within a second whenever what it says changes: its role, flows,
each circuit's state and its readiness (the same verdict as ``/readyz``). The console shows a pod
whose last beat is older than three of its own intervals as down; rows silent for a day are
dropped by the next beat of any pod.

The writer is one supervised background task. A store that fails is closed, logged and opened
again with backoff; a beat is never a reason for the pod to stop or to become unready.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from connector.dlq.records import PodHeartbeat
from connector.dlq.store import DeadLetterStore
from connector.logging import get_logger

log = get_logger(__name__)

FORGET_AFTER: Final = dt.timedelta(days=1)
MAX_BACKOFF_SECONDS: Final = 60.0
CHECK_SECONDS: Final = 1.0
"""How often the pod's state is compared with the last beat written (in memory; no I/O)."""


@dataclass(frozen=True, slots=True)
class PodState:
    """What the pod reports on each beat (read from the live service when the beat is written)."""

    role: str
    flows: tuple[str, ...]
    circuits: dict[str, str]
    ready: bool
    reasons: tuple[str, ...]


class HeartbeatWriter:
    """Writes ``pod``'s heartbeat every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        open_store: Callable[[], DeadLetterStore],
        state: Callable[[], PodState],
        *,
        pod: str,
        version: str | None,
        interval: float,
    ) -> None:
        if interval <= 0:
            raise ValueError("a heartbeat interval is positive")
        self._open_store = open_store
        self._state = state
        self.pod = pod
        self.version = version
        self.interval = interval
        self.started_at = dt.datetime.now(dt.UTC)
        self.beats = 0

    def heartbeat(self, now: dt.datetime, state: PodState | None = None) -> PodHeartbeat:
        state = state if state is not None else self._state()
        return PodHeartbeat(
            pod=self.pod,
            role=state.role,
            flows=state.flows,
            circuits=dict(state.circuits),
            ready=state.ready,
            reasons=state.reasons,
            version=self.version,
            interval_seconds=self.interval,
            started_at=self.started_at,
            beat_at=now,
        )

    async def run(self) -> None:
        delay = self.interval
        while True:
            store = self._open_store()
            try:
                await store.setup()
                written: PodState | None = None
                last = 0.0
                loop = asyncio.get_running_loop()
                while True:
                    state = self._state()
                    # Every interval, and at once when the state changed (a circuit opened): the
                    # console sees a pause within a second, not an interval later.
                    if state != written or loop.time() - last >= self.interval:
                        now = dt.datetime.now(dt.UTC)
                        await store.beat(self.heartbeat(now, state), forget_before=now - FORGET_AFTER)
                        written, last = state, loop.time()
                        self.beats += 1
                        delay = self.interval
                    await asyncio.sleep(min(CHECK_SECONDS, self.interval))  # a clock, not synchronisation
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "pod_heartbeat_failed_retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay
                )
            finally:
                try:
                    await store.aclose()
                except Exception as exc:  # closing a broken store must not end the task
                    log.debug("pod_heartbeat_store_close_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay)  # backoff before opening the store again
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
