#!/usr/bin/env bash
# Set everything up, start what the tests need, and run the whole suite (lint included).
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL + PostGIS for the case-store tests. Where PostgreSQL is not installed at all those
# tests skip (in CI, CI=true, they fail). Idempotent: installs and starts only what is missing.
start_postgres() {
  local major="${STREETLENS_PG_MAJOR:-15}"
  command -v pg_isready >/dev/null 2>&1 || return 0
  if [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ] \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "postgresql-$major-postgis-3" >/dev/null; } \
      || echo "test.sh: could not install PostGIS; the PostGIS tests will say so" >&2
  fi
  if ! pg_isready -q -h 127.0.0.1; then
    pg_ctlcluster --skip-systemctl-redirect "$major" main start \
      || echo "test.sh: could not start PostgreSQL $major" >&2
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  fi
}

scripts/setup.sh train,test
start_postgres
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -q "$@"
