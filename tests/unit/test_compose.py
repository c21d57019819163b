"""``docker-compose.yml``, read as compose reads it: does the laptop stack say what the code accepts?

No Docker engine: the file is YAML, and what can go wrong in it is silent at run time. The
settings model ignores variables it does not know (``extra="ignore"``), so a misspelt
``SEVERA_CONNECTOR_*`` name would simply not be applied; a fake started with keys other than the
connector's would refuse every request; a command that is not one of ours would only fail in the
container. Each of those is checked here against the code itself.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.core import TyperGroup

from connector.cli import app
from connector.config import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SECRETS_DIR = "/run/secrets/"
#: Services built from our image: their ``command`` is arguments of the ``severa-connector`` entry point.
OURS = sorted(name for name, service in SERVICES.items() if "build" in service)


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


def test_the_connector_environment_is_a_configuration_the_connector_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in environment("connector").items():
        monkeypatch.setenv(name, value)

    # The state directory exists only in the image; everything else is validated as compose has it.
    settings = Settings(state_url="memory://", _env_file=None)

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


def test_the_connector_runs_every_flow_so_the_accounting_flows_get_their_events() -> None:
    name, *args = command("connector")
    context = cli_command(name).make_context(name, list(args))
    assert context.params["role"].value == "all", "without a poller no invoice or payment event is made"


def test_the_fake_severa_accepts_the_key_the_connector_reads() -> None:
    assert environment("fake-severa")["FAKE_SEVERA_API_KEY"] == secret_value(
        "connector", "SEVERA_CONNECTOR_SEVERA__API_KEY_FILE"
    )


def test_the_fake_netvisor_accepts_the_identifiers_and_keys_the_connector_signs_with() -> None:
    fake, connector = environment("fake-netvisor"), environment("connector")
    prefix = f"{ENV_PREFIX}NETVISOR{ENV_NESTED_DELIMITER}"
    for what in ("CUSTOMER_ID", "PARTNER_ID", "ORGANISATION_ID"):
        assert fake[f"FAKE_NETVISOR_{what}"] == connector[prefix + what], what
    for what in ("CUSTOMER_KEY", "PARTNER_KEY"):
        assert fake[f"FAKE_NETVISOR_{what}"] == secret_value("connector", f"{prefix}{what}_FILE"), what


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        pytest.param("fake-severa", "SEVERA_CONNECTOR_SEVERA__URL", id="Severa"),
        pytest.param("fake-netvisor", "SEVERA_CONNECTOR_NETVISOR__BASE_URL", id="Netvisor"),
    ],
)
def test_the_connector_reaches_each_fake_by_its_service_name_and_port(service: str, variable: str) -> None:
    url = urlsplit(environment("connector")[variable])
    args = command(service)
    assert url.hostname == service
    assert str(url.port) == args[args.index("--port") + 1]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert service in SERVICES["connector"]["depends_on"]
