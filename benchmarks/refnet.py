"""Training-step speed of RefNet-MNIST in fcnn and its peers, in one run.

    python -m benchmarks.refnet --frameworks fcnn,stax,linen,equinox,haiku,torch \
        --batch 128 32 --steps 50 --rounds 3 --allocator both --json runs/bench.json

`benchmarks.bench` with the defaults this command always had: RefNet-MNIST only, batch
128, 50 timed steps after 10 warm-up steps, 3 rounds, the default allocator, the
six frameworks without `torch_cl`. Every option of `benchmarks.bench` works here too
(`--models resnet20,vgg11_bn`, `--allocator mimalloc`, ...); see its docstring for
how the processes are run, timed and summarised, and `make bench` for the full run.
"""

from __future__ import annotations

from benchmarks import bench
from benchmarks.bench import (  # the names this module always had
    ROOT,
    TCMALLOC_PATHS,
    child_env,
    find_mimalloc,
    find_tcmalloc,
    median,
    run_child,
    summarise,
)


__all__ = ["ROOT", "TCMALLOC_PATHS", "build_parser", "child_env", "find_mimalloc",
           "find_tcmalloc", "main", "median", "parse_args", "run_child", "summarise"]


def build_parser():
    """The command line; building and parsing it imports no peer framework."""
    return bench.build_parser(
        prog="python -m benchmarks.refnet", description=__doc__.splitlines()[0],
        models=("refnet",), frameworks=("fcnn", "stax", "linen", "equinox", "haiku", "torch"),
        batch=(128,), steps=50, warmup=10, allocator="default")


def parse_args(argv=None):
    return bench.parse_args(argv, build_parser())


def main(argv=None) -> dict:
    # find_tcmalloc is looked up here at call time, so that it can be replaced.
    return bench.run(parse_args(argv), find_tcmalloc_fn=lambda: find_tcmalloc())


if __name__ == "__main__":
    main()
