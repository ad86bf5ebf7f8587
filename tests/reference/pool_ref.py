"""Naive-loop NumPy oracle for max, average and global average pooling.

Plain Python loops over output positions and window offsets; every (batch, channel)
pair is handled at once with NumPy arrays of shape (N, C). No jax, no lax.

Conventions (the ones fcnn documents):
- x is (N, *S, C), 1-3 spatial dims; the output cell o reads the input cells
  p = o * stride + k - pad_low for the window offsets k, in row-major order.
- Max: padded cells are ignored; among tied maxima the first in row-major window
  order takes the whole gradient.
- Average: padded cells count as zeros; the divisor is prod(window) when
  count_include_pad, else the number of real cells in the window. The gradient
  reaches the real cells only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def resolve_padding(padding, spatial, window, strides):
    """(low, high) pairs per spatial dim; "SAME" gives out = ceil(n / s), extra on high."""
    ndim = len(spatial)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * ndim
        pairs = []
        for n, w, s in zip(spatial, window, strides):
            out = -(-n // s)
            total = max((out - 1) * s + w - n, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    return [tuple(p) for p in padding]


def _tuple(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def _setup(x_shape, window_shape, strides, padding):
    spatial = x_shape[1:-1]
    ndim = len(spatial)
    window = _tuple(window_shape, ndim)
    strides = window if strides is None else _tuple(strides, ndim)
    pads = resolve_padding(padding, spatial, window, strides)
    out = [
        (n + lo + hi - w) // s + 1 for n, w, s, (lo, hi) in zip(spatial, window, strides, pads)
    ]
    return spatial, window, strides, pads, out


def _window_cells(o, spatial, window, strides, pads):
    """Input positions (row-major window order) of output cell o, and how many
    window offsets fell on padding."""
    cells, padded = [], 0
    for k in itertools.product(*(range(w) for w in window)):
        p = tuple(oi * s + ki - lo for oi, s, ki, (lo, _) in zip(o, strides, k, pads))
        if all(0 <= pi < n for pi, n in zip(p, spatial)):
            cells.append(p)
        else:
            padded += 1
    return cells, padded


def _at(p):
    return (slice(None), *p, slice(None))


def pool_forward(x, kind, window_shape, strides=None, padding="VALID",
                 count_include_pad=False):
    """Pooled output (N, *out, C) of `kind` "max" or "avg"."""
    x = np.asarray(x, dtype=np.float64)
    spatial, window, strides, pads, out = _setup(x.shape, window_shape, strides, padding)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in itertools.product(*(range(n) for n in out)):
        cells, padded = _window_cells(o, spatial, window, strides, pads)
        values = np.stack([x[_at(p)] for p in cells])  # (cells, N, C)
        if kind == "max":
            y[_at(o)] = values.max(axis=0)
        else:
            divisor = len(cells) + (padded if count_include_pad else 0)
            y[_at(o)] = values.sum(axis=0) / divisor
    return y


def pool_backward(x, g, kind, window_shape, strides=None, padding="VALID",
                  count_include_pad=False):
    """Input gradient (N, *S, C) for the output cotangent g (N, *out, C)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    spatial, window, strides, pads, out = _setup(x.shape, window_shape, strides, padding)
    dx = np.zeros(x.shape)
    for o in itertools.product(*(range(n) for n in out)):
        cells, padded = _window_cells(o, spatial, window, strides, pads)
        if kind == "max":
            values = np.stack([x[_at(p)] for p in cells])
            winner = values.argmax(axis=0)  # np.argmax returns the first maximum
            for j, p in enumerate(cells):
                dx[_at(p)] += np.where(winner == j, g[_at(o)], 0.0)
        else:
            divisor = len(cells) + (padded if count_include_pad else 0)
            for p in cells:
                dx[_at(p)] += g[_at(o)] / divisor
    return dx


def global_avg_pool_forward(x):
    """Mean over every spatial position: (N, *S, C) -> (N, C)."""
    x = np.asarray(x, dtype=np.float64)
    spatial = x.shape[1:-1]
    total = np.zeros((x.shape[0], x.shape[-1]))
    for p in itertools.product(*(range(n) for n in spatial)):
        total += x[_at(p)]
    return total / math.prod(spatial)


def global_avg_pool_backward(x_shape, g):
    """dx[n, s, c] = g[n, c] / |S| at every spatial position s."""
    g = np.asarray(g, dtype=np.float64)
    spatial = tuple(x_shape[1:-1])
    dx = np.zeros(x_shape)
    for p in itertools.product(*(range(n) for n in spatial)):
        dx[_at(p)] = g / math.prod(spatial)
    return dx


def global_max_pool_forward(x):
    """Max over every spatial position: (N, *S, C) -> (N, C)."""
    x = np.asarray(x, dtype=np.float64)
    best = None
    for p in itertools.product(*(range(n) for n in x.shape[1:-1])):
        best = x[_at(p)].copy() if best is None else np.maximum(best, x[_at(p)])
    return best


def global_max_pool_backward(x, g):
    """The whole g[n, c] to the first maximum of (n, c) in row-major order."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    dx = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for c in range(x.shape[-1]):
            best, where = None, None
            for p in itertools.product(*(range(s) for s in x.shape[1:-1])):
                if best is None or x[(n, *p, c)] > best:  # strictly greater: first wins
                    best, where = x[(n, *p, c)], p
            dx[(n, *where, c)] += g[n, c]
    return dx


def adaptive_windows(size, out):
    """PyTorch's rule: window i is [floor(i * W / O), ceil((i + 1) * W / O))."""
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def _adaptive_cells(x_shape, output_size):
    spatial = x_shape[1:-1]
    output_size = _tuple(output_size, len(spatial))
    windows = [adaptive_windows(w, o) for w, o in zip(spatial, output_size)]
    for o in itertools.product(*(range(n) for n in output_size)):
        box = [windows[d][o[d]] for d in range(len(spatial))]
        cells = list(itertools.product(*(range(a, b) for a, b in box)))
        yield o, cells, output_size


def adaptive_avg_pool_forward(x, output_size):
    """Mean of each adaptive box window: (N, *S, C) -> (N, *output_size, C)."""
    x = np.asarray(x, dtype=np.float64)
    y = None
    for o, cells, out in _adaptive_cells(x.shape, output_size):
        if y is None:
            y = np.zeros((x.shape[0], *out, x.shape[-1]))
        total = np.zeros((x.shape[0], x.shape[-1]))
        for p in cells:
            total += x[_at(p)]
        y[_at(o)] = total / len(cells)
    return y


def adaptive_avg_pool_backward(x_shape, g, output_size):
    """g[o] / |window o| added onto every cell of window o."""
    g = np.asarray(g, dtype=np.float64)
    dx = np.zeros(x_shape)
    for o, cells, _ in _adaptive_cells(x_shape, output_size):
        for p in cells:
            dx[_at(p)] += g[_at(o)] / len(cells)
    return dx
