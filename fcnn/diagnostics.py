"""Diagnostics of a network's units and gradients: dead, active and saturated units,
and per-layer gradient norms.

A *unit* is one feature of the last (channel) axis: a neuron of a Dense layer, a
feature map (filter) of a convolution. A value is *active* when it is above the
activation's value at 0, y > f(0): for every monotone activation that is the same as
its pre-activation being positive, z > 0, so the rate is comparable across
activations (sigmoid: y > 1/2; ReLU, leaky ReLU, tanh, ELU: y > 0; softplus:
y > log 2). Over a batch of shape (N, ..., C):

    active fraction     share of all N * ... * C values that are active (the notes:
                        about 50% for sigmoid networks, less for ReLU ones, 15-30%
                        considered ideal; 1 - active fraction is the sparsity).
    dead fraction       share of the C units never active at any example and
                        position. Through a ReLU such a unit passes no gradient and
                        never recovers; a leaky or saturating unit still passes some.
    saturated fraction  share of values where the local derivative is below 10% of
                        its value at 0: sigmoid f(1 - f) < 0.025, tanh 1 - f^2 < 0.1
                        (any activation whose table entry gives its derivative from
                        its output). Gradients through those values nearly vanish.

Activation layers are found by their role and read their table entry
(`layer.info["activation"]`), so an activation added to the table, or a layer a user
builds with role ACTIVATION, is measured like the built-in ones.

All functions are pure and jittable; they return device arrays.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from fcnn.layers.base import ACTIVATION, Intermediate

SATURATION_LEVEL = 0.1  # of the derivative's value at x = 0


def is_activation(intermediate: Intermediate) -> bool:
    """Whether the layer that produced this output is an activation (its role)."""
    return intermediate.layer.role == ACTIVATION


def value_at_zero(spec) -> float:
    """f(0) of an activation's table entry (0 when unknown, e.g. a user's layer), the
    threshold above which a value counts as active."""
    if spec is None or spec.kind != "elementwise":
        return 0.0  # rectifiers and maxout: f(0) = 0
    if spec.name not in _VALUE_AT_ZERO:
        # Evaluated on another thread: JAX's tracing state is per thread, so f(0) is a
        # number there even when this is called inside a jitted or vmapped probe.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _VALUE_AT_ZERO[spec.name] = pool.submit(
                lambda: float(spec.fn(np.zeros((), np.float32)))).result()
    return _VALUE_AT_ZERO[spec.name]


_VALUE_AT_ZERO: dict[str, float] = {}


def dead_fraction(y: jax.Array, threshold: float = 0.0) -> jax.Array:
    """Share of units (last axis) never above `threshold` in the batch. y: (N, ..., C)."""
    ever_active = jnp.any(y.reshape(-1, y.shape[-1]) > threshold, axis=0)
    return 1.0 - jnp.mean(ever_active.astype(jnp.float32))


def active_fraction(y: jax.Array, threshold: float = 0.0) -> jax.Array:
    """Share of values above `threshold` (the activation's value at 0)."""
    return jnp.mean((y > threshold).astype(jnp.float32))


def saturated_fraction(y: jax.Array, spec) -> jax.Array | None:
    """Share of values whose derivative is below 10% of its value at x = 0.

    `spec` is the activation's table entry (`fcnn.ops.activations.ActivationSpec`);
    the derivative is computed from the output with its `derivative_from_output`
    (sigmoid: f(1 - f), peak 1/4; tanh: 1 - f^2, peak 1). Returns None for
    activations that do not saturate.
    """
    if spec is None or not spec.saturates:
        return None
    derivative = spec.derivative_from_output
    peak = derivative(spec.fn(jnp.zeros((), y.dtype)))
    return jnp.mean((derivative(y) < SATURATION_LEVEL * peak).astype(jnp.float32))


def unit_statistics(
    intermediates: Iterable[Intermediate],
    *,
    select: Callable[[Intermediate], bool] = is_activation,
) -> dict[str, dict[str, jax.Array]]:
    """Dead, active and (for saturating activations) saturated fractions per activation
    layer, activity measured against each activation's value at 0.

    `intermediates` come from `fcnn.layers.base.apply_with_intermediates`; the keys of
    the result are the layers' paths, e.g. "1" or "4/1".
    """
    stats = {}
    for item in intermediates:
        if not select(item):
            continue
        spec = item.layer.info.get("activation")
        threshold = value_at_zero(spec)
        entry = {"dead": dead_fraction(item.value, threshold),
                 "active": active_fraction(item.value, threshold)}
        saturated = saturated_fraction(item.value, spec)
        if saturated is not None:
            entry["saturated"] = saturated
        stats[item.path] = entry
    return stats


def bias_gradient_norms(grads) -> dict[str, jax.Array]:
    """L2 norm of each layer's bias gradient, keyed like `layer_gradient_norms`.

    The bias gradient is the back-propagated error delta = dL/dz at the layer's
    pre-activations, summed over the batch (and positions). Its norm follows the error
    signal from layer to layer, free of the fan-in that scales a weight gradient.
    """
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        if keys and keys[-1] == "bias":
            out["/".join(keys[:-1])] = jnp.sqrt(jnp.sum(jnp.square(leaf)))
    return out


def layer_gradient_norms(grads) -> dict[str, jax.Array]:
    """L2 norm of each layer's gradient, keyed by the layer's path ("0", "4/1", ...).

    A layer is the dict that directly holds arrays (e.g. {"kernel", "bias"}); layers
    without parameters do not appear.
    """
    squares: dict[str, jax.Array] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path[:-1]]
        layer = "/".join(keys)
        squares[layer] = squares.get(layer, 0.0) + jnp.sum(jnp.square(leaf))
    return {layer: jnp.sqrt(total) for layer, total in squares.items()}
