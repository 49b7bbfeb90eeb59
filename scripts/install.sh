#!/usr/bin/env bash
# Installs what coop-dispatch needs on Debian/Ubuntu: PostgreSQL + PostGIS, Redis, a virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
if ! command -v redis-server >/dev/null 2>&1; then need+=(redis-server); fi
if ! command -v python3 >/dev/null 2>&1; then need+=(python3 python3-venv); fi
pg_major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1 || true)
if [ -n "$pg_major" ] && [ ! -f "/usr/share/postgresql/$pg_major/extension/postgis.control" ]; then
  need+=("postgresql-$pg_major-postgis-3")
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
  pg_major=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if [ ! -f "/usr/share/postgresql/$pg_major/extension/postgis.control" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-$pg_major-postgis-3"
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# The pinned, hash-checked dependencies of requirements.lock (`make lock` writes it from
# pyproject.toml), pip included, then the project itself without resolving anything more.
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing Python packages from requirements.lock"
  if ! { .venv/bin/pip install -q -r requirements.lock && .venv/bin/pip install -q --no-deps -e .; } \
    > .venv/pip.log 2>&1; then
    cat .venv/pip.log
    exit 1
  fi
  touch "$stamp"
fi
