#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for the tests, in a temporary directory.
#   deploy/postgres.sh start   -> prints HEALTHGOV_DATABASE_URL=... (also in .state-pg/url)
#   deploy/postgres.sh stop
# Installs the server from Debian packages when it is missing. initdb refuses
# to run as root, so as root the cluster belongs to the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${HEALTHGOV_PG_PORT:-55432}"
ptr=.cache/pg-dir-$PORT

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_server() {
  echo "==> installing PostgreSQL from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
  apt-get update -qq >&2
  apt-get install -y -qq postgresql-15 >&2 || apt-get install -y -qq postgresql >&2
}

as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-}" in
start)
  BIN=$(find_bin) || { install_server; BIN=$(find_bin); }
  if [ -f "$ptr" ] && [ -d "$(cat "$ptr")/data" ]; then
    D=$(cat "$ptr")
  else
    D=$(mktemp -d /tmp/healthgov-pg.XXXXXX)
    chmod 755 "$D"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$D"
    as_owner "$BIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --locale=C \
      --no-sync --no-instructions >/dev/null
    mkdir -p .cache && echo "$D" >"$ptr"
  fi
  if ! as_owner "$BIN/pg_ctl" -D "$D/data" status >/dev/null 2>&1; then
    as_owner "$BIN/pg_ctl" -D "$D/data" -l "$D/pg.log" -w -t 30 \
      -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || { tail -20 "$D/pg.log" >&2; exit 1; }
  fi
  for db in healthgov; do
    "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
      || "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$db"
  done
  echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/healthgov"
  ;;
stop)
  if [ -f "$ptr" ]; then
    D=$(cat "$ptr"); BIN=$(find_bin)
    as_owner "$BIN/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$D" "$ptr"
  fi
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
