#!/usr/bin/env bash
# Stops the private PostgreSQL and Redis that scripts/services.sh started.
set -uo pipefail
cd "$(dirname "$0")/.."
pg_bin=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin
if [ -f .local/pg/postmaster.pid ]; then
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$pg_bin/pg_ctl" -D .local/pg stop -m fast; else "$pg_bin/pg_ctl" -D .local/pg stop -m fast; fi
fi
redis-cli -p "${COOP_PRIVATE_REDIS_PORT:-56379}" shutdown nosave 2>/dev/null || true
