#!/usr/bin/env bash
# `make test`: start PostgreSQL, Kafka, OPA and the services on a fresh state
# directory, run the policy tests and every pytest test against them, stop.
# A component that does not start is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEALTHGOV_ENV=test
export HEALTHGOV_STATE_DIR="${HEALTHGOV_STATE_DIR:-$(mktemp -d /tmp/healthgov-test.XXXXXX)}"
hg=.venv/bin/healthgov
opa=.cache/bin/opa

off=${HEALTHGOV_PORT_OFFSET:-0}
for base in 8000 8001 8002 8003 8004 8025 8181 9092 9093; do
  port=$((base + off))
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is in use (is 'make run' still running? stop it first)" >&2; exit 1
  fi
done

cleanup() {
  status=$?
  "$hg" stack down >/dev/null 2>&1 || true
  ./deploy/postgres.sh stop || true
  rm -rf "$HEALTHGOV_STATE_DIR"
  exit $status
}
trap cleanup EXIT INT TERM

echo "==> lint: ruff, import contracts (pyproject.toml)"
.venv/bin/ruff check services tests bench
.venv/bin/lint-imports

echo "==> dependencies: pip-audit of requirements.lock"
audit=0; ./deploy/audit-deps.sh || audit=$?
if [ "$audit" -eq 3 ] && [ "${HEALTHGOV_DEPS_AUDIT:-report}" != require ]; then
  echo "    (reported, not failed: set HEALTHGOV_DEPS_AUDIT=require where the advisory API is reachable)"
elif [ "$audit" -ne 0 ]; then
  exit "$audit"
fi

echo "==> policies: opa check, fmt, test"
"$opa" check --strict policies/
"$opa" fmt --list --fail policies/
"$opa" test policies/ --coverage --threshold 95 --format json >/tmp/healthgov-opa-coverage.json \
  || { "$opa" test policies/ -v; exit 1; }
"$opa" test policies/

echo "==> postgresql"
export HEALTHGOV_PG_PORT="${HEALTHGOV_PG_PORT:-$((55432 + off))}"
HEALTHGOV_DATABASE_URL=$(./deploy/postgres.sh start)
export HEALTHGOV_DATABASE_URL

echo "==> stack"
# Spans to <state>/traces/<service>.jsonl and a JSON access line per request: tests/e2e/test_telemetry.py reads them.
# Exported to the whole run, not given to `stack up` alone: the stack records them for components started again
# from any shell (Stack.record_environment), but some tests bring the whole platform down and up again, and a
# fresh `up` takes the settings of whoever runs it, here the test process.
export HEALTHGOV_TRACE_EXPORTER=file HEALTHGOV_ACCESS_LOG=true
"$hg" stack up

echo "==> pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
