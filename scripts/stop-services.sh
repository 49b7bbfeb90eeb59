#!/usr/bin/env bash
# Stops the private PostgreSQL and Redis that scripts/services.sh started.
set -uo pipefail
cd "$(dirname "$0")/.."
pg_bin=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin
data="$(pwd)/.local/pg"
if [ "$(id -u)" -eq 0 ]; then
  data="/var/lib/coop-dispatch/$(printf '%s' "$(pwd)" | sha1sum | cut -c1-12)/pg"
fi
if [ -f "$data/postmaster.pid" ]; then
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$pg_bin/pg_ctl" -D "$data" stop -m fast; else "$pg_bin/pg_ctl" -D "$data" stop -m fast; fi
fi
redis-cli -p "${COOP_PRIVATE_REDIS_PORT:-56379}" shutdown nosave 2>/dev/null || true
