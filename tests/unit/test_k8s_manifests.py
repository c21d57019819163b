"""The Kubernetes base: the consumer and poller Deployments side by side, read as kustomize reads them.

No cluster and no kustomize binary: the files are YAML, and what matters here is what they say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import PollerSettings

BASE = Path(__file__).resolve().parents[2] / "k8s" / "base"
NAME = "severa-connector"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    (doc,) = documents(BASE / "kustomization.yaml")
    return doc


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for name in kustomization["resources"]:
        for doc in documents(BASE / name):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def deployment(resources: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    return resources[("Deployment", name)]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any]
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return only


def test_every_manifest_of_the_base_is_in_the_kustomization(kustomization: dict[str, Any]) -> None:
    files = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_every_resource_is_named_for_the_connector(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert all(name == NAME or name.startswith(f"{NAME}-") for _, name in resources)


@pytest.mark.parametrize(
    ("name", "role"),
    [
        pytest.param(NAME, "consumer", id="the consumer deployment runs the consuming flows"),
        pytest.param(f"{NAME}-poller", "poller", id="the poller deployment runs the change poller"),
    ],
)
def test_each_deployment_runs_its_role_and_selects_only_its_own_pods(
    resources: dict[tuple[str, str], dict[str, Any]], name: str, role: str
) -> None:
    doc = deployment(resources, name)
    assert container(doc)["args"] == ["run", "--role", role]
    selector = doc["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/component": role}
    assert doc["spec"]["template"]["metadata"]["labels"] == selector


def test_one_poller_replaced_by_stopping_it_first(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    spec = deployment(resources, f"{NAME}-poller")["spec"]
    assert spec["replicas"] == 1
    strategy = spec["strategy"]
    assert strategy["type"] == "Recreate" or strategy["rollingUpdate"]["maxSurge"] == 0


def test_the_poller_names_its_lease_after_its_pod_and_shares_the_consumers_state_store(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    poller, consumer = (
        container(deployment(resources, f"{NAME}-poller")),
        container(deployment(resources, NAME)),
    )
    env = {item["name"]: item for item in poller["env"]}
    assert env["SEVERA_CONNECTOR_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    consumer_env = {item["name"]: item for item in consumer["env"]}
    for shared in ("SEVERA_CONNECTOR_STATE_URL", "SEVERA_CONNECTOR_RABBITMQ__URL"):
        assert env[shared] == consumer_env[shared]
    configmaps = [ref["configMapRef"]["name"] for ref in poller["envFrom"]]
    assert configmaps == [NAME, f"{NAME}-poller"]
    assert ("ConfigMap", f"{NAME}-poller") in resources


def test_the_disruption_budget_keeps_a_consumer_and_leaves_the_single_poller_free_to_move(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pdb = resources[("PodDisruptionBudget", NAME)]
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/component": "consumer"}


def test_the_poller_settings_are_poller_settings_the_connector_accepts(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    data = resources[("ConfigMap", f"{NAME}-poller")]["data"]
    prefix = "SEVERA_CONNECTOR_POLLER__"
    assert all(key.startswith(prefix) for key in data)
    settings = PollerSettings.model_validate(
        {key.removeprefix(prefix).lower(): value for key, value in data.items()}
    )
    assert settings.model_fields_set == {key.removeprefix(prefix).lower() for key in data}
