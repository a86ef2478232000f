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
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@# Card payments in the demo go to the local Stripe stand-in (test cards, no network).
	$(PY) deploy/dev/stripe_standin.py --port 12111 --secret whsec_standin \
	  --webhook-url http://$${DEMO_ADDR:-127.0.0.1:8000}/billing/webhooks/stripe/ & \
	  trap 'kill $$!' EXIT; $(PY) manage.py rundemo

bench: venv services
	@for b in bench/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
