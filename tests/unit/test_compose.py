"""``docker-compose.yml``, read as compose reads it: does the laptop stack say what the code accepts?

No Docker engine: the file is YAML, and what can go wrong in it is silent at run time. It is first
validated against the Compose Specification's JSON Schema (vendored in ``tests/compose_spec/``), so
a misspelt key or a wrong shape fails here. Then the meaning: the settings model ignores variables
it does not know (``extra="ignore"``), so a misspelt ``SEVERA_CONNECTOR_*`` name would simply not be
applied; a fake started with keys other than the connector's would refuse every request; a command
that is not one of ours would only fail in the container. Each of those is checked here against the
code itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import typer.main
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.core import TyperGroup

from connector.cli import app
from connector.config import ENV_NESTED_DELIMITER, ENV_PREFIX, HttpSettings, Settings
from connector.topology import Names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SECRETS_DIR = "/run/secrets/"
SCHEMA = ROOT / "tests" / "compose_spec" / "compose-spec.json"
#: The vendored schema's hash, as tests/compose_spec/SOURCE.md records it.
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"
#: Services built from our image.
BUILT = sorted(name for name, service in SERVICES.items() if "build" in service)
#: Those whose ``command`` is arguments of the image's ``severa-connector`` entry point.
OURS = sorted(name for name in BUILT if "entrypoint" not in SERVICES[name])
#: The services that run the connector (``run``), as a deployment runs its pods.
RUNS = sorted(name for name in OURS if SERVICES[name].get("command", ["run"])[0] == "run")


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def connector_variables() -> list[tuple[str, str]]:
    return [
        (service, name)
        for service in sorted(SERVICES)
        for name in environment(service)
        if name.startswith(ENV_PREFIX)
    ]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings group an annotation holds (``NetvisorClientConfig | None`` holds one)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def setting_at(variable: str) -> FieldInfo | None:
    """The settings field an environment variable sets, as pydantic-settings resolves it (nested
    groups joined by ``__``, names without case), or ``None`` if it sets nothing."""
    model: type[BaseModel] | None = Settings
    field: FieldInfo | None = None
    for part in variable.removeprefix(ENV_PREFIX).split(ENV_NESTED_DELIMITER):
        if model is None:
            return None
        field = {name.lower(): info for name, info in model.model_fields.items()}.get(part.lower())
        if field is None:
            return None
        model = _model_in(field.annotation)
    return field


def command(service: str) -> list[str]:
    args = SERVICES[service].get("command", ["run"])  # the image's CMD
    assert isinstance(args, list), f"{service}: write the command as a list (exec form)"
    return [str(arg) for arg in args]


def cli_command(name: str) -> Any:
    """The command as typer builds it (a click command: ``make_context`` parses arguments)."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    found = group.commands.get(name)
    assert found is not None, f"severa-connector has no command {name!r}"
    return found


def secret_file(name: str) -> Path:
    return ROOT / str(COMPOSE["secrets"][name]["file"])


def secret_value(service: str, variable: str) -> str:
    """The content of the mounted secret a ``*_FILE`` setting names, as the connector reads it."""
    path = environment(service)[variable]
    assert path.startswith(SECRETS_DIR), f"{variable} should name a file under {SECRETS_DIR}"
    name = path.removeprefix(SECRETS_DIR)
    assert name in SERVICES[service].get("secrets", []), f"{service} does not mount the secret {name}"
    return secret_file(name).read_text(encoding="utf-8").strip()


@pytest.mark.parametrize(
    ("service", "variable"),
    [pytest.param(service, name, id=f"{service} {name}") for service, name in connector_variables()],
)
def test_every_connector_variable_names_a_setting(service: str, variable: str) -> None:
    assert setting_at(variable) is not None, f"{service}: {variable} sets nothing (misspelt?)"


