"""Severa's WSDL, generated from :mod:`adapters.severa.wsdl.spec` and shipped with the package.

Load it from :data:`WSDL_PATH` (a local file, so starting a client never needs the network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

WSDL_PATH: Final = Path(__file__).with_name("severa.wsdl")
"""The generated ``severa.wsdl`` (regenerate with ``python -m adapters.severa.wsdl.generate``)."""

__all__ = ["WSDL_PATH"]
