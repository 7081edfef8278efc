# keyparty: `make run` sets everything up and serves; `make test` sets up and tests.
VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
# Debian packages keyparty needs at run time (gnupg) and to build its venv.
APT_RUN := gnupg python3-venv

.PHONY: setup system run test lint format bench fixtures clean

setup: system $(STAMP)

# Installs missing system packages with apt when run as root; otherwise says
# exactly what to install.
system:
	@missing=""; \
	command -v gpg >/dev/null 2>&1 || missing="$$missing gnupg"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "keyparty needs:$$missing. Install with: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: setup
	$(BIN)/keyparty init
	$(BIN)/keyparty serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: setup lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/import.py

fixtures: setup
	$(BIN)/python gnupg-home-fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
