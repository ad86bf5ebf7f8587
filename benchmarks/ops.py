"""Per-op times: fcnn's hand-written rule vs autodiff vs PyTorch, and each conv pass.

    python -m benchmarks.ops [--models refnet,resnet20,vgg11_bn] [--batch 128]
        [--repeats 15] [--torch-threads N] [--quick] [--json PATH]

Two tables, at batch 128, float32, channels-last:

1. Layers, forward + backward: the ops of RefNet-MNIST (the two 3x3 SAME
   convolutions, 2x2 stride-2 max and average pooling on both feature maps, the two
   dense layers, plus one overlapping pool, 3x3 stride 2 SAME, where the autodiff path
   goes through XLA's select-and-scatter) and those of the CIFAR models that are not
   convolutions (BatchNorm in training mode at ResNet-20's and VGG-11-BN's widths,
   VGG's 2x2 max pools, ResNet-20's global average pool). Each case is a jitted
   `jax.grad` of <op(inputs), g> with respect to every input (a fixed random cotangent
   g), i.e. one forward and one backward, with `backward="custom"` (the hand rule) and
   `"autodiff"`; `ratio` is custom / autodiff (below 1 the hand rule is faster). When
   PyTorch is installed (the `bench` extra) the same op runs in it too (NCHW, its native
   layout; `y.backward(g)` on leaf tensors that require gradients) and `ratio_torch` is
   custom / PyTorch. The overlapping pool pads (1, 1) in PyTorch where SAME pads (0, 1):
   same output size, same work.

2. Convolution passes of ResNet-20 and VGG-11-BN (every distinct 3x3 convolution of
   the two networks): forward y = conv(x, w), input gradient dx = J_x^T dy and kernel
   gradient dw = J_w^T dy, each timed alone, as fcnn runs them with `lowering="auto"`
   (the Conv layer's default: oneDNN's primitives from 8 input channels, the tap /
   col2im matrix-product lowerings and oneDNN's kernel gradient below; the `auto route`
   column names what ran), as XLA's convolution and its transposes (`lowering=None`,
   "xla"), and as PyTorch (F.conv2d and aten.convolution_backward, channels_last
   tensors, oneDNN inside). `auto/xla` and `auto/torch` are time ratios.

Every variant is compiled and warmed up first, then the variants of one case are timed
alternately call by call (so drift of a shared machine hits them alike) with
`block_until_ready`, idling `--settle-ms` after each call (OpenMP workers, PyTorch's,
spin for milliseconds after a parallel region and would otherwise steal a core from
the next variant); the figure is the median. PyTorch runs `--torch-threads` threads
(default: as many as the cores this process may use, which XLA uses too). On a
shared machine the numbers are indicative.
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
from fcnn.ops import lowering as conv_lowering
from fcnn.ops.conv import ConvConfig, conv, resolve_lowering
from fcnn.ops.dense import dense
from fcnn.ops.normalization import normalize
from fcnn.ops.pooling import avg_pool, global_avg_pool, max_pool

MODELS = ("refnet", "resnet20", "vgg11_bn")
# The distinct 3x3 convolutions (pad 1) of the CIFAR models: name -> (H, W, C_in,
# C_out, stride), the input of the convolution.
CONV_CASES = {
    "resnet20": {
        "resnet20 stem 32x32x3->16": (32, 32, 3, 16, 1),
        "resnet20 32x32x16->16": (32, 32, 16, 16, 1),
        "resnet20 32x32x16->32 /2": (32, 32, 16, 32, 2),
        "resnet20 16x16x32->32": (16, 16, 32, 32, 1),
        "resnet20 16x16x32->64 /2": (16, 16, 32, 64, 2),
        "resnet20 8x8x64->64": (8, 8, 64, 64, 1),
    },
    "vgg11_bn": {
        "vgg11 32x32x3->64": (32, 32, 3, 64, 1),
        "vgg11 16x16x64->128": (16, 16, 64, 128, 1),
        "vgg11 8x8x128->256": (8, 8, 128, 256, 1),
        "vgg11 8x8x256->256": (8, 8, 256, 256, 1),
        "vgg11 4x4x256->512": (4, 4, 256, 512, 1),
        "vgg11 4x4x512->512": (4, 4, 512, 512, 1),
        "vgg11 2x2x512->512": (2, 2, 512, 512, 1),
    },
}
PASSES = ("forward", "input_grad", "kernel_grad")


def cases(batch: int, models=MODELS):
    """(name, op(*inputs, backward=...), input shapes) at the sizes of `models`."""
    out = []
    if "refnet" in models:
        out += refnet_cases(batch)
    bn_shapes = []
    if "resnet20" in models:
        bn_shapes += [(batch, 32, 32, 16), (batch, 16, 16, 32), (batch, 8, 8, 64)]
    if "vgg11_bn" in models:
        bn_shapes += [(batch, 32, 32, 64), (batch, 16, 16, 128), (batch, 8, 8, 256)]
    for shape in bn_shapes:
        out.append((
            f"batchnorm (train) {shape[1]}x{shape[2]}x{shape[3]}",
            lambda x, s, b, backward: normalize(x, s, b, axes=(0, 1, 2), backward=backward)[0],
            [shape, shape[-1:], shape[-1:]],
        ))
    if "vgg11_bn" in models:
        for shape in ((batch, 32, 32, 64), (batch, 16, 16, 128), (batch, 8, 8, 256)):
            out.append((
                f"maxpool 2x2/2 on {shape[1]}x{shape[2]}x{shape[3]}",
                lambda x, backward: max_pool(x, 2, 2, backward=backward),
                [shape],
            ))
    if "resnet20" in models:
        out.append(("global avgpool 8x8x64",
                    lambda x, backward: global_avg_pool(x, backward=backward),
                    [(batch, 8, 8, 64)]))
    return out


def refnet_cases(batch: int):
    """RefNet-MNIST's ops."""
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
    ops = {
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
    bn = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    for size in ("32x32x16", "16x16x32", "8x8x64", "32x32x64", "16x16x128", "8x8x256"):
        ops[f"batchnorm (train) {size}"] = bn
        ops[f"maxpool 2x2/2 on {size}"] = lambda x: F.max_pool2d(x, 2, 2)
    ops["global avgpool 8x8x64"] = lambda x: x.mean(dim=(2, 3))
    return ops


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


def time_alternately(steps: dict, repeats: int, warmup: int = 2, settle: float = 0.0) -> dict:
    """{key: median ms}, calling the steps in turn, idling `settle` s after each call."""
    for step in steps.values():  # compile and warm up
        for _ in range(warmup):
            step()
    times = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
            if settle:
                time.sleep(settle)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}


