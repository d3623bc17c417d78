# healthgov: two commands. `make run` starts the platform with demo data;
# `make test` sets up, starts what the tests need, runs every test and stops.
.PHONY: setup run test lint fmt stop messages

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
