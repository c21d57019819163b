#!/usr/bin/env bash
# Refresh the console screenshots in docs/console/ (shown in docs/console.md): runs the browser
# test with SEVERA_CONSOLE_SCREENSHOTS set, so the pictures are of what the test just checked.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
ensure_venv
ensure_services
ensure_chromium
SEVERA_CONSOLE_SCREENSHOTS=docs/console .venv/bin/python -m pytest -q tests/e2e/test_console_browser.py "$@"
