"""Naive-loop NumPy oracle for the dense op y = x W + b.

x is (..., in), W (in, out), b (out,) or None. The leading axes are flattened to
M rows and every sum is an explicit Python loop. No jax.
"""

from __future__ import annotations

import numpy as np


def _rows(a):
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(-1, a.shape[-1])


def dense_forward(x, kernel, bias=None):
    x = np.asarray(x, dtype=np.float64)
    xs, w = _rows(x), np.asarray(kernel, dtype=np.float64)
    m_rows, n_in = xs.shape
    n_out = w.shape[1]
    y = np.zeros((m_rows, n_out))
    for m in range(m_rows):
        for o in range(n_out):
            total = 0.0
            for i in range(n_in):
                total += xs[m, i] * w[i, o]
            y[m, o] = total + (0.0 if bias is None else float(bias[o]))
    return y.reshape(x.shape[:-1] + (n_out,))


def dense_backward(x, kernel, g, with_bias=True):
    """Returns (dx, dkernel, dbias or None) for the output cotangent g (..., out)."""
    x = np.asarray(x, dtype=np.float64)
    xs, gs, w = _rows(x), _rows(g), np.asarray(kernel, dtype=np.float64)
    m_rows, n_in = xs.shape
    n_out = w.shape[1]
    dx = np.zeros((m_rows, n_in))
    dw = np.zeros((n_in, n_out))
    db = np.zeros(n_out)
    for m in range(m_rows):
        for i in range(n_in):
            for o in range(n_out):
                dx[m, i] += gs[m, o] * w[i, o]
                dw[i, o] += xs[m, i] * gs[m, o]
        for o in range(n_out):
            db[o] += gs[m, o]
    return dx.reshape(x.shape), dw, (db if with_bias else None)
