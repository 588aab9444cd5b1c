# Two commands matter on a fresh machine: `make demo` and `make test`. Both run `make setup`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

STATIC := kokoro_lab/static/player.js

.PHONY: setup demo test test-fast lint bench docs clean

setup: $(STAMP) $(STATIC)

# Re-run setup only when the dependency list changes; `make setup` is otherwise a no-op.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs]'
	$(VENV)/bin/kokoro-lab assets --build
	touch $(STAMP)

# The browser player's source lives in extension/; the package serves the built copy, which is
# rebuilt whenever the source changes and is never edited by hand.
$(STATIC): extension/package.json extension/package-lock.json $(wildcard extension/src/*)
	cd extension && npm ci --no-audit --no-fund --silent && npm run --silent build

demo: setup
	mkdir -p artifacts
	$(VENV)/bin/kokoro-lab speak --file docs/sample.txt -o artifacts/demo.wav

test: setup
	$(VENV)/bin/ruff check kokoro_lab tests benchmarks
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not model and not ui and not asr"

lint: setup
	$(VENV)/bin/ruff check kokoro_lab tests benchmarks

bench: setup
	$(VENV)/bin/kokoro-lab bench --out benchmarks/results

# The site, with the notebooks executed headless first and rendered with their outputs.
docs: setup
	$(PY) docs/execute_notebooks.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) kokoro_lab/static extension/node_modules artifacts site build/docs-notebooks
