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

__all__ = [
    "Conv",
    "Layer", "compose", "count_params", "fan_in_concat", "fan_in_sum", "fan_out",
    "identity", "parallel", "residual", "serial", "summary",
]
