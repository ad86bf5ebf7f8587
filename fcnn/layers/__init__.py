"""Layers: `(init, apply)` pairs built on fcnn.ops, and the combinators."""

from fcnn.layers.base import (  # noqa: F401
    Layer,
    compose,
    count_params,
    fan_in_concat,
    fan_in_sum,
    fan_out,
    identity,
    parallel,
    residual,
    serial,
    summary,
)
from fcnn.layers.conv import Conv  # noqa: F401
from fcnn.layers.conv_transpose import ConvTranspose  # noqa: F401
from fcnn.layers.separable import DepthwiseConv, SeparableConv  # noqa: F401
from fcnn.layers.activations import *  # noqa: F401,F403 (one layer per table entry)
from fcnn.layers.activations import __all__ as _activation_layers
from fcnn.layers.dropout import Dropout, SpatialDropout  # noqa: F401
from fcnn.layers.drop_path import DropPath  # noqa: F401
from fcnn.layers.dense import Dense  # noqa: F401
from fcnn.layers.maxout import Maxout  # noqa: F401
from fcnn.layers.normalization import (  # noqa: F401
    LRN,
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
)
from fcnn.layers.weight_norm import WeightNorm  # noqa: F401
from fcnn.layers.blocks import conv_bn_leaky  # noqa: F401
from fcnn.layers.pooling import AvgPool, GlobalAvgPool, MaxPool  # noqa: F401
from fcnn.layers.global_pooling import AdaptiveAvgPool, GlobalMaxPool  # noqa: F401
from fcnn.layers.padding import Cropping, Pad, ZeroPadding  # noqa: F401
from fcnn.layers.reshape import Flatten, Reshape  # noqa: F401
from fcnn.layers.resize import Upsample  # noqa: F401

__all__ = [
    "BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm", "LRN", "WeightNorm",
    "conv_bn_leaky",
    "Conv", "ConvTranspose", "DepthwiseConv", "SeparableConv",
    *_activation_layers,
    "Dropout", "SpatialDropout", "DropPath",
    "Maxout",
    "Dense", "Flatten", "Reshape", "AvgPool", "GlobalAvgPool", "MaxPool",
    "AdaptiveAvgPool", "GlobalMaxPool", "Upsample", "Pad", "ZeroPadding", "Cropping",
    "Layer", "compose", "count_params", "fan_in_concat", "fan_in_sum", "fan_out",
    "identity", "parallel", "residual", "serial", "summary",
]
