"""What every peer shares: the models' architectures, the data, the parameters, the timer.

Three models, each described once here as a list of layers (`MODELS`) that every
framework's module builds in its own idiom (channels-last in JAX, NCHW in PyTorch):

  refnet     RefNet-MNIST on (B, 28, 28, 1): conv 3x3x32 pad 1 + bias - ReLU - max pool
             2x2/2 - conv 3x3x64 + bias - ReLU - max pool - flatten (7*7*64) - dense 128
             - ReLU - dense 10. 421,642 parameters.
  resnet20   ResNet-20 for CIFAR-10 on (B, 32, 32, 3), as `fcnn.models.resnet_cifar(20)`:
             conv 3x3x16 (no bias) - BN - ReLU - 3 basic blocks of 16, 3 of 32, 3 of 64
             (the first of stages 2 and 3 with stride 2) - global average pool - dense
             10. A basic block is conv 3x3 - BN - ReLU - conv 3x3 - BN (convs without
             bias, pad 1), plus the shortcut, then ReLU; the shortcut is the identity, or
             where the shape changes He et al.'s option A: x[:, ::2, ::2] with zero
             channels appended after the existing ones (no parameters). 269,722.
  vgg11_bn   VGG-11-BN with the CIFAR head, as `fcnn.models.vgg(11, 10, head="cifar",
             batchnorm=True)`: [conv 3x3 pad 1 + bias - BN - ReLU] at 64, M, 128, M, 256,
             256, M, 512, 512, M, 512, 512, M (M a 2x2/2 max pool) - flatten (1x1x512)
             - dense 10. 9,231,114.

Training, the same everywhere: mean softmax cross-entropy on integer labels; SGD,
momentum 0.9, learning rate 0.01; BatchNorm in training mode (batch statistics,
epsilon 1e-5, running averages updated with weight 0.9 on the old value, PyTorch's
momentum 0.1).

Every framework starts from the *same* parameter values (drawn here with NumPy: He
normal weights, std sqrt(2 / fan_in), for convolutions and dense layers, zero biases,
BatchNorm scale 1 and shift 0) on the *same* batch, so the first-step losses agree
across frameworks to float32 rounding: that is the check that they all implement the
same model. Each framework's module also counts the parameters of the model it built,
asserts that the count is `param_count(model)` and that every shared array was used
exactly once, and prints the count. Parameters are drawn channels-last (conv kernels
HWIO, dense kernels (in, out), flatten order (h, w, c)); `to_channels_first` converts
them for the NCHW frameworks (PyTorch, Equinox).

Nothing here imports JAX or PyTorch: a framework's process loads only its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import NamedTuple

import numpy as np

LEARNING_RATE = 0.01
MOMENTUM = 0.9
NUM_CLASSES = 10
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # weight of the old running value (PyTorch: momentum=0.1)


# ----------------------------------------------------------------------------------
# The architectures, as data.

class Conv(NamedTuple):
    """k x k convolution, padding k // 2 on every side (pad 1 for 3x3)."""
    name: str
    cin: int
    cout: int
    k: int = 3
    stride: int = 1
    bias: bool = True


class BN(NamedTuple):
    name: str
    c: int


class Dense(NamedTuple):
    name: str
    fin: int
    fout: int


class Block(NamedTuple):
    """ResNet basic block: conv1 - bn1 - ReLU - conv2 - bn2, + shortcut, ReLU.

    Sub-layer names are `name + ".conv1"` etc. The shortcut is the identity when
    stride == 1 and cin == cout, otherwise option A (subsample, append zero channels).
    """
    name: str
    cin: int
    cout: int
    stride: int = 1

    def layers(self) -> tuple:
        return (Conv(self.name + ".conv1", self.cin, self.cout, 3, self.stride, False),
                BN(self.name + ".bn1", self.cout),
                Conv(self.name + ".conv2", self.cout, self.cout, 3, 1, False),
                BN(self.name + ".bn2", self.cout))

    @property
    def projects(self) -> bool:
        return self.stride != 1 or self.cin != self.cout


RELU = "relu"
MAXPOOL = "maxpool"          # 2x2 window, stride 2
FLATTEN = "flatten"
GLOBAL_AVG_POOL = "gap"      # mean over the spatial axes


