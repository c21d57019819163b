"""The shipped alert rules and Grafana dashboard: well-formed, every query parses, every alert has a runbook.

Rules are checked against the PrometheusRule shape the Prometheus Operator accepts (a JSON schema
of the fields it reads) and every expression is parsed by a PromQL parser (``promql-parser``, the
Rust parser's Python binding); where ``promtool`` is installed, ``promtool check rules`` runs on
the rule groups too. That the metrics they name exist on a running connector's /metrics is
checked in ``tests/integration/test_metrics.py`` with :func:`metric_names` from here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import promql_parser
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "monitoring" / "prometheus-rules.yaml"
DASHBOARD = REPO / "deploy" / "monitoring" / "grafana-dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"

DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}},
        },
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "keep_firing_for": {"type": "string", "pattern": DURATION},
                                        "labels": {
                                            "type": "object",
                                            "required": ["severity"],
                                            "properties": {"severity": {"enum": ["warning", "critical"]}},
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "required": ["summary", "description", "runbook"],
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def load_rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["spec"]["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # the panels of a collapsed row


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(load_dashboard())
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def rule_exprs() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (walks the parsed expression)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            return
        for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, str | int | float):
                walk(child)
        for arg in getattr(node, "args", None) or ():
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


def anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the headings of a Markdown document."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return found


def test_the_rule_file_has_the_prometheus_rule_shape() -> None:
    jsonschema.validate(load_rules(), RULE_SCHEMA)


def test_the_schema_check_refuses_a_rule_without_an_expression() -> None:
    broken = load_rules()
    del broken["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RULE_SCHEMA)


@pytest.mark.parametrize("expr", rule_exprs() + dashboard_exprs())
def test_every_expression_parses(expr: str) -> None:
    assert metric_names(expr), f"names no metric: {expr}"


def test_the_parser_refuses_broken_promql() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("sum by (queue) (rate(connector_messages_total[5m])")


def test_metric_names_are_found_inside_functions_and_binary_operators() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket[5m]))) / on() b "
        '- (c{x="1"} or vector(0))'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b", "c"}


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "SeveraConnectorDLQGrowing",
        "SeveraConnectorCircuitOpen",
        "SeveraConnectorQuotaAbove80Percent",
        "SeveraConnectorPollerCursorStale",
        "SeveraConnectorNoConsumer",
    } <= names
    assert len(names) == len(alert_rules()), "alert names are unique"


def test_every_alert_has_a_runbook_section() -> None:
    sections = anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md"
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in sections, f"docs/operations.md has no section for {rule['alert']}"


def test_promtool_accepts_the_rules_where_it_is_installed(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    plain = tmp_path / "rules.yaml"
    plain.write_text(yaml.safe_dump({"groups": load_rules()["spec"]["groups"]}))
    if promtool is None:
        # Not installed here (Debian's `prometheus` package ships it): the schema and parser checks
        # above stand in. The file promtool would read is still produced and well-formed.
        assert yaml.safe_load(plain.read_text())["groups"]
        return
    result = subprocess.run([promtool, "check", "rules", str(plain)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    panels = list(dashboard_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    assert dashboard["uid"] == "severa-connector"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables, f"{panel['title']!r} uses an undefined ${variable}"
