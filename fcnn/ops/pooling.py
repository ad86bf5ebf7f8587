"""Max, average and global average pooling with hand-written backward rules.

Layout is channels-last, x of shape (N, *S, C) with 1, 2 or 3 spatial dimensions.
Max and average pooling are one op taking the reducer (`kind`): they share the
argument checks, the two forward paths and the window walk of the backward.

Two paths give identical results:

* fast (non-overlapping windows, window == strides, any padding): pad or crop x to
  exactly `out * window` cells per spatial dimension, reshape to blocks
  (N, o1, w1, o2, w2, ..., C) and reduce over the w axes; the average backward
  broadcasts over the same blocks. This avoids XLA's generic `reduce_window`, whose
  autodiff (select-and-scatter) is several times slower on CPU.
* general (overlapping or strided windows): `lax.reduce_window` forward; the backward
  walks the window offsets k in row-major order and sends each output gradient to
  the cells x[o * s + k - pad_low], with strided slices and interior padding.

Max pooling decides where each gradient goes in the forward pass: it keeps the
row-major index of every window's first maximum (int8), and the backward routes the
gradient to that cell without comparing floats again. The index comes from walking
the window offsets for windows of up to `_MAX_WALK` cells (on CPU faster than a mask
on the blocks layout); larger disjoint windows use one argmax on the blocks layout,
so the graph does not grow with the window.

Tie rule (max): when several cells of a window hold the maximum, the first one in
row-major window order receives the whole gradient. This is what XLA's
select-and-scatter does for `reduce_window` max, so the hand rule agrees with autodiff
of the general path; autodiff of the fast path (a reshape followed by `max`) instead
splits the gradient evenly among tied cells.

Padding: max pooling pads with -inf, so padded cells never win. Average pooling pads
with zeros; the divisor counts the padded cells only when `count_include_pad=True`,
otherwise it is the number of real cells in the window (as in PyTorch's
`count_include_pad=False`), and the backward spreads the gradient over exactly the
cells counted in the divisor. A padding that leaves a window with no real cell is
rejected.

Derivations and a worked example: docs/derivations/pooling_dense.md.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.ops.hand_rule import hand_rule

__all__ = ["avg_pool", "global_avg_pool", "max_pool", "pool", "pool_output_shape"]

_KINDS = ("max", "avg")
# Windows of up to this many cells find and route the max by walking the window
# offsets (unrolled; on CPU about 5x faster than a mask for 2x2 windows); larger
# disjoint windows use the blocks layout, whose graph does not grow with the window.
_MAX_WALK = 9


class _PoolConfig(NamedTuple):
    """Static (hashable) description of one pooling call."""

    kind: str  # "max" or "avg"
    in_spatial: tuple[int, ...]
    window: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    out_spatial: tuple[int, ...]
    count_include_pad: bool
    fast: bool


# --------------------------------------------------------------------------- checks


def _check_input(x, name: str):
    """Checks rank and dtype, then returns x as an array."""
    _checks.check_rank(np.shape(x), (3, 4, 5), "x", name)
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: x has dtype {dtype}: expected a floating-point array")
    return jnp.asarray(x)


def _window_counts(cfg: _PoolConfig) -> np.ndarray:
    """Number of real (unpadded) cells in each window, shape `out_spatial`."""
    per_dim = []
    for n, w, s, (lo, _), o in zip(
        cfg.in_spatial, cfg.window, cfg.strides, cfg.pads, cfg.out_spatial
    ):
        starts = np.arange(o) * s - lo
        per_dim.append(np.minimum(starts + w, n) - np.maximum(starts, 0))
    counts = functools.reduce(np.multiply.outer, per_dim)
    return np.asarray(counts)


def _config(x_shape, kind, window_shape, strides, padding, count_include_pad, name, path):
    ndim = len(x_shape) - 2
    in_spatial = tuple(int(d) for d in x_shape[1:-1])
    window = _checks.spatial_tuple(window_shape, ndim, "window_shape")
    strides = window if strides is None else _checks.spatial_tuple(strides, ndim, "strides")
    pads = _checks.padding_pairs(padding, in_spatial, window, strides)
    out = tuple(
        _checks.output_size(n, w, s, p) for n, w, s, p in zip(in_spatial, window, strides, pads)
    )
    _checks.check_output_positive(out, in_spatial, window, strides, pads, name)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(
            f"count_include_pad={count_include_pad!r}: expected True or False"
        )
    if path not in ("auto", "fast", "general"):
        raise ValueError(f"path={path!r}: expected 'auto', 'fast' or 'general'")
    non_overlapping = window == strides
    if path == "fast" and not non_overlapping:
        raise ValueError(
            f"path='fast' needs window_shape == strides, got {window} and {strides}"
        )
    cfg = _PoolConfig(
        kind, in_spatial, window, strides, tuple(pads), out, bool(count_include_pad),
        non_overlapping if path == "auto" else path == "fast",
    )
    if (_window_counts(cfg) <= 0).any():
        raise ValueError(
            f"{name}: padding={padding!r} (resolved to {tuple(pads)}) leaves windows of "
            f"size {window} with no input cell; use at most window - 1 padding per side"
        )
    return cfg


# ---------------------------------------------------------------- shared pieces


def _fill(kind: str, dtype):
    # A concrete NumPy scalar: lax.reduce_window only recognises (and differentiates)
    # the max/add monoids when the init value is a known constant.
    return np.array(-np.inf if kind == "max" else 0, dtype)


def _divisor(cfg: _PoolConfig, dtype, rank: int):
    """Average-pool divisor, broadcastable against (N, *out, C) at equal rank."""
    counts = _window_counts(cfg)
    size = int(np.prod(cfg.window))
    if cfg.count_include_pad or (counts == size).all():  # one number for every window
        return np.full((1,) * rank, size, dtype)
    return np.asarray(counts, dtype).reshape((1, *cfg.out_spatial, 1))


def _block_shape(cfg: _PoolConfig, n: int, c: int):
    return (n, *itertools.chain(*zip(cfg.out_spatial, cfg.window)), c)


def _window_axes(cfg: _PoolConfig):
    return tuple(2 + 2 * d for d in range(len(cfg.window)))


def _to_blocks(x, cfg: _PoolConfig):
    """(N, *S, C) -> (N, o1, w1, o2, w2, ..., C): pad low, pad or crop high, reshape."""
    used = [o * w for o, w in zip(cfg.out_spatial, cfg.window)]
    config = [(0, 0, 0)]
    for n, (lo, _), u in zip(cfg.in_spatial, cfg.pads, used):
        config.append((lo, u - n - lo, 0))  # a negative high pad crops the remainder
    config.append((0, 0, 0))
    x = lax.pad(x, _fill(cfg.kind, x.dtype), config)
    return x.reshape(_block_shape(cfg, x.shape[0], x.shape[-1]))


def _from_blocks(dxb, cfg: _PoolConfig):
    """Inverse of `_to_blocks` for gradients: cropped and padded cells get zero."""
    n, c = dxb.shape[0], dxb.shape[-1]
    used = [o * w for o, w in zip(cfg.out_spatial, cfg.window)]
    dx = dxb.reshape((n, *used, c))
    config = [(0, 0, 0)]
    for size, (lo, _), u in zip(cfg.in_spatial, cfg.pads, used):
        config.append((-lo, size + lo - u, 0))
    config.append((0, 0, 0))
    return lax.pad(dx, _zero(dx.dtype), config)


def _expand_out(y, cfg: _PoolConfig):
    """(N, *out, C) -> (N, o1, 1, o2, 1, ..., C), to broadcast against blocks."""
    shape = (y.shape[0], *itertools.chain(*((o, 1) for o in cfg.out_spatial)), y.shape[-1])
    return y.reshape(shape)


def _window_offsets(cfg: _PoolConfig):
    """Window offsets k in row-major order (this order defines the max tie rule)."""
    return itertools.product(*(range(w) for w in cfg.window))


def _strided_slice(xp, k, cfg: _PoolConfig):
    """The cells xp[:, o * s + k, :] for every output position o: shape (N, *out, C)."""
    start = (0, *k, 0)
    limit = (
        xp.shape[0],
        *(ki + s * (o - 1) + 1 for ki, s, o in zip(k, cfg.strides, cfg.out_spatial)),
        xp.shape[-1],
    )
    return lax.slice(xp, start, limit, (1, *cfg.strides, 1))


def _zero(dtype):
    return np.zeros((), dtype)


def _scatter_windows(contributions, padded_spatial, cfg: _PoolConfig):
    """Transpose of `_strided_slice`: sum over k of contribution k put at o * s + k.

    `contributions` is a list of (k, v), v of shape (N, *out, C). Offsets with the
    same residue r = k mod s land on one sub-lattice of stride s: they are summed on
    the small output grid first (shifted by q = k // s, since o * s + k =
    (o + q) * s + r) and then spread with a single interior pad per residue class.
    """
    groups: dict[tuple[int, ...], list] = {}
    for k, v in contributions:
        r = tuple(ki % s for ki, s in zip(k, cfg.strides))
        q = tuple(ki // s for ki, s in zip(k, cfg.strides))
        groups.setdefault(r, []).append((q, v))
    total = None
    for r, items in groups.items():
        q_max = tuple(max(q[d] for q, _ in items) for d in range(len(r)))
        acc = None
        for q, v in items:
            shift = [(0, 0, 0), *((qd, qm - qd, 0) for qd, qm in zip(q, q_max)), (0, 0, 0)]
            v = lax.pad(v, _zero(v.dtype), shift)
            acc = v if acc is None else acc + v
        spread = [(0, 0, 0)]
        for rd, s, o, qm, p in zip(r, cfg.strides, cfg.out_spatial, q_max, padded_spatial):
            spread.append((rd, p - (rd + s * (o + qm - 1) + 1), s - 1))
        spread.append((0, 0, 0))
        acc = lax.pad(acc, _zero(acc.dtype), spread)
        total = acc if total is None else total + acc
    return total


def _pad_input(x, cfg: _PoolConfig):
    return lax.pad(
        x, _fill(cfg.kind, x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in cfg.pads), (0, 0, 0)]
    )


def _crop_pads(dxp, cfg: _PoolConfig):
    return lax.pad(
        dxp, _zero(dxp.dtype),
        [(0, 0, 0), *((-lo, -hi, 0) for lo, hi in cfg.pads), (0, 0, 0)],
    )


# --------------------------------------------------------------- forward / backward


# Forward and backward are jitted on their static config: called eagerly, each is
# then one compiled computation instead of dozens of op-by-op dispatches; inside an
# outer jit they are inlined.
@functools.partial(jax.jit, static_argnums=1)
def _forward(x, cfg: _PoolConfig):
    """Pooled output (N, *out, C), by blocks (fast) or `lax.reduce_window` (general)."""
    if cfg.fast:
        xb = _to_blocks(x, cfg)
        if cfg.kind == "max":
            return jnp.max(xb, axis=_window_axes(cfg))
        return jnp.sum(xb, axis=_window_axes(cfg)) / _divisor(cfg, x.dtype, x.ndim)
    reducer = lax.max if cfg.kind == "max" else lax.add
    y = lax.reduce_window(
        x, _fill(cfg.kind, x.dtype), reducer,
        (1, *cfg.window, 1), (1, *cfg.strides, 1), ((0, 0), *cfg.pads, (0, 0)),
    )
    if cfg.kind == "max":
        return y
    return y / _divisor(cfg, x.dtype, x.ndim)


def _index_dtype(cfg: _PoolConfig):
    return np.int8 if np.prod(cfg.window) <= np.iinfo(np.int8).max else np.int32


def _argmax_walk(cfg: _PoolConfig, x):
    """Row-major index of the first maximum of every window, shape (N, *out, C).

    Walks the window offsets k keeping the running maximum; a later cell wins only
    when strictly greater, which is the tie rule. (A NaN cell never wins: its
    gradient is then routed to the largest number of the window.)
    """
    xp = _pad_input(x, cfg)
    best, index = None, None
    for i, k in enumerate(_window_offsets(cfg)):
        v = _strided_slice(xp, k, cfg)
        if best is None:
            best, index = v, jnp.zeros(v.shape, _index_dtype(cfg))
            continue
        better = v > best
        best = jnp.where(better, v, best)
        index = jnp.where(better, np.array(i, index.dtype), index)
    return index


def _argmax_blocks(cfg: _PoolConfig, x):
    """The same index for disjoint windows, by one argmax on the blocks layout."""
    xb = _to_blocks(x, cfg)
    ndim = len(cfg.window)
    out_axes = tuple(1 + 2 * d for d in range(ndim))
    xb = jnp.transpose(xb, (0, *out_axes, xb.ndim - 1, *_window_axes(cfg)))
    xb = xb.reshape(xb.shape[: ndim + 2] + (-1,))  # (N, *out, C, prod(window))
    return jnp.argmax(xb, axis=-1).astype(_index_dtype(cfg))  # first maximum on ties


def _argmax(cfg: _PoolConfig, x):
    if cfg.fast and np.prod(cfg.window) > _MAX_WALK:
        return _argmax_blocks(cfg, x)
    return _argmax_walk(cfg, x)


def _route_max(cfg: _PoolConfig, index, g):
    """dx[i] = sum_W g[W] * [i is cell `index[W]` of window W]."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(cfg.in_spatial, cfg.pads))
    if cfg.fast and np.prod(cfg.window) > _MAX_WALK:
        # disjoint windows: one comparison against the window numbering on the blocks
        index_shape = [1] * (2 * len(cfg.window) + 2)
        for axis, w in zip(_window_axes(cfg), cfg.window):
            index_shape[axis] = w
        numbering = jnp.arange(np.prod(cfg.window), dtype=index.dtype).reshape(index_shape)
        hit = numbering == _expand_out(index, cfg)
        return _from_blocks(jnp.where(hit, _expand_out(g, cfg), _zero(g.dtype)), cfg)
    contributions = [
        (k, jnp.where(index == np.array(i, index.dtype), g, _zero(g.dtype)))
        for i, k in enumerate(_window_offsets(cfg))
    ]
    return _crop_pads(_scatter_windows(contributions, padded, cfg), cfg)


