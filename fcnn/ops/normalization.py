"""Normalization: standardise over a set of axes, then scale and shift; weight norm.

One op, `normalize`, serves batch, layer, instance and group normalization: they
differ only in the axes reduced (Ioffe & Szegedy, 2015; Ba et al., 2016; Ulyanov et
al., 2016; Wu & He, 2018). With m the number of values reduced per statistic,

    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),
    y = gamma * xhat + beta,

and the hand-derived backward is the closed-form three-term formula

    dxhat = dy * gamma
    dx    = (1/m) * inv_std * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
    dgamma = sum(dy * xhat),   dbeta = sum(dy)

(sums over the reduced axes; derivation in docs/derivations/normalization.md).
`normalize_with_stats` is the evaluation-time form with given statistics, and
`weight_normalize` is the weight-norm reparameterisation w = g * v / ||v||.

Parameters and statistics are "broadcast shaped": any shape that broadcasts to x
under NumPy rules, e.g. (C,) for channels-last or (1, 1, 1, C). They are reshaped
explicitly (never by implicit rank promotion) and their gradients come back in the
shape they were given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fcnn import _checks
from fcnn.ops.hand_rule import hand_rule

__all__ = ["check_epsilon", "normalize", "normalize_with_stats", "weight_normalize"]


EPSILON_HINT = "(it keeps 1/sqrt(var + epsilon) finite when a variance is 0); a usual value is 1e-5"


def check_epsilon(epsilon) -> float:
    """Returns `epsilon` as a float after checking it is a finite number > 0."""
    return _checks.check_number(epsilon, "epsilon", low=0.0, low_open=True, hint=EPSILON_HINT)


def axes_tuple(axes, name: str = "axes", *, none_ok: bool = False) -> tuple[int, ...]:
    """An int or a non-empty sequence of ints as a tuple, before the rank is known.

    The part of `canonical_axes` a layer runs when it is built.
    """
    if _checks.is_int(axes):
        return (int(axes),)
    if not isinstance(axes, Sequence) or isinstance(axes, str) or not all(
        _checks.is_int(a) for a in axes
    ):
        expected = "None, an int or a tuple of ints" if none_ok else "an int or a tuple of ints"
        raise TypeError(f"{name}={axes!r}: expected {expected}")
    if not axes:
        raise ValueError(f"{name}={axes!r}: expected at least one axis to normalize over")
    return tuple(int(a) for a in axes)


def canonical_axes(axes, ndim: int, name: str = "axes") -> tuple[int, ...]:
    """Normalises an int-or-sequence of axes to sorted non-negative ints, checked."""
    out = []
    for a in axes_tuple(axes, name):
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{name}={axes!r}: axis {a} is out of range for an input of rank {ndim} "
                f"(valid axes are {-ndim}..{ndim - 1})"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={axes!r}: repeated axis")
    return tuple(sorted(out))


def _broadcast_shaped(p, x, name: str):
    """Reshapes `p` to the rank of `x` (leading 1s) after checking it broadcasts."""
    p = jnp.asarray(p)
    if p.ndim > x.ndim:
        raise ValueError(
            f"{name} has shape {p.shape}: rank {p.ndim} is larger than the input's "
            f"rank {x.ndim} (input shape {x.shape})"
        )
    shape = (1,) * (x.ndim - p.ndim) + p.shape
    for ps, xs in zip(shape, x.shape):
        if ps not in (1, xs):
            raise ValueError(
                f"{name} has shape {p.shape}: it does not broadcast to the input shape "
                f"{x.shape}; expected each dimension to be 1 or the input's"
            )
    return p.reshape(shape)


def _sum_to(g, shape):
    """Sums `g` over the axes where `shape` (same rank) has size 1: the adjoint of broadcasting."""
    axes = tuple(d for d, (n, s) in enumerate(zip(g.shape, shape)) if s == 1 and n != 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


AXIS_NAME_UNBOUND = (
    "{who}: axis_name={axis_name!r} is not bound: call it inside "
    "jax.vmap(..., axis_name={axis_name!r}) (or pmap/shard_map over that axis), or "
    "leave axis_name None"
)


def axis_name_size(axis_name, who: str) -> int:
    """The number of devices (or mapped entries) along `axis_name`, 1 for None;
    a clear ValueError when the name is not bound by an enclosing map."""
    if axis_name is None:
        return 1
    try:
        return lax.axis_size(axis_name)
    except NameError:
        raise ValueError(AXIS_NAME_UNBOUND.format(who=who, axis_name=axis_name)) from None


def _mean_over(t, axes, axis_name):
    """Mean over `axes`, and across the devices of `axis_name` when given."""
    t = jnp.mean(t, axis=axes, keepdims=True)
    return t if axis_name is None else lax.pmean(t, axis_name)


# ---- normalize: batch statistics over `axes` ------------------------------------


def _normalize_forward(x, scale, bias, axes, epsilon, axis_name):
    # The mean is taken of x - s, s the first value of each group (a constant, so the
    # gradient is unchanged). A plain sum of many values far from 0 rounds, and
    # 1/sqrt(var + eps) amplifies the error: float32 copies of 10000.3 came out as
    # +-1 instead of the bias. With the shift, equal values have exactly mean s and
    # variance 0.
    first = tuple(1 if d in axes else n for d, n in enumerate(x.shape))
    shift = lax.stop_gradient(lax.slice(x, (0,) * x.ndim, first))
    mean = _mean_over(x - shift, axes, axis_name) + (
        shift if axis_name is None else lax.pmean(shift, axis_name)
    )
    # Two passes (mean, then mean of squared deviations) avoid the cancellation of
    # E[x^2] - E[x]^2.
    var = _mean_over(jnp.square(x - mean), axes, axis_name)
    inv_std = lax.rsqrt(var + jnp.asarray(epsilon, x.dtype))
    xhat = (x - mean) * inv_std
    return (xhat * scale + bias, mean, var), (xhat, inv_std, scale, bias)


def _normalize_plain(x, scale, bias, axes, epsilon, axis_name):
    return _normalize_forward(x, scale, bias, axes, epsilon, axis_name)[0]


def _normalize_bwd(axes, epsilon, axis_name, res, cotangents):
    del epsilon
    xhat, inv_std, scale, bias = res
    dy, dmean, dvar = cotangents
    m = math.prod(xhat.shape[a] for a in axes)  # values per statistic on this device
    dbias = _sum_to(dy, bias.shape)
    dscale = _sum_to(dy * xhat, scale.shape)
    dxhat = dy * scale
    # Three-term formula; the means run over all devices of `axis_name`, so the
    # (1/m) * sum(...) terms are global.
    dx = inv_std * (
        dxhat
        - _mean_over(dxhat, axes, axis_name)
        - xhat * _mean_over(dxhat * xhat, axes, axis_name)
    )
    # The returned statistics are outputs too: d mean / dx_i = 1/M and
    # d var / dx_i = 2 (x_i - mu) / M over the M values of all devices; summing the
    # cotangents of every device gives the pmean below, divided by the local m.
    if axis_name is not None and _varies(xhat, axis_name):
        # Inside shard_map values are typed by the devices they vary over. The
        # statistics are typed as the same on every device, so their cotangents arrive
        # already summed over the devices (autodiff's transpose of the implicit
        # broadcast): the mean divides the sum by D. An input the same on every device
        # (a replicated scale or bias) needs such a cotangent too: the sum of the
        # devices' ones, as autodiff gives.
        devices = axis_name_size(axis_name, "normalize")
        dmean, dvar = dmean / devices, dvar / devices
        dscale, dbias = (lax.psum(c, axis_name) if _varies(c, axis_name) and not _varies(p, axis_name)
                         else c for c, p in ((dscale, scale), (dbias, bias)))
    elif axis_name is not None:  # vmap, pmap: every value is per device
        dmean, dvar = lax.pmean(dmean, axis_name), lax.pmean(dvar, axis_name)
    dx = dx + (dmean + 2.0 * dvar * xhat / inv_std) / m
    return dx, dscale, dbias


def _varies(t, axis_name) -> bool:
    """True when t's type says it differs between the devices of `axis_name`: inside
    `shard_map`, which types every value by the mesh axes it varies over. Under vmap
    and pmap no value carries such a type, and this is False."""
    aval = jax.typeof(t) if hasattr(jax, "typeof") else jax.core.get_aval(t)
    manual = getattr(aval, "manual_axis_type", None)
    varying = manual.varying if manual is not None else getattr(aval, "vma", frozenset())
    names = axis_name if isinstance(axis_name, (tuple, list)) else (axis_name,)
    return any(name in varying for name in names)


NORMALIZE = hand_rule("normalize", _normalize_plain, _normalize_forward, _normalize_bwd,
                      nondiff_argnums=(3, 4, 5))


def _prepare(x, params, names):
    """Casts to one float dtype (>= float32 for the statistics) and broadcast shapes."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x has dtype {x.dtype}: expected a floating-point array")
    out_dtype = jnp.result_type(x, *params)
    dtype = jnp.promote_types(out_dtype, jnp.float32)
    params = [_broadcast_shaped(p, x, n).astype(dtype) for p, n in zip(params, names)]
    return x.astype(dtype), params, out_dtype


