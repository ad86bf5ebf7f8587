"""Inference: a model's outputs over a whole image array, batched and compiled once.

    logits = predict(model, params, state, test.images)                  # (N, classes)
    probs = predict(model, params, state, test.images, output="probabilities")

The model runs in eval mode (`train=False`: running statistics, no dropout) in
batches of `min(batch_size, N)` images; the last batch is padded with zeros to that
size and the padding's outputs dropped, so the compiled function sees one batch shape
and compiles once per (model, batch shape, dtype). Outputs are gathered on the device
and pulled to the host once, as one NumPy array.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fcnn._checks import positive_int
from fcnn.train.step import _check_model, check_batch_fits

OUTPUTS = ("logits", "probabilities")


@functools.partial(jax.jit, static_argnames=("model", "output"))
def _forward(model, params, state, images, output: str):
    # `model` is static: a Layer is a tuple of two functions, hashed by them, so each
    # model compiles its own function once per batch shape and jax's cache keeps it.
    logits, _ = model.apply(params, state, images, train=False)
    if output == "probabilities":
        logits = jnp.asarray(logits)
        dtype = jnp.promote_types(logits.dtype, jnp.float32)  # softmax in >= float32
        return jax.nn.softmax(logits.astype(dtype), axis=-1)
    return logits


def check_images(images, name: str = "images") -> np.ndarray:
    """`images` as a NumPy array (N, ...) of numbers with N >= 1, else ValueError/TypeError."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {array.dtype}: expected an array of numbers (N, ...), e.g. "
            "float32 images (N, H, W, C)"
        )
    if array.ndim < 2 or array.shape[0] == 0:
        raise ValueError(
            f"{name} has shape {array.shape}: expected (N, ...) with at least one example "
            "and a batch axis first (for one image x, pass x[None])"
        )
    return array


def predict(model, params, state, images, *, batch_size: int = 256,
            output: str = "logits") -> np.ndarray:
    """The model's outputs for `images`, in eval mode, as a NumPy array.

    Args:
      model: the `Layer` the params belong to.
      params, state: its trained parameters and state (e.g. `FitResult.params`, or
        `load_for_inference(...)`).
      images: (N, ...) array (NumPy or jax), e.g. (N, H, W, C).
      batch_size: images per compiled call; the last batch is padded to the same
        size so the function compiles once.
      output: "logits" (the model's outputs) or "probabilities" (their softmax over
        the last axis, computed in float32 or wider).

    Returns:
      (N, classes) NumPy array (more generally (N, *output_shape)): row i belongs to
      images[i].

    Raises ValueError / TypeError naming the argument before any work when an
    argument is malformed or the params do not fit images of this shape.
    """
    model = _check_model(model)
    batch_size = positive_int(batch_size, "batch_size")
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}: expected one of {OUTPUTS}")
    images = check_images(images)
    n = images.shape[0]
    size = min(batch_size, n)
    check_batch_fits(model, params, (size,) + images.shape[1:])
    outs = []
    for begin in range(0, n, size):
        x = images[begin:begin + size]
        short = size - x.shape[0]
        if short:
            x = np.concatenate([x, np.zeros((short,) + x.shape[1:], x.dtype)])
        outs.append(_forward(model, params, state, x, output))
    # one transfer at the end: the batches above are dispatched without waiting
    host = jax.device_get(outs)
    return np.concatenate([np.asarray(o) for o in host])[:n]


__all__ = ["OUTPUTS", "check_images", "predict"]
