"""The message processor on the real broker: what happens to a message for each kind of failure.

A scripted handler stands in for a flow, so each rule of ``connector/processing.py`` is shown on its
own: ack after success, in-process retry, the delayed-retry ladder, dead-lettering with headers,
holding messages while the circuit is open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from connector.bus import Bus, OutgoingMessage
from connector.circuit import Circuit, CircuitState
from connector.delayed_retry import ATTEMPTS_HEADER, RETRY_STEP_HEADER, RetryLadder
from connector.dlq import DeadLetterer
from connector.errors import (
    InvalidMessage,
    SeveraAuthenticationFailed,
    SeveraQuotaExceeded,
    SeveraUnavailable,
    TransientError,
    UnknownReference,
)
from connector.observability import Metrics
from connector.processing import Delivery, MessageProcessor
from connector.retry import RetryPolicy
from connector.topology import Names
from schemas.dead_letter import DeadLetterHeaders
from tests.harness import TEST_RETRY_LADDER, wait_until

pytestmark = pytest.mark.integration


class ScriptedHandler:
    """Raises the scripted errors in order, then succeeds; records every call."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[Delivery] = []
        self.succeeded: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.calls.append(delivery)
        if self.errors:
            raise self.errors.pop(0)
        self.succeeded.append(delivery)


class Rig:
    def __init__(self, bus: Bus, names: Names, circuit: Circuit, metrics: Metrics) -> None:
        self.bus = bus
        self.names = names
        self.circuit = circuit
        self.metrics = metrics

    async def run(
        self,
        handler: ScriptedHandler,
        *,
        attempts: int = 2,
        hold_seconds: float = 10,
        budget_seconds: float = 60,
        poison_strikes: int = 3,
        prefetch: int = 4,
    ) -> MessageProcessor:
        ladder = RetryLadder(self.bus, self.names.workhours_queue, TEST_RETRY_LADDER)
        processor = MessageProcessor(
            flow="test",
            handler=handler,
            dead_letters=DeadLetterer(
                self.bus,
                exchange=self.names.dead_letter_exchange,
                queue=self.names.workhours_queue,
                flow="test",
                pod="pod-1",
            ),
            circuit=self.circuit,
            retry=RetryPolicy(attempts=attempts, initial_seconds=0.001, max_seconds=0.01),
            metrics=self.metrics,
            hold_seconds=hold_seconds,
            budget_seconds=budget_seconds,
            poison_strikes=poison_strikes,
            retry_later=ladder,
            put_back=ladder,
        )
        consumer = await self.bus.consumer(self.names.workhours_queue, processor, prefetch=prefetch)
        await consumer.start()
        return processor

    async def send(self, body: bytes = b'{"x": 1}', message_id: str = "m-1", **headers: object) -> None:
        await self.bus.publish(
            self.names.workhours_exchange,
            OutgoingMessage(
                body=body, routing_key="workhour.created", message_id=message_id, headers=headers
            ),
        )

    def outcome_count(self, outcome: str) -> float:
        return self.metrics.messages.labels(flow="test", outcome=outcome)._value.get()


@pytest.fixture
async def rig(amqp_url: str, topology: Names) -> AsyncIterator[Rig]:
    async with Bus(amqp_url, name="processing-test") as bus:
        yield Rig(bus, topology, Circuit("test"), Metrics())


@pytest.fixture
async def dlq(
    topology: Names, amqp_connection: aio_pika.abc.AbstractConnection
) -> AsyncIterator[Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]]:
    channel = await amqp_connection.channel()

    async def take() -> list[aio_pika.abc.AbstractIncomingMessage]:
        queue = await channel.get_queue(topology.workhours_dlq)
        out = []
        while (m := await queue.get(fail=False, no_ack=True)) is not None:
            out.append(m)
        return out

    yield take  # type: ignore[misc]
    await channel.close()


