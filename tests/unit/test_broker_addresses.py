"""Several broker addresses in SEVERA_CONNECTOR_RABBITMQ__URL: parsing, validation, masking."""

from __future__ import annotations

import aio_pika
import pytest

from connector.broker_addresses import broker_urls, host_port, masked_list, passwords
from connector.bus import Bus, FailoverConnection
from connector.config import CommonSettings, load_settings
from connector.errors import ConfigError
from connector.startup import StartupError

SECRET = "s3cr3t-pw-41"


def test_one_url_is_returned_unchanged() -> None:
    url = f"amqp://svc:{SECRET}@broker:5672/prod?heartbeat=30"
    assert broker_urls(url) == (url,)


def test_several_whole_urls_keep_their_own_credentials_and_order() -> None:
    urls = broker_urls(f"amqp://a:{SECRET}@r0:5672/v, amqps://b:other@r1:5671/v")
    assert urls == (f"amqp://a:{SECRET}@r0:5672/v", "amqps://b:other@r1:5671/v")


def test_bare_addresses_take_the_first_urls_credentials_vhost_and_options() -> None:
    urls = broker_urls(f"amqp://svc:{SECRET}@r0:5672/prod?heartbeat=30,r1:5673,r2,[::1]:5674")
    assert urls == (
        f"amqp://svc:{SECRET}@r0:5672/prod?heartbeat=30",
        f"amqp://svc:{SECRET}@r1:5673/prod?heartbeat=30",
        f"amqp://svc:{SECRET}@r2/prod?heartbeat=30",
        f"amqp://svc:{SECRET}@[::1]:5674/prod?heartbeat=30",
    )
    assert [host_port(url) for url in urls] == ["r0:5672", "r1:5673", "r2:5672", "[::1]:5674"]


def test_a_password_with_commas_is_not_split() -> None:
    url = "amqp://svc:pa,ss,r1@r0:5672/"
    assert broker_urls(url) == (url,)
    assert broker_urls(url + ",r1:5672") == (url, "amqp://svc:pa,ss,r1@r1:5672/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("http://broker", "must be an amqp:// or amqps:// URL", id="first not amqp"),
        pytest.param("r0:5672,r1:5672", "must be an amqp:// or amqps:// URL", id="first is bare"),
        pytest.param(f"amqp://u:{SECRET}@r0/,http://r1/", "address 2 must be", id="second not amqp"),
        pytest.param(f"amqp://u:{SECRET}@r0/,r1:99999", "address 2 must be host[:port]", id="bad port"),
        pytest.param(f"amqp://u:{SECRET}@r0/,r1 r2", "address 2 must be host[:port]", id="garbage"),
        pytest.param(f"amqp://u:{SECRET}@r0:5672/,r0", "lists the broker r0:5672 twice", id="duplicate"),
    ],
)
def test_a_bad_list_is_refused_by_position_without_its_password(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"\w") as caught:
        broker_urls(text)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_setting_names_the_variable_and_never_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEVERA_CONNECTOR_RABBITMQ__URL", f"amqp://svc:{SECRET}@r0/,r1:0x")
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    assert "SEVERA_CONNECTOR_RABBITMQ__URL" in caught.value.message
    assert "address 2" in caught.value.message
    assert SECRET not in caught.value.message


def test_every_password_is_masked_and_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SEVERA_CONNECTOR_RABBITMQ__URL", f"amqp://svc:{SECRET}@r0/,r1:5673,amqp://b:other-pw-9@r2/"
    )
    settings = load_settings(CommonSettings).rabbitmq
    assert settings.safe_url() == "amqp://svc:***@r0/,amqp://svc:***@r1:5673/,amqp://b:***@r2/"
    assert len(settings.urls()) == 3
    assert passwords(settings.url.get_secret_value()) == (SECRET, "other-pw-9")
    assert masked_list("not a url") == "not a url"


def test_a_bus_with_several_addresses_fails_over_and_one_keeps_the_plain_robust_connection() -> None:
    assert Bus(f"amqp://svc:{SECRET}@r0/,r1")._urls == (
        f"amqp://svc:{SECRET}@r0/",
        f"amqp://svc:{SECRET}@r1/",
    )
    assert Bus("amqp://guest:guest@127.0.0.1:1/")._urls == ("amqp://guest:guest@127.0.0.1:1/",)
    assert issubclass(FailoverConnection, aio_pika.RobustConnection)


async def test_no_address_answering_is_one_line_naming_them_all() -> None:
    bus = Bus(f"amqp://svc:{SECRET}@127.0.0.1:1/,127.0.0.1:2")
    with pytest.raises(StartupError) as caught:
        await bus.connect(
            retry_seconds=0.5, safe_url=masked_list(f"amqp://svc:{SECRET}@127.0.0.1:1/,127.0.0.1:2")
        )
    message = caught.value.message
    assert "RabbitMQ at 127.0.0.1:1, 127.0.0.1:2 did not answer" in message, message
    assert caught.value.exit_code == 3
    assert SECRET not in message
    assert "\n" not in message
