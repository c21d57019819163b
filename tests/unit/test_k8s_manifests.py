"""The Kubernetes manifests as a cluster would get them: every overlay, and every component, rendered
by ``kubectl kustomize``; validated offline against the Kubernetes API schemas (strict: an unknown
field fails) and the custom resources against models generated from their CRDs; and the properties
operations rely on (docs/kubernetes.md) checked on what was rendered, not on the source files.

kubectl is the pinned one of ``scripts/bootstrap.sh`` (``ensure_kubectl``, into ``.cache/bin``),
installed from here when missing; ``$KUBECTL`` names another. The CRD models (pydantic models
generated from the KEDA and Prometheus Operator CRDs) are pinned wheels, hash-checked, installed
into ``.cache/crd-models`` and imported from there by this module alone: the package also registers
a pytest plugin, which the rest of the suite is better without.
"""

from __future__ import annotations

import base64
import copy
import importlib
import ipaddress
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from adapters.netvisor.config import NetvisorClientConfig
from connector.config import DlqSettings, HttpSettings, Settings
from connector.settings_doc import collect_sections
from connector.topology import Names

pytestmark = pytest.mark.slow  # a dozen renders, schema validation, the CRD models' import

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DOCS = REPO / "docs" / "kubernetes.md"
NAME = "severa-connector"
NAMESPACE = "severa-connector"

#: The oldest Kubernetes the manifests support (unhealthyPodEvictionPolicy is GA from 1.31) and the
#: newest the validator knows.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())

COMPONENTS = (
    "console",
    "dlq-tools",
    "external-secret",
    "keda",
    "keda-accounting",
    "netvisor",
    "servicemonitor",
)
#: Every component at once, in an order that works (keda-accounting extends keda's ScaledObject).
ALL_COMPONENTS = ("external-secret", "servicemonitor", "netvisor", "keda", "keda-accounting")

#: The keys of the Secret severa-connector (docs/kubernetes.md): always, and with the Netvisor flows.
SECRET_KEYS = {"api-key", "rabbitmq-url", "state-url"}
NETVISOR_SECRET_KEYS = {"netvisor-customer-key", "netvisor-partner-key"}
SECRET_MOUNT = "/var/run/secrets/severa-connector"

#: What an overlay with the netvisor component must say about the Netvisor company.
NETVISOR_COMPANY = {
    "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_ID": "customer",
    "SEVERA_CONNECTOR_NETVISOR__PARTNER_ID": "partner",
    "SEVERA_CONNECTOR_NETVISOR__ORGANISATION_ID": "1234567-8",
}

#: Models generated from the CRDs (cloudcoil's), pinned with their wheels' hashes.
CRD_MODEL_WHEELS = {
    "cloudcoil==0.6.0": "91793dea2e86ad292af143c5d335ce2e5d27dfbe66fd4b945c2f069224cf7698",
    "cloudcoil-models-keda==2.16.1.0": "9ec4a118def872b68216d9057ef386701b32fcb0ec2173f49c6214d309176b46",
    "cloudcoil-models-prometheus-operator==0.80.1.0": (
        "a139a60cc0114caace847a34275d7a7cd899ec2dad4120504d8e1cf6a8de0270"
    ),
}
CRD_MODELS_DIR = REPO / ".cache" / "crd-models"

#: Custom resources: the model generated from the CRD that validates them, or why none can here.
CRD_MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1",
        "TriggerAuthentication",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
}
NO_OFFLINE_SCHEMA = {
    ("external-secrets.io/v1", "ExternalSecret"): (
        "no Python package ships the External Secrets Operator's CRD schema or a model made from it "
        "(the CRD models used here have none); "
        "test_the_external_secret_fills_the_secret_the_pods_read checks its fields instead"
    ),
}

#: What the connector's pods may reach, per overlay: (port, protocol).
EGRESS = {(53, "UDP"), (53, "TCP"), (5672, "TCP"), (5432, "TCP"), (443, "TCP")}
DEV_EGRESS = EGRESS | {(8081, "TCP"), (8090, "TCP")}  # the fakes

PRIVATE_NETWORKS = [
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
]

#: Pod Security Standards, restricted: the only volume types allowed.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}

Doc = dict[str, Any]


# -- rendering ---------------------------------------------------------------------------------


def install_kubectl() -> None:
    env = {**os.environ, "KUBECTL_PIP_PYTHON": sys.executable}
    subprocess.run(["bash", "-c", ". scripts/bootstrap.sh && ensure_kubectl"], cwd=REPO, env=env, check=False)


