"""Dropout layers: `Dropout(rate)` for units (or inputs), `SpatialDropout(rate)` for
whole feature maps. `rate` is the probability of DROPPING a unit, in [0, 1).

In training (train=True) they need an rng; at evaluation they are deterministic.
Put `Dropout` first in a model to drop inputs (the notes suggest a lower rate there,
e.g. 0.2, than for hidden units, e.g. 0.5).
"""

from __future__ import annotations

import functools

from fcnn._checks import check_backward
from fcnn.layers.base import DROPOUT, Layer, check_train_flag, require_rng
from fcnn.ops.dropout import check_mode, check_rate, dropout, spatial_dropout


def _dropout_layer(display: str, op, rate, mode: str, backward: str, min_rank: int) -> Layer:
    check_rate(rate)
    check_mode(mode)
    check_backward(backward)

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if len(input_shape) < min_rank:
            raise ValueError(
                f"{display}: input_shape={input_shape}: expected (batch, *spatial, "
                "channels) with at least one spatial axis"
            )
        return input_shape, {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params
        train = check_train_flag(train, display)
        if train:
            require_rng(rng, display)
        return op(x, rate, rng, train=train, mode=mode, backward=backward), state

    return Layer(init, apply, name=display, role=DROPOUT)


def Dropout(rate: float, mode: str = "inverted", *, shared_axes=(), backward: str = "custom") -> Layer:
    """Zeroes each unit with probability `rate` in training (Srivastava et al., 2014).

    mode="inverted" (default): survivors are scaled by 1/(1 - rate) in training and
    evaluation is the identity; mode="scale_at_test": no scaling in training,
    multiplication by the keep probability 1 - rate at evaluation. `shared_axes`
    shares one mask value along those axes of x.
    """
    if isinstance(shared_axes, list):
        shared_axes = tuple(shared_axes)
    op = functools.partial(dropout, shared_axes=shared_axes)
    return _dropout_layer(f"Dropout({rate})", op, rate, mode, backward, min_rank=0)


def SpatialDropout(rate: float, mode: str = "inverted", *, backward: str = "custom") -> Layer:
    """Drops whole channels of x (N, *spatial, C): one draw per (example, channel).

    The spatial dropout of Tompson et al. (2015), for feature maps.
    """
    return _dropout_layer(
        f"SpatialDropout({rate})", spatial_dropout, rate, mode, backward, min_rank=3
    )
