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

    The defaults are Darknet's, not Keras' (the notes write this block in Keras):
    - momentum 0.99, the weight of the old value: running = 0.99 * old + 0.01 * batch.
      Darknet hard-codes this, and Keras' BatchNormalization(momentum=0.99) means the
      same (a running mean at 0 moves to 0.02 after a batch of mean 2; PyTorch's
      momentum weighs the batch instead, so the same 0.99 there would give 1.98).
    - epsilon 1e-5, Darknet's (its cuDNN call and its GPU kernels use
      sqrt(var + 1e-5)), so weights taken from a Darknet model normalize as there.
      Keras' default is 1e-3: for a channel of batch variance 0.01 it divides by
      sqrt(0.011) instead of sqrt(0.01001), outputs about 4.6 % smaller. Pass
      epsilon=1e-3 to reproduce the notes' Keras block.

    Reference: Redmon & Farhadi, YOLO9000 (2017) and the Darknet framework.
    """
    return serial(
        Conv(features, kernel_size, strides=strides, padding=padding, use_bias=False,
             backward=backward),
        BatchNorm(momentum=momentum, epsilon=epsilon, backward=backward),
        LeakyRelu(negative_slope, backward=backward),
    )
