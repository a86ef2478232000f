# Hostwright: `make demo` runs it, `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint typecheck migrations-check pytest services bench clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: installing Debian's python3-venv"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv python3-dev >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	@touch $(STAMP)

venv: $(STAMP)

services:
	@deploy/dev/ensure-services.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy .

migrations-check: venv services
	DJANGO_SETTINGS_MODULE=hosting.test_settings $(PY) manage.py makemigrations --check --dry-run

pytest: venv services
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: venv services lint typecheck migrations-check pytest

demo: venv
	@deploy/dev/ensure-redis-server.sh
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@if [ "$$(id -u)" = 0 ]; then $(PY) manage.py node_local_setup; \
	 else echo "not root: skipping the local hosting node (orders wait for a node)"; fi
	@# rundemo starts and supervises the task broker (redis-server on a socket in var/redis/),
	@# the local Stripe stand-in that takes test cards (without a Stripe account), a worker
	@# with beat and the panel; a part that dies is started again.
	$(PY) manage.py rundemo

bench: venv services
	@for b in bench/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
