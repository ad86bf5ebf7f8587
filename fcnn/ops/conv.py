"""Convolution over 1, 2 or 3 spatial dimensions, with its backward rule written by hand.

Layout is channels-last: x is (N, *S, C_in), the kernel is (*K, C_in // groups, C_out)
(HWIO), the output is (N, *S_out, C_out). The derivation of every formula below, with
worked numbers, is in docs/derivations/conv.md.

The forward and the two gradients are three small functions (`_conv_forward`,
`_conv_input_grad`, `_conv_kernel_grad`) on one static `ConvConfig`; the op `CONV`
pairs them as forward and hand-written backward. `CONV_LOWERED` is the same rule with
some passes lowered to matrix products (`fcnn.ops.lowering`), chosen only when asked
(`lowering="auto"`, which the `Conv` layer passes): how a pass is lowered changes
its speed, never what `conv` computes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.ops import lowering
from fcnn.ops.hand_rule import hand_rule

RANKS = (3, 4, 5)
_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}

KERNEL_CHANNELS = (
    "kernel expects C_in={expected} (kernel in-channels {k_in} x groups {groups}), "
    "input has {c_in} channels; the kernel is (*window, C_in // groups, C_out)"
)
CHANNELS_NOT_DIVISIBLE = "groups={groups}: {what} (={count}) must be divisible by groups"


class ConvConfig(NamedTuple):
    """The static (hashable) description of one convolution, fully resolved.

    `pads` holds one (low, high) pair per spatial dimension, applied to the input
    after input dilation; `dilation` is the kernel dilation.
    """

    strides: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    input_dilation: tuple[int, ...]
    groups: int


# ----------------------------------------------------------------------------------
# Shapes and validation (pure Python, before any array work)


def check_shapes(x_shape, kernel_shape, groups, op: str, *, x_name="x", kernel_name="kernel",
                 allow_unknown_batch=False):
    """Checks an input (N, *spatial, C_in) against a kernel (*window, C_in // groups, C_out)
    for `op` ("conv", "conv_transpose"); returns (batch, spatial, window, C_out, groups)."""
    x_shape, kernel_shape = tuple(x_shape), tuple(kernel_shape)
    _checks.check_rank(x_shape, RANKS, x_name, op)
    ndim = len(x_shape) - 2
    if len(kernel_shape) != len(x_shape):
        raise ValueError(
            f"{kernel_name} has shape {kernel_shape} (rank {len(kernel_shape)}): expected "
            f"rank {len(x_shape)}, (*window, C_in // groups, C_out) with {ndim} window "
            f"dimension(s), for {x_name} of shape {x_shape}"
        )
    batch, spatial, c_in = x_shape[0], x_shape[1:-1], x_shape[-1]
    window, k_in, c_out = kernel_shape[:-2], kernel_shape[-2], kernel_shape[-1]
    if not (batch >= 0 or (allow_unknown_batch and batch == -1)):
        raise ValueError(f"{x_name} has shape {x_shape}: the batch size must be >= 0")
    if any(s < 1 for s in spatial) or c_in < 1:
        raise ValueError(
            f"{x_name} has shape {x_shape}: spatial sizes and channels must be positive"
        )
    if any(k < 1 for k in window) or k_in < 1 or c_out < 1:
        raise ValueError(f"{kernel_name} has shape {kernel_shape}: every entry must be positive")
    groups = _checks.positive_int(groups, "groups")
    if c_in % groups:
        raise ValueError(
            CHANNELS_NOT_DIVISIBLE.format(groups=groups, what="in_channels", count=c_in)
        )
    if c_out % groups:
        raise ValueError(
            CHANNELS_NOT_DIVISIBLE.format(groups=groups, what="out_channels", count=c_out)
        )
    if k_in * groups != c_in:
        raise ValueError(
            KERNEL_CHANNELS.format(expected=k_in * groups, k_in=k_in, groups=groups, c_in=c_in)
        )
    return batch, spatial, window, c_out, groups


def _resolve(x_shape, kernel_shape, strides, padding, dilation, input_dilation, groups,
             *, x_name="x", kernel_name="kernel", allow_unknown_batch=False):
    """Validates a convolution and returns (ConvConfig, output shape)."""
    x_shape, kernel_shape = tuple(x_shape), tuple(kernel_shape)
    batch, spatial, window, c_out, groups = check_shapes(
        x_shape, kernel_shape, groups, "conv", x_name=x_name, kernel_name=kernel_name,
        allow_unknown_batch=allow_unknown_batch)
    ndim = len(spatial)
    strides = _checks.spatial_tuple(strides, ndim, "strides")
    dilation = _checks.spatial_tuple(dilation, ndim, "dilation")
    input_dilation = _checks.spatial_tuple(input_dilation, ndim, "input_dilation")
    dilated_in = tuple(_checks.dilated_size(s, d) for s, d in zip(spatial, input_dilation))
    eff_window = tuple(_checks.dilated_size(k, d) for k, d in zip(window, dilation))
    pads = _checks.padding_pairs(padding, dilated_in, eff_window, strides)
    out_spatial = tuple(
        _checks.output_size(s, w, st, p)
        for s, w, st, p in zip(dilated_in, eff_window, strides, pads)
    )
    _checks.check_output_positive(out_spatial, dilated_in, eff_window, strides, pads, "conv")
    config = ConvConfig(strides, tuple(pads), dilation, input_dilation, groups)
    return config, (batch, *out_spatial, c_out)


def conv_output_shape(input_shape, kernel_shape, strides=1, padding="SAME", dilation=1,
                      input_dilation=1, *, groups=1) -> tuple[int, ...]:
    """Output shape (N, *S_out, C_out) of `conv`, in pure Python; the batch may be -1.

    Per spatial dimension, with the input dilated to W1 = (W - 1) * input_dilation + 1
    and the window to F = (K - 1) * dilation + 1, the notes' formula
    W2 = (W1 - F + P_low + P_high) // S + 1, i.e. (W1 - F + 2P) / S + 1. "SAME" pads so
    that W2 = ceil(W1 / S) (odd totals put the extra cell on the high side).
    Raises the same errors as `conv`.
    """
    _, out_shape = _resolve(
        input_shape, kernel_shape, strides, padding, dilation, input_dilation, groups,
        x_name="input_shape", kernel_name="kernel_shape", allow_unknown_batch=True,
    )
    return out_shape


# ----------------------------------------------------------------------------------
# The three computations. Swap the lowering here; keep the semantics.


def _dimension_numbers(ndim: int) -> tuple[str, str, str]:
    sp = _SPATIAL_LETTERS[ndim]
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C")


def _conv_forward(x, kernel, config: ConvConfig):
    """y[n, o, co] = sum_{k, ci} xpad[n, o*s + k*d, g*Cig + ci] * w[k, ci, co], g = co // Cog."""
    return lax.conv_general_dilated(
        x, kernel,
        window_strides=config.strides,
        padding=config.pads,
        lhs_dilation=config.input_dilation,
        rhs_dilation=config.dilation,
        dimension_numbers=_dimension_numbers(x.ndim - 2),
        feature_group_count=config.groups,
    )


def _input_grad_padding(in_spatial, window, out_spatial, config: ConvConfig):
    """Padding of the stride-dilated output gradient for the input gradient.

    Per dimension, with W1 = (W - 1) * input_dilation + 1 the dilated input, F the dilated
    window, (p_lo, p_hi) the forward padding, and r = W1 + p_lo + p_hi - F - (O - 1) * S
    the cells the last stride step skipped at the high end:

        low  = F - 1 - p_lo
        high = F - 1 - p_hi + r            (= W1 - 1 + p_lo - (O - 1) * S)

    Either can be negative (padding wider than the window), which crops.
    """
    return tuple(
        (f - 1 - p_lo, f - 1 - p_hi + r)
        for f, (p_lo, p_hi), r in _window_fit(in_spatial, window, out_spatial, config)
    )


def _window_fit(in_spatial, window, out_spatial, config: ConvConfig):
    """Per spatial dimension: (F, (p_lo, p_hi), r), with F the dilated window and
    r = W1 + p_lo + p_hi - F - (O - 1) * S the padded cells past the last window."""
    fits = []
    for w, k, o, s, (p_lo, p_hi), d, ld in zip(
        in_spatial, window, out_spatial, config.strides, config.pads, config.dilation,
        config.input_dilation,
    ):
        w1, f = _checks.dilated_size(w, ld), _checks.dilated_size(k, d)
        fits.append((f, (p_lo, p_hi), w1 + p_lo + p_hi - f - (o - 1) * s))
    return fits


def _conv_input_grad(dy, kernel, config: ConvConfig, in_spatial):
    """dx = full correlation of dy (dilated by the stride) with the flipped kernel.

    dx[n, i, g*Cig + ci] = sum_{o, k, co : o*S + k*D = i*L + p_lo}
                               dy[n, o, g*Cog + co] w[k, ci, g*Cog + co].
    Substituting k' = K - 1 - k turns this into a correlation of dy, dilated by S, padded
    by `_input_grad_padding`, with the spatially flipped kernel dilated by D, taken with
    stride L (the input dilation): only cells holding a real input get a gradient.
    Channels swap within each group: the kernel becomes (*K, Cog, G * Cig).
    """
    ndim = dy.ndim - 2
    window = kernel.shape[:ndim]
    k_in, c_out = kernel.shape[-2:]
    groups = config.groups
    w = kernel.reshape(window + (k_in, groups, c_out // groups))
    spatial_axes = tuple(range(ndim))
    w = jnp.transpose(w, spatial_axes + (ndim + 2, ndim + 1, ndim))  # (*K, Cog, G, Cig)
    w = w.reshape(window + (c_out // groups, groups * k_in))
    w = jnp.flip(w, axis=spatial_axes)
    pads = _input_grad_padding(in_spatial, window, dy.shape[1:-1], config)
    return lax.conv_general_dilated(
        dy, w,
        window_strides=config.input_dilation,
        padding=pads,
        lhs_dilation=config.strides,
        rhs_dilation=config.dilation,
        dimension_numbers=_dimension_numbers(ndim),
        feature_group_count=groups,
    )


def _kernel_grad_padding(in_spatial, window, out_spatial, config: ConvConfig):
    """Padding of the input for the kernel gradient: the forward padding, minus the
    r cells at the high end that no window reached (see `_input_grad_padding`):

        low = p_lo        high = p_hi - r
    """
    return tuple(
        (p_lo, p_hi - r) for _, (p_lo, p_hi), r in _window_fit(in_spatial, window, out_spatial, config)
    )


def _conv_kernel_grad(x, dy, config: ConvConfig, window):
    """dw = correlation of the (dilated, padded) input with dy, per group.

    dw[k, ci, g*Cog + co] = sum_{n, o} xpad[n, o*S + k*D, g*Cig + ci] dy[n, o, g*Cog + co].
    As a convolution: channels act as the batch, the batch is contracted, dy is the
    kernel dilated by S and the window moves with stride D; `batch_group_count` pairs
    input-channel group g with output-channel group g.
    """
    ndim = x.ndim - 2
    sp = _SPATIAL_LETTERS[ndim]
    pads = _kernel_grad_padding(x.shape[1:-1], window, dy.shape[1:-1], config)
    return lax.conv_general_dilated(
        x, dy,
        window_strides=config.dilation,
        padding=pads,
        lhs_dilation=config.input_dilation,
        rhs_dilation=config.strides,
        dimension_numbers=("C" + sp + "N", "I" + sp + "O", sp + "NC"),
        batch_group_count=config.groups,
    )


def _bias_grad(dy):
    """db[co] = sum over batch and spatial positions of dy[..., co]."""
    return jnp.sum(dy, axis=tuple(range(dy.ndim - 1)))


def _add_bias(y, bias):
    if bias is None:
        return y
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


# ----------------------------------------------------------------------------------
# The op: forward, residuals and backward side by side (the textbook rule).


def _forward(config: ConvConfig, x, kernel, bias):
    return _add_bias(_conv_forward(x, kernel, config), bias)


def _conv_fwd(config: ConvConfig, x, kernel, bias):
    return _forward(config, x, kernel, bias), (x, kernel, bias)


def _conv_bwd(config: ConvConfig, residuals, dy):
    """dx = full correlation of the stride-dilated dy with the flipped kernel;
    dw = correlation of the padded input with dy, per group; db = sum of dy."""
    x, kernel, bias = residuals
    dx = _conv_input_grad(dy, kernel, config, x.shape[1:-1])
    dw = _conv_kernel_grad(x, dy, config, kernel.shape[:-2])
    db = None if bias is None else _bias_grad(dy).astype(bias.dtype)
    return dx.astype(x.dtype), dw.astype(kernel.dtype), db


CONV = hand_rule("conv", _forward, _conv_fwd, _conv_bwd, nondiff_argnums=(0,))


# ----------------------------------------------------------------------------------
# The same rule with its passes lowered otherwise: to matrix products
# (`fcnn.ops.lowering`) or to oneDNN's CPU kernels (`fcnn.ops.onednn`, optional). These
# are opt-in pieces beside the textbook one. `route` names each pass's lowering: "xla"
# keeps the textbook computation for that pass, "onednn" calls oneDNN, any other name
# is a function of `fcnn.ops.lowering`.

XLA_EVERYWHERE = lowering.Lowering("xla", "xla", "xla")
LOWERINGS = (None, "auto")
ONEDNN = "onednn"
# oneDNN runs every pass faster than XLA:CPU (the kernel gradient 3-6x), except the
# forward and input gradient of convolutions with few input channels per group, where
# the tap and col2im lowerings of fcnn.ops.lowering are as fast or faster (measured
# on a 2-core AVX-512 machine; RefNet-MNIST step 64 -> 21 ms, ResNet-20 580 -> 245 ms).
ONEDNN_MIN_CHANNELS = 8
# oneDNN's kernel gradient is slow on tiny feature maps, where XLA's is one matrix
# product: measured (batch 128, 2 cores) 4x4x512->512 76 ms vs XLA 48, 2x2x512->512
# 58 vs 11, 4x4x256->512 28 vs 24, while at 8x8 oneDNN wins 2.3-2.5x. So up to this
# many output positions per image the kernel gradient stays on XLA.
ONEDNN_KERNEL_GRAD_MAX_XLA_POSITIONS = 16


def resolve_lowering(choice, x_shape, kernel_shape, config: ConvConfig | None = None,
                     dtype=None) -> lowering.Lowering:
    """The route of each pass for `conv(..., lowering=choice)`.

    None: the textbook computations (XLA's convolution) everywhere. "auto": on the
    CPU, oneDNN's kernels where oneDNN is available and supports the convolution (all
    passes from ONEDNN_MIN_CHANNELS input channels per group, except the kernel
    gradient of maps of at most ONEDNN_KERNEL_GRAD_MAX_XLA_POSITIONS output positions;
    the kernel gradient below that channel count), the matrix-product lowering
    `lowering.choose_lowering` measured faster for the other passes of few-channel
    convolutions, XLA's convolution for the rest; the textbook computations on every
    other backend. A `lowering.Lowering` is taken as
    it is.
    """
    if choice is None:
        return XLA_EVERYWHERE
    if isinstance(choice, lowering.Lowering):
        return choice
    if choice != "auto":
        raise ValueError(
            f"lowering={choice!r}: expected None (the textbook rule), 'auto' (the measured "
            "CPU lowerings) or a fcnn.ops.lowering.Lowering"
        )
    if jax.default_backend() != "cpu" or not all(isinstance(d, int) for d in x_shape):
        return XLA_EVERYWHERE  # elsewhere, or a symbolic batch size (jax.export)
    route = lowering.choose_lowering(x_shape, kernel_shape)
    if config is not None and _onednn_runs(x_shape, kernel_shape, config, dtype):
        if kernel_shape[-2] >= ONEDNN_MIN_CHANNELS:
            positions = math.prod(-(-n // s) for n, s in zip(x_shape[1:-1], config.strides))
            small = positions <= ONEDNN_KERNEL_GRAD_MAX_XLA_POSITIONS
            return lowering.Lowering(ONEDNN, ONEDNN, "xla" if small else ONEDNN)
        return route._replace(kernel_grad=ONEDNN)
    return route


def _onednn_runs(x_shape, kernel_shape, config: ConvConfig, dtype) -> bool:
    from fcnn.ops import onednn  # imported on demand: it builds its library on first use

    return onednn.available() and onednn.supports(
        x_shape, kernel_shape, config.strides, config.pads, config.dilation,
        config.input_dilation, config.groups, dtype if dtype is not None else jnp.float32)


def _config_args(config: ConvConfig) -> dict:
    return dict(strides=config.strides, pads=config.pads, dilation=config.dilation,
                input_dilation=config.input_dilation, groups=config.groups)


def _pass(name: str, kind: str):
    """The function computing pass `kind` ("forward", "input_grad", "kernel_grad") of a
    route entry other than "xla"."""
    if name == ONEDNN:
        from fcnn.ops import onednn

        return getattr(onednn, f"conv_{kind}")
    return getattr(lowering, name)


def _lowered_forward(config: ConvConfig, route: lowering.Lowering, x, kernel, bias):
    if route.forward == "xla":
        return _forward(config, x, kernel, bias)
    y = _pass(route.forward, "forward")(x, kernel, **_config_args(config))
    return _add_bias(y, bias)


def _lowered_fwd(config, route, x, kernel, bias):
    return _lowered_forward(config, route, x, kernel, bias), (x, kernel, bias)


def _lowered_bwd(config: ConvConfig, route: lowering.Lowering, residuals, dy):
    x, kernel, bias = residuals
    if route.input_grad == "xla":
        dx = _conv_input_grad(dy, kernel, config, x.shape[1:-1])
    else:
        dx = _pass(route.input_grad, "input_grad")(dy, kernel, x.shape, **_config_args(config))
    if route.kernel_grad == "xla":
        dw = _conv_kernel_grad(x, dy, config, kernel.shape[:-2])
    else:
        dw = _pass(route.kernel_grad, "kernel_grad")(x, dy, kernel.shape, **_config_args(config))
    db = None if bias is None else _bias_grad(dy).astype(bias.dtype)
    return dx.astype(x.dtype), dw.astype(kernel.dtype), db


CONV_LOWERED = hand_rule("conv/lowered", _lowered_forward, _lowered_fwd, _lowered_bwd,
                         nondiff_argnums=(0, 1))


def conv(x, kernel, bias=None, *, strides=1, padding="SAME", dilation=1, input_dilation=1,
         groups=1, backward="custom", lowering=None):
    """N-d convolution (cross-correlation, as in CNNs) with an optional bias.

    Shapes: x (N, *S, C_in), kernel (*K, C_in // groups, C_out), bias (C_out,) or None;
    returns (N, *S_out, C_out), 1 to 3 spatial dimensions. `groups` splits the channels
    into independent groups (depthwise when groups == C_in). `dilation` spreads the
    kernel taps D apart; `input_dilation` inserts L - 1 zeros between input cells
    (a transposed convolution when combined with padding). `padding` is "SAME" (output
    ceil(W1 / S), W1 the input-dilated size), "VALID", an int, or (low, high) pairs.

    Forward, per spatial dimension (sum over the window taps k and the group's channels):
        y[n, o, co] = b[co] + sum_{k, ci} xpad[n, o*S + k*D, g*Cig + ci] w[k, ci, co]
    Backward (docs/derivations/conv.md, "The backward pass"):
        dx = full correlation of dy, dilated by S, with the flipped kernel (in/out
             channels swapped per group), padded low F-1-p_lo, high F-1-p_hi+r
        dw = correlation of xpad with dy, per group
        db = sum of dy over batch and spatial axes
    with F the dilated window and r the high-end cells the stride skipped.

    `backward="custom"` uses that hand-written rule; `backward="autodiff"` differentiates
    the same forward with JAX. `lowering` (default None: XLA's convolution for the
    three passes, as written above) opts into the matrix-product lowering of the
    passes where it was measured faster: "auto" (on the CPU only, see
    `resolve_lowering`) or an explicit `fcnn.ops.lowering.Lowering`. Every route
    computes the same thing. Mixed dtypes are promoted (integers to float).
    """
    _checks.check_backward(backward)
    x_shape, kernel_shape = np.shape(x), np.shape(kernel)
    config, _ = _resolve(x_shape, kernel_shape, strides, padding, dilation, input_dilation, groups)
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
    route = resolve_lowering(lowering, x.shape, kernel.shape, config, x.dtype)
    if route == XLA_EVERYWHERE:
        return CONV.select(backward)(config, x, kernel, bias)
    return CONV_LOWERED.select(backward)(config, route, x, kernel, bias)


__all__ = ["ConvConfig", "conv", "conv_output_shape"]
