#!/usr/bin/env bash
# Write the hash-pinned lock files from pyproject.toml, for CPython 3.11 on Linux:
#   requirements/runtime.txt  what the production image installs (project.dependencies)
#   requirements/build.txt    what builds the wheel (build-system.requires)
#   requirements/dev.txt      the development and CI venv: runtime + the test/dev extras + build
# Run it after every change of a dependency in pyproject.toml (tests/unit/test_lock_files.py fails
# until then). Versions already in a lock are kept while they still satisfy pyproject; pass
# --upgrade to move everything to the newest allowed releases. Extra arguments go to `uv pip compile`.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
if [ ! -x "$UV" ]; then
  echo "uv is missing: run scripts/test.sh once (it installs the dev extra), or set UV=/path/to/uv" >&2
  exit 2
fi
compile() {  # output, then inputs and options
  local out=$1
  shift
  "$UV" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
    --custom-compile-command scripts/lock.sh --output-file "$out" "$@"
}
build_requires() {  # pyproject's [build-system] requires, one a line, for `uv pip compile -`
  "${PYTHON:-python3}" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
}
# dev first: it is the superset, and the other two are constrained to its versions, so the image
# runs exactly the versions CI tested.
build_requires | compile requirements/dev.txt pyproject.toml --extra dev - "$@"
compile requirements/runtime.txt pyproject.toml --constraints requirements/dev.txt "$@"
build_requires | compile requirements/build.txt - --constraints requirements/dev.txt "$@"
echo "wrote requirements/dev.txt, requirements/runtime.txt, requirements/build.txt" >&2
