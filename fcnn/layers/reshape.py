"""Shape-only layers: `Flatten` and `Reshape`."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from fcnn import _checks
from fcnn.layers.base import Layer, check_train_flag

__all__ = ["Flatten", "Reshape"]


def Flatten() -> Layer:  # noqa: N802
    """Flattens every axis but the batch: (N, d1, ..., dk) -> (N, d1 * ... * dk).

    Row-major (C) order, so a channels-last map (N, H, W, C) becomes
    x[n, (h * W + w) * C + c]. No params, no state. The backward of a reshape is the
    inverse reshape (docs/derivations/pooling_dense.md, section "Flatten").
    """
    name = "Flatten"

    def flat_shape(shape, what):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                f"{name}: {what} has shape {shape}: expected (batch, d1, ..., dk), rank >= 2"
            )
        return shape[0], math.prod(shape[1:])

    def init(rng, input_shape):
        del rng
        return flat_shape(input_shape, "input_shape"), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        return jnp.reshape(x, flat_shape(np.shape(x), "x")), state

    return Layer(init, apply, name=name)


def Reshape(shape) -> Layer:  # noqa: N802
    """Reshapes every example: (N, *in) -> (N, *shape), row-major (C) order.

    `shape` is the per-example shape (without the batch); one entry may be -1, taking
    whatever size makes the element counts match. No params, no state. Like `Flatten`,
    the backward is the inverse reshape. Example: `Reshape((7, 7, 64))` after
    `Dense(7 * 7 * 64)` maps (N, 3136) to (N, 7, 7, 64).
    """
    if _checks.is_int(shape):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape or not all(
            _checks.is_int(d) for d in shape):
        raise TypeError(
            f"shape={shape!r}: expected a non-empty tuple of ints, the shape of one "
            "example (without the batch), with at most one -1")
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1 or any(d < 1 and d != -1 for d in shape):
        raise ValueError(
            f"shape={shape!r}: expected positive sizes and at most one -1 (the size "
            "inferred from the input)")
    name = f"Reshape({shape!r})"

    def resolve(in_shape, what):
        in_shape = tuple(in_shape)
        if len(in_shape) < 1:
            raise ValueError(f"{name}: {what} has shape {in_shape}: expected (batch, ...)")
        size = math.prod(in_shape[1:])
        known = math.prod(d for d in shape if d != -1)
        if -1 in shape:
            if size % known:
                raise ValueError(
                    f"{name}: {what} has shape {in_shape}, {size} values per example, "
                    f"not divisible by {known}, the product of the other entries of shape")
            resolved = tuple(size // known if d == -1 else d for d in shape)
        elif size != known:
            raise ValueError(
                f"{name}: {what} has shape {in_shape}, {size} values per example, but "
                f"shape={shape!r} holds {known}")
        else:
            resolved = shape
        return (in_shape[0], *resolved)

    def init(rng, input_shape):
        del rng
        return resolve(input_shape, "input_shape"), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        return jnp.reshape(x, resolve(np.shape(x), "x")), state

    return Layer(init, apply, name=name)
