"""Convolution passes on the CPU: XLA vs oneDNN called from jitted JAX vs PyTorch.

    python -m benchmarks.onednn_conv [--batch 128] [--repeats 20] [--dtypes float32,bfloat16]
        [--cases mnist2,cifar16] [--threads N] [--settle-ms 25] [--no-torch] [--json PATH]

For each convolution of RefNet-MNIST (28x28x1->32, 14x14x32->64) and ResNet-20 on
CIFAR-10 (stem 32x32x3->16, the 3x3 convs at 32x32x16, 16x16x32, 8x8x64 and the two
stride-2 transitions) and VGG-11 on CIFAR-10 (the 8x8, 4x4 and 2x2 maps, where the
kernel gradient's route depends on the map size), at batch 128, channels-last, times
each pass alone:
    fwd    y  = conv(x, w)
    dgrad  dx = J_x^T dy   (input gradient)
    wgrad  dw = J_w^T dy   (kernel gradient)
as `xla` (lax.conv_general_dilated and its vjp, jitted), `onednn` (fcnn.ops.onednn,
oneDNN's primitives as XLA FFI custom calls, jitted) and `torch` (F.conv2d and
aten.convolution_backward with a (dx, dw) output mask, channels_last tensors, oneDNN
inside). Every variant is compiled and warmed up, then the variants of one pass are
called alternately (so drift of a shared machine hits them alike) with
block_until_ready, idling `--settle-ms` after each call (libgomp's workers, PyTorch's
included, spin-wait for milliseconds after a parallel region and would otherwise
steal a core from whichever variant runs next). The figures are the median wall time
and the median process CPU time of `--repeats` calls (CPU time / wall time is about 2
when both cores work; CPU time also counts OpenMP workers that spin while they wait).

Threads: `--threads N` (default: all cores) pins the process to N CPUs before any
backend starts, so XLA sizes its pool to N (oneDNN's batch chunks run on that pool in
fcnn's default FCNN_ONEDNN_THREADING=xla; with =omp, oneDNN runs FCNN_ONEDNN_THREADS=N
OpenMP threads) and PyTorch runs N intra-op threads. On a machine shared with other
work, `--threads 1` and the CPU-time columns give figures that the other work barely
moves (OpenMP teams of 2 wait at every barrier for a descheduled member: 2-thread
timings then jump in steps of the scheduler's time slice). PyTorch pads the stride-2
transitions (1, 1) where SAME pads (0, 1): same output size, same work.
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
from jax import lax

from fcnn import cli
from fcnn.ops import onednn

# name -> (H, W, C_in, C_out, window, stride)
CASES = {
    "mnist1": (28, 28, 1, 32, 3, 1),
    "mnist2": (14, 14, 32, 64, 3, 1),
    "cifar_stem": (32, 32, 3, 16, 3, 1),
    "cifar16": (32, 32, 16, 16, 3, 1),
    "cifar32": (16, 16, 32, 32, 3, 1),
    "cifar64": (8, 8, 64, 64, 3, 1),
    "cifar16to32": (32, 32, 16, 32, 3, 2),
    "cifar32to64": (16, 16, 32, 64, 3, 2),
    "vgg8": (8, 8, 256, 256, 3, 1),
    "vgg4to512": (4, 4, 256, 512, 3, 1),
    "vgg4": (4, 4, 512, 512, 3, 1),
    "vgg2": (2, 2, 512, 512, 3, 1),
}
PASSES = ("fwd", "dgrad", "wgrad")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def describe(name: str) -> str:
    h, w, c_in, c_out, k, s = CASES[name]
    return f"{h}x{w}x{c_in}->{c_out} {k}x{k}" + (f" /{s}" if s > 1 else "")


def same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return (total // 2, total - total // 2)


def geometry(name: str, batch: int):
    h, w, c_in, c_out, k, s = CASES[name]
    pads = (same_pads(h, k, s), same_pads(w, k, s))
    x_shape, k_shape = (batch, h, w, c_in), (k, k, c_in, c_out)
    y_shape = (batch, -(-h // s), -(-w // s), c_out)
    return x_shape, k_shape, y_shape, (s, s), pads


def jax_steps(name: str, batch: int, dtype, rng) -> dict:
    """{(variant, pass): zero-argument call} for xla and onednn at this dtype."""
    x_shape, k_shape, y_shape, strides, pads = geometry(name, batch)
    x, k, dy = (jnp.asarray(rng.normal(size=s).astype(np.float32)).astype(dtype)
                for s in (x_shape, k_shape, y_shape))

    def xla_fwd(x, k):
        return lax.conv_general_dilated(x, k, strides, pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    fns = {
        ("xla", "fwd"): (xla_fwd, (x, k)),
        ("xla", "dgrad"): (lambda x, k, dy: jax.vjp(lambda x: xla_fwd(x, k), x)[1](dy)[0],
                           (x, k, dy)),
        ("xla", "wgrad"): (lambda x, k, dy: jax.vjp(lambda k: xla_fwd(x, k), k)[1](dy)[0],
                           (x, k, dy)),
    }
    if onednn.supports(x_shape, k_shape, strides, pads, 1, 1, 1, dtype):
        fns.update({
            ("onednn", "fwd"): (lambda x, k: onednn.conv_forward(x, k, strides, pads), (x, k)),
            ("onednn", "dgrad"): (
                lambda dy, k: onednn.conv_input_grad(dy, k, x_shape, strides, pads), (dy, k)),
            ("onednn", "wgrad"): (
                lambda x, dy: onednn.conv_kernel_grad(x, dy, k_shape, strides, pads), (x, dy)),
        })
    steps = {}
    for key, (fn, args) in fns.items():
        jitted = jax.jit(fn)
        steps[key] = lambda jitted=jitted, args=args: jax.block_until_ready(jitted(*args))
    return steps


def torch_steps(name: str, batch: int, rng) -> dict:
    """{("torch", pass): call} in float32, channels_last."""
    import torch
    import torch.nn.functional as F

    h, w, c_in, c_out, k, s = CASES[name]
    cl = torch.channels_last
    x = torch.tensor(rng.normal(size=(batch, c_in, h, w)).astype(np.float32)).to(memory_format=cl)
    wt = torch.tensor(rng.normal(size=(c_out, c_in, k, k)).astype(np.float32)).to(memory_format=cl)
    y_hw = (-(-h // s), -(-w // s))
    dy = torch.tensor(rng.normal(size=(batch, c_out, *y_hw)).astype(np.float32)).to(memory_format=cl)
    pad = k // 2

    def backward(mask):
        return torch.ops.aten.convolution_backward(
            dy, x, wt, None, [s, s], [pad, pad], [1, 1], False, [0, 0], 1, mask)

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, wt, stride=s, padding=pad)

    return {("torch", "fwd"): fwd,
            ("torch", "dgrad"): lambda: backward([True, False, False]),
            ("torch", "wgrad"): lambda: backward([False, True, False])}


def time_alternately(steps: dict, repeats: int, warmup: int, settle: float = 0.0) -> dict:
    """{key: (median wall ms, median CPU ms)} timing the steps call by call in turn,
    idling `settle` seconds after each call."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall = {key: [] for key in steps}
    cpu = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            c0, t0 = time.process_time(), time.perf_counter()
            step()
            t1, c1 = time.perf_counter(), time.process_time()
            wall[key].append(t1 - t0)
            cpu[key].append(c1 - c0)
            time.sleep(settle)
    return {key: (statistics.median(wall[key]) * 1e3, statistics.median(cpu[key]) * 1e3)
            for key in steps}


