# The two commands of the README: `make run` and `make test`. Both work on a fresh Debian
# machine with Python 3.11 and make; what else they need they install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
KFHIR := $(VENV)/bin/ketamine-fhir
PYTEST_ARGS ?=

.PHONY: run test lint clean bench

$(PY):
	$(PYTHON) -m venv $(VENV) || { echo "python venv module missing: installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(KFHIR) db upgrade
	$(KFHIR) seed-demo
	$(KFHIR) serve

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check service tests
	$(VENV)/bin/mypy

# Lints, starts a throwaway PostgreSQL on loopback, runs every test, stops the server whatever happens.
test: lint
	scripts/fetch_r4_examples.sh .cache
	@set -e; eval "$$(scripts/postgres.sh start)"; trap 'scripts/postgres.sh stop' EXIT; \
	  $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance build *.egg-info

# Validation benchmark against the HAPI FHIR reference validator (issue 10): prints a table and writes the
# same figures to bench/results/validation-<date>.json. Never part of `make test`. HAPI needs Java 17 and
# Maven (the harness is built on first use); without them it is reported as "not run". BENCH_ARGS: see
# `$(PY) -m bench --help`.
.PHONY: bench
BENCH_ARGS ?=
bench: $(VENV)/.installed-test
	$(PY) -m bench $(BENCH_ARGS)
