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
(up to float reassociation in the batched kernels).

Speed: the population is one program, compiled once, dispatched once per step. On a
CPU that is not a speed-up for convolutional models: vmapping a convolution over
the model axis gives a grouped convolution, which XLA:CPU runs more slowly than K
separate ones (for refnet on 8x8 digits, batch 32, K=8: a population step took
about 2.5x the time of 8 single steps). On accelerators the batched program fills
the device, which is where it pays off.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fcnn._checks import positive_int
from fcnn.data import BatchIterator
from fcnn.train.loop import _split_arrays, evaluate
from fcnn.train.step import init_opt_state, make_eval_step, make_train_step


def _check_seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, numbers.Integral):
        raise TypeError(f"seeds={seeds!r}: expected a sequence of ints, e.g. range(8)")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds=(): expected at least one seed")
    for s in seeds:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 0:
            raise ValueError(f"seeds={seeds!r}: every seed must be an int >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r}: seeds must be distinct")
    return tuple(int(s) for s in seeds)


def _check_hyperparams(hyperparams, count: int) -> dict[str, np.ndarray]:
    out = {}
    for name, values in (hyperparams or {}).items():
        values = np.asarray(values, np.float64)
        if values.shape != (count,):
            raise ValueError(
                f"hyperparams[{name!r}] has shape {values.shape}: expected one value per "
                f"seed, ({count},)"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"hyperparams[{name!r}]={values.tolist()}: expected finite values")
        if name == "learning_rate" and np.any(values <= 0):
            raise ValueError(
                f"hyperparams['learning_rate']={values.tolist()}: every learning rate must be > 0"
            )
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
    seeds = _check_seeds(seeds)
    values = _check_hyperparams(hyperparams, len(seeds))
    input_shape = tuple(input_shape)
    # One init per seed, stacked: member k is bit for bit model.init(PRNGKey(seed_k)),
    # and the (cached) eager init is cheaper than compiling a vmapped init program.
    members = []
    for seed in seeds:
        _, params, state = model.init(jax.random.PRNGKey(seed), input_shape)
        members.append((params, state, init_opt_state(optimizer, params, trainable)))
    params, state, opt_state = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
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


def member(tree, k: int):
    """Member k of a population pytree (every leaf indexed at k on axis 0)."""
    return jax.tree.map(lambda x: x[k], tree)


def _member_keys(seeds, first_step: int, count: int) -> np.ndarray:
    """(count, K, 2) keys: fold_in(PRNGKey(seed_k), step), as `fit` derives its keys."""
    base = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    steps = jnp.arange(first_step, first_step + count, dtype=jnp.uint32)
    per_step = jax.vmap(lambda s: jax.vmap(lambda k: jax.random.fold_in(k, s))(base))
    return np.asarray(per_step(steps))


@dataclass
class PopulationResult:
    """`fit_population`'s result: params/state with a leading axis over all seeds,
    per-epoch history with one value per seed, and the step at which each member first
    became non-finite (None if never)."""

    seeds: tuple
    params: Any
    state: Any
    history: list = field(default_factory=list)
    diverged_at: list = field(default_factory=list)


def fit_population(
    model,
    loss_fn,
    optimizer,
    train_data,
    *,
    seeds,
    epochs: int,
    batch_size: int = 64,
    input_shape=None,
    population_size: int | None = None,
    hyperparams: dict | None = None,
    data_seed: int = 0,
    eval_data=None,
    eval_batch_size: int = 256,
    trainable=None,
    penalty=None,
    progress: bool = True,
) -> PopulationResult:
    """Trains one model per seed, `population_size` of them at a time with `jax.vmap`.

    All members see the same batches (order fixed by `data_seed`); member k uses
    seed k for its initialisation and rng, and `hyperparams[name][k]` (e.g.
    "learning_rate") for its optimizer. `population_size` (default: all seeds at
    once) must divide the number of seeds; groups run one after the other through
    the same compiled step. A member that diverges (NaN/inf) is recorded in
    `diverged_at` and keeps running without affecting the others.
    """
    seeds = _check_seeds(seeds)
    epochs = positive_int(epochs, "epochs")
    population_size = len(seeds) if population_size is None else positive_int(
        population_size, "population_size")
    if len(seeds) % population_size:
        raise ValueError(
            f"population_size={population_size} does not divide the {len(seeds)} seeds "
            f"{list(seeds)}: pass a divisor of {len(seeds)} (e.g. "
            f"{math.gcd(len(seeds), population_size)}) or a multiple of {population_size} seeds"
        )
    values = _check_hyperparams(hyperparams, len(seeds))
    images, labels = _split_arrays(train_data, "train_data")
    eval_arrays = _split_arrays(eval_data, "eval_data")
    input_shape = (-1,) + tuple(np.shape(images)[1:]) if input_shape is None else tuple(input_shape)
    step = make_population_step(model, loss_fn, optimizer, trainable=trainable, penalty=penalty)
    eval_step = make_population_eval_step(model, loss_fn) if eval_arrays is not None else None

    history = [dict(epoch=e + 1, train_loss=[], train_accuracy=[]) for e in range(epochs)]
    diverged: list = []
    all_params, all_state = [], []
    groups = len(seeds) // population_size
    for g in range(groups):
        group = seeds[g * population_size:(g + 1) * population_size]
        group_values = {k: v[g * population_size:(g + 1) * population_size] for k, v in values.items()}
        params, state, opt_state = init_population(
            model, optimizer, input_shape, group, hyperparams=group_values, trainable=trainable)
        iterator = BatchIterator(images, labels, batch_size, seed=data_seed)
        spe = iterator.steps_per_epoch
        first_bad = [None] * len(group)
        global_step = 0
        for epoch in range(epochs):
            keys = _member_keys(group, global_step, spe)
            started = time.perf_counter()
            outs = []
            bar = tqdm(total=spe, desc=f"group {g + 1}/{groups} epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
            for i in range(spe):
                params, state, opt_state, m = step(params, state, opt_state, next(iterator), keys[i])
                outs.append(m)
                bar.update(1)
            bar.close()
            host = jax.device_get(outs)
            losses = np.stack([np.asarray(o["loss"], np.float64) for o in host])
            accs = np.stack([np.asarray(o["accuracy"], np.float64) for o in host])
            codes = np.stack([np.asarray(o.get("nonfinite", np.zeros(len(group))), np.int64)
                              for o in host])
            bad = (codes != 0) | ~np.isfinite(losses)
            for k in range(len(group)):
                if first_bad[k] is None and bad[:, k].any():
                    first_bad[k] = global_step + int(np.argmax(bad[:, k])) + 1
            global_step += spe
            record = history[epoch]
            record["train_loss"] += losses.mean(axis=0).tolist()
            record["train_accuracy"] += accs.mean(axis=0).tolist()
            if eval_step is not None:
                ev = evaluate(eval_step, params, state, *eval_arrays, batch_size=eval_batch_size)
                record.setdefault("eval_loss", []).extend(np.atleast_1d(ev["loss"]).tolist())
                record.setdefault("eval_accuracy", []).extend(np.atleast_1d(ev["accuracy"]).tolist())
            record.setdefault("seconds", 0.0)
            record["seconds"] += time.perf_counter() - started
        diverged += first_bad
        all_params.append(params)
        all_state.append(state)
    concat = lambda *xs: jnp.concatenate(xs, axis=0)  # noqa: E731
    return PopulationResult(
        seeds=seeds,
        params=jax.tree.map(concat, *all_params),
        state=jax.tree.map(concat, *all_state),
        history=history,
        diverged_at=diverged,
    )
