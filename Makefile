# Two commands on a fresh clone:  `make demo` (the demo export) and `make test` (the test suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-services lint bench airflow seed emulator clean

venv: $(STAMP)
# The provider (editable, with the test tools) and the development distribution in include/: the local
# Mailchimp server and the demo warehouse, which never go into the provider's wheel.
$(STAMP): pyproject.toml include/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' -e ./include
	touch $(STAMP)

demo: venv  ## seed the demo warehouse, start the local Mailchimp server, run the export DAG, print the report
	$(PY) scripts/demo.py $(ARGS)

test: venv  ## the test suite (PostgreSQL tests skip when no server is reachable, fail under CI)
	$(PY) -m pytest $(ARGS)

test-services: venv  ## a real Airflow deployment (Celery, Redis, PostgreSQL) and the UI in headless Chromium
	$(PY) -m pytest -m "services or browser" $(ARGS)

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: venv  ## benchmark: ours vs the naive client vs the floor, SQLite and PostgreSQL (N=1,000,000)
	$(PY) benchmarks/export_bench.py $(ARGS)

airflow: venv  ## Airflow with its UI on http://127.0.0.1:8080, wired to the demo warehouse and local Mailchimp
	$(PY) scripts/demo.py --standalone $(ARGS)

clean:
	rm -rf var
