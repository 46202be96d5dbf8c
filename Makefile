# Two commands on a fresh machine with Python 3.11+:
#   make run    - embedded install: SQLite, local media, Celery on a filesystem broker; portal on :8000
#   make test   - the whole test suite (needs PostgreSQL and Redis on 127.0.0.1, see README)
#   make lint   - ruff's checks (configured in pyproject.toml)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export TELEDIAG_DEMO ?= true

.PHONY: run test lint install install-dev migrate worker bench clean-var faults faults-short

$(VENV)/.installed: requirements.txt requirements-base.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

run: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py register_default_model
	@echo "Portal: http://$(HOST):$(PORT)/  (API docs: /api/docs/)"
	@# One supervisor starts both workers and the server, and stops them once on Ctrl-C or SIGTERM.
	exec $(PY) -m telediag.run_demo --host $(HOST) --port $(PORT)

test: install-dev
	$(PY) -m pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Fault suite (reliability/): own PostgreSQL, Redis/RabbitMQ, gunicorn and workers on loopback.
faults-short: install-dev
	$(PY) -m reliability.run --short

faults: install-dev
	$(PY) -m reliability.run --broker both --json var/faults.json

worker: install
	$(VENV)/bin/celery -A telediag worker -Q inference,default -c 1 -l info

bench: install-dev
	$(PY) bench/run_all.py
