"""The lock files (``requirements/*.txt``, written by ``scripts/lock.sh``) against pyproject.toml.

The image and CI install only from the locks, hash-checked, and then the project with
``--no-deps``: a dependency added to pyproject but not locked would be missing from both, and one
whose lock pin no longer satisfies pyproject's specifier would run a version the project refuses.
This fails until ``scripts/lock.sh`` is run again.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
LOCKS = {name: ROOT / "requirements" / f"{name}.txt" for name in ("runtime", "dev", "build")}
#: What the locks are resolved for (scripts/lock.sh: --python-version 3.11 --python-platform linux).
TARGET: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
TARGET.update(
    python_version="3.11",
    python_full_version="3.11.0",
    sys_platform="linux",
    platform_system="Linux",
    os_name="posix",
    implementation_name="cpython",
    platform_python_implementation="CPython",
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?:\s*;[^\\]*)?\s*\\$", re.MULTILINE)


def pins(lock: Path) -> dict[str, Version]:
    text = lock.read_text(encoding="utf-8")
    return {canonicalize_name(name): Version(version) for name, version in PIN.findall(text)}


def entries(lock: Path) -> list[str]:
    """Each requirement of a lock with its continuation lines (its hashes)."""
    text = lock.read_text(encoding="utf-8")
    return [block for block in re.split(r"\n(?=[A-Za-z0-9])", text) if "==" in block]


def wanted(requirements: list[str]) -> list[Requirement]:
    """The requirements that apply on the target, without the project's references to itself."""
    found = [Requirement(line) for line in requirements]
    return [
        req
        for req in found
        if canonicalize_name(req.name) != PROJECT and (req.marker is None or req.marker.evaluate(TARGET))
    ]


RUNTIME = wanted(PYPROJECT["project"]["dependencies"])
EXTRAS = wanted(
    [line for extra in ("test", "dev") for line in PYPROJECT["project"]["optional-dependencies"][extra]]
)
BUILD = wanted(PYPROJECT["build-system"]["requires"])


def _ids(requirements: list[Requirement]) -> list[str]:
    return [req.name for req in requirements]


@pytest.mark.parametrize("req", RUNTIME, ids=_ids(RUNTIME))
def test_every_runtime_dependency_is_locked_for_the_image_and_for_ci(req: Requirement) -> None:
    for lock in ("runtime", "dev"):
        pinned = pins(LOCKS[lock]).get(canonicalize_name(req.name))
        assert pinned is not None, f"{req.name} is not in requirements/{lock}.txt: run scripts/lock.sh"
        assert req.specifier.contains(pinned, prereleases=True), (
            f"requirements/{lock}.txt pins {req.name}=={pinned}, pyproject wants {req.specifier}: "
            "run scripts/lock.sh"
        )


@pytest.mark.parametrize("req", EXTRAS + BUILD, ids=_ids(EXTRAS + BUILD))
def test_every_test_dev_and_build_requirement_is_locked_for_ci(req: Requirement) -> None:
    pinned = pins(LOCKS["dev"]).get(canonicalize_name(req.name))
    assert pinned is not None, f"{req.name} is not in requirements/dev.txt: run scripts/lock.sh"
    assert req.specifier.contains(pinned, prereleases=True), f"{req.name}=={pinned} vs {req.specifier}"


@pytest.mark.parametrize("req", BUILD, ids=_ids(BUILD))
def test_the_build_lock_has_the_build_backend(req: Requirement) -> None:
    pinned = pins(LOCKS["build"]).get(canonicalize_name(req.name))
    assert pinned is not None
    assert req.specifier.contains(pinned, prereleases=True)


def test_the_image_runs_the_versions_ci_tested() -> None:
    dev = pins(LOCKS["dev"])
    for lock in ("runtime", "build"):
        differing = {name: (v, dev.get(name)) for name, v in pins(LOCKS[lock]).items() if dev.get(name) != v}
        assert differing == {}, f"requirements/{lock}.txt and dev.txt disagree: run scripts/lock.sh"


def test_the_runtime_lock_holds_no_test_or_development_tool() -> None:
    runtime = set(pins(LOCKS["runtime"]))
    needed = {canonicalize_name(req.name) for req in RUNTIME}
    tools = {canonicalize_name(req.name) for req in EXTRAS} - needed
    assert tools
    assert runtime & tools == set()


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_entry_is_pinned_exactly_with_hashes(lock: str) -> None:
    found = entries(LOCKS[lock])
    assert found, lock
    for entry in found:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry.splitlines()[0]
    text = LOCKS[lock].read_text(encoding="utf-8")
    assert "scripts/lock.sh" in text.splitlines()[1], "written by scripts/lock.sh"
    assert "-e " not in text
    assert "file://" not in text


def test_the_image_and_ci_install_from_the_locks_hash_checked() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install --require-hashes -r /tmp/requirements/runtime.txt" in dockerfile
    assert "pip install --require-hashes -r /tmp/requirements/build.txt" in dockerfile
    assert "pip install --no-deps /wheels/*.whl" in dockerfile
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    assert "pip install --quiet --require-hashes -r requirements/dev.txt" in bootstrap
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in bootstrap