class Model(NamedTuple):
    name: str
    image: tuple             # (H, W, C) of one input
    layers: tuple


def _refnet() -> Model:
    return Model("refnet", (28, 28, 1), (
        Conv("conv1", 1, 32), RELU, MAXPOOL,
        Conv("conv2", 32, 64), RELU, MAXPOOL,
        FLATTEN, Dense("dense1", 7 * 7 * 64, 128), RELU, Dense("dense2", 128, NUM_CLASSES),
    ))


def _resnet20() -> Model:
    layers = [Conv("stem", 3, 16, bias=False), BN("stem_bn", 16), RELU]
    c_in = 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            stride = 2 if stage > 1 and block == 1 else 1
            layers.append(Block(f"s{stage}b{block}", c_in, width, stride))
            c_in = width
    layers += [GLOBAL_AVG_POOL, Dense("fc", 64, NUM_CLASSES)]
    return Model("resnet20", (32, 32, 3), tuple(layers))


VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg11_bn() -> Model:
    layers, c_in = [], 3
    for i, entry in enumerate(VGG11):
        if entry == "M":
            layers.append(MAXPOOL)
            continue
        layers += [Conv(f"conv{i}", c_in, entry), BN(f"bn{i}", entry), RELU]
        c_in = entry
    layers += [FLATTEN, Dense("fc", 512, NUM_CLASSES)]
    return Model("vgg11_bn", (32, 32, 3), tuple(layers))


MODELS = {"refnet": _refnet(), "resnet20": _resnet20(), "vgg11_bn": _vgg11_bn()}


def param_layers(model: Model):
    """The layers holding parameters (Conv, BN, Dense), blocks opened, in order."""
    for layer in model.layers:
        if isinstance(layer, Block):
            yield from layer.layers()
        elif isinstance(layer, (Conv, BN, Dense)):
            yield layer


def param_shapes(model: Model) -> dict:
    """{"<layer>.<role>": shape}, channels-last, in the order of the forward pass.
    Roles: w and b for convolutions (HWIO) and dense layers (in, out); scale and bias
    for BatchNorm."""
    shapes = {}
    for layer in param_layers(model):
        if isinstance(layer, Conv):
            shapes[layer.name + ".w"] = (layer.k, layer.k, layer.cin, layer.cout)
            if layer.bias:
                shapes[layer.name + ".b"] = (layer.cout,)
        elif isinstance(layer, BN):
            shapes[layer.name + ".scale"] = (layer.c,)
            shapes[layer.name + ".bias"] = (layer.c,)
        else:
            shapes[layer.name + ".w"] = (layer.fin, layer.fout)
            shapes[layer.name + ".b"] = (layer.fout,)
    return shapes


def param_count(model: Model) -> int:
    return sum(int(np.prod(s)) for s in param_shapes(model).values())


def feature_shapes(model: Model):
    """(layer, (H, W, C) of its input) for every top-level layer, and the output size."""
    h, w, c = model.image
    out = []
    for layer in model.layers:
        out.append((layer, (h, w, c)))
        if isinstance(layer, (Conv, Block)):
            s = layer.stride
            h, w, c = (h + s - 1) // s, (w + s - 1) // s, layer.cout
        elif layer == MAXPOOL:
            h, w = h // 2, w // 2
        elif layer in (FLATTEN, GLOBAL_AVG_POOL):
            h, w, c = 1, 1, (h * w * c if layer == FLATTEN else c)
        elif isinstance(layer, Dense):
            h, w, c = 1, 1, layer.fout
    return out, c


def forward_flops_per_image(model: Model | str = "refnet") -> int:
    """Multiply-adds x 2 of the convolutions and dense layers (BatchNorm, ReLU,
    pooling and the residual sums left out). RefNet-MNIST: 8,482,304."""
    model = MODELS[model] if isinstance(model, str) else model
    total = 0
    for layer, (h, w, c) in feature_shapes(model)[0]:
        convs = layer.layers()[::2] if isinstance(layer, Block) else (layer,)
        for conv in convs:
            if isinstance(conv, Conv):
                s = conv.stride
                ho, wo = (h + s - 1) // s, (w + s - 1) // s
                total += 2 * ho * wo * conv.k * conv.k * conv.cin * conv.cout
                h, w = ho, wo
            elif isinstance(conv, Dense):
                total += 2 * conv.fin * conv.fout
    return total


