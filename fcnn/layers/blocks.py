"""Composite blocks built from layers with `serial`."""

from __future__ import annotations

from fcnn.layers.activations import LeakyRelu
from fcnn.layers.base import Layer, serial
from fcnn.layers.conv import Conv
from fcnn.layers.normalization import BatchNorm

__all__ = ["conv_bn_leaky"]


def conv_bn_leaky(
    features: int,
    kernel_size,
    strides=1,
    *,
    padding="SAME",
    negative_slope: float = 0.1,
    momentum: float = 0.99,
    epsilon: float = 1e-5,
    backward: str = "custom",
) -> Layer:
    """Darknet's convolutional block: Conv without bias, BatchNorm, LeakyReLU(0.1).

    Shapes: (N, *spatial, C) -> (N, *spatial_out, features), with
    serial params {"0": {"kernel"}, "1": {"scale", "bias"}, "2": {}} and BatchNorm's
    running statistics in state["1"]. The convolution has no bias because the batch
    norm subtracts the mean right after it; its shift beta plays that role.
    Darknet's running statistics use 0.99 * old + 0.01 * batch, our default momentum.

    Reference: Redmon & Farhadi, YOLO9000 (2017) and the Darknet framework.
    """
    return serial(
        Conv(features, kernel_size, strides=strides, padding=padding, use_bias=False,
             backward=backward),
        BatchNorm(momentum=momentum, epsilon=epsilon, backward=backward),
        LeakyRelu(negative_slope, backward=backward),
    )
