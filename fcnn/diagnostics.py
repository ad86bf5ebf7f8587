"""Diagnostics of a network's units and gradients: dead, active and saturated units,
and per-layer gradient norms.

A *unit* is one feature of the last (channel) axis: a neuron of a Dense layer, a
feature map (filter) of a convolution. Over a batch of shape (N, ..., C):

    dead fraction       share of the C units that are never active (y <= 0 at every
                        example and position): they pass no gradient back through a
                        ReLU and never recover.
    active fraction     share of all N * ... * C values with y > 0 (the notes: about
                        50% for ReLU; 1 - active fraction is the sparsity).
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

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

from fcnn.layers.base import ACTIVATION, Intermediate

SATURATION_LEVEL = 0.1  # of the derivative's value at x = 0


def is_activation(intermediate: Intermediate) -> bool:
    """Whether the layer that produced this output is an activation (its role)."""
    return intermediate.layer.role == ACTIVATION


def dead_fraction(y: jax.Array) -> jax.Array:
    """Share of units (last axis) with y <= 0 everywhere in the batch. y: (N, ..., C)."""
    ever_active = jnp.any(y.reshape(-1, y.shape[-1]) > 0, axis=0)
    return 1.0 - jnp.mean(ever_active.astype(jnp.float32))


def active_fraction(y: jax.Array) -> jax.Array:
    """Share of values with y > 0."""
    return jnp.mean((y > 0).astype(jnp.float32))


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
    """Dead, active and (for sigmoid/tanh) saturated fractions per activation layer.

    `intermediates` come from `fcnn.layers.base.apply_with_intermediates`; the keys of
    the result are the layers' paths, e.g. "1" or "4/1".
    """
    stats = {}
    for item in intermediates:
        if not select(item):
            continue
        entry = {"dead": dead_fraction(item.value), "active": active_fraction(item.value)}
        saturated = saturated_fraction(item.value, item.layer.info.get("activation"))
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