def step_flops_per_image(model: Model | str = "refnet") -> int:
    """A training step counted as three forward passes (RefNet: about 25.4 MFLOP)."""
    return 3 * forward_flops_per_image(model)


# ----------------------------------------------------------------------------------
# Data and parameters.

def make_data(batch: int, seed: int = 0, image=(28, 28, 1)):
    """A fixed random batch: NHWC float32 images and int32 labels in [0, 10)."""
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((batch,) + tuple(image)).astype(np.float32)
    y = rng.randint(0, NUM_CLASSES, size=(batch,)).astype(np.int32)
    return x, y


def make_params(seed: int = 0, model: Model | str = "refnet") -> dict:
    """He-normal weights (std sqrt(2 / fan_in)), zero biases, BatchNorm scale 1 and
    shift 0; channels-last; {"<layer>.<role>": array} in forward order."""
    model = MODELS[model] if isinstance(model, str) else model
    rng = np.random.RandomState(seed + 1)
    params = {}
    for key, shape in param_shapes(model).items():
        role = key.rsplit(".", 1)[1]
        if role == "w":
            fan_in = int(np.prod(shape[:-1]))
            params[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif role == "scale":
            params[key] = np.ones(shape, np.float32)
        else:
            params[key] = np.zeros(shape, np.float32)
    return params


def flatten_input(model: Model):
    """(H, W, C) of the feature map that the model's FLATTEN flattens, or None."""
    for layer, hwc in feature_shapes(model)[0]:
        if layer == FLATTEN:
            return hwc
    return None


def to_channels_first(params: dict, model: Model | str = "refnet") -> dict:
    """The same parameters for an NCHW model: conv kernels OIHW, dense kernels
    (out, in), and the rows of the dense kernel after a flatten reordered from the
    (h, w, c) order to the (c, h, w) order in which an NCHW tensor flattens."""
    model = MODELS[model] if isinstance(model, str) else model
    hwc = flatten_input(model)
    after_flatten = None
    layers = list(model.layers)
    if hwc is not None:
        after_flatten = layers[layers.index(FLATTEN) + 1].name
    out = {}
    for key, value in params.items():
        name, role = key.rsplit(".", 1)
        if role == "w" and value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif role == "w":
            if name == after_flatten:
                h, w, c = hwc
                value = value.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
            value = value.T
        out[key] = np.ascontiguousarray(value)
    return out


class SharedParams:
    """The shared arrays, handed out by (layer, role); `check()` asserts that each
    was taken exactly once and that the framework's own count matches."""

    def __init__(self, params: dict):
        self.params = params
        self.taken: dict = {}

    def take(self, name: str, role: str, shape=None):
        key = f"{name}.{role}"
        if key not in self.params:
            raise KeyError(f"the framework's model has a parameter {key!r} that the "
                           f"shared model does not have")
        self.taken[key] = self.taken.get(key, 0) + 1
        value = self.params[key]
        if shape is not None:
            if int(np.prod(shape)) != value.size:
                raise ValueError(f"{key}: the framework's shape {tuple(shape)} does not hold "
                                 f"the shared {value.shape}")
            value = value.reshape(shape)
        return value

    def channels_first(self, model: Model) -> "SharedParams":
        """The same arrays in the NCHW layouts (`to_channels_first`), counted as taken
        from this object."""
        view = SharedParams(to_channels_first(self.params, model))
        view.taken = self.taken
        return view

    def check(self, counted: int, model: Model) -> int:
        missing = [k for k in self.params if k not in self.taken]
        twice = [k for k, n in self.taken.items() if n > 1]
        if missing or twice:
            raise AssertionError(f"{model.name}: shared parameters unused {missing}, "
                                 f"used twice {twice}")
        expected = param_count(model)
        if counted != expected:
            raise AssertionError(f"{model.name}: the framework's model has {counted:,} "
                                 f"parameters, expected {expected:,}")
        return counted


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------------
# The command line of a peer process, and the timer.

def _count(minimum: int):
    """An argparse type for an integer >= `minimum` (fcnn.cli is not imported here:
    it would load JAX into the PyTorch process and distort its memory figure)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _seconds(text: str) -> float:
    """An argparse type for a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number >= 0")
    return value


class _Parser(argparse.ArgumentParser):
    """One line on stderr and exit code 2 for a bad argument, like fcnn.cli.Parser."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description="Train one model for a few steps and time them "
                            "(run by benchmarks.bench, one process per framework).")
    p.add_argument("--model", choices=tuple(MODELS), default="refnet",
                   help=f"the architecture, one of {', '.join(MODELS)} (default: refnet)")
    p.add_argument("--batch", type=_count(1), default=128, help="images per step (default: 128)")
    p.add_argument("--steps", type=_count(1), default=50, help="timed steps (default: 50)")
    p.add_argument("--warmup", type=_count(0), default=10,
                   help="untimed steps before them, the first (compiling) one included (default: 10)")
    p.add_argument("--max-seconds", type=_seconds, default=0.0,
                   help="stop timing once the timed steps took this long, after at least "
                        "--min-steps of them (default: 0, no limit: all --steps)")
    p.add_argument("--min-steps", type=_count(1), default=3,
                   help="timed steps run whatever --max-seconds says (default: 3)")
    p.add_argument("--seed", type=_count(0), default=0,
                   help="seed of the shared batch and initial parameters (default: 0)")
    p.add_argument("--compile", action="store_true", help="torch only: torch.compile the model")
    p.add_argument("--channels-last", action="store_true",
                   help="torch only: model and input in channels_last memory format")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def time_steps(step, steps: int, warmup: int, max_seconds: float = 0.0,
               min_steps: int = 3) -> dict:
    """Times `step()`, which must run one full training step and return the loss as
    a Python float only once every output of the step is computed.

    The first call (tracing and compilation included) is reported as `compile_s`;
    `warmup` calls (the first included) are untimed, then `steps` calls are timed
    one by one, in wall-clock and in process CPU time; with `max_seconds` > 0 the
    timing stops early once the timed calls took that long and at least `min_steps`
    ran (a step of seconds needs fewer samples for a stable median).
    """
    t0 = time.perf_counter()
    loss_first = step()
    compile_s = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step()
    times, cpu = [], []
    loss = loss_first
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        loss = step()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if max_seconds > 0 and len(times) >= min_steps and sum(times) >= max_seconds:
            break
    ms = np.asarray(times) * 1e3
    return {
        "compile_s": compile_s,
        "step_ms": ms.tolist(),
        "step_ms_median": float(np.median(ms)),
        "steps_timed": len(times),
        # CPU time of the whole process (all threads, user + system) per step: with
        # one thread it is robust to other work on the machine; with more threads it
        # also counts spinning workers.
        "cpu_ms_median": float(np.median(cpu) * 1e3),
        "loss_first": float(loss_first),
        "loss_last": float(loss),
    }


def emit(result: dict) -> None:
    """Prints the one JSON line that `benchmarks.bench` reads."""
    result = dict(result)
    result["peak_rss_mb"] = peak_rss_mb()
    result["pid"] = os.getpid()
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def run(build, argv=None, **meta) -> None:
    """Parses the peer's arguments, builds its step with
    `build(args, model, shared, x, y)` -> (step, info), where `shared` is a
    `SharedParams` and info["param_count"] the framework's own count of its
    parameters; checks that count and prints it, then prints the timings."""
    args = parse_args(argv)
    model = MODELS[args.model]
    x, y = make_data(args.batch, args.seed, model.image)
    shared = SharedParams(make_params(args.seed, model))
    step, info = build(args, model, shared, x, y)
    count = shared.check(info["param_count"], model)
    print(f"PARAMS {meta.get('framework', '?')} {model.name} {count}", flush=True)
    result = time_steps(step, args.steps, args.warmup, args.max_seconds, args.min_steps)
    result.update(info)
    result.update(meta)
    result["model"] = model.name
    result["batch"] = args.batch
    emit(result)


def skip(reason: str) -> None:
    """Reports that this framework cannot run here, and why."""
    emit({"skipped": reason})
