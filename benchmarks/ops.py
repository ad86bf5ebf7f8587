"""Forward+backward time of each op with its hand-written rule vs autodiff.

    python -m benchmarks.ops [--batch 128] [--repeats 15] [--json PATH]

Sizes are those of RefNet-MNIST at batch 128 (float32, channels-last): the two 3x3
SAME convolutions, 2x2 stride-2 max and average pooling on both feature maps, and
the two dense layers; plus one overlapping pool (3x3, stride 2, SAME) where the
autodiff path goes through XLA's select-and-scatter.

Each case is a jitted `jax.grad` of <op(inputs), g> with respect to every input (a
fixed random cotangent g), i.e. one forward and one backward. Both variants are
compiled and warmed up first, then timed alternately call by call (so drift of a
shared machine hits both alike) with `block_until_ready`; the figure is the median.
`ratio` is custom / autodiff: below 1 the hand rule is faster. On a shared machine
the numbers are indicative.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import cli
from fcnn.ops.conv import conv
from fcnn.ops.dense import dense
from fcnn.ops.pooling import avg_pool, max_pool


def cases(batch: int):
    """(name, op(*inputs, backward=...), input shapes) at RefNet-MNIST sizes."""
    out = [
        ("conv 28x28x1->32 3x3 SAME",
         lambda x, k, b, backward: conv(x, k, b, padding="SAME", backward=backward),
         [(batch, 28, 28, 1), (3, 3, 1, 32), (32,)]),
        ("conv 14x14x32->64 3x3 SAME",
         lambda x, k, b, backward: conv(x, k, b, padding="SAME", backward=backward),
         [(batch, 14, 14, 32), (3, 3, 32, 64), (64,)]),
    ]
    for name, op in (("maxpool", max_pool), ("avgpool", avg_pool)):
        for shape in ((batch, 28, 28, 32), (batch, 14, 14, 64)):
            out.append((
                f"{name} 2x2/2 on {shape[1]}x{shape[2]}x{shape[3]}",
                lambda x, backward, op=op: op(x, 2, 2, backward=backward),
                [shape],
            ))
    out.append((
        "maxpool 3x3/2 SAME on 28x28x32",
        lambda x, backward: max_pool(x, 3, 2, "SAME", backward=backward),
        [(batch, 28, 28, 32)],
    ))
    out += [
        ("dense 3136->128", lambda x, w, b, backward: dense(x, w, b, backward=backward),
         [(batch, 3136), (3136, 128), (128,)]),
        ("dense 128->10", lambda x, w, b, backward: dense(x, w, b, backward=backward),
         [(batch, 128), (128, 10), (10,)]),
    ]
    return out


def make_step(op, backward, n_inputs):
    def loss(*args):
        *inputs, g = args
        return jnp.vdot(op(*inputs, backward=backward), g)

    return jax.jit(jax.grad(loss, argnums=tuple(range(n_inputs))))


def measure(batch: int = 128, repeats: int = 15, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for name, op, shapes in cases(batch):
        inputs = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]
        out_shape = jax.eval_shape(lambda *a: op(*a, backward="custom"), *inputs).shape
        g = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
        steps = {b: make_step(op, b, len(inputs)) for b in ("custom", "autodiff")}
        times = {b: [] for b in steps}
        for step in steps.values():  # compile and warm up
            for _ in range(2):
                jax.block_until_ready(step(*inputs, g))
        for _ in range(repeats):
            for b, step in steps.items():
                start = time.perf_counter()
                jax.block_until_ready(step(*inputs, g))
                times[b].append(time.perf_counter() - start)
        custom = statistics.median(times["custom"]) * 1e3
        autodiff = statistics.median(times["autodiff"]) * 1e3
        rows.append(dict(op=name, custom_ms=custom, autodiff_ms=autodiff,
                         ratio=custom / autodiff, repeats=repeats))
    return rows


def table(rows) -> str:
    width = max(len(r["op"]) for r in rows)
    lines = [f"{'op (fwd+bwd)':<{width}}  {'custom ms':>10}  {'autodiff ms':>11}  "
             f"{'custom/autodiff':>15}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r['op']:<{width}}  {r['custom_ms']:>10.2f}  {r['autodiff_ms']:>11.2f}  "
                     f"{r['ratio']:>15.2f}")
    return "\n".join(lines)


def build_parser() -> cli.Parser:
    """The command line of the op benchmark."""
    p = cli.Parser(prog="python -m benchmarks.ops", description=__doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("--batch", type=cli.positive_int, default=128, metavar="N",
                   help="batch size of every op's input (default: 128, RefNet-MNIST's)")
    p.add_argument("--repeats", type=cli.positive_int, default=15, metavar="N",
                   help="timed calls per variant; the figure is their median (default: 15)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    rows = measure(args.batch, args.repeats)
    print(table(rows))
    env = dict(
        jax=jax.__version__, backend=jax.default_backend(), cpus=os.cpu_count(),
        machine=platform.machine(), python=platform.python_version(), batch=args.batch,
        seconds=round(time.perf_counter() - start, 1),
    )
    print(f"batch {args.batch}, float32, median of {args.repeats} calls; "
          f"{env['cpus']} CPUs, jax {env['jax']} ({env['backend']}); "
          "indicative on a shared machine")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(results=rows, env=env), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
