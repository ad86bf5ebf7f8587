"""The training engine: one compiled step run over batches and per-step keys.

    for params, state, opt_state, metrics in train_steps(
            step, params, state, opt_state, batches, rng, first_step=0, count=100):
        ...

Everything that trains in fcnn runs through `train_steps`: `fit` (with its progress
bar, evaluation, checkpoints and non-finite stop), population training and the
studies. It holds the two rules that make runs repeatable:

* data order: the batches come from a `fcnn.data.BatchIterator`, whose order in epoch
  e is a function of (seed, e) only, so a run resumed at any step sees the same
  batches;
* per-step keys: the rng of step t (counted from 0 over the whole run) is
  fold_in(rng, t). For a population, `rng` has a leading member axis (K, 2) and
  member k's key is fold_in(rng[k], t): member k is the model trained alone with
  PRNGKey(seed_k).

`step(params, state, opt_state, batch, key) -> (params, state, opt_state, metrics)` is
any train step with that signature (`make_train_step`, its vmapped population form,
a sharded or ahead-of-time compiled one). The engine adds no work per step beyond
calling it: the keys are computed for all `count` steps in one call, and nothing is
pulled to the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class StepResult(NamedTuple):
    """What `train_steps` yields after each step (arrays stay on the device)."""

    params: Any
    state: Any
    opt_state: Any
    metrics: dict


def step_keys(rng, first_step: int, count: int) -> np.ndarray:
    """The keys fold_in(rng, t) for t = first_step .. first_step + count - 1, as one host
    array of shape (count, 2), or (count, K, 2) for a population's rng of shape (K, 2)."""
    rng = jnp.asarray(rng)
    steps = jnp.arange(first_step, first_step + count, dtype=jnp.uint32)
    fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))  # over steps
    if rng.ndim == 2:
        fold = jax.vmap(fold, in_axes=(0, None), out_axes=1)  # over members
    return np.asarray(fold(rng, steps))


def train_steps(step: Callable, params, state, opt_state, batches: Iterable, rng, *,
                first_step: int = 0, count: int) -> Iterator[StepResult]:
    """Runs `count` steps of `step` on the next `count` batches; yields each result.

    Step i (0-based) is global step `first_step + i` of the run and gets the key
    fold_in(rng, first_step + i) (see `step_keys`). The step donates its inputs: use
    the yielded params, state and opt_state, never the ones passed in.
    """
    keys = step_keys(rng, first_step, count)
    batches = iter(batches)
    for key in keys:
        params, state, opt_state, metrics = step(params, state, opt_state, next(batches), key)
        yield StepResult(params, state, opt_state, metrics)


__all__ = ["StepResult", "step_keys", "train_steps"]
