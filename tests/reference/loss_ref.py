"""Naive-loop NumPy oracles for the losses, their gradients and the center update.

Each loss is written from its textbook definition with `math`, one term at a time,
independently of fcnn; gradients come from the per-term derivatives (the
softmax cross-entropy one through the explicit softmax Jacobian, not the p - y
shortcut). Reductions follow fcnn.losses: n is the batch size (axis 0).
"""

from __future__ import annotations

import math

import numpy as np


def _f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def half_squared_error(o, t):
    o, t = _f64(o, t)
    n = o.shape[0] if o.ndim else 1
    total = 0.0
    for idx in np.ndindex(o.shape):
        total += 0.5 * (t[idx] - o[idx]) ** 2
    return total / n


def half_squared_error_grad(o, t):
    o, t = _f64(o, t)
    n = o.shape[0] if o.ndim else 1
    d = np.empty_like(o)
    for idx in np.ndindex(o.shape):
        d[idx] = -(t[idx] - o[idx]) / n  # d/do of 1/2 (t - o)^2
    return d, -d


def mean_squared_error(o, t):
    o, t = _f64(o, t)
    total = 0.0
    for idx in np.ndindex(o.shape):
        total += (o[idx] - t[idx]) ** 2
    return total / o.size


def mean_squared_error_grad(o, t):
    o, t = _f64(o, t)
    d = np.empty_like(o)
    for idx in np.ndindex(o.shape):
        d[idx] = 2 * (o[idx] - t[idx]) / o.size
    return d, -d


def binary_cross_entropy(z, y):
    """-(1/n) sum [y log a + (1 - y) log(1 - a)], a = sigmoid(z) (moderate z only)."""
    z, y = _f64(z, y)
    n = z.shape[0] if z.ndim else 1
    total = 0.0
    for idx in np.ndindex(z.shape):
        a = 1 / (1 + math.exp(-z[idx]))
        total -= y[idx] * math.log(a) + (1 - y[idx]) * math.log(1 - a)
    return total / n


def binary_cross_entropy_grad(z, y):
    """Chain rule through a = sigmoid(z): dC/da * da/dz, and dC/dy = -(log a - log(1 - a))."""
    z, y = _f64(z, y)
    n = z.shape[0] if z.ndim else 1
    dz, dy = np.empty_like(z), np.empty_like(z)
    for idx in np.ndindex(z.shape):
        a = 1 / (1 + math.exp(-z[idx]))
        dc_da = -(y[idx] / a - (1 - y[idx]) / (1 - a))
        dz[idx] = dc_da * a * (1 - a) / n
        dy[idx] = -(math.log(a) - math.log(1 - a)) / n
    return dz, dy


def _softmax_row(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def softmax_cross_entropy(z, y):
    """z (n, K); y (n, K) class distribution (one-hot for a label)."""
    z, y = _f64(z, y)
    total = 0.0
    for i in range(z.shape[0]):
        p = _softmax_row(z[i])
        for k in range(z.shape[1]):
            if y[i, k] != 0:
                total -= y[i, k] * math.log(p[k])
    return total / z.shape[0]


def softmax_cross_entropy_grad(z, y):
    """dC/dz_j = sum_k dC/dp_k dp_k/dz_j with dC/dp_k = -y_k/(n p_k), dp_k/dz_j = p_k([k=j] - p_j)."""
    z, y = _f64(z, y)
    n, num = z.shape
    dz, dy = np.zeros_like(z), np.zeros_like(z)
    for i in range(n):
        p = _softmax_row(z[i])
        for j in range(num):
            for k in range(num):
                dz[i, j] += -y[i, k] / (n * p[k]) * p[k] * ((1.0 if k == j else 0.0) - p[j])
            dy[i, j] = -math.log(p[j]) / n
    return dz, dy


def center_loss(x, labels, centers):
    x, c = _f64(x, centers)
    total = 0.0
    for i in range(x.shape[0]):
        for d in range(x.shape[1]):
            total += 0.5 * (x[i, d] - c[labels[i], d]) ** 2
    return total


def center_loss_grad(x, labels, centers):
    x, c = _f64(x, centers)
    dx, dc = np.zeros_like(x), np.zeros_like(c)
    for i in range(x.shape[0]):
        for d in range(x.shape[1]):
            dx[i, d] = x[i, d] - c[labels[i], d]
            dc[labels[i], d] -= x[i, d] - c[labels[i], d]
    return dx, dc


def update_centers(centers, x, labels, alpha):
    """c_j - alpha * sum_i [y_i = j](c_j - x_i) / (1 + sum_i [y_i = j]), one class at a time."""
    c, x = _f64(centers, x)
    out = c.copy()
    for j in range(c.shape[0]):
        count = 0
        acc = np.zeros(c.shape[1])
        for i in range(x.shape[0]):
            if labels[i] == j:
                count += 1
                for d in range(c.shape[1]):
                    acc[d] += c[j, d] - x[i, d]
        for d in range(c.shape[1]):
            out[j, d] = c[j, d] - alpha * acc[d] / (1 + count)
    return out


def l1_penalty(leaves):
    return sum(abs(float(v)) for w in leaves for v in np.ravel(w))


def l2_penalty(leaves):
    return sum(0.5 * float(v) ** 2 for w in leaves for v in np.ravel(w))


def smooth_labels(y, eps):
    """t_ik = (1 - eps) y_ik + eps / K, one entry at a time (optax.smooth_labels)."""
    (y,) = _f64(y)
    t = np.empty_like(y)
    for i in range(y.shape[0]):
        for k in range(y.shape[1]):
            t[i, k] = (1 - eps) * y[i, k] + eps / y.shape[1]
    return t


def smoothed_softmax_cross_entropy(z, y, eps):
    """-(1/n) sum_i sum_k t_ik log p_ik with the smoothed targets t."""
    z = _f64(z)[0]
    t = smooth_labels(y, eps)
    total = 0.0
    for i in range(z.shape[0]):
        p = _softmax_row(z[i])
        for k in range(z.shape[1]):
            total -= t[i, k] * math.log(p[k])
    return total / z.shape[0]


def smoothed_softmax_cross_entropy_grad(z, y, eps):
    """(dC/dz, dC/dy, dC/deps): dz through the explicit softmax Jacobian with the
    smoothed targets; dC/dy_ik = -(1 - eps) log p_ik / n (the chain through t);
    dC/deps = sum_ik (y_ik - 1/K) log p_ik / n."""
    z, y = _f64(z, y)
    n, num = z.shape
    t = smooth_labels(y, eps)
    dz, dy, deps = np.zeros_like(z), np.zeros_like(z), 0.0
    for i in range(n):
        p = _softmax_row(z[i])
        for j in range(num):
            for k in range(num):
                dz[i, j] += -t[i, k] / (n * p[k]) * p[k] * ((1.0 if k == j else 0.0) - p[j])
            dy[i, j] = -(1 - eps) * math.log(p[j]) / n
            deps += (y[i, j] - 1 / num) * math.log(p[j]) / n
    return dz, dy, deps