def _spread_avg(cfg: _PoolConfig, g):
    """dx[i] = sum over windows W counting i of g[W] / divisor[W]."""
    share = g / _divisor(cfg, g.dtype, g.ndim)
    if cfg.fast:  # disjoint windows: broadcast over the blocks
        blocks = _block_shape(cfg, g.shape[0], g.shape[-1])
        return _from_blocks(jnp.broadcast_to(_expand_out(share, cfg), blocks), cfg)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(cfg.in_spatial, cfg.pads))
    contributions = [(k, share) for k in _window_offsets(cfg)]
    return _crop_pads(_scatter_windows(contributions, padded, cfg), cfg)


# The op: forward, residuals and backward side by side.
#   max: y[W] = max_{i in W} x[i];  dx[i] = sum_W g[W] [i = first argmax of W]
#   avg: y[W] = sum_{i in W} x[i] / divisor[W];  dx[i] = sum_{W contains i} g[W] / divisor[W]


def _pool_fwd(x, cfg: _PoolConfig):
    # Max pooling decides the route here, from the values that made the maximum, and
    # keeps only the small index: comparing x == y again in the backward can fail when
    # the compiler computes x twice (e.g. fused into two consumers) with different
    # rounding, which would drop or duplicate gradients.
    residual = _argmax_jit(cfg, x) if cfg.kind == "max" else None
    return _forward(x, cfg), (residual, jnp.zeros((0,), x.dtype))


