"""Model builders: the reference CNN, the configurable CNN the studies vary, an MLP.

    refnet():  conv 3x3x32 - ReLU - maxpool 2 - conv 3x3x64 - ReLU - maxpool 2
               - flatten - dense 128 - ReLU - dense num_classes

Convolutions are "SAME" padded, so an HxW input reaches the dense layer as
(H // 4) x (W // 4) x 64 features; the dense layer's input size is taken from the
input shape at init, so the same builder serves 8x8 digits, 28x28 MNIST and 32x32
CIFAR-10, with any number of channels.
"""

from __future__ import annotations

import fcnn
from fcnn import initializers
from fcnn._checks import check_number, positive_int
from fcnn.layers.base import Layer

POOLS = ("max", "avg", "stride")
NORMS = (None, "batch", "group")
MAXOUT_PIECES = 2


def _activation(name: str, kwargs: dict, backward: str) -> Layer:
    return fcnn.Activation(name, **kwargs, backward=backward)


def _norm(norm: str | None, groups: int, backward: str) -> list[Layer]:
    if norm is None:
        return []
    if norm == "batch":
        return [fcnn.BatchNorm(backward=backward)]
    return [fcnn.GroupNorm(num_groups=groups, backward=backward)]


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
    backward: str = "custom",
) -> Layer:
    """[conv k x k - (norm) - act - (pool)] per width, flatten, dense `hidden` - (norm) -
    act - (dropout) - [dense `feature_dim`] - dense `num_classes` (logits).

    Input (N, H, W, C); output (N, num_classes).
    activation: any `fcnn.Activation` name, options in `activation_kwargs`; with
      "maxout" every conv / hidden dense has `pieces` (default 2) times the units
      and the maxout units keep the width of the others.
    pool: "max", "avg" (2x2 windows, stride 2) or "stride" (no pooling layer: the
      convolution itself has stride 2, so depth and output size stay the same).
    norm: None, "batch" (BatchNorm) or "group" (GroupNorm with `groups` groups), after
      each convolution and the hidden dense layer, before the activation.
    feature_dim: a linear feature layer of this width before the classifier (the
      center-loss study's 2-D features).
    """
    num_classes = positive_int(num_classes, "num_classes")
    hidden = positive_int(hidden, "hidden")
    widths = tuple(positive_int(w, "widths") for w in widths)
    if not widths:
        raise ValueError("widths=(): expected at least one convolution stage")
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: expected one of {POOLS}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: expected one of {NORMS}")
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    act_kwargs = dict(activation_kwargs or {})
    k = 1
    if activation == "maxout":
        k = act_kwargs.setdefault("pieces", MAXOUT_PIECES)
    kernel_init = initializers.get(kernel_init)
    layers: list[Layer] = []
    for width in widths:
        layers.append(fcnn.Conv(width * k, kernel_size, strides=2 if pool == "stride" else 1,
                                padding="SAME", kernel_init=kernel_init, backward=backward))
        layers += _norm(norm, groups, backward)
        layers.append(_activation(activation, act_kwargs, backward))
        if pool == "max":
            layers.append(fcnn.MaxPool(2, backward=backward))
        elif pool == "avg":
            layers.append(fcnn.AvgPool(2, backward=backward))
    layers += [fcnn.Flatten(), fcnn.Dense(hidden * k, kernel_init=kernel_init, backward=backward)]
    layers += _norm(norm, groups, backward)
    layers.append(_activation(activation, act_kwargs, backward))
    if dropout > 0:
        layers.append(fcnn.Dropout(dropout, backward=backward))
    if feature_dim is not None:
        layers.append(fcnn.Dense(positive_int(feature_dim, "feature_dim"), kernel_init=kernel_init,
                                 backward=backward))
    layers.append(fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward))
    return fcnn.serial(*layers)


def refnet(
    num_classes: int = 10,
    activation: str = "relu",
    *,
    widths=(32, 64),
    hidden: int = 128,
    kernel_size: int = 3,
    dropout: float = 0.0,
    batchnorm: bool = False,
    backward: str = "custom",
    activation_kwargs: dict | None = None,
) -> Layer:
    """The reference CNN: `cnn` with max pooling, widths (32, 64) and, optionally,
    BatchNorm after each convolution and the hidden dense layer.

    Input (N, H, W, C) with H and W divisible by 4 for the default two stages (other
    sizes are floored by the pooling); output (N, num_classes).
    """
    return cnn(num_classes, activation, widths=widths, hidden=hidden, kernel_size=kernel_size,
               dropout=dropout, norm="batch" if batchnorm else None, backward=backward,
               activation_kwargs=activation_kwargs)


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
        layers += [fcnn.Dense(width, kernel_init=kernel_init), fcnn.Activation(activation)]
        if dropout > 0:
            layers.append(fcnn.Dropout(dropout))
    bias_init = initializers.constant(output_bias) if output_bias else initializers.zeros
    layers.append(fcnn.Dense(num_classes, kernel_init=kernel_init, bias_init=bias_init))
    return fcnn.serial(*layers)


__all__ = ["cnn", "mlp", "refnet"]
