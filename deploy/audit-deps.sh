#!/usr/bin/env bash
# The locked dependency set (requirements.lock) against the published vulnerability advisories, with pip-audit.
# pip-audit asks PyPI's per-release JSON API (https://pypi.org/pypi/NAME/VERSION/json) for each pinned
# release; a finding fails. Where that API is unreachable (a closed network that mirrors only the package
# index), nothing can be audited: the script says so plainly and exits 3, and the caller decides whether
# that fails (HEALTHGOV_DEPS_AUDIT=require) or is reported (the default for `make test` on such networks).
set -euo pipefail
cd "$(dirname "$0")/.."
probe=$(grep -m1 -oE '^pip==[^ ]+' requirements.lock | sed 's/==/\//')
if ! curl -fsS -m 20 -o /dev/null "https://pypi.org/pypi/$probe/json"; then
  echo "dependency audit NOT RUN: PyPI's vulnerability API (https://pypi.org/pypi/$probe/json) is unreachable" >&2
  exit 3
fi
exec .venv/bin/pip-audit --strict --disable-pip --require-hashes -r requirements.lock \
  --vulnerability-service pypi --cache-dir .cache/pip-audit --progress-spinner off
