"""The transposed convolution layer: `ConvTranspose(features, kernel_size, ...)` on
`fcnn.ops.conv_transpose`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import _checks, initializers
from fcnn.layers.base import CONVOLUTION, Layer, check_train_flag
from fcnn.ops.conv import RANKS
from fcnn.ops.conv_transpose import (
    SAME_FIXES_OUTPUT_PADDING,
    conv_transpose,
    conv_transpose_output_shape,
)

__all__ = ["ConvTranspose"]


def _spatial_rank(kernel_size) -> int | None:
    """The spatial rank fixed by a tuple `kernel_size`, or None for an int."""
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        if len(kernel_size) not in (1, 2, 3):
            raise ValueError(
                f"kernel_size={kernel_size!r}: expected an int or a tuple of 1, 2 or 3 ints "
                "(one per spatial dimension)"
            )
        return len(kernel_size)
    return None


def ConvTranspose(  # noqa: N802 (layers are named like classes, as in stax)
    features: int,
    kernel_size,
    strides=1,
    padding="SAME",
    output_padding=None,
    dilation=1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init=initializers.lecun_normal,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
) -> Layer:
    """Transposed convolution over 1, 2 or 3 spatial dims with `features` output channels.

    Input (N, *S, C_in), output (N, *S_out, features); params
    {"kernel": (*kernel_size, C_in // groups, features), "bias": (features,)} (no "bias"
    when use_bias=False). Per spatial dimension (PyTorch's formula),

        S_out = (S - 1) * strides - P_lo - P_hi + dilation * (kernel_size - 1) + 1
                + output_padding

    `padding` is "SAME" (S_out = S * strides, the adjoint of a "SAME" convolution with
    those strides), "VALID" (P = 0), an int, or one (low, high) pair per spatial dim.
    `output_padding` (int or one per dim, < max(strides, dilation); not with "SAME")
    picks among the sizes a strided convolution maps to one size. An int
    `kernel_size` takes the number of spatial dims from the input rank at init.
    See `fcnn.ops.conv_transpose` for the definition and the backward rule.

    Example: `ConvTranspose(16, 3, strides=2, padding=1, output_padding=1)` maps
    (N, 6, 6, C) to (N, 12, 12, 16): (6 - 1) * 2 - 2 + 3 + 1 = 12, undoing the size
    change of `Conv(C, 3, strides=2, padding=1)` on 12 x 12.
    """
    features = _checks.positive_int(features, "features")
    ndim = _spatial_rank(kernel_size)
    kernel_size = _checks.spatial_tuple_or_none(kernel_size, ndim, "kernel_size")
    strides = _checks.spatial_tuple_or_none(strides, ndim, "strides")
    dilation = _checks.spatial_tuple_or_none(dilation, ndim, "dilation")
    padding = _checks.check_padding(padding)
    if ndim is not None and isinstance(padding, tuple) and len(padding) != ndim:
        raise ValueError(
            f"padding={padding!r}: expected {ndim} (low, high) pairs, one per spatial "
            f"dimension of kernel_size={kernel_size!r}"
        )
    if output_padding is not None:
        if padding == "SAME":
            raise ValueError(SAME_FIXES_OUTPUT_PADDING.format(value=output_padding))
        if _checks.is_int(output_padding):
            _checks.check_int(output_padding, "output_padding", low=0)
        else:
            if not isinstance(output_padding, Sequence) or isinstance(output_padding, str):
                raise TypeError(
                    f"output_padding={output_padding!r}: expected None, a non-negative int "
                    "or one per spatial dimension")
            _checks.spatial_tuple(output_padding, ndim or len(output_padding),
                                  "output_padding", minimum=0)
    groups = _checks.positive_int(groups, "groups")
    if features % groups:
        raise ValueError(f"groups={groups}: features (={features}) must be divisible by groups")
    use_bias = _checks.check_bool(use_bias, "use_bias")
    backward = _checks.check_backward(backward)
    kernel_init = initializers.get(kernel_init)
    bias_init = initializers.get(bias_init)
    name = f"ConvTranspose({features}, {kernel_size!r})"
    op_kwargs = dict(strides=strides, padding=padding, output_padding=output_padding,
                     dilation=dilation, groups=groups)

    def spatial_dims(shape, what: str) -> int:
        if ndim is None:
            _checks.check_rank(shape, RANKS, what, name)
            return len(shape) - 2
        if len(shape) != ndim + 2:
            raise ValueError(
                f"{name}: {what} has shape {tuple(shape)} (rank {len(shape)}), but "
                f"kernel_size={kernel_size!r} has {ndim} spatial dimension(s), so the input "
                f"must have rank {ndim + 2} (batch, *spatial, channels); pass an int "
                "kernel_size to take the dimensions from the input"
            )
        return ndim

    def init(rng, input_shape):
        input_shape = tuple(input_shape)
        nd = spatial_dims(input_shape, "input_shape")
        c_in = _checks.positive_int(input_shape[-1], f"{name}: input channels")
        if c_in % groups:
            raise ValueError(f"groups={groups}: in_channels (={c_in}) must be divisible by groups")
        kernel_shape = _checks.spatial_tuple(kernel_size, nd, "kernel_size") + (
            c_in // groups, features,
        )
        output_shape = conv_transpose_output_shape(input_shape, kernel_shape, **op_kwargs)
        kernel_rng, bias_rng = jax.random.split(rng)
        params = {"kernel": kernel_init(kernel_rng, kernel_shape, param_dtype)}
        if use_bias:
            params["bias"] = bias_init(bias_rng, (features,), param_dtype)
        return output_shape, params, {}

    def apply(params, state, x, *, train, rng=None):
        check_train_flag(train, name)
        del rng
        kernel = params["kernel"]
        shape = np.shape(x)
        if len(shape) != kernel.ndim:
            spatial_dims(shape, "x")  # the constructor's rank error, if any
            raise ValueError(
                f"{name}: x has shape {tuple(shape)} (rank {len(shape)}), but the params "
                f"were initialised for inputs of rank {kernel.ndim} (kernel shape "
                f"{tuple(kernel.shape)}); call init with the shape of this input"
            )
        if shape[-1] != kernel.shape[-2] * groups:
            raise ValueError(
                f"{name}: x has {shape[-1]} channels (shape {tuple(shape)}), but the params "
                f"expect {kernel.shape[-2] * groups} (kernel shape {tuple(kernel.shape)}, "
                f"groups={groups}); call init with the shape of this input"
            )
        bias = params["bias"] if use_bias else None
        return conv_transpose(x, kernel, bias, backward=backward, **op_kwargs), state

    return Layer(init, apply, name=name, role=CONVOLUTION)
