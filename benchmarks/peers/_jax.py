"""The jitted optax train step shared by the JAX peers that keep params in a pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from benchmarks.peers._common import LEARNING_RATE, MOMENTUM


def mean_cross_entropy(logits, labels):
    """Mean softmax cross-entropy on integer labels (optax's)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def trainer(loss_fn, params, x, y):
    """`step()` running one jitted SGD-momentum step of `loss_fn(params, x, y)`.

    The whole step (forward, backward, optimizer update) is one `jax.jit`; `step()`
    blocks on every output before returning the loss.
    """
    opt = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = jax.tree_util.tree_map(jnp.asarray, params)
    state = [params, opt.init(params)]
    x, y = jnp.asarray(x), jnp.asarray(y)

    def step():
        params, opt_state, loss = train_step(state[0], state[1], x, y)
        jax.block_until_ready((params, opt_state, loss))
        state[0], state[1] = params, opt_state
        return float(loss)

    return step


def versions() -> dict:
    return {"jax": jax.__version__, "optax": optax.__version__}