def _pool_bwd(cfg: _PoolConfig, residuals, g):
    index, dtype_marker = residuals
    return (_backward(cfg, index, g).astype(dtype_marker.dtype),)


@functools.partial(jax.jit, static_argnums=0)
def _backward(cfg: _PoolConfig, index, g):
    if cfg.kind == "avg":
        return _spread_avg(cfg, g)
    return _route_max(cfg, index, g)


_argmax_jit = jax.jit(_argmax, static_argnums=0)
POOL = hand_rule("pool", _forward, _pool_fwd, _pool_bwd, nondiff_argnums=(1,))


def pool(
    x, kind, window_shape, strides=None, padding="VALID", count_include_pad=False,
    backward="custom", *, path="auto",
):
    """Max or average pooling, one implementation for both reducers.

    `kind` is "max" or "avg". `path` selects the forward/backward formulation:
    "auto" (blocks when window == strides, else `reduce_window`), "fast" or "general";
    every path gives the same result. See `max_pool` and `avg_pool`.
    """
    name = f"{kind}_pool" if kind in _KINDS else "pool"
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {_KINDS}")
    _checks.check_backward(backward)
    padding = _checks.check_padding(padding)
    x = _check_input(x, name)
    cfg = _config(x.shape, kind, window_shape, strides, padding, count_include_pad, name, path)
    return POOL.select(backward)(x, cfg)


