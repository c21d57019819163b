"""SeveraClientConfig: what it accepts, what it refuses, and that the key never shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.severa.config import DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_RESPONSE_BYTES, SeveraClientConfig

KEY = "k3y-that-must-not-leak"


def test_defaults() -> None:
    config = SeveraClientConfig(api_key=KEY)
    assert config.endpoint == "https://sync.severa.com/webservice/S3/API.svc"
    assert config.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 64 * 2**20
    # Two of the largest answers at once, a quarter of a 512 MiB pod.
    assert config.max_buffered_bytes == DEFAULT_MAX_BUFFERED_BYTES == 128 * 2**20
    assert config.connection_pool_size == config.max_concurrency
    assert config.rate_limit_per_second is None
    assert config.business_unit_guid is None


def test_the_key_is_not_in_repr_or_str() -> None:
    config = SeveraClientConfig(api_key=KEY)
    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert KEY not in config.model_dump_json()


def test_key_file(tmp_path: Path) -> None:
    config = SeveraClientConfig(api_key_file=tmp_path / "key")
    assert config.api_key is None
    assert config.api_key_file == tmp_path / "key"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"url": "ftp://sync.severa.com/x", "api_key": KEY}, "URL scheme", id="url must be http(s)"
        ),
        pytest.param({"url": "not a url", "api_key": KEY}, "url", id="url must be a URL"),
        pytest.param({}, "exactly one of api_key", id="a key is required"),
        pytest.param({"api_key": KEY, "api_key_file": "/k"}, "exactly one of", id="not both key and file"),
        pytest.param({"api_key": "   "}, "is empty", id="a blank key is refused"),
        pytest.param({"api_key": KEY, "timeout_seconds": 0}, "greater than 0", id="timeout must be positive"),
        pytest.param(
            {"api_key": KEY, "connect_timeout_seconds": -1}, "greater than 0", id="connect timeout > 0"
        ),
        pytest.param(
            {"api_key": KEY, "timeout_seconds": 5, "connect_timeout_seconds": 10},
            "must not exceed",
            id="connect timeout within the total",
        ),
        pytest.param(
            {"api_key": KEY, "max_concurrency": 0}, "greater than 0", id="concurrency must be positive"
        ),
        pytest.param(
            {"api_key": KEY, "max_response_bytes": 256 * 2**20},
            "max_buffered_bytes must be at least max_response_bytes",
            id="the largest answer must fit in the buffer budget",
        ),
        pytest.param(
            {"api_key": KEY, "rate_limit_per_second": 0}, "greater than 0", id="rate must be positive"
        ),
        pytest.param(
            {"api_key": KEY, "max_concurrency": 8, "pool_size": 4},
            "at least max_concurrency",
            id="the pool must hold every concurrent call",
        ),
        pytest.param({"api_key": KEY, "business_unit_guid": ""}, "at least 1", id="an empty business unit"),
        pytest.param({"api_key": KEY, "unknown": 1}, "Extra inputs", id="unknown settings are refused"),
    ],
)
def test_invalid_settings(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        SeveraClientConfig(**fields)
    assert KEY not in str(info.value)


def test_http_is_allowed_for_the_fake() -> None:
    config = SeveraClientConfig(url="http://127.0.0.1:8080/API.svc", api_key=KEY, rate_limit_per_second=0.5)
    assert config.endpoint == "http://127.0.0.1:8080/API.svc"
    assert config.rate_limit_per_second == 0.5