def test_the_file_is_valid_against_the_compose_specification_schema() -> None:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "update tests/compose_spec/SOURCE.md"
    validator = jsonschema.Draft201909Validator(json.loads(raw))
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_the_schema_check_can_fail() -> None:
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_bytes()))
    broken = {**COMPOSE, "services": {**SERVICES, "consumer": {**SERVICES["consumer"], "restrat": "always"}}}
    assert not validator.is_valid(broken)


@pytest.mark.parametrize("service", RUNS)
def test_the_connector_environment_is_a_configuration_the_connector_accepts(
    monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in environment(service).items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    assert settings.state_url.startswith("postgresql://"), "pods share the ledger and the poller's lease"
    assert settings.dlq.ingest is False, "the dlq-ingest service ingests; two ingesting roles race"
    assert settings.accounting.system == "netvisor"
    assert settings.netvisor is not None
    assert settings.netvisor.default_product_code
    assert settings.poller.invoice_status


@pytest.mark.parametrize("service", OURS)
def test_each_service_of_our_image_runs_a_real_command_with_real_options(service: str) -> None:
    name, *args = command(service)
    found = cli_command(name)
    found.make_context(name, list(args))  # raises on an unknown option or a bad value
    options = {
        envvar
        for param in found.params
        for envvar in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }
    for variable in environment(service):
        if not variable.startswith(ENV_PREFIX):
            assert variable in options, f"{service}: {variable} is read by no option of {name}"


def test_every_secret_a_service_mounts_is_declared_with_a_file_that_exists() -> None:
    for service in SERVICES.values():
        for name in service.get("secrets", []):
            assert secret_file(name).is_file(), name


def test_the_roles_are_those_of_a_deployment_consumers_one_poller_and_one_dlq_ingest() -> None:
    roles = {}
    for service in RUNS:
        name, *args = command(service)
        roles[service] = cli_command(name).make_context(name, list(args)).params["role"].value
    assert sorted(roles.values()) == ["consumer", "poller"], roles  # without a poller no invoice event
    ingesting = [service for service in OURS if command(service)[:2] == ["dlq", "ingest"]]
    assert len(ingesting) == 1
    assert "--follow" in command(ingesting[0])


@pytest.mark.parametrize("service", RUNS)
def test_the_fake_severa_accepts_the_key_the_connector_reads(service: str) -> None:
    assert environment("fake-severa")["FAKE_SEVERA_API_KEY"] == secret_value(
        service, "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE"
    )


@pytest.mark.parametrize("service", RUNS)
def test_the_fake_netvisor_accepts_the_identifiers_and_keys_the_connector_signs_with(service: str) -> None:
    fake, connector = environment("fake-netvisor"), environment(service)
    prefix = f"{ENV_PREFIX}NETVISOR{ENV_NESTED_DELIMITER}"
    for what in ("CUSTOMER_ID", "PARTNER_ID", "ORGANISATION_ID"):
        assert fake[f"FAKE_NETVISOR_{what}"] == connector[prefix + what], what
    for what in ("CUSTOMER_KEY", "PARTNER_KEY"):
        assert fake[f"FAKE_NETVISOR_{what}"] == secret_value(service, f"{prefix}{what}_FILE"), what


def test_postgres_is_started_with_the_password_the_connector_connects_with() -> None:
    postgres = environment("postgres")
    name = postgres["POSTGRES_PASSWORD_FILE"].removeprefix(SECRETS_DIR)
    assert name in SERVICES["postgres"]["secrets"]
    password = secret_file(name).read_text(encoding="utf-8").strip()
    for service in [*RUNS, "dlq-ingest", "console"]:
        url = urlsplit(environment(service)["SEVERA_CONNECTOR_STATE_URL"])
        assert (url.hostname, url.username, url.password) == ("postgres", postgres["POSTGRES_USER"], password)
        assert url.path == f"/{postgres['POSTGRES_DB']}", service


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_restarts_and_says_when_it_is_healthy(service: str) -> None:
    spec = SERVICES[service]
    assert spec.get("restart") in {"unless-stopped", "always", "on-failure"}, service
    check = spec.get("healthcheck") or {}
    assert not check.get("disable"), service
    assert check.get("test", [None])[0] == "CMD", f"{service}: a healthcheck in exec form"


@pytest.mark.parametrize("service", sorted(name for name in SERVICES if "image" in SERVICES[name]))
def test_every_image_we_pull_is_pinned_by_digest(service: str) -> None:
    assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", SERVICES[service]["image"]), service


def test_rabbitmq_has_its_management_ui() -> None:
    image = SERVICES["rabbitmq"]["image"]
    assert image.startswith("rabbitmq:3.")
    assert "-management@" in image
    assert "15672:15672" in SERVICES["rabbitmq"]["ports"]


def test_only_the_fakes_run_the_dev_image_and_every_target_exists_in_the_dockerfile() -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    targets = {service: SERVICES[service]["build"]["target"] for service in BUILT}
    assert set(targets.values()) <= stages
    assert {service for service, target in targets.items() if target != "production"} == {
        "fake-severa",
        "fake-netvisor",
    }


@pytest.mark.parametrize(
    "service", sorted(name for name in SERVICES if SERVICES[name].get("depends_on")), ids=str
)
def test_every_dependency_a_service_waits_healthy_for_has_a_healthcheck(service: str) -> None:
    for dependency, condition in SERVICES[service]["depends_on"].items():
        assert dependency in SERVICES, f"{service} waits for {dependency}, which does not exist"
        if condition["condition"] == "service_healthy":
            assert SERVICES[dependency].get("healthcheck"), dependency


def test_the_run_healthcheck_asks_the_health_port_run_serves() -> None:
    port = HttpSettings().port
    for service in RUNS:
        (test,) = [part for part in SERVICES[service]["healthcheck"]["test"] if "/healthz" in part]
        assert f"127.0.0.1:{port}/healthz" in test, service
        assert f"{ENV_PREFIX}HTTP{ENV_NESTED_DELIMITER}PORT" not in environment(service)


def test_the_dlq_ingest_healthcheck_asks_for_the_dlq_the_topology_declares() -> None:
    (script,) = [part for part in SERVICES["dlq-ingest"]["healthcheck"]["test"] if "declare_queue" in part]
    assert f'"{Names(prefix="").workhours_dlq}"' in script
    assert f"{ENV_PREFIX}RABBITMQ{ENV_NESTED_DELIMITER}PREFIX" not in environment("dlq-ingest")


def test_the_results_consumer_is_the_mounted_script_on_the_connector_broker() -> None:
    results = SERVICES["results"]
    host, target = results["volumes"][0].split(":")[:2]
    assert (ROOT / host).is_file()
    assert results["entrypoint"] == ["python", target]
    assert (
        environment("results")["SEVERA_CONNECTOR_RABBITMQ__URL"]
        == environment("consumer")["SEVERA_CONNECTOR_RABBITMQ__URL"]
    )
    assert "results_queue" not in json.dumps(environment("consumer")).lower(), (
        "the production topology keeps no result queue; the consumer binds its own"
    )


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        pytest.param("fake-severa", "SEVERA_CONNECTOR_SEVERA__URL", id="Severa"),
        pytest.param("fake-netvisor", "SEVERA_CONNECTOR_NETVISOR__BASE_URL", id="Netvisor"),
    ],
)
def test_the_connector_reaches_each_fake_by_its_service_name_and_port(service: str, variable: str) -> None:
    url = urlsplit(environment("consumer")[variable])
    assert all(environment(runner)[variable] == environment("consumer")[variable] for runner in RUNS)
    args = command(service)
    assert url.hostname == service
    assert str(url.port) == args[args.index("--port") + 1]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    for runner in RUNS:
        assert service in SERVICES[runner]["depends_on"], runner
