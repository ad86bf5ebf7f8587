"""Naive-loop NumPy oracle for the padding modes, forward and backward.

Every output cell is visited in plain Python loops; its source cell is computed per
spatial dimension from the definition of the mode (no slicing tricks):

    zeros      outside [0, W): no source (the output is 0)
    reflect    j < 0 -> -j; j >= W -> 2 (W - 1) - j      (mirror, edge not repeated)
    replicate  clamp j to [0, W - 1]
    circular   j mod W

The backward adds each output gradient onto its source cell, over the same loops.
"""

from __future__ import annotations

import itertools

import numpy as np


def _pairs(padding, ndim):
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    if isinstance(padding[0], int):
        return [(p, p) for p in padding]
    return [tuple(p) for p in padding]


def _source(j, w, mode):
    """The input index output index j (input coordinates) copies, or None."""
    if 0 <= j < w:
        return j
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -j if j < 0 else 2 * (w - 1) - j
    if mode == "replicate":
        return min(max(j, 0), w - 1)
    return j % w  # circular


def _walk(x_shape, padding, mode):
    """(output position, source position or None) for every output cell."""
    spatial = x_shape[1:-1]
    pairs = _pairs(padding, len(spatial))
    out = [w + lo + hi for w, (lo, hi) in zip(spatial, pairs)]
    for o in itertools.product(*(range(n) for n in out)):
        src = tuple(_source(oi - lo, w, mode) for oi, w, (lo, _) in zip(o, spatial, pairs))
        yield o, (None if any(s is None for s in src) else src), out


def pad_forward(x, padding, mode):
    x = np.asarray(x, np.float64)
    y = None
    for o, src, out in _walk(x.shape, padding, mode):
        if y is None:
            y = np.zeros((x.shape[0], *out, x.shape[-1]))
        if src is not None:
            y[(slice(None), *o, slice(None))] = x[(slice(None), *src, slice(None))]
    return y


def pad_backward(x_shape, g, padding, mode):
    g = np.asarray(g, np.float64)
    dx = np.zeros(x_shape)
    for o, src, _ in _walk(x_shape, padding, mode):
        if src is not None:
            dx[(slice(None), *src, slice(None))] += g[(slice(None), *o, slice(None))]
    return dx
