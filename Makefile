# fcnn: `make run` (main job), `make test` (the test command), `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Two pytest workers: XLA compiles dominate the suite and the machine has two cores.
PYTEST_WORKERS ?= 2

.PHONY: run test test-slow test-mutations bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e ".[test,experiments,onednn]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m experiments.compare_activations

test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow

# `make test-mutations`: applies each mutation of tests/mutations.py (small slips in the
# backward rules) alone to a scratch copy of the repository, runs the tests that should
# catch it, prints a table and fails unless every mutation is caught.
# MUTATION_ARGS="--only NAME ..." runs some of them.
MUTATION_ARGS ?=
test-mutations: $(VENV)/.installed
	$(PY) tests/run_mutations.py $(MUTATION_ARGS)

# `make bench`: RefNet-MNIST step time of fcnn and its peers (flax, equinox, haiku,
# stax, PyTorch) in a separate virtualenv, so the test env stays untouched. tcmalloc
# (apt-get install libtcmalloc-minimal4) is preloaded for the second half of the runs.
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?= --frameworks fcnn,stax,linen,equinox,haiku,torch --batch 128 32 --steps 50 --rounds 3 --allocator both
BENCH_OUT  ?= runs/bench

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check -q install -e ".[bench,onednn]"
	touch $@

bench: $(BENCH_VENV)/.installed
	mkdir -p $(BENCH_OUT)
	$(BENCH_VENV)/bin/python -m benchmarks.refnet $(BENCH_ARGS) --json $(BENCH_OUT)/refnet.json
	$(BENCH_VENV)/bin/python -m benchmarks.report $(BENCH_OUT)/refnet.json --out $(BENCH_OUT)/refnet.md
	$(BENCH_VENV)/bin/python -m benchmarks.ops --json $(BENCH_OUT)/ops.json

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache build *.egg-info