@pytest.fixture(scope="session")
def kubectl() -> str:
    explicit = os.environ.get("KUBECTL")
    if explicit:
        return explicit
    cached = REPO / ".cache" / "bin" / "kubectl"
    install_kubectl()  # at once when the pinned version is there already
    if cached.exists():
        return str(cached)
    on_path = shutil.which("kubectl")
    if on_path is None:
        pytest.fail("no kubectl: scripts/bootstrap.sh ensure_kubectl could not install it; set $KUBECTL")
    return on_path


def render(kubectl: str, directory: Path) -> list[Doc]:
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def overlay(
    directory: Path,
    *,
    resources: tuple[Path, ...],
    components: tuple[str, ...] = (),
    settings: dict[str, str] | None = None,
) -> Path:
    """A kustomization in ``directory`` on top of ``resources`` (kustomize wants relative paths)."""
    directory.mkdir(parents=True, exist_ok=True)
    kustomization: Doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": [os.path.relpath(path, directory) for path in resources],
        "components": [os.path.relpath(K8S / "components" / name, directory) for name in components],
    }
    if settings:
        kustomization["configMapGenerator"] = [
            {"name": NAME, "behavior": "merge", "literals": [f"{k}={v}" for k, v in settings.items()]}
        ]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def rendered(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    """base, dev, prod, and prod with every optional component (the shipped ones are in dev/prod)."""
    every = overlay(
        tmp_path_factory.mktemp("every-component"),
        resources=(K8S / "overlays" / "prod",),
        components=ALL_COMPONENTS,
        settings={"SEVERA_CONNECTOR_RABBITMQ__PREFIX": "acme.", **NETVISOR_COMPANY},
    )
    return {
        "base": render(kubectl, K8S / "base"),
        "dev": render(kubectl, K8S / "overlays" / "dev"),
        "prod": render(kubectl, K8S / "overlays" / "prod"),
        "prod+components": render(kubectl, every),
    }


RENDERS = ("base", "dev", "prod", "prod+components")


# -- reading what was rendered ------------------------------------------------------------------


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = find(docs, kind, name)
    return doc


def pod_templates(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod template) for every workload that makes pods."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield doc, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]


def containers(pod: Doc) -> list[Doc]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_connector(container: Doc) -> bool:
    """The connector's own image (the production one: the fakes run from the -dev image)."""
    image = container["image"].split("@")[0].rsplit(":", 1)[0]
    return image.endswith("/severa-connector") or image == "severa-connector"


def connector_pods(docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    """The connector's pods (consumers, poller, DLQ tools): its image, except the console's."""
    return [
        (w, pod)
        for w, pod in pod_templates(docs)
        if any(is_connector(c) for c in containers(pod)) and not is_console(pod)
    ]


def is_console(pod: Doc) -> bool:
    return labels_of(pod).get("app.kubernetes.io/component") == "console"


def console_pods(docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    return [(w, pod) for w, pod in pod_templates(docs) if is_console(pod)]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels only: the manifests use nothing else) against a pod's labels."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def labels_of(pod: Doc) -> dict[str, str]:
    labels: dict[str, str] = pod["metadata"].get("labels", {})
    return labels


def configmaps(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in find(docs, "ConfigMap")}


# -- the renders and their schemas --------------------------------------------------------------


@pytest.mark.parametrize("name", RENDERS)
def test_every_overlay_renders_into_the_connectors_namespace(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    docs = rendered[name]
    assert docs
    for doc in docs:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, (doc["kind"], doc["metadata"]["name"])


@pytest.mark.parametrize("name", RENDERS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_validates_strictly_against_the_kubernetes_schemas(
    rendered: dict[str, list[Doc]], name: str, version: str
) -> None:
    errors = []
    for doc in rendered[name]:
        kind = (doc["apiVersion"], doc["kind"])
        if kind in CRD_MODELS or kind in NO_OFFLINE_SCHEMA:
            continue  # a custom resource: test_custom_resources_validate_against_their_crds
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_the_schema_validation_is_strict(rendered: dict[str, list[Doc]]) -> None:
    """The check above would catch a misspelt field, not only a wrong type."""
    deployment = copy.deepcopy(one(rendered["prod"], "Deployment", NAME))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.fixture(scope="session")
def crd_models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any] | str:
    """The CRD models by kind, or why they cannot be had (then those kinds go unchecked, said so)."""
    pins = "".join(f"{pin} --hash=sha256:{digest}\n" for pin, digest in sorted(CRD_MODEL_WHEELS.items()))
    stamp = CRD_MODELS_DIR / ".installed"
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != pins:
        shutil.rmtree(CRD_MODELS_DIR, ignore_errors=True)
        requirements = tmp_path_factory.mktemp("crd-models") / "requirements.txt"
        requirements.write_text(pins, encoding="utf-8")
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                *("--no-deps", "--require-hashes", "--only-binary=:all:", "--target", str(CRD_MODELS_DIR)),
                *("-r", str(requirements)),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode != 0:
            last = (done.stderr.strip() or "pip failed").splitlines()[-1]
            return f"the CRD models could not be installed: {last}"
        stamp.write_text(pins, encoding="utf-8")
    sys.path.insert(0, str(CRD_MODELS_DIR))
    try:
        return {
            kind: getattr(importlib.import_module(module), name)
            for kind, (module, name) in CRD_MODELS.items()
        }
    finally:
        sys.path.remove(str(CRD_MODELS_DIR))


def round_trip(model: Any, doc: Doc) -> Doc:
    dumped: Doc = model.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)
    return dumped


def test_custom_resources_validate_against_their_crds(
    rendered: dict[str, list[Doc]], crd_models: dict[tuple[str, str], Any] | str
) -> None:
    """Validated by the models generated from the KEDA and Prometheus Operator CRDs; a model drops
    what its CRD does not know, so a document that does not come back whole had an unknown field.
    A kind with no CRD schema available offline is named in NO_OFFLINE_SCHEMA with the reason."""
    seen = set()
    for name in RENDERS:
        for doc in rendered[name]:
            kind = (doc["apiVersion"], doc["kind"])
            if kind in NO_OFFLINE_SCHEMA or kind in CRD_MODELS:
                seen.add(kind)
            if kind in CRD_MODELS and not isinstance(crd_models, str):
                assert round_trip(crd_models[kind], doc) == doc, kind
    # Every custom kind rendered is one this test knows how to check, or knows why it cannot.
    assert seen == set(CRD_MODELS) | set(NO_OFFLINE_SCHEMA)
    for kind, reason in NO_OFFLINE_SCHEMA.items():
        warnings.warn(f"{kind[1]} not validated against a schema: {reason}", stacklevel=1)
    if isinstance(crd_models, str):
        warnings.warn(f"{', '.join(k for _, k in CRD_MODELS)} not validated: {crd_models}", stacklevel=1)
        return
    bogus = copy.deepcopy(one(rendered["prod+components"], "ScaledObject", NAME))
    bogus["spec"]["minReplicas"] = 2  # HPA's spelling, not KEDA's: the check would see it
    assert round_trip(crd_models[("keda.sh/v1alpha1", "ScaledObject")], bogus) != bogus


def test_every_file_and_component_is_used(rendered: dict[str, list[Doc]]) -> None:
    """No manifest lies unused beside a kustomization, and every component is rendered here."""
    assert {p.name for p in (K8S / "components").iterdir()} == set(COMPONENTS)
    dev = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text(encoding="utf-8"))
    prod = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text(encoding="utf-8"))
    shipped = {Path(c).name for c in dev.get("components", []) + prod.get("components", [])}
    assert shipped | set(ALL_COMPONENTS) == set(COMPONENTS)
    for kustomization in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        used = set(doc.get("resources", []))
        used |= {p["path"] for p in doc.get("patches", []) if "path" in p}
        for generator in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
            used |= set(generator.get("envs", [])) | set(generator.get("files", []))
        here = kustomization.parent
        files = {str(p.relative_to(here)) for p in here.rglob("*") if p.is_file()} - {"kustomization.yaml"}
        assert files <= used, f"{here}: unused {sorted(files - used)}"


