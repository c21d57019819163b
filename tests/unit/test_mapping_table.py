"""The mapping table file: loaded at start, re-read when ops correct it, bad edits refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import ConfigError, UnknownReference
from connector.flows.work_hours import parse_event
from connector.mapping.references import ReferenceResolver
from connector.mapping.table import MappingTable, MappingTableFile, load_mapping_table
from tests.factories import WORK_TYPE, event_json, severa


def test_no_file_means_the_identity_table() -> None:
    table = load_mapping_table(None)
    assert table.user("JDOE") == "JDOE"
    assert table.case(7) == 7


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("table.yaml", "users: {a: B}\nwork_types: {dev: DEV}\n", id="YAML"),
        pytest.param("table.json", '{"users": {"a": "B"}, "work_types": {"dev": "DEV"}}', id="JSON"),
    ],
)
def test_yaml_and_json_files_are_read(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert load_mapping_table(path) == MappingTable(users={"a": "B"}, work_types={"dev": "DEV"})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("usres: {a: B}\n", "usres", id="a misspelt section is named"),
        pytest.param("cases: {'77': not-a-number}\n", "cases", id="case numbers must be numbers"),
        pytest.param("users: [unclosed\n", "invalid mapping table", id="broken YAML"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_problem(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "table.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says):
        load_mapping_table(path)


def test_a_corrected_file_is_picked_up_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "table.yaml"
    path.write_text("work_types: {dev: NOPE}\n")
    watched = MappingTableFile(path, reload_seconds=0)
    assert watched.current().work_type("dev") == "NOPE"
    path.write_text("work_types: {dev: DEV, qa: QA}\n")
    assert watched.current().work_type("dev") == "DEV"
    assert watched.generation == 1


def test_a_broken_edit_keeps_the_last_good_table(tmp_path: Path) -> None:
    path = tmp_path / "table.yaml"
    path.write_text("work_types: {dev: DEV}\n")
    watched = MappingTableFile(path, reload_seconds=0)
    path.write_text("work_types: [this is: broken\n")
    assert watched.current().work_type("dev") == "DEV"
    assert watched.generation == 0


async def test_the_resolver_forgets_its_cache_when_the_table_changes(tmp_path: Path) -> None:
    path = tmp_path / "table.yaml"
    path.write_text("work_types: {dev: NOPE}\n")
    resolver = ReferenceResolver(severa(), MappingTableFile(path, reload_seconds=0))
    with pytest.raises(UnknownReference, match="'NOPE' \\(mapped from 'dev'\\)"):
        await resolver.resolve(parse_event(event_json(work_type_code="dev")))
    path.write_text("work_types: {dev: DEV}\n")
    refs = await resolver.resolve(parse_event(event_json(work_type_code="dev")))
    assert refs.work_type == WORK_TYPE
