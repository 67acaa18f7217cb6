# One command each for running, testing and linting Hashroom; CI calls the same targets.
# Needs only make and Python 3.11+ (node and npm, when present, add the Bluesky PDS tests).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: make reinstalls only when pyproject.toml is newer.
INSTALLED := $(VENV)/.installed
BLUESKY_PEER_INSTALL := tests/peers/bluesky/install.sh

.DEFAULT_GOAL := help
.PHONY: help install migrate run test lint format bench clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "Hashroom needs Python 3.11 or newer: run make PYTHON=python3.12 (or similar)"; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(INSTALLED) ## Create .venv and install the project with its dev tools

migrate: $(INSTALLED) ## Bring the database (DATABASE_URL) up to the latest schema
	$(BIN)/alembic upgrade head

run: migrate ## Migrate, then serve on HOST:PORT (default http://127.0.0.1:8000)
	$(BIN)/python -m app

test: $(INSTALLED) ## Run the whole test suite
	@if [ ! -f $(BLUESKY_PEER_INSTALL) ]; then \
		:; \
	elif command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		bash $(BLUESKY_PEER_INSTALL); \
	else \
		echo "Node.js 20 and npm not found: the Bluesky reference PDS tests will skip"; \
	fi
	$(BIN)/pytest -q

lint: $(INSTALLED) ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(INSTALLED) ## Run the fan-out benchmark
	$(BIN)/python bench/fanout.py

clean: ## Remove caches and build leftovers (keeps .venv, the database and bench results)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . \( -path ./$(VENV) -o -name node_modules \) -prune \
		-o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## Also remove .venv and the installed Bluesky test server
	rm -rf $(VENV) tests/peers/bluesky/node_modules
