# The two commands that matter: `make run` and `make test`. Both bootstrap .venv idempotently.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test check fmt bench docs clean fuzz

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/frontdesk serve --demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

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