def measure(cases, batch: int, repeats: int, warmup: int, dtypes, with_torch: bool,
            settle: float = 0.025) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name in cases:
        x_shape, k_shape, _, strides, pads = geometry(name, batch)
        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            steps = jax_steps(name, batch, dtype, rng)
            if with_torch and dtype_name == "float32":
                steps.update(torch_steps(name, batch, rng))
            for p in PASSES:
                timed = time_alternately({k: v for k, v in steps.items() if k[1] == p},
                                         repeats, warmup, settle)
                row = dict(case=name, shape=describe(name), batch=batch, dtype=dtype_name,
                           pass_=p, repeats=repeats)
                for (variant, _), (ms, cpu) in timed.items():
                    row[f"{variant}_ms"] = ms
                    row[f"{variant}_cpu_ms"] = cpu
                pass_name = {"fwd": "forward", "dgrad": "input_grad", "wgrad": "kernel_grad"}[p]
                row["onednn_impl"] = onednn.implementation(
                    pass_name, x_shape, k_shape, strides, pads, 1, 1, 1, dtype)
                if "onednn_ms" in row:
                    row["onednn_over_xla"] = row["onednn_ms"] / row["xla_ms"]
                    if "torch_ms" in row:
                        row["onednn_over_torch"] = row["onednn_ms"] / row["torch_ms"]
                rows.append(row)
                print(line(row), flush=True)
    return rows


