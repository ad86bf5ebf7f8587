"""Border layers: `Pad(padding, mode)`, `ZeroPadding(padding)` and `Cropping(cropping)`.

Each takes, for 1-3 spatial dimensions of a channels-last input (N, *S, C): an int
(every side of every spatial dimension, the count taken from the input rank at
init), one int per spatial dimension (both sides of it), or one (low, high) pair per
spatial dimension. A tuple of ints is always per dimension: for one dimension write
its (low, high) pair nested, ((1, 2),).
"""

from __future__ import annotations

import numpy as np
from jax import lax

from fcnn import _checks
from fcnn.layers.base import Layer, check_train_flag
from fcnn.ops.padding import check_mode, check_pairs_form, pad, pad_output_shape, pad_pairs

__all__ = ["Cropping", "Pad", "ZeroPadding"]


def _border_layer(display: str, value, arg: str):
    """(normalised value, fixed spatial rank or None, rank check) for a border argument."""
    value = check_pairs_form(value, arg)
    ndim = None if isinstance(value, int) else len(value)
    if ndim is not None and ndim not in (1, 2, 3):
        raise ValueError(
            f"{arg}={value!r}: expected an int, or 1, 2 or 3 entries (one per spatial "
            f"dimension), got {ndim}"
        )

    def check_rank(shape, what):
        _checks.check_rank(shape, (3, 4, 5), what, display)
        if ndim is not None and len(shape) != ndim + 2:
            raise ValueError(
                f"{display}: {what} has shape {tuple(shape)} (rank {len(shape)}), but "
                f"{arg}={value!r} has {ndim} entries, so the input must have rank "
                f"{ndim + 2} (batch, *spatial, channels)"
            )

    return value, check_rank


def Pad(padding, mode: str = "zeros", backward: str = "custom") -> Layer:  # noqa: N802
    """Pads the spatial axes with a border mode: (N, *S, C) -> (N, *(S + lo + hi), C).

    `mode`: "zeros", "reflect" (mirror, edge not repeated; at most S - 1 per side),
    "replicate" (edge repeated) or "circular" (wrap; at most S per side). The hand
    backward folds the border gradients back onto the cells they copied
    (`fcnn.ops.padding.pad`). No params, no state.
    """
    mode = check_mode(mode)
    backward = _checks.check_backward(backward)
    display = f"Pad({padding!r}, mode={mode!r})" if mode != "zeros" else f"ZeroPadding({padding!r})"
    padding, check_rank = _border_layer(display, padding, "padding")

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        check_rank(input_shape, "input_shape")
        return pad_output_shape(input_shape, padding, mode, name=display), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, display)
        check_rank(np.shape(x), "x")
        return pad(x, padding, mode, backward), state

    return Layer(init, apply, name=display)


def ZeroPadding(padding, backward: str = "custom") -> Layer:  # noqa: N802
    """Pads the spatial axes with zeros (Keras's ZeroPadding1D/2D/3D): `Pad(padding,
    "zeros")`. The backward crops the gradient back to the input (the padding op's
    hand rule). Example: `ZeroPadding(((0, 1), (0, 1)))` maps (N, 7, 7, C) to
    (N, 8, 8, C)."""
    return Pad(padding, "zeros", backward)


def Cropping(cropping) -> Layer:  # noqa: N802
    """Removes cells at the borders of the spatial axes (Keras's Cropping1D/2D/3D):
    (N, *S, C) -> (N, *(S - lo - hi), C).

    Pure data movement: the forward is `lax.slice` and its backward is left to JAX's
    autodiff (the adjoint of a crop is zero padding, nothing to derive). At least one
    cell must remain in every dimension. No params, no state.
    """
    display = f"Cropping({cropping!r})"
    cropping, check_rank = _border_layer(display, cropping, "cropping")

    def resolve(shape, what):
        check_rank(shape, what)
        pairs = pad_pairs(cropping, len(shape) - 2, "cropping")
        for d, (w, (lo, hi)) in enumerate(zip(shape[1:-1], pairs)):
            if lo + hi >= w:
                raise ValueError(
                    f"{display}: cropping {(lo, hi)} removes all {w} cells of spatial "
                    f"dimension {d} of {what} {tuple(shape)}; crop at most {w - 1} in total"
                )
        return pairs

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        pairs = resolve(input_shape, "input_shape")
        out = tuple(w - lo - hi for w, (lo, hi) in zip(input_shape[1:-1], pairs))
        return (input_shape[0], *out, input_shape[-1]), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, display)
        shape = np.shape(x)
        pairs = resolve(shape, "x")
        start = (0, *(lo for lo, _ in pairs), 0)
        limit = (shape[0], *(w - hi for w, (_, hi) in zip(shape[1:-1], pairs)), shape[-1])
        return lax.slice(x, start, limit), state

    return Layer(init, apply, name=display)
