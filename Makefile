# One command each for running, testing and linting Hashroom; CI calls the same targets.
# Needs only make and Python 3.11+ (node and npm, when present, add the Bluesky PDS tests).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: make reinstalls when pyproject.toml or the lock is newer.
INSTALLED := $(VENV)/.installed
# Exact versions with PyPI's hashes, resolved from pyproject.toml by `make lock`: every install
# gets the same packages. The runtime lock feeds the Dockerfile, the dev lock (runtime + the
# `dev` extra) this Makefile and so CI.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
# One resolution valid on every platform and Python the project supports (not just this one),
# so the container's Python and a Mac find their packages in the same lock.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command 'make lock'
# Extra resolver options for `make lock`, e.g. --upgrade or --upgrade-package httpx.
LOCK_ARGS ?=
# The PostgreSQL server `make test-pg` uses; each test creates and drops its own database.
TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
BLUESKY_PEER_INSTALL := tests/peers/bluesky/install.sh
# Slow test files `make test` runs in its second process, beside the browser tests, so both
# processes take about as long.
SECOND_HALF := tests/test_bench.py tests/test_live.py tests/test_calendar.py tests/test_fuzz_api.py tests/test_catchup.py

.DEFAULT_GOAL := help
.PHONY: help install lock migrate run test test-pg lint format bench bench-smoke bench-ingest bench-catchup bench-cluster mutants clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "Hashroom needs Python 3.11 or newer: run make PYTHON=python3.12 (or similar)"; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps -e .
	touch $@

install: $(INSTALLED) ## Create .venv and install the project with its dev tools from the lock

# The dev lock first; the runtime lock is held to its versions, so the two never disagree.
# Versions already locked stay unless pyproject.toml rules them out or LOCK_ARGS asks.
# Installs first only when .venv has no uv: a lock that no longer installs (a merge conflict,
# a bad pin) can still be regenerated with the uv already there.
lock: ## Re-resolve requirements*.lock from pyproject.toml (LOCK_ARGS=--upgrade)
	@[ -x $(BIN)/uv ] || $(MAKE) --no-print-directory install
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(LOCK_ARGS) -o $(DEV_LOCK)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -c $(DEV_LOCK) -o $(LOCK)

migrate: $(INSTALLED) ## Bring the database (DATABASE_URL) up to the latest schema
	$(BIN)/alembic upgrade head

run: migrate ## Migrate, then serve on HOST:PORT (default http://127.0.0.1:8000)
	$(BIN)/python -m app

test: $(INSTALLED) ## Run the whole test suite (SQLite, then the PostgreSQL pass)
	@if [ ! -f $(BLUESKY_PEER_INSTALL) ]; then \
		:; \
	elif command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		bash $(BLUESKY_PEER_INSTALL); \
	else \
		echo "Node.js 20 and npm not found: the Bluesky reference PDS tests will skip"; \
	fi
	@# Two pytest processes side by side (the machines this runs on have two cores and the
	@# tests spend much of their time waiting on servers and browsers): the Chromium and
	@# reference-PDS tests plus a few slow files, whose report follows, and everything else.
	@mkdir -p build; \
	( $(BIN)/pytest -q -p no:cacheprovider -m "(browser or pds) and not cluster"; a=$$?; \
	  $(BIN)/pytest -q -p no:cacheprovider -m "not browser and not pds and not cluster" \
		$(SECOND_HALF); b=$$?; [ $$a -eq 0 ] && [ $$b -eq 0 ] ) > build/test-second.log 2>&1 & \
	second=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider -m "not browser and not pds and not cluster" \
		$(addprefix --ignore=,$(SECOND_HALF)); \
	first=$$?; wait $$second; second_rc=$$?; \
	echo "== Chromium, reference-PDS and $(SECOND_HALF) (build/test-second.log)"; \
	cat build/test-second.log; \
	[ $$first -eq 0 ] && [ $$second_rc -eq 0 ]
	@$(MAKE) --no-print-directory test-pg

test-pg: $(INSTALLED) ## PostgreSQL pass: cluster tests and `db` tests on TEST_DATABASE_URL
	TEST_DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/pytest -q -m "db or cluster"

lint: $(INSTALLED) ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(INSTALLED) ## Run every benchmark, each beside its baseline, and print one table
	$(BIN)/python bench/all.py

bench-smoke: $(INSTALLED) ## Each benchmark in a tiny run: proves they all still run
	$(BIN)/python bench/all.py --smoke