HEADER = (f"{'case':<12} {'shape':<20} {'dtype':<8} {'pass':<5} {'xla ms':>8} {'onednn':>8} "
          f"{'torch':>8} {'dnn/xla':>7} {'dnn/trch':>8}  {'CPU ms xla,dnn,torch':<20} oneDNN impl")


def line(r: dict) -> str:
    def f(key, fmt):
        return format(r[key], fmt) if key in r else format("n/a", ">" + fmt.lstrip(">").split(".")[0])

    cpu = ",".join(f"{r[k]:.1f}" if k in r else "-" for k in
                   ("xla_cpu_ms", "onednn_cpu_ms", "torch_cpu_ms"))
    return (f"{r['case']:<12} {r['shape']:<20} {r['dtype']:<8} {r['pass_']:<5} "
            f"{f('xla_ms', '>8.2f')} {f('onednn_ms', '>8.2f')} {f('torch_ms', '>8.2f')} "
            f"{f('onednn_over_xla', '>7.2f')} {f('onednn_over_torch', '>8.2f')}  "
            f"{cpu:<20} {r['onednn_impl']}")


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m benchmarks.onednn_conv",
                   description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--batch", type=cli.positive_int, default=128, metavar="N",
                   help="batch size (default: 128)")
    p.add_argument("--repeats", type=cli.positive_int, default=20, metavar="N",
                   help="timed calls per variant and pass; figures are medians (default: 20)")
    p.add_argument("--warmup", type=cli.positive_int, default=3, metavar="N",
                   help="untimed calls first, compilation included (default: 3)")
    p.add_argument("--cases", type=cli.name_list(tuple(CASES), "cases"),
                   default=tuple(CASES), metavar="NAME,NAME,...",
                   help=f"comma-separated cases from {','.join(CASES)} (default: all)")
    p.add_argument("--dtypes", type=cli.name_list(tuple(DTYPES), "dtypes"),
                   default=("float32",), metavar="NAME,...",
                   help="float32 and/or bfloat16 (default: float32; PyTorch runs float32 only)")
    p.add_argument("--threads", type=cli.positive_int, default=None, metavar="N",
                   help="pin to the first N CPUs: XLA, oneDNN and PyTorch use N threads "
                        "(default: every CPU the process may use)")
    p.add_argument("--settle-ms", type=cli.nonnegative_float, default=25.0, metavar="MS",
                   help="idle time after every timed call, so that OpenMP workers spinning "
                        "after a PyTorch call do not land on the next variant (default: 25)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    return p


def pin(threads: int | None) -> int:
    """Restricts the process to `threads` CPUs (before XLA's and OpenMP's pools start)."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads is not None:
        if threads > len(cpus):
            raise cli.UsageError(f"--threads {threads}: only {len(cpus)} CPUs available")
        cpus = cpus[:threads]
        os.sched_setaffinity(0, cpus)
        os.environ["FCNN_ONEDNN_THREADS"] = str(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return len(cpus)


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        threads = pin(args.threads)
    except cli.UsageError as e:
        parser.error(str(e))
    if not onednn.available():
        print("oneDNN is unavailable (see the warning above): timing XLA (and PyTorch) only")
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch
        except ImportError:
            with_torch = False
        else:
            torch.set_num_threads(threads)
    start = time.perf_counter()
    print(HEADER)
    rows = measure(args.cases, args.batch, args.repeats, args.warmup, args.dtypes, with_torch,
                   args.settle_ms / 1e3)
    env = dict(jax=jax.__version__, onednn=onednn.version(), cpus=os.cpu_count(),
               threads=threads, xla_devices=str(jax.devices()),
               machine=platform.machine(), python=platform.python_version(),
               onednn_threads_env=os.environ.get("FCNN_ONEDNN_THREADS"),
               seconds=round(time.perf_counter() - start, 1))
    if with_torch:
        import torch

        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    print(f"batch {args.batch}, median of {args.repeats} calls; {threads} of {env['cpus']} CPUs, "
          f"jax {env['jax']}, oneDNN {env['onednn']}"
          + (f", torch {env['torch']} ({env['torch_threads']} threads)" if with_torch else "")
          + f"; {env['seconds']} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(results=rows, env=env), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
