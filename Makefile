# Two commands matter on a fresh machine: `make demo` and `make test`. Both run `make setup`.
# `make setup GPU=1` gives the same .venv with ONNX Runtime's GPU build in place of the CPU one.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
UV_INSTALL := $(VENV)/bin/uv pip install --python $(PY)
UV_UNINSTALL := $(VENV)/bin/uv pip uninstall --python $(PY)

# kokoro-onnx requires the CPU `onnxruntime` wheel, and `onnxruntime-gpu` writes the same
# `onnxruntime` module: installed side by side, whichever came last wins and the other's files
# are half overwritten. So the GPU setup removes both and installs the GPU build alone (with
# the CUDA and cuDNN libraries from PyPI); pip then lists only `onnxruntime-gpu`.
# ORT_GPU_VERSION picks a release (onnxruntime-gpu <= 1.26 is built for CUDA 12, >= 1.27 for
# CUDA 13, which needs an NVIDIA driver >= 580); empty means the newest.
GPU ?=
ORT_GPU_VERSION ?=
ORT_GPU := onnxruntime-gpu[cuda,cudnn]$(if $(ORT_GPU_VERSION),==$(ORT_GPU_VERSION))
# One stamp per flavour (and GPU release), and each setup removes the others, so switching
# flavour or release re-runs it.
ifeq ($(GPU),1)
STAMP := $(VENV)/.setup-stamp-gpu$(if $(ORT_GPU_VERSION),-$(ORT_GPU_VERSION))
else
STAMP := $(VENV)/.setup-stamp
endif

STATIC := kokoro_lab/static/player.js

.PHONY: setup frontend demo test test-fast lint bench docs clean

setup: $(STAMP) $(STATIC)

frontend: $(STATIC)

# Re-run setup only when the dependency list changes; `make setup` is otherwise a no-op.
# uv installs the ~200 packages (fetched and unpacked in parallel: 19-23 s from a cold cache in
# fresh-clone runs, where pip took 38-51 s one wheel at a time) without byte-compiling them;
# compileall then compiles on every core, skipping the packages' own test suites, which nothing
# imports (16-19 s for all of site-packages, 25 s with them; pip's own compiling took 36 s).
# Left to import time instead, the compiling lands in the tests, in every worker and kernel that
# imports a module first.
# uv reads UV_INDEX_URL / UV_EXTRA_INDEX_URL for a package mirror, not pip.conf.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet uv
	$(UV_INSTALL) --quiet -e '.[test,docs]'
ifeq ($(GPU),1)
	$(PIP) uninstall --quiet -y onnxruntime onnxruntime-gpu
	$(PIP) install --quiet '$(ORT_GPU)'
else
# back from a GPU setup, the line above brought the CPU wheel over the GPU one's files
	if $(PIP) show --quiet onnxruntime-gpu 2>/dev/null; then \
	  $(UV_UNINSTALL) --quiet onnxruntime onnxruntime-gpu && \
	  $(UV_INSTALL) --quiet -e '.[test,docs]'; fi
endif
# The model and voices download (network) while the packages compile (CPU).
	$(VENV)/bin/kokoro-lab assets --build & assets=$$!; \
	$(PY) -m compileall -q -j 0 -x '/site-packages/.*/tests?/' \
	  "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null \
	  && wait $$assets
	rm -f $(VENV)/.setup-stamp $(VENV)/.setup-stamp-gpu*
	touch $(STAMP)

# The browser player's source lives in extension/; the package serves the built copy, which is
# rebuilt whenever the source changes and is never edited by hand.
$(STATIC): extension/package.json extension/package-lock.json $(wildcard extension/src/*)
	cd extension && npm ci --no-audit --no-fund --silent && npm run --silent build

demo: setup
	mkdir -p artifacts
	$(VENV)/bin/kokoro-lab speak --file docs/sample.txt -o artifacts/demo.wav

# The tiers run fast-first and the first failing one stops the run: lint, unit (the player's
# JavaScript rules in node, then Python with no model, no browser), model (the real Kokoro
# graph), ui (JupyterLab in Chromium). Each tier runs in several processes (pytest-xdist):
# the unit tier is CPU-bound, so WORKERS is the core count (an idle worker takes the tests
# queued for a busy one: --dist worksteal). The model tier runs one file per worker, longest
# first (its module fixtures, sessions and judges, are set up once; the order is in
# tests/model/conftest.py), in MODEL_WORKERS: three on two cores, because its kernels,
# notebooks and players also wait (measured back to back: 3 min 23 s against 4 min 17 s with
# two and 3 min 42 s with four; 4:14 against 5:08 later).
# The ui tier mostly waits for audio played in real time, so it runs UI_WORKERS, each with its
# own JupyterLab and Chromium (green five times in a row beside a CPU burner).
# WORKERS=0 MODEL_WORKERS=0 UI_WORKERS=0 runs each tier in one process.
WORKERS ?= 2
MODEL_WORKERS ?= 3
UI_WORKERS ?= 3
test: setup
	$(VENV)/bin/ruff check kokoro_lab tests benchmarks
	cd extension && npm test --silent
	$(PY) -m pytest -n $(WORKERS) --dist worksteal tests/unit
	$(PY) -m pytest -n $(MODEL_WORKERS) --dist loadfile --no-loadscope-reorder tests/model
	$(PY) -m pytest -n $(UI_WORKERS) tests/ui

test-fast: setup
	cd extension && npm test --silent
	$(PY) -m pytest -n $(WORKERS) --dist worksteal tests/unit

lint: setup
	$(VENV)/bin/ruff check kokoro_lab tests benchmarks

bench: setup
	$(VENV)/bin/kokoro-lab bench --out benchmarks/results

# The site, with the notebooks executed headless first and rendered with their outputs.
docs: setup
	$(PY) docs/execute_notebooks.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) kokoro_lab/static extension/node_modules artifacts site build/docs-notebooks \
	  build/gpu-* build/gpu_matrix_cpu build/trt-cache
