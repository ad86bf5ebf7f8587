"""Bad input across the whole library, one table: every case must be refused.

Each `Case` calls one public function with one wrong argument and names the
exception it must raise and the strings its message must contain: the argument
(or the file) and the offending value as printed. One parametrized test runs the
table; removing a check turns its case red, because the call then returns
(silently wrong), or fails later with another exception or an unrelated message
(a reshape, broadcast or XLA error deep inside).

Arrays are tiny and nothing is trained: every refusal happens before array work.
Files are written under the test's tmp_path (see `_scratch`).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import struct
import sys
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import augment, initializers, losses, metrics, schedules
from fcnn.data import (
    BatchIterator,
    DataFormatError,
    fit_normalization,
    load_dataset,
    load_image_folder,
    read_cifar10,
    read_cifar10_class_names,
    read_cifar10_images,
    read_idx,
    read_image_folder,
    read_mnist,
    split_off,
    train_validation_test_split,
)
from fcnn.ops import activations as act
from fcnn.ops import conv as conv_ops
from fcnn.ops import dense as dense_ops
from fcnn.ops import dropout as dropout_ops
from fcnn.ops import lrn as lrn_ops
from fcnn.ops import normalization as norm_ops
from fcnn.ops import pooling as pool_ops
from fcnn.train import (
    CheckpointError,
    evaluate_step,
    fit,
    init_opt_state,
    load_checkpoint,
    make_eval_step,
    make_optimizer,
    make_train_step,
    save_checkpoint,
    trainable_mask,
)
from fcnn.train import regularizers


class Case(NamedTuple):
    """One bad call: `call()` must raise `exc_type` whose message holds `must_mention`.

    `xfail` (a reason) marks a bad input answered badly by a module this table does
    not fix; the case is expected to fail (strictly) until that module is fixed.
    """

    id: str
    call: Callable[[], object]
    exc_type: type[BaseException]
    must_mention: tuple[str, ...] = ()
    xfail: str | None = None


# ----------------------------------------------------------------------------------
# Small inputs and fixtures built on demand (inside the calls, never at import).

SCRATCH: Path | None = None


@pytest.fixture(autouse=True)
def _scratch(tmp_path, monkeypatch):
    """Files of the data and checkpoint cases are written under this test's tmp_path."""
    monkeypatch.setattr(sys.modules[__name__], "SCRATCH", tmp_path)


def _path(*parts) -> Path:
    path = SCRATCH.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write(name: str, data: bytes) -> str:
    path = _path(name)
    path.write_bytes(data)
    return str(path)


def _dir(name: str) -> str:
    path = _path(name)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def key():
    return jax.random.PRNGKey(0)


def _idx_bytes(magic: int, dims, payload: bytes | None = None) -> bytes:
    size = int(np.prod(dims)) if dims else 0
    header = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)
    return header + (bytes(size) if payload is None else payload)


def _mnist_dir(name: str, images: int, labels: int, label_value: int = 0) -> str:
    folder = _dir(name)
    for kind, stems in (("train", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
                        ("test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))):
        (Path(folder) / stems[0]).write_bytes(_idx_bytes(2051, (images, 2, 2)))
        (Path(folder) / stems[1]).write_bytes(
            _idx_bytes(2049, (labels,), bytes([label_value] * labels)))
    return folder


CIFAR_RECORD = 3073


def _cifar_dir(name: str, *, first_batch: bytes | None = None, label: int = 0,
               meta: str | None = None) -> str:
    folder = Path(_dir(name))
    record = bytes([label]) + bytes(CIFAR_RECORD - 1)
    for i in range(1, 6):
        data = first_batch if (i == 1 and first_batch is not None) else record
        (folder / f"data_batch_{i}.bin").write_bytes(data)
    (folder / "test_batch.bin").write_bytes(record)
    if meta is not None:
        (folder / "batches.meta.txt").write_text(meta)
    return str(folder)


def _cifar_python_dir() -> str:
    """A folder holding only the pickled (Python) version's file names."""
    folder = _dir("cifar-py")
    Path(folder, "data_batch_1").write_bytes(b"not read")
    return folder


def _png(height: int = 2, width: int = 2) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _images(name: str, files: dict | None = None, *, zipped: bool = False) -> str:
    """An image folder (or a zip of one): train/ and test/ with classes cat and dog of
    2 x 2 PNGs, `files` ({relative path: bytes or None to remove}) applied on top."""
    content = {f"{split}/{c}/0.png": _png() for split in ("train", "test") for c in ("cat", "dog")}
    for member, data in (files or {}).items():
        if data is None:
            content.pop(member)
        else:
            content[member] = data
    if zipped:
        path = _path(name)
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in content.items():
                archive.writestr(member, data)
        return str(path)
    for member, data in content.items():
        _path(name, *member.split("/")).write_bytes(data)
    return str(_path(name))


@functools.lru_cache(maxsize=None)
def _tiny():
    """A Dense(2) model on 3 features, its params, 8 examples, an optimizer."""
    model = fcnn.serial(fcnn.Dense(2))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 3))
    images = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)
    labels = np.arange(8, dtype=np.int32) % 2
    return model, params, state, (images, labels), make_optimizer("sgd", 0.1)


def _fit(**kwargs):
    model, params, state, data, opt = _tiny()
    args = dict(epochs=1, batch_size=4, progress=False)
    args.update(kwargs)
    return fit(model, losses.softmax_cross_entropy, opt, params, state,
               args.pop("train_data", data), **args)


def _train_step(batch):
    model, params, state, _, opt = _tiny()
    step = make_train_step(model, losses.softmax_cross_entropy, opt, donate=False)
    return step(params, state, init_opt_state(opt, params), batch, key())


def _checkpoint(directory: str = "ckpt", **extra) -> str:
    """A checkpoint of params {"w": (2, 3) float32}, empty state and opt_state."""
    return save_checkpoint(_dir(directory), 7, params={"w": zeros(2, 3)}, state={},
                           opt_state={}, rng=key(), extra=extra)


def _load(path, params):
    return load_checkpoint(path, params=params, state={}, opt_state={})


