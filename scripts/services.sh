#!/usr/bin/env bash
# Prints `export COOP_DATABASE_URL=... COOP_REDIS_URL=...` for the stack to use.
# With both URLs already set, uses them; otherwise starts a private PostgreSQL+PostGIS and Redis
# from the system packages under .local/ (ports 55432 and 56379) and points at those.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { echo "$@" >&2; }

if [ -n "${COOP_DATABASE_URL:-}" ] && [ -n "${COOP_REDIS_URL:-}" ]; then
  echo "export COOP_DATABASE_URL='$COOP_DATABASE_URL' COOP_REDIS_URL='$COOP_REDIS_URL'"
  exit 0
fi

PG_PORT=${COOP_PRIVATE_PG_PORT:-55432}
REDIS_PORT=${COOP_PRIVATE_REDIS_PORT:-56379}
pg_bin=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin
mkdir -p "$root/.local/redis"
pg_home="$root/.local"
if [ "$(id -u)" -eq 0 ]; then
  # initdb refuses root, and the postgres user may not be able to enter this checkout.
  pg_home="/var/lib/coop-dispatch/$(printf '%s' "$root" | sha1sum | cut -c1-12)"
fi
data="$pg_home/pg"
mkdir -p "$pg_home/run"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -f "$data/PG_VERSION" ]; then
  log "==> creating a private PostgreSQL cluster in $data"
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$pg_home"; fi
  as_pg "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  log "==> starting private PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pg_home/run -c max_connections=300" start >/dev/null
fi
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "==> starting private Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
    --dir "$root/.local/redis" --logfile "$root/.local/redis/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$pg_bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -tc \
  "SELECT 1 FROM pg_database WHERE datname = 'coop_dispatch'" | grep -q 1 \
  || "$pg_bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres coop_dispatch
if [ ! -s "$root/.local/jwt-secret" ]; then
  head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > "$root/.local/jwt-secret"
fi
secret=${COOP_JWT_SECRET:-$(cat "$root/.local/jwt-secret")}
echo "export COOP_DATABASE_URL='postgresql://postgres@127.0.0.1:$PG_PORT/coop_dispatch' COOP_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/0' COOP_JWT_SECRET='$secret'"
