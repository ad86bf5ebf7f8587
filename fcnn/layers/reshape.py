"""Shape-only layers: `Flatten`."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from fcnn.layers.base import Layer, check_train_flag

__all__ = ["Flatten"]


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
