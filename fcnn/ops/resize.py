"""Upsampling by integer factors, nearest or (bi)linear, with backward rules by hand.

x is (N, *S, C), channels last, 1-3 spatial dimensions; every spatial size W becomes
W * s for its integer factor s. Both methods are separable: one spatial axis at a
time, the same 1-D rule.

"nearest": y[o] = x[floor(o / s)], each cell copied s times (PyTorch's "nearest" and
TensorFlow's for integer factors). Backward: dx[i] = sum_{r < s} dy[i*s + r], the sum
of the output gradient over the cell's copies.

"bilinear" (align_corners=False, the half-pixel convention of PyTorch and of
TensorFlow 2's `tf.image.resize`): output cell o sits at the source coordinate

    u = max((o + 0.5) / s - 0.5, 0),   i0 = floor(u),   i1 = min(i0 + 1, W - 1),
    l = u - i0,   y[o] = (1 - l) x[i0] + l x[i1],

linear along each axis in turn, so bilinear in 2-D (and trilinear in 3-D, plain linear
in 1-D: PyTorch's "linear"/"trilinear"). Written as a matrix, y = A x with
A[o, i0] = 1 - l, A[o, i1] += l. Backward: the transpose of the interpolation weights,
dx = A^T dy, i.e. dx[i] = sum_o A[o, i] dy[o]: each output gradient is split between
its two source cells in the weights it was interpolated with.

Derivations and worked numbers: docs/derivations/more_layers.md, "Upsampling".
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import _checks
from fcnn.ops.hand_rule import hand_rule

__all__ = ["METHODS", "check_method", "linear_weights", "upsample", "upsample_output_shape"]

METHODS = ("nearest", "bilinear")
RANKS = (3, 4, 5)


def check_method(method) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    return method


def upsample_output_shape(input_shape, scale, *, name: str = "upsample"):
    """(N, *(W * s), C) for an input of `input_shape` (the batch may be -1)."""
    input_shape = tuple(input_shape)
    _checks.check_rank(input_shape, RANKS, "input_shape", name)
    scale = _checks.spatial_tuple(scale, len(input_shape) - 2, "scale")
    return (input_shape[0], *(w * s for w, s in zip(input_shape[1:-1], scale)), input_shape[-1])


def linear_weights(size: int, scale: int):
    """(i0, i1, l) for the W * s outputs of the half-pixel linear rule, as NumPy arrays."""
    o = np.arange(size * scale)
    u = np.maximum((o + 0.5) / scale - 0.5, 0.0)
    i0 = np.floor(u).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, u - i0


# ----------------------------------------------------------------------------------
# One axis


def _along(v, axis: int, ndim: int):
    """A 1-D NumPy vector shaped to broadcast along `axis` of a rank-`ndim` array."""
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def _nearest_axis(x, axis: int, s: int):
    """y[o] = x[o // s]: a new axis of length s after `axis`, broadcast and merged."""
    shape = x.shape
    y = jnp.broadcast_to(jnp.expand_dims(x, axis + 1), shape[: axis + 1] + (s,) + shape[axis + 1:])
    return y.reshape(shape[:axis] + (shape[axis] * s,) + shape[axis + 1:])


def _nearest_axis_adjoint(g, axis: int, s: int):
    """dx[i] = sum_{r < s} g[i*s + r]: split the axis into (W, s), sum the copies."""
    shape = g.shape
    g = g.reshape(shape[:axis] + (shape[axis] // s, s) + shape[axis + 1:])
    return jnp.sum(g, axis=axis + 1)


def _linear_axis(x, axis: int, s: int):
    """y[o] = (1 - l[o]) x[i0[o]] + l[o] x[i1[o]] along `axis` (two gathers)."""
    i0, i1, l = linear_weights(x.shape[axis], s)
    l = _along(l.astype(x.dtype), axis, x.ndim)
    return jnp.take(x, i0, axis=axis) * (1 - l) + jnp.take(x, i1, axis=axis) * l


def _linear_axis_adjoint(g, axis: int, s: int):
    """dx = A^T g: each g[o] goes back to i0[o] with weight 1 - l[o] and to i1[o]
    with weight l[o] (a sorted segment sum over the output positions)."""
    size = g.shape[axis] // s
    i0, i1, l = linear_weights(size, s)
    g_first = jnp.moveaxis(g, axis, 0)
    l = _along(l.astype(g.dtype), 0, g.ndim)
    dx = (jax.ops.segment_sum(g_first * (1 - l), i0, size, indices_are_sorted=True)
          + jax.ops.segment_sum(g_first * l, i1, size, indices_are_sorted=True))
    return jnp.moveaxis(dx, 0, axis)


_AXIS_RULES = {
    "nearest": (_nearest_axis, _nearest_axis_adjoint),
    "bilinear": (_linear_axis, _linear_axis_adjoint),
}


# ----------------------------------------------------------------------------------
# The op: forward, residuals and backward side by side. Forward and backward are jitted
# on their static arguments: called eagerly, each is one compiled computation.


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(scale, method, x):
    step, _ = _AXIS_RULES[method]
    for d, s in enumerate(scale):
        if s != 1:
            x = step(x, 1 + d, s)
    return x


def _fwd(scale, method, x):
    return _forward(scale, method, x), None


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bwd(scale, method, residuals, g):
    """dx = the adjoint of each axis's interpolation, axes in reverse order."""
    del residuals
    _, adjoint = _AXIS_RULES[method]
    for d in reversed(range(len(scale))):
        if scale[d] != 1:
            g = adjoint(g, 1 + d, scale[d])
    return (g,)


UPSAMPLE = hand_rule("upsample", _forward, _fwd, _bwd, nondiff_argnums=(0, 1))


def upsample(x, scale, method: str = "nearest", backward: str = "custom"):
    """Upsamples the spatial axes of x (N, *S, C) by integer factors.

    `scale`: a positive int (every spatial dimension) or one per spatial dimension;
    returns (N, *(W * s), C). `method`: "nearest" (each cell copied s times) or
    "bilinear" (half-pixel centres, align_corners=False, as PyTorch and TensorFlow 2;
    linear along each spatial axis, so linear in 1-D and trilinear in 3-D).

    Backward (module docstring): nearest sums dy over each cell's copies; bilinear
    applies the transposed interpolation weights, dx = A^T dy. `backward="custom"`
    runs the hand rule, "autodiff" differentiates the same forward with JAX.
    """
    _checks.check_backward(backward)
    method = check_method(method)
    shape = np.shape(x)
    _checks.check_rank(shape, RANKS, "x", "upsample")
    scale = _checks.spatial_tuple(scale, len(shape) - 2, "scale")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return UPSAMPLE.select(backward)(scale, method, x)