def max_pool(x, window_shape, strides=None, padding="VALID", backward="custom"):
    """Max pooling: y[n, o, c] = max over the window of x[n, o * s + k - pad_low, c].

    Shapes: x (N, *S, C) with 1-3 spatial dims -> y (N, *O, C),
    O = (S + pad_low + pad_high - window) // strides + 1.

    Backward: dx[i] = sum_W g[W] * [i = first argmax of W in row-major window order];
    padded cells (-inf) never receive gradient.

    Args:
      x: floating array (N, *S, C).
      window_shape: int (same for every spatial dim) or one int per spatial dim.
      strides: int or tuple; default `window_shape` (non-overlapping windows).
      padding: "VALID", "SAME", an int, or one (low, high) pair per spatial dim.
      backward: "custom" (the hand rule) or "autodiff" (autodiff of the forward).

    Reference: docs/derivations/pooling_dense.md, section "Max pooling".
    """
    return pool(x, "max", window_shape, strides, padding, False, backward)


def avg_pool(
    x, window_shape, strides=None, padding="VALID", count_include_pad=False, backward="custom"
):
    """Average pooling: y[n, o, c] = sum over the window of x / divisor[o].

    Shapes: x (N, *S, C) with 1-3 spatial dims -> y (N, *O, C), O as in `max_pool`.

    Padded cells hold zeros. divisor[o] = prod(window_shape) if `count_include_pad`,
    else the number of real (unpadded) cells in window o.
    Backward: dx[i] = sum over windows W containing i of g[W] / divisor[W]; padded
    cells' shares are dropped.

    Reference: docs/derivations/pooling_dense.md, section "Average pooling".
    """
    return pool(x, "avg", window_shape, strides, padding, count_include_pad, backward)


