# bookd: `make run` and `make test` do all the set-up (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install -q --disable-pip-version-check
# This machine's pip config names local mirrors that may be absent; hide only that warning.
QUIET_PIP := 2> >(grep -v "is ignored: it is neither" >&2)

.PHONY: run test lint bench venv localstack-up localstack-down prometheus provision clean

# The app's virtual environment, rebuilt when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "bookd needs Python 3.11 ($(PYTHON)); set PYTHON=..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt -r requirements-dev.txt $(QUIET_PIP)
	$(PIP) --no-deps -e . $(QUIET_PIP)
	$(BIN)/python -c "import bookd, flask, gunicorn, boto3, sqs_listener, prometheus_client, supervisor"
	touch $@

venv: $(STAMP)

localstack-up:
	scripts/localstack.sh up

localstack-down:
	scripts/localstack.sh down

# promtool and prometheus for the monitoring tests: Debian's package, installed when missing.
prometheus:
	scripts/prometheus.sh

provision: venv localstack-up
	$(BIN)/bookd provision

# The whole supervised stack in the foreground: supervisord -> Gunicorn -> listener.
run: provision
	mkdir -p var
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/supervisord -n -c deploy/supervisord.conf

test: venv localstack-up prometheus lint
	$(BIN)/pytest

# Baseline vs bookd vs the PutObject ceiling, direct and with 20 ms per request (~8 min).
bench: venv localstack-up
	$(BIN)/python -m bench.run

lint: venv
	$(BIN)/ruff check bookd tests bench gunicorn_conf.py
	$(BIN)/ruff format --check bookd tests bench gunicorn_conf.py

clean:
	rm -rf $(VENV) var
