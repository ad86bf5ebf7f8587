"""Local response normalization across channels (Krizhevsky et al., 2012).

With r the depth radius (window size n = 2r + 1) and channels clipped at the edges,

    d_i = k + alpha' * sum_{j = max(0, i - r)}^{min(C - 1, i + r)} a_j^2
    b_i = a_i * d_i^(-beta)

where alpha' = alpha (AlexNet paper, TensorFlow) or alpha' = alpha / n
(`alpha_over_n=True`: Caffe and PyTorch, which divide by the full window size n even
at the edges). The neighbourhood is symmetric (j is a neighbour of i iff i is one of
j), so the hand-derived backward is

    da_j = g_j * d_j^(-beta) - 2 alpha' beta a_j * sum_{i in N(j)} g_i b_i / d_i.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.ops.hand_rule import hand_rule

__all__ = ["lrn", "lrn_config"]


def lrn_config(size=None, depth_radius=None, k=2.0, alpha=1e-4, beta=0.75, alpha_over_n=False):
    """Validates LRN's hyper-parameters; returns (depth_radius, k, alpha', beta).

    Give the window as `size` (n, odd) or `depth_radius` (r, n = 2r + 1), not both
    unless they agree; neither means n = 5. alpha' is alpha, or alpha / n when
    `alpha_over_n`.
    """
    if size is not None:
        size = _checks.positive_int(size, "size")
        if size % 2 == 0:
            raise ValueError(
                f"size={size}: expected an odd window size n = 2 * depth_radius + 1 "
                "(the window is centred on each channel)"
            )
    if depth_radius is not None:
        depth_radius = _checks.check_int(depth_radius, "depth_radius", low=0)
        if size is not None and size != 2 * depth_radius + 1:
            raise ValueError(
                f"size={size} and depth_radius={depth_radius} disagree: size must be "
                "2 * depth_radius + 1; give only one of them"
            )
    if depth_radius is None:
        depth_radius = (5 if size is None else size) // 2
    alpha_over_n = _checks.check_bool(alpha_over_n, "alpha_over_n")
    k = _checks.check_number(k, "k", low=0.0, low_open=True)
    alpha = _checks.check_number(alpha, "alpha", low=0.0)
    beta = _checks.check_number(beta, "beta")
    if alpha_over_n:
        alpha = alpha / (2 * depth_radius + 1)
    return depth_radius, k, alpha, beta


def _window_sum(t, radius: int, axis: int):
    """Sum over the 2r + 1 neighbours along `axis`, zeros beyond the edges."""
    if radius == 0:
        return t
    window = [1] * t.ndim
    window[axis] = 2 * radius + 1
    pads = [(0, 0)] * t.ndim
    pads[axis] = (radius, radius)
    # A concrete (NumPy) zero lets lax pick its differentiable windowed-sum primitive.
    return lax.reduce_window(t, np.zeros((), t.dtype), lax.add, window, (1,) * t.ndim, pads)


def _lrn_forward(x, radius, k, alpha, beta, axis):
    d = k + alpha * _window_sum(jnp.square(x), radius, axis)
    s = jnp.power(d, -beta)
    return x * s, (x, d, s)


def _lrn_plain(x, radius, k, alpha, beta, axis):
    return _lrn_forward(x, radius, k, alpha, beta, axis)[0]


def _lrn_bwd(radius, k, alpha, beta, axis, res, g):
    del k
    x, d, s = res
    # b_i / d_i = a_i * d_i^(-beta - 1)
    return (g * s - 2.0 * alpha * beta * x * _window_sum(g * x * s / d, radius, axis),)


LRN = hand_rule("lrn", _lrn_plain, _lrn_forward, _lrn_bwd, nondiff_argnums=(1, 2, 3, 4, 5))


def lrn(
    x,
    *,
    size=None,
    depth_radius=None,
    k=2.0,
    alpha=1e-4,
    beta=0.75,
    alpha_over_n: bool = False,
    axis: int = -1,
    backward: str = "custom",
):
    """Local response normalization across channels: b = a / (k + alpha' sum a^2)^beta.

    Shapes: x (N, *spatial, C) (any rank; normalized along `axis`, channels last by
    default); returns b like x. Defaults are AlexNet's: n = 5 (depth radius 2),
    k = 2, alpha = 1e-4, beta = 0.75, and alpha is NOT divided by n (as in the paper
    and TensorFlow); `alpha_over_n=True` uses alpha / n (Caffe, PyTorch).

        b_i = a_i d_i^(-beta),  d_i = k + alpha' sum_{|j - i| <= r} a_j^2
        da_j = g_j d_j^(-beta) - 2 alpha' beta a_j sum_{|i - j| <= r} g_i b_i / d_i
    """
    _checks.check_backward(backward)
    radius, k, alpha, beta = lrn_config(size, depth_radius, k, alpha, beta, alpha_over_n)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x has dtype {x.dtype}: expected a floating-point array")
    axis = _checks.check_axis(axis, x.ndim, shape=x.shape)
    return LRN.select(backward)(x, radius, k, alpha, beta, axis)
