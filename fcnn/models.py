"""The reference CNN used by `make run`, the benchmarks and the studies.

    refnet():  conv 3x3x32 - ReLU - maxpool 2 - conv 3x3x64 - ReLU - maxpool 2
               - flatten - dense 128 - ReLU - dense num_classes

Convolutions are "SAME" padded, so an HxW input reaches the dense layer as
(H // 4) x (W // 4) x 64 features; the dense layer's input size is taken from the
input shape at init, so the same builder serves 8x8 digits, 28x28 MNIST and 32x32
CIFAR-10, with any number of channels.
"""

from __future__ import annotations

import fcnn
from fcnn._checks import positive_int


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
):
    """The reference CNN: [conv k x k - (batchnorm) - act - maxpool 2] per width,
    flatten, dense `hidden` - act - (dropout) - dense `num_classes` (logits).

    Input (N, H, W, C) with H and W divisible by 4 for the default two stages (other
    sizes are floored by the pooling); output (N, num_classes).
    `activation` is any name `fcnn.Activation` accepts (its options in
    `activation_kwargs`), so the activation studies reuse this network.
    """
    num_classes = positive_int(num_classes, "num_classes")
    hidden = positive_int(hidden, "hidden")
    widths = tuple(positive_int(w, "widths") for w in widths)
    if not widths:
        raise ValueError("widths=(): expected at least one convolution stage")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r}: expected a rate in [0, 1)")
    act_kwargs = dict(activation_kwargs or {})

    def act():
        return fcnn.Activation(activation, **act_kwargs)

    layers = []
    for width in widths:
        layers.append(fcnn.Conv(width, kernel_size, padding="SAME", backward=backward))
        if batchnorm:
            layers.append(fcnn.BatchNorm(backward=backward))
        layers += [act(), fcnn.MaxPool(2, backward=backward)]
    layers += [fcnn.Flatten(), fcnn.Dense(hidden, backward=backward)]
    if batchnorm:
        layers.append(fcnn.BatchNorm(backward=backward))
    layers.append(act())
    if dropout > 0:
        layers.append(fcnn.Dropout(dropout, backward=backward))
    layers.append(fcnn.Dense(num_classes, backward=backward))
    return fcnn.serial(*layers)
