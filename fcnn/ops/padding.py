"""Padding of the spatial axes with four border modes, with its backward by hand.

x is (N, *S, C), channels last, 1-3 spatial dimensions; the batch and channel axes are
never padded. Per spatial dimension of size W, padded by (lo, hi), the output cell o
reads the input cell src(o - lo), where for an index j outside [0, W):

    "zeros"      no cell: the output is 0
    "reflect"    mirrored about the edge cell, which is not repeated:
                 src(-j) = j, src(W - 1 + j) = W - 1 - j     (needs lo, hi <= W - 1)
    "replicate"  the edge cell repeated: src(j) = clamp(j, 0, W - 1)
    "circular"   wrapped around: src(j) = j mod W             (needs lo, hi <= W)

(the modes and the size limits of PyTorch's `padding_mode` / `F.pad`; numpy's
"reflect", "edge" and "wrap").

Every mode is a copy, y[o] = x[src(o)], so the backward is the adjoint of that copy:
each output gradient is added back onto the cell it was copied from,

    dx[i] = sum over o with src(o) = i of dy[o],

i.e. the interior of dy plus its border strips folded back: mirrored onto the cells
next to the edge (reflect), summed onto the edge cell (replicate), onto the opposite
end (circular), or dropped (zeros). Dimensions are padded one after another and
folded back in reverse order. Derivation and a worked example:
docs/derivations/more_layers.md, "Padding modes".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.ops.hand_rule import hand_rule

__all__ = ["MODES", "check_mode", "conv_pads", "pad", "pad_output_shape", "pad_pairs"]

MODES = ("zeros", "reflect", "replicate", "circular")
RANKS = (3, 4, 5)

PADS_HELP = (
    "expected a non-negative int (every side), one int per spatial dimension "
    "(both sides of that dimension), or one (low, high) pair of non-negative ints per "
    "spatial dimension, e.g. ((1, 2),) for one dimension"
)


def check_mode(mode) -> str:
    """Validates a padding mode; returns it."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"padding_mode={mode!r}: expected one of {MODES}")
    return mode


