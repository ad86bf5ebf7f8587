"""Naive-loop NumPy oracle for upsampling by integer factors, nearest and (bi)linear.

Every output cell is visited in plain Python loops. Its source coordinate per spatial
dimension comes from the definition (PyTorch, align_corners=False; TensorFlow 2's
half-pixel centres):

    nearest   src = floor(o / s)
    linear    u = max((o + 0.5) / s - 0.5, 0), i0 = floor(u), i1 = min(i0 + 1, W - 1),
              weights (1 - (u - i0), u - i0)

and in N-d the output is the sum over the 2^d corners of the product of the per-axis
weights (bilinear in 2-D, trilinear in 3-D). The backward adds weight * dy[o] onto
every corner over the same loops.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _per_dim(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def _taps_1d(o, w, s, method):
    """[(source index, weight)] of output index o along one axis."""
    if method == "nearest":
        return [(o // s, 1.0)]
    u = max((o + 0.5) / s - 0.5, 0.0)
    i0 = math.floor(u)
    i1 = min(i0 + 1, w - 1)
    lam = u - i0
    return [(i0, 1.0 - lam), (i1, lam)]


def _walk(x_shape, scale, method):
    spatial = x_shape[1:-1]
    scale = _per_dim(scale, len(spatial))
    out = [w * s for w, s in zip(spatial, scale)]
    for o in itertools.product(*(range(n) for n in out)):
        per_axis = [_taps_1d(oi, w, s, method) for oi, w, s in zip(o, spatial, scale)]
        for corner in itertools.product(*per_axis):
            src = tuple(i for i, _ in corner)
            weight = math.prod(wt for _, wt in corner)
            yield o, src, weight, out


def upsample_forward(x, scale, method):
    x = np.asarray(x, np.float64)
    y = None
    for o, src, weight, out in _walk(x.shape, scale, method):
        if y is None:
            y = np.zeros((x.shape[0], *out, x.shape[-1]))
        y[(slice(None), *o, slice(None))] += weight * x[(slice(None), *src, slice(None))]
    return y


def upsample_backward(x_shape, g, scale, method):
    g = np.asarray(g, np.float64)
    dx = np.zeros(x_shape)
    for o, src, weight, _ in _walk(x_shape, scale, method):
        dx[(slice(None), *src, slice(None))] += weight * g[(slice(None), *o, slice(None))]
    return dx