# -- secrets --------------------------------------------------------------------------------------


def test_the_base_holds_no_secret_and_prod_expects_an_existing_one(rendered: dict[str, list[Doc]]) -> None:
    for name in ("base", "prod"):
        assert not find(rendered[name], "Secret"), name
    for name in RENDERS:
        for workload, pod in connector_pods(rendered[name]):
            secret_names = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
            for container in containers(pod):
                secret_names |= {
                    item["valueFrom"]["secretKeyRef"]["name"]
                    for item in container.get("env", [])
                    if "secretKeyRef" in item.get("valueFrom", {})
                }
            # A fixed name (no hash suffix): the Secret is created outside kustomize in production.
            assert secret_names == {NAME}, (name, workload["metadata"]["name"])


def test_the_dev_secret_has_every_key_the_pods_read(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["dev"]
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in find(docs, "Secret")}
    assert secrets[NAME] == SECRET_KEYS | NETVISOR_SECRET_KEYS
    for workload, pod in pod_templates(docs):
        for container in containers(pod):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in secrets[ref["name"]], (workload["metadata"]["name"], ref)


def test_secrets_are_mounted_as_whole_volumes_never_by_subpath(rendered: dict[str, list[Doc]]) -> None:
    """A subPath mount is a copy: a rotated key would never reach it. The key files the settings
    name are files of that volume, so the connector re-reads them when the Secret changes."""
    for name in RENDERS:
        data = configmaps(rendered[name])
        for workload, pod in pod_templates(rendered[name]):
            secret_volumes = {v["name"]: v["secret"] for v in pod["spec"].get("volumes", []) if "secret" in v}
            for volume in secret_volumes.values():
                assert "items" not in volume  # every key, present or added later
            for container in containers(pod):
                mounts = container.get("volumeMounts", [])
                assert not [m for m in mounts if "subPath" in m or "subPathExpr" in m], workload
                if not is_connector(container) or is_console(pod):
                    continue  # the console reads no key file (its token: the dev overlay's own)
                (secret_mount,) = [m for m in mounts if m["name"] in secret_volumes]
                assert secret_mount["mountPath"] == SECRET_MOUNT
                assert secret_mount["readOnly"] is True
                env = {
                    k: v
                    for ref in container.get("envFrom", [])
                    for k, v in data[ref["configMapRef"]["name"]].items()
                }
                key_files = {k: v for k, v in env.items() if k.endswith("_KEY_FILE")}
                assert "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE" in key_files
                for path in key_files.values():
                    assert Path(path).parent == Path(SECRET_MOUNT)
                    assert Path(path).name in SECRET_KEYS | NETVISOR_SECRET_KEYS
                literal = {item["name"] for item in container.get("env", [])} | set(env)
                assert (
                    not {"SEVERA_CONNECTOR_SEVERA__API_KEY", "SEVERA_CONNECTOR_NETVISOR__CUSTOMER_KEY"}
                    & literal
                )