def _is_pair_sequence(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(
        isinstance(p, Sequence) and not isinstance(p, str) for p in value)


def check_pairs_form(value, name: str = "padding"):
    """Checks the form of a padding argument before the rank is known; returns it with
    sequences made tuples. Raises ValueError/TypeError naming `name`."""
    if _checks.is_int(value):
        if value < 0:
            raise ValueError(f"{name}={value!r}: {PADS_HELP}")
        return int(value)
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise TypeError(f"{name}={value!r}: {PADS_HELP}")
    if _is_pair_sequence(value):
        if not all(len(p) == 2 and all(_checks.is_int(v) and v >= 0 for v in p) for p in value):
            raise ValueError(f"{name}={value!r}: {PADS_HELP}")
        return tuple((int(lo), int(hi)) for lo, hi in value)
    if not all(_checks.is_int(v) and v >= 0 for v in value):
        raise ValueError(f"{name}={value!r}: {PADS_HELP}")
    return tuple(int(v) for v in value)


def pad_pairs(value, ndim: int, name: str = "padding") -> tuple[tuple[int, int], ...]:
    """One (low, high) pair per spatial dimension from an int, one int per dimension,
    or the pairs themselves. A tuple of ints is always per dimension (symmetric); write
    a single dimension's (low, high) pair nested, ((1, 2),)."""
    value = check_pairs_form(value, name)
    if isinstance(value, int):
        return ((value, value),) * ndim
    if len(value) != ndim:
        kind = "(low, high) pairs" if isinstance(value[0], tuple) else "ints"
        raise ValueError(
            f"{name}={value!r}: expected {ndim} {kind}, one per spatial dimension, got "
            f"{len(value)}; {PADS_HELP}"
        )
    if isinstance(value[0], tuple):
        return value
    return tuple((v, v) for v in value)


def _check_fits(spatial, pairs, mode: str, name: str):
    """reflect needs pads <= W - 1, circular pads <= W (PyTorch's limits)."""
    limit = {"reflect": 1, "circular": 0}.get(mode)
    if limit is None:
        return
    for d, (w, (lo, hi)) in enumerate(zip(spatial, pairs)):
        if max(lo, hi) > w - limit:
            raise ValueError(
                f"{name}: padding {(lo, hi)} of spatial dimension {d} (size {w}) is too "
                f"wide for padding_mode={mode!r}: each side must be at most "
                f"{'size - 1' if mode == 'reflect' else 'the size'} (= {w - limit})"
            )


def pad_output_shape(input_shape, padding, mode: str = "zeros", *, name: str = "pad"):
    """Output shape (N, *(W + lo + hi), C) of `pad`; the batch may be -1. Raises the
    same errors as `pad`."""
    input_shape = tuple(input_shape)
    _checks.check_rank(input_shape, RANKS, "input_shape", name)
    mode = check_mode(mode)
    pairs = pad_pairs(padding, len(input_shape) - 2)
    _check_fits(input_shape[1:-1], pairs, mode, name)
    return (input_shape[0], *(w + lo + hi for w, (lo, hi) in zip(input_shape[1:-1], pairs)),
            input_shape[-1])


def conv_pads(padding, spatial, kernel_size, strides, dilation):
    """The (low, high) pairs a convolution's `padding` resolves to on `spatial`,
    as `fcnn.ops.conv` resolves them ("SAME" from the dilated window and strides)."""
    ndim = len(spatial)
    kernel_size = _checks.spatial_tuple(kernel_size, ndim, "kernel_size")
    strides = _checks.spatial_tuple(strides, ndim, "strides")
    dilation = _checks.spatial_tuple(dilation, ndim, "dilation")
    windows = tuple(_checks.dilated_size(k, d) for k, d in zip(kernel_size, dilation))
    return tuple(_checks.padding_pairs(padding, tuple(spatial), windows, strides))


# ----------------------------------------------------------------------------------
# One axis: the copy forward and its adjoint backward.


def _slice(x, axis: int, start: int, stop: int):
    return lax.slice_in_dim(x, start, stop, axis=axis)


def _pad_axis(x, axis: int, lo: int, hi: int, mode: str):
    """y = x padded by (lo, hi) along `axis`: y[o] = x[src(o - lo)] (0 for "zeros")."""
    if lo == hi == 0:
        return x
    w = x.shape[axis]
    if mode == "zeros":
        config = [(0, 0, 0)] * x.ndim
        config[axis] = (lo, hi, 0)
        return lax.pad(x, np.zeros((), x.dtype), config)
    if mode == "reflect":  # the cells 1..lo mirrored, and W-1-hi..W-2 mirrored
        low = jnp.flip(_slice(x, axis, 1, lo + 1), axis)
        high = jnp.flip(_slice(x, axis, w - 1 - hi, w - 1), axis)
    elif mode == "replicate":
        low = jnp.repeat(_slice(x, axis, 0, 1), lo, axis=axis)
        high = jnp.repeat(_slice(x, axis, w - 1, w), hi, axis=axis)
    else:  # circular
        low = _slice(x, axis, w - lo, w)
        high = _slice(x, axis, 0, hi)
    return jnp.concatenate([low, x, high], axis=axis)


def _place(v, axis: int, start: int, size: int):
    """v (length m along `axis`) put at [start, start + m) of a zero array of `size`."""
    config = [(0, 0, 0)] * v.ndim
    config[axis] = (start, size - start - v.shape[axis], 0)
    return lax.pad(v, np.zeros((), v.dtype), config)


def _fold_axis(g, axis: int, lo: int, hi: int, mode: str):
    """The adjoint of `_pad_axis`: dx[i] = sum over o with src(o) = i of g[o]."""
    if lo == hi == 0:
        return g
    n = g.shape[axis]
    w = n - lo - hi
    dx = _slice(g, axis, lo, lo + w)
    if mode == "zeros":
        return dx
    g_lo, g_hi = _slice(g, axis, 0, lo), _slice(g, axis, lo + w, n)
    if mode == "reflect":  # y[lo - j] = x[j] and y[lo + W - 1 + j] = x[W - 1 - j], j >= 1
        if lo:
            dx = dx + _place(jnp.flip(g_lo, axis), axis, 1, w)
        if hi:
            dx = dx + _place(jnp.flip(g_hi, axis), axis, w - 1 - hi, w)
    elif mode == "replicate":  # every border cell is a copy of the edge cell
        if lo:
            dx = dx + _place(jnp.sum(g_lo, axis=axis, keepdims=True), axis, 0, w)
        if hi:
            dx = dx + _place(jnp.sum(g_hi, axis=axis, keepdims=True), axis, w - 1, w)
    else:  # circular: the low strip copies the last lo cells, the high strip the first hi
        if lo:
            dx = dx + _place(g_lo, axis, w - lo, w)
        if hi:
            dx = dx + _place(g_hi, axis, 0, w)
    return dx


# ----------------------------------------------------------------------------------
# The op: forward, residuals and backward side by side. Forward and backward are jitted
# on their static arguments: called eagerly, each is one compiled computation.


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(pairs, mode, x):
    for d, (lo, hi) in enumerate(pairs):
        x = _pad_axis(x, 1 + d, lo, hi, mode)
    return x


def _fwd(pairs, mode, x):
    return _forward(pairs, mode, x), None


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bwd(pairs, mode, residuals, g):
    """dx = the border strips of g folded back onto the cells they copied, per axis."""
    del residuals
    for d in reversed(range(len(pairs))):
        lo, hi = pairs[d]
        g = _fold_axis(g, 1 + d, lo, hi, mode)
    return (g,)


PAD = hand_rule("pad", _forward, _fwd, _bwd, nondiff_argnums=(0, 1))


def pad(x, padding, mode: str = "zeros", backward: str = "custom"):
    """Pads the spatial axes of x (N, *S, C) with a border mode.

    `padding`: an int (every side), one int per spatial dimension, or one (low, high)
    pair per spatial dimension. `mode`: "zeros", "reflect" (mirror, edge not repeated;
    each side at most W - 1), "replicate" (edge repeated) or "circular" (wrap; each
    side at most W). Returns (N, *(W + lo + hi), C).

    Backward: dx[i] = sum of dy over the output cells copied from x[i] (see the module
    docstring). `backward="custom"` runs the hand rule, "autodiff" differentiates the
    same forward with JAX.
    """
    _checks.check_backward(backward)
    mode = check_mode(mode)
    shape = np.shape(x)
    _checks.check_rank(shape, RANKS, "x", "pad")
    pairs = pad_pairs(padding, len(shape) - 2)
    _check_fits(shape[1:-1], pairs, mode, "pad")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return PAD.select(backward)(pairs, mode, x)
