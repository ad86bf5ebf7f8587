"""Transposed convolution over 1, 2 or 3 spatial dimensions, with its backward by hand.

Layout is channels-last: x is (N, *S, C_in), the kernel is (*K, C_in // groups, C_out)
(the same HWIO layout as `fcnn.ops.conv`: I = this op's input channels, O = its output
channels), the output is (N, *S_out, C_out).

Definition (a scatter, as PyTorch's ConvTranspose): every input cell i paints the
kernel onto the output, S cells apart, taps D apart, and the result is cropped by
P_lo cells at the low end and P_hi at the high end. Per spatial dimension, for the
channels of group g (Cig = C_in / G, Cog = C_out / G):

    y[n, i*S + k*D - P_lo, g*Cog + co] += x[n, i, g*Cig + ci] * w[k, ci, g*Cog + co]

    W_out = (W - 1) * S - P_lo - P_hi + D * (K - 1) + 1 + output_padding

`output_padding` (0 <= it < max(S, D)) adds cells back at the high end: without it
several input sizes of a strided convolution give the same output size, and this op
could only reach the smallest. `padding="VALID"` is P = 0; `padding="SAME"` gives
W_out = W * S (P_lo + P_hi = max(F - S, 0) with the odd cell high, F = D * (K - 1) + 1,
and an implicit output padding max(S - F, 0)): then the op is exactly the adjoint
(the gradient) of a "SAME" convolution with strides S mapping W * S cells to W. In
general it is the adjoint of `conv` with the same strides, dilation and padding on
an input of W_out cells, the kernel's in/out channels swapped within each group.

Backward (docs/derivations/more_layers.md, "Transposed convolution"):
    dx[n, i, g*Cig + ci] = sum_{k, co} dypad[n, i*S + k*D, g*Cog + co] w[k, ci, g*Cog + co]
        a forward convolution of dy (padded P_lo low, P_hi - output_padding high) with
        the kernel, in/out channels swapped per group, strides S, dilation D;
    dw[k, ci, g*Cog + co] = sum_{n, i} x[n, i, g*Cig + ci] dypad[n, i*S + k*D, g*Cog + co]
        a correlation of dy with x, per group;
    db = sum of dy over batch and spatial axes.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.ops.conv import check_shapes
from fcnn.ops.hand_rule import hand_rule

__all__ = ["ConvTransposeConfig", "conv_transpose", "conv_transpose_output_shape"]

_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}

SAME_FIXES_OUTPUT_PADDING = (
    "output_padding={value!r} with padding='SAME': 'SAME' already fixes the output "
    "size to input * strides; give explicit (low, high) padding pairs to choose "
    "output_padding"
)


class ConvTransposeConfig(NamedTuple):
    """The static (hashable) description of one transposed convolution, resolved.

    `pads` are the (P_lo, P_hi) cells cropped from the full scatter per spatial
    dimension; `output_padding` includes the implicit one of padding="SAME".
    """

    strides: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int


# ----------------------------------------------------------------------------------
# Shapes and validation (pure Python, before any array work)


def _resolve_pads(padding, ndim, windows, strides, output_padding):
    """(pads, output_padding) per dimension; `windows` are the dilated kernel sizes F."""
    padding = _checks.check_padding(padding)
    if padding == "SAME":
        if output_padding is not None:
            raise ValueError(SAME_FIXES_OUTPUT_PADDING.format(value=output_padding))
        totals = [max(f - s, 0) for f, s in zip(windows, strides)]
        pads = tuple((t // 2, t - t // 2) for t in totals)
        return pads, tuple(max(s - f, 0) for f, s in zip(windows, strides))
    if padding == "VALID":
        pads = ((0, 0),) * ndim
    elif isinstance(padding, int):
        pads = ((padding, padding),) * ndim
    else:
        if len(padding) != ndim:
            raise ValueError(
                f"padding={padding!r}: expected {ndim} (low, high) pairs, one per "
                f"spatial dimension, got {len(padding)}"
            )
        pads = tuple(padding)
    if output_padding is None:
        return pads, (0,) * ndim
    return pads, _checks.spatial_tuple(output_padding, ndim, "output_padding", minimum=0)


def _resolve(x_shape, kernel_shape, strides, padding, output_padding, dilation, groups,
             *, x_name="x", kernel_name="kernel", allow_unknown_batch=False):
    """Validates a transposed convolution and returns (config, output shape)."""
    batch, spatial, window, c_out, groups = check_shapes(
        x_shape, kernel_shape, groups, "conv_transpose", x_name=x_name, kernel_name=kernel_name,
        allow_unknown_batch=allow_unknown_batch)
    ndim = len(spatial)
    strides = _checks.spatial_tuple(strides, ndim, "strides")
    dilation = _checks.spatial_tuple(dilation, ndim, "dilation")
    windows = tuple(_checks.dilated_size(k, d) for k, d in zip(window, dilation))
    pads, out_pad = _resolve_pads(padding, ndim, windows, strides, output_padding)
    for d, (op, s, dil) in enumerate(zip(out_pad, strides, dilation)):
        if op >= max(s, dil):
            raise ValueError(
                f"output_padding={output_padding!r}: entry {d} (={op}) must be smaller "
                f"than max(strides, dilation) (={max(s, dil)}) in that dimension; it "
                "only picks among the input sizes a strided convolution maps to one size"
            )
    out_spatial = tuple(
        (w - 1) * s - lo - hi + f + op
        for w, s, (lo, hi), f, op in zip(spatial, strides, pads, windows, out_pad)
    )
    for d, o in enumerate(out_spatial):
        if o < 1:
            raise ValueError(
                f"conv_transpose: padding {pads[d]} crops every cell of spatial dimension "
                f"{d} (input size {spatial[d]}, stride {strides[d]}, dilated window "
                f"{windows[d]}, output_padding {out_pad[d]}: output size would be {o}); "
                "use less padding"
            )
    config = ConvTransposeConfig(strides, pads, dilation, out_pad, groups)
    return config, (batch, *out_spatial, c_out)


def conv_transpose_output_shape(input_shape, kernel_shape, strides=1, padding="SAME",
                                output_padding=None, dilation=1, *, groups=1):
    """Output shape (N, *S_out, C_out) of `conv_transpose`, in pure Python.

    Per spatial dimension (PyTorch's formula):
        W_out = (W - 1) * S - P_lo - P_hi + D * (K - 1) + 1 + output_padding
    "VALID" is P = 0; "SAME" gives W_out = W * S. The batch may be -1. Raises the
    same errors as `conv_transpose`.
    """
    _, out_shape = _resolve(
        input_shape, kernel_shape, strides, padding, output_padding, dilation, groups,
        x_name="input_shape", kernel_name="kernel_shape", allow_unknown_batch=True,
    )
    return out_shape


# ----------------------------------------------------------------------------------
# The three computations


def _dimension_numbers(ndim: int) -> tuple[str, str, str]:
    sp = _SPATIAL_LETTERS[ndim]
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C")


def _windows(kernel_shape, config: ConvTransposeConfig):
    return tuple(
        _checks.dilated_size(k, d) for k, d in zip(kernel_shape[:-2], config.dilation)
    )


def _scatter(x, kernel, config: ConvTransposeConfig):
    """y = the scatter of the module docstring, as a gather: dilate x by S, pad it
    F-1-P_lo low and F-1-P_hi+output_padding high, correlate with the flipped kernel.

    With o + P_lo = i*S + k*D and k' = K-1-k, y[o] = sum_k' xdil[o + k'*D - (F-1-P_lo)]
    wflip[k']. Grouping needs no channel shuffle: w[k, ci, g*Cog + co] is already the
    grouped layout lax expects for C_in -> C_out.
    """
    ndim = x.ndim - 2
    pads = tuple(
        (f - 1 - lo, f - 1 - hi + op)
        for f, (lo, hi), op in zip(_windows(kernel.shape, config), config.pads,
                                   config.output_padding)
    )
    return lax.conv_general_dilated(
        x, jnp.flip(kernel, axis=tuple(range(ndim))),
        window_strides=(1,) * ndim,
        padding=pads,
        lhs_dilation=config.strides,
        rhs_dilation=config.dilation,
        dimension_numbers=_dimension_numbers(ndim),
        feature_group_count=config.groups,
    )


def _dy_pads(config: ConvTransposeConfig):
    """Padding of dy in both gradients: P_lo low, P_hi - output_padding high (negative
    crops), so that the padded length is exactly (W - 1) * S + F."""
    return tuple((lo, hi - op) for (lo, hi), op in zip(config.pads, config.output_padding))


def _swap_channels(kernel, groups: int):
    """(*K, Cig, G*Cog) -> (*K, Cog, G*Cig): in/out channels swapped within each group."""
    ndim = kernel.ndim - 2
    window = kernel.shape[:ndim]
    k_in, c_out = kernel.shape[-2:]
    w = kernel.reshape(window + (k_in, groups, c_out // groups))
    axes = tuple(range(ndim))
    w = jnp.transpose(w, axes + (ndim + 2, ndim + 1, ndim))  # (*K, Cog, G, Cig)
    return w.reshape(window + (c_out // groups, groups * k_in))


def _input_grad(dy, kernel, config: ConvTransposeConfig):
    """dx[n, i, g*Cig + ci] = sum_{k, co} dypad[n, i*S + k*D, g*Cog + co] w[k, ci, g*Cog + co]:
    a forward convolution of dy with the channel-swapped kernel (no flip)."""
    ndim = dy.ndim - 2
    return lax.conv_general_dilated(
        dy, _swap_channels(kernel, config.groups),
        window_strides=config.strides,
        padding=_dy_pads(config),
        rhs_dilation=config.dilation,
        dimension_numbers=_dimension_numbers(ndim),
        feature_group_count=config.groups,
    )


def _kernel_grad(x, dy, config: ConvTransposeConfig):
    """dw[k, ci, g*Cog + co] = sum_{n, i} x[n, i, g*Cig + ci] dypad[n, i*S + k*D, g*Cog + co].

    As a convolution: dy's channels act as the batch, the batch is contracted, x is the
    kernel dilated by S and the window moves with stride D; `batch_group_count` pairs
    group g of dy's channels with group g of x's. The result is (*K, Cog, G*Cig), the
    channel-swapped layout, swapped back.
    """
    ndim = x.ndim - 2
    sp = _SPATIAL_LETTERS[ndim]
    swapped = lax.conv_general_dilated(
        dy, x,
        window_strides=config.dilation,
        padding=_dy_pads(config),
        rhs_dilation=config.strides,
        dimension_numbers=("C" + sp + "N", "I" + sp + "O", sp + "NC"),
        batch_group_count=config.groups,
    )
    return _swap_channels(swapped, config.groups)


def _add_bias(y, bias):
    if bias is None:
        return y
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


# ----------------------------------------------------------------------------------
# The op: forward, residuals and backward side by side. Forward and backward are jitted
# on their static config: called eagerly, each is one compiled computation instead of
# a dispatch per primitive; inside an outer jit they are inlined.


@functools.partial(jax.jit, static_argnums=0)
def _forward(config: ConvTransposeConfig, x, kernel, bias):
    return _add_bias(_scatter(x, kernel, config), bias)


def _fwd(config: ConvTransposeConfig, x, kernel, bias):
    return _forward(config, x, kernel, bias), (x, kernel, bias)


@functools.partial(jax.jit, static_argnums=0)
def _bwd(config: ConvTransposeConfig, residuals, dy):
    """dx = conv(dy, swapped kernel, strides S); dw = correlation of dy with x; db = sum dy."""
    x, kernel, bias = residuals
    dx = _input_grad(dy, kernel, config)
    dw = _kernel_grad(x, dy, config)
    db = None if bias is None else jnp.sum(dy, axis=tuple(range(dy.ndim - 1))).astype(bias.dtype)
    return dx.astype(x.dtype), dw.astype(kernel.dtype), db


CONV_TRANSPOSE = hand_rule("conv_transpose", _forward, _fwd, _bwd, nondiff_argnums=(0,))


def conv_transpose(x, kernel, bias=None, *, strides=1, padding="SAME", output_padding=None,
                   dilation=1, groups=1, backward="custom"):
    """Transposed ("fractionally strided") convolution with an optional bias.

    Shapes: x (N, *S, C_in), kernel (*K, C_in // groups, C_out), bias (C_out,) or None;
    returns (N, *S_out, C_out), 1 to 3 spatial dimensions, with per dimension

        S_out = (S - 1) * strides - P_lo - P_hi + dilation * (K - 1) + 1 + output_padding

    (PyTorch's ConvTranspose formula). `padding`: "SAME" (S_out = S * strides; no
    `output_padding` then), "VALID" (P = 0), an int, or one (low, high) pair per
    spatial dimension: the cells cropped from each end of the full scatter.
    `output_padding` (int or one per dimension, default 0) must be smaller than
    max(strides, dilation). `groups` splits the channels into independent groups.

    y[n, i*S + k*D - P_lo, g*Cog + co] += x[n, i, g*Cig + ci] w[k, ci, g*Cog + co]
    (the module docstring has the backward). `backward="custom"` runs the hand-written
    rule, "autodiff" differentiates the same forward with JAX. Mixed dtypes are
    promoted (integers to float).
    """
    _checks.check_backward(backward)
    x_shape, kernel_shape = np.shape(x), np.shape(kernel)
    config, _ = _resolve(x_shape, kernel_shape, strides, padding, output_padding, dilation,
                         groups)
    if bias is not None and tuple(np.shape(bias)) != (kernel_shape[-1],):
        raise ValueError(
            f"bias has shape {tuple(np.shape(bias))}: expected ({kernel_shape[-1]},), one "
            "entry per output channel"
        )
    operands = [jnp.asarray(a) for a in ((x, kernel) if bias is None else (x, kernel, bias))]
    dtype = jnp.result_type(*operands)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.promote_types(dtype, jnp.float32)
    x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
    bias = None if bias is None else jnp.asarray(bias, dtype)
    return CONV_TRANSPOSE.select(backward)(config, x, kernel, bias)
