"""Naive-loop NumPy oracle for the transposed convolution: a scatter, forward and backward.

Written from PyTorch's definition only (no jax): every input cell i, every window tap
k and every channel pair paints x[n, i, ci] * w[k, ci, co] onto the full output at
i*S + k*D, in plain Python loops; the result is then cropped by P_lo cells low and
P_hi high, output_padding cells being added back at the high end:

    W_out = (W - 1) * S - P_lo - P_hi + D * (K - 1) + 1 + output_padding

The backward accumulates the chain rule over exactly the same loops:
yfull[n, pos, co] += x[n, i, ci] * w[k, ci, co] gives
dx[n, i, ci] += dyfull[n, pos, co] * w[k, ci, co] and
dw[k, ci, co] += x[n, i, ci] * dyfull[n, pos, co], with dyfull the output gradient put
back in place (zero on the cropped cells).

"SAME" is resolved as TensorFlow's conv2d_transpose does: output W * S, the crop
max(F - S, 0) split with the odd cell high (F = D * (K - 1) + 1).

Layout: x (N, *S, C_in), kernel (*K, C_in // groups, C_out), channels last.
"""

from __future__ import annotations

import itertools

import numpy as np


def _per_dim(value, ndim):
    if isinstance(value, int):
        return (value,) * ndim
    return tuple(value)


def geometry(x_shape, kernel_shape, strides=1, padding="SAME", output_padding=None,
             dilation=1):
    """(strides, dilation, pads, output_padding, full sizes, output sizes) per dimension."""
    ndim = len(x_shape) - 2
    strides, dilation = _per_dim(strides, ndim), _per_dim(dilation, ndim)
    spatial, window = x_shape[1:-1], kernel_shape[:ndim]
    eff = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    if isinstance(padding, str) and padding.upper() == "SAME":
        pads, out_pad = [], []
        for f, s in zip(eff, strides):
            total = max(f - s, 0)
            pads.append((total // 2, total - total // 2))
            out_pad.append(max(s - f, 0))
    else:
        if isinstance(padding, str):  # VALID
            pads = [(0, 0)] * ndim
        elif isinstance(padding, int):
            pads = [(padding, padding)] * ndim
        else:
            pads = [tuple(p) for p in padding]
        out_pad = [0] * ndim if output_padding is None else list(_per_dim(output_padding, ndim))
    full = [(w - 1) * s + f + op for w, s, f, op in zip(spatial, strides, eff, out_pad)]
    out = [n - lo - hi for n, (lo, hi) in zip(full, pads)]
    return strides, dilation, pads, out_pad, full, out


def _taps(x_shape, kernel_shape, strides, dilation, groups):
    """Every product of the scatter: (x index, kernel index, full-output index)."""
    ndim = len(x_shape) - 2
    spatial, window = x_shape[1:-1], kernel_shape[:ndim]
    c_in_g, c_out = kernel_shape[-2:]
    c_out_g = c_out // groups
    for b in range(x_shape[0]):
        for i in itertools.product(*(range(w) for w in spatial)):
            for k in itertools.product(*(range(w) for w in window)):
                pos = tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, strides, dilation))
                for g in range(groups):
                    for ci in range(c_in_g):
                        for co in range(c_out_g):
                            f = g * c_out_g + co
                            yield (b, *i, g * c_in_g + ci), (*k, ci, f), (b, *pos, f)


def _crop(full_array, pads, out):
    return full_array[(slice(None),)
                      + tuple(slice(lo, lo + o) for (lo, _), o in zip(pads, out))
                      + (slice(None),)]


def conv_transpose_forward(x, kernel, bias=None, *, strides=1, padding="SAME",
                           output_padding=None, dilation=1, groups=1):
    """y: the full scatter of x * w, cropped (see the module docstring)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    strides, dilation, pads, _, full, out = geometry(
        x.shape, kernel.shape, strides, padding, output_padding, dilation)
    yfull = np.zeros((x.shape[0], *full, kernel.shape[-1]))
    for x_at, k_at, y_at in _taps(x.shape, kernel.shape, strides, dilation, groups):
        yfull[y_at] += x[x_at] * kernel[k_at]
    y = _crop(yfull, pads, out)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y


def conv_transpose_backward(x, kernel, dy, *, strides=1, padding="SAME",
                            output_padding=None, dilation=1, groups=1):
    """(dx, dkernel, dbias) for the cotangent dy, by the chain rule over the same loops."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    dy = np.asarray(dy, np.float64)
    strides, dilation, pads, _, full, out = geometry(
        x.shape, kernel.shape, strides, padding, output_padding, dilation)
    dyfull = np.zeros((x.shape[0], *full, kernel.shape[-1]))
    dyfull[(slice(None),) + tuple(slice(lo, lo + o) for (lo, _), o in zip(pads, out))] = dy
    dx, dw = np.zeros_like(x), np.zeros_like(kernel)
    for x_at, k_at, y_at in _taps(x.shape, kernel.shape, strides, dilation, groups):
        dx[x_at] += dyfull[y_at] * kernel[k_at]
        dw[k_at] += x[x_at] * dyfull[y_at]
    db = dy.reshape(-1, kernel.shape[-1]).sum(axis=0)
    return dx, dw, db


def output_shape(x_shape, kernel_shape, **kwargs):
    """(N, *S_out, C_out) by the same geometry the loops use."""
    kwargs.pop("groups", None)
    *_, out = geometry(tuple(x_shape), tuple(kernel_shape), **kwargs)
    return (x_shape[0], *out, kernel_shape[-1])
