"""Netvisor settings and key sources: validation, key files that follow rotation, keys kept secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr, ValidationError

from adapters.netvisor.config import NetvisorClientConfig
from adapters.netvisor.keys import KeyPair, NetvisorKeys, StaticKey, file_key, key_sources
from adapters.secret_file import SecretFile
from connector.errors import ConfigError

CUSTOMER_KEY = "customer-key-0123456789"
PARTNER_KEY = "partner-key-9876543210"
NEW_CUSTOMER_KEY = "customer-key-abcdefghij"  # same length as CUSTOMER_KEY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(**overrides: Any) -> NetvisorClientConfig:
    values: dict[str, Any] = {
        "customer_id": "CUST",
        "partner_id": "PART",
        "organisation_id": "1234567-8",
        "customer_key": CUSTOMER_KEY,
        "partner_key": PARTNER_KEY,
    }
    values.update(overrides)
    return NetvisorClientConfig(**values)


def test_defaults_follow_the_vendors_advice() -> None:
    settings = config()
    assert settings.timeout_seconds == 120
    assert settings.connect_timeout_seconds < settings.timeout_seconds
    assert settings.root == "https://integration.netvisor.fi"
    assert settings.language == "EN"


def test_keys_never_show_in_the_config() -> None:
    settings = config()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert CUSTOMER_KEY not in text
        assert PARTNER_KEY not in text


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        pytest.param({"organisation_id": "12345678"}, "1234567-8", id="a business id without its hyphen"),
        pytest.param({"organisation_id": "FI12345678"}, "1234567-8", id="a VAT number is not a business id"),
        pytest.param({"customer_key": None}, "exactly one of customer_key", id="no customer key at all"),
        pytest.param(
            {"partner_key_file": "/run/secrets/partner"}, "exactly one of partner_key", id="two partner keys"
        ),
        pytest.param({"customer_key": "  "}, "customer_key .* is empty", id="a blank key"),
        pytest.param(
            {"timeout_seconds": 5, "connect_timeout_seconds": 10},
            "connect_timeout",
            id="connect beyond total",
        ),
        pytest.param({"language": "DE"}, "language", id="a language Netvisor does not speak"),
    ],
)
def test_invalid_settings(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        config(**overrides)


def test_a_business_id_is_stripped() -> None:
    assert config(organisation_id=" 1234567-8 ").organisation_id == "1234567-8"


def test_static_keys(tmp_path: Path) -> None:
    keys = key_sources(config())
    assert keys.current() == KeyPair(CUSTOMER_KEY, PARTNER_KEY)
    for text in (repr(keys), repr(keys.current()), keys.origin):
        assert CUSTOMER_KEY not in text
        assert PARTNER_KEY not in text
    assert "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_KEY" in keys.origin


def test_key_files(tmp_path: Path) -> None:
    (tmp_path / "customer").write_text(CUSTOMER_KEY + "\n")
    (tmp_path / "partner").write_text(PARTNER_KEY)
    keys = key_sources(
        config(
            customer_key=None,
            partner_key=None,
            customer_key_file=tmp_path / "customer",
            partner_key_file=tmp_path / "partner",
        )
    )
    assert isinstance(keys.customer, SecretFile)
    assert keys.current() == KeyPair(CUSTOMER_KEY, PARTNER_KEY)
    assert str(tmp_path / "customer") in keys.origin
    assert "CUSTOMER_KEY_FILE" in keys.origin


def test_a_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read the Netvisor partner key file") as info:
        key_sources(config(partner_key=None, partner_key_file=tmp_path / "absent"))
    assert info.value.reason == "netvisor_partner_key_file_unreadable"
    assert "SEVERA_CONNECTOR_NETVISOR__PARTNER_KEY_FILE" in info.value.message


def test_an_empty_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "customer").write_text("\n")
    with pytest.raises(ConfigError, match="is empty") as info:
        key_sources(config(customer_key=None, customer_key_file=tmp_path / "customer"))
    assert info.value.reason == "netvisor_customer_key_empty"


def test_a_rotated_key_file_is_used_at_once(tmp_path: Path) -> None:
    path = tmp_path / "customer"
    path.write_text(CUSTOMER_KEY)
    source = file_key(path, what="customer key", setting="X", recheck_seconds=3600, clock=Clock())
    path.write_text(NEW_CUSTOMER_KEY + "-longer")  # a new size changes the stat signature
    with structlog.testing.capture_logs() as logs:
        assert source.current().get_secret_value() == NEW_CUSTOMER_KEY + "-longer"
    assert [entry["event"] for entry in logs] == ["netvisor.customer_key_reloaded"]
    assert CUSTOMER_KEY not in str(logs)
    assert NEW_CUSTOMER_KEY not in str(logs)


def test_refresh_finds_a_rewrite_stat_cannot_see(tmp_path: Path) -> None:
    path = tmp_path / "customer"
    path.write_text(CUSTOMER_KEY)
    before = os.stat(path)
    source = file_key(path, what="customer key", setting="X", recheck_seconds=3600, clock=Clock())
    keys = NetvisorKeys(
        customer=source, partner=StaticKey(SecretStr(PARTNER_KEY), what="partner key", setting="Y")
    )
    path.write_text(NEW_CUSTOMER_KEY)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # within one timestamp tick
    assert keys.current().customer_key == CUSTOMER_KEY
    keys.refresh()
    assert keys.current().customer_key == NEW_CUSTOMER_KEY


def test_an_unreadable_file_keeps_the_last_key(tmp_path: Path) -> None:
    path = tmp_path / "partner"
    path.write_text(PARTNER_KEY)
    source = file_key(path, what="partner key", setting="X", recheck_seconds=0, clock=Clock())
    path.unlink()
    with structlog.testing.capture_logs() as logs:
        assert source.current().get_secret_value() == PARTNER_KEY
        assert source.current().get_secret_value() == PARTNER_KEY
    assert [entry["event"] for entry in logs] == ["netvisor.partner_key_file_unreadable"]
    assert PARTNER_KEY not in str(logs)
    assert PARTNER_KEY not in repr(source)


def test_a_static_key_must_not_be_blank() -> None:
    with pytest.raises(ConfigError, match="empty"):
        StaticKey(SecretStr(" "), what="customer key", setting="X")
