# fcnn: `make run` (main job), `make test` (the test command), `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Two pytest workers: XLA compiles dominate the suite and the machine has two cores.
PYTEST_WORKERS ?= 2

.PHONY: run test test-slow bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e ".[test,experiments]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m fcnn.main

test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
