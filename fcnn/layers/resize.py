"""The upsampling layer: `Upsample(scale, method)` on `fcnn.ops.resize`."""

from __future__ import annotations

import numpy as np

from fcnn import _checks
from fcnn.layers.base import Layer, check_train_flag
from fcnn.ops.resize import check_method, upsample, upsample_output_shape

__all__ = ["Upsample"]


def Upsample(scale, method: str = "nearest", backward: str = "custom") -> Layer:  # noqa: N802
    """Upsamples (N, *S, C) to (N, *(S * scale), C) by integer factors, 1-3 spatial dims.

    `scale`: a positive int (every spatial dim, the count taken from the input rank at
    init) or one int per spatial dim (which fixes the rank). `method`: "nearest" (each
    cell copied) or "bilinear" (half-pixel centres, align_corners=False, as PyTorch's
    `nn.Upsample(mode="bilinear")` and TensorFlow 2's `tf.image.resize`; linear along
    each spatial axis). No params, no state. See `fcnn.ops.resize.upsample`.

    Example: `Upsample(2)` maps (N, 7, 7, 64) to (N, 14, 14, 64).
    """
    if _checks.is_int(scale):
        scale = _checks.positive_int(scale, "scale")
        ndim = None
    else:
        if scale is None:
            raise TypeError("scale=None: expected an int or a tuple of ints")
        scale = _checks.spatial_tuple_or_none(scale, None, "scale")
        ndim = len(scale)
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"scale={scale!r}: expected an int or a tuple of 1, 2 or 3 ints (one per "
                "spatial dimension)"
            )
    method = check_method(method)
    backward = _checks.check_backward(backward)
    name = f"Upsample({scale!r}, method={method!r})"

    def check_rank(shape, what):
        _checks.check_rank(shape, (3, 4, 5), what, name)
        if ndim is not None and len(shape) != ndim + 2:
            raise ValueError(
                f"{name}: {what} has shape {tuple(shape)} (rank {len(shape)}), but "
                f"scale={scale!r} has {ndim} entries, so the input must have rank "
                f"{ndim + 2} (batch, *spatial, channels)"
            )

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        check_rank(input_shape, "input_shape")
        return upsample_output_shape(input_shape, scale, name=name), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        check_rank(np.shape(x), "x")
        return upsample(x, scale, method, backward), state

    return Layer(init, apply, name=name)
