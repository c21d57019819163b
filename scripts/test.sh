#!/usr/bin/env bash
# Run the whole test suite against real services on this machine (RabbitMQ, PostgreSQL).
# Creates .venv and installs the project with its test/dev extras if needed; starts the local
# RabbitMQ / PostgreSQL when they are installed but not running. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
ensure_venv
ensure_kubectl || true  # the manifest tests fall back to $KUBECTL or a kubectl on PATH
ensure_services
ensure_chromium
echo "== lint: ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== types: mypy --strict" && .venv/bin/mypy
echo "== tests: pytest" && .venv/bin/python -m pytest "$@"
