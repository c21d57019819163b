"""What the wheel leaves out: the fakes, so that a production image holds no fake service or demo.

setuptools excludes whole packages (``[tool.setuptools.packages.find] exclude`` drops
``adapters.severa.fake`` and ``adapters.netvisor.fake``) but not single modules of a package it
ships. The fakes' modules that live beside production code (``connector/fakes.py``,
``adapters/fake_server.py`` …) are listed in ``[tool.severa-connector.wheel] exclude-modules`` of
``pyproject.toml`` and dropped here, so the list has one home that the tests read too.

An editable install maps the source folders instead of copying modules, so a development venv
(``pip install -e .``) and the dev image still import every fake.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from setuptools.command.build_py import build_py  # type: ignore[import-untyped]

PYPROJECT = "pyproject.toml"


def excluded_modules(pyproject: Path) -> frozenset[str]:
    """The dotted names of the modules the wheel must not contain."""
    config: dict[str, Any] = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    names = config.get("tool", {}).get("severa-connector", {}).get("wheel", {}).get("exclude-modules", [])
    return frozenset(str(name) for name in names)


class BuildPyWithoutFakes(build_py):  # type: ignore[misc]  # setuptools' commands are untyped
    """``build_py`` that skips the modules named in ``exclude-modules``."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        excluded = excluded_modules(Path(PYPROJECT))
        modules: list[tuple[str, str, str]] = super().find_package_modules(package, package_dir)
        return [(pkg, name, path) for pkg, name, path in modules if f"{pkg}.{name}" not in excluded]