# ---------------------------------------------------------------- global average


def _global_avg_pool_plain(x):
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def _global_avg_pool_fwd(x):
    return _global_avg_pool_plain(x), x  # only x's shape is used; jit drops the buffer


def _global_avg_pool_bwd(x, g):
    # y[n, c] = (1/|S|) sum_s x[n, s, c]  =>  dx[n, s, c] = g[n, c] / |S|
    shape, dtype = x.shape, x.dtype
    size = int(np.prod(shape[1:-1]))
    g = g.reshape((shape[0], *(1,) * (len(shape) - 2), shape[-1])) / size
    return (jnp.broadcast_to(g, shape).astype(dtype),)


GLOBAL_AVG_POOL = hand_rule("global_avg_pool", _global_avg_pool_plain, _global_avg_pool_fwd,
                            _global_avg_pool_bwd)


def global_avg_pool(x, backward="custom"):
    """Global average pooling: y[n, c] = mean over all spatial positions of x[n, s, c].

    Shapes: x (N, *S, C) with 1-3 spatial dims -> y (N, C).
    Backward: dx[n, s, c] = g[n, c] / |S|.

    Reference: docs/derivations/pooling_dense.md, section "Global average pooling".
    """
    _checks.check_backward(backward)
    x = _check_input(x, "global_avg_pool")
    return GLOBAL_AVG_POOL.select(backward)(x)