def _corrupt_arrays() -> str:
    json_path = _checkpoint("corrupt")
    npz = json_path[: -len(".json")] + ".npz"
    data = bytearray(Path(npz).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(npz).write_bytes(bytes(data))
    return json_path


def _resume_with_other_batch_size():
    model, params, state, _, opt = _tiny()
    run = _dir("resume")
    save_checkpoint(os.path.join(run, "checkpoints"), 2, params=params, state=state,
                    opt_state=init_opt_state(opt, params), rng=key(), position=(1, 0),
                    extra={"seed": 0, "batch_size": 2, "balanced": False, "steps_per_epoch": 4})
    return _fit(out_dir=run, resume=True, batch_size=4)


def _no_training(*args, **kwargs):
    raise RuntimeError("training started: the bad argument was not checked before it")


def _fit_checked_first(**kwargs):
    """fit with a train step that must never run: the bad argument is refused first."""
    return _fit(out_dir=_dir("checked-first"), train_step=_no_training, **kwargs)


def _earlier_run():
    run = _dir("earlier")
    _checkpoint(os.path.join("earlier", "checkpoints"))
    return _fit(out_dir=run)


def _serial_apply(params, state):
    model = fcnn.serial(fcnn.Dense(2), fcnn.Relu())
    return model.apply(params, state, zeros(2, 3), train=False)


def _bn_apply(x, state=None, train=True):
    layer = fcnn.BatchNorm()
    _, params, init_state = layer.init(key(), x.shape)
    return layer.apply(params, init_state if state is None else state, x, train=train)


def _layer_apply(layer, init_shape, x, train=False, rng=None):
    _, params, state = layer.init(key(), init_shape)
    return layer.apply(params, state, x, train=train, rng=rng)


def _init(layer, shape):
    return layer.init(key(), shape)


IMG = (4, 4, 3)


# ----------------------------------------------------------------------------------
# The table.

OPS = [
    Case("conv-strides-0", lambda: conv_ops.conv(zeros(1, 5, 5, 2), zeros(3, 3, 2, 4), strides=0),
         ValueError, ("strides=0", "positive")),
    Case("conv-padding-name", lambda: conv_ops.conv(zeros(1, 5, 5, 2), zeros(3, 3, 2, 4),
                                                    padding="FULL"),
         ValueError, ("padding='FULL'", '"SAME"')),
    Case("conv-padding-negative", lambda: conv_ops.conv(zeros(1, 5, 5, 2), zeros(3, 3, 2, 4),
                                                        padding=-1),
         ValueError, ("padding=-1",)),
    Case("conv-padding-pair-count", lambda: conv_ops.conv(zeros(1, 5, 5, 2), zeros(3, 3, 2, 4),
                                                          padding=((1, 1),)),
         ValueError, ("padding=((1, 1),)", "expected 2 (low, high) pairs")),
    Case("conv-groups-in-channels", lambda: conv_ops.conv(zeros(1, 5, 5, 4), zeros(3, 3, 1, 3),
                                                          groups=3),
         ValueError, ("groups=3", "in_channels (=4)")),
    Case("conv-groups-0", lambda: conv_ops.conv(zeros(1, 5, 5, 4), zeros(3, 3, 4, 4), groups=0),
         ValueError, ("groups=0",)),
    Case("conv-kernel-rank", lambda: conv_ops.conv(zeros(1, 5, 5, 2), zeros(3, 2, 4)),
         ValueError, ("kernel has shape (3, 2, 4)", "rank 4")),
    Case("conv-kernel-channels", lambda: conv_ops.conv(zeros(1, 5, 5, 3), zeros(3, 3, 2, 4)),
         ValueError, ("C_in=2", "input has 3 channels")),
    Case("conv-bias-shape", lambda: conv_ops.conv(zeros(1, 5, 5, 2), zeros(3, 3, 2, 4), zeros(3)),
         ValueError, ("bias has shape (3,)", "(4,)")),
    Case("conv-x-rank", lambda: conv_ops.conv(zeros(5, 5), zeros(3, 3, 1, 1)),
         ValueError, ("x has shape (5, 5)", "rank 2")),
    Case("conv-window-too-big", lambda: conv_ops.conv(zeros(1, 2, 2, 1), zeros(3, 3, 1, 1),
                                                      padding="VALID"),
         ValueError, ("window of size 3", "size 2")),
    Case("conv-dilation-length", lambda: conv_ops.conv(zeros(1, 5, 5, 1), zeros(3, 3, 1, 1),
                                                       dilation=(1, 2, 3)),
         ValueError, ("dilation=(1, 2, 3)", "got 3 entries")),
    Case("conv-backward-name", lambda: conv_ops.conv(zeros(1, 5, 5, 1), zeros(3, 3, 1, 1),
                                                     backward="manual"),
         ValueError, ("backward='manual'", "'custom'")),
    Case("conv-output-shape-input-dilation", lambda: conv_ops.conv_output_shape(
        (1, 5, 5, 1), (3, 3, 1, 1), input_dilation=0), ValueError, ("input_dilation=0",)),
    Case("conv-strides-float", lambda: conv_ops.conv(zeros(1, 5, 5, 1), zeros(3, 3, 1, 1),
                                                     strides=1.5),
         TypeError, ("strides=1.5",)),
    Case("max-pool-window-0", lambda: pool_ops.max_pool(zeros(1, 4, 4, 1), 0),
         ValueError, ("window_shape=0",)),
    Case("avg-pool-strides-length", lambda: pool_ops.avg_pool(zeros(1, 4, 4, 1), 2, strides=(2,)),
         ValueError, ("strides=(2,)", "2 ints")),
    Case("max-pool-int-input", lambda: pool_ops.max_pool(np.zeros((1, 4, 4, 1), np.int32), 2),
         TypeError, ("x has dtype int32", "floating")),
    Case("pool-kind", lambda: pool_ops.pool(zeros(1, 4, 4, 1), "min", 2),
         ValueError, ("kind='min'",)),
    Case("avg-pool-count-include-pad", lambda: pool_ops.avg_pool(
        zeros(1, 4, 4, 1), 2, count_include_pad="yes"), TypeError, ("count_include_pad='yes'",)),
    Case("max-pool-window-too-big", lambda: pool_ops.max_pool(zeros(1, 3, 3, 1), 5),
         ValueError, ("window of size 5", "size 3")),
    Case("avg-pool-empty-windows", lambda: pool_ops.avg_pool(zeros(1, 4, 4, 1), 2, padding=3),
         ValueError, ("padding=3", "no input cell")),
    Case("global-avg-pool-rank", lambda: pool_ops.global_avg_pool(zeros(2, 3)),
         ValueError, ("x has shape (2, 3)",)),
    Case("pool-path", lambda: pool_ops.pool(zeros(1, 4, 4, 1), "max", 2, path="turbo"),
         ValueError, ("path='turbo'",)),
    Case("pool-output-shape-rank", lambda: pool_ops.pool_output_shape((4, 4), 2),
         ValueError, ("input_shape has shape (4, 4)",)),
    Case("dense-features", lambda: dense_ops.dense(zeros(2, 3), zeros(4, 5)),
         ValueError, ("x has 3 input features", "expects 4")),
    Case("dense-kernel-rank", lambda: dense_ops.dense(zeros(2, 3), zeros(3, 4, 5)),
         ValueError, ("kernel has shape (3, 4, 5)",)),
    Case("dense-bias-shape", lambda: dense_ops.dense(zeros(2, 3), zeros(3, 4), zeros(5)),
         ValueError, ("bias has shape (5,)", "(4,)")),
    Case("dense-scalar-x", lambda: dense_ops.dense(np.float32(1), zeros(1, 4)),
         ValueError, ("x is a scalar",)),
    Case("leaky-relu-nan-slope", lambda: act.leaky_relu(zeros(3), float("nan")),
         ValueError, ("negative_slope=nan", "expected a finite number")),
    Case("prelu-slope-shape", lambda: act.prelu(zeros(2, 4), zeros(3)),
         ValueError, ("slope has shape (3,)", "(4,)")),
    Case("rrelu-bounds-order", lambda: act.rrelu(zeros(3), lower=0.5, upper=0.1, train=False),
         ValueError, ("lower=0.5", "upper=0.1")),
    Case("rrelu-missing-rng", lambda: act.rrelu(zeros(3), train=True),
         ValueError, ("rng",)),
    Case("rrelu-train-string", lambda: act.rrelu(zeros(3), train="yes"),
         TypeError, ("train='yes'",)),
    Case("softmax-axis-range", lambda: act.softmax(zeros(2, 3), axis=2),
         ValueError, ("axis=2", "expected an int in [-2, 1]", "rank 2")),
    Case("softmax-axis-float", lambda: act.softmax(zeros(2, 3), axis=1.0),
         TypeError, ("axis=1.0",)),
    Case("maxout-one-piece", lambda: act.maxout(zeros(2, 4), 1),
         ValueError, ("pieces=1", "expected an int >= 2", "maxout needs k >= 2")),
    Case("maxout-channels", lambda: act.maxout(zeros(2, 5), 2),
         ValueError, ("x has shape (2, 5)", "pieces=2")),
    Case("activation-unknown-name", lambda: act.get_activation("swishy"),
         ValueError, ("activation='swishy'", "relu")),
    Case("activation-name-type", lambda: act.get_activation(3),
         TypeError, ("activation=3",)),
    Case("gelu-approximate-type", lambda: act.gelu(zeros(3), approximate="yes"),
         TypeError, ("approximate='yes'",)),
    Case("elu-alpha-inf", lambda: act.elu(zeros(3), float("inf")),
         ValueError, ("alpha=inf", "expected a finite number")),
    Case("sigmoid-backward", lambda: act.sigmoid(zeros(3), backward="numeric"),
         ValueError, ("backward='numeric'",)),
    Case("dropout-rate-1", lambda: dropout_ops.dropout(zeros(4), 1.0, key(), train=True),
         ValueError, ("rate=1.0", "[0, 1)")),
    Case("dropout-rate-negative", lambda: dropout_ops.dropout(zeros(4), -0.1, key(), train=True),
         ValueError, ("rate=-0.1",)),
    Case("dropout-rate-bool", lambda: dropout_ops.dropout(zeros(4), True, key(), train=True),
         TypeError, ("rate=True",)),
    Case("dropout-rate-vector", lambda: dropout_ops.dropout(zeros(4), zeros(2), key(), train=True),
         ValueError, ("rate has shape (2,)", "scalar")),
    Case("dropout-missing-rng", lambda: dropout_ops.dropout(zeros(4), 0.5, train=True),
         ValueError, ("rng", "train=True")),
    Case("dropout-mode", lambda: dropout_ops.dropout(zeros(4), 0.5, key(), train=True, mode="x"),
         ValueError, ("mode='x'", "inverted")),
    Case("dropout-shared-axes", lambda: dropout_ops.dropout(zeros(2, 4), 0.5, key(), train=True,
                                                            shared_axes=(5,)),
         ValueError, ("shared_axes=(5,)", "rank 2")),
    Case("dropout-train-int", lambda: dropout_ops.dropout(zeros(4), 0.5, key(), train=1),
         TypeError, ("train=1",)),
    Case("spatial-dropout-rank", lambda: dropout_ops.spatial_dropout(zeros(2, 3), 0.5, key(),
                                                                     train=True),
         ValueError, ("x has shape (2, 3)",)),
    Case("normalize-epsilon-0", lambda: norm_ops.normalize(zeros(2, 3), axes=0, epsilon=0),
         ValueError, ("epsilon=0", "expected a finite number > 0", "1e-5")),
    Case("normalize-axes-range", lambda: norm_ops.normalize(zeros(2, 3), axes=(3,)),
         ValueError, ("axes=(3,)", "rank 2")),
    Case("normalize-axes-repeated", lambda: norm_ops.normalize(zeros(2, 3), axes=(1, -1)),
         ValueError, ("axes=(1, -1)", "repeated")),
    Case("normalize-axes-empty", lambda: norm_ops.normalize(zeros(2, 3), axes=()),
         ValueError, ("axes=()",)),
    Case("normalize-int-input", lambda: norm_ops.normalize(np.zeros((2, 3), np.int32), axes=0),
         TypeError, ("dtype int32",)),
    Case("normalize-scale-shape", lambda: norm_ops.normalize(zeros(2, 4), zeros(3), axes=0),
         ValueError, ("scale has shape (3,)", "(2, 4)")),
    Case("normalize-axis-name-unbound", lambda: norm_ops.normalize(zeros(4, 3), axes=0,
                                                                   axis_name="devices"),
         ValueError, ("axis_name='devices'", "is not bound")),
    Case("normalize-with-stats-var-shape", lambda: norm_ops.normalize_with_stats(
        zeros(2, 4), zeros(4), zeros(3)), ValueError, ("var has shape (3,)",)),
    Case("weight-normalize-g-shape", lambda: norm_ops.weight_normalize(zeros(3, 4), zeros(3, 4)),
         ValueError, ("g has shape (3, 4)", "(4,)")),
    Case("lrn-even-size", lambda: lrn_ops.lrn(zeros(1, 6), size=4),
         ValueError, ("size=4", "odd")),
    Case("lrn-size-radius-disagree", lambda: lrn_ops.lrn(zeros(1, 6), size=5, depth_radius=1),
         ValueError, ("size=5", "depth_radius=1")),
    Case("lrn-negative-radius", lambda: lrn_ops.lrn(zeros(1, 6), depth_radius=-1),
         ValueError, ("depth_radius=-1", "expected an int >= 0")),
    Case("lrn-k-0", lambda: lrn_ops.lrn(zeros(1, 6), k=0),
         ValueError, ("k=0", "expected a finite number > 0")),
    Case("lrn-alpha-negative", lambda: lrn_ops.lrn(zeros(1, 6), alpha=-1.0),
         ValueError, ("alpha=-1.0", "expected a finite number >= 0")),
    Case("lrn-beta-nan", lambda: lrn_ops.lrn(zeros(1, 6), beta=float("nan")),
         ValueError, ("beta=nan", "expected a finite number")),
    Case("lrn-alpha-over-n-type", lambda: lrn_ops.lrn(zeros(1, 6), alpha_over_n="yes"),
         TypeError, ("alpha_over_n='yes'",)),
    Case("lrn-axis", lambda: lrn_ops.lrn(zeros(1, 6), axis=3),
         ValueError, ("axis=3", "expected an int in [-2, 1]", "rank 2")),
    Case("lrn-int-input", lambda: lrn_ops.lrn(np.zeros((1, 6), np.int32)),
         TypeError, ("dtype int32",)),
]

LAYERS = [
    Case("Conv-features-0", lambda: fcnn.Conv(0, 3), ValueError, ("features=0",)),
    Case("Conv-kernel-4d", lambda: fcnn.Conv(4, (3, 3, 3, 3)),
         ValueError, ("kernel_size=(3, 3, 3, 3)", "1, 2 or 3")),
    Case("Conv-kernel-size-0", lambda: fcnn.Conv(4, 0), ValueError, ("kernel_size=0",)),
    Case("Conv-groups-features", lambda: fcnn.Conv(4, 3, groups=3),
         ValueError, ("groups=3", "features (=4)")),
    Case("Conv-use-bias-type", lambda: fcnn.Conv(4, 3, use_bias="yes"),
         TypeError, ("use_bias='yes'",)),
    Case("Conv-kernel-init-name", lambda: fcnn.Conv(4, 3, kernel_init="bogus"),
         ValueError, ("initializer='bogus'", "he_normal")),
    Case("Conv-strides-negative", lambda: fcnn.Conv(4, 3, strides=-1),
         ValueError, ("strides=-1",)),
    Case("Conv-padding-pairs", lambda: fcnn.Conv(4, (3, 3), padding=((1, 1),)),
         ValueError, ("padding=((1, 1),)", "2 (low, high) pairs")),
    Case("Conv-init-rank", lambda: _init(fcnn.Conv(4, (3, 3)), (2, 5, 3)),
         ValueError, ("kernel_size=(3, 3)", "(2, 5, 3)", "rank 4")),
    Case("Conv-init-groups", lambda: _init(fcnn.Conv(4, 3, groups=2), (2, 5, 5, 3)),
         ValueError, ("groups=2", "in_channels (=3)")),
    Case("Conv-apply-channels", lambda: _layer_apply(fcnn.Conv(4, 3), (1, 5, 5, 3),
                                                     zeros(1, 5, 5, 2)),
         ValueError, ("x has 2 channels", "expect 3")),
    Case("Conv-apply-train-none", lambda: _layer_apply(fcnn.Conv(4, 3), (1, 5, 5, 3),
                                                       zeros(1, 5, 5, 3), train=None),
         TypeError, ("train=None",)),
    Case("Dense-features-0", lambda: fcnn.Dense(0), ValueError, ("features=0",)),
    Case("Dense-features-float", lambda: fcnn.Dense(2.5), ValueError, ("features=2.5",)),
    Case("Dense-init-rank", lambda: _init(fcnn.Dense(3), (5,)),
         ValueError, ("input_shape=(5,)", "rank >= 2")),
    Case("Dense-apply-features", lambda: _layer_apply(fcnn.Dense(3), (2, 4), zeros(2, 5)),
         ValueError, ("x has shape (2, 5)", "4 input features")),
    Case("Dense-use-bias-type", lambda: fcnn.Dense(3, use_bias=1),
         TypeError, ("use_bias=1",)),
    Case("MaxPool-strides-length", lambda: fcnn.MaxPool((2, 2), strides=(1, 1, 1)),
         ValueError, ("strides=(1, 1, 1)", "window_shape=(2, 2)")),
    Case("MaxPool-window-4d", lambda: fcnn.MaxPool((2, 2, 2, 2)),
         ValueError, ("window_shape=(2, 2, 2, 2)", "1, 2 or 3")),
    Case("MaxPool-strides-0", lambda: fcnn.MaxPool(2, strides=0), ValueError, ("strides=0",)),
    Case("MaxPool-window-none", lambda: fcnn.MaxPool(None),
         TypeError, ("window_shape=None",)),
    Case("MaxPool-padding-name", lambda: fcnn.MaxPool(2, padding="full"),
         ValueError, ("padding='full'",)),
    Case("MaxPool-init-rank", lambda: _init(fcnn.MaxPool((2, 2)), (2, 8, 3)),
         ValueError, ("window_shape=(2, 2)", "(2, 8, 3)")),
    Case("MaxPool-init-window-too-big", lambda: _init(fcnn.MaxPool(4), (1, 3, 3, 1)),
         ValueError, ("window of size 4", "size 3")),
    Case("AvgPool-count-include-pad", lambda: fcnn.AvgPool(2, count_include_pad=1),
         TypeError, ("count_include_pad=1",)),
    Case("GlobalAvgPool-init-rank", lambda: _init(fcnn.GlobalAvgPool(), (2, 3)),
         ValueError, ("input_shape has shape (2, 3)",)),
    Case("BatchNorm-momentum", lambda: fcnn.BatchNorm(momentum=1.5),
         ValueError, ("momentum=1.5", "expected a finite number in [0, 1]", "weight of the old")),
    Case("BatchNorm-epsilon", lambda: fcnn.BatchNorm(epsilon=-1.0),
         ValueError, ("epsilon=-1.0", "expected a finite number > 0")),
    Case("BatchNorm-running-average", lambda: fcnn.BatchNorm(running_average="median"),
         ValueError, ("running_average='median'", "'ema'")),
    Case("BatchNorm-axis-type", lambda: fcnn.BatchNorm(axis=1.0),
         TypeError, ("axis=1.0",)),
    Case("BatchNorm-param-dtype", lambda: fcnn.BatchNorm(param_dtype=jnp.int32),
         TypeError, ("param_dtype=", "int32")),
    Case("BatchNorm-init-axis", lambda: _init(fcnn.BatchNorm(axis=3), (2, 4)),
         ValueError, ("BatchNorm: axis=3", "expected an int in [-2, 1]", "(2, 4)")),
    Case("BatchNorm-missing-state", lambda: _bn_apply(zeros(4, 3), state={}),
         ValueError, ("state={}", "running statistics")),
    Case("BatchNorm-one-value", lambda: _bn_apply(zeros(1, 3)),
         ValueError, ("(1, 3)", "gives 1 value")),
    Case("BatchNorm-apply-channels", lambda: _layer_apply(fcnn.BatchNorm(), (4, 3), zeros(4, 5)),
         ValueError, ("(4, 5)", "5 channels", "initialised for 3")),
    Case("BatchNorm-train-string", lambda: _bn_apply(zeros(4, 3), train="True"),
         TypeError, ("train='True'",)),
    Case("LayerNorm-batch-axis", lambda: _init(fcnn.LayerNorm(axes=0), (2, 3)),
         ValueError, ("axes=(0,)", "batch axis 0")),
    Case("LayerNorm-repeated-axis", lambda: _init(fcnn.LayerNorm(axes=(1, -1)), (2, 3)),
         ValueError, ("axes=(1, -1)", "repeated")),
    Case("LayerNorm-axes-type", lambda: fcnn.LayerNorm(axes="channels"),
         TypeError, ("axes='channels'",)),
    Case("GroupNorm-groups-0", lambda: fcnn.GroupNorm(num_groups=0),
         ValueError, ("num_groups=0",)),
    Case("GroupNorm-divisible", lambda: _init(fcnn.GroupNorm(4), (2, 3, 3, 6)),
         ValueError, ("channels (=6)", "num_groups (=4)")),
    Case("InstanceNorm-rank", lambda: _init(fcnn.InstanceNorm(), (2, 3)),
         ValueError, ("input_shape=(2, 3)", "rank 2")),
    Case("LRN-size-2", lambda: fcnn.LRN(size=2), ValueError, ("size=2",)),
    Case("LayerNorm-use-scale-type", lambda: fcnn.LayerNorm(use_scale=1),
         TypeError, ("use_scale=1",)),
    Case("Dropout-rate-1", lambda: fcnn.Dropout(1.0), ValueError, ("rate=1.0",)),
    Case("Dropout-rate-string", lambda: fcnn.Dropout("0.5"), TypeError, ("rate='0.5'",)),
    Case("Dropout-mode", lambda: fcnn.Dropout(0.5, mode="test"), ValueError, ("mode='test'",)),
    Case("Dropout-missing-rng", lambda: _layer_apply(fcnn.Dropout(0.5), (2, 3), zeros(2, 3),
                                                     train=True),
         ValueError, ("Dropout(0.5)", "needs an rng", "train=True")),
    Case("SpatialDropout-rank", lambda: _init(fcnn.SpatialDropout(0.5), (2, 3)),
         ValueError, ("input_shape=(2, 3)",)),
    Case("PRelu-shared-type", lambda: fcnn.PRelu(shared="no"), TypeError, ("shared='no'",)),
    Case("PRelu-init-nan", lambda: fcnn.PRelu(init=float("nan")),
         ValueError, ("init=nan", "expected a finite number")),
    Case("PRelu-init-rank", lambda: _init(fcnn.PRelu(), (4,)),
         ValueError, ("input_shape=(4,)", "shared=True")),
    Case("RRelu-bounds", lambda: fcnn.RRelu(0.5, 0.1), ValueError, ("lower=0.5", "upper=0.1")),
    Case("RRelu-missing-rng", lambda: _layer_apply(fcnn.RRelu(), (2, 3), zeros(2, 3), train=True),
         ValueError, ("RRelu", "needs an rng")),
    Case("Maxout-one-piece", lambda: fcnn.Maxout(4, pieces=1),
         ValueError, ("pieces=1", "expected an int >= 2", "maxout needs k >= 2")),
    Case("Maxout-kind", lambda: fcnn.Maxout(4, kind="pool"),
         ValueError, ("kind='pool'", "'dense'")),
    Case("Maxout-dense-kernel-size", lambda: fcnn.Maxout(4, kernel_size=3),
         ValueError, ("kernel_size=3", 'kind="conv"')),
    Case("Maxout-conv-without-kernel", lambda: fcnn.Maxout(4, kind="conv"),
         ValueError, ('kind="conv"', "kernel_size")),
    Case("Flatten-init-rank", lambda: _init(fcnn.Flatten(), (5,)),
         ValueError, ("input_shape has shape (5,)", "rank >= 2")),
    Case("Activation-unknown", lambda: fcnn.Activation("swishy"),
         ValueError, ("activation='swishy'", "relu")),
    Case("Activation-type", lambda: fcnn.Activation(None), TypeError, ("activation=None",)),
    Case("LeakyRelu-slope-string", lambda: fcnn.LeakyRelu("0.1"),
         ValueError, ("negative_slope='0.1'", "expected a finite number")),
    Case("Softmax-init-axis", lambda: _init(fcnn.Softmax(axis=3), (2, 3)),
         ValueError, ("Softmax(axis=3): axis=3", "expected an int in [-2, 1]", "(2, 3)")),
    Case("Gelu-approximate-type", lambda: fcnn.Gelu(approximate=1),
         TypeError, ("approximate=1",)),
    Case("Elu-alpha-inf", lambda: fcnn.Elu(alpha=float("inf")),
         ValueError, ("alpha=inf", "expected a finite number")),
    Case("Tanh-backward", lambda: fcnn.Tanh(backward="custom-ish"),
         ValueError, ("backward='custom-ish'",)),
    Case("WeightNorm-no-kernel", lambda: _init(fcnn.WeightNorm(fcnn.Flatten()), (2, 3)),
         ValueError, ("'kernel'", "Flatten")),
    Case("WeightNorm-not-a-layer", lambda: fcnn.WeightNorm(fcnn.Dense),
         TypeError, ("WeightNorm", "Dense")),
]

COMBINATORS = [
    Case("serial-empty", lambda: fcnn.serial(), ValueError, ("serial()", "at least one layer")),
    Case("serial-uncalled-layer", lambda: fcnn.serial(fcnn.Dense(2), fcnn.Relu),
         TypeError, ("argument 1", "Relu() rather than Relu")),
    Case("parallel-empty", lambda: fcnn.parallel(), ValueError, ("parallel()",)),
    Case("parallel-init-one-shape", lambda: _init(fcnn.parallel(fcnn.Relu(), fcnn.Relu()), (2, 3)),
         ValueError, ("input_shape=(2, 3)", "tuple of 2 shapes")),
    Case("parallel-apply-one-input", lambda: fcnn.parallel(fcnn.Relu(), fcnn.Relu()).apply(
        {"0": {}, "1": {}}, {"0": {}, "1": {}}, zeros(2, 3), train=False),
        ValueError, ("tuple of 2 inputs", "ndarray")),
    Case("serial-apply-foreign-params", lambda: _serial_apply({"0": {}}, {"0": {}, "1": {}}),
         ValueError, ("params has keys ['0']", "['0', '1']")),
    Case("serial-apply-state-none", lambda: _serial_apply({"0": {}, "1": {}}, None),
         ValueError, ("state has keys NoneType", "init")),
    Case("fan-out-0", lambda: fcnn.fan_out(0), ValueError, ("num=0",)),
    Case("fan-in-sum-shapes", lambda: _init(fcnn.fan_in_sum(), ((2, 3), (2, 4))),
         ValueError, ("input 1 has shape (2, 4)", "(2, 3)")),
    Case("fan-in-sum-one-shape", lambda: _init(fcnn.fan_in_sum(), (2, 3)),
         ValueError, ("input_shape=(2, 3)", "tuple of input shapes")),
    Case("fan-in-sum-apply-broadcast", lambda: fcnn.fan_in_sum().apply(
        {}, {}, (zeros(2, 3), zeros(1, 3)), train=False),
         ValueError, ("input 1 has shape (1, 3)", "(2, 3)")),
    Case("fan-in-concat-apply-shapes", lambda: fcnn.fan_in_concat().apply(
        {}, {}, (zeros(2, 3), zeros(3, 3)), train=False),
         ValueError, ("input 1 has shape (3, 3)", "(2, 3)")),
    Case("fan-in-concat-axis-range", lambda: _init(fcnn.fan_in_concat(axis=4), ((2, 3), (2, 5))),
         ValueError, ("axis=4", "expected an int in [-2, 1]", "rank 2")),
    Case("fan-in-concat-other-axes", lambda: _init(fcnn.fan_in_concat(),
                                                   ((2, 3, 4), (2, 5, 4))),
         ValueError, ("input 1 has shape (2, 5, 4)", "(2, 3, 4)")),
    Case("fan-in-concat-axis-type", lambda: fcnn.fan_in_concat(axis="channels"),
         TypeError, ("axis='channels'",)),
    Case("residual-shape-change", lambda: _init(fcnn.residual(fcnn.Dense(3)), (2, 4)),
         ValueError, ("(2, 4)", "(2, 3)", "shape unchanged")),
    Case("residual-not-a-layer", lambda: fcnn.residual(3), TypeError, ("residual", "3")),
]

LOSSES = [
    Case("sce-label-range", lambda: losses.softmax_cross_entropy(zeros(2, 3), np.array([0, 5])),
         ValueError, ("labels", "[0, 3)", "[5]")),
    Case("sce-label-shape", lambda: losses.softmax_cross_entropy(zeros(2, 3), np.array([0, 1, 2])),
         ValueError, ("labels have shape (3,)", "(2,)")),
    Case("sce-one-hot-shape", lambda: losses.softmax_cross_entropy(zeros(2, 3), zeros(2, 4)),
         ValueError, ("labels have shape (2, 4)", "(2, 3)")),
    Case("sce-bool-labels", lambda: losses.softmax_cross_entropy(zeros(2, 3),
                                                                np.array([True, False])),
         TypeError, ("labels of dtype bool",)),
    Case("sce-scalar-logits", lambda: losses.softmax_cross_entropy(np.float32(0), np.array(0)),
         ValueError, ("logits is a scalar",)),
    Case("bce-label-range", lambda: losses.binary_cross_entropy_with_logits(
        zeros(2), np.array([0.0, 2.0])), ValueError, ("labels", "[0.0, 2.0]")),
    Case("bce-shape", lambda: losses.binary_cross_entropy_with_logits(zeros(2, 1), zeros(2)),
         ValueError, ("logits has shape (2, 1)", "labels has shape (2,)")),
    Case("half-squared-error-shape", lambda: losses.half_squared_error(zeros(2, 1), zeros(2)),
         ValueError, ("predictions has shape (2, 1)", "targets has shape (2,)")),
    Case("mse-shape", lambda: losses.mean_squared_error(zeros(3), zeros(2)),
         ValueError, ("(3,)", "(2,)")),
    Case("center-loss-dimension", lambda: losses.center_loss(zeros(2, 3), np.array([0, 1]),
                                                             zeros(4, 2)),
         ValueError, ("dimension 3", "centers have 2")),
    Case("center-loss-float-labels", lambda: losses.center_loss(zeros(2, 3), zeros(2),
                                                                zeros(4, 3)),
         TypeError, ("labels of dtype float32",)),
    Case("update-centers-alpha-range", lambda: losses.update_centers(
        zeros(4, 3), zeros(2, 3), np.array([0, 1]), 2.0), ValueError, ("alpha=2.0", "[0, 1]")),
    Case("update-centers-alpha-type", lambda: losses.update_centers(
        zeros(4, 3), zeros(2, 3), np.array([0, 1]), "0.5"), TypeError, ("alpha='0.5'",)),
    Case("loss-backward", lambda: losses.mean_squared_error(zeros(2), zeros(2), backward="auto"),
         ValueError, ("backward='auto'",)),
    Case("l2-penalty-backward", lambda: losses.l2_penalty({"w": zeros(2)}, backward="x"),
         ValueError, ("backward='x'",)),
]

INITIALIZERS = [
    Case("init-unknown-name", lambda: initializers.get("bogus"),
         ValueError, ("initializer='bogus'", "lecun_normal")),
    Case("init-not-callable", lambda: initializers.get(3), ValueError, ("initializer=3",)),
    Case("init-normal-std", lambda: initializers.normal(std=-1.0),
         ValueError, ("std=-1.0", "expected a finite number >= 0")),
    Case("init-uniform-nan", lambda: initializers.uniform(scale=float("nan")),
         ValueError, ("scale=nan", "expected a finite number >= 0")),
    Case("init-variance-mode", lambda: initializers.variance_scaling(1.0, "fan_mid", "normal"),
         ValueError, ("mode='fan_mid'", "fan_in")),
    Case("init-variance-distribution", lambda: initializers.variance_scaling(
        1.0, "fan_in", "cauchy"), ValueError, ("distribution='cauchy'",)),
    Case("init-variance-scale", lambda: initializers.variance_scaling(-2.0, "fan_in", "normal"),
         ValueError, ("scale=-2.0", "expected a finite number >= 0")),
    Case("init-sparse-0", lambda: initializers.sparse(num_connections=0),
         ValueError, ("num_connections=0",)),
    Case("init-sparse-too-many", lambda: initializers.sparse(20)(key(), (4, 3)),
         ValueError, ("num_connections=20", "4 inputs")),
    Case("init-fans-rank", lambda: initializers.compute_fans((3,)),
         ValueError, ("shape=(3,)", "rank >= 2")),
    Case("init-lecun-vector", lambda: initializers.lecun_normal(key(), (3,)),
         ValueError, ("shape=(3,)",)),
    Case("init-constant-inf", lambda: initializers.constant(float("inf")),
         ValueError, ("value=inf", "expected a finite number")),
    Case("init-orthogonal-scale", lambda: initializers.orthogonal(scale=-1.0),
         ValueError, ("scale=-1.0", "expected a finite number >= 0")),
]

SCHEDULES = [
    Case("schedule-constant-0", lambda: schedules.constant(0),
         ValueError, ("learning_rate=0", "expected a learning rate > 0")),
    Case("schedule-lr-bool", lambda: schedules.constant(True),
         ValueError, ("learning_rate=True", "expected a learning rate > 0")),
    Case("schedule-lr-inf", lambda: schedules.cosine_decay(float("inf"), 10),
         ValueError, ("learning_rate=inf", "a finite number")),
    Case("schedule-decay-steps-0", lambda: schedules.exponential_decay(0.1, 0, 0.5),
         ValueError, ("decay_steps=0", "expected a positive int")),
    Case("schedule-decay-steps-float", lambda: schedules.natural_exp_decay(0.1, 2.5, 0.5),
         ValueError, ("decay_steps=2.5", "expected a positive int")),
    Case("schedule-decay-rate", lambda: schedules.exponential_decay(0.1, 10, -0.5),
         ValueError, ("decay_rate=-0.5", "expected a finite number > 0")),
    Case("schedule-polynomial-end", lambda: schedules.polynomial_decay(0.1, 10, 0.2),
         ValueError, ("end_learning_rate=0.2", "learning_rate=0.1")),
    Case("schedule-polynomial-power", lambda: schedules.polynomial_decay(0.1, 10, power=0),
         ValueError, ("power=0", "expected a finite number > 0")),
    Case("schedule-cosine-alpha", lambda: schedules.cosine_decay(0.1, 10, alpha=2.0),
         ValueError, ("alpha=2.0", "expected a finite number in [0, 1]")),
    Case("schedule-piecewise-count", lambda: schedules.piecewise_constant([10, 20], [0.1, 0.01]),
         ValueError, ("values=[0.1, 0.01]", "3 values")),
    Case("schedule-piecewise-order", lambda: schedules.piecewise_constant([20, 10],
                                                                          [0.1, 0.01, 0.001]),
         ValueError, ("boundaries=[20, 10]", "increasing")),
    Case("schedule-piecewise-negative", lambda: schedules.piecewise_constant([-5], [0.1, 0.01]),
         ValueError, ("boundaries[0]=-5", "expected an int >= 0", "boundaries=[-5]")),
    Case("schedule-piecewise-value", lambda: schedules.piecewise_constant([5], [0.1, -0.01]),
         ValueError, ("values[1]=-0.01", "expected a learning rate > 0")),
    Case("schedule-linear-cosine-periods", lambda: schedules.linear_cosine_decay(
        0.1, 10, num_periods=-1), ValueError, ("num_periods=-1", "expected a finite number >= 0")),
    Case("schedule-noisy-seed", lambda: schedules.noisy_linear_cosine_decay(0.1, 10, seed=1.5),
         ValueError, ("seed=1.5", "expected an int")),
    Case("schedule-staircase-string", lambda: schedules.exponential_decay(0.1, 10, 0.5,
                                                                          staircase="yes"),
         TypeError, ("staircase='yes'",)),
    Case("schedule-cycle-int", lambda: schedules.polynomial_decay(0.1, 10, cycle=1),
         TypeError, ("cycle=1",)),
    Case("schedule-unknown-name", lambda: schedules.make_schedule("warmup"),
         ValueError, ("'warmup'", "cosine")),
]

OPTIMIZERS = [
    Case("optimizer-unknown", lambda: make_optimizer("adagrad", 0.1),
         ValueError, ("'adagrad'", "adam")),
    Case("optimizer-lr-0", lambda: make_optimizer("sgd", 0), ValueError, ("learning_rate=0",)),
    Case("optimizer-lr-string", lambda: make_optimizer("sgd", "0.1"),
         ValueError, ("learning_rate='0.1'",)),
    Case("optimizer-momentum-1", lambda: make_optimizer("momentum", 0.1, momentum=1.0),
         ValueError, ("momentum=1.0", "[0, 1)")),
    Case("optimizer-b2", lambda: make_optimizer("adam", 0.1, b2=1.5), ValueError, ("b2=1.5",)),
    Case("optimizer-eps-negative", lambda: make_optimizer("rmsprop", 0.1, eps=-1e-8),
         ValueError, ("eps=-1e-08",)),
    Case("optimizer-rprop-eta-minus", lambda: make_optimizer("rprop", 0.1, eta_minus=0),
         ValueError, ("eta_minus=0",)),
    Case("optimizer-rprop-eta-plus", lambda: make_optimizer("rprop", 0.1, eta_plus=1.0),
         ValueError, ("eta_plus=1.0",)),
    Case("optimizer-rprop-weight-decay", lambda: make_optimizer("rprop", 0.1, weight_decay=1e-4),
         ValueError, ("weight_decay=0.0001", "rprop")),
    Case("optimizer-max-norm-0", lambda: make_optimizer("sgd", 0.1, max_norm=0),
         ValueError, ("max_norm=0",)),
    Case("optimizer-l2-negative", lambda: make_optimizer("sgd", 0.1, l2=-1e-4),
         ValueError, ("l2=-0.0001",)),
    Case("optimizer-mask-name", lambda: make_optimizer("sgd", 0.1, l2=1e-4, mask="biases"),
         ValueError, ("mask='biases'", '"kernels"')),
    Case("optimizer-mask-number", lambda: make_optimizer("sgd", 0.1, l2=1e-4, mask=3),
         TypeError, ("mask=3",)),
    Case("regularizer-l1-negative", lambda: regularizers.add_l1(-0.5),
         ValueError, ("l1=-0.5", "expected a finite number >= 0")),
    Case("regularizer-max-norm-nan", lambda: regularizers.max_norm(float("nan")),
         ValueError, ("max_norm=nan", "expected a finite number > 0", "the bound c")),
    Case("trainable-mask-mode", lambda: trainable_mask({"w": zeros(2)}, "frozen"),
         ValueError, ("mode='frozen'", "'last'")),
]


def _write_idx_cases():
    return [
        Case("idx-missing-file", lambda: read_idx(str(_path("nope-idx1-ubyte"))),
             FileNotFoundError, ("nope-idx1-ubyte", "does not exist")),
        Case("idx-bad-magic", lambda: read_idx(_write("bad.idx", b"\x12\x34\x08\x03" + bytes(12))),
             DataFormatError, ("bad.idx", "0x12340803", "not an IDX magic number")),
        Case("idx-truncated-data", lambda: read_idx(_write(
            "short.idx", _idx_bytes(2051, (2, 3, 3), bytes(5)))),
             DataFormatError, ("short.idx", "truncated", "(2, 3, 3)", "only 5 bytes")),
        Case("idx-truncated-header", lambda: read_idx(_write("head.idx", b"\x00\x00\x08\x03\x00")),
             DataFormatError, ("head.idx", "truncated IDX header", "3 dimension sizes")),
        Case("idx-trailing-data", lambda: read_idx(_write(
            "long.idx", _idx_bytes(2049, (3,)) + b"\x00\x00")),
             DataFormatError, ("long.idx", "more data")),
        Case("idx-not-gzip", lambda: read_idx(_write("plain.idx.gz", _idx_bytes(2049, (3,)))),
             DataFormatError, ("plain.idx.gz", "not a gzip file", "remove the .gz")),
        Case("idx-truncated-gzip", lambda: read_idx(_write(
            "cut.idx.gz", gzip.compress(_idx_bytes(2049, (500,), bytes(range(250)) * 2))[:30])),
             DataFormatError, ("cut.idx.gz", "truncated gzip")),
        Case("idx-wrong-kind", lambda: read_idx(_write("labels.idx", _idx_bytes(2049, (3,))),
                                                expected_magic=2051),
             DataFormatError, ("labels.idx", "2049", "expected 2051")),
        Case("idx-directory", lambda: read_idx(_dir("idx-folder")),
             IsADirectoryError, ("idx-folder", "is a directory")),
        Case("mnist-file-not-dir", lambda: read_mnist(_write("mnist.txt", b"x")),
             FileNotFoundError, ("mnist.txt", "it is a file, not a directory")),
        Case("mnist-empty-dir", lambda: read_mnist(_dir("empty-mnist")),
             FileNotFoundError, ("empty-mnist", "train-images-idx3-ubyte.gz", "it is empty")),
        Case("mnist-kind", lambda: read_mnist(_dir("mnist-kind"), "valid"),
             ValueError, ("kind='valid'", "'train' or 'test'")),
        Case("mnist-count-mismatch", lambda: read_mnist(_mnist_dir("mnist-count", 3, 2)),
             DataFormatError, ("train-images-idx3-ubyte", "3 images", "2 labels")),
        Case("mnist-label-range", lambda: read_mnist(_mnist_dir("mnist-label", 2, 2, 12)),
             DataFormatError, ("train-labels-idx1-ubyte", "label 12", "0 to 9")),
        Case("cifar-record-size", lambda: read_cifar10(_cifar_dir("cifar-size",
                                                                  first_batch=bytes(100))),
             DataFormatError, ("data_batch_1.bin", "size 100 bytes", "3073")),
        Case("cifar-label-range", lambda: read_cifar10(_cifar_dir("cifar-label", label=10)),
             DataFormatError, ("data_batch_1.bin", "label 10", "CIFAR-100")),
        Case("cifar-python-version", lambda: read_cifar10(_cifar_python_dir()),
             ValueError, ("cifar-py", "pickled")),
        Case("cifar-missing", lambda: read_cifar10(_dir("cifar-none")),
             FileNotFoundError, ("cifar-none", "data_batch_1.bin")),
        Case("cifar-kind", lambda: read_cifar10(_dir("cifar-kind"), "val"),
             ValueError, ("kind='val'",)),
        Case("cifar-class-names", lambda: read_cifar10_class_names(_cifar_dir(
            "cifar-meta", meta="cat\ndog\nbird\n")),
             DataFormatError, ("batches.meta.txt", "expected 10 class names", "found 3")),
    ]


def _image_folder_cases():
    return [
        Case("image-folder-missing", lambda: read_image_folder(str(_path("no-images"))),
             FileNotFoundError, ("no-images", "does not exist")),
        Case("image-folder-no-splits", lambda: read_image_folder(_dir("flat-images")),
             FileNotFoundError, ("flat-images", "train/ and test/")),
        Case("image-folder-size", lambda: read_image_folder(_images("i1"), size=(0, 4)),
             ValueError, ("size=(0, 4)", "(height, width)")),
        Case("image-folder-channels", lambda: read_image_folder(_images("i2"), channels=2),
             ValueError, ("channels=2", "3 (RGB) or 1")),
        Case("image-folder-split", lambda: read_image_folder(_images("i3"), "dev"),
             ValueError, ("split='dev'",)),
        Case("image-folder-cache-dir", lambda: read_image_folder(_images("i4"), cache_dir=True),
             TypeError, ("cache_dir=True",)),
        Case("image-folder-corrupt", lambda: read_image_folder(
            _images("i5", {"train/dog/bad.png": b"\x89PNG broken"}), cache_dir=False),
             DataFormatError, ("bad.png", "not a readable JPEG or PNG")),
        Case("image-folder-mixed-sizes", lambda: read_image_folder(
            _images("i6", {"train/dog/0.png": _png(3, 3)}), cache_dir=False),
             DataFormatError, ("cat/0.png is 2 x 2", "dog/0.png is 3 x 3", "size=(H, W)")),
        Case("image-folder-missing-class", lambda: read_image_folder(
            _images("i7", {"test/dog/0.png": None}), cache_dir=False),
             DataFormatError, ("'dog'", "test split")),
        Case("image-folder-zip-traversal", lambda: read_image_folder(
            _images("evil.zip", {"train/cat/../../x.png": _png()}, zipped=True), cache_dir=False),
             DataFormatError, ("evil.zip", "'..' component")),
        Case("image-folder-zip-absolute", lambda: read_image_folder(
            _images("abs.zip", {"/train/cat/x.png": _png()}, zipped=True), cache_dir=False),
             DataFormatError, ("abs.zip", "/train/cat/x.png", "absolute path")),
        Case("image-folder-not-zip", lambda: read_image_folder(_write("fake.zip", b"PK?")),
             DataFormatError, ("fake.zip", "not a readable zip")),
        Case("image-folder-own-validation", lambda: load_image_folder(
            _images("i8", {"val/cat/0.png": _png(), "val/dog/0.png": _png()}),
            validation_size=0.1, cache_dir=False),
             ValueError, ("validation_size=0.1", "own validation split")),
        Case("cifar10-images-classes", lambda: read_cifar10_images(_images("i9"), cache_dir=False),
             DataFormatError, ("i9", "('cat', 'dog')", "CIFAR-10 classes")),
        Case("dataset-cache-dir", lambda: load_dataset("digits", cache_dir=7),
             TypeError, ("cache_dir=7",)),
    ]


DATA = _write_idx_cases() + _image_folder_cases() + [
    Case("dataset-unknown", lambda: load_dataset("imagenet"),
         ValueError, ("'imagenet'", "mnist")),
    Case("dataset-missing-dir", lambda: load_dataset("mnist", str(_path("no-such-dir"))),
         FileNotFoundError, ("no-such-dir", "does not exist", "--data-dir")),
    Case("dataset-dir-is-file", lambda: load_dataset("mnist", _write("data.txt", b"x")),
         FileNotFoundError, ("data.txt", "is a file, not a directory")),
    Case("dataset-normalize", lambda: load_dataset("digits", normalize="zscore"),
         ValueError, ("normalize='zscore'", "standardize")),
    Case("dataset-seed", lambda: load_dataset("digits", seed=-1),
         ValueError, ("seed=-1", "expected an int >= 0")),
    Case("dataset-validation-fraction", lambda: load_dataset("digits", validation_size=1.5),
         ValueError, ("validation_size=1.5", "expected a fraction in [0, 1)")),
    Case("split-too-many", lambda: split_off(zeros(5, 2), np.arange(5), 6, seed=0),
         ValueError, ("size=6", "expected a count in [0, 5]")),
    Case("split-size-string", lambda: split_off(zeros(5, 2), np.arange(5), "2", seed=0),
         TypeError, ("size='2'",)),
    Case("split-count-mismatch", lambda: split_off(zeros(5, 2), np.arange(4), 1, seed=0),
         ValueError, ("images has 5 examples", "labels has 4")),
    Case("split-three-way-total", lambda: train_validation_test_split(
        zeros(10, 2), np.arange(10) % 2, validation_size=6, test_size=5),
         ValueError, ("validation_size=6", "test_size=5", "10 available")),
    Case("normalization-kind", lambda: fit_normalization(zeros(4, 2, 2, 1), "zscore"),
         ValueError, ("normalize='zscore'",)),
    Case("normalization-empty", lambda: fit_normalization(zeros(0, 2, 2, 1)),
         ValueError, ("(0, 2, 2, 1)", "at least one example")),
    Case("normalization-channels", lambda: fit_normalization(zeros(4, 2, 2, 1)).apply(
        zeros(2, 2, 2, 3)), ValueError, ("(2, 2, 2, 3)", "1 channels")),
    Case("batches-size-0", lambda: BatchIterator(zeros(8, 2), np.arange(8), 0, seed=0),
         ValueError, ("batch_size=0",)),
    Case("batches-size-too-big", lambda: BatchIterator(zeros(8, 2), np.arange(8), 9, seed=0),
         ValueError, ("batch_size=9", "8 examples", "drop_last")),
    Case("batches-float-labels", lambda: BatchIterator(zeros(8, 2), zeros(8), 4, seed=0),
         ValueError, ("labels", "float32", "integer")),
    Case("batches-count-mismatch", lambda: BatchIterator(zeros(8, 2), np.arange(7), 4, seed=0),
         ValueError, ("images has shape (8, 2)", "7 entries")),
    Case("batches-seed", lambda: BatchIterator(zeros(8, 2), np.arange(8), 4, seed=-3),
         ValueError, ("seed=-3", "expected an int >= 0")),
    Case("batches-prefetch", lambda: BatchIterator(zeros(8, 2), np.arange(8), 4, seed=0,
                                                   prefetch=-1),
         ValueError, ("prefetch=-1", "expected True, False or an int >= 0")),
    Case("batches-start", lambda: BatchIterator(zeros(8, 2), np.arange(8), 4, seed=0,
                                                start=(0, 9)),
         ValueError, ("(0, 9)", "steps_per_epoch (= 2)")),
    Case("batches-drop-last-string", lambda: BatchIterator(zeros(8, 2), np.arange(8), 4, seed=0,
                                                           drop_last="no"),
         TypeError, ("drop_last='no'",)),
    Case("batches-empty", lambda: BatchIterator(zeros(0, 2), np.arange(0), 4, seed=0),
         ValueError, ("at least one example",)),
]

TRAINING = [
    Case("fit-epochs-0", lambda: _fit(epochs=0), ValueError, ("epochs=0",)),
    Case("fit-log-every", lambda: _fit(log_every=0), ValueError, ("log_every=0",)),
    Case("fit-on-nonfinite", lambda: _fit(on_nonfinite="ignore"),
         ValueError, ("on_nonfinite='ignore'", "'stop'")),
    Case("fit-resume-without-dir", lambda: _fit(resume=True),
         ValueError, ("resume=True", "out_dir")),
    Case("fit-train-data-type", lambda: _fit(train_data="digits"),
         TypeError, ("train_data=str", "(images, labels)")),
    Case("fit-batch-size-0", lambda: _fit(batch_size=0), ValueError, ("batch_size=0",)),
    Case("fit-batch-size-too-big", lambda: _fit(batch_size=100),
         ValueError, ("batch_size=100", "8 examples")),
    Case("fit-earlier-run", _earlier_run,
         ValueError, ("earlier", "holds checkpoints of an earlier run", "overwrite=True")),
    Case("fit-resume-other-batch-size", _resume_with_other_batch_size,
         ValueError, ("cannot resume", "'batch_size': 2", "'batch_size': 4")),
    Case("fit-seed", lambda: _fit(seed=-1), ValueError, ("seed=-1", "expected an int >= 0")),
    Case("fit-resume-missing", lambda: _fit(resume=str(_path("gone", "ckpt_00000003.json"))),
         CheckpointError, ("ckpt_00000003.json", "does not exist")),
    Case("fit-keep-0", lambda: _fit_checked_first(keep=0),
         ValueError, ("keep=0", "expected a positive int or None")),
    Case("fit-eval-batch-size-0", lambda: _fit_checked_first(
        eval_data=_tiny()[3], eval_batch_size=0), ValueError, ("eval_batch_size=0",)),
    Case("train-step-model", lambda: make_train_step(3, losses.softmax_cross_entropy,
                                                     make_optimizer("sgd", 0.1)),
         TypeError, ("model=3", "Layer(init, apply)")),
    Case("train-step-loss", lambda: make_train_step(fcnn.Dense(2), None,
                                                    make_optimizer("sgd", 0.1)),
         TypeError, ("loss_fn=None",)),
    Case("train-step-optimizer", lambda: make_train_step(fcnn.Dense(2),
                                                         losses.softmax_cross_entropy, "adam"),
         TypeError, ("optimizer='adam'", "GradientTransformation")),
    Case("train-step-penalty", lambda: make_train_step(
        fcnn.Dense(2), losses.softmax_cross_entropy, make_optimizer("sgd", 0.1), penalty=1e-4),
         TypeError, ("penalty=0.0001",)),
    Case("train-step-all-frozen", lambda: make_train_step(
        fcnn.Dense(2), losses.softmax_cross_entropy, make_optimizer("sgd", 0.1),
        trainable={"kernel": False}), ValueError, ("trainable", "frozen")),
    Case("train-step-batch-type", lambda: _train_step({"images": zeros(4, 3)}),
         ValueError, ("batch of type dict", "(images, labels)")),
    Case("train-step-batch-shape", lambda: _train_step((zeros(4, 5), np.zeros(4, np.int32))),
         ValueError, ("(4, 5)", "params['0']['kernel'] has shape (3, 2)", "(5, 2)")),
    Case("train-step-label-count", lambda: _train_step((zeros(4, 3), np.zeros(3, np.int32))),
         ValueError, ("images (4, 3)", "labels (3,)")),
    Case("eval-step-model", lambda: make_eval_step(None, losses.softmax_cross_entropy),
         TypeError, ("model=None",)),
    Case("evaluate-batch-size", lambda: evaluate_step(None, {}, {}, zeros(4, 3), np.zeros(4), 0),
         ValueError, ("batch_size=0",)),
    Case("evaluate-no-examples", lambda: evaluate_step(None, {}, {}, zeros(0, 3), np.zeros(0)),
         ValueError, ("evaluate", "images", "(0, 3)")),
]

CHECKPOINTS = [
    Case("checkpoint-step-negative", lambda: save_checkpoint(
        _dir("c1"), -1, params={}, state={}, opt_state={}, rng=key()),
         ValueError, ("step=-1", "expected an int >= 0")),
    Case("checkpoint-keep-0", lambda: save_checkpoint(
        _dir("c2"), 1, params={}, state={}, opt_state={}, rng=key(), keep=0),
         ValueError, ("keep=0", "expected a positive int or None")),
    Case("checkpoint-rng-none", lambda: save_checkpoint(
        _dir("c3"), 1, params={}, state={}, opt_state={}, rng=None),
         TypeError, ("rng=None",)),
    Case("checkpoint-string-leaf", lambda: save_checkpoint(
        _dir("c4"), 1, params={"name": "conv"}, state={}, opt_state={}, rng=key()),
         TypeError, ("params['name']", "'conv'")),
    Case("checkpoint-position-length", lambda: save_checkpoint(
        _dir("c5"), 1, params={}, state={}, opt_state={}, rng=key(), position=(1,)),
         ValueError, ("position=(1,)", "(epoch, step)")),
    Case("checkpoint-missing-file", lambda: _load(str(_path("ckpt_00000001.json")), {}),
         CheckpointError, ("ckpt_00000001.json", "does not exist")),
    Case("checkpoint-empty-dir", lambda: _load(_dir("no-ckpt"), {}),
         CheckpointError, ("no-ckpt", "no checkpoint")),
    Case("checkpoint-shape", lambda: _load(_checkpoint(), {"w": zeros(3, 3)}),
         CheckpointError, ("params['w']", "(2, 3) in the checkpoint", "(3, 3) in the model")),
    Case("checkpoint-dtype", lambda: _load(_checkpoint(), {"w": zeros(2, 3, dtype=np.float64)}),
         CheckpointError, ("params['w']", "float32", "float64")),
    Case("checkpoint-missing-leaf", lambda: _load(_checkpoint(), {"w": zeros(2, 3),
                                                                  "b": zeros(3)}),
         CheckpointError, ("params['b']", "is not in the checkpoint")),
    Case("checkpoint-extra-leaf", lambda: _load(_checkpoint(), {}),
         CheckpointError, ("params['w']", "does not have")),
    Case("checkpoint-corrupt-arrays", lambda: _load(_corrupt_arrays(), {"w": zeros(2, 3)}),
         CheckpointError, ("ckpt_00000007.npz", "SHA-256")),
    Case("checkpoint-foreign-json", lambda: _load(_write("other/ckpt_00000001.json",
                                                         b'{"a": 1}'), {}),
         CheckpointError, ("ckpt_00000001.json", "not an fcnn checkpoint")),
    Case("checkpoint-truncated-json", lambda: _load(_write("cut/ckpt_00000001.json",
                                                           b'{"format": "fcnn-chec'), {}),
         CheckpointError, ("ckpt_00000001.json", "corrupted or truncated")),
]

AUGMENT = [
    Case("augment-batch-not-image", lambda: augment.flip_horizontal(zeros(2, 4, 4, 3)),
         ValueError, ("image has shape (2, 4, 4, 3)", "map_batch")),
    Case("augment-flip-probability", lambda: augment.random_flip(key(), zeros(*IMG),
                                                                 probability=1.5),
         ValueError, ("probability=1.5", "expected a finite number in [0, 1]")),
    Case("augment-pad-negative", lambda: augment.pad(zeros(*IMG), -1),
         ValueError, ("padding=-1",)),
    Case("augment-pad-triple", lambda: augment.pad(zeros(*IMG), (1, 2, 3)),
         ValueError, ("padding=(1, 2, 3)", "(rows, cols)")),
    Case("augment-pad-mode", lambda: augment.pad(zeros(*IMG), 1, mode="mirror"),
         ValueError, ("mode='mirror'", "reflect")),
    Case("augment-crop-too-big", lambda: augment.crop(zeros(*IMG), 0, 0, 5, 5),
         ValueError, ("height=5", "expected an int in [1, 4]", "(4, 4, 3)")),
    Case("augment-crop-outside", lambda: augment.crop(zeros(*IMG), 3, 0, 2, 2),
         ValueError, ("top=3", "height=2", "(4, 4, 3)")),
    Case("augment-blur-even-kernel", lambda: augment.gaussian_blur(zeros(*IMG), 1.0,
                                                                   kernel_size=4),
         ValueError, ("kernel_size=4", "odd")),
    Case("augment-blur-bool-kernel", lambda: augment.gaussian_blur(zeros(*IMG), 1.0,
                                                                   kernel_size=True),
         ValueError, ("kernel_size=True",)),
    Case("augment-blur-sigma", lambda: augment.gaussian_blur(zeros(*IMG), -1.0),
         ValueError, ("sigma=-1.0", "expected a finite number >= 0")),
    Case("augment-noise-std", lambda: augment.gaussian_noise(key(), zeros(*IMG), std=-0.1),
         ValueError, ("std=-0.1", "expected a finite number >= 0")),
    Case("augment-noise-std-inf", lambda: augment.gaussian_noise(key(), zeros(*IMG),
                                                                 std=float("inf")),
         ValueError, ("std=inf", "expected a finite number >= 0")),
    Case("augment-noise-std-string", lambda: augment.gaussian_noise(key(), zeros(*IMG), std="0.1"),
         ValueError, ("std='0.1'", "expected a finite number >= 0")),
    Case("augment-scale-order", lambda: augment.random_scale(key(), zeros(*IMG), 1.2, 0.8),
         ValueError, ("min_scale=1.2", "max_scale=0.8")),
    Case("augment-zoom-0", lambda: augment.zoom(zeros(*IMG), 0.0),
         ValueError, ("factor=0.0", "expected a finite number > 0")),
    Case("augment-rotation-negative", lambda: augment.random_rotation(key(), zeros(*IMG), -5.0),
         ValueError, ("max_degrees=-5.0", "expected a finite number >= 0")),
    Case("augment-shift-negative", lambda: augment.random_shift(key(), zeros(*IMG), -0.1),
         ValueError, ("max_shift=-0.1", "expected a finite number >= 0")),
    Case("augment-jitter-brightness", lambda: augment.color_jitter(key(), zeros(*IMG),
                                                                   brightness=-0.2),
         ValueError, ("brightness=-0.2", "expected a finite number >= 0")),
    Case("augment-scale-zero", lambda: augment.random_scale(key(), zeros(*IMG), 0.0, 1.0),
         ValueError, ("min_scale=0.0", "expected a finite number > 0")),
    Case("augment-map-batch-rank", lambda: augment.map_batch(augment.random_flip, key(),
                                                             zeros(*IMG)),
         ValueError, ("images has shape (4, 4, 3)", "(N, H, W, C)")),
    Case("augment-pca-lighting-shapes", lambda: augment.pca_lighting(
        key(), zeros(*IMG), zeros(2), zeros(3, 3)), ValueError, ("eigvals (2,)", "(3,)")),
    Case("augment-pca-components-rank", lambda: augment.pca_components(zeros(5)),
         ValueError, ("images has shape (5,)",)),
]

METRICS = [
    Case("metrics-logits-rank", lambda: metrics.accuracy(zeros(3), np.zeros(3, np.int32)),
         ValueError, ("logits has shape (3,)", "(batch, classes)")),
    Case("metrics-batch-mismatch", lambda: metrics.accuracy(zeros(4, 3), np.zeros(5, np.int32)),
         ValueError, ("labels has shape (5,)", "(4, 3)")),
    Case("metrics-one-hot-width", lambda: metrics.accuracy(zeros(4, 3), zeros(4, 2)),
         ValueError, ("labels has shape (4, 2)", "(4, 3)")),
    Case("metrics-top-k-0", lambda: metrics.top_k_accuracy(zeros(4, 3), np.zeros(4, np.int32), 0),
         ValueError, ("k=0", "[1, 3]")),
    Case("metrics-top-k-too-big", lambda: metrics.top_k_accuracy(zeros(4, 3),
                                                                 np.zeros(4, np.int32), 4),
         ValueError, ("k=4", "[1, 3]")),
    Case("metrics-top-k-bool", lambda: metrics.top_k_accuracy(zeros(4, 3),
                                                              np.zeros(4, np.int32), True),
         ValueError, ("k=True",)),
    Case("metrics-confusion-classes-0", lambda: metrics.confusion_matrix(
        zeros(4, 3), np.zeros(4, np.int32), num_classes=0), ValueError, ("num_classes=0",)),
    Case("metrics-confusion-too-few-classes", lambda: metrics.confusion_matrix(
        zeros(4, 3), np.zeros(4, np.int32), num_classes=2),
         ValueError, ("num_classes=2", "3 classes")),
]

TABLE = OPS + LAYERS + COMBINATORS + LOSSES + INITIALIZERS + SCHEDULES + OPTIMIZERS + DATA + \
    TRAINING + CHECKPOINTS + AUGMENT + METRICS
AREAS = {
    "ops": OPS, "layers": LAYERS, "combinators": COMBINATORS, "losses": LOSSES,
    "initializers": INITIALIZERS, "schedules": SCHEDULES, "optimizers": OPTIMIZERS,
    "data": DATA, "training": TRAINING, "checkpoints": CHECKPOINTS, "augment": AUGMENT,
    "metrics": METRICS,
}
MIN_CASES = 80


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in TABLE])
def test_bad_input_is_refused_with_a_message(case: Case):
    with pytest.raises(case.exc_type) as info:
        case.call()
    message = str(info.value)
    missing = [text for text in case.must_mention if text not in message]
    assert not missing, f"{case.id}: the message lacks {missing}: {message!r}"


def test_the_table_is_large_and_its_ids_unique():
    ids = [c.id for c in TABLE]
    assert len(TABLE) >= MIN_CASES, f"only {len(TABLE)} bad-input cases, expected >= {MIN_CASES}"
    assert len(set(ids)) == len(ids), sorted({i for i in ids if ids.count(i) > 1})
    assert all(AREAS.values()), [name for name, cases in AREAS.items() if not cases]


def test_every_case_expects_a_documented_error_and_says_what():
    """No case may be satisfied by an assert, a bare Exception, or an empty message check."""
    for case in TABLE:
        assert issubclass(case.exc_type, (ValueError, TypeError, OSError)), case.id
        assert not issubclass(case.exc_type, AssertionError), case.id
        assert case.must_mention and all(isinstance(t, str) and t for t in case.must_mention), case.id
