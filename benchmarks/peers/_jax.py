"""What the JAX peers share: the jitted optax train step, the loss, counting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.peers._common import LEARNING_RATE, MOMENTUM


def mean_cross_entropy(logits, labels):
    """Mean softmax cross-entropy on integer labels (optax's)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def trainer(loss_fn, params, state, x, y):
    """`step()` running one jitted SGD-momentum step of `loss_fn`.

    `loss_fn(params, state, x, y)` returns (loss, new_state): `state` holds what the
    step updates besides the parameters (BatchNorm's running averages; () when the
    model has none). The whole step (forward, backward, optimizer update, new state)
    is one `jax.jit`; `step()` blocks on every output before returning the loss.
    """
    opt = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)

    @jax.jit
    def train_step(params, state, opt_state, x, y):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

    params = jax.tree_util.tree_map(jnp.asarray, params)
    state = jax.tree_util.tree_map(jnp.asarray, state)
    carry = [params, state, opt.init(params)]
    x, y = jnp.asarray(x), jnp.asarray(y)

    def step():
        params, state, opt_state, loss = train_step(*carry, x, y)
        jax.block_until_ready((params, state, opt_state, loss))
        carry[:] = [params, state, opt_state]
        return float(loss)

    return step


def count(tree) -> int:
    """Number of scalars in the array leaves of a pytree."""
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def check_like(loaded, reference, what: str) -> None:
    """Asserts that the pytree built from the shared arrays has the structure and the
    leaf shapes of the framework's own initialisation (`reference`, e.g. from
    jax.eval_shape of its init)."""
    got = jax.tree_util.tree_structure(loaded)
    want = jax.tree_util.tree_structure(reference)
    if got != want:
        raise AssertionError(f"{what}: structure {got} differs from the framework's {want}")
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(reference)):
        if np.shape(a) != np.shape(b):
            raise AssertionError(f"{what}: a leaf of shape {np.shape(a)} where the "
                                 f"framework has {np.shape(b)}")


def versions() -> dict:
    return {"jax": jax.__version__, "optax": optax.__version__}
