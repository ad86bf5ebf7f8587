"""The fully-connected layer: `Dense(features, ...)` on `fcnn.ops.dense`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import _checks, initializers
from fcnn.layers.base import DENSE, Layer, check_train_flag
from fcnn.ops.dense import dense

__all__ = ["Dense"]


def Dense(  # noqa: N802 (layers are named like classes, as in stax)
    features: int,
    use_bias: bool = True,
    kernel_init=initializers.lecun_normal,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
) -> Layer:
    """Fully-connected layer y = x W + b with `features` outputs.

    Input (N, ..., in), output (N, ..., features); params {"kernel": (in, features),
    "bias": (features,)} (no "bias" when use_bias=False). Leading axes beyond the
    batch are batch axes too. See `fcnn.ops.dense` for the backward rule.

    Example: `Dense(10)` on (N, 128) has 128 * 10 + 10 = 1290 parameters.
    """
    features = _checks.positive_int(features, "features")
    use_bias = _checks.check_bool(use_bias, "use_bias")
    backward = _checks.check_backward(backward)
    kernel_init = initializers.get(kernel_init)
    bias_init = initializers.get(bias_init)
    name = f"Dense({features})"

    def init(rng, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(
                f"{name}: input_shape={input_shape}: expected (batch, ..., in_features), "
                "rank >= 2"
            )
        in_features = _checks.positive_int(input_shape[-1], f"{name}: in_features")
        kernel_rng, bias_rng = jax.random.split(rng)
        params = {"kernel": kernel_init(kernel_rng, (in_features, features), param_dtype)}
        if use_bias:
            params["bias"] = bias_init(bias_rng, (features,), param_dtype)
        return input_shape[:-1] + (features,), params, {}

    def apply(params, state, x, *, train, rng=None):
        del rng
        check_train_flag(train, name)
        kernel = params["kernel"]
        shape = np.shape(x)
        if not shape or shape[-1] != kernel.shape[0]:
            raise ValueError(
                f"{name}: x has shape {tuple(shape)}, but the params expect "
                f"{kernel.shape[0]} input features (kernel shape {tuple(kernel.shape)}); "
                "call init with the shape of this input (add Flatten() before Dense "
                "for image inputs)"
            )
        bias = params["bias"] if use_bias else None
        return dense(x, kernel, bias, backward=backward), state

    return Layer(init, apply, name=name, role=DENSE)
