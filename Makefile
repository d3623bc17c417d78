# healthgov: two commands. `make run` starts the platform with demo data;
# `make test` sets up, starts what the tests need, runs every test and stops.
.PHONY: setup run test lint fmt stop

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
