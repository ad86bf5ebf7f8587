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
	$(PIP) install -e ".[test,experiments,onednn,fast]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m experiments.compare_activations

# --durations=15 lists the slowest tests in every log: the suite should stay near 10 minutes.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=15

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow

# `make test-mutations`: applies each mutation of tests/mutations.py (small slips in the
# backward rules) alone to a scratch copy of the repository, runs the tests that should
# catch it, prints a table and fails unless every mutation is caught.
# MUTATION_ARGS="--only NAME ..." runs some of them.
MUTATION_ARGS ?=
test-mutations: $(VENV)/.installed
	$(PY) tests/run_mutations.py $(MUTATION_ARGS)

# `make bench`: training-step time of fcnn and its peers (stax, flax.linen, equinox,
# haiku, PyTorch eager, PyTorch channels_last on the CIFAR nets) on RefNet-MNIST
# (batch 128 and 32), ResNet-20 and VGG-11-BN (32x32x3, batch 128), each framework in
# a fresh process, 3 interleaved rounds, under glibc's malloc and a preloaded one
# (mimalloc from the cmeel-mimalloc wheel of the bench extra, else tcmalloc); then the
# per-op tables; then one page, $(BENCH_OUT)/report.md (docs/performance.md explains
# it). Peers install into a separate virtualenv, so the test env stays untouched.
# The run prints its estimated time first: about 65-70 min on two cores, most of it
# the XLA-based peers on VGG-11-BN (10-16 s a step); BENCH_ARGS="... --allocator default"
# halves it.
# BENCH_ARGS=--quick: a smoke run (1 round, 3 steps; the op tables with 3 calls).
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?= --models refnet,resnet20,vgg11_bn --frameworks fcnn,stax,linen,equinox,haiku,torch,torch_cl --rounds 3 --allocator both
OPS_ARGS   ?= $(if $(findstring --quick,$(BENCH_ARGS)),--quick,)
BENCH_OUT  ?= runs/bench

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check -q install -e ".[bench,onednn]"
	touch $@

bench: $(BENCH_VENV)/.installed
	mkdir -p $(BENCH_OUT)
	$(BENCH_VENV)/bin/python -m benchmarks.bench $(BENCH_ARGS) --json $(BENCH_OUT)/bench.json
	$(BENCH_VENV)/bin/python -m benchmarks.ops $(OPS_ARGS) --json $(BENCH_OUT)/ops.json
	$(BENCH_VENV)/bin/python -m benchmarks.report $(BENCH_OUT)/bench.json --ops $(BENCH_OUT)/ops.json --out $(BENCH_OUT)/report.md

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache build *.egg-info
