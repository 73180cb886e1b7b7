# The two commands that matter: `make run` and `make test`. Both bootstrap .venv idempotently.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install build browser promtool run test check fmt bench docs clean fuzz

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The widget and the dashboard (web/ → frontdesk/web/static): `npm ci` when the lock file
# changes, the build when any source changes; otherwise nothing (like the .venv stamp).
WEB_SOURCES := $(shell find web -path web/node_modules -prune -o -type f \( -name '*.ts' -o -name '*.css' -o -name '*.mjs' -o -name '*.json' -o -name '*.svelte' -o -name '*.js' -o -name '*.html' \) -print 2>/dev/null)
NODE_STAMP := web/node_modules/.ci-stamp
BUILD_STAMP := frontdesk/web/static/.build-stamp

$(NODE_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

$(BUILD_STAMP): $(NODE_STAMP) $(WEB_SOURCES)
	cd web && npm run build
	touch $(BUILD_STAMP)

build: $(BUILD_STAMP)

# Headless Chromium for the browser tests (Debian's package; installed only when missing).
browser:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# promtool for the metrics tests (Debian's prometheus package; installed only when missing). The
# package's install script would start a Prometheus server on :9090: a policy-rc.d that says "no"
# (the machine's own if it has one, else one added for the install and removed after) prevents
# that, and on a systemd machine the unit the package enables is disabled again.
promtool:
	command -v promtool >/dev/null || { \
	  added=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added=1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	  status=$$?; if [ -n "$$added" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  if [ $$status -eq 0 ] && [ -d /run/systemd/system ]; then systemctl disable --now prometheus; fi; \
	  exit $$status; }

run: install build
	$(VENV)/bin/frontdesk serve --demo

test: install build browser promtool
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m pytest $(PYTEST_ARGS) -m browser tests/browser

check: install
	$(VENV)/bin/ruff format --check frontdesk tests bench
	$(VENV)/bin/ruff check frontdesk tests bench
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format frontdesk tests bench
	$(VENV)/bin/ruff check --fix frontdesk tests bench

bench: install
	bash bench/run_all.sh

docs: install
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache

fuzz: install
	FRONTDESK_FUZZ_EXAMPLES=500 $(PY) -m pytest tests/fuzz -q
