# gatelab: the two commands. `make demo` runs the main job, `make test` the test suite.
# Both create .venv (Python 3.11+) and install the project into it when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The main job: Greff's variants, lstm, gru and mgu x 5 seeds on MNIST-1D, then the report.
demo: $(STAMP)
	$(VENV)/bin/gatelab sweep configs/mnist1d.py:demo --workdir runs/demo
	$(VENV)/bin/gatelab report runs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check gatelab tests experiments configs
	$(VENV)/bin/ruff format --check gatelab tests experiments configs

clean:
	rm -rf $(VENV) .pytest_cache