async def test_success_acks_once(rig: Rig) -> None:
    handler = ScriptedHandler()
    await rig.run(handler)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="ack")
    assert len(handler.calls) == 1


async def test_a_transient_blip_is_absorbed_in_process(rig: Rig) -> None:
    handler = ScriptedHandler(TransientError("blip"))
    await rig.run(handler, attempts=2)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="ack")
    assert len(handler.calls) == 2
    assert rig.outcome_count("retry_scheduled") == 0


async def test_a_longer_transient_failure_climbs_the_delay_ladder_then_succeeds(rig: Rig) -> None:
    # Two attempts per delivery: fails twice, twice more after the first rung, then succeeds.
    handler = ScriptedHandler(*[TransientError("still down") for _ in range(5)])
    await rig.run(handler, attempts=2)
    await rig.send()
    await wait_until(lambda: bool(handler.succeeded), what="success after a delayed retry", timeout=10)
    final = handler.succeeded[0]
    assert final.headers[RETRY_STEP_HEADER] == 2
    assert final.headers[ATTEMPTS_HEADER] == 4  # attempts before this delivery
    assert len(handler.calls) == 6
    assert final.body == b'{"x": 1}'
    assert final.message_id == "m-1"


async def test_past_the_last_rung_the_message_is_dead_lettered_with_all_attempts(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    handler = ScriptedHandler(*[TransientError("never recovers") for _ in range(50)])
    await rig.run(handler, attempts=2)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("dead_lettered") == 1, what="dead letter", timeout=10)
    (dead,) = await dlq()
    headers = DeadLetterHeaders.from_amqp(dict(dead.headers))
    assert headers is not None
    assert headers.category == "transient"
    assert headers.attempts == 2 * (len(TEST_RETRY_LADDER) + 1)
    assert headers.first_failure_at <= headers.last_failure_at


async def test_a_permanent_error_is_dead_lettered_at_first_sight(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    handler = ScriptedHandler(UnknownReference("no user 'X'", kind="user", value="X"))
    await rig.run(handler)
    await rig.send(b'{"original": true}', producer_header="kept")
    await wait_until(lambda: rig.outcome_count("dead_lettered") == 1, what="dead letter")
    (dead,) = await dlq()
    assert dead.body == b'{"original": true}'
    assert dead.headers["producer_header"] == "kept"
    headers = DeadLetterHeaders.from_amqp(dict(dead.headers))
    assert headers is not None
    assert (headers.reason, headers.attempts, headers.pod) == ("unknown_user", 1, "pod-1")
    assert len(handler.calls) == 1


async def test_a_bug_is_parked_with_its_traceback_not_retried(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    handler = ScriptedHandler(KeyError("oops"))
    await rig.run(handler)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("dead_lettered") == 1, what="dead letter")
    (dead,) = await dlq()
    headers = DeadLetterHeaders.from_amqp(dict(dead.headers))
    assert headers is not None
    assert headers.reason == "unexpected_KeyError"
    assert "KeyError" in headers.traceback


async def test_a_systemic_error_holds_the_message_until_the_circuit_closes(rig: Rig) -> None:
    handler = ScriptedHandler(SeveraQuotaExceeded("Quota limit reached"))
    await rig.run(handler)
    await rig.send()
    await wait_until(lambda: rig.circuit.is_open, what="the circuit to open")
    assert rig.outcome_count("dead_lettered") == 0
    rig.circuit.close()  # the supervisor's probe succeeded
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="ack after resume")
    assert len(handler.calls) == 2


async def test_a_half_open_circuit_lets_exactly_one_held_message_try(rig: Rig) -> None:
    """A passing probe proves little when one operation is refused: one trial goes first."""
    refused = SeveraAuthenticationFailed("AddNewHourEntry refused: the API user lacks the write right")
    handler = ScriptedHandler(refused, refused)
    await rig.run(handler)
    await rig.send(message_id="m-1")
    await rig.send(message_id="m-2")
    await wait_until(lambda: rig.circuit.waiters == 2, what="both messages held")
    rig.circuit.half_open()
    await wait_until(lambda: rig.outcome_count("acked") == 2, what="the trial, then everyone else")
    assert len(handler.calls) == 4
    assert rig.circuit.state is CircuitState.CLOSED
    assert rig.outcome_count("dead_lettered") == 0


