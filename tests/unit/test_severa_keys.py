"""API key sources: a fixed key, and a key file that follows rotation (Kubernetes Secret swaps)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from adapters.severa.config import SeveraClientConfig
from adapters.severa.keys import FileApiKey, StaticApiKey, api_key_source
from connector.errors import ConfigError

OLD = "old-key-0123456789"
NEW = "new-key-9876543210"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_static_key_is_stripped_and_hidden() -> None:
    source = StaticApiKey(SecretStr(f"  {OLD}\n"))
    assert source.current().get_secret_value() == OLD
    assert OLD not in repr(source)
    assert "SEVERA_CONNECTOR_SEVERA__API_KEY" in source.origin


def test_static_key_must_not_be_blank() -> None:
    with pytest.raises(ConfigError, match="empty"):
        StaticApiKey(SecretStr(" "))


def test_factory_picks_the_configured_source(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    assert isinstance(api_key_source(SeveraClientConfig(api_key=OLD)), StaticApiKey)
    assert isinstance(api_key_source(SeveraClientConfig(api_key_file=key_file)), FileApiKey)


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read the Severa API key file") as info:
        FileApiKey(tmp_path / "absent")
    assert "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE" in info.value.message


def test_empty_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        FileApiKey(tmp_path / "key")


def test_file_key_reads_and_strips(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(f"{OLD}\n")
    source = FileApiKey(tmp_path / "key")
    assert source.current().get_secret_value() == OLD
    assert OLD not in repr(source)
    assert str(tmp_path / "key") in source.origin


def test_a_rewritten_file_is_picked_up_on_the_next_call(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    source = FileApiKey(key_file, recheck_seconds=3600, clock=Clock())
    key_file.write_text(NEW + "-longer")  # a different size changes the stat signature
    assert source.current().get_secret_value() == NEW + "-longer"


def test_a_same_size_rewrite_with_the_same_mtime_is_found_by_the_recheck(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    before = os.stat(key_file)
    clock = Clock()
    source = FileApiKey(key_file, recheck_seconds=5, clock=clock)
    key_file.write_text(NEW)  # same length as OLD
    os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # as if within one timestamp tick
    assert len(NEW) == len(OLD)
    assert source.current().get_secret_value() == OLD  # stat looks unchanged, recheck not due
    clock.now += 5
    assert source.current().get_secret_value() == NEW


def test_refresh_rereads_at_once(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    before = os.stat(key_file)
    source = FileApiKey(key_file, recheck_seconds=3600, clock=Clock())
    key_file.write_text(NEW)
    os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    source.refresh()
    assert source.current().get_secret_value() == NEW


def test_a_kubernetes_secret_swap_is_followed(tmp_path: Path) -> None:
    """kubelet writes a new timestamped directory and flips the ``..data`` symlink atomically."""
    old_dir = tmp_path / "..2025_01_01"
    old_dir.mkdir()
    (old_dir / "api-key").write_text(OLD)
    (tmp_path / "..data").symlink_to(old_dir.name)
    (tmp_path / "api-key").symlink_to("..data/api-key")
    source = FileApiKey(tmp_path / "api-key", recheck_seconds=3600, clock=Clock())
    assert source.current().get_secret_value() == OLD

    new_dir = tmp_path / "..2025_02_02"
    new_dir.mkdir()
    (new_dir / "api-key").write_text(NEW)  # same size as OLD: only the inode tells
    (tmp_path / "..data_tmp").symlink_to(new_dir.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    for child in old_dir.iterdir():
        child.unlink()
    old_dir.rmdir()

    assert source.current().get_secret_value() == NEW


def test_an_unreadable_file_keeps_the_last_key_and_warns_once(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    source = FileApiKey(key_file, recheck_seconds=0, clock=Clock())
    key_file.unlink()
    with structlog.testing.capture_logs() as logs:
        assert source.current().get_secret_value() == OLD
        assert source.current().get_secret_value() == OLD
        source.refresh()
    assert [entry["event"] for entry in logs] == ["severa.api_key_file_unreadable"]
    assert OLD not in str(logs)
    key_file.write_text(NEW)
    assert source.current().get_secret_value() == NEW


def test_an_emptied_file_keeps_the_last_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    source = FileApiKey(key_file, recheck_seconds=0, clock=Clock())
    key_file.write_text("")
    with structlog.testing.capture_logs() as logs:
        assert source.current().get_secret_value() == OLD
    assert [entry["event"] for entry in logs] == ["severa.api_key_file_empty"]


def test_a_reload_is_logged_without_the_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(OLD)
    source = FileApiKey(key_file, recheck_seconds=0, clock=Clock())
    key_file.write_text(NEW + "!")
    with structlog.testing.capture_logs() as logs:
        source.current()
    assert [entry["event"] for entry in logs] == ["severa.api_key_reloaded"]
    assert NEW not in str(logs)
    assert OLD not in str(logs)
