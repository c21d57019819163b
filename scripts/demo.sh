#!/usr/bin/env bash
# The whole loop on this machine: fake Severa in-process + the connector + sample events on the
# local RabbitMQ. Creates .venv and installs the project if needed; starts RabbitMQ if installed but
# not running. Extra arguments go to `severa-connector demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
ensure_venv
ensure_services
exec .venv/bin/severa-connector demo "$@"