async def test_a_failed_trial_goes_to_the_back_of_the_queue_and_nothing_is_dead_lettered(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    """An API user without the right to write: every trial fails, probes pass; nothing is parked."""
    refused = SeveraAuthenticationFailed("AddNewHourEntry refused: the API user lacks the write right")
    handler = ScriptedHandler(*([refused] * 100))
    await rig.run(handler)
    await rig.send()
    for cycle in range(5):
        await wait_until(lambda: rig.circuit.waiters == 1, what=f"the message held (cycle {cycle})")
        put_back = rig.outcome_count("put_back")
        rig.circuit.half_open()  # the read-only probe passes again
        # The trial fails and goes to the back of the queue (this rig does not pause the
        # consumer, so it comes straight back and is held again).
        await wait_until(lambda p=put_back: rig.outcome_count("put_back") == p + 1, what="the trial put back")
        assert rig.circuit.state is CircuitState.OPEN
    handler.errors.clear()  # the write right is granted
    rig.circuit.close()
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="the write right granted at last")
    assert await dlq() == []
    assert rig.outcome_count("put_back") >= 5


async def test_a_message_held_to_its_deadline_is_put_back_without_spending_its_delivery_limit(
    rig: Rig,
) -> None:
    handler = ScriptedHandler(SeveraQuotaExceeded("Quota limit reached"))
    await rig.run(handler, hold_seconds=0.3)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("put_back") == 1, what="the hold to end")
    rig.circuit.close()
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="the message back, handled")
    second = handler.calls[-1]
    assert second.headers.get("x-delivery-count") in (None, 0)  # a fresh delivery, not a requeue
    assert second.headers["x-original-exchange"] == rig.names.workhours_exchange
    assert second.headers["x-original-routing-key"] == "workhour.created"


