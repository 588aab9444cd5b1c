# Two commands matter on a fresh machine: `make demo` and `make test`. Both run `make setup`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test test-fast lint bench assets clean

setup: $(STAMP)

# Re-run setup only when the dependency list changes; `make setup` is otherwise a no-op.
$(STAMP): pyproject.toml Makefile $(wildcard extension/package*.json)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(MAKE) --no-print-directory frontend
	$(VENV)/bin/kokoro-lab assets --build
	touch $(STAMP)

# The browser player's source lives in extension/; the package serves the built copy.
.PHONY: frontend
frontend:
	if [ -f extension/package.json ]; then \
	  cd extension && npm ci --no-audit --no-fund --silent && npm run --silent build; \
	fi

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

clean:
	rm -rf $(VENV) kokoro_lab/static extension/node_modules artifacts