bench-ingest: $(INSTALLED) ## Ingest throughput: the real ingester beside raw batched inserts (SQLite, PostgreSQL)
	$(BIN)/python bench/ingest.py

bench-cluster: $(INSTALLED) ## Cross-process delivery latency and CPU (PostgreSQL + redis-server)
	$(BIN)/python bench/cluster.py

bench-catchup: $(INSTALLED) ## 1,000 clients 300 events behind reconnect at once (catch-up storm)
	$(BIN)/python bench/catchup.py

# Mutation testing (mutmut 2): each module is mutated one change at a time, and the tests
# that own it must fail. It runs on a copy of the committed tree (REV, default HEAD) under
# build/mutants-REV/, so the working tree is never touched and two revisions can be compared;
# reports land in build/mutants-report-REV/. Slow (minutes to hours per module): not part of
# `make test` or CI. MUTANT_RUNS picks a subset, e.g. make mutants MUTANT_RUNS="text events".
REV ?= HEAD
MUTANTS_DIR = build/mutants-$(REV)
MUTANTS_REPORT = build/mutants-report-$(REV)
MUTANT_RUNS ?= text events live hub security
MUTANTS_TEXT := app/text.py|tests/test_text.py tests/test_sanitize.py
MUTANTS_EVENTS := app/events.py|tests/test_events.py tests/test_live.py
MUTANTS_LIVE := app/routes/live.py|tests/test_live.py tests/test_live_windows.py
MUTANTS_HUB := app/hub.py|tests/test_live_windows.py tests/test_live.py
MUTANTS_SECURITY := app/security.py|tests/test_security.py tests/test_moderation.py tests/test_live_windows.py

mutants: $(INSTALLED) ## Mutation-test the core modules (slow; see docs/development.md)
	@rm -rf $(MUTANTS_DIR) && mkdir -p $(MUTANTS_DIR) $(MUTANTS_REPORT)
	git archive $(REV) | tar -x -C $(MUTANTS_DIR)
	@for run in $(MUTANT_RUNS); do \
		case $$run in \
			text) spec='$(MUTANTS_TEXT)';; events) spec='$(MUTANTS_EVENTS)';; \
			live) spec='$(MUTANTS_LIVE)';; hub) spec='$(MUTANTS_HUB)';; \
			security) spec='$(MUTANTS_SECURITY)';; *) echo "unknown run $$run"; exit 1;; \
		esac; \
		module=$${spec%%|*}; tests=""; \
		for t in $${spec#*|}; do [ -f $(MUTANTS_DIR)/$$t ] && tests="$$tests $$t"; done; \
		echo "== $$module <-$$tests"; \
		( cd $(MUTANTS_DIR) && rm -f .mutmut-cache && \
		  CI=true $(CURDIR)/$(BIN)/mutmut run --paths-to-mutate $$module --no-progress \
			--simple-output --runner "$(CURDIR)/$(BIN)/python -m pytest -x -q -p no:cacheprovider$$tests" \
			> $(CURDIR)/$(MUTANTS_REPORT)/$$run.log 2>&1; \
		  $(CURDIR)/$(BIN)/mutmut results > $(CURDIR)/$(MUTANTS_REPORT)/$$run.txt 2>&1; \
		  $(CURDIR)/$(BIN)/python -c 'import sqlite3, sys; rows = dict(sqlite3.connect(".mutmut-cache").execute("select status, count(*) from mutant group by status")); n = sum(rows.values()); k = rows.get("ok_killed", 0) + rows.get("ok_suspicious", 0) + rows.get("bad_timeout", 0); print(f"{sys.argv[1]}: {k}/{n} killed ({100 * k / max(n, 1):.1f}%)", rows)' $$module \
			> $(CURDIR)/$(MUTANTS_REPORT)/$$run.score; \
		  for id in $$($(CURDIR)/$(BIN)/mutmut result-ids survived); do \
			$(CURDIR)/$(BIN)/mutmut show $$id; done \
			> $(CURDIR)/$(MUTANTS_REPORT)/$$run.survivors.diff 2>&1 ); \
		cat $(MUTANTS_REPORT)/$$run.score; \
	done

clean: ## Remove caches and build leftovers (keeps .venv, the database and bench results)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . \( -path ./$(VENV) -o -name node_modules \) -prune \
		-o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## Also remove .venv and the installed Bluesky test server
	rm -rf $(VENV) tests/peers/bluesky/node_modules
