# keyparty: `make run` sets everything up and serves; `make test` sets up and tests.
VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
# Debian packages: `system-run` ensures what keyparty needs at run time (gnupg)
# and to build its venv; `system-test` adds what the browser tests need:
# Debian's Chromium (driven by Playwright; no Playwright browser download) and
# fonts that render Japanese.
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

.PHONY: setup system system-run system-test run test lint format bench fixtures fuzz clean

setup: system-run $(STAMP)

# Installs the Debian packages listed in $$missing with apt when run as root;
# otherwise says exactly what to install and fails. $(1) says who needs them.
define apt_install
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "Installing:$$missing"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
  else \
    echo "$(1) need:$$missing. Install with: sudo apt-get install$$missing"; exit 1; \
  fi; \
fi
endef

system: system-run system-test

# What `make run` needs: gnupg, python3-venv.
system-run:
	@missing=""; \
	command -v gpg >/dev/null 2>&1 || missing="$$missing gnupg"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	$(call apt_install,keyparty's run-time and build steps)

# What `make test` needs on top: chromium, fonts-noto-cjk (with their
# dependencies about 130 packages, 200 MB to download, 620 MB installed;
# about half a minute).
system-test: system-run
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	[ -e $(CJK_FONT) ] || missing="$$missing fonts-noto-cjk"; \
	$(call apt_install,keyparty's browser tests)

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

test: system-test setup lint
	$(BIN)/pytest

# The packet reader fuzz test for longer than `make test` runs it (about ten minutes).
fuzz: setup
	KEYPARTY_FUZZ_EXAMPLES=20000 $(BIN)/pytest -q tests/test_fuzz.py

bench: setup
	$(BIN)/python bench/import.py
	$(BIN)/python bench/phones.py
	$(BIN)/python bench/sign.py
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/export.py

fixtures: setup
	$(BIN)/python gnupg-home-fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