def pool_output_shape(input_shape, window_shape, strides=None, padding="VALID", *,
                      name="pooling"):
    """Output shape of `max_pool` / `avg_pool` for an input of `input_shape`.

    `input_shape` is (N, *S, C) with 1-3 spatial dims; N may be -1 (unknown batch).
    Raises the same errors as the ops for windows that do not fit; `name` (e.g. the
    layer's) prefixes the messages.
    """
    input_shape = tuple(input_shape)
    _checks.check_rank(input_shape, (3, 4, 5), "input_shape", name)
    padding = _checks.check_padding(padding)
    cfg = _config(input_shape, "max", window_shape, strides, padding, False, name, "auto")
    return (input_shape[0], *cfg.out_spatial, input_shape[-1])


# ---------------------------------------------------------------- global max
#
# Global max pooling and adaptive average pooling (appended; each its own hand rule).
# Derivations: docs/derivations/more_layers.md, "Global max pooling" and "Adaptive
# average pooling".


def _global_max_pool_plain(x):
    return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


def _flat_spatial(x):
    """(N, *S, C) -> (N, |S|, C), positions in row-major order."""
    return x.reshape((x.shape[0], -1, x.shape[-1]))


def _shape_marker(x):
    """A zero-size array (0, *x.shape) of x's dtype: carries x's shape and dtype through
    the residuals statically, with no buffer."""
    return jnp.zeros((0, *x.shape), x.dtype)


@jax.jit
def _global_max_pool_fwd(x):
    # The route is decided here, from the values that made the maximum (see _pool_fwd):
    # the row-major index of the first maximum of every (example, channel).
    flat = _flat_spatial(x)
    index = jnp.argmax(flat, axis=1).astype(jnp.int32)  # the first maximum on ties
    return jnp.max(flat, axis=1), (index, _shape_marker(x))


@jax.jit
def _global_max_pool_bwd(residuals, g):
    # y[n, c] = x[n, a(n, c), c]  =>  dx[n, s, c] = g[n, c] [s = a(n, c)]
    index, marker = residuals
    shape = marker.shape[1:]
    positions = np.arange(int(np.prod(shape[1:-1])), dtype=np.int32).reshape(1, -1, 1)
    dx = jnp.where(positions == index[:, None, :], g[:, None, :], _zero(g.dtype))
    return (dx.reshape(shape).astype(marker.dtype),)


GLOBAL_MAX_POOL = hand_rule("global_max_pool", _global_max_pool_plain, _global_max_pool_fwd,
                            _global_max_pool_bwd)


def global_max_pool(x, backward="custom"):
    """Global max pooling: y[n, c] = max over all spatial positions of x[n, s, c].

    Shapes: x (N, *S, C) with 1-3 spatial dims -> y (N, C).
    Backward: dx[n, s, c] = g[n, c] if s is the first maximum of (n, c) in row-major
    order, else 0 (the tie rule of `max_pool`). `backward="autodiff"` differentiates
    `jnp.max`, which instead splits a tie's gradient evenly among the tied cells.

    Reference: docs/derivations/more_layers.md, section "Global max pooling".
    """
    _checks.check_backward(backward)
    x = _check_input(x, "global_max_pool")
    return GLOBAL_MAX_POOL.select(backward)(x)


