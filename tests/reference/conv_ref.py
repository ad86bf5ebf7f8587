"""Naive-loop NumPy oracle for N-d convolution, forward and backward.

Written from the definition only (no jax, no lax): the input is dilated and zero-padded
explicitly, then every output position and every window tap is visited in plain Python
loops. The backward accumulates the chain rule over exactly the same loops:
y[n, o, co] += xpad[n, pos, ci] * w[k, ci, co] gives
dxpad[n, pos, ci] += dy[n, o, co] * w[k, ci, co] and
dw[k, ci, co] += xpad[n, pos, ci] * dy[n, o, co].

Layout: x (N, *S, C_in), kernel (*K, C_in // groups, C_out), channels last.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _per_dim(value, ndim):
    if isinstance(value, int):
        return (value,) * ndim
    return tuple(value)


def resolve_padding(padding, sizes, windows, strides):
    """(low, high) per dimension; `sizes` are input-dilated, `windows` kernel-dilated.

    "SAME": output ceil(size / stride), total padding split with the extra cell high.
    """
    ndim = len(sizes)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * ndim
        if padding.upper() == "SAME":
            pads = []
            for size, window, stride in zip(sizes, windows, strides):
                out = math.ceil(size / stride)
                total = max((out - 1) * stride + window - size, 0)
                pads.append((total // 2, total - total // 2))
            return pads
        raise ValueError(padding)
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    return [tuple(p) for p in padding]


def _geometry(x_shape, kernel_shape, strides, padding, dilation, input_dilation):
    ndim = len(x_shape) - 2
    strides = _per_dim(strides, ndim)
    dilation = _per_dim(dilation, ndim)
    input_dilation = _per_dim(input_dilation, ndim)
    spatial = x_shape[1:-1]
    window = kernel_shape[:ndim]
    dilated = tuple((s - 1) * l + 1 for s, l in zip(spatial, input_dilation))
    eff = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    pads = resolve_padding(padding, dilated, eff, strides)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(dilated, pads))
    out = tuple((p - e) // s + 1 for p, e, s in zip(padded, eff, strides))
    return ndim, strides, dilation, input_dilation, window, dilated, pads, padded, out


def _dilate_and_pad(x, input_dilation, pads, dilated, padded):
    n, c = x.shape[0], x.shape[-1]
    xd = np.zeros((n, *dilated, c), x.dtype)
    xd[(slice(None),) + tuple(slice(None, None, l) for l in input_dilation)] = x
    xp = np.zeros((n, *padded, c), x.dtype)
    xp[(slice(None),) + tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, dilated))] = xd
    return xp


def _loops(n, out, window):
    for b in range(n):
        for o in itertools.product(*(range(s) for s in out)):
            for k in itertools.product(*(range(s) for s in window)):
                yield b, o, k


def _taps(batch, out, window, strides, dilation, groups, c_in_g, c_out_g):
    """Every product of the convolution sum, as (x index, kernel index, y index):
    y[b, o, f] += xpad[b, o*s + k*d, c] * w[k, ci, f], c and f in the same group."""
    for b, o, k in _loops(batch, out, window):
        pos = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
        for g in range(groups):
            for ci in range(c_in_g):
                for co in range(c_out_g):
                    f = g * c_out_g + co
                    yield (b, *pos, g * c_in_g + ci), (*k, ci, f), (b, *o, f)


def conv_forward(x, kernel, bias=None, *, strides=1, padding="SAME", dilation=1,
                 input_dilation=1, groups=1):
    """y[n, o, co] = b[co] + sum_{k, ci} xpad[n, o*s + k*d, g*Cig + ci] w[k, ci, co]."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    _, strides, dilation, input_dilation, window, dilated, pads, padded, out = _geometry(
        x.shape, kernel.shape, strides, padding, dilation, input_dilation
    )
    c_in_g, c_out = kernel.shape[-2:]
    c_out_g = c_out // groups
    xp = _dilate_and_pad(x, input_dilation, pads, dilated, padded)
    y = np.zeros((x.shape[0], *out, c_out))
    for x_at, k_at, y_at in _taps(x.shape[0], out, window, strides, dilation, groups, c_in_g, c_out_g):
        y[y_at] += xp[x_at] * kernel[k_at]
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y


def conv_backward(x, kernel, dy, *, strides=1, padding="SAME", dilation=1,
                  input_dilation=1, groups=1):
    """(dx, dkernel, dbias) for the cotangent `dy`, by the chain rule over the same loops."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    dy = np.asarray(dy, np.float64)
    _, strides, dilation, input_dilation, window, dilated, pads, padded, out = _geometry(
        x.shape, kernel.shape, strides, padding, dilation, input_dilation
    )
    c_in_g, c_out = kernel.shape[-2:]
    c_out_g = c_out // groups
    xp = _dilate_and_pad(x, input_dilation, pads, dilated, padded)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(kernel)
    for x_at, k_at, y_at in _taps(x.shape[0], out, window, strides, dilation, groups, c_in_g, c_out_g):
        dxp[x_at] += dy[y_at] * kernel[k_at]
        dw[k_at] += xp[x_at] * dy[y_at]
    # undo the padding, then keep only the cells that held a real input value
    dxd = dxp[(slice(None),) + tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, dilated))]
    dx = dxd[(slice(None),) + tuple(slice(None, None, l) for l in input_dilation)]
    db = dy.reshape(-1, c_out).sum(axis=0)
    return dx, dw, db


def output_shape(x_shape, kernel_shape, *, strides=1, padding="SAME", dilation=1,
                 input_dilation=1):
    """(N, *S_out, C_out) by the same geometry the loops use."""
    *_, out = _geometry(tuple(x_shape), tuple(kernel_shape), strides, padding, dilation,
                        input_dilation)
    return (x_shape[0], *out, kernel_shape[-1])
