#!/usr/bin/env bash
# `make run`: start the whole platform with demo data, stay in the foreground
# until Ctrl-C, then stop everything. SQLite is the store unless
# HEALTHGOV_DATABASE_URL points at PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEALTHGOV_ENV="${HEALTHGOV_ENV:-dev}"
hg=.venv/bin/healthgov

cleanup() { trap - EXIT; "$hg" stack down || true; }
trap cleanup EXIT
# A trap that only cleaned up would leave the script looping below: exit, and EXIT cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM

"$hg" stack up
"$hg" ingest deploy/demo/fixtures/synthea-10-patients --org gy-hosp-001
# Synthea's encounters are years old: the demo hospital's patients visit it today, which is
# the evidence of care its clinicians read them under (docs/architecture.md §10).
"$hg" dev admit deploy/demo/fixtures/synthea-10-patients --org gy-hosp-001
# Four more hospitals send their own copies of the demo patients, each reporting differently (on time,
# late, poorly coded, mostly refused), and some access behaviour for the regulator's oversight (README).
"$hg" dev oversight-demo
echo "demo portal accounts (username, password):"
"$hg" portal demo-accounts deploy/demo/fixtures/synthea-10-patients
cat <<MSG

healthgov is up with the Synthea demo patients (hospitals gy-hosp-001 to gy-hosp-005).
  portal   http://127.0.0.1:8000        patients and regulators (sign in with an account above)
  ingest   http://127.0.0.1:8001/docs   hospital FHIR API
  records  http://127.0.0.1:8002/docs   policy-enforced reads
  audit    http://127.0.0.1:8003/docs   transparency log
  oversight http://127.0.0.1:8004/docs  the regulator's oversight of every hospital (API)
  mail     smtp://127.0.0.1:8025        local SMTP sink: patients' notice e-mail lands in .state/mail (Maildir)
Try (see README.md):
  TOKEN=\$($hg dev token --org gy-hosp-001 --sub dr-wang --role clinician --purpose TREAT)
  curl -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8002/fhir/Patient/129c6ac7-8d06-89de-ad63-0204a93e76c3/\\\$everything
A supervisor restarts any component that crashes. Press Ctrl-C to stop.
MSG
"$hg" stack supervise
