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

# Lints, installs Debian's Chromium if missing (browser tests), starts a throwaway PostgreSQL on loopback,
# runs every test (the HAPI FHIR peers build themselves with Maven on first use), stops the server.
test: lint
	scripts/chromium.sh
	scripts/fetch_r4_examples.sh .cache
	@set -e; eval "$$(scripts/postgres.sh start)"; trap 'scripts/postgres.sh stop' EXIT; \
	  $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance build *.egg-info tests/peers/hapi/server/target

# Benchmarks (never part of `make test`): validation against the HAPI FHIR reference validator, mapping
# (record → validated Bundle), and serving (gunicorn -w 2 under load) against the HAPI FHIR JPA peer.
# Each prints a table and writes bench/results/<part>-<date>.json. HAPI needs Java 17 and Maven (built on
# first use); without them it is reported as "not run". BENCH_PARTS=validation,mapping,serving picks parts;
# BENCH_ARGS go to the validation part (`$(PY) -m bench --help`).
.PHONY: bench
BENCH_ARGS ?=
bench: $(VENV)/.installed-test
	$(PY) -m bench $(BENCH_ARGS)