async def test_a_message_that_fails_while_others_succeed_is_parked_as_suspected_poison(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    """Severa serves a steady stream of other messages while one keeps failing: that one is parked."""
    handler = PoisonHandler(poison_id="bad", slow_seconds=0.05)
    await rig.run(handler, poison_strikes=2, prefetch=8)
    await rig.send(message_id="bad")
    stop = asyncio.Event()

    async def traffic() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await rig.send(message_id=f"good-{n}")
            await asyncio.sleep(0.01)  # a producer's pace, not synchronisation

    producer = asyncio.create_task(traffic())
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while rig.outcome_count("dead_lettered") == 0:
            assert asyncio.get_running_loop().time() < deadline, "the poison message was never parked"
            await wait_until(lambda: rig.circuit.is_open or rig.outcome_count("dead_lettered") == 1)
            if rig.circuit.state is CircuitState.OPEN:
                rig.circuit.half_open()  # the probe passes: Severa is fine
            await wait_until(  # the trial decided before the next probe, as the supervisor waits
                lambda: rig.circuit.state is not CircuitState.HALF_OPEN, what="the trial's verdict"
            )
    finally:
        stop.set()
        await producer
    letters = await dlq()
    assert [m.message_id for m in letters] == ["bad"]
    headers = DeadLetterHeaders.from_amqp(letters[0].headers)
    assert headers.reason == "suspected_poison_message"
    assert "severa_outage" in headers.message
    assert "bad" not in handler.succeeded_ids


async def test_nobody_is_parked_as_poison_while_severa_serves_nobody(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    """An outage with a few bodies Severa never sees (not JSON): those are no evidence of health."""
    handler = OutageHandler()
    await rig.run(handler, poison_strikes=2, prefetch=8)
    for n in range(4):
        await rig.send(message_id=f"event-{n}")
        await rig.send(b"{not json", message_id=f"junk-{n}")
    for _ in range(20):  # probes keep passing, trials keep failing
        await wait_until(lambda: rig.circuit.state is CircuitState.OPEN, what="the circuit open")
        rig.circuit.half_open()
        await wait_until(  # the trial decided before the next probe, as the supervisor waits
            lambda: rig.circuit.state is not CircuitState.HALF_OPEN, what="the trial's verdict"
        )
    parked = {m.message_id for m in await dlq()}
    assert parked <= {f"junk-{n}" for n in range(4)}, parked
    handler.outage = False
    rig.circuit.close()
    await wait_until(lambda: rig.outcome_count("acked") >= 4, what="every event after the outage")


async def test_provenance_survives_the_retry_ladder_into_the_dead_letter(
    rig: Rig, dlq: Callable[[], asyncio.Future[list[aio_pika.abc.AbstractIncomingMessage]]]
) -> None:
    handler = ScriptedHandler(*[TransientError("flaky") for _ in range(20)])
    await rig.run(handler, attempts=1)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("dead_lettered") == 1, what="the ladder climbed", timeout=15)
    [letter] = await dlq()
    headers = DeadLetterHeaders.from_amqp(letter.headers)
    assert headers.original_exchange == rig.names.workhours_exchange
    assert headers.original_routing_key == "workhour.created"
    first_call = handler.calls[0]
    assert first_call.exchange == rig.names.workhours_exchange
    assert headers.first_failure_at < headers.last_failure_at
    assert (headers.last_failure_at - headers.first_failure_at).total_seconds() >= sum(TEST_RETRY_LADDER)


async def test_a_handler_past_its_budget_is_retried_later_not_held_past_the_consumer_timeout(
    rig: Rig,
) -> None:
    handler = SlowHandler()
    await rig.run(handler, hold_seconds=0.1, budget_seconds=0.5, attempts=1)
    await rig.send()
    await wait_until(lambda: rig.outcome_count("retry_scheduled") == 1, what="the budget to end it")
    handler.release.set()
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="the retry to succeed")


class PoisonHandler:
    """Severa "fails" for one message only; every other message succeeds."""

    def __init__(self, poison_id: str, slow_seconds: float = 0.0) -> None:
        self.poison_id = poison_id
        self.slow_seconds = slow_seconds
        self.succeeded_ids: list[str] = []

    async def __call__(self, delivery: Delivery) -> None:
        if delivery.message_id == self.poison_id:
            await asyncio.sleep(self.slow_seconds)  # Severa takes a while to answer HTTP 500
            raise SeveraUnavailable("Severa answered HTTP 500 to this entry")
        self.succeeded_ids.append(delivery.message_id or "")


class OutageHandler:
    """Severa is down for every event; a body that is not JSON is refused before Severa."""

    def __init__(self) -> None:
        self.outage = True

    async def __call__(self, delivery: Delivery) -> None:
        if delivery.body.startswith(b"{not"):
            raise InvalidMessage("body is not valid JSON", reason="invalid_json")
        if self.outage:
            raise SeveraUnavailable("Severa answered HTTP 503")


class SlowHandler:
    """Hangs on its first call until released (a Severa call that never answers)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, delivery: Delivery) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()


async def test_counters_a_producer_sets_are_ignored(rig: Rig) -> None:
    """Only our own republishes (through the default exchange) may carry retry counters."""
    handler = ScriptedHandler(TransientError("flaky"))
    await rig.run(handler, attempts=1)
    await rig.send(**{RETRY_STEP_HEADER: 99, ATTEMPTS_HEADER: 99, "x-systemic-strikes": 99})
    await wait_until(lambda: rig.outcome_count("acked") == 1, what="the retry from the first rung")
    assert rig.outcome_count("dead_lettered") == 0
    assert handler.calls[1].headers[RETRY_STEP_HEADER] == 1