def test_the_external_secret_fills_the_secret_the_pods_read(rendered: dict[str, list[Doc]]) -> None:
    external = one(rendered["prod+components"], "ExternalSecret", NAME)
    assert external["spec"]["target"]["name"] == NAME
    assert {item["secretKey"] for item in external["spec"]["data"]} == SECRET_KEYS | NETVISOR_SECRET_KEYS
    assert external["spec"]["secretStoreRef"]["kind"] in ("SecretStore", "ClusterSecretStore")
    assert all(item["remoteRef"]["key"] for item in external["spec"]["data"])


def test_the_documentation_names_every_secret_key() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for key in SECRET_KEYS | NETVISOR_SECRET_KEYS:
        assert f"`{key}`" in text, key


# -- workloads ------------------------------------------------------------------------------------


def test_prod_runs_no_fake(rendered: dict[str, list[Doc]]) -> None:
    for name in ("base", "prod", "prod+components"):
        docs = rendered[name]
        assert not [d for d in docs if "fake" in d["metadata"]["name"]], name
        for workload, pod in pod_templates(docs):
            for container in containers(pod):
                assert is_connector(container), (name, workload["metadata"]["name"], container["image"])
                assert not container.get("args", [""])[0].startswith("fake-")
                assert not [e for e in container.get("env", []) if e["name"].startswith("FAKE_")]
        assert not any("fake" in value for data in configmaps(docs).values() for value in data.values()), name
    # …while dev has them, the connector pointed at them.
    dev = rendered["dev"]
    commands = {c.get("args", [""])[0] for _, pod in pod_templates(dev) for c in containers(pod)}
    assert {"fake-severa", "fake-netvisor"} <= commands


