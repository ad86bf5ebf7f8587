"""Model builders for the studies that need more than `fcnn.models.refnet`.

`cnn` has refnet's shape (conv - act - pool per stage, flatten, dense - act, dense)
and adds what single studies vary: maxout units, the pooling kind, a normalization
layer, a narrow feature layer. `mlp` is a plain multilayer perceptron. Both adapt to
the dataset: the input shape (image size, channels) is only known at init.
"""

from __future__ import annotations

import jax.numpy as jnp

import fcnn
from fcnn import initializers
from fcnn._checks import positive_int
from fcnn.layers.base import Layer, check_train_flag, make_layer
from fcnn.models import refnet
from fcnn.ops.activations import check_pieces, maxout

POOLS = ("max", "avg", "stride")
NORMS = (None, "batch", "group")
MAXOUT_PIECES = 2


def Maxout(pieces: int = MAXOUT_PIECES) -> Layer:  # noqa: N802 (a layer)
    """Maxout units over the channel axis: (N, ..., F * pieces) -> (N, ..., F).

    y_f = max_j x[..., f * pieces + j] (Goodfellow et al., 2013); the gradient goes to
    the maximal piece (`fcnn.ops.activations.maxout`). No params, no state.
    """
    pieces = check_pieces(pieces)
    name = f"Maxout({pieces})"

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] % pieces:
            raise ValueError(
                f"{name}: input_shape={input_shape}: the last axis must hold features * "
                f"pieces channels, a multiple of {pieces}"
            )
        return input_shape[:-1] + (input_shape[-1] // pieces,), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        return maxout(x, pieces), state

    return make_layer(name, init, apply)


def _activation(name: str, kwargs: dict | None) -> Layer:
    if name == "maxout":
        return Maxout(**(kwargs or {}))
    return fcnn.Activation(name, **(kwargs or {}))


def _norm(norm: str | None, groups: int) -> list[Layer]:
    if norm is None:
        return []
    if norm == "batch":
        return [fcnn.BatchNorm()]
    return [fcnn.GroupNorm(num_groups=groups)]


def cnn(
    num_classes: int,
    activation: str = "relu",
    *,
    widths=(16, 32),
    hidden: int = 128,
    kernel_size: int = 3,
    pool: str = "max",
    norm: str | None = None,
    groups: int = 4,
    dropout: float = 0.0,
    feature_dim: int | None = None,
    kernel_init="lecun_normal",
    activation_kwargs: dict | None = None,
) -> Layer:
    """conv-act-pool per width, flatten, dense `hidden`-act, [dense `feature_dim`], dense.

    activation: an `fcnn.Activation` name, or "maxout" (each conv / dense then has
      MAXOUT_PIECES times the units and a Maxout layer keeps the width of the others).
    pool: "max", "avg" (2x2 windows, stride 2) or "stride" (no pooling layer: the
      convolution itself has stride 2, so depth and output size stay the same).
    norm: None, "batch" (BatchNorm) or "group" (GroupNorm with `groups` groups), after
      each convolution and the hidden dense layer, before the activation.
    feature_dim: a linear feature layer of this width before the classifier (the
      center-loss study's 2-D features).
    The layer list is exactly refnet's when pool="max", norm=None, no maxout.
    """
    num_classes = positive_int(num_classes, "num_classes")
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: expected one of {POOLS}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: expected one of {NORMS}")
    k = MAXOUT_PIECES if activation == "maxout" else 1
    act_kwargs = dict(activation_kwargs or {})
    if activation == "maxout":
        act_kwargs.setdefault("pieces", MAXOUT_PIECES)
        k = act_kwargs["pieces"]
    layers: list[Layer] = []
    for width in widths:
        strides = 2 if pool == "stride" else 1
        layers.append(fcnn.Conv(width * k, kernel_size, strides=strides, padding="SAME",
                                kernel_init=kernel_init))
        layers += _norm(norm, groups)
        layers.append(_activation(activation, act_kwargs))
        if pool == "max":
            layers.append(fcnn.MaxPool(2))
        elif pool == "avg":
            layers.append(fcnn.AvgPool(2))
    layers += [fcnn.Flatten(), fcnn.Dense(hidden * k, kernel_init=kernel_init)]
    layers += _norm(norm, groups)
    layers.append(_activation(activation, act_kwargs))
    if dropout > 0:
        layers.append(fcnn.Dropout(dropout))
    if feature_dim is not None:
        layers.append(fcnn.Dense(positive_int(feature_dim, "feature_dim"), kernel_init=kernel_init))
    layers.append(fcnn.Dense(num_classes, kernel_init=kernel_init))
    return fcnn.serial(*layers)


def activation_cnn(num_classes: int, activation: str, *, widths=(16, 32), hidden: int = 128) -> Layer:
    """The compare_activations network: `fcnn.models.refnet` with the given activation
    (maxout: the same stages with maxout units)."""
    if activation == "maxout":
        return cnn(num_classes, "maxout", widths=widths, hidden=hidden)
    return refnet(num_classes, activation, widths=widths, hidden=hidden)


def mlp(
    num_classes: int,
    activation: str = "relu",
    *,
    depth: int = 2,
    width: int = 128,
    kernel_init="lecun_normal",
    output_bias: float = 0.0,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> Layer:
    """Flatten, `depth` x [dense `width` - act - (dropout)], dense `num_classes`.

    `output_bias` initialises every output bias to that constant (a large value puts
    sigmoid outputs in saturation); `input_dropout` drops input pixels.
    """
    depth = positive_int(depth, "depth")
    layers: list[Layer] = [fcnn.Flatten()]
    if input_dropout > 0:
        layers.append(fcnn.Dropout(input_dropout))
    for _ in range(depth):
        layers += [fcnn.Dense(width, kernel_init=kernel_init), _activation(activation, None)]
        if dropout > 0:
            layers.append(fcnn.Dropout(dropout))
    bias_init = initializers.constant(output_bias) if output_bias else initializers.zeros
    layers.append(fcnn.Dense(num_classes, kernel_init=kernel_init, bias_init=bias_init))
    return fcnn.serial(*layers)


def with_centers(model: Layer, num_classes: int, feature_dim: int) -> Layer:
    """Wraps `model` so its state also holds the class centers of the center loss.

    state = {"net": the model's state, "centers": (num_classes, feature_dim) zeros};
    apply is the model's (the centers are read and updated by the center-loss train
    step, not by the forward pass).
    """
    num_classes = positive_int(num_classes, "num_classes")
    feature_dim = positive_int(feature_dim, "feature_dim")

    def init(rng, input_shape):
        shape, params, state = model.init(rng, input_shape)
        centers = jnp.zeros((num_classes, feature_dim), jnp.float32)
        return shape, params, {"net": state, "centers": centers}

    def apply(params, state, x, *, train, rng=None):
        y, net_state = model.apply(params, state["net"], x, train=train, rng=rng)
        return y, {"net": net_state, "centers": state["centers"]}

    return make_layer("with_centers", init, apply, (model,), kind="wrapper")