# ---------------------------------------------------------------- adaptive average


def adaptive_windows(size: int, out: int):
    """PyTorch's adaptive windows: [floor(i W / O), ceil((i + 1) W / O)) for i < O."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _averaging_matrix(size: int, out: int, dtype):
    """A (O, W): A[i, j] = 1 / |window i| for j in window i, else 0."""
    a = np.zeros((out, size))
    for i, (start, end) in enumerate(adaptive_windows(size, out)):
        a[i, start:end] = 1.0 / (end - start)
    return a.astype(dtype)


def _apply_along(x, a, axis: int):
    """Contracts axis `axis` of x with the columns of a: (.., W, ..) -> (.., O, ..)."""
    y = jnp.tensordot(x, a, axes=((axis,), (1,)), precision=lax.Precision.HIGHEST)
    return jnp.moveaxis(y, -1, axis)


@functools.partial(jax.jit, static_argnums=0)
def _adaptive_forward(output_size, x):
    """y = the product of per-axis averages: a box window's mean is separable."""
    for d, o in enumerate(output_size):
        if x.shape[1 + d] != o:
            x = _apply_along(x, _averaging_matrix(x.shape[1 + d], o, x.dtype), 1 + d)
    return x


def _adaptive_fwd(output_size, x):
    return _adaptive_forward(output_size, x), _shape_marker(x)


@functools.partial(jax.jit, static_argnums=0)
def _adaptive_bwd(output_size, residuals, g):
    # y = A_1 ... A_d x per axis  =>  dx = A_d^T ... A_1^T g: each output gradient
    # spread evenly over its window (dx[j] = sum_{i: j in window i} g[i] / |window i|)
    shape = residuals.shape[1:]
    for d in reversed(range(len(output_size))):
        if shape[1 + d] != output_size[d]:
            a = _averaging_matrix(shape[1 + d], output_size[d], g.dtype)
            g = _apply_along(g, a.T, 1 + d)
    return (g.astype(residuals.dtype),)


ADAPTIVE_AVG_POOL = hand_rule("adaptive_avg_pool", _adaptive_forward, _adaptive_fwd,
                              _adaptive_bwd, nondiff_argnums=(0,))


def adaptive_avg_pool_output_shape(input_shape, output_size, *, name="adaptive_avg_pool"):
    """(N, *output_size, C) for an input of `input_shape` (the batch may be -1)."""
    input_shape = tuple(input_shape)
    _checks.check_rank(input_shape, (3, 4, 5), "input_shape", name)
    size = _checks.spatial_tuple(output_size, len(input_shape) - 2, "output_size")
    return (input_shape[0], *size, input_shape[-1])


def adaptive_avg_pool(x, output_size, backward="custom"):
    """Adaptive average pooling to a fixed spatial size (PyTorch's AdaptiveAvgPool).

    Shapes: x (N, *S, C) with 1-3 spatial dims -> y (N, *output_size, C); `output_size`
    is an int (every spatial dim) or one int per spatial dim. Along a dimension of size
    W pooled to O cells, output cell i averages the window
        [floor(i W / O), ceil((i + 1) W / O))
    (windows overlap when O does not divide W; O > W repeats cells); in N-d the window
    is the box of the per-axis windows. O = 1 everywhere is global average pooling.
    Backward: dx[j] = sum over windows i containing j of g[i] / |window i|.

    Reference: docs/derivations/more_layers.md, section "Adaptive average pooling".
    """
    _checks.check_backward(backward)
    x = _check_input(x, "adaptive_avg_pool")
    size = _checks.spatial_tuple(output_size, x.ndim - 2, "output_size")
    return ADAPTIVE_AVG_POOL.select(backward)(size, x)


__all__ += ["adaptive_avg_pool", "adaptive_avg_pool_output_shape", "adaptive_windows",
            "global_max_pool"]