@pytest.mark.parametrize("name", RENDERS)
def test_each_role_has_its_own_deployment(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    consumer, poller = one(docs, "Deployment", NAME), one(docs, "Deployment", f"{NAME}-poller")
    for deployment, role in ((consumer, "consumer"), (poller, "poller")):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["run", "--role", role]
        selector = deployment["spec"]["selector"]
        assert selector["matchLabels"] == {
            "app.kubernetes.io/name": NAME,
            "app.kubernetes.io/component": role,
        }
        assert selects(selector, labels_of(deployment["spec"]["template"]))
    other = labels_of(poller["spec"]["template"])
    assert not selects(consumer["spec"]["selector"], other)
    # Consumers: at least two (KEDA, where used, owns the count: minReplicaCount).
    if find(docs, "ScaledObject"):
        assert "replicas" not in consumer["spec"]
        assert one(docs, "ScaledObject", NAME)["spec"]["minReplicaCount"] >= 2
    else:
        assert consumer["spec"]["replicas"] >= 2
    # The poller: one, stopped before its successor starts (the lease makes even two safe).
    assert poller["spec"]["replicas"] == 1
    assert poller["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"]: e for e in poller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SEVERA_CONNECTOR_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_poller_comment_keeps_its_reasoning() -> None:
    text = (K8S / "base" / "deployment-poller.yaml").read_text(encoding="utf-8")
    for words in ("Recreate", "lease", "fencing token", "PostgreSQL"):
        assert words in text


@pytest.mark.parametrize("name", RENDERS)
def test_the_disruption_budget_protects_the_consumers_and_lets_paused_ones_go(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    docs = rendered[name]
    (pdb,) = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    selected = [w for w, pod in pod_templates(docs) if selects(pdb["spec"]["selector"], labels_of(pod))]
    assert [w["metadata"]["name"] for w in selected] == [NAME]
    assert one(docs, "Deployment", NAME) in selected


@pytest.mark.parametrize("name", RENDERS)
def test_the_consumers_spread_over_nodes_and_zones(rendered: dict[str, list[Doc]], name: str) -> None:
    pod = one(rendered[name], "Deployment", NAME)["spec"]["template"]
    constraints = pod["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    for constraint in constraints:
        assert constraint["maxSkew"] == 1
        assert selects(constraint["labelSelector"], labels_of(pod))
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]


@pytest.mark.parametrize("name", RENDERS)
def test_every_pod_meets_the_restricted_pod_security_standard(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    docs = rendered[name]
    (namespace,) = find(docs, "Namespace")
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    templates = list(pod_templates(docs))
    assert templates
    for workload, pod in templates:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod["spec"]
        pod_security = spec.get("securityContext", {})
        assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in spec.items() if v}, where
        assert spec.get("automountServiceAccountToken") is False, where
        assert spec.get("enableServiceLinks") is False, where
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (where, volume)
        assert "sysctls" not in pod_security, where
        for container in containers(pod):
            context = container.get("securityContext", {})
            run_as_non_root = context.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            assert run_as_non_root is True, where
            assert context.get("runAsUser", pod_security.get("runAsUser")) != 0, where
            seccomp = context.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged", False) is False, where
            assert "ALL" in context["capabilities"]["drop"], where
            assert set(context["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert not [p for p in container.get("ports", []) if "hostPort" in p], where
            mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounted, where  # writable scratch space on a read-only root
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where


@pytest.mark.parametrize("name", RENDERS)
def test_probes_tell_alive_from_ready_and_wait_out_the_start_up(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    """Liveness is /healthz (a dead background task), readiness /readyz (also "paused"). The
    heartbeat beats while the start-up retries the broker (tests/integration/
    test_consumer_lifecycle.py), so liveness needs no delay that outwaits it."""
    deployments = [w for w, _ in connector_pods(rendered[name]) if w["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        (port,) = container["ports"]
        assert port == {"name": "http", "containerPort": HttpSettings().port, "protocol": "TCP"}
        startup, liveness, readiness = (
            container[p] for p in ("startupProbe", "livenessProbe", "readinessProbe")
        )
        assert startup["httpGet"] == liveness["httpGet"] == {"path": "/healthz", "port": "http"}
        assert readiness["httpGet"] == {"path": "/readyz", "port": "http"}
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
        assert "initialDelaySeconds" not in liveness
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        drain = float(
            configmaps(rendered[name])[container["envFrom"][0]["configMapRef"]["name"]][
                "SEVERA_CONNECTOR_DRAIN_SECONDS"
            ]
        )
        assert grace > drain


# -- the settings the pods get ------------------------------------------------------------------


def known_variables() -> set[str]:
    names = {row.variable for section in collect_sections() for row in section.rows}
    names |= {f"SEVERA_CONNECTOR_NETVISOR__{field.upper()}" for field in NetvisorClientConfig.model_fields}
    return names


def pod_environment(docs: list[Doc], container: Doc, secret_dir: Path) -> dict[str, str]:
    """The container's SEVERA_CONNECTOR_* environment, its secret files written below secret_dir."""
    secrets = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
        for d in find(docs, "Secret")
    }
    placeholder = {  # production: the Secret exists only in the cluster
        "api-key": "a-key",
        "netvisor-customer-key": "a-key",
        "netvisor-partner-key": "a-key",
        "rabbitmq-url": "amqp://connector:secret@rabbitmq:5672/%2F",
        "state-url": "postgresql://connector:secret@postgres:5432/connector",
    }
    values = secrets.get(NAME, placeholder)
    data = configmaps(docs)
    env = {k: v for ref in container.get("envFrom", []) for k, v in data[ref["configMapRef"]["name"]].items()}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = values[item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = "severa-connector-0"
    mounted = secret_dir / SECRET_MOUNT.lstrip("/")
    mounted.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        (mounted / key).write_text(value, encoding="utf-8")
    return {k: v.replace(SECRET_MOUNT, str(mounted)) if k.endswith("_FILE") else v for k, v in env.items()}


@pytest.mark.parametrize("name", RENDERS)
def test_every_setting_is_one_the_connector_knows_and_accepts(
    rendered: dict[str, list[Doc]], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every variable is a real setting (a misspelt one would be ignored silently), and each pod's
    environment, as rendered, is accepted by the settings model of the command it runs."""
    known = known_variables()
    for workload, pod in connector_pods(rendered[name]):
        (container,) = pod["spec"]["containers"]
        env = pod_environment(rendered[name], container, tmp_path)
        unknown = {k for k in env if k.startswith("SEVERA_CONNECTOR_")} - known
        assert not unknown, (workload["metadata"]["name"], unknown)
        for variable in list(os.environ):
            if variable.startswith("SEVERA_CONNECTOR_"):
                monkeypatch.delenv(variable)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        command = container["args"][0]
        if command == "run":
            monkeypatch.setenv("SEVERA_CONNECTOR_ROLE", container["args"][2])
            settings: Settings | DlqSettings = Settings(_env_file=None)  # type: ignore[call-arg]
        else:
            assert command == "dlq"
            settings = DlqSettings(_env_file=None)  # type: ignore[call-arg]
        assert settings.state_url.startswith("postgresql://")  # shared: ledger, lease, dead letters
        netvisor = name in ("dev", "prod+components")  # with the netvisor component
        assert settings.accounting.system == ("netvisor" if netvisor else "none")
        if netvisor:
            assert settings.netvisor is not None
            assert settings.netvisor.customer_key_file is not None
            assert settings.netvisor.customer_key_file.is_file()


def test_the_dev_connector_talks_to_the_fakes_of_the_dev_overlay(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["dev"]
    data = configmaps(docs)
    (settings,) = [
        d for n, d in data.items() if n.startswith(f"{NAME}-") and "SEVERA_CONNECTOR_SEVERA__URL" in d
    ]
    services = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in find(docs, "Service")}
    assert settings["SEVERA_CONNECTOR_SEVERA__URL"].startswith(
        f"http://fake-severa:{services['fake-severa']}/"
    )
    assert (
        settings["SEVERA_CONNECTOR_NETVISOR__BASE_URL"]
        == f"http://fake-netvisor:{services['fake-netvisor']}/"
    )
    fake = one(docs, "Deployment", "fake-netvisor")["spec"]["template"]["spec"]["containers"][0]
    fake_env = {e["name"]: e.get("value") for e in fake["env"]}
    assert fake_env["FAKE_NETVISOR_CUSTOMER_ID"] == settings["SEVERA_CONNECTOR_NETVISOR__CUSTOMER_ID"]
    assert fake_env["FAKE_NETVISOR_PARTNER_ID"] == settings["SEVERA_CONNECTOR_NETVISOR__PARTNER_ID"]
    assert fake_env["FAKE_NETVISOR_ORGANISATION_ID"] == settings["SEVERA_CONNECTOR_NETVISOR__ORGANISATION_ID"]


# -- scraping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RENDERS)
def test_the_service_publishes_not_ready_pods_for_scraping(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    service = one(docs, "Service", NAME)
    assert service["spec"]["publishNotReadyAddresses"] is True  # a paused pod still has metrics
    selector = {"matchLabels": service["spec"]["selector"]}
    scraped = {w["metadata"]["name"] for w, pod in pod_templates(docs) if selects(selector, labels_of(pod))}
    assert scraped == {NAME, f"{NAME}-poller"}  # not the DLQ tools' Jobs, which serve nothing
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_the_service_monitor_scrapes_the_service(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["prod+components"]
    monitor, service = one(docs, "ServiceMonitor", NAME), one(docs, "Service", NAME)
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    others = [s for s in find(docs, "Service") if s is not service]
    assert not [s for s in others if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


# -- KEDA -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "acme.", "team-a_"])
def test_keda_scales_the_consumers_on_the_queues_of_the_configured_prefix(
    kubectl: str, tmp_path: Path, prefix: str
) -> None:
    """The prefix is set once (the ConfigMap); the triggers' queue names follow it."""
    directory = overlay(
        tmp_path / "keda",
        resources=(K8S / "overlays" / "prod",),
        components=("netvisor", "keda", "keda-accounting"),
        settings={"SEVERA_CONNECTOR_RABBITMQ__PREFIX": prefix, **NETVISOR_COMPANY},
    )
    docs = render(kubectl, directory)
    scaled = one(docs, "ScaledObject", NAME)
    names = Names(prefix)
    queues = {t["name"]: t["metadata"]["queueName"] for t in scaled["spec"]["triggers"]}
    assert queues == {
        "workhours": names.workhours_queue,
        "accounting-customers": names.accounting_customers_queue,
        "accounting-invoices": names.accounting_invoices_queue,
        "severa-invoice-updates": names.severa_invoice_updates_queue,
    }
    assert scaled["spec"]["scaleTargetRef"]["name"] == NAME
    authentication = one(docs, "TriggerAuthentication", f"{NAME}-rabbitmq")
    assert authentication["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": NAME, "key": "rabbitmq-url"}
    ]
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["authenticationRef"] == {"name": authentication["metadata"]["name"]}
    # Without the accounting component: the work-hours queue alone.
    alone = render(
        kubectl,
        overlay(
            tmp_path / "keda-alone",
            resources=(K8S / "overlays" / "prod",),
            components=("keda",),
            settings={"SEVERA_CONNECTOR_RABBITMQ__PREFIX": prefix},
        ),
    )
    triggers = one(alone, "ScaledObject", NAME)["spec"]["triggers"]
    assert [t["metadata"]["queueName"] for t in triggers] == [names.workhours_queue]


# -- network ------------------------------------------------------------------------------------


def ports(rule: Doc) -> set[tuple[int, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}


@pytest.mark.parametrize("name", RENDERS)
def test_egress_is_limited_to_the_ports_and_peers_the_connector_needs(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    docs = rendered[name]
    policy = one(docs, "NetworkPolicy", NAME)["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    egress = policy["egress"]
    assert set().union(*(ports(rule) for rule in egress)) == (DEV_EGRESS if name == "dev" else EGRESS)
    for rule in egress:
        assert rule.get("to"), rule  # every port to named peers, none to everybody
    by_port = {port: rule for rule in egress for port, _ in ports(rule)}
    (dns,) = by_port[53]["to"]
    assert dns == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    for block in by_port[443]["to"]:  # public HTTPS (Severa, Netvisor), nothing private
        network = ipaddress.ip_network(block["ipBlock"]["cidr"])
        excepted = [ipaddress.ip_network(e) for e in block["ipBlock"]["except"]]
        if network.version == 4:
            assert all(any(private.subnet_of(e) for e in excepted) for private in PRIVATE_NETWORKS)
        else:
            assert ipaddress.ip_network("fc00::/7") in excepted
    for port in (5672, 5432):
        for peer in by_port[port]["to"]:
            assert "ipBlock" in peer or "podSelector" in peer, peer
    # The connector's pods, not the fakes or the dev broker and database.
    selected = {
        w["metadata"]["name"]
        for w, pod in pod_templates(docs)
        if selects(policy["podSelector"], labels_of(pod))
    }
    assert selected == {w["metadata"]["name"] for w, _ in connector_pods(docs)}


@pytest.mark.parametrize("name", RENDERS)
def test_ingress_is_the_metrics_port_from_the_monitoring_namespace_only(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    (rule,) = one(rendered[name], "NetworkPolicy", NAME)["spec"]["ingress"]
    assert ports(rule) == {(8080, "TCP")}
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_in_dev_the_egress_peers_are_the_pods_of_the_overlay(rendered: dict[str, list[Doc]]) -> None:
    """The broker, database and fakes of the dev overlay are the pods the egress rules select, on
    the ports those pods listen on."""
    docs = rendered["dev"]
    egress = one(docs, "NetworkPolicy", NAME)["spec"]["egress"]
    for workload in ("rabbitmq", "postgres", "fake-severa", "fake-netvisor"):
        pod = next(pod for w, pod in pod_templates(docs) if w["metadata"]["name"] == workload)
        listening = {(p["containerPort"], p["protocol"]) for c in containers(pod) for p in c["ports"]}
        allowed = set()
        for rule in egress:
            if any(
                "podSelector" in peer and selects(peer["podSelector"], labels_of(pod)) for peer in rule["to"]
            ):
                allowed |= ports(rule)
        assert allowed, workload
        assert allowed <= listening, (workload, allowed, listening)


def test_prod_names_the_broker_and_database_by_address(rendered: dict[str, list[Doc]]) -> None:
    egress = one(rendered["prod"], "NetworkPolicy", NAME)["spec"]["egress"]
    for rule in egress:
        if ports(rule) & {(5672, "TCP"), (5432, "TCP")}:
            assert [set(peer) for peer in rule["to"]] == [{"ipBlock"}] * len(rule["to"])


# -- the dead-letter tools ----------------------------------------------------------------------


def dlq_options(command: str) -> set[str]:
    from typer.testing import CliRunner

    from connector.cli import app

    result = CliRunner().invoke(app, ["dlq", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return {word.strip(",") for word in result.output.split() if word.startswith("--")}


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_dlq_tools_are_suspended_templates_of_real_commands(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    jobs = {j["metadata"]["name"]: j for j in find(rendered[name], "CronJob")}
    assert set(jobs) == {f"{NAME}-dlq-list", f"{NAME}-dlq-replay"}
    for job in jobs.values():
        assert job["spec"]["suspend"] is True  # run by hand: kubectl create job --from=cronjob/…
        template = job["spec"]["jobTemplate"]["spec"]
        assert template["backoffLimit"] == 0
        assert template["template"]["spec"]["restartPolicy"] == "Never"
        (container,) = template["template"]["spec"]["containers"]
        assert container["args"][0] == "dlq"
        command = container["args"][1]
        options = {a for a in container["args"] if a.startswith("--")}
        assert options <= dlq_options(command), options - dlq_options(command)
    replay = jobs[f"{NAME}-dlq-replay"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "--dry-run" in replay["args"]  # a template that changes nothing until edited


# -- the dead-letter console --------------------------------------------------------------------

CONSOLE = "severa-connector-console"
CONSOLE_PORT = 8095


@pytest.mark.parametrize("name", ["dev", "prod", "prod+components"])
def test_the_console_is_one_deployment_behind_its_own_network_policy(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    """In: the OIDC proxy's pods alone, on the console's port (the trusted user header is only as
    good as that); out: DNS, the broker and the database; nothing else selects the console's pod."""
    docs = rendered[name]
    ((workload, pod),) = console_pods(docs)
    assert workload["kind"] == "Deployment"
    assert workload["spec"]["replicas"] == 1
    (container,) = containers(pod)
    assert is_connector(container)
    assert container["args"][0] == "console"
    # The proxy's header is trusted in prod only (behind the proxy); dev signs in with a token, and a
    # port-forward there must not let a forged header pick the operator.
    trusted = "--trust-user-header=X-Forwarded-User" in container["args"]
    assert trusted == name.startswith("prod")
    assert any(a.startswith("--token-file=") for a in container["args"]) == (name == "dev")
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": CONSOLE_PORT, "protocol": "TCP"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(docs, "Service", CONSOLE)["spec"]
    assert selects({"matchLabels": service["selector"]}, labels_of(pod))
    policy = one(docs, "NetworkPolicy", CONSOLE)["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    selected = {
        w["metadata"]["name"] for w, p in pod_templates(docs) if selects(policy["podSelector"], labels_of(p))
    }
    assert selected == {CONSOLE}
    connector = one(docs, "NetworkPolicy", NAME)["spec"]
    assert not selects(connector["podSelector"], labels_of(pod))
    (ingress,) = policy["ingress"]
    assert ports(ingress) == {(CONSOLE_PORT, "TCP")}
    assert ingress["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "oauth2-proxy"}}}
    ]  # this namespace's proxy only: with any namespace, any pod so labelled could pose as an operator
    egress = policy["egress"]
    assert set().union(*(ports(rule) for rule in egress)) == {
        (53, "UDP"),
        (53, "TCP"),
        (5672, "TCP"),
        (5432, "TCP"),
    }
    by_port = {port: rule for rule in egress for port, _ in ports(rule)}
    if name.startswith("prod"):  # the same addresses as the connector's
        by_connector = {port: rule for rule in connector["egress"] for port, _ in ports(rule)}
        for port in (5672, 5432):
            assert by_port[port]["to"] == by_connector[port]["to"]
            assert all("ipBlock" in peer for peer in by_port[port]["to"])


@pytest.mark.parametrize("name", ["dev", "prod", "prod+components"])
def test_the_console_gets_settings_it_accepts_and_only_the_secrets_it_needs(
    rendered: dict[str, list[Doc]], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered[name]
    ((_, pod),) = console_pods(docs)
    (container,) = containers(pod)
    env = pod_environment(docs, container, tmp_path)
    assert not {k for k in env if k.startswith("SEVERA_CONNECTOR_")} - known_variables()
    for variable in list(os.environ):
        if variable.startswith("SEVERA_CONNECTOR_"):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert DlqSettings(_env_file=None).state_url.startswith("postgresql://")  # type: ignore[call-arg]
    secret_volumes = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    if name == "dev":  # signs in with a development token; production trusts the proxy alone
        assert secret_volumes == {CONSOLE}
        (token,) = [a for a in container["args"] if a.startswith("--token-file=")]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "console-token"]
        assert Path(token.split("=", 1)[1]).parent == Path(mount["mountPath"])
        assert mount["readOnly"]
        secrets = {d["metadata"]["name"]: d for d in find(docs, "Secret")}
        assert len(base64.b64decode(secrets[CONSOLE]["data"]["token"])) >= 16
    else:
        assert not secret_volumes
        assert not [a for a in container["args"] if a.startswith("--token-file")]
