"""Naive-loop NumPy oracles for normalization, LRN and weight normalization.

Written from the formulas, independently of fcnn: plain Python loops over elements,
statistics accumulated per group, and gradients as explicit Jacobian-vector sums
(not the closed forms the library uses). A "group" is the set of elements sharing
one mean and variance, named by `key(index)`:

    batch norm     key = (c,)              layer norm  key = (n,)
    instance norm  key = (n, c)            group norm  key = (n, c // (C / G))
"""

from __future__ import annotations

import math

import numpy as np


def key_without(axes):
    """The group key of `normalize(..., axes=axes)`: the index on the other axes."""
    axes = set(axes)
    return lambda idx: tuple(i for d, i in enumerate(idx) if d not in axes)


def _groups(shape, key):
    groups = {}
    for idx in np.ndindex(*shape):
        groups.setdefault(key(idx), []).append(idx)
    return groups


def group_stats(x, key):
    """{group: (mean, biased variance, members)}."""
    out = {}
    for g, members in _groups(x.shape, key).items():
        m = len(members)
        mean = sum(float(x[i]) for i in members) / m
        var = sum((float(x[i]) - mean) ** 2 for i in members) / m
        out[g] = (mean, var, members)
    return out


def normalize_forward(x, scale, bias, key, eps):
    """y = scale * (x - mean_g) / sqrt(var_g + eps) + bias; scale, bias shaped like x.

    Returns y and, per element, the mean and variance of its group.
    """
    y = np.zeros(x.shape)
    mean_at, var_at = np.zeros(x.shape), np.zeros(x.shape)
    for mean, var, members in group_stats(x, key).values():
        for i in members:
            y[i] = scale[i] * (x[i] - mean) / math.sqrt(var + eps) + bias[i]
            mean_at[i], var_at[i] = mean, var
    return y, mean_at, var_at


def normalize_backward(x, scale, key, eps, dy, dmean=None, dvar=None):
    """Gradients of sum(dy * y) + sum_g dmean_g * mean_g + sum_g dvar_g * var_g.

    `dmean`/`dvar` map a group key to its cotangent. Uses the explicit Jacobian
    d xhat_j / d x_i = s (delta_ij - 1/m) - s xhat_i xhat_j / m, s = 1/sqrt(var + eps).
    Returns (dx, dscale, dbias) elementwise (shaped like x; sum them to the
    parameter shapes).
    """
    dx = np.zeros(x.shape)
    dscale = np.zeros(x.shape)
    dbias = np.zeros(x.shape)
    for g, (mean, var, members) in group_stats(x, key).items():
        m = len(members)
        s = 1.0 / math.sqrt(var + eps)
        xhat = {i: (x[i] - mean) * s for i in members}
        for i in members:
            total = 0.0
            for j in members:
                delta = 1.0 if i == j else 0.0
                jac = s * (delta - 1.0 / m) - s * xhat[i] * xhat[j] / m
                total += dy[j] * scale[j] * jac
            if dmean is not None:
                total += dmean[g] / m
            if dvar is not None:
                total += dvar[g] * 2.0 * (x[i] - mean) / m
            dx[i] = total
            dscale[i] = dy[i] * xhat[i]
            dbias[i] = dy[i]
    return dx, dscale, dbias


def affine_normalize_forward(x, mean, var, scale, bias, eps):
    """Evaluation-mode normalization with given statistics (all shaped like x)."""
    y = np.zeros(x.shape)
    for i in np.ndindex(*x.shape):
        y[i] = scale[i] * (x[i] - mean[i]) / math.sqrt(var[i] + eps) + bias[i]
    return y


def affine_normalize_backward(x, mean, var, scale, eps, dy):
    """Elementwise partial derivatives times dy: (dx, dmean, dvar, dscale, dbias)."""
    outs = [np.zeros(x.shape) for _ in range(5)]
    for i in np.ndindex(*x.shape):
        s = (var[i] + eps) ** -0.5
        outs[0][i] = dy[i] * scale[i] * s
        outs[1][i] = -dy[i] * scale[i] * s
        outs[2][i] = dy[i] * scale[i] * (x[i] - mean[i]) * (-0.5) * (var[i] + eps) ** -1.5
        outs[3][i] = dy[i] * (x[i] - mean[i]) * s
        outs[4][i] = dy[i]
    return tuple(outs)


def _neighbours(c, channels, radius):
    return range(max(0, c - radius), min(channels - 1, c + radius) + 1)


def lrn_forward(x, radius, k, alpha, beta):
    """b_c = a_c / (k + alpha * sum_{|j - c| <= radius} a_j^2)^beta along the last axis."""
    y = np.zeros(x.shape)
    channels = x.shape[-1]
    for idx in np.ndindex(*x.shape[:-1]):
        for c in range(channels):
            total = sum(float(x[idx + (j,)]) ** 2 for j in _neighbours(c, channels, radius))
            y[idx + (c,)] = x[idx + (c,)] / (k + alpha * total) ** beta
    return y


def lrn_backward(x, radius, k, alpha, beta, dy):
    """da_j = sum_c dy_c * d b_c / d a_j with the explicit derivative.

    d b_c / d a_j = delta_cj d_c^(-beta) - 2 alpha beta a_c a_j d_c^(-beta - 1)
    for j within the radius of c.
    """
    dx = np.zeros(x.shape)
    channels = x.shape[-1]
    for idx in np.ndindex(*x.shape[:-1]):
        a = [float(x[idx + (c,)]) for c in range(channels)]
        d = [k + alpha * sum(a[j] ** 2 for j in _neighbours(c, channels, radius))
             for c in range(channels)]
        for j in range(channels):
            total = 0.0
            for c in range(channels):
                if abs(c - j) > radius:
                    continue
                deriv = -2.0 * alpha * beta * a[c] * a[j] * d[c] ** (-beta - 1)
                if c == j:
                    deriv += d[c] ** -beta
                total += dy[idx + (c,)] * deriv
            dx[idx + (j,)] = total
    return dx


def weight_norm_forward(v, g):
    """w[..., o] = g[o] * v[..., o] / ||v[..., o]||, one norm per output unit (last axis)."""
    w = np.zeros(v.shape)
    for o in range(v.shape[-1]):
        norm = math.sqrt(sum(float(v[i + (o,)]) ** 2 for i in np.ndindex(*v.shape[:-1])))
        for i in np.ndindex(*v.shape[:-1]):
            w[i + (o,)] = g[o] * v[i + (o,)] / norm
    return w


def weight_norm_backward(v, g, dw):
    """(dv, dg) from the explicit Jacobian dw_k/dv_l = g (delta_kl / n - v_k v_l / n^3)."""
    dv = np.zeros(v.shape)
    dg = np.zeros(g.shape)
    for o in range(v.shape[-1]):
        cells = [i + (o,) for i in np.ndindex(*v.shape[:-1])]
        norm = math.sqrt(sum(float(v[c]) ** 2 for c in cells))
        for l_ in cells:
            total = 0.0
            for k_ in cells:
                delta = 1.0 if k_ == l_ else 0.0
                total += dw[k_] * g[o] * (delta / norm - v[k_] * v[l_] / norm**3)
            dv[l_] = total
        dg[o] = sum(dw[c] * v[c] / norm for c in cells)
    return dv, dg
