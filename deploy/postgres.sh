#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for the tests, in a temporary directory.
#   deploy/postgres.sh start   -> prints HEALTHGOV_DATABASE_URL=... (also in .state-pg/url)
#   deploy/postgres.sh stop
#   deploy/postgres.sh replica  -> a streaming replica of it (pg_basebackup -R) on HEALTHGOV_PG_REPLICA_PORT
#                                  (default: the primary's port + 1), synchronous; prints its URL
#   HEALTHGOV_PG_PORT=<replica port> deploy/postgres.sh promote   -> the replica becomes the primary
#   HEALTHGOV_PG_PORT=<replica port> deploy/postgres.sh stop      -> stops and removes the replica
# The replica is synchronous: the primary acknowledges a commit once the replica has flushed it, so a
# failover loses nothing acknowledged. The price: while the replica is down the primary's commits wait
# (run `ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()` on it to stop waiting).
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
replica)
  [ -f "$ptr" ] || { echo "no primary on port $PORT: deploy/postgres.sh start first" >&2; exit 1; }
  BIN=$(find_bin)
  RPORT="${HEALTHGOV_PG_REPLICA_PORT:-$((PORT + 1))}"
  rptr=.cache/pg-dir-$RPORT
  [ -f "$rptr" ] && { echo "port $RPORT already has a cluster ($(cat "$rptr"))" >&2; exit 1; }
  R=$(mktemp -d /tmp/healthgov-pg-replica.XXXXXX)
  chmod 755 "$R"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$R"
  # -R writes standby.signal and primary_conninfo; -X stream copies the WAL written meanwhile.
  as_owner "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$R/data" -R -X stream -c fast \
    -d "application_name=healthgov_replica" >/dev/null
  echo "$R" >"$rptr"
  as_owner "$BIN/pg_ctl" -D "$R/data" -l "$R/pg.log" -w -t 30 \
    -o "-p $RPORT -k $R -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { tail -20 "$R/pg.log" >&2; exit 1; }
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qtAc \
    "ALTER SYSTEM SET synchronous_standby_names = 'healthgov_replica'" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 60); do
    state=$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
      "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'healthgov_replica'")
    [ "$state" = sync ] && break
    sleep 0.5
  done
  [ "$state" = sync ] || { echo "the replica did not become synchronous (state: '$state')" >&2; exit 1; }
  echo "postgresql+psycopg://postgres@127.0.0.1:$RPORT/healthgov"
  ;;
promote)
  [ -f "$ptr" ] || { echo "no cluster on port $PORT" >&2; exit 1; }
  D=$(cat "$ptr"); BIN=$(find_bin)
  as_owner "$BIN/pg_ctl" -D "$D/data" -w -t 30 promote >/dev/null
  # A promoted server has no standby of its own yet: it must not wait for one.
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qtAc \
    "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
  echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/healthgov"
  ;;
*) echo "usage: $0 start|stop|replica|promote" >&2; exit 2 ;;
esac
