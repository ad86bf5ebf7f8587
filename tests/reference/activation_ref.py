"""Naive-loop NumPy oracles for activations, maxout and dropout masks.

Written from the textbook formulas with Python's `math`, one element at a time, and
independently of fcnn: derivatives are written in their own closed forms (e.g.
sigmoid' = e^-x / (1 + e^-x)^2, tanh' = 1 / cosh^2), not in terms of the outputs
as the library's backward rules are. Every `*_vjp` returns the vector-Jacobian
product with the output cotangent `g`, assembled from an explicit Jacobian where
outputs mix (softmax, log-softmax).
"""

from __future__ import annotations

import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _map(fn, x):
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        out[idx] = fn(float(x[idx]))
    return out


def _phi_cdf(v):
    return 0.5 * (1 + math.erf(v / math.sqrt(2)))


def _gelu_tanh(v):
    return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))


def _gelu_tanh_derivative(v):
    """d/dv of v/2 (1 + tanh u), u = c (v + a v^3), c = sqrt(2/pi), a = 0.044715:
    product and chain rule with tanh' = 1/cosh^2 (the library writes 1 - tanh^2):
    (1 + tanh u)/2 + v/2 * c (1 + 3 a v^2) / cosh(u)^2."""
    c, a = math.sqrt(2 / math.pi), 0.044715
    u = c * (v + a * v**3)
    return 0.5 * (1 + math.tanh(u)) + 0.5 * v * c * (1 + 3 * a * v * v) / math.cosh(u) ** 2


# scalar (f, f') pairs
SCALAR = {
    "sigmoid": (lambda v: 1 / (1 + math.exp(-v)), lambda v: math.exp(-v) / (1 + math.exp(-v)) ** 2),
    "tanh": (math.tanh, lambda v: 1 / math.cosh(v) ** 2),
    "relu": (lambda v: v if v > 0 else 0.0, lambda v: 1.0 if v > 0 else 0.0),
    "leaky_relu": (lambda v: v if v > 0 else 0.01 * v, lambda v: 1.0 if v > 0 else 0.01),
    "softplus": (lambda v: math.log(1 + math.exp(v)), lambda v: math.exp(v) / (1 + math.exp(v))),
    "elu": (lambda v: v if v > 0 else math.exp(v) - 1, lambda v: 1.0 if v > 0 else math.exp(v)),
    "selu": (
        lambda v: SELU_SCALE * (v if v > 0 else SELU_ALPHA * (math.exp(v) - 1)),
        lambda v: SELU_SCALE * (1.0 if v > 0 else SELU_ALPHA * math.exp(v)),
    ),
    "gelu": (
        lambda v: v * _phi_cdf(v),
        lambda v: _phi_cdf(v) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi),
    ),
    "gelu_tanh": (_gelu_tanh, _gelu_tanh_derivative),
    "silu": (
        lambda v: v / (1 + math.exp(-v)),
        lambda v: (1 + math.exp(-v) + v * math.exp(-v)) / (1 + math.exp(-v)) ** 2,
    ),
}


def elementwise(name, x):
    return _map(SCALAR[name][0], x)


def elementwise_vjp(name, x, g):
    return _map(SCALAR[name][1], x) * np.asarray(g, np.float64)


def _rows(x, axis):
    """x with `axis` moved last and flattened to (rows, K), and the inverse map."""
    moved = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    shape = moved.shape
    return moved.reshape(-1, shape[-1]), lambda r: np.moveaxis(r.reshape(shape), -1, axis)


def softmax(x, axis=-1):
    rows, back = _rows(x, axis)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        m = max(rows[r])
        total = sum(math.exp(v - m) for v in rows[r])
        for k in range(rows.shape[1]):
            out[r, k] = math.exp(rows[r, k] - m) / total
    return back(out)


def softmax_vjp(x, g, axis=-1):
    p, _ = _rows(softmax(x, axis), axis)
    gr, back = _rows(g, axis)
    out = np.zeros_like(p)
    for r in range(p.shape[0]):
        for j in range(p.shape[1]):  # input index
            for i in range(p.shape[1]):  # output index: J_ij = p_i ([i = j] - p_j)
                out[r, j] += gr[r, i] * p[r, i] * ((1.0 if i == j else 0.0) - p[r, j])
    return back(out)


def log_softmax(x, axis=-1):
    rows, back = _rows(x, axis)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        m = max(rows[r])
        lse = m + math.log(sum(math.exp(v - m) for v in rows[r]))
        for k in range(rows.shape[1]):
            out[r, k] = rows[r, k] - lse
    return back(out)


def log_softmax_vjp(x, g, axis=-1):
    p, _ = _rows(softmax(x, axis), axis)
    gr, back = _rows(g, axis)
    out = np.zeros_like(p)
    for r in range(p.shape[0]):
        for j in range(p.shape[1]):
            for i in range(p.shape[1]):  # J_ij = [i = j] - p_j
                out[r, j] += gr[r, i] * ((1.0 if i == j else 0.0) - p[r, j])
    return back(out)


def _slope_at(slope, idx):
    slope = np.asarray(slope, np.float64)
    if slope.ndim == 0:
        return float(slope), ()
    sidx = tuple(idx[len(idx) - slope.ndim:])
    return float(slope[sidx]), sidx


def prelu(x, slope):
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        a, _ = _slope_at(slope, idx)
        out[idx] = x[idx] if x[idx] > 0 else a * x[idx]
    return out


def prelu_vjp(x, slope, g):
    """(dx, dslope) for f = x if x > 0 else a x; slope () or x's trailing shape."""
    x = np.asarray(x, np.float64)
    dx = np.empty_like(x)
    dslope = np.zeros(np.shape(slope))
    for idx in np.ndindex(x.shape):
        a, sidx = _slope_at(slope, idx)
        if x[idx] > 0:
            dx[idx] = g[idx]
        else:
            dx[idx] = a * g[idx]
            dslope[sidx] += g[idx] * x[idx]
    return dx, dslope


def maxout(x, pieces):
    x = np.asarray(x, np.float64)
    lead, channels = x.shape[:-1], x.shape[-1]
    out = np.empty(lead + (channels // pieces,))
    for idx in np.ndindex(out.shape):
        f = idx[-1]
        out[idx] = max(x[idx[:-1] + (f * pieces + j,)] for j in range(pieces))
    return out


def maxout_vjp(x, pieces, g):
    """Gradient routed to the first maximal piece of each unit."""
    x = np.asarray(x, np.float64)
    dx = np.zeros_like(x)
    for idx in np.ndindex(g.shape):
        f = idx[-1]
        best = None
        for j in range(pieces):
            c = f * pieces + j
            if best is None or x[idx[:-1] + (c,)] > x[idx[:-1] + (best,)]:
                best = c
        dx[idx[:-1] + (best,)] += g[idx]
    return dx


def masked(x, mask):
    """y = x * m elementwise, m broadcast along its size-1 axes."""
    x = np.asarray(x, np.float64)
    mask = np.asarray(mask, np.float64)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        midx = tuple(0 if mask.shape[d] == 1 else i for d, i in enumerate(idx))
        out[idx] = x[idx] * mask[midx]
    return out
