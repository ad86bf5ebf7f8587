"""Export: a model's inference function as serialized StableHLO (`jax.export`).

    fcnn.export.export_predict(model, params, state, (64, 28, 28, 1), "digits.stablehlo")
    ...
    predict = fcnn.export.load_exported("digits.stablehlo")   # any process, no model code
    logits = predict(images)                                   # (N, classes) NumPy array

The exported function is `images -> model.apply(params, state, images, train=False)`
(or its softmax) with params and state baked in as constants: the file alone is
the trained model, read back without pickle (`jax.export.deserialize` of a
flatbuffer) and without the Python code that built it. It runs on the platforms it
was exported for (default: the current backend).

Batch size: with an int batch in `example_shape` the function is compiled for that
batch, and the loaded callable feeds any number of images in batches of it
(padding the last, as `predict` does). With `None` (or a name such as "b") the batch
is a symbolic dimension (`jax.export.symbolic_shape`) and one function serves every
batch size (convolutions then take XLA's convolution: the CPU lowerings are chosen
from concrete shapes).

Without fcnn, the file is read with jax alone:

    exported = jax.export.deserialize(bytearray(open(path, "rb").read()))
    logits = exported.call(images)    # images of exported.in_avals[0].shape
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from fcnn._checks import is_int
from fcnn.data.download import atomic_write
from fcnn.train.inference import OUTPUTS, _forward, check_images
from fcnn.train.step import _check_model, check_batch_fits

MISSING_FLATBUFFERS = (
    "jax.export (de)serialization needs the flatbuffers package, which is not installed: "
    "pip install flatbuffers"
)
SYMBOLIC_HELP = (
    "a symbolic batch needs every op of the model to accept a shape that is not a "
    "number; export this model with an int batch, e.g. (64, 28, 28, 1)"
)


def _batch_spec(example_shape):
    """(shape spec for jax.export: ints and at most a symbolic batch name, is symbolic)."""
    if isinstance(example_shape, str):
        dims = [d.strip() for d in example_shape.split(",")]
        example_shape = tuple(int(d) if d.lstrip("-").isdigit() else d for d in dims)
    ok = isinstance(example_shape, (tuple, list)) and len(example_shape) >= 2 and all(
        is_int(d) and d >= 1 for d in example_shape[1:])
    batch = example_shape[0] if ok else None
    ok = ok and (batch is None or (is_int(batch) and batch >= 1) or (
        isinstance(batch, str) and batch.isidentifier()))
    if not ok:
        raise ValueError(
            f"example_shape={example_shape!r}: expected the input shape with the batch first, "
            "(batch, ...) with positive ints after it and the batch a positive int (a fixed "
            "batch) or None or a name such as 'b' (a symbolic batch), e.g. (64, 28, 28, 1) "
            "or (None, 28, 28, 1) or 'b, 28, 28, 1'"
        )
    rest = tuple(int(d) for d in example_shape[1:])
    if is_int(batch):
        return (int(batch),) + rest, False
    name = batch if isinstance(batch, str) else "batch"
    return jax_export.symbolic_shape(", ".join([name] + [str(d) for d in rest])), True


def export_predict(model, params, state, example_shape, path, *, output: str = "logits",
                   dtype=jnp.float32, platforms=None) -> str:
    """Exports `images -> outputs` of the model in eval mode and writes it to `path`.

    Args:
      model, params, state: the model and its trained parameters and state (baked in).
      example_shape: the input shape, batch first: (64, 28, 28, 1) for a fixed batch,
        (None, 28, 28, 1) or "b, 28, 28, 1" for a symbolic one (see the module doc).
      path: the file to write (the bytes of `jax.export.Exported.serialize()`),
        written to a temporary file and renamed.
      output: "logits" or "probabilities" (softmax over the last axis, >= float32).
      dtype: the input dtype (default float32).
      platforms: e.g. ("cpu", "cuda"); default the current backend.

    Returns the path. Arguments are checked (and the params against the shape)
    before anything is traced or written.
    """
    model = _check_model(model)
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}: expected one of {OUTPUTS}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r}: expected a file path (str or os.PathLike)")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype={dtype!r}: expected a numeric dtype, e.g. jnp.float32") from None
    if dtype.kind not in "biuf" and dtype != jnp.bfloat16:
        raise TypeError(f"dtype={dtype}: expected a numeric dtype, e.g. jnp.float32")
    if platforms is not None and (isinstance(platforms, str) or not all(
            isinstance(p, str) for p in platforms)):
        raise TypeError(f"platforms={platforms!r}: expected a sequence of names, e.g. ('cpu',)")
    shape, symbolic = _batch_spec(example_shape)
    check_batch_fits(model, params, (1,) + tuple(shape[1:]) if symbolic else shape)

    def infer(images):
        return _forward(model, params, state, images, output)

    spec = jax.ShapeDtypeStruct(shape, dtype)
    try:
        exported = jax_export.export(
            jax.jit(infer), platforms=None if platforms is None else tuple(platforms))(spec)
    except jax.errors.InconclusiveDimensionOperation as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"example_shape={example_shape!r}: {SYMBOLIC_HELP} ({first})") from err
    try:
        blob = bytes(exported.serialize())
    except ImportError as err:
        raise ImportError(MISSING_FLATBUFFERS) from err
    return atomic_write(path, [blob])


class ExportedPredict:
    """A loaded exported model: `fn(images) -> (N, ...) NumPy array`.

    `exported` is the `jax.export.Exported`; `batch_size` the fixed batch it was
    exported with (None if symbolic); `input_shape` and `input_dtype` what one image
    must be.
    """

    def __init__(self, exported, path: str):
        self.exported = exported
        self.path = path
        aval = exported.in_avals[0]
        batch = aval.shape[0]
        self.batch_size = None if jax_export.is_symbolic_dim(batch) else int(batch)
        self.input_shape = tuple(int(d) for d in aval.shape[1:])
        self.input_dtype = np.dtype(aval.dtype)
        self._call = jax.jit(exported.call)

    def __repr__(self) -> str:
        batch = "any" if self.batch_size is None else self.batch_size
        return (f"ExportedPredict({self.path!r}, input {self.input_dtype}{list(self.input_shape)}, "
                f"batch {batch}, outputs {self.exported.out_avals[0].str_short()})")

    def __call__(self, images) -> np.ndarray:
        images = check_images(images)
        if images.shape[1:] != self.input_shape:
            raise ValueError(
                f"images has shape {images.shape}: this exported model takes (N, "
                f"{', '.join(map(str, self.input_shape))}) images ({self.path})"
            )
        images = images.astype(self.input_dtype, copy=False)
        if self.batch_size is None:
            return np.asarray(self._call(images))
        n, size = images.shape[0], self.batch_size
        outs = []
        for begin in range(0, n, size):
            x = images[begin:begin + size]
            short = size - x.shape[0]
            if short:
                x = np.concatenate([x, np.zeros((short,) + x.shape[1:], x.dtype)])
            outs.append(self._call(x))
        return np.concatenate([np.asarray(o) for o in jax.device_get(outs)])[:n]


def load_exported(path) -> ExportedPredict:
    """Reads a file written by `export_predict`; returns the callable
    `fn(images (N, ...)) -> (N, classes) NumPy array` (see `ExportedPredict`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r}: expected a file path (str or os.PathLike)")
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    try:
        exported = jax_export.deserialize(bytearray(blob))
    except ImportError as err:
        raise ImportError(MISSING_FLATBUFFERS) from err
    except Exception as err:  # the flatbuffer reader raises several kinds
        raise ValueError(
            f"{path!r} is not a serialized jax.export function (as export_predict writes): {err}"
        ) from err
    if len(exported.in_avals) != 1:
        raise ValueError(
            f"{path!r} holds a function of {len(exported.in_avals)} inputs: expected one "
            "(the images), as export_predict writes"
        )
    return ExportedPredict(exported, path)


__all__ = ["ExportedPredict", "export_predict", "load_exported"]
