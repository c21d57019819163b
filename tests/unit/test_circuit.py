"""The circuit's state machine: open → half-open (one trial) → closed, and the evidence of health."""

from __future__ import annotations

import asyncio

from connector.circuit import Circuit, CircuitState
from connector.errors import SeveraAuthenticationFailed
from connector.supervision import TaskSupervisor
from tests.harness import wait_until

REFUSED = SeveraAuthenticationFailed("refused")


async def test_a_probe_with_nobody_held_closes_the_circuit_at_once() -> None:
    circuit = Circuit()
    circuit.trip(REFUSED)
    circuit.half_open()
    assert circuit.state is CircuitState.CLOSED
    assert not circuit.evidence_of_health  # closed by a probe, not by a message that got through


async def test_half_open_admits_exactly_one_held_message() -> None:
    circuit = Circuit()
    circuit.trip(REFUSED)
    waiters = [asyncio.create_task(circuit.wait_usable(5)) for _ in range(3)]
    await wait_until(lambda: circuit.waiters == 3, what="three held")
    circuit.half_open()
    done, pending = await asyncio.wait(waiters, timeout=0.2)
    assert len(done) == 1
    assert len(pending) == 2
    circuit.record_success()  # the trial went through
    assert circuit.state is CircuitState.CLOSED
    assert circuit.evidence_of_health
    assert all(await asyncio.gather(*pending))


async def test_a_failed_trial_opens_the_circuit_again_and_admits_nobody() -> None:
    circuit = Circuit()
    circuit.trip(REFUSED)
    first = asyncio.create_task(circuit.wait_usable(5))
    second = asyncio.create_task(circuit.wait_usable(0.3))
    await wait_until(lambda: circuit.waiters == 2, what="two held")
    circuit.half_open()
    assert await first
    circuit.trip(REFUSED)
    assert circuit.state is CircuitState.OPEN
    assert await second is False  # timed out: the caller puts it back
    assert circuit.trips == 1  # a failed trial is not a new outage


async def test_a_hold_ends_at_its_timeout() -> None:
    circuit = Circuit()
    circuit.trip(REFUSED)
    assert await circuit.wait_usable(0.05) is False
    assert circuit.waiters == 0


async def test_a_task_that_ends_unasked_is_reported_dead() -> None:
    supervisor = TaskSupervisor()

    async def crash() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        await asyncio.Event().wait()

    task = supervisor.spawn("crasher", crash())
    supervisor.spawn("steady", forever())
    await asyncio.wait([task])
    assert supervisor.dead() == ["crasher"]
    await supervisor.aclose()
    assert supervisor.dead() == []
