"""Pooling layers: `MaxPool`, `AvgPool` and `GlobalAvgPool` on `fcnn.ops.pooling`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fcnn import _checks
from fcnn.layers.base import POOLING, Layer, check_train_flag
from fcnn.ops.pooling import global_avg_pool, pool, pool_output_shape

__all__ = ["AvgPool", "GlobalAvgPool", "MaxPool"]

RANK_MISMATCH = (
    "{layer}: {what} has shape {shape} (rank {rank}), but {arg}={value!r} has {ndim} "
    "spatial dimension(s), so the input must have rank {expected} (batch, *spatial, "
    "channels); pass an int {arg} to take the dimensions from the input"
)

TF_LAYOUT_ARGUMENT = (
    "{layer}: {arg}={value!r} looks like TensorFlow's {layout} {tf_arg} {value!r}: fcnn "
    "takes the spatial {what} only, {call}"
)
# TensorFlow's ksize/strides carry one entry per axis of the NHWC (or NDHWC) input,
# with 1 on the batch and channel axes; fcnn takes one entry per spatial axis.
_TF_LAYOUTS = {4: "NHWC", 5: "NDHWC"}


def _tf_layout_spatial(value):
    """The spatial entries of a TensorFlow-style (1, *spatial, 1) tuple, else None."""
    if (isinstance(value, Sequence) and not isinstance(value, str)
            and len(value) in _TF_LAYOUTS and _checks.is_int(value[0])
            and _checks.is_int(value[-1]) and value[0] == 1 and value[-1] == 1):
        return tuple(value[1:-1])
    return None


def _check_not_tf_layout(layer: str, window_shape, strides, padding):
    """Refuses TensorFlow's NHWC ksize/strides, naming the fcnn call that means the same."""
    spatial = {"window_shape": _tf_layout_spatial(window_shape),
               "strides": _tf_layout_spatial(strides)}
    if (isinstance(padding, tuple) and len(padding) in _TF_LAYOUTS
            and padding[0] == padding[-1] == (0, 0)):
        padding = padding[1:-1]  # TensorFlow's explicit NHWC paddings
    for arg, value, tf_arg, what in (("window_shape", window_shape, "ksize", "window"),
                                     ("strides", strides, "strides", "strides")):
        if spatial[arg] is None:
            continue
        args = [repr(spatial["window_shape"] or window_shape)]
        if strides is not None:
            args.append(f"strides={spatial['strides'] or strides!r}")
        if padding != "VALID":
            args.append(f"padding={padding!r}")
        raise ValueError(TF_LAYOUT_ARGUMENT.format(
            layer=layer, arg=arg, value=value, layout=_TF_LAYOUTS[len(value)], tf_arg=tf_arg,
            what=what, call=f"{layer}({', '.join(args)})",
        ))


def _fixed_ndim(window_shape, strides, padding):
    """Spatial rank fixed by a tuple argument, or None when every one is an int/str.

    Returns (ndim, name of the argument that fixes it).
    """
    found = []
    for arg, value in (("window_shape", window_shape), ("strides", strides)):
        if isinstance(value, Sequence) and not isinstance(value, str):
            found.append((len(value), arg, value))
    if isinstance(padding, tuple):
        found.append((len(padding), "padding", padding))
    for n, arg, value in found:
        if n != found[0][0]:
            first = found[0]
            raise ValueError(
                f"{arg}={value!r} has {n} entries but {first[1]}={first[2]!r} has "
                f"{first[0]}: give one entry per spatial dimension in each"
            )
        if n not in (1, 2, 3):
            raise ValueError(
                f"{arg}={value!r}: expected an int or a tuple of 1, 2 or 3 entries (one per "
                f"spatial dimension), got {n}"
            )
    return found[0][:2] if found else (None, None)


def _pool_layer(kind: str, name: str, window_shape, strides, padding,
                count_include_pad: bool, backward: str) -> Layer:
    """One factory for max and average pooling layers, taking the reducer `kind`."""
    padding = _checks.check_padding(padding)
    _check_not_tf_layout(name, window_shape, strides, padding)
    ndim, fixed_by = _fixed_ndim(window_shape, strides, padding)
    window_shape = _checks.spatial_tuple_or_none(window_shape, ndim, "window_shape")
    if window_shape is None:
        raise TypeError("window_shape=None: expected an int or a tuple of ints")
    strides = _checks.spatial_tuple_or_none(strides, ndim, "strides")
    count_include_pad = _checks.check_bool(count_include_pad, "count_include_pad")
    backward = _checks.check_backward(backward)
    args = f"{window_shape!r}" if strides is None else f"{window_shape!r}, strides={strides!r}"
    name = f"{name}({args}, padding={padding!r})"

    def check_input_rank(shape, what):
        _checks.check_rank(shape, (3, 4, 5), what, name)
        if ndim is not None and len(shape) != ndim + 2:
            value = {"window_shape": window_shape, "strides": strides, "padding": padding}
            raise ValueError(RANK_MISMATCH.format(
                layer=name, what=what, shape=tuple(shape), rank=len(shape), arg=fixed_by,
                value=value[fixed_by], ndim=ndim, expected=ndim + 2,
            ))

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        check_input_rank(input_shape, "input_shape")
        return pool_output_shape(input_shape, window_shape, strides, padding, name=name), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        check_input_rank(np.shape(x), "x")
        y = pool(x, kind, window_shape, strides, padding, count_include_pad, backward)
        return y, state

    return Layer(init, apply, name=name, role=POOLING)


def MaxPool(window_shape, strides=None, padding="VALID", backward="custom") -> Layer:  # noqa: N802
    """Max pooling over 1, 2 or 3 spatial dims: (N, *S, C) -> (N, *O, C).

    `strides` defaults to `window_shape` (non-overlapping windows). An int
    `window_shape` takes the number of spatial dims from the input rank at init; a
    tuple fixes it, and an input of another rank is an error. TensorFlow's NHWC
    `ksize=(1, 2, 2, 1)` is refused with its fcnn equivalent, `MaxPool((2, 2))`.
    No params, no state. See `fcnn.ops.pooling.max_pool` for the formula, the tie
    rule and padding.

    Example: `MaxPool(2)` maps (N, 28, 28, 32) to (N, 14, 14, 32).
    """
    return _pool_layer("max", "MaxPool", window_shape, strides, padding, False, backward)


def AvgPool(  # noqa: N802
    window_shape, strides=None, padding="VALID", count_include_pad=False, backward="custom"
) -> Layer:
    """Average pooling over 1, 2 or 3 spatial dims: (N, *S, C) -> (N, *O, C).

    Arguments as in `MaxPool`. With padding, the divisor counts the padded (zero)
    cells only if `count_include_pad=True`. See `fcnn.ops.pooling.avg_pool`.
    """
    return _pool_layer(
        "avg", "AvgPool", window_shape, strides, padding, count_include_pad, backward
    )


def GlobalAvgPool(backward="custom") -> Layer:  # noqa: N802
    """Mean over every spatial position: (N, *S, C) -> (N, C), 1-3 spatial dims.

    No params, no state. See `fcnn.ops.pooling.global_avg_pool`.
    """
    return global_pool_layer("GlobalAvgPool", global_avg_pool, backward)


def global_pool_layer(name: str, op, backward: str) -> Layer:
    """The layer of a global pooling op `op(x, backward)`: (N, *S, C) -> (N, C)."""
    backward = _checks.check_backward(backward)

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        _checks.check_rank(input_shape, (3, 4, 5), "input_shape", name)
        return (input_shape[0], input_shape[-1]), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        return op(x, backward), state

    return Layer(init, apply, name=name, role=POOLING)
