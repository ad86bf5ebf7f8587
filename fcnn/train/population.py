"""Population training: K models trained at once with `jax.vmap` over a model axis.

Every member has its own initialisation seed, its own rng stream and its own scalar
hyper-parameters (learning rate, momentum, penalty strengths, ...), and all members
see the same batches. The K train steps become one compiled step:

    step = jax.jit(jax.vmap(train_step, in_axes=(0, 0, 0, None, 0)))
    params[K, ...], state[K, ...], opt_state[K, ...], metrics[K] = step(
        params, state, opt_state, batch, rngs[K])

Hyper-parameters are vmappable because the optimizers of `make_optimizer` are built
with `optax.inject_hyperparams`: each value is an array in `opt_state.hyperparams`,
so a population's state simply holds one value per member there.

Member k equals the same model trained alone with seed k and its hyper-parameters
(up to float reassociation in the batched kernels). A population trains through the
same engine as one model (`fcnn.train.engine.train_steps`, given the (K, 2) keys
PRNGKey(seed_k)), which gives member k the step keys of a run with seed k.

Speed: the population is one program, compiled once, dispatched once per step. On a
CPU that is not a speed-up for convolutional models: vmapping a convolution over
the model axis gives a grouped convolution, which XLA:CPU runs more slowly than K
separate ones (for refnet on 8x8 digits, batch 32, K=8: a population step took
about 2.5x the time of 8 single steps). On accelerators the batched program fills
the device, which is where it pays off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fcnn._checks import check_int, check_number, is_int
from fcnn.train.step import init_opt_state, make_eval_step, make_train_step


def _check_seeds(seeds, distinct: bool = True) -> tuple[int, ...]:
    if is_int(seeds):
        raise TypeError(f"seeds={seeds!r}: expected a sequence of ints, e.g. range(8)")
    given = tuple(seeds)
    if not given:
        raise ValueError("seeds=(): expected at least one seed")
    seeds = tuple(check_int(s, f"seeds[{k}]", low=0, hint=f"(in seeds={given!r})")
                  for k, s in enumerate(given))
    if distinct and len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r}: seeds must be distinct (or differ in their "
                         "hyperparams): two such members would train identically")
    return seeds


def _check_hyperparams(hyperparams, count: int) -> dict[str, np.ndarray]:
    out = {}
    for name, values in (hyperparams or {}).items():
        values = np.asarray(values, np.float64)
        if values.shape != (count,):
            raise ValueError(
                f"hyperparams[{name!r}] has shape {values.shape}: expected one value per "
                f"seed, ({count},)"
            )
        for k, value in enumerate(values.tolist()):
            check_number(value, f"hyperparams[{name!r}][{k}]",
                         low=0.0 if name == "learning_rate" else None,
                         low_open=name == "learning_rate")
        out[name] = values
    return out


def set_hyperparams(opt_state, values: dict):
    """Returns `opt_state` (of an `inject_hyperparams` optimizer) with hyper-parameters
    replaced by `values` (name -> array, e.g. one value per population member)."""
    current = getattr(opt_state, "hyperparams", None)
    if not isinstance(current, dict):
        raise ValueError(
            "per-member hyper-parameters need an optimizer built with optax.inject_hyperparams, "
            "e.g. fcnn.train.make_optimizer(...); this optimizer state has no `hyperparams`"
        )
    new = dict(current)
    for name, value in values.items():
        if name not in current:
            raise ValueError(
                f"hyperparams: {name!r} is not a hyper-parameter of this optimizer; it has "
                f"{sorted(current)}"
            )
        new[name] = jnp.asarray(value, jnp.result_type(current[name]))
        if new[name].shape[1:] != jnp.shape(current[name])[1:]:
            raise ValueError(f"hyperparams[{name!r}]: shape {new[name].shape} does not fit")
    return opt_state._replace(hyperparams=new)


def init_population(model, optimizer, input_shape, seeds, *, hyperparams=None, trainable=None):
    """(params, state, opt_state) of a population, every leaf with a leading axis K.

    Member k is `model.init(jax.random.PRNGKey(seeds[k]), input_shape)` with an
    optimizer state whose hyper-parameters are `hyperparams[name][k]`.
    """
    seeds = _check_seeds(seeds, distinct=False)
    values = _check_hyperparams(hyperparams, len(seeds))
    members = list(zip(seeds, *values.values()))
    if len(set(members)) != len(members):
        _check_seeds(seeds)  # the same seed and hyper-parameters twice
    input_shape = tuple(input_shape)
    # One init per seed, stacked on the host: member k is bit for bit
    # model.init(PRNGKey(seed_k)), and the initializers' small eager programs compile
    # once per shape for every member and every model with the same layer shapes,
    # which costs far less than compiling a vmapped init program per model.
    members = []
    for seed in seeds:
        _, params, state = model.init(jax.random.PRNGKey(seed), input_shape)
        members.append(jax.device_get((params, state, init_opt_state(optimizer, params, trainable))))
    params, state, opt_state = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs), *members))
    if values:
        opt_state = set_hyperparams(opt_state, values)
    return params, state, opt_state


def make_population_step(model, loss_fn, optimizer, *, trainable=None, penalty=None,
                         check_finite: bool = True, jit: bool = True):
    """The train step of `make_train_step`, vmapped over the model axis (batch shared).

    step(params[K], state[K], opt_state[K], batch, rngs[K]) -> (..., metrics[K]).
    """
    one = make_train_step(model, loss_fn, optimizer, trainable=trainable, penalty=penalty,
                          check_finite=check_finite, jit=False)
    step = jax.vmap(one, in_axes=(0, 0, 0, None, 0))
    return jax.jit(step, donate_argnums=(0, 1, 2)) if jit else step


def make_population_eval_step(model, loss_fn, *, jit: bool = True):
    """eval_step(params[K], state[K], batch) -> metrics[K]."""
    step = jax.vmap(make_eval_step(model, loss_fn, jit=False), in_axes=(0, 0, None))
    return jax.jit(step) if jit else step


def member(tree, k):
    """Member k (an int, or a slice of members) of a population pytree: every leaf
    indexed at k on axis 0."""
    return jax.tree.map(lambda x: x[k], tree)


def seed_keys(seeds) -> np.ndarray:
    """(K, 2): PRNGKey(seed_k) per member, the base keys of the engine's step keys."""
    return np.stack([np.asarray(jax.random.PRNGKey(s)) for s in _check_seeds(seeds, distinct=False)])
