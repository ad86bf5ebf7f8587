"""What every peer shares: the model's numbers, the data, the parameters, the timer.

RefNet-MNIST, NHWC float32 (B, 28, 28, 1):
    conv 3x3x32 SAME + bias -> ReLU -> max pool 2x2/2 -> conv 3x3x64 SAME + bias
    -> ReLU -> max pool 2x2/2 -> flatten (7*7*64 = 3136) -> dense 128 -> ReLU
    -> dense 10; mean softmax cross-entropy on integer labels; SGD, momentum 0.9,
    learning rate 0.01.

Every framework starts from the *same* parameter values (drawn here with NumPy, He
normal weights, zero biases) on the *same* batch, so the first-step losses agree
across frameworks to float32 rounding: that is the check that they all implement the
same model. Parameters are drawn in the channels-last layout (conv kernels HWIO,
dense kernels (in, out), flatten order (h, w, c)); `to_channels_first` converts them
for the NCHW frameworks (PyTorch, Equinox).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

LEARNING_RATE = 0.01
MOMENTUM = 0.9
NUM_CLASSES = 10
IMAGE = (28, 28, 1)
FLATTEN = 7 * 7 * 64


def forward_flops_per_image() -> int:
    """Multiply-adds x 2 of the forward pass: 8,482,304 (about 8.48 MFLOP)."""
    conv1 = 28 * 28 * 32 * (3 * 3 * 1) * 2
    conv2 = 14 * 14 * 64 * (3 * 3 * 32) * 2
    dense1 = FLATTEN * 128 * 2
    dense2 = 128 * NUM_CLASSES * 2
    return conv1 + conv2 + dense1 + dense2


def step_flops_per_image() -> int:
    """A training step counted as three forward passes (about 25.4 MFLOP)."""
    return 3 * forward_flops_per_image()


def make_data(batch: int, seed: int = 0):
    """A fixed random batch: NHWC float32 images and int32 labels in [0, 10)."""
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((batch,) + IMAGE).astype(np.float32)
    y = rng.randint(0, NUM_CLASSES, size=(batch,)).astype(np.int32)
    return x, y


def make_params(seed: int = 0) -> dict:
    """He-normal weights (std sqrt(2 / fan_in)) and zero biases, channels-last."""
    rng = np.random.RandomState(seed + 1)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "conv1_w": he((3, 3, 1, 32), 9 * 1),
        "conv1_b": np.zeros((32,), np.float32),
        "conv2_w": he((3, 3, 32, 64), 9 * 32),
        "conv2_b": np.zeros((64,), np.float32),
        "dense1_w": he((FLATTEN, 128), FLATTEN),
        "dense1_b": np.zeros((128,), np.float32),
        "dense2_w": he((128, NUM_CLASSES), 128),
        "dense2_b": np.zeros((NUM_CLASSES,), np.float32),
    }


def to_channels_first(params: dict) -> dict:
    """The same parameters for an NCHW model: conv kernels OIHW, dense kernels
    (out, in), and the first dense kernel's rows reordered from (h, w, c) to the
    (c, h, w) order in which an NCHW tensor flattens."""
    d1 = params["dense1_w"].reshape(7, 7, 64, 128).transpose(2, 0, 1, 3).reshape(FLATTEN, 128)
    return {
        "conv1_w": np.ascontiguousarray(params["conv1_w"].transpose(3, 2, 0, 1)),
        "conv1_b": params["conv1_b"],
        "conv2_w": np.ascontiguousarray(params["conv2_w"].transpose(3, 2, 0, 1)),
        "conv2_b": params["conv2_b"],
        "dense1_w": np.ascontiguousarray(d1.T),
        "dense1_b": params["dense1_b"],
        "dense2_w": np.ascontiguousarray(params["dense2_w"].T),
        "dense2_b": params["dense2_b"],
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


class _Parser(argparse.ArgumentParser):
    """One line on stderr and exit code 2 for a bad argument, like fcnn.cli.Parser."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description="Train RefNet-MNIST for a few steps and time them "
                                            "(run by benchmarks.refnet, one process per framework).")
    p.add_argument("--batch", type=_count(1), default=128, help="images per step (default: 128)")
    p.add_argument("--steps", type=_count(1), default=50, help="timed steps (default: 50)")
    p.add_argument("--warmup", type=_count(0), default=10,
                   help="untimed steps before them, the first (compiling) one included (default: 10)")
    p.add_argument("--seed", type=_count(0), default=0,
                   help="seed of the shared batch and initial parameters (default: 0)")
    p.add_argument("--compile", action="store_true", help="torch only: torch.compile the model")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def time_steps(step, steps: int, warmup: int) -> dict:
    """Times `step()`, which must run one full training step and return the loss as
    a Python float only once every output of the step is computed.

    The first call (tracing and compilation included) is reported as `compile_s`;
    `warmup` calls (the first included) are untimed, then `steps` calls are timed
    one by one, in wall-clock and in process CPU time.
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
    ms = np.asarray(times) * 1e3
    return {
        "compile_s": compile_s,
        "step_ms": ms.tolist(),
        "step_ms_median": float(np.median(ms)),
        # CPU time of the whole process (all threads, user + system) per step: with
        # one thread it is robust to other work on the machine; with more threads it
        # also counts spinning workers.
        "cpu_ms_median": float(np.median(cpu) * 1e3),
        "loss_first": float(loss_first),
        "loss_last": float(loss),
    }


def emit(result: dict) -> None:
    """Prints the one JSON line that `benchmarks.refnet` reads."""
    result = dict(result)
    result["peak_rss_mb"] = peak_rss_mb()
    result["pid"] = os.getpid()
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def run(build, argv=None, **meta) -> None:
    """Parses the peer's arguments, builds its step with `build(args, params, x, y)`
    and prints its timings."""
    args = parse_args(argv)
    x, y = make_data(args.batch, args.seed)
    params = make_params(args.seed)
    step, info = build(args, params, x, y)
    result = time_steps(step, args.steps, args.warmup)
    result.update(info)
    result.update(meta)
    result["batch"] = args.batch
    emit(result)


def skip(reason: str) -> None:
    """Reports that this framework cannot run here, and why."""
    emit({"skipped": reason})
