"""Per-example gradients with `jax.vmap(jax.grad(...))`.

For a loss of one example l(params, example), the per-example gradients of a batch
of N examples are

    G[i] = d l(params, example_i) / d params,     i = 0 .. N-1

one pytree with the structure of `params` whose leaves gain a leading axis N. Their
mean over i is the gradient of the mean loss (1/N) sum_i l(params, example_i), the
usual batch gradient. They are what per-example clipping (DP-SGD), gradient-noise
and influence measurements need, and cost one vmapped backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fcnn.train.step import _check_loss, _check_model


def per_example_grads(loss_fn, params, batch):
    """Gradients of `loss_fn(params, example)` for every example of `batch`.

    Args:
      loss_fn: (params, example) -> scalar, where `example` is one element of
        `batch` (every leaf of `batch` without its leading axis).
      params: the pytree to differentiate (not batched).
      batch: a pytree whose leaves share a leading axis N, e.g. (images, labels).

    Returns:
      A pytree like `params` with leaves of shape (N, *leaf.shape).
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn={loss_fn!r}: expected a function (params, example) -> scalar")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree_util.tree_leaves(batch)}
    if not sizes or None in sizes or len(sizes) != 1:
        raise ValueError(
            "batch: expected a pytree of arrays sharing a leading (example) axis, got leading "
            f"sizes {sorted(s for s in sizes if s is not None)}"
        )
    return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, batch)


def example_loss(model, loss_fn, state):
    """`(params, (image, label)) -> loss` of one example for a model and batch loss.

    The example is run as a batch of one in evaluation mode (train=False: running
    batch-norm statistics, no dropout), so every example's gradient is independent
    of the others. `loss_fn(logits, labels)` is the usual mean-over-batch loss.
    """
    model = _check_model(model)
    loss_fn = _check_loss(loss_fn)

    def loss(params, example):
        image, label = example
        logits, _ = model.apply(params, state, image[None], train=False)
        return loss_fn(logits, jnp.asarray(label)[None])

    return loss


def per_example_grad_norms(grads) -> jax.Array:
    """(N,) global L2 norm of each example's gradient (over every leaf)."""
    squares = [jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1) for g in jax.tree_util.tree_leaves(grads)]
    return jnp.sqrt(sum(squares[1:], squares[0]))
