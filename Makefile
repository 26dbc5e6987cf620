# smsproxy — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run test lint format migrations-check clean bench

help:
	@echo "make run    serve smsproxy on http://$(HOST):$(PORT) (SQLite, sandbox provider, delivery worker)"
	@echo "make test   run the test suite"
	@echo "make lint   ruff, mypy and the import-layer contracts (import-linter)"
	@echo "make bench  the benchmarks of bench/RESULTS.md (PostgreSQL on 127.0.0.1; ~15 min); QUICK=1: < 5 min"

# The virtualenv is rebuilt when the requirements change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "smsproxy needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

# Local development settings, so that `.venv/bin/python manage.py ...` in another terminal
# sees the same debug settings as `make run`. An existing .env is never touched.
.env:
	@printf '%s\n' '# Local development settings, written by `make run`; .env.example lists every variable.' 'DJANGO_DEBUG=on' > $@
	@echo "Wrote .env for local development (DJANGO_DEBUG=on)."

# The development server and the embedded delivery worker run side by side; Ctrl-C stops both,
# and when one of them exits (say the port is taken) the other is stopped too (`kill 0`: the
# whole process group), so `make run` never lingers half-started.
# HOST and PORT reach the server, the worker and the admin login's message (PUBLIC_BASE_URL,
# when unset, is derived from them), and .run/base-url records them for commands run from
# another terminal (simulate_sms, provision_numbers): `make run PORT=18400` is followed through.
run: export DJANGO_DEBUG ?= 1
run: export HOST := $(HOST)
run: export PORT := $(PORT)
# The server and the delivery worker count into one directory, so /metrics shows both.
run: export PROMETHEUS_MULTIPROC_DIR := $(CURDIR)/.run/prometheus
run: install .env
	@mkdir -p .run && echo "http://$(HOST):$(PORT)" > .run/base-url
	@rm -rf .run/prometheus && mkdir -p .run/prometheus
	$(PY) manage.py migrate --noinput
	$(PY) manage.py local_admin --if-local
	@echo "Serving http://$(HOST):$(PORT)/ (admin: http://$(HOST):$(PORT)/admin/). Ctrl-C stops."
	@trap 'trap - INT TERM; kill 0' INT TERM; \
	( $(PY) manage.py run_outbox; echo "The delivery worker stopped: stopping smsproxy."; kill 0 ) & \
	( $(PY) manage.py runserver $(HOST):$(PORT) --noreload; echo "The server stopped: stopping smsproxy."; kill 0 ) & \
	wait

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy smsproxy tests
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The benchmarks of bench/RESULTS.md: the web side over HTTP (bench/web.py: gunicorn per the
# Procfile, wrk, a throwaway PostgreSQL database; 1k/100k/1M conversations), then pool
# efficiency and delivery under throttling (bench/pool.py, bench/throttling.py) when present.
# QUICK=1: 100k conversations and short runs, under 5 minutes. BENCH_ARGS go to bench/web.py
# (e.g. BENCH_ARGS="--output web.md"). Every step runs; the status is 1 if any check failed.
BENCH_QUICK := $(if $(filter 1,$(QUICK)),--quick,)

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench: install $(VENV)/.bench-installed
	@status=0; \
	$(PY) -m bench.web $(BENCH_QUICK) $(BENCH_ARGS) || status=1; \
	for module in pool throttling; do \
		if [ -f bench/$$module.py ]; then $(PY) -m bench.$$module $(BENCH_QUICK) || status=1; \
		else echo "bench/$$module.py is not there: skipped."; fi; \
	done; \
	exit $$status

migrations-check: install
	DJANGO_DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
