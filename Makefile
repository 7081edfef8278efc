# keyparty: `make run` sets everything up and serves; `make test` sets up and tests.
VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
# Debian packages: `system-run` ensures what keyparty needs at run time (gnupg)
# and to build its venv, and graphviz (the report's graph); `system-test` adds
# what the tests need: Debian's Chromium (driven by Playwright; no Playwright
# browser download), fonts that render Japanese, and signing-party (caff and
# gpgsigs read the party list in tests/test_signing_party.py).
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

.PHONY: setup system system-run system-test run test lint format bench bench-big fixtures fuzz clean \
	translations translations-extract translations-update translations-compile

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

# What `make run` needs: gnupg, graphviz, python3-venv.
system-run:
	@missing=""; \
	command -v gpg >/dev/null 2>&1 || missing="$$missing gnupg"; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	$(call apt_install,keyparty's run-time and build steps)

# What `make test` needs on top: chromium, fonts-noto-cjk (with their
# dependencies about 130 packages, 200 MB to download, 620 MB installed;
# about half a minute), PostgreSQL's server for the second run
# (tests/pg.sh starts a throw-away cluster; the system's own is not used),
# and the other OpenPGP tools the interoperability tests drive: Sequoia's sq
# and rnp (tests/test_interop.py).
system-test: system-run
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	[ -e $(CJK_FONT) ] || missing="$$missing fonts-noto-cjk"; \
	command -v caff >/dev/null 2>&1 || missing="$$missing signing-party"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v sq >/dev/null 2>&1 || missing="$$missing sq"; \
	command -v rnp >/dev/null 2>&1 || missing="$$missing rnp"; \
	$(call apt_install,keyparty's tests)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# setuptools always notes that an editable install is one; nothing else is printed.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install -q -e '.[test]'
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

# The whole suite on each database: SQLite, then PostgreSQL (a throw-away
# cluster, tests/pg.sh). KEYPARTY_TEST_DATABASES=sqlite for a quick loop.
# Each run spreads the test files over TEST_PROCESSES pytest processes
# (pytest-xdist; TEST_PROCESSES=0 runs them in this one, in order).
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile
test: system-test setup lint
	@for database in $$(echo "$${KEYPARTY_TEST_DATABASES:-sqlite,postgresql}" | tr ',' ' '); do \
	  case "$$database" in \
	    sqlite) echo "== the tests on SQLite"; $(PYTEST) || exit 1;; \
	    postgresql) echo "== the tests on PostgreSQL"; tests/pg.sh $(PYTEST) || exit 1;; \
	    *) echo "KEYPARTY_TEST_DATABASES: no database '$$database' (sqlite, postgresql)"; exit 1;; \
	  esac; \
	done

# The packet reader fuzz test for longer than `make test` runs it (about ten minutes).
fuzz: setup
	KEYPARTY_FUZZ_EXAMPLES=20000 $(BIN)/pytest -q tests/test_fuzz.py

bench: setup
	$(BIN)/python bench/import.py
	$(BIN)/python bench/phones.py
	$(BIN)/python bench/sign.py
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/abuse.py
	$(BIN)/python bench/reader.py
	$(BIN)/python bench/proof.py
	$(BIN)/python bench/deliver.py
	tests/pg.sh $(BIN)/python bench/phones.py --phones 1000 --workers 2

# The 1000-attendee event on both databases (the first run makes and caches
# 50 000 certifications with gpg, about 16 minutes; bench/README.md).
bench-big: setup
	$(BIN)/python bench/big_event.py
	$(BIN)/python bench/big_event.py --database postgresql

# Translations (gettext, Babel): `make translations` extracts every marked sentence
# (babel.cfg; keywords below: the gettext calls, the N_ marker and the sentence argument
# of the refusal constructors) into $(POT), merges it into each
# keyparty/translations/<lang>/LC_MESSAGES/messages.po (new sentences come in
# untranslated: a translator fills them in) and compiles the .mo files, which are
# committed so that keyparty runs without Babel's command line.
# tests/test_translations.py runs the same extraction and lists what is missing.
# Sentences a branch still wrote into the old keyparty/translations/ja.json move over with
# `$(BIN)/python scripts/json_to_po.py` before `make translations`.
PYBABEL        ?= $(BIN)/pybabel
POT            ?= build/messages.pot
TRANSLATIONS   := keyparty/translations
BABEL_KEYWORDS := -k N_ -k lazy_gettext -k Refusal:2 -k KeyRefusal:2 -k Rejected:4 \
                  -k _refuse:2 -k _malformed:2

translations: setup
	$(MAKE) --no-print-directory translations-update translations-compile

translations-extract:
	@mkdir -p $(dir $(POT))
	$(PYBABEL) -q extract -F babel.cfg $(BABEL_KEYWORDS) --no-location --sort-output \
	  --no-wrap --project=keyparty -o $(POT) .

translations-update: translations-extract
	$(PYBABEL) -q update -i $(POT) -d $(TRANSLATIONS) --no-wrap --ignore-obsolete \
	  --no-fuzzy-matching

translations-compile:
	$(PYBABEL) -q compile -d $(TRANSLATIONS) --statistics

fixtures: setup
	$(BIN)/python gnupg-home-fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
