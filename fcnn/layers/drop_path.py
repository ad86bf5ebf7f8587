"""Stochastic depth: `DropPath(rate)`, at the end of a residual branch."""

from __future__ import annotations

from fcnn._checks import check_backward
from fcnn.layers.base import DROPOUT, Layer, check_train_flag, require_rng
from fcnn.ops.dropout import check_rate, drop_path

__all__ = ["DropPath"]


def DropPath(rate: float, backward: str = "custom") -> Layer:  # noqa: N802
    """Drops the whole branch for each example with probability `rate` in training
    (stochastic depth, Huang et al., 2016), scaling the kept ones by 1 / (1 - rate).

    Put it last in a residual branch: `residual(serial(Conv(...), ..., DropPath(0.1)))`
    computes x + branch(x) for the kept examples and x for the dropped ones. At
    evaluation it is the identity. `rate` is the probability of DROPPING, in [0, 1).
    Training needs an rng. Shapes: (N, ...) -> same. No params, no state. See
    `fcnn.ops.dropout.drop_path`.
    """
    check_rate(rate)
    check_backward(backward)
    name = f"DropPath({rate})"

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape={input_shape}: expected (batch, ...)")
        return input_shape, {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params
        train = check_train_flag(train, name)
        if train:
            require_rng(rng, name)
        return drop_path(x, rate, rng, train=train, backward=backward), state

    return Layer(init, apply, name=name, role=DROPOUT)
