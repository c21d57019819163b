# Sourced by the scripts in this folder: create the venv and make sure the local services answer.
PYTHON=${PYTHON:-python3}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # host port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do port_open "$1" "$2" && return 0; sleep 0.5; done
  return 1
}

ensure_venv() {
  local stamp=.venv/.installed
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    touch "$stamp"
  fi
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

ensure_services() {
  ensure_rabbitmq
  ensure_postgres
}
