"""The production image holds no fake: checked from the build config, the Dockerfile and the wheel.

There may be no Docker engine (CI has none), so the image is checked through what decides its
content: the Dockerfile installs the runtime lock and then our wheel with ``--no-deps``, and the
wheel's modules are what pyproject's packaging config (and ``build_support/wheel_contents.py``)
let through. The slow test builds that wheel offline, lists it, and runs its CLI without the fakes.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages  # type: ignore[import-untyped]

from build_support.wheel_contents import excluded_modules
from connector.cli import FAKE_MODULES
from connector.config import HttpSettings

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
#: Every module of the fakes and of what is built on them (the brief of the production image).
FAKES = (
    "adapters.severa.fake",
    "adapters.netvisor.fake",
    "adapters.fake_faults",
    "adapters.fake_server",
    "connector.fakes",
    "connector.accounting_fakes",
    "connector.demo",
    "connector.demo_accounting",
)


def is_fake(module: str) -> bool:
    return any(module == fake or module.startswith(f"{fake}.") for fake in FAKES)


def shipped_modules() -> dict[str, Path]:
    """The modules the wheel holds, by the packaging config (packages found, modules dropped)."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    dropped = excluded_modules(ROOT / "pyproject.toml")
    modules: dict[str, Path] = {}
    for package in packages:
        folder = ROOT.joinpath(*package.split("."))
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            if name not in dropped:
                modules[name] = path
    return modules


def stage(name: str) -> str:
    """The text of one stage of the Dockerfile."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.MULTILINE)
    (found,) = [part for part in parts if re.match(rf"FROM \S+ AS {name}\s", part)]
    return found


def test_the_packaging_config_ships_no_fake() -> None:
    modules = shipped_modules()
    assert "connector.cli" in modules
    assert "adapters.severa.client" in modules
    assert [name for name in modules if is_fake(name)] == []


def test_every_module_of_the_fakes_exists_so_the_exclusions_name_real_files() -> None:
    for fake in FAKES:
        path = ROOT.joinpath(*fake.split("."))
        assert path.is_dir() or path.with_suffix(".py").is_file(), fake


def test_the_cli_knows_every_excluded_module_that_a_command_imports() -> None:
    assert set(FAKE_MODULES) <= set(FAKES)
    assert {"adapters.severa.fake", "adapters.netvisor.fake", "connector.demo"} <= set(FAKE_MODULES)


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a ``try`` that handles ModuleNotFoundError."""
    current = node
    while current in parents:
        current = parents[current]
        if isinstance(current, ast.Try):
            for handler in current.handlers:
                names = ast.unparse(handler.type) if handler.type else ""
                if "ModuleNotFoundError" in names or "ImportError" in names:
                    return True
    return False


def test_no_shipped_module_imports_a_fake_without_a_one_line_answer() -> None:
    offenders = []
    for name, path in shipped_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            if any(is_fake(target) for target in targets) and not _guarded(node, parents):
                offenders.append(f"{name}:{getattr(node, 'lineno', 0)}")
    assert offenders == []


def test_the_base_image_is_pinned_by_digest_and_labelled_with_it() -> None:
    match = re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim@(sha256:[0-9a-f]{64})$", DOCKERFILE, re.MULTILINE)
    assert match, "pin the base image by digest"
    assert f'org.opencontainers.image.base.digest="{match.group(1)}"' in DOCKERFILE
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS base$", DOCKERFILE, re.MULTILINE)
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert stages == ["${PYTHON_IMAGE}", "base", "build", "base"]


def test_production_is_the_default_stage_with_oci_labels_a_user_and_a_healthcheck() -> None:
    production = stage("production")
    assert DOCKERFILE.rstrip().endswith(production.rstrip()), "the last stage is what `docker build .` gives"
    for label in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in production, label
    assert PYPROJECT["project"]["license"] in production
    assert "USER 10001" in production
    (check,) = re.findall(r"^HEALTHCHECK .*?\n\s+CMD (.+)$", production, re.MULTILINE)
    assert f"'{HttpSettings().port}')" in check
    assert "SEVERA_CONNECTOR_HTTP__PORT" in check
    assert "/healthz" in check
    assert "curl" not in check  # slim has none


def test_the_production_stage_installs_the_runtime_lock_and_our_wheel_only() -> None:
    base, production = stage("base"), stage("production")
    assert "requirements/runtime.txt" in base
    assert "requirements/dev.txt" not in DOCKERFILE
    assert "pip install --no-deps /wheels/*.whl" in production
    assert "-e ." not in production
    assert "COPY --from=build /wheels /wheels" in production
    assert "COPY connector" not in production
    assert "COPY adapters" not in production


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    copied = re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE, re.MULTILINE)
    copied += re.findall(r"^COPY (\S+) (\S+) \./$", DOCKERFILE, re.MULTILINE)[0]
    for source in copied:
        assert any(fnmatch.fnmatch(source.rstrip("/"), pattern) for pattern in allowed), source
    for kept_out in ("tests", "deploy", ".venv", ".git", ".env"):
        assert not any(fnmatch.fnmatch(kept_out, pattern) for pattern in allowed), kept_out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from what the Dockerfile's build stage copies."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("build_support", "connector", "adapters", "schemas"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    # --no-build-isolation: the build backend of the dev lock, so no download (as in the image).
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "--wheel-dir", str(tmp / "dist"), str(source)], check=True, timeout=300)
    (built,) = (tmp / "dist").glob("severa_connector-*.whl")
    return built


@pytest.mark.slow
def test_the_built_wheel_holds_no_fake_and_everything_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        metadata = archive.read(next(name for name in files if name.endswith(".dist-info/METADATA")))
    modules = {name.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for name in files}
    assert [module for module in modules if is_fake(module)] == []
    assert set(shipped_modules()) <= modules
    assert "adapters/severa/wsdl/" in "\n".join(files)
    assert not [name for name in files if name.startswith(("build_support/", "tests/"))]
    assert b"License-Expression: LicenseRef-Proprietary" in metadata


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    """The wheel installed alone (``--no-deps``) into a folder of its own, as in the image."""
    target = wheel.parent.parent / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    return target


@pytest.mark.slow
@pytest.mark.parametrize("command", [["fake-severa"], ["fake-netvisor"], ["demo"]])
def test_the_fake_commands_say_in_one_line_that_the_image_has_no_fakes(
    installed: Path, tmp_path: Path, command: list[str]
) -> None:
    # -S: no site-packages, so the development venv's editable finder does not bring the source
    # tree back; its dependencies come after the wheel's code, as in the image.
    code = (
        "import sys; sys.path[1:1] = sys.argv[1:3]; del sys.argv[1:3]; "
        "sys.argv[0] = 'severa-connector'; from connector.cli import main; main()"
    )
    site = sysconfig.get_paths()["purelib"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SEVERA_CONNECTOR_")}
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, str(installed), site, *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "the fakes are not installed in this image" in lines[0]
    assert "--target dev" in lines[0]
