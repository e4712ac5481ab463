# The two commands of the README: `make run` and `make test`. Both work on a fresh Debian
# machine with Python 3.11 and make; what else they need they install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
KFHIR := $(VENV)/bin/ketamine-fhir
PYTEST_ARGS ?=
# pytest-xdist: one worker per core of this 2-core machine; tests that share a costly fixture (the HAPI peer,
# a live server) stay on one worker (tests/conftest.py XDIST_GROUPS)
WORKERS ?= 2
XDIST := -n $(WORKERS) --dist loadgroup
# the fast tier: what `make check` runs (markers set in tests/conftest.py and by tests)
FAST := not (peer or browser or fuzz or postgres or install)

.PHONY: run test check lint clean bench agreement

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
	$(KFHIR) admin demo-user
	$(KFHIR) clients demo-key
	$(KFHIR) serve

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check service tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# the Medplum FHIR peer (tests/peers/medplum): its npm packages, from the committed lock file
MEDPLUM_PEER := tests/peers/medplum/node_modules/.package-lock.json
$(MEDPLUM_PEER): tests/peers/medplum/package-lock.json
	cd tests/peers/medplum && npm ci --no-audit --no-fund --loglevel=error

# Lints, installs Debian's Chromium if missing (browser tests), starts a throwaway PostgreSQL on loopback,
# runs every test (the HAPI FHIR peers build themselves with Maven on first use), stops the server. The fuzz
# tests run KFHIR_FUZZ_REQUESTS (tests/hardening/fuzzing.py: 600) requests per suite, CI's fixed examples;
# `make fuzz` runs the full 5,000.
test: lint $(MEDPLUM_PEER)
	scripts/chromium.sh
	scripts/fetch_packages.sh .cache
	@set -e; eval "$$(scripts/postgres.sh start)"; trap 'scripts/postgres.sh stop' EXIT; \
	  $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The inner loop: lint and the fast tier (no HAPI peer, browser, fuzzing, PostgreSQL or wheel install), in under 2 minutes.
check: lint
	scripts/fetch_packages.sh .cache
	$(PY) -m pytest $(XDIST) -m "$(FAST)" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance build *.egg-info tests/peers/hapi/server/target bench/medplum/node_modules \
	  tests/peers/medplum/node_modules bench/fhircraft/.venv bench/java/target bench/loadgen/target

# Our validator against the HL7 reference validator on the whole corpus (tests/validation/test_hapi_agreement.py),
# alone; `make test` runs it too. About 11 minutes of HAPI on one core with a cold cache, seconds once its verdicts
# are cached in ~/.cache/ketamine-fhir/hapi-verdicts; the corpus size and agreement: tests/artifacts/agreement.txt.
agreement: $(VENV)/.installed-test
	scripts/fetch_packages.sh .cache
	$(PY) -m pytest -n 0 -s tests/validation/test_hapi_agreement.py $(PYTEST_ARGS)

# The fuzz tests (marker fuzz: tests/hardening's schemathesis against openapi.yaml and hypothesis against the
# FHIR facade, the parsers on random bytes) at full size: FUZZ_REQUESTS generated requests per suite, shared
# among its backends (and schemathesis' positive and negative modes), CI's fixed examples. `make test` runs
# them at a tenth of that; .ci/run runs both. A hunt for new findings: FUZZ_REQUESTS=40000 FUZZ_RANDOM=1
# (fresh examples each run).
.PHONY: fuzz
FUZZ_REQUESTS ?= 5000
FUZZ_RANDOM ?=
fuzz: $(VENV)/.installed-test
	scripts/fetch_packages.sh .cache
	@set -e; eval "$$(scripts/postgres.sh start)"; trap 'scripts/postgres.sh stop' EXIT; \
	  KFHIR_FUZZ_REQUESTS=$(FUZZ_REQUESTS) KFHIR_FUZZ_RANDOM=$(FUZZ_RANDOM) \
	    $(PY) -m pytest $(XDIST) -p no:logging -rP -m fuzz $(PYTEST_ARGS)

# Benchmarks (never part of `make test`): validation of the corpus by ours, the validators side by side under one
# protocol (bench/protocol.py: ours, HAPI, Medplum as shipped and with the profile parsed once, fhircraft,
# fhir.resources, json.loads; warmed until steady, pinned to one core, verdicts beside every time), mapping, and
# serving on equal terms (ours on SQLite and PostgreSQL, the HAPI FHIR JPA server with C2 on an H2 file). Each
# prints its tables, wall and CPU time, and writes bench/results/<part>-<date>.json (and .md, compare also .svg; not
# committed, bench/.gitignore: the README figures are, by make bench-readme). HAPI needs
# Java 17 and Maven (built on first use), Medplum Node and npm, fhircraft its own venv; a peer that cannot be
# installed is reported as "not run". QUICK=1: every part small (< 2 min on an idle 2-core machine).
# BENCH_PARTS=validation,compare,mapping,serving picks parts; BENCH_ARGS go to the validation part.
# `make bench-readme` rewrites the README's benchmark figures from the latest results (bench/readme.py).
.PHONY: bench bench-readme
BENCH_ARGS ?=
QUICK ?=
BENCH_PEERS := bench/medplum/node_modules/.installed $(if $(QUICK),,bench/fhircraft/.venv/.installed)
bench: $(VENV)/.installed-test $(BENCH_PEERS)
	QUICK=$(QUICK) $(PY) -m bench $(BENCH_ARGS)

bench-readme: $(VENV)/.installed-test
	$(PY) -m bench.readme

# The peers' installs may fail (no npm, no network): "-" goes on, and the benchmark reports them as not run.
bench/medplum/node_modules/.installed: bench/medplum/package.json bench/medplum/package-lock.json
	-cd bench/medplum && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed

bench/fhircraft/.venv/.installed: bench/fhircraft/requirements.txt
	-$(PYTHON) -m venv bench/fhircraft/.venv && bench/fhircraft/.venv/bin/pip install -q -r $< && touch $@
