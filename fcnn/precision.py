"""Mixed precision: run a model in a low-precision compute dtype, keep float32 params.

    model = fcnn.precision.mixed(fcnn.models.refnet(10), compute_dtype=jnp.bfloat16)
    _, params, state = model.init(rng, (-1, 28, 28, 1))      # float32, as the model's
    logits, state = model.apply(params, state, images, train=True, rng=key)   # float32

`mixed(model)` is a Layer wrapping `model` (its only child; same params and state,
so a checkpoint of one loads into the other). Its apply casts the floating-point
parameters and the input to the compute dtype, runs the model, and casts the
floating-point outputs back to float32:

  * params stay float32 ("master weights"). The casts are differentiable, so the
    gradient of a float32 loss reaches the float32 params as float32 (the cast's
    transpose casts the low-precision cotangent back up) and the optimizer updates
    them in float32: small updates are not rounded away.
  * losses are computed on the float32 outputs.
  * normalization statistics (batch mean and variance) are computed in float32 or
    wider by the normalize op whatever the input dtype (`fcnn.ops.normalization`),
    and BatchNorm's running statistics in `state` stay float32 in training. In eval
    mode they are handed to the model in the compute dtype, so the layers after a
    BatchNorm stay in that dtype too (their rounding is the input's own); the state
    returned keeps its float32 values.

Loss scaling is not needed for bfloat16: it has float32's 8-bit exponent (range
~1e-38 to ~3e38), only a shorter mantissa (8 bits, ~2-3 significant digits), so
small gradients do not underflow. float16 (5-bit exponent, smallest normal ~6e-5)
would need loss scaling, which this wrapper does not do: prefer bfloat16.

Whether bfloat16 is faster depends on the backend: GPUs and TPUs have bfloat16
matrix units. On a CPU it depends on who computes the convolutions. XLA:CPU (jax
0.10, measured on a 2-core Xeon with AVX-512 BF16) computes bfloat16 convolutions
and bfloat16 -> bfloat16 matrix products in float32 between converts, so a mixed
step of a model on XLA's convolutions is 1.5-1.9x slower than float32 (refnet on
28x28x1 and a 3-stage CNN on 32x32x3, batch 128, measured before convolutions
went to oneDNN). oneDNN's
convolutions (fcnn's default route from 8 input channels, `fcnn.ops.onednn`) have
bfloat16 kernels: there a mixed ResNet-20 step (batch 128, 32x32x3) took 130 ms
against 193 ms in float32 on the same machine, and the first training losses
agreed to 3 digits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fcnn.layers.base import Layer, _check_layers

OUTPUT_DTYPE = jnp.float32


def _compute_dtype(dtype) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"compute_dtype={dtype!r}: expected a floating-point dtype, e.g. jnp.bfloat16"
        ) from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"compute_dtype={dtype}: expected a floating-point dtype, e.g. jnp.bfloat16"
        )
    return dtype


def _cast_floating(tree, dtype):
    """Casts every floating-point leaf of `tree` to `dtype`; other leaves pass."""
    def cast(x):
        if isinstance(x, (jax.Array, np.ndarray, np.generic, float)) and jnp.issubdtype(
                jnp.result_type(x), jnp.floating):
            return jnp.asarray(x).astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def _cast_numeric(tree, dtype):
    """Casts every floating or integer leaf (an input image array) to `dtype`."""
    def cast(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def _restore_state(new_state, given, original):
    """The model's new state with the original dtypes: a leaf the model returned as it
    was given (the eval-mode cast) is the original array, unrounded; an updated leaf
    is cast back to its original dtype."""
    try:
        return jax.tree.map(
            lambda new, cast, old: old if new is cast else jnp.asarray(new).astype(
                jnp.result_type(old)), new_state, given, original)
    except ValueError:  # the model changed the state's structure: keep what it returned
        return new_state


def mixed(model, compute_dtype=jnp.bfloat16) -> Layer:
    """`model` computed in `compute_dtype`, with float32 params, gradients and outputs.

    Returns a Layer (name "mixed[<dtype>]", children=(model,)) with the same params
    and state as `model`. Its apply casts the floating-point params and the input
    (floating or integer) to `compute_dtype`, applies `model`, and returns its
    floating-point outputs as float32. In training the state (e.g. BatchNorm's
    running statistics) is passed as it is and its updates keep their dtype; in eval
    mode its floating-point leaves are passed in `compute_dtype`. See the module
    docstring for why no loss scaling is needed with bfloat16.

    Input (N, ...) of any numeric dtype; output like `model`'s, float32.
    """
    (model,) = _check_layers((model,), "mixed")
    dtype = _compute_dtype(compute_dtype)
    name = f"mixed[{dtype.name}]"

    def init(rng, input_shape):
        return model.init(rng, input_shape)

    def apply(params, state, x, *, train, rng=None):
        low_params = _cast_floating(params, dtype)
        x = _cast_numeric(x, dtype)
        given = state if train else _cast_floating(state, dtype)
        y, new_state = model.apply(low_params, given, x, train=train, rng=rng)
        return _cast_floating(y, OUTPUT_DTYPE), _restore_state(new_state, given, state)

    return Layer(init, apply, name=name, children=(model,),
                 info={"compute_dtype": dtype.name})


__all__ = ["mixed"]
