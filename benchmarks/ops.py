"""Forward+backward time of each op: hand-written rule vs autodiff vs PyTorch.

    python -m benchmarks.ops [--batch 128] [--repeats 15] [--json PATH]

Sizes are those of RefNet-MNIST at batch 128 (float32, channels-last): the two 3x3
SAME convolutions, 2x2 stride-2 max and average pooling on both feature maps, and
the two dense layers; plus one overlapping pool (3x3, stride 2, SAME) where the
autodiff path goes through XLA's select-and-scatter.

Each case is a jitted `jax.grad` of <op(inputs), g> with respect to every input (a
fixed random cotangent g), i.e. one forward and one backward. Both variants are
compiled and warmed up first, then timed alternately call by call (so drift of a
shared machine hits both alike) with `block_until_ready`; the figure is the median.
`ratio` is custom / autodiff: below 1 the hand rule is faster. When PyTorch is
installed (the `bench` extra), the same op runs in it too (NCHW, its native layout;
`y.backward(g)` on leaf tensors that require gradients), timed in the same
alternation, and `ratio_torch` is custom / PyTorch. The overlapping pool pads (1, 1)
in PyTorch where SAME pads (0, 1): same output size, same work. PyTorch runs with
`--torch-threads` threads (default 1): its OpenMP workers spin while they wait, and
in one process with XLA's thread pool more of them slow both down. On a shared machine
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


def torch_cases():
    """The PyTorch op for each case name, taking NCHW / (out, in) tensors."""
    import torch.nn.functional as F

    conv = lambda x, k, b: F.conv2d(x, k, b, padding=1)
    return {
        "conv 28x28x1->32 3x3 SAME": conv,
        "conv 14x14x32->64 3x3 SAME": conv,
        "maxpool 2x2/2 on 28x28x32": lambda x: F.max_pool2d(x, 2, 2),
        "maxpool 2x2/2 on 14x14x64": lambda x: F.max_pool2d(x, 2, 2),
        "avgpool 2x2/2 on 28x28x32": lambda x: F.avg_pool2d(x, 2, 2),
        "avgpool 2x2/2 on 14x14x64": lambda x: F.avg_pool2d(x, 2, 2),
        "maxpool 3x3/2 SAME on 28x28x32": lambda x: F.max_pool2d(x, 3, 2, padding=1),
        "dense 3136->128": F.linear,
        "dense 128->10": F.linear,
    }


def to_torch_layout(array: np.ndarray, kind: str) -> np.ndarray:
    """NHWC -> NCHW for 4-d activations, HWIO -> OIHW for kernels, (in, out) -> (out, in)."""
    if kind == "kernel" and array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if kind == "kernel":
        return array.T
    if array.ndim == 4:
        return array.transpose(0, 3, 1, 2)
    return array


def make_torch_step(op, inputs: list[np.ndarray], g: np.ndarray):
    """A call running op's forward and backward in PyTorch on copies of `inputs`."""
    import torch

    kinds = ["activation", "kernel", "bias"][: len(inputs)]
    leaves = [torch.tensor(np.ascontiguousarray(to_torch_layout(a, k)), requires_grad=True)
              for a, k in zip(inputs, kinds)]
    g_t = torch.tensor(np.ascontiguousarray(to_torch_layout(g, "activation")))

    def step():
        for leaf in leaves:
            leaf.grad = None
        op(*leaves).backward(g_t)
        return [leaf.grad for leaf in leaves]

    return step


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def make_step(op, backward, n_inputs):
    def loss(*args):
        *inputs, g = args
        return jnp.vdot(op(*inputs, backward=backward), g)

    return jax.jit(jax.grad(loss, argnums=tuple(range(n_inputs))))


def measure(batch: int = 128, repeats: int = 15, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    torch_ops = torch_cases() if torch_available() else {}
    rows = []
    for name, op, shapes in cases(batch):
        arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
        inputs = [jnp.asarray(a) for a in arrays]
        out_shape = jax.eval_shape(lambda *a: op(*a, backward="custom"), *inputs).shape
        g_array = rng.normal(size=out_shape).astype(np.float32)
        g = jnp.asarray(g_array)
        steps = {}
        for b in ("custom", "autodiff"):
            jitted = make_step(op, b, len(inputs))
            steps[b] = lambda jitted=jitted: jax.block_until_ready(jitted(*inputs, g))
        if name in torch_ops:
            steps["torch"] = make_torch_step(torch_ops[name], arrays, g_array)
        times = {b: [] for b in steps}
        for step in steps.values():  # compile and warm up
            for _ in range(2):
                step()
        for _ in range(repeats):
            for b, step in steps.items():
                start = time.perf_counter()
                step()
                times[b].append(time.perf_counter() - start)
        ms = {b: statistics.median(t) * 1e3 for b, t in times.items()}
        row = dict(op=name, custom_ms=ms["custom"], autodiff_ms=ms["autodiff"],
                   ratio=ms["custom"] / ms["autodiff"], repeats=repeats)
        if "torch" in ms:
            row.update(torch_ms=ms["torch"], ratio_torch=ms["custom"] / ms["torch"])
        rows.append(row)
    return rows


def table(rows) -> str:
    width = max(len(r["op"]) for r in rows)
    lines = [f"{'op (fwd+bwd)':<{width}}  {'custom ms':>10}  {'autodiff ms':>11}  "
             f"{'custom/autodiff':>15}  {'torch ms':>9}  {'custom/torch':>12}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        torch_ms = f"{r['torch_ms']:>9.2f}" if "torch_ms" in r else f"{'n/a':>9}"
        ratio_torch = f"{r['ratio_torch']:>12.2f}" if "ratio_torch" in r else f"{'n/a':>12}"
        lines.append(f"{r['op']:<{width}}  {r['custom_ms']:>10.2f}  {r['autodiff_ms']:>11.2f}  "
                     f"{r['ratio']:>15.2f}  {torch_ms}  {ratio_torch}")
    return "\n".join(lines)


def build_parser() -> cli.Parser:
    """The command line of the op benchmark."""
    p = cli.Parser(prog="python -m benchmarks.ops", description=__doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("--batch", type=cli.positive_int, default=128, metavar="N",
                   help="batch size of every op's input (default: 128, RefNet-MNIST's)")
    p.add_argument("--repeats", type=cli.positive_int, default=15, metavar="N",
                   help="timed calls per variant; the figure is their median (default: 15)")
    p.add_argument("--torch-threads", type=cli.positive_int, default=1, metavar="N",
                   help="PyTorch's intra-op threads, when it is installed (default: 1)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if torch_available():
        import torch

        torch.set_num_threads(args.torch_threads)
    start = time.perf_counter()
    rows = measure(args.batch, args.repeats)
    print(table(rows))
    env = dict(
        jax=jax.__version__, backend=jax.default_backend(), cpus=os.cpu_count(),
        machine=platform.machine(), python=platform.python_version(), batch=args.batch,
        seconds=round(time.perf_counter() - start, 1),
    )
    if torch_available():
        import torch

        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    torch_note = (f", torch {env['torch']} ({env['torch_threads']} thread(s))"
                  if "torch" in env else ", PyTorch not installed")
    print(f"batch {args.batch}, float32, median of {args.repeats} calls; "
          f"{env['cpus']} CPUs, jax {env['jax']} ({env['backend']}){torch_note}; "
          "indicative on a shared machine")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(results=rows, env=env), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
