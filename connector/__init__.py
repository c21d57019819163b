"""severa-connector: event-driven bridge between RabbitMQ and the Visma Severa SOAP API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("severa-connector")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"
