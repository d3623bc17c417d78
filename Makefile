# healthgov: two commands. `make run` starts the platform with demo data;
# `make test` sets up, starts what the tests need, runs every test and stops.
.PHONY: setup run test lint fmt stop messages lock lock-upgrade audit-deps

setup:
	./deploy/setup.sh

run: setup
	./deploy/run.sh

test: setup
	./deploy/test.sh

lint: setup
	.venv/bin/ruff check services tests bench
	.venv/bin/lint-imports

fmt: setup
	.venv/bin/ruff check --fix services tests bench

stop:
	.venv/bin/healthgov stack down

# The portal's messages: extract from code, templates and the platform's vocabulary (the codes' wording), merge into
# the catalogues (then translate the new ones).
messages: setup
	cd services/portal && ../../.venv/bin/pybabel extract -F babel.cfg -k N_ -k tr:2 --no-location --sort-output \
		--project healthgov -o locale/messages.pot . ../contracts/vocabulary.py && \
		../../.venv/bin/pybabel update -i locale/messages.pot -d locale --no-fuzzy-matching --ignore-obsolete --width 120

# Every Python dependency, pinned with its hashes, for Linux x86-64 and CPython 3.11. `make lock` keeps the pins it
# already has and adds what pyproject.toml now asks for; `make lock-upgrade` moves everything to the newest versions.
LOCK = .venv/bin/uv pip compile pyproject.toml deploy/build-requirements.in --extra dev --generate-hashes \
	--python-version 3.11 --universal --quiet --custom-compile-command "make lock" -o requirements.lock

# Setup installs the lock before it checks it against pyproject.toml, so uv is there even when that check fails.
lock:
	@[ -x .venv/bin/uv ] || ./deploy/setup.sh || [ -x .venv/bin/uv ]
	$(LOCK)

lock-upgrade:
	@[ -x .venv/bin/uv ] || ./deploy/setup.sh || [ -x .venv/bin/uv ]
	$(LOCK) --upgrade

# The locked set against the published advisories (needs PyPI's JSON API; see deploy/audit-deps.sh).
audit-deps: setup
	./deploy/audit-deps.sh
