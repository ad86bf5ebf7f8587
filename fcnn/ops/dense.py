"""Fully-connected (dense) op with a hand-written backward rule.

Derivation and a small numeric example: docs/derivations/pooling_dense.md, section
"Dense".
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.ops.hand_rule import hand_rule

__all__ = ["dense"]


def _matmul(x, kernel):
    """(..., in) x (in, out) -> (..., out)."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _add_bias(y, bias):
    # Explicit broadcast: the library does not rely on implicit rank promotion.
    return y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)


def _forward(x, kernel, bias):
    y = _matmul(x, kernel)
    return y if bias is None else _add_bias(y, bias)


def _dense_fwd(x, kernel, bias):
    return _forward(x, kernel, bias), (x, kernel, bias)


def _dense_bwd(residuals, g):
    # y = x W + b  =>  dx = g W^T,  dW = x^T g,  db = sum of g over leading axes,
    # with x and g flattened to (M, in) and (M, out) over all leading axes.
    x, kernel, bias = residuals
    lead = tuple(range(x.ndim - 1))
    dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
    dkernel = lax.dot_general(x, g, ((lead, lead), ((), ())))
    dbias = None if bias is None else jnp.sum(g, axis=lead).astype(bias.dtype)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype), dbias


DENSE = hand_rule("dense", _forward, _dense_fwd, _dense_bwd)


def dense(x, kernel, bias=None, *, backward="custom"):
    """Fully-connected layer: y = x W + b.

    Shapes: x (..., in), kernel W (in, out), bias b (out,) or None -> y (..., out).
    Any leading axes are batch axes.

    Backward: dx = dy W^T;  dW = x^T dy and db = sum dy, both summed over every
    leading axis of x.

    Reference: docs/derivations/pooling_dense.md, section "Dense".
    """
    _checks.check_backward(backward)
    x_shape, k_shape = np.shape(x), np.shape(kernel)
    if len(k_shape) != 2:
        raise ValueError(
            f"dense: kernel has shape {k_shape}: expected rank 2, (in_features, out_features)"
        )
    if len(x_shape) < 1:
        raise ValueError("dense: x is a scalar: expected shape (..., in_features)")
    if x_shape[-1] != k_shape[0]:
        raise ValueError(
            f"dense: x has {x_shape[-1]} input features (shape {x_shape}) but the kernel "
            f"expects {k_shape[0]} (kernel shape {k_shape}, (in_features, out_features))"
        )
    if bias is not None and np.shape(bias) != (k_shape[1],):
        raise ValueError(
            f"dense: bias has shape {np.shape(bias)}: expected ({k_shape[1]},), one entry "
            "per output feature"
        )
    dtype = jnp.result_type(x, kernel, *(() if bias is None else (bias,)))
    x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
    bias = None if bias is None else jnp.asarray(bias, dtype)
    return DENSE.select(backward)(x, kernel, bias)
