"""Convolution as matrix products: alternative lowerings of the forward and both gradients.

Each function computes exactly what `lax.conv_general_dilated` (channels-last, kernel
(*K, C_in // groups, C_out)) or its transpose computes, for any number of spatial
dimensions, strides, (low, high) paddings, kernel dilation, input dilation and
feature groups, but lowers it to slices, pads and matrix products instead of XLA's
convolution. Which lowering is fastest depends on the shapes (`choose_lowering`);
all of them agree with `lax.conv_general_dilated` to rounding.

Notation, per spatial dimension: the input is dilated by L (L - 1 zeros between
cells) and padded by (p_lo, p_hi) into `xp`; a kernel tap k (one of T = prod(K) taps)
reads `xp` at o*S + k*D for output position o. Then

    forward        y[n, o, g, :]  = sum_k  xp[n, o*S + k*D, g, :]  @ w[k, :, g, :]
    input grad     dxp[n, o*S + k*D, g, :] += dy[n, o, g, :] @ w[k, :, g, :]^T,
                   dx = dxp at the real input cells (offset p_lo, step L)
    kernel grad    dw[k, :, g, :] = sum_{n, o} xp[n, o*S + k*D, g, :]^T dy[n, o, g, :]

with channels split into `groups` blocks g (C_in = G * Cig, C_out = G * Cog). The input
gradient is the transpose of the forward's slices (a strided slice transposes to an
interior pad), the kernel gradient the patch matrix times dy. The patch matrix
(im2col) stacks the T slices `xp[n, o*S + k*D]` into (N * prod(O), T * Cig) per group,
as in Chellapilla et al., "High Performance Convolutional Neural Networks for Document
Processing" (2006).

Lowerings:
    conv_forward_taps        sum over taps of (slice @ w[k]): no patch matrix
    conv_forward_im2col      one (M, T*Cig) @ (T*Cig, Cog) product per group
    conv_input_grad_col2im   one dy @ w^T product, then the T slices added back
    conv_kernel_grad_im2col  one patches^T @ dy product per group
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

RANKS = (3, 4, 5)

UNSUPPORTED = (
    "{what}: the matrix-product lowerings support inputs of rank 3, 4 or 5 "
    "(batch, 1-3 spatial dims, channels) with non-negative padding, positive strides "
    "and dilations, and channels divisible by groups; got {detail}. Use "
    "lax.conv_general_dilated for this case"
)


class Lowering(NamedTuple):
    """Which lowering to use for each of the three computations of one convolution:
    "xla" (lax.conv_general_dilated) or the name of a function of this module."""

    forward: str
    input_grad: str
    kernel_grad: str


# ----------------------------------------------------------------------------------
# Shapes and checks (pure Python)


def _norm(value, ndim, default=1) -> tuple[int, ...]:
    if value is None:
        return (default,) * ndim
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    return tuple(int(v) for v in value)


def _settings(ndim, strides, pads, dilation, input_dilation):
    strides = _norm(strides, ndim)
    dilation = _norm(dilation, ndim)
    input_dilation = _norm(input_dilation, ndim)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    return strides, pads, dilation, input_dilation


def supports(x_shape, kernel_shape, strides=None, pads=None, dilation=None,
             input_dilation=None, groups=1) -> bool:
    """True when the lowerings of this module handle the convolution.

    They handle every convolution `fcnn.ops.conv` accepts: rank 3-5 channels-last
    inputs, non-negative (low, high) padding, positive strides and dilations, and
    channels divisible by `groups`, with an output of positive size.
    """
    try:
        _geometry(x_shape, kernel_shape, strides, pads, dilation, input_dilation, groups)
    except ValueError:
        return False
    return True


def _geometry(x_shape, kernel_shape, strides, pads, dilation, input_dilation, groups):
    """Resolves and checks a convolution; returns its sizes, or raises ValueError."""
    x_shape, kernel_shape = tuple(x_shape), tuple(kernel_shape)
    if len(x_shape) not in RANKS or len(kernel_shape) != len(x_shape):
        raise ValueError(UNSUPPORTED.format(
            what="rank", detail=f"x {x_shape} and kernel {kernel_shape}"))
    ndim = len(x_shape) - 2
    if pads is None:
        pads = ((0, 0),) * ndim
    if len(pads) != ndim:
        raise ValueError(UNSUPPORTED.format(
            what="pads", detail=f"{pads!r} for {ndim} spatial dimension(s)"))
    strides, pads, dilation, input_dilation = _settings(
        ndim, strides, pads, dilation, input_dilation)
    if not all(len(t) == ndim for t in (strides, dilation, input_dilation)):
        raise ValueError(UNSUPPORTED.format(
            what="strides/dilation", detail=f"{strides}, {dilation}, {input_dilation}"))
    if min(strides + dilation + input_dilation) < 1 or min(sum(pads, ())) < 0:
        raise ValueError(UNSUPPORTED.format(
            what="settings",
            detail=f"strides={strides}, pads={pads}, dilation={dilation}, "
                   f"input_dilation={input_dilation}"))
    c_in, k_in, c_out = x_shape[-1], kernel_shape[-2], kernel_shape[-1]
    if groups < 1 or c_in != k_in * groups or c_out % groups:
        raise ValueError(UNSUPPORTED.format(
            what="groups", detail=f"groups={groups}, x {x_shape}, kernel {kernel_shape}"))
    window = kernel_shape[:ndim]
    padded = tuple((s - 1) * ld + 1 + lo + hi
                   for s, ld, (lo, hi) in zip(x_shape[1:-1], input_dilation, pads))
    eff = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    out = tuple((p - f) // s + 1 for p, f, s in zip(padded, eff, strides))
    if min(out) < 1:
        raise ValueError(UNSUPPORTED.format(
            what="output size", detail=f"output spatial size {out}"))
    return _Geometry(ndim, strides, pads, dilation, input_dilation, groups,
                     window, padded, out)


class _Geometry(NamedTuple):
    ndim: int
    strides: tuple
    pads: tuple
    dilation: tuple
    input_dilation: tuple
    groups: int
    window: tuple
    padded: tuple  # spatial size of the dilated, padded input xp
    out: tuple     # output spatial size


def _taps(geo: _Geometry):
    """Every kernel tap (row-major over the window, as HWIO flattens) and the offset
    in xp where it starts reading."""
    for tap in itertools.product(*(range(k) for k in geo.window)):
        yield tap, tuple(t * d for t, d in zip(tap, geo.dilation))


def _pad_config(geo: _Geometry):
    """lax.pad configuration of x -> xp: input dilation as interior padding."""
    return ((0, 0, 0),) + tuple(
        (lo, hi, ld - 1) for (lo, hi), ld in zip(geo.pads, geo.input_dilation)
    ) + ((0, 0, 0),)


def _padded_input(x, geo: _Geometry):
    return lax.pad(x, jnp.zeros((), x.dtype), _pad_config(geo))


def _slice_tap(xp, start, geo: _Geometry):
    """xp[:, start + o*S, :] for every output position o: (N, *O, C)."""
    limit = tuple(s + (o - 1) * st + 1 for s, o, st in zip(start, geo.out, geo.strides))
    return lax.slice(xp, (0, *start, 0), (xp.shape[0], *limit, xp.shape[-1]),
                     (1, *geo.strides, 1))


def _patches(x, geo: _Geometry):
    """The patch matrix as (N, *O, T, C): tap-major, channels minor."""
    xp = _padded_input(x, geo)
    return jnp.stack([_slice_tap(xp, start, geo) for _, start in _taps(geo)], axis=-2)


def _grouped_kernel(kernel, groups):
    """(*K, Cig, C_out) -> (T, Cig, G, Cog)."""
    *_, k_in, c_out = kernel.shape
    return kernel.reshape(-1, k_in, groups, c_out // groups)


# ----------------------------------------------------------------------------------
# Forward


def conv_forward_taps(x, kernel, strides=None, pads=None, dilation=None,
                      input_dilation=None, groups=1):
    """Forward convolution as a sum over kernel taps of (input slice) @ w[tap].

    x (N, *S, C_in), kernel (*K, C_in // G, C_out) -> y (N, *O, C_out);
    y[n, o] = sum_k xp[n, o*S + k*D] @ w[k] (per group). Equals
    `lax.conv_general_dilated(x, kernel, strides, pads, input_dilation, dilation,
    channels-last dimension numbers, feature_group_count=groups)`.
    Needs no patch matrix: best when C_in // groups is small (a first layer).
    """
    geo = _geometry(x.shape, kernel.shape, strides, pads, dilation, input_dilation, groups)
    xp = _padded_input(x, geo)
    w = _grouped_kernel(kernel, groups)
    n, c_in, c_out = x.shape[0], x.shape[-1], kernel.shape[-1]
    y = None
    for i, (_, start) in enumerate(_taps(geo)):
        part = _slice_tap(xp, start, geo).reshape(n, *geo.out, groups, c_in // groups)
        # (..., G, Cig) x (Cig, G, Cog) -> (G, ..., Cog) with G as the batch dimension.
        term = lax.dot_general(part, w[i], (((geo.ndim + 2,), (0,)), ((geo.ndim + 1,), (1,))))
        y = term if y is None else y + term
    return _ungroup(y, geo, n, c_out)


def conv_forward_im2col(x, kernel, strides=None, pads=None, dilation=None,
                        input_dilation=None, groups=1):
    """Forward convolution as one matrix product of the patch matrix with the kernel.

    x (N, *S, C_in), kernel (*K, C_in // G, C_out) -> y (N, *O, C_out);
    y = patches (N*prod(O), T*Cig) @ w (T*Cig, Cog) per group, where patches stacks
    the T tap slices xp[n, o*S + k*D] (im2col). Equals `lax.conv_general_dilated`
    with the same settings (see `conv_forward_taps`).
    """
    geo = _geometry(x.shape, kernel.shape, strides, pads, dilation, input_dilation, groups)
    n, c_in, c_out = x.shape[0], x.shape[-1], kernel.shape[-1]
    taps = int(np.prod(geo.window))
    cig = c_in // groups
    p = _patches(x, geo).reshape(n, *geo.out, taps, groups, cig)
    w = _grouped_kernel(kernel, groups)  # (T, Cig, G, Cog)
    nd = geo.ndim
    # Contract (T, Cig); G is a batch dimension: (G, N, *O, Cog).
    y = lax.dot_general(p, w, (((nd + 1, nd + 3), (0, 1)), ((nd + 2,), (2,))))
    return _ungroup(y, geo, n, c_out)


def _ungroup(y, geo: _Geometry, n, c_out):
    """(G, N, *O, Cog) -> (N, *O, G * Cog)."""
    if geo.groups == 1:
        return y.reshape(n, *geo.out, c_out)
    perm = tuple(range(1, geo.ndim + 2)) + (0, geo.ndim + 2)
    return jnp.transpose(y, perm).reshape(n, *geo.out, c_out)


# ----------------------------------------------------------------------------------
# Input gradient


def conv_input_grad_col2im(dy, kernel, input_shape, strides=None, pads=None,
                           dilation=None, input_dilation=None, groups=1):
    """Input gradient (the transpose of the forward in x) as dy @ w^T, then col2im.

    dy (N, *O, C_out), kernel (*K, C_in // G, C_out) -> dx of `input_shape`
    (N, *S, C_in). Per group, dpatches = dy (M, Cog) @ w^T (Cog, T*Cig); tap k's
    block is added back into dxp at o*S + k*D (a strided slice transposes to an
    interior pad), and dx is dxp at the real input cells: offset p_lo, step L.
    Equals the vjp of `lax.conv_general_dilated` with respect to its input.
    """
    geo = _geometry(input_shape, kernel.shape, strides, pads, dilation, input_dilation,
                    groups)
    if tuple(dy.shape) != (input_shape[0], *geo.out, kernel.shape[-1]):
        raise ValueError(
            f"dy has shape {tuple(dy.shape)}: expected {(input_shape[0], *geo.out, kernel.shape[-1])}, "
            f"the output shape of this convolution of an input of shape {tuple(input_shape)}"
        )
    n, c_in, c_out = input_shape[0], input_shape[-1], kernel.shape[-1]
    cig, cog = c_in // groups, c_out // groups
    nd = geo.ndim
    w = _grouped_kernel(kernel, groups)  # (T, Cig, G, Cog)
    dy_g = dy.reshape(n, *geo.out, groups, cog)
    # (N, *O, G, Cog) x (T, Cig, G, Cog) -> (G, N, *O, T, Cig)
    dp = lax.dot_general(dy_g, w, (((nd + 2,), (3,)), ((nd + 1,), (2,))))
    dp = jnp.moveaxis(dp, 0, -2).reshape(n, *geo.out, -1, c_in)  # (N, *O, T, C_in)
    zero = jnp.zeros((), dy.dtype)
    dxp = None
    for i, (_, start) in enumerate(_taps(geo)):
        config = ((0, 0, 0),) + tuple(
            (s, p - s - (o - 1) * st - 1, st - 1)
            for s, p, o, st in zip(start, geo.padded, geo.out, geo.strides)
        ) + ((0, 0, 0),)
        term = lax.pad(dp[..., i, :], zero, config)
        dxp = term if dxp is None else dxp + term
    # The transpose of padding x (interior L - 1, edges p_lo, p_hi): read every L-th
    # cell from p_lo on.
    start = (0,) + tuple(lo for lo, _ in geo.pads) + (0,)
    limit = (n,) + tuple(lo + (s - 1) * ld + 1 for (lo, _), s, ld in
                         zip(geo.pads, input_shape[1:-1], geo.input_dilation)) + (c_in,)
    return lax.slice(dxp, start, limit, (1, *geo.input_dilation, 1))


# ----------------------------------------------------------------------------------
# Kernel gradient


def conv_kernel_grad_im2col(x, dy, kernel_shape, strides=None, pads=None, dilation=None,
                            input_dilation=None, groups=1):
    """Kernel gradient as patches^T @ dy, one matrix product per group.

    x (N, *S, C_in), dy (N, *O, C_out) -> dw of `kernel_shape` (*K, C_in // G, C_out);
    dw[k, :, g] = sum_{n, o} xp[n, o*S + k*D, g]^T dy[n, o, g], i.e. the (T*Cig, M)
    transposed patch matrix times dy (M, Cog). Equals the vjp of
    `lax.conv_general_dilated` with respect to its kernel.
    """
    geo = _geometry(x.shape, kernel_shape, strides, pads, dilation, input_dilation, groups)
    n, c_in, c_out = x.shape[0], x.shape[-1], kernel_shape[-1]
    if tuple(dy.shape) != (n, *geo.out, c_out):
        raise ValueError(
            f"dy has shape {tuple(dy.shape)}: expected {(n, *geo.out, c_out)}, the output "
            f"shape of this convolution of x with shape {tuple(x.shape)}"
        )
    taps = int(np.prod(geo.window))
    cig, cog = c_in // groups, c_out // groups
    nd = geo.ndim
    p = _patches(x, geo).reshape(n, *geo.out, taps, groups, cig)
    dy_g = dy.reshape(n, *geo.out, groups, cog)
    positions = tuple(range(nd + 1))
    # Contract (N, *O); G is a batch dimension: (G, T, Cig, Cog).
    dw = lax.dot_general(p, dy_g, ((positions, positions), ((nd + 2,), (nd + 1,))))
    dw = jnp.transpose(dw, (1, 2, 0, 3))  # (T, Cig, G, Cog)
    return dw.reshape(kernel_shape)


# ----------------------------------------------------------------------------------
# Choice


# Where the matrix-product lowerings beat XLA's CPU convolution, measured on a 2-core
# AVX-512 EPYC with jax 0.10.2 (3x3 SAME kernels, 28x28 and 14x14 inputs, batch 32 and
# 128, single-core CPU time, medians of interleaved repeats):
#   C_in // groups = 1   forward tap sum 1.7-2.1x faster (each tap is a broadcast
#                        multiply-add, no matrix product at all); col2im input grad
#                        2.4-2.7x; im2col kernel grad 1.7x at >= 100k output positions
#                        (batch 128 on 28x28), 0.9x at 25k (batch 32);
#   C_in // groups = 3   im2col forward 0.8-1.3x (kept on XLA), col2im 1.2-1.3x,
#                        im2col kernel grad 0.6-1.2x (kept on XLA);
#   C_in // groups >= 8  XLA wins every pass by 1.2-7x: stacking many-channel patches
#                        costs more than the product saves.
TAPS_MAX_CHANNELS = 1
COL2IM_MAX_CHANNELS = 3
IM2COL_MIN_POSITIONS = 65536


def choose_lowering(x_shape: Sequence[int], kernel_shape: Sequence[int]) -> Lowering:
    """The fastest lowering measured on a CPU for each pass of this convolution.

    x_shape (N, *S, C_in), kernel_shape (*K, C_in // groups, C_out); the number of
    output positions is estimated as N * prod(S) (exact for stride 1, SAME).
    """
    cig = kernel_shape[-2]
    positions = int(np.prod(x_shape[:-1]))
    return Lowering(
        "conv_forward_taps" if cig <= TAPS_MAX_CHANNELS else "xla",
        "conv_input_grad_col2im" if cig <= COL2IM_MAX_CHANNELS else "xla",
        "conv_kernel_grad_im2col"
        if cig <= TAPS_MAX_CHANNELS and positions >= IM2COL_MIN_POSITIONS else "xla",
    )
