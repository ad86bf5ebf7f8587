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
                        its maximum: sigmoid f(1 - f) < 0.025, tanh 1 - f^2 < 0.1.
                        Gradients through those values nearly vanish.

All functions are pure and jittable; they return device arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

from fcnn.layers.base import Intermediate

# Display names of the layers whose outputs are activations (see fcnn.layers.activations).
ACTIVATION_LAYERS = frozenset(
    {"Sigmoid", "Tanh", "Relu", "LeakyRelu", "PRelu", "RRelu", "Softplus", "Elu", "Selu",
     "Gelu", "Silu", "Maxout"}
)
SATURATION_LEVEL = 0.1  # of the derivative's maximum


def base_name(name: str) -> str:
    """"LeakyRelu(0.01)" -> "LeakyRelu"."""
    return name.split("(", 1)[0]


def is_activation(intermediate: Intermediate) -> bool:
    return base_name(intermediate.name) in ACTIVATION_LAYERS


def dead_fraction(y: jax.Array) -> jax.Array:
    """Share of units (last axis) with y <= 0 everywhere in the batch. y: (N, ..., C)."""
    ever_active = jnp.any(y.reshape(-1, y.shape[-1]) > 0, axis=0)
    return 1.0 - jnp.mean(ever_active.astype(jnp.float32))


def active_fraction(y: jax.Array) -> jax.Array:
    """Share of values with y > 0."""
    return jnp.mean((y > 0).astype(jnp.float32))


def saturated_fraction(y: jax.Array, activation: str) -> jax.Array | None:
    """Share of values whose derivative is below 10% of its maximum (sigmoid, tanh).

    Returns None for activations without saturating tails.
    """
    activation = base_name(activation).lower()
    if activation == "sigmoid":
        derivative, peak = y * (1.0 - y), 0.25
    elif activation == "tanh":
        derivative, peak = 1.0 - y * y, 1.0
    else:
        return None
    return jnp.mean((derivative < SATURATION_LEVEL * peak).astype(jnp.float32))


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
        saturated = saturated_fraction(item.value, item.name)
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
