"""Maxout: k linear pieces per unit and the max over them (Goodfellow et al., 2013).

A maxout unit computes y_f = max_j (x . w_(f, j) + b_(f, j)) over j = 1..k. It is a
Dense (or Conv) layer with k times the outputs followed by a max over groups of k:
k times the parameters of the plain layer. With pieces (w, 0) it is a ReLU, with
(w, -w) an absolute value: a learned piecewise-linear convex activation.
"""

from __future__ import annotations

from fcnn import _checks
from fcnn.layers.activations import MaxoutUnits
from fcnn.layers.base import Layer, check_train_flag
from fcnn.layers.conv import Conv
from fcnn.layers.dense import Dense
from fcnn.ops.activations import check_pieces

KINDS = ("dense", "conv")


def Maxout(
    features: int,
    pieces: int = 2,
    kind: str = "dense",
    kernel_size=None,
    *,
    backward: str = "custom",
    **linear_kwargs,
) -> Layer:
    """`features` maxout units of `pieces` linear pieces each: a linear layer with
    `pieces` times the outputs followed by `MaxoutUnits(pieces)`.

    kind="dense": Dense(features * pieces) on (N, ..., in) -> (N, ..., features).
    kind="conv": Conv(features * pieces, kernel_size) on (N, *S, C) -> (N, *S_out,
    features). params are those of the linear layer: {"kernel": (..., features *
    pieces), "bias": (features * pieces,)}, output channel f * pieces + j being piece
    j of unit f. Other keyword arguments (strides, padding, kernel_init, use_bias,
    param_dtype, ...) go to the linear layer. The gradient reaches only the maximal
    piece of each unit. Its children are the linear layer and the units.
    """
    features = _checks.positive_int(features, "features")
    pieces = check_pieces(pieces)
    backward = _checks.check_backward(backward)
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    if kind == "dense":
        if kernel_size is not None:
            raise ValueError(
                f"kernel_size={kernel_size!r}: a dense maxout layer has no kernel size; "
                'use kind="conv" for a convolutional maxout layer'
            )
        linear = Dense(features * pieces, backward=backward, **linear_kwargs)
    else:
        if kernel_size is None:
            raise ValueError('kind="conv": a convolutional maxout layer needs kernel_size')
        linear = Conv(features * pieces, kernel_size, backward=backward, **linear_kwargs)
    units = MaxoutUnits(pieces, backward=backward)
    name = f"Maxout({features}, pieces={pieces}, {kind})"

    def init(rng, input_shape):
        out_shape, params, state = linear.init(rng, input_shape)
        return units.init(rng, out_shape)[0], params, state

    def apply(params, state, x, *, train, rng=None):
        check_train_flag(train, name)
        z, state = linear.apply(params, state, x, train=train, rng=rng)
        return units.apply({}, {}, z, train=train)[0], state

    return Layer(init, apply, name=name, children=(linear, units))
