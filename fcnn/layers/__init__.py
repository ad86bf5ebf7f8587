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
from fcnn.layers.activations import *  # noqa: F401,F403 (one layer per table entry)
from fcnn.layers.activations import __all__ as _activation_layers
from fcnn.layers.dropout import Dropout, SpatialDropout  # noqa: F401
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
from fcnn.layers.reshape import Flatten  # noqa: F401

__all__ = [
    "BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm", "LRN", "WeightNorm",
    "conv_bn_leaky",
    "Conv",
    *_activation_layers,
    "Dropout", "SpatialDropout",
    "Maxout",
    "Dense", "Flatten", "AvgPool", "GlobalAvgPool", "MaxPool",
    "Layer", "compose", "count_params", "fan_in_concat", "fan_in_sum", "fan_out",
    "identity", "parallel", "residual", "serial", "summary",
]
