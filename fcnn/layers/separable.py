"""Depthwise and depthwise-separable convolution layers on `fcnn.ops.conv`.

`DepthwiseConv(kernel_size, depth_multiplier)` is a `Conv` with one group per input
channel (groups = C_in, C_in * depth_multiplier outputs), its channel count read
from the input at init. `SeparableConv(features, kernel_size)` is that depthwise
convolution followed by a pointwise (1x1) `Conv` (Chollet, Xception, 2017; Howard
et al., MobileNets, 2017): about k^2 + features weights per input channel instead
of k^2 * features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fcnn import _checks, initializers
from fcnn.layers.base import CONVOLUTION, Layer, _check_children, _split, check_train_flag
from fcnn.layers.conv import Conv

__all__ = ["DepthwiseConv", "SeparableConv"]


def DepthwiseConv(  # noqa: N802
    kernel_size,
    depth_multiplier: int = 1,
    strides=1,
    padding="SAME",
    dilation=1,
    use_bias: bool = True,
    kernel_init=initializers.lecun_normal,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
    padding_mode: str = "zeros",
) -> Layer:
    """Depthwise convolution: each input channel convolved with its own
    `depth_multiplier` filters, (N, *S, C) -> (N, *S_out, C * depth_multiplier).

    A `Conv(C * depth_multiplier, kernel_size, groups=C)` whose C is read from the
    input at init; params {"kernel": (*kernel_size, 1, C * depth_multiplier),
    "bias": (C * depth_multiplier,)}, output channel c * depth_multiplier + j being
    filter j of input channel c. Other arguments as in `Conv`.
    """
    depth_multiplier = _checks.positive_int(depth_multiplier, "depth_multiplier")
    conv_kwargs = dict(
        kernel_size=kernel_size, strides=strides, padding=padding, dilation=dilation,
        use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init, backward=backward,
        param_dtype=param_dtype, padding_mode=padding_mode,
    )
    probe = Conv(depth_multiplier, **conv_kwargs)  # every argument checked here, once
    del probe
    name = f"DepthwiseConv({kernel_size!r}" + (
        f", depth_multiplier={depth_multiplier})" if depth_multiplier != 1 else ")")

    def conv_for(channels: int) -> Layer:
        channels = _checks.positive_int(channels, f"{name}: input channels")
        return Conv(channels * depth_multiplier, groups=channels, **conv_kwargs)

    def init(rng, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            _checks.check_rank(input_shape, (3, 4, 5), "input_shape", name)
        return conv_for(input_shape[-1]).init(rng, input_shape)

    def apply(params, state, x, *, train, rng=None):
        check_train_flag(train, name)
        # the channel count the params were made for; Conv checks x against it
        channels = params["kernel"].shape[-1] // depth_multiplier
        return conv_for(channels).apply(params, state, x, train=train, rng=rng)

    return Layer(init, apply, name=name, role=CONVOLUTION)


def SeparableConv(  # noqa: N802
    features: int,
    kernel_size,
    depth_multiplier: int = 1,
    strides=1,
    padding="SAME",
    dilation=1,
    use_bias: bool = True,
    kernel_init=initializers.lecun_normal,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
    padding_mode: str = "zeros",
) -> Layer:
    """Depthwise-separable convolution: `DepthwiseConv(kernel_size, depth_multiplier)`
    (no bias) then a pointwise `Conv(features, 1)`: (N, *S, C) -> (N, *S_out, features).

    Params {"0": {"kernel": (*kernel_size, 1, C * depth_multiplier)},
    "1": {"kernel": (1, ..., C * depth_multiplier, features), "bias": (features,)}},
    keyed like `serial`; its children are the two convolutions, its role
    CONVOLUTION. `strides`, `padding`, `dilation` and `padding_mode` belong to the
    depthwise step, `use_bias` to the pointwise one (a bias between two linear maps
    would be redundant), as in Keras's SeparableConv2D.
    """
    features = _checks.positive_int(features, "features")
    depthwise = DepthwiseConv(
        kernel_size, depth_multiplier, strides=strides, padding=padding, dilation=dilation,
        use_bias=False, kernel_init=kernel_init, bias_init=bias_init, backward=backward,
        param_dtype=param_dtype, padding_mode=padding_mode,
    )
    pointwise = Conv(features, 1, use_bias=use_bias, kernel_init=kernel_init,
                     bias_init=bias_init, backward=backward, param_dtype=param_dtype)
    children = (depthwise, pointwise)
    keys = ["0", "1"]
    name = f"SeparableConv({features}, {kernel_size!r})"

    def init(rng, input_shape):
        params, state = {}, {}
        shape = tuple(input_shape)
        for key, layer, layer_rng in zip(keys, children, jax.random.split(rng, 2)):
            shape, params[key], state[key] = layer.init(layer_rng, shape)
        return shape, params, state

    def apply(params, state, x, *, train, rng=None):
        check_train_flag(train, name)
        _check_children(params, keys, name, "params")
        _check_children(state, keys, name, "state")
        new_state = {}
        for key, layer, layer_rng in zip(keys, children, _split(rng, 2)):
            x, new_state[key] = layer.apply(params[key], state[key], x, train=train,
                                            rng=layer_rng)
        return x, new_state

    return Layer(init, apply, name=name, children=children, role=CONVOLUTION)