def normalize(
    x,
    scale=None,
    bias=None,
    *,
    axes,
    epsilon: float = 1e-5,
    axis_name=None,
    backward: str = "custom",
):
    """Standardises `x` over `axes`, then scales and shifts; returns (y, mean, var).

    Shapes: x (any rank); scale and bias broadcast to x (e.g. (C,)), None means 1
    and 0; y like x; mean and var keep x's rank with size 1 on `axes` (the batch
    statistics, var biased: divided by m).

        y = scale * (x - mean) / sqrt(var + epsilon) + bias
        dx = (1/m) inv_std (m dxhat - sum(dxhat) - xhat sum(dxhat xhat)),  dxhat = dy scale

    With `axis_name` (inside `jax.vmap`/`pmap`/`shard_map` over that axis) the
    statistics are averaged across the devices of the axis with `lax.pmean`, and so
    are the sums of the backward; every device must hold the same number of values.
    Gradients of scale and bias stay per device (reduce them as the other
    gradients), except inside `shard_map` for a scale or bias that is the same on
    every device (replicated): that one gets the sum over the devices, as autodiff
    gives it. Statistics are computed in float32 or wider.
    """
    _checks.check_backward(backward)
    epsilon = check_epsilon(epsilon)
    axis_name_size(axis_name, "normalize")
    x = jnp.asarray(x)
    axes = canonical_axes(axes, x.ndim)
    scale = jnp.ones((), jnp.result_type(x)) if scale is None else scale
    bias = jnp.zeros((), jnp.result_type(x)) if bias is None else bias
    x, (scale, bias), out_dtype = _prepare(x, (scale, bias), ("scale", "bias"))
    y, mean, var = NORMALIZE.select(backward)(x, scale, bias, axes, epsilon, axis_name)
    return y.astype(out_dtype), mean, var