def measure(batch: int = 128, repeats: int = 15, seed: int = 0, models=MODELS,
            settle: float = 0.0) -> list[dict]:
    """Table 1: forward + backward of each layer, custom vs autodiff vs PyTorch."""
    rng = np.random.default_rng(seed)
    torch_ops = torch_cases() if torch_available() else {}
    rows = []
    for name, op, shapes in cases(batch, models):
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
        ms = time_alternately(steps, repeats, settle=settle)
        row = dict(op=name, custom_ms=ms["custom"], autodiff_ms=ms["autodiff"],
                   ratio=ms["custom"] / ms["autodiff"], repeats=repeats)
        if "torch" in ms:
            row.update(torch_ms=ms["torch"], ratio_torch=ms["custom"] / ms["torch"])
        rows.append(row)
        print(line(row), flush=True)
    return rows


def conv_geometry(case, batch: int):
    h, w, c_in, c_out, s = case
    config = ConvConfig(strides=(s, s), pads=((1, 1), (1, 1)), dilation=(1, 1),
                        input_dilation=(1, 1), groups=1)
    x_shape, k_shape = (batch, h, w, c_in), (3, 3, c_in, c_out)
    y_shape = (batch, (h - 1) // s + 1, (w - 1) // s + 1, c_out)
    return config, x_shape, k_shape, y_shape


def _route_pass(name: str, kind: str):
    """The function of one pass of a lowering route entry other than "xla"."""
    if name == "onednn":
        from fcnn.ops import onednn

        return getattr(onednn, f"conv_{kind}")
    return getattr(conv_lowering, name)


def conv_pass_steps(case, batch: int, rng) -> tuple[dict, dict]:
    """({(variant, pass): call}, {pass: what 'auto' runs}) for one convolution."""
    config, x_shape, k_shape, y_shape = conv_geometry(case, batch)
    x, k, dy = (jnp.asarray(rng.normal(size=s).astype(np.float32))
                for s in (x_shape, k_shape, y_shape))
    cfg = dict(strides=config.strides, pads=config.pads, dilation=config.dilation,
               input_dilation=config.input_dilation, groups=config.groups)

    def xla_fwd(x, k):
        return lax.conv_general_dilated(x, k, config.strides, config.pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    fns = {
        ("xla", "forward"): (xla_fwd, (x, k)),
        ("xla", "input_grad"): (lambda x, k, dy: jax.vjp(lambda x: xla_fwd(x, k), x)[1](dy)[0],
                                (x, k, dy)),
        ("xla", "kernel_grad"): (lambda x, k, dy: jax.vjp(lambda k: xla_fwd(x, k), k)[1](dy)[0],
                                 (x, k, dy)),
    }
    route = resolve_lowering("auto", x_shape, k_shape, config, jnp.float32)
    for kind, entry in zip(PASSES, route):
        if entry == "xla":
            fns[("auto", kind)] = fns[("xla", kind)]
            continue
        fn = _route_pass(entry, kind)
        if kind == "forward":
            fns[("auto", kind)] = (lambda x, k, fn=fn: fn(x, k, **cfg), (x, k))
        elif kind == "input_grad":
            fns[("auto", kind)] = (lambda dy, k, fn=fn: fn(dy, k, x_shape, **cfg), (dy, k))
        else:
            fns[("auto", kind)] = (lambda x, dy, fn=fn: fn(x, dy, k_shape, **cfg), (x, dy))
    steps = {}
    for key, (fn, args) in fns.items():
        jitted = jax.jit(fn)
        steps[key] = lambda jitted=jitted, args=args: jax.block_until_ready(jitted(*args))
    return steps, dict(zip(PASSES, route))


def torch_conv_pass_steps(case, batch: int, rng) -> dict:
    """{("torch", pass): call} in float32, channels_last."""
    import torch
    import torch.nn.functional as F

    h, w, c_in, c_out, s = case
    cl = torch.channels_last
    x = torch.tensor(rng.normal(size=(batch, c_in, h, w)).astype(np.float32)).to(memory_format=cl)
    wt = torch.tensor(rng.normal(size=(c_out, c_in, 3, 3)).astype(np.float32)).to(memory_format=cl)
    dy = torch.tensor(rng.normal(size=(batch, c_out, (h - 1) // s + 1, (w - 1) // s + 1))
                      .astype(np.float32)).to(memory_format=cl)

    def backward(mask):
        return torch.ops.aten.convolution_backward(
            dy, x, wt, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, mask)

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, wt, stride=s, padding=1)

    return {("torch", "forward"): fwd,
            ("torch", "input_grad"): lambda: backward([True, False, False]),
            ("torch", "kernel_grad"): lambda: backward([False, True, False])}


def measure_conv_passes(batch: int = 128, repeats: int = 15, seed: int = 0, models=MODELS,
                        settle: float = 0.0) -> list[dict]:
    """Table 2: each pass of each distinct convolution of the CIFAR models."""
    rng = np.random.default_rng(seed + 1)
    with_torch = torch_available()
    rows = []
    for model in models:
        for name, case in CONV_CASES.get(model, {}).items():
            steps, route = conv_pass_steps(case, batch, rng)
            if with_torch:
                steps.update(torch_conv_pass_steps(case, batch, rng))
            _, x_shape, k_shape, _ = conv_geometry(case, batch)
            flops = 2 * int(np.prod(conv_geometry(case, batch)[3])) * 9 * case[2]
            for kind in PASSES:
                ms = time_alternately({v: f for (v, p), f in steps.items() if p == kind},
                                      repeats, settle=settle)
                row = dict(model=model, conv=name, pass_=kind, route=route[kind],
                           auto_ms=ms["auto"], xla_ms=ms["xla"],
                           auto_over_xla=ms["auto"] / ms["xla"], gflop=flops / 1e9,
                           auto_gflops=flops / ms["auto"] / 1e6, repeats=repeats)
                if "torch" in ms:
                    row.update(torch_ms=ms["torch"], auto_over_torch=ms["auto"] / ms["torch"])
                rows.append(row)
                print(conv_line(row), flush=True)
    return rows


def line(r: dict) -> str:
    torch_ms = f"{r['torch_ms']:>9.2f}" if "torch_ms" in r else f"{'n/a':>9}"
    ratio_torch = f"{r['ratio_torch']:>12.2f}" if "ratio_torch" in r else f"{'n/a':>12}"
    return (f"{r['op']:<32}  {r['custom_ms']:>10.2f}  {r['autodiff_ms']:>11.2f}  "
            f"{r['ratio']:>15.2f}  {torch_ms}  {ratio_torch}")


HEADER = (f"{'op (fwd+bwd)':<32}  {'custom ms':>10}  {'autodiff ms':>11}  "
          f"{'custom/autodiff':>15}  {'torch ms':>9}  {'custom/torch':>12}")


def table(rows) -> str:
    return "\n".join([HEADER, "-" * len(HEADER)] + [line(r) for r in rows])


CONV_HEADER = (f"{'convolution':<28} {'pass':<11} {'auto route':<24} {'auto ms':>8} "
               f"{'xla ms':>8} {'torch ms':>8} {'auto/xla':>8} {'auto/torch':>10} "
               f"{'auto GFLOP/s':>12}")


def conv_line(r: dict) -> str:
    torch_ms = f"{r['torch_ms']:>8.2f}" if "torch_ms" in r else f"{'n/a':>8}"
    ratio = f"{r['auto_over_torch']:>10.2f}" if "auto_over_torch" in r else f"{'n/a':>10}"
    return (f"{r['conv']:<28} {r['pass_']:<11} {r['route']:<24} {r['auto_ms']:>8.2f} "
            f"{r['xla_ms']:>8.2f} {torch_ms} {r['auto_over_xla']:>8.2f} {ratio} "
            f"{r['auto_gflops']:>12.1f}")


def build_parser() -> cli.Parser:
    """The command line of the op benchmark."""
    p = cli.Parser(prog="python -m benchmarks.ops", description=__doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("--models", type=cli.name_list(MODELS, "models"), default=",".join(MODELS),
                   metavar="NAME,NAME,...",
                   help=f"whose layers to time, from {','.join(MODELS)} (default: all)")
    p.add_argument("--batch", type=cli.positive_int, default=128, metavar="N",
                   help="batch size of every op's input (default: 128)")
    p.add_argument("--repeats", type=cli.positive_int, default=None, metavar="N",
                   help="timed calls per variant; the figure is their median (default: 15, "
                        "3 with --quick)")
    p.add_argument("--torch-threads", type=cli.positive_int, default=None, metavar="N",
                   help="PyTorch's intra-op threads, when it is installed (default: the "
                        "cores this process may use)")
    p.add_argument("--settle-ms", type=cli.nonnegative_float, default=25.0, metavar="MS",
                   help="idle time after every timed call (default: 25)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 3 timed calls per variant unless --repeats is given")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    models = tuple(args.models)
    repeats = args.repeats or (3 if args.quick else 15)
    threads = args.torch_threads or len(os.sched_getaffinity(0))
    if torch_available():
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    print(HEADER, flush=True)
    rows = measure(args.batch, repeats, models=models, settle=args.settle_ms / 1e3)
    conv_rows = []
    if any(m in CONV_CASES for m in models):
        print("\n" + CONV_HEADER, flush=True)
        conv_rows = measure_conv_passes(args.batch, repeats, models=models,
                                        settle=args.settle_ms / 1e3)
    env = dict(
        jax=jax.__version__, backend=jax.default_backend(), cpus=os.cpu_count(),
        threads=len(os.sched_getaffinity(0)), machine=platform.machine(),
        python=platform.python_version(), batch=args.batch, repeats=repeats,
        models=list(models), settle_ms=args.settle_ms,
        seconds=round(time.perf_counter() - start, 1),
    )
    try:
        from fcnn.ops import onednn

        env["onednn"] = onednn.version() if onednn.available() else None
    except Exception as err:  # noqa: BLE001 - recorded, never fatal
        env["onednn"] = f"unavailable: {err}"
    if torch_available():
        import torch

        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    torch_note = (f", torch {env['torch']} ({env['torch_threads']} thread(s))"
                  if "torch" in env else ", PyTorch not installed")
    print(f"batch {args.batch}, float32, median of {repeats} calls; "
          f"{env['cpus']} CPUs, jax {env['jax']} ({env['backend']}), oneDNN {env['onednn']}"
          f"{torch_note}; {env['seconds']} s; indicative on a shared machine")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(results=rows, conv_passes=conv_rows, env=env), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
