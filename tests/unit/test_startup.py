"""connect_broker's retry policy and explain_port_in_use, with connect functions of the test's own."""

from __future__ import annotations

import errno
import socket

import pytest
import structlog

from connector.startup import EXIT_CONFIG, EXIT_UNREACHABLE, StartupError, connect_broker, explain_port_in_use

SAFE_URL = "amqp://svc:***@broker.example:5672/"


class FlakyBroker:
    """Refuses the first ``failures`` connects, then answers; counts the attempts."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        self.attempts = 0
        self.timeouts: list[float] = []

    async def connect(self, timeout: float) -> str:
        self.attempts += 1
        self.timeouts.append(timeout)
        if self.attempts <= self.failures:
            raise self.error
        return "connection"


async def test_a_broker_that_comes_up_late_is_connected_and_the_wait_is_logged() -> None:
    broker = FlakyBroker(failures=2)
    with structlog.testing.capture_logs() as logs:
        connection = await connect_broker(
            broker.connect, safe_url=SAFE_URL, total_seconds=10, initial_delay=0.01, max_delay=0.02
        )
    assert connection == "connection"
    assert broker.attempts == 3
    retries = [e for e in logs if e["event"] == "broker_unreachable_retrying"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["broker"] == "broker.example:5672" for e in retries)
    assert all(0 < e["next_delay_seconds"] <= 0.02 and 0 < e["seconds_left"] <= 10 for e in retries)
    assert retries[0]["error"] == "Connection refused"
    assert all(0 < timeout <= 10 for timeout in broker.timeouts)  # each attempt bounded by what is left


async def test_past_the_budget_it_gives_up_with_exit_3_naming_the_peer_and_the_settings() -> None:
    broker = FlakyBroker(failures=10**6)
    with pytest.raises(StartupError) as caught:
        await connect_broker(
            broker.connect, safe_url=SAFE_URL, total_seconds=0.2, initial_delay=0.01, max_delay=0.05
        )
    error = caught.value
    assert error.exit_code == EXIT_UNREACHABLE
    assert "RabbitMQ at broker.example:5672 did not answer within 0.2s" in error.message
    assert "SEVERA_CONNECTOR_RABBITMQ__URL" in error.message
    assert "SEVERA_CONNECTOR_RABBITMQ__CONNECT_TIMEOUT_SECONDS" in error.message
    assert f"({broker.attempts} attempts" in error.message
    assert broker.attempts > 1


async def test_an_error_that_is_not_about_reaching_the_broker_is_not_retried() -> None:
    broker = FlakyBroker(failures=1, error=KeyError("bug"))
    with pytest.raises(KeyError):
        await connect_broker(broker.connect, safe_url=SAFE_URL, total_seconds=10, initial_delay=0.01)
    assert broker.attempts == 1


async def test_a_budget_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="total_seconds"):
        await connect_broker(FlakyBroker(0).connect, safe_url=SAFE_URL, total_seconds=0)


class TestExplainPortInUse:
    def test_a_port_in_use_names_the_setting_and_the_fix(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with socket.socket() as second, pytest.raises(OSError, match="in use") as caught:
                second.bind(("127.0.0.1", port))
        error = explain_port_in_use(
            caught.value, host="127.0.0.1", port=port, setting="SEVERA_CONNECTOR_HTTP__PORT"
        )
        assert error.exit_code == EXIT_CONFIG
        assert error.message == (
            f"cannot listen on 127.0.0.1:{port} (SEVERA_CONNECTOR_HTTP__PORT): port {port} is already in use "
            "on 127.0.0.1: stop the other process or choose another port"
        )

    @pytest.mark.parametrize(
        ("code", "says"),
        [
            pytest.param(errno.EACCES, "need privileges", id="a privileged port"),
            pytest.param(errno.EADDRNOTAVAIL, "not an address of this machine", id="a foreign address"),
        ],
    )
    def test_other_bind_failures_say_what_to_change(self, code: int, says: str) -> None:
        exc = OSError(code, "bind failed")
        error = explain_port_in_use(exc, host="10.9.9.9", port=80, setting="SEVERA_CONNECTOR_HTTP__PORT")
        assert error.exit_code == EXIT_CONFIG
        assert says in error.message
        assert "SEVERA_CONNECTOR_HTTP__PORT" in error.message

    def test_a_host_that_is_not_this_machine_names_the_host_setting(self) -> None:
        with socket.socket() as sock, pytest.raises(socket.gaierror) as caught:
            sock.bind(("no-such-host.invalid", 0))
        error = explain_port_in_use(
            caught.value,
            host="no-such-host.invalid",
            port=8080,
            setting="SEVERA_CONNECTOR_HTTP__PORT",
            host_setting="SEVERA_CONNECTOR_HTTP__HOST",
        )
        assert error.exit_code == EXIT_CONFIG
        assert "(SEVERA_CONNECTOR_HTTP__HOST): no-such-host.invalid is not an address of this machine" in (
            error.message
        )
