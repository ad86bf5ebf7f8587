"""The convolution layer: `Conv(features, kernel_size, ...)` on `fcnn.ops.conv`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import _checks, initializers
from fcnn.layers.base import CONVOLUTION, Layer, check_train_flag
from fcnn.ops.conv import CHANNELS_NOT_DIVISIBLE, LOWERINGS, RANKS, conv, conv_output_shape
from fcnn.ops.lowering import Lowering
from fcnn.ops.padding import check_mode, conv_pads, pad, pad_output_shape


def Conv(  # noqa: N802 (layers are named like classes, as in stax)
    features: int,
    kernel_size,
    strides=1,
    padding="SAME",
    dilation=1,
    groups: int = 1,
    use_bias: bool = True,
    input_dilation=1,
    kernel_init=initializers.lecun_normal,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
    lowering="auto",
    padding_mode: str = "zeros",
) -> Layer:
    """Convolution over 1, 2 or 3 spatial dims with `features` output channels.

    Input (N, *S, C_in), output (N, *S_out, features); params
    {"kernel": (*kernel_size, C_in // groups, features), "bias": (features,)} (no "bias"
    when use_bias=False). An int `kernel_size` takes the number of spatial dims from the
    input rank at init; a tuple fixes it, and an input of another rank is an error.
    See `fcnn.ops.conv` for the arguments and the backward rule. `lowering="auto"`
    (default) lets the op take the matrix-product lowering measured faster on the CPU
    for few input channels (`fcnn.ops.conv.resolve_lowering`); None keeps XLA's
    convolution for every pass.

    `padding_mode` fills the padded border: "zeros" (default), or "reflect",
    "replicate", "circular" (`fcnn.ops.padding.pad`, with its hand backward), in which
    case the layer pads with that op and runs a "VALID" convolution; the output shape
    is the same (input_dilation must then be 1).

    Example: `Conv(2, 3, strides=2, padding=1)` maps (1, 5, 5, 3) to (1, 3, 3, 2) with
    (3*3*3 + 1) * 2 = 56 parameters.
    """
    features = _checks.positive_int(features, "features")
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        ndim = len(kernel_size)
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"kernel_size={kernel_size!r}: expected an int or a tuple of 1, 2 or 3 ints "
                "(one per spatial dimension)"
            )
    else:
        ndim = None
    kernel_size = _checks.spatial_tuple_or_none(kernel_size, ndim, "kernel_size")
    strides = _checks.spatial_tuple_or_none(strides, ndim, "strides")
    dilation = _checks.spatial_tuple_or_none(dilation, ndim, "dilation")
    input_dilation = _checks.spatial_tuple_or_none(input_dilation, ndim, "input_dilation")
    padding = _checks.check_padding(padding)
    if ndim is not None and isinstance(padding, tuple) and len(padding) != ndim:
        raise ValueError(
            f"padding={padding!r}: expected {ndim} (low, high) pairs, one per spatial "
            f"dimension of kernel_size={kernel_size!r}"
        )
    groups = _checks.positive_int(groups, "groups")
    if features % groups:
        raise ValueError(
            CHANNELS_NOT_DIVISIBLE.format(groups=groups, what="features", count=features)
        )
    use_bias = _checks.check_bool(use_bias, "use_bias")
    backward = _checks.check_backward(backward)
    if lowering not in LOWERINGS and not isinstance(lowering, Lowering):
        raise ValueError(
            f"lowering={lowering!r}: expected 'auto', None or a fcnn.ops.lowering.Lowering")
    padding_mode = check_mode(padding_mode)
    if padding_mode != "zeros" and set(np.ravel(input_dilation)) != {1}:
        raise ValueError(
            f"input_dilation={input_dilation!r} with padding_mode={padding_mode!r}: the "
            "border modes pad the input itself, before any dilation; use "
            "padding_mode='zeros' or input_dilation=1")
    kernel_init = initializers.get(kernel_init)
    bias_init = initializers.get(bias_init)
    name = f"Conv({features}, {kernel_size!r})"
    if padding_mode != "zeros":
        name = f"Conv({features}, {kernel_size!r}, padding_mode={padding_mode!r})"

    def border(shape, nd):
        """The (low, high) pairs `padding` resolves to for an input of `shape`."""
        window = _checks.spatial_tuple(kernel_size, nd, "kernel_size")
        return conv_pads(padding, shape[1:-1], window, strides, dilation)

    def spatial_dims(rank: int, shape, what: str) -> int:
        if ndim is None:
            _checks.check_rank(shape, RANKS, what, "Conv")
            return rank - 2
        if rank != ndim + 2:
            raise ValueError(
                f"{name}: {what} has shape {tuple(shape)} (rank {rank}), but "
                f"kernel_size={kernel_size!r} has {ndim} spatial dimension(s), so the input "
                f"must have rank {ndim + 2} (batch, *spatial, channels); pass an int "
                "kernel_size to take the dimensions from the input"
            )
        return ndim

    def init(rng, input_shape):
        input_shape = tuple(input_shape)
        nd = spatial_dims(len(input_shape), input_shape, "input_shape")
        c_in = _checks.positive_int(input_shape[-1], f"{name}: input channels")
        if c_in % groups:
            raise ValueError(
                CHANNELS_NOT_DIVISIBLE.format(groups=groups, what="in_channels", count=c_in)
            )
        kernel_shape = _checks.spatial_tuple(kernel_size, nd, "kernel_size") + (
            c_in // groups, features,
        )
        conv_padding = padding
        if padding_mode != "zeros":  # padded by the op, then a VALID convolution
            input_shape = pad_output_shape(input_shape, border(input_shape, nd), padding_mode,
                                           name=name)
            conv_padding = "VALID"
        output_shape = conv_output_shape(
            input_shape, kernel_shape, strides, conv_padding, dilation, input_dilation,
            groups=groups,
        )
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
            spatial_dims(len(shape), shape, "x")  # the constructor's rank error, if any
            raise ValueError(
                f"{name}: x has shape {tuple(shape)} (rank {len(shape)}), but the params "
                f"were initialised for inputs of rank {kernel.ndim} (kernel shape "
                f"{tuple(kernel.shape)}); call init with the shape of this input"
            )
        expected = kernel.shape[-2] * groups
        if shape[-1] != expected:
            raise ValueError(
                f"{name}: x has {shape[-1]} channels (shape {tuple(shape)}), but the params "
                f"expect {expected} (kernel shape {tuple(kernel.shape)}, groups={groups}); "
                "call init with the shape of this input"
            )
        bias = params["bias"] if use_bias else None
        conv_padding = padding
        if padding_mode != "zeros":
            x = pad(x, border(shape, len(shape) - 2), padding_mode, backward)
            conv_padding = "VALID"
        y = conv(
            x, kernel, bias, strides=strides, padding=conv_padding, dilation=dilation,
            input_dilation=input_dilation, groups=groups, backward=backward, lowering=lowering,
        )
        return y, state

    return Layer(init, apply, name=name, role=CONVOLUTION)


__all__ = ["Conv"]
