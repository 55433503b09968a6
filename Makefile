# Quick start: `make run` serves the demo on http://127.0.0.1:5000, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
INSTANCE ?= $(CURDIR)/instance

.PHONY: run test install install-test migrate demo sweep clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -e ".[postgres]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

migrate: install
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) FLASK_DEBUG=1 $(BIN)/flask db upgrade

demo: migrate
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) FLASK_DEBUG=1 $(BIN)/flask aftersales demo --if-empty

## run: create .venv, install, migrate, load demo data if empty, serve on 127.0.0.1:5000
run: demo
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) $(BIN)/flask run --debug --host 127.0.0.1 --port 5000

sweep: install
	AFTERSALES_INSTANCE_PATH=$(INSTANCE) FLASK_DEBUG=1 $(BIN)/flask aftersales sweep

## test: install the test extras and run the whole suite
test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis
