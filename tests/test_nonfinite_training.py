"""Training that goes wrong: a NaN or an infinity at a known step stops `fit` with a
message naming that step and the first non-finite quantity, and the last checkpoint
written before it is intact and equal to an independent run stopped at its step.

The cases, one table: a NaN pixel in the batch of step k, an infinite pixel in the
batch of step k, a learning rate that jumps to 1e6, a NaN in the initial parameters.
Where the failing step is known by construction (the data), the test states it;
for the diverging learning rate an independent replay (plain `jax.value_and_grad` and
the optimizer, checked leaf by leaf on the host) finds it.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fcnn
from fcnn import losses
from fcnn.schedules import piecewise_constant
from fcnn.train import (
    NonFiniteError,
    fit,
    init_opt_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    make_optimizer,
    make_train_step,
)

LOSS = losses.softmax_cross_entropy
SEED = 4
N, BATCH = 96, 4  # 24 steps per epoch: every injected step is in the first epoch
STEPS_PER_EPOCH = N // BATCH
EVERY = 4  # checkpoint_every
SHAPE = (3, 3, 1)


def data():
    centers = np.random.default_rng(0).normal(size=(3,) + SHAPE).astype(np.float32) * 3
    labels = (np.arange(N) % 3).astype(np.int32)
    noise = np.random.default_rng(1).normal(size=(N,) + SHAPE).astype(np.float32) * 0.3
    return centers[labels] + noise, labels


@functools.lru_cache(maxsize=None)
def model(activation: str):
    act = {"tanh": fcnn.Tanh, "relu": fcnn.Relu}[activation]
    return fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), act(), fcnn.Dense(3))


@functools.lru_cache(maxsize=None)
def optimizer(kind: str):
    if kind == "sane":
        return make_optimizer("sgd", 0.05)
    # eleven sane steps, then a huge learning rate (the schedule's step count starts
    # at 0 and lr(t) = values[0] for t <= 10)
    values = {"diverging": [0.05, 1e6], "overflowing": [1e-3, 1e37]}[kind]
    return make_optimizer("sgd", piecewise_constant([10], values))


@functools.lru_cache(maxsize=None)
def train_step(activation: str, kind: str):
    # one compiled step per (model, optimizer), shared by every fit and replay below
    return make_train_step(model(activation), LOSS, optimizer(kind))


def init(activation: str):
    _, params, state = model(activation).init(jax.random.PRNGKey(0), (-1,) + SHAPE)
    return params, state


def example_at(step: int) -> int:
    """The example that batch `step` (1-based, first epoch) serves first.

    From the documented data order: epoch e is numpy's default_rng((seed, e))
    permutation of the examples, cut into consecutive batches."""
    order = np.random.default_rng((SEED, 0)).permutation(N)
    return int(order[(step - 1) * BATCH])


def last_good(step: int) -> int | None:
    """The last checkpoint step before `step`: every EVERY steps and every epoch end."""
    good = [s for s in range(1, step) if s % EVERY == 0 or s % STEPS_PER_EPOCH == 0]
    return good[-1] if good else None


def replay_first_nonfinite(activation: str, kind: str, params, state, images, labels):
    """Step (1-based) and description of the first non-finite quantity, found by
    stepping by hand: loss, then gradients, then updated parameters, leaf by leaf."""
    net, opt = model(activation), optimizer(kind)
    opt_state = opt.init(params)

    @jax.jit
    def one(params, opt_state, x, y):
        def objective(p):
            logits, _ = net.apply(p, state, x, train=True)
            return LOSS(logits, y)

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return loss, grads, optax.apply_updates(params, updates), opt_state

    for t in range(2 * STEPS_PER_EPOCH):
        epoch, i = divmod(t, STEPS_PER_EPOCH)
        index = np.random.default_rng((SEED, epoch)).permutation(N)[i * BATCH:(i + 1) * BATCH]
        loss, grads, params, opt_state = one(params, opt_state, images[index], labels[index])
        if not np.isfinite(float(loss)):
            return t + 1, "the loss is not finite"
        for what, tree, text in (
            ("gradient", grads, "the gradient of params{} is not finite (the loss was finite)"),
            ("parameter", params, "the updated parameter params{} is not finite (the loss and "
                                  "gradients were finite: the step was too large)"),
        ):
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
                if not np.all(np.isfinite(np.asarray(leaf))):
                    return t + 1, text.format(jax.tree_util.keystr(path))
    raise AssertionError("the replay never became non-finite: the case does not test anything")


def run_until(activation: str, kind: str, params, state, images, labels, steps: int):
    """An independent run stopped after `steps` steps: the compiled step driven by hand
    with the documented batches and keys (step t uses fold_in(PRNGKey(seed), t))."""
    step = train_step(activation, kind)
    params = jax.tree.map(jnp.copy, params)
    state = jax.tree.map(jnp.copy, state)
    opt_state = init_opt_state(optimizer(kind), params)
    rng = jax.random.PRNGKey(SEED)
    for t in range(steps):
        epoch, i = divmod(t, STEPS_PER_EPOCH)
        index = np.random.default_rng((SEED, epoch)).permutation(N)[i * BATCH:(i + 1) * BATCH]
        params, state, opt_state, _ = step(params, state, opt_state, (images[index], labels[index]),
                                           jax.random.fold_in(rng, t))
    return params, state, opt_state


# name: (activation, optimizer, how the run is spoiled, failing step or None for the
# replay's, first non-finite quantity, or for the replay's the words it must start with)
CASES = {
    # tanh carries the NaN to the logits, so the loss is the first casualty
    "nan pixel in the batch of step 16": (
        "tanh", "sane", ("images", 16, np.nan), 16, "the loss is not finite"),
    # ReLU lets NaN through (fcnn's relu keeps NaN), so the loss goes first here too
    "nan pixel in the batch of step 11, relu": (
        "relu", "sane", ("images", 11, np.nan), 11, "the loss is not finite"),
    # tanh(+-inf) = +-1 keeps the forward pass and the loss finite; its derivative
    # 1 - tanh^2 = 0 multiplies the infinite input in the first kernel's gradient
    # (inf * 0 = NaN), while the bias gradient (a sum of zeros there) stays finite
    "inf pixel in the batch of step 15": (
        "tanh", "sane", ("images", 15, np.inf), 15,
        "the gradient of params['1']['kernel'] is not finite (the loss was finite)"),
    # the weights grow by orders of magnitude per step until the logits overflow
    "learning rate 1e6 from step 12": ("relu", "diverging", None, None, "the loss is not finite"),
    # on inputs scaled by 100 the gradients are large: 1e37 times them leaves float32's
    # range in the update itself, while the loss and gradients are still finite
    "learning rate 1e37 from step 12, inputs x100": (
        "relu", "overflowing", ("scale", None, 100.0), None, "the updated parameter params["),
    "nan in the initial last-layer kernel": (
        "tanh", "sane", ("params", 1, np.nan), 1, "the loss is not finite"),
}


def spoiled(activation, spoil):
    params, state = init(activation)
    images, labels = data()
    if spoil is not None:
        where, step, value = spoil
        if where == "images":
            images[example_at(step), 1, 2, 0] = value
        elif where == "scale":
            images *= np.float32(value)
        else:
            params["3"]["kernel"] = params["3"]["kernel"].at[0, 0].set(value)
    return params, state, images, labels


@pytest.mark.parametrize("case", list(CASES))
def test_fit_stops_at_the_spoiled_step_and_keeps_the_last_good_checkpoint(tmp_path, case):
    activation, kind, spoil, step, what = CASES[case]
    params, state, images, labels = spoiled(activation, spoil)
    if step is None:
        step, found = replay_first_nonfinite(activation, kind, params, state, images, labels)
        assert step > 11 and found.startswith(what), (step, found)  # sane for eleven steps
        what = found
    # divergence=None: the non-finite checks alone (the divergence stop, which would end
    # the diverging cases earlier, is tested in test_fit_features.py)
    kw = dict(epochs=2, batch_size=BATCH, seed=SEED, checkpoint_every=EVERY, progress=False,
              log_every=25, train_step=train_step(activation, kind), divergence=None)
    result = fit(model(activation), LOSS, optimizer(kind), params, state, (images, labels),
                 out_dir=tmp_path / "stop", **kw)

    good = last_good(step)
    epoch, batch = divmod(step - 1, STEPS_PER_EPOCH)
    head = f"training stopped at step {step} (epoch {epoch + 1}, batch {batch + 1}): {what}. "
    ckpt_dir = tmp_path / "stop" / "checkpoints"
    if good is None:
        assert result.stopped == head + "No checkpoint was written before it."
        assert result.checkpoint is None and list_checkpoints(ckpt_dir) == []
    else:
        path = os.path.join(ckpt_dir, f"ckpt_{good:08d}.json")
        assert result.stopped == head + f"The last good checkpoint is {path}."
        # nothing was written at or after the failing step, even at log_every > EVERY
        assert result.checkpoint == path == latest_checkpoint(ckpt_dir)
        restored = load_checkpoint(path, params=params, state=state,
                                   opt_state=init_opt_state(optimizer(kind), params))
        assert restored["step"] == good
        assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(
            (restored["params"], restored["state"], restored["opt_state"])))
        expected = run_until(activation, kind, params, state, images, labels, good)
        for group, tree in zip(("params", "state", "opt_state"), expected):
            got, want = jax.tree_util.tree_leaves(restored[group]), jax.tree_util.tree_leaves(tree)
            assert len(got) == len(want)
            assert all(np.asarray(a).dtype == np.asarray(b).dtype
                       and np.array_equal(np.asarray(a), np.asarray(b))
                       for a, b in zip(got, want)), group

    # the same run with on_nonfinite="raise": the documented exception, the same words
    with pytest.raises(NonFiniteError) as raised:
        fit(model(activation), LOSS, optimizer(kind), params, state, (images, labels),
            out_dir=tmp_path / "raise", on_nonfinite="raise", **kw)
    assert isinstance(raised.value, FloatingPointError)
    assert str(raised.value) == result.stopped.replace(
        str(tmp_path / "stop"), str(tmp_path / "raise"))


def test_replay_agrees_with_the_stated_cases():
    """The replay finds the stated step and quantity of every case stated by hand, so
    it can be trusted for the case it decides (and the stated ones are not guesses)."""
    for case, (activation, kind, spoil, step, what) in CASES.items():
        if step is None:
            continue
        params, state, images, labels = spoiled(activation, spoil)
        found = replay_first_nonfinite(activation, kind, params, state, images, labels)
        assert found == (step, what), case


def test_checkpoint_every_needs_out_dir_and_a_positive_int():
    params, state = init("relu")
    for kwargs, match in [(dict(checkpoint_every=4), r"checkpoint_every=4 needs out_dir"),
                          (dict(checkpoint_every=0, out_dir="x"), r"checkpoint_every=0")]:
        with pytest.raises(ValueError, match=match):
            fit(model("relu"), LOSS, optimizer("sane"), params, state, data(), epochs=1,
                progress=False, **kwargs)
