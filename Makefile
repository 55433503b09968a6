# Quick start: `make run` serves the demo on http://127.0.0.1:5000, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
INSTANCE ?= $(CURDIR)/instance

.PHONY: run test install install-test migrate demo sweep clean translations catalogs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml setup.py
	$(BIN)/pip install -e ".[postgres]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed translations

install-test: $(VENV)/.installed-test translations

## translations: compile the catalogs (.po -> .mo; make install does it, and so does building a wheel)
translations: $(VENV)/.installed
	$(BIN)/python -m aftersales.catalogs compile

## catalogs: after changing user-facing text, extract the messages and update every .po (then translate the new entries)
catalogs: $(VENV)/.installed
	$(BIN)/python -m aftersales.catalogs update

migrate: install
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) FLASK_DEBUG=1 $(BIN)/flask db upgrade

demo: migrate
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) FLASK_DEBUG=1 $(BIN)/flask aftersales demo --if-empty

## run: create .venv, install, migrate, load demo data if empty, serve on 127.0.0.1:5000
run: demo
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) $(BIN)/flask run --debug --host 127.0.0.1 --port 5000

sweep: install
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) FLASK_DEBUG=1 $(BIN)/flask aftersales sweep

## test: install the test extras and run the whole suite, on SQLite and then on PostgreSQL
test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if $(BIN)/python -m tests.support.databases; then \
		AFTERSALES_TEST_DATABASE=postgres $(BIN)/python -m pytest $(PYTEST_ARGS); \
	elif [ -n "$$AFTERSALES_REQUIRE_POSTGRES" ]; then \
		echo "FAILED: the PostgreSQL half is required here (AFTERSALES_REQUIRE_POSTGRES) but no server answers"; exit 1; \
	else \
		echo "SKIPPED the PostgreSQL half of the suite: no server answers (start one on 127.0.0.1:5432 or set AFTERSALES_TEST_POSTGRES_URL)"; \
	fi

# Production-style server: gunicorn with WORKERS processes of THREADS threads each on BIND, against
# AFTERSALES_DATABASE_URL (default: SQLite in AFTERSALES_INSTANCE_PATH, else ./instance). Threads
# keep a worker answering (/healthz, other pages) while one of its requests stores photos; see
# README "Production" and bench/uploads.py.
WORKERS ?= 4
THREADS ?= 4
BIND ?= 127.0.0.1:8000

# Builds the app once before anything else, so a missing AFTERSALES_SECRET_KEY (or a bad
# AFTERSALES_* value) is one plain line instead of a traceback from every worker.
define SERVE_PREFLIGHT
import os, sys
try:
    from aftersales import create_app
    app = create_app()
except RuntimeError as error:
    sys.exit(f"make serve: not starting: {error}")
if int(os.environ["WORKERS"]) > 1 and app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
    print("make serve: note: the rate-limit counts live in each worker's memory; set "
          "AFTERSALES_RATELIMIT_STORAGE_URI=redis://... so the workers share them", file=sys.stderr)
endef

$(VENV)/.installed-serve: $(VENV)/.installed
	$(BIN)/pip install -e ".[serve]"
	touch $@

.PHONY: serve
## serve: install the serve extra, migrate, run gunicorn ($(WORKERS) workers x $(THREADS) threads on $(BIND)); needs AFTERSALES_SECRET_KEY
serve: export AFTERSALES_INSTANCE_PATH := $(or $(AFTERSALES_INSTANCE_PATH),$(INSTANCE))
serve: export FLASK_DEBUG := 0
serve: export SERVE_PREFLIGHT := $(SERVE_PREFLIGHT)
serve: $(VENV)/.installed-serve translations
	@WORKERS=$(WORKERS) $(BIN)/python -c "$$SERVE_PREFLIGHT"
	$(BIN)/flask db upgrade
	exec $(BIN)/gunicorn --workers $(WORKERS) --threads $(THREADS) --bind $(BIND) --access-logfile - wsgi:app

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis
