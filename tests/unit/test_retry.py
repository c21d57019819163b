"""The in-process retry: the first attempt is a plain call, tenacity takes over from a transient failure."""

from __future__ import annotations

import pytest
import structlog

from connector.errors import PermanentError, TransientError
from connector.retry import RetryPolicy

FAST = RetryPolicy(attempts=4, initial_seconds=0.001, max_seconds=0.002)


class Flaky:
    """Fails with the given errors in turn, then answers ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    ("errors", "calls", "attempts", "retried"),
    [
        pytest.param((), 1, [1], [], id="success at once: one call, no retry"),
        pytest.param((TransientError("a"),), 2, [1, 2], [1], id="one transient failure"),
        pytest.param((TransientError("a"), TransientError("b")), 3, [1, 2, 3], [1, 2], id="two"),
    ],
)
async def test_transient_failures_are_retried_and_counted(
    errors: tuple[Exception, ...], calls: int, attempts: list[int], retried: list[int]
) -> None:
    fn, seen = Flaky(*errors), []
    with structlog.testing.capture_logs() as logs:
        assert await FAST.run(fn, on_attempt=seen.append) == "ok"
    assert (fn.calls, seen) == (calls, attempts)
    assert [e["attempt"] for e in logs if e["event"] == "transient_failure_retrying"] == retried


async def test_the_last_transient_failure_is_raised_as_is_when_attempts_run_out() -> None:
    last = TransientError("d")
    fn, seen = Flaky(TransientError("a"), TransientError("b"), TransientError("c"), last), []
    with pytest.raises(TransientError) as raised:
        await FAST.run(fn, on_attempt=seen.append)
    assert raised.value is last
    assert (fn.calls, seen) == (4, [1, 2, 3, 4])


@pytest.mark.parametrize("attempts", [1, 4])
async def test_a_permanent_error_is_not_retried(attempts: int) -> None:
    fn = Flaky(PermanentError("no"))
    with pytest.raises(PermanentError):
        await RetryPolicy(attempts=attempts, initial_seconds=0.001).run(fn)
    assert fn.calls == 1


async def test_a_single_attempt_policy_raises_the_first_transient_failure() -> None:
    first = TransientError("a")
    fn = Flaky(first)
    with pytest.raises(TransientError) as raised:
        await RetryPolicy(attempts=1).run(fn)
    assert (raised.value, fn.calls) == (first, 1)