# ---- normalize_with_stats: given (running) statistics ---------------------------


def _with_stats_forward(x, mean, var, scale, bias, epsilon):
    inv_std = lax.rsqrt(var + jnp.asarray(epsilon, x.dtype))
    xhat = (x - mean) * inv_std
    return xhat * scale + bias, (xhat, inv_std, mean, var, scale, bias)


def _with_stats_plain(x, mean, var, scale, bias, epsilon):
    return _with_stats_forward(x, mean, var, scale, bias, epsilon)[0]


def _with_stats_bwd(epsilon, res, dy):
    del epsilon
    xhat, inv_std, mean, var, scale, bias = res
    g = dy * scale * inv_std  # dy/dx: the statistics are constants of x here
    return (
        g,
        _sum_to(-g, mean.shape),
        # d/dvar (var + eps)^(-1/2) = -(1/2) (var + eps)^(-3/2)
        _sum_to(-0.5 * g * xhat * inv_std, var.shape),
        _sum_to(dy * xhat, scale.shape),
        _sum_to(dy, bias.shape),
    )


WITH_STATS = hand_rule("normalize_with_stats", _with_stats_plain, _with_stats_forward,
                       _with_stats_bwd, nondiff_argnums=(5,))


def normalize_with_stats(
    x, mean, var, scale=None, bias=None, *, epsilon: float = 1e-5, backward: str = "custom"
):
    """Normalizes `x` with given statistics (batch norm in evaluation): an affine map.

    Shapes: x (any rank); mean, var, scale, bias broadcast to x (e.g. (C,)); y like x.

        y = scale * (x - mean) / sqrt(var + epsilon) + bias
        dx = dy * scale / sqrt(var + epsilon)

    Each example's output depends on that example only.
    """
    _checks.check_backward(backward)
    epsilon = check_epsilon(epsilon)
    x = jnp.asarray(x)
    scale = jnp.ones((), jnp.result_type(x)) if scale is None else scale
    bias = jnp.zeros((), jnp.result_type(x)) if bias is None else bias
    x, (mean, var, scale, bias), out_dtype = _prepare(
        x, (mean, var, scale, bias), ("mean", "var", "scale", "bias")
    )
    y = WITH_STATS.select(backward)(x, mean, var, scale, bias, epsilon)
    return y.astype(out_dtype)


