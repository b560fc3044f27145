# Bootstrap a local virtual environment once, then run the demo or the tests.
# TORCH_SPEC is installed first so that the CPU wheel on this machine is used
# (a bare `torch` requirement would resolve to a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.decayprune-installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m decayprune demo

test: $(STAMP)
	$(PY) -m pytest -q

# Format check, lint and types (the doctests of every module run inside `make test`).
lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
