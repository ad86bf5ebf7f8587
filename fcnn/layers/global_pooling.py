"""Pooling layers to a fixed size: `GlobalMaxPool()` and `AdaptiveAvgPool(output_size)`,
on `fcnn.ops.pooling.global_max_pool` and `adaptive_avg_pool`."""

from __future__ import annotations

import numpy as np

from fcnn import _checks
from fcnn.layers.base import POOLING, Layer, check_train_flag
from fcnn.layers.pooling import global_pool_layer
from fcnn.ops.pooling import adaptive_avg_pool, adaptive_avg_pool_output_shape, global_max_pool

__all__ = ["AdaptiveAvgPool", "GlobalMaxPool"]


def GlobalMaxPool(backward="custom") -> Layer:  # noqa: N802
    """Max over every spatial position: (N, *S, C) -> (N, C), 1-3 spatial dims.

    The gradient goes to the first maximum in row-major order (the tie rule of
    `MaxPool`). No params, no state. See `fcnn.ops.pooling.global_max_pool`.
    """
    return global_pool_layer("GlobalMaxPool", global_max_pool, backward)


def AdaptiveAvgPool(output_size, backward="custom") -> Layer:  # noqa: N802
    """Average pooling to a fixed spatial size: (N, *S, C) -> (N, *output_size, C).

    Output cell i of a dimension of size W averages [floor(i W / O), ceil((i + 1) W / O))
    (PyTorch's AdaptiveAvgPool), so a classifier head sees the same size whatever the
    input resolution (AlexNet's and VGG's 6x6 / 7x7 heads in torchvision). An int
    `output_size` applies to every spatial dim (the count from the input rank at init);
    a tuple fixes the rank. No params, no state. See
    `fcnn.ops.pooling.adaptive_avg_pool`.
    """
    if _checks.is_int(output_size):
        output_size = _checks.positive_int(output_size, "output_size")
        ndim = None
    else:
        if output_size is None:
            raise TypeError("output_size=None: expected an int or a tuple of ints")
        output_size = _checks.spatial_tuple_or_none(output_size, None, "output_size")
        ndim = len(output_size)
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"output_size={output_size!r}: expected an int or a tuple of 1, 2 or 3 ints "
                "(one per spatial dimension)"
            )
    backward = _checks.check_backward(backward)
    name = f"AdaptiveAvgPool({output_size!r})"

    def check_rank(shape, what):
        _checks.check_rank(shape, (3, 4, 5), what, name)
        if ndim is not None and len(shape) != ndim + 2:
            raise ValueError(
                f"{name}: {what} has shape {tuple(shape)} (rank {len(shape)}), but "
                f"output_size={output_size!r} has {ndim} entries, so the input must have "
                f"rank {ndim + 2} (batch, *spatial, channels)"
            )

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        check_rank(input_shape, "input_shape")
        return adaptive_avg_pool_output_shape(input_shape, output_size, name=name), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        check_rank(np.shape(x), "x")
        return adaptive_avg_pool(x, output_size, backward), state

    return Layer(init, apply, name=name, role=POOLING)