# ---- weight_normalize: w = g * v / ||v|| ----------------------------------------


def _weight_norm_forward(v, g, axes):
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))
    return g * v / norm, (v, g, norm)


def _weight_norm_plain(v, g, axes):
    return _weight_norm_forward(v, g, axes)[0]


def _weight_norm_bwd(axes, res, dw):
    v, g, norm = res
    # dg = dw . v / ||v||;  dv = (g / ||v||) (dw - (dg / ||v||) v): the gradient of w
    # with its component along v removed, scaled by g / ||v||.
    dg_full = jnp.sum(dw * v, axis=axes, keepdims=True) / norm
    dv = (g / norm) * (dw - dg_full * v / norm)
    return _sum_to(dv, v.shape), _sum_to(dg_full, g.shape)


WEIGHT_NORM = hand_rule("weight_normalize", _weight_norm_plain, _weight_norm_forward,
                        _weight_norm_bwd, nondiff_argnums=(2,))


def weight_normalize(v, g, *, axes=None, backward: str = "custom"):
    """Weight normalization w = g * v / ||v|| (Salimans & Kingma, 2016).

    Shapes: v a kernel, (in, out) or HWIO (*window, in, out); the norm runs over
    `axes` (default: every axis but the last, i.e. one norm per output unit); g
    broadcasts to the norms, e.g. (out,). Returns w like v.

        dg = sum(dw * v) / ||v||
        dv = (g / ||v||) * (dw - dg * v / ||v||)

    ||v|| must not be 0.
    """
    _checks.check_backward(backward)
    v = jnp.asarray(v)
    axes = tuple(range(v.ndim - 1)) if axes is None else canonical_axes(axes, v.ndim)
    g_shape = jnp.shape(g)
    dtype = jnp.result_type(v, g)
    v = v.astype(dtype)
    g = _broadcast_shaped(g, v, "g").astype(dtype)
    for d, n in enumerate(g.shape):
        if d in axes and n != 1:
            raise ValueError(
                f"g has shape {g_shape}: it must have size 1 along the normalized axes "
                f"{axes} of v (shape {v.shape}); one g per output unit is shape "
                f"({v.shape[-1]},)"
            )
    return WEIGHT_NORM.select(backward)(v, g, axes)

