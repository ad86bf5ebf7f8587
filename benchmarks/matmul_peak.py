"""The float32 matrix-multiply rate XLA reaches on this machine, in GFLOP/s.

A square (n, n) @ (n, n) product costs 2 n^3 FLOP; the best of a few sizes is the
practical peak against which a training step's FLOP rate is compared. Run as
`python -m benchmarks.matmul_peak` (prints one JSON line, as the peers do).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from fcnn import cli

SIZES = (512, 1024, 2048)


def measure(sizes=SIZES, repeats: int = 10) -> dict:
    """Median time of `repeats` jitted products per size; returns GFLOP/s per size."""
    import jax
    import jax.numpy as jnp

    dot = jax.jit(jnp.dot)
    rates = {}
    for n in sizes:
        rng = np.random.RandomState(n)
        a = jnp.asarray(rng.standard_normal((n, n)).astype(np.float32))
        b = jnp.asarray(rng.standard_normal((n, n)).astype(np.float32))
        dot(a, b).block_until_ready()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            dot(a, b).block_until_ready()
            times.append(time.perf_counter() - t)
        rates[str(n)] = 2.0 * n**3 / float(np.median(times)) / 1e9
    return {"gflops_by_size": rates, "matmul_peak_gflops": max(rates.values()),
            "jax": jax.__version__}


def build_parser() -> cli.Parser:
    """The command line of the matmul peak."""
    p = cli.Parser(prog="python -m benchmarks.matmul_peak",
                   description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--repeats", type=cli.positive_int, default=10, metavar="N",
                   help="timed products per size; the figure is their median (default: 10)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    sys.stdout.write("RESULT " + json.dumps(measure(repeats=args.repeats)) + "\n")


if __name__ == "__main__":
    main()
