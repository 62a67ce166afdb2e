# bookd: `make run` and `make test` do all the set-up (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install -q --disable-pip-version-check
# This machine's pip config names local mirrors that may be absent; hide only that warning.
QUIET_PIP := 2> >(grep -v "is ignored: it is neither" >&2)

.PHONY: run test lint bench faults venv lock lock-upgrade localstack-up localstack-down prometheus browser provision clean

# The app's virtual environment, from the hash-pinned dev lock (the runtime lock plus the dev
# tools), rebuilt when a lock changes. bookd itself goes in last, without dependencies and built
# by the locked setuptools, so nothing unhashed is downloaded.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "bookd needs Python 3.11 ($(PYTHON)); set PYTHON=..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements-dev.txt $(QUIET_PIP)
	$(PIP) --no-deps --no-build-isolation -e . $(QUIET_PIP)
	$(BIN)/python -c "import bookd, flask, gunicorn, boto3, click, pythonjsonlogger, sqs_listener, prometheus_client, supervisor"
	touch $@

venv: $(STAMP)

# The locks requirements.txt (runtime, for the image) and requirements-dev.txt (the venv), made
# from the hand-edited requirements.in and requirements-dev.in for CPython 3.11 on Linux, with the
# hash of every file PyPI publishes for each pinned version. They come from PyPI (uv's default
# index) alone: uv reads none of pip's config (this machine's pip.conf and PIP_* add local wheel
# folders, file:// indexes and a constraints file), --no-config skips uv.toml files, and the
# uv variables that would add indexes, wheel folders or constraints are not passed on to it.
# `make lock` keeps every pin it can; `make lock-upgrade` moves the unpinned (transitive) ones
# to their latest releases.
UV_COMPILE = $(BIN)/uv pip compile --quiet --no-config --python-version 3.11 --python-platform linux \
	--generate-hashes --custom-compile-command "make lock"
unexport UV_INDEX UV_DEFAULT_INDEX UV_INDEX_URL UV_EXTRA_INDEX_URL UV_FIND_LINKS UV_NO_INDEX \
	UV_CONSTRAINT UV_OVERRIDE UV_CONFIG_FILE

lock: venv
	$(UV_COMPILE) $(LOCK_FLAGS) requirements.in -o requirements.txt
	$(UV_COMPILE) $(LOCK_FLAGS) requirements-dev.in -o requirements-dev.txt

lock-upgrade: LOCK_FLAGS = --upgrade
lock-upgrade: lock

localstack-up:
	scripts/localstack.sh up

localstack-down:
	scripts/localstack.sh down

# promtool and prometheus for the monitoring tests: Debian's package, installed when missing.
prometheus:
	scripts/prometheus.sh

# Chromium for the console's browser tests: Debian's package, installed when missing.
browser:
	scripts/chromium.sh

provision: venv localstack-up
	$(BIN)/bookd provision

# The whole supervised stack in the foreground: supervisord -> Gunicorn -> listener.
run: provision
	mkdir -p var
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/supervisord -n -c deploy/supervisord.conf

# Every test; the small benchmark and fault run go in a second pytest beside the rest.
test: venv localstack-up prometheus browser lint
	BIN=$(BIN) scripts/test.sh

# Baseline, bookd, its call floor and the PutObject ceiling, direct and at 20 ms per request,
# in five rounds; one FIFO group at 20 ms; steady loads; one, two and four instances at
# 200 ms; memory, HTTP under load, start and stop (~17 min).
bench: venv localstack-up
	$(BIN)/python -m bench.run

lint: venv
	$(BIN)/ruff check bookd tests bench harness faults gunicorn_conf.py
	$(BIN)/ruff format --check bookd tests bench harness faults gunicorn_conf.py
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var

# The fault suite: kills, outages, S3 SlowDown, a LocalStack restart, two instances, SIGTERM
# (~15 min).
# Every book must end stored and announced once, in group order, or dead-lettered.
faults: venv localstack-up
	$(BIN)/python -m faults.run
