"""Regularizers as small optax transformations, chained like optax builds Adam.

Where each one sits in a chain decides what it means:

    chain(add_l1(l1), add_l2(l2),          # penalties: change the gradient
          <scaling: momentum / rms / adam>,
          decoupled_weight_decay(wd),       # decoupled: bypasses the adaptive scaling
          scale_by_learning_rate(lr),
          max_norm(c))                      # constraint: projects the new weights

* L2 penalty (lambda / 2) * ||w||^2 adds lambda * w to the gradient (`add_l2`). With
  plain SGD this equals weight decay; with Adam it is rescaled by the adaptive
  denominators, which is why AdamW decouples it (Loshchilov & Hutter, 2019).
* Decoupled weight decay adds wd * w after the adaptive scaling, so the step is
  -lr * (direction + wd * w) (`decoupled_weight_decay`, as optax's adamw).
* L1 penalty lambda * ||w||_1 adds lambda * sign(w) to the gradient (`add_l1`).
* Max-norm (Srivastava et al., 2014, with dropout): after each update, rescale every
  unit's incoming weight vector to norm <= c (`max_norm`, the last link of a chain).

Penalties and constraints apply to weight kernels only by default (`kernel_mask`:
leaves of rank >= 2), not to biases or normalization scales.
"""

from __future__ import annotations

import reprlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fcnn._checks import number_or_array

MASK_HELP = 'expected "kernels" (rank >= 2 leaves), "all", a pytree of bools, or a function params -> bools'


def kernel_mask(params):
    """True for weight kernels (rank >= 2: Dense (in, out), Conv HWIO), False otherwise."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def all_mask(params):
    """True for every leaf."""
    return jax.tree.map(lambda _: True, params)


def _is_bool(leaf) -> bool:
    return isinstance(leaf, (bool, np.bool_)) or getattr(leaf, "dtype", None) == np.bool_


def resolve_mask(mask) -> Any:
    """"kernels" / "all" / pytree of bools / callable -> what optax.masked accepts.

    Anything else raises (ValueError for an unknown name or None, TypeError for a
    leaf that is not a bool) here, not later inside optax's tree mapping.
    """
    if isinstance(mask, str):
        if mask == "kernels":
            return kernel_mask
        if mask == "all":
            return all_mask
        raise ValueError(f"mask={mask!r}: {MASK_HELP}")
    if mask is None:
        raise ValueError(f"mask=None: {MASK_HELP}")
    if callable(mask):
        return mask
    for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]:
        if not _is_bool(leaf):
            raise TypeError(f"mask{jax.tree_util.keystr(path)}={reprlib.repr(leaf)}: {MASK_HELP}")
    return mask


def add_l2(strength, mask="kernels") -> optax.GradientTransformation:
    """Gradient of the L2 penalty (strength / 2) * ||w||^2: g <- g + strength * w."""
    strength = number_or_array(strength, "l2", low=0.0)
    return optax.add_decayed_weights(strength, mask=resolve_mask(mask))


def decoupled_weight_decay(rate, mask="kernels") -> optax.GradientTransformation:
    """Decoupled weight decay: u <- u + rate * w, placed after the adaptive scaling.

    Followed by `scale_by_learning_rate(lr)` the step is -lr * (u + rate * w).
    """
    rate = number_or_array(rate, "weight_decay", low=0.0)
    return optax.add_decayed_weights(rate, mask=resolve_mask(mask))


def _add_l1(strength) -> optax.GradientTransformation:
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("add_l1 needs params: call optimizer.update(grads, state, params)")
        updates = jax.tree.map(lambda g, p: g + strength * jnp.sign(p).astype(g.dtype), updates, params)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def add_l1(strength, mask="kernels") -> optax.GradientTransformation:
    """(Sub)gradient of the L1 penalty strength * ||w||_1: g <- g + strength * sign(w)."""
    strength = number_or_array(strength, "l1", low=0.0)
    return optax.masked(_add_l1(strength), resolve_mask(mask))


def unit_norms(kernel) -> jax.Array:
    """Norm of each unit's incoming weight vector: over every axis but the last (out).

    Dense (in, out) -> (1, out); Conv (*window, in, out) -> (1, ..., 1, out).
    """
    axes = tuple(range(kernel.ndim - 1))
    return jnp.sqrt(jnp.sum(jnp.square(kernel), axis=axes, keepdims=True))


def project_max_norm(kernel, max_value) -> jax.Array:
    """Rescales each unit's incoming weights w to w * min(1, c / ||w||)."""
    norms = unit_norms(kernel)
    scale = jnp.minimum(1.0, max_value / jnp.maximum(norms, jnp.finfo(kernel.dtype).tiny))
    return kernel * scale.astype(kernel.dtype)


def _max_norm(max_value) -> optax.GradientTransformation:
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("max_norm needs params: call optimizer.update(grads, state, params)")

        def project(u, p):
            new = p + u
            norms = unit_norms(new)
            too_long = norms > max_value
            # Units within the bound keep their update untouched (bit for bit).
            return jnp.where(too_long, project_max_norm(new, max_value) - p, u)

        return jax.tree.map(project, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def max_norm(max_value, mask="kernels") -> optax.GradientTransformation:
    """Max-norm constraint: after the update, every unit's incoming weights have norm <= c.

    Returns updates u' such that params + u' = project(params + u), where project
    rescales each unit's incoming weight vector (all axes but the last of a kernel)
    to norm min(||w||, c). Must be the last link of a chain, after the learning rate.
    """
    # an array is an injected (possibly vmapped) hyper-parameter, checked where it was made
    max_value = number_or_array(max_value, "max_norm", low=0.0, low_open=True, hint="(the bound c)")
    return optax.masked(_max_norm(max_value), resolve_mask(mask))

