"""The fit loop: learning, logs, progress bar, evaluation, and the stop on NaN/inf."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.layers.base import make_layer
from fcnn.schedules import piecewise_constant
from fcnn.train import (
    NonFiniteError,
    evaluate_step,
    fit,
    latest_checkpoint,
    load_checkpoint,
    make_eval_step,
    make_optimizer,
)

LOSS = losses.softmax_cross_entropy


def blobs(n=96, seed=0):
    """Three well separated classes of 3x3x1 'images'."""
    centers = np.random.default_rng(0).normal(size=(3, 3, 3, 1)).astype(np.float32) * 3
    rng = np.random.default_rng(seed + 1)
    labels = (np.arange(n) % 3).astype(np.int32)
    images = centers[labels] + rng.normal(size=(n, 3, 3, 1)).astype(np.float32) * 0.3
    return images, labels


def mlp():
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 3, 3, 1))
    return model, params, state


def test_fit_learns_logs_and_checkpoints(tmp_path, capsys):
    model, params, state = mlp()
    data = blobs()
    result = fit(model, LOSS, make_optimizer("adam", 0.05), params, state, data, epochs=4,
                 batch_size=16, eval_data=blobs(30, seed=1), out_dir=tmp_path, keep=2, log_every=4)
    assert result.stopped is None and result.epoch == 4 and result.step == 4 * 6
    assert result.history[-1]["eval_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert lines == result.history
    assert set(lines[0]) >= {"epoch", "step", "train_loss", "train_accuracy", "eval_loss",
                             "eval_accuracy", "learning_rate", "seconds"}
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "ckpt_00000018.json", "ckpt_00000018.npz", "ckpt_00000024.json", "ckpt_00000024.npz"]
    assert result.checkpoint == latest_checkpoint(tmp_path / "checkpoints")
    err = capsys.readouterr().err
    assert "epoch 4/4" in err and "loss=" in err and "acc=" in err
    # the caller's arrays were not donated away
    assert not params["1"]["kernel"].is_deleted()
    # a fresh run into the same directory must not mix with the old checkpoints
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run.*resume=True"):
        fit(model, LOSS, make_optimizer("adam", 0.05), params, state, data, epochs=1,
            batch_size=16, out_dir=tmp_path, progress=False)


def poison_after(calls):
    """Identity layer whose output turns NaN from its (calls + 1)-th training call on."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {"calls": jnp.zeros((), jnp.int32)}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        if not train:
            return x, state
        bad = state["calls"] >= calls
        return jnp.where(bad, jnp.nan, x), {"calls": state["calls"] + 1}

    return make_layer("poison", init, apply)


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), poison_after(8), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 3, 3, 1))
    data = blobs()  # 6 steps per epoch: the 9th step is batch 3 of epoch 2
    result = fit(model, LOSS, make_optimizer("sgd", 0.01), params, state, data, epochs=3,
                 batch_size=16, out_dir=tmp_path, progress=False, log_every=4)
    good = str(tmp_path / "checkpoints" / "ckpt_00000006.json")
    assert result.stopped == (
        f"training stopped at step 9 (epoch 2, batch 3): the loss is not finite. "
        f"The last good checkpoint is {good}.")
    assert result.epoch == 1 and result.checkpoint == good
    assert latest_checkpoint(tmp_path / "checkpoints") == good
    restored = load_checkpoint(good, params=params, state=state, opt_state=result.opt_state)
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(restored["params"]))
    assert int(restored["state"]["3"]["calls"]) == 6
    last = json.loads(open(tmp_path / "metrics.jsonl").read().splitlines()[-1])
    assert last["stopped"] == result.stopped


def test_exploding_learning_rate_raises_when_asked():
    model, params, state = mlp()
    # a sane rate for the first epoch, then an absurd one: the weights overflow
    lr = piecewise_constant([6], [0.01, 1e36])
    with pytest.raises(NonFiniteError, match=r"training stopped at step \d+ \(epoch 2, batch \d\): "
                                             r"the .* not finite"):
        fit(model, LOSS, make_optimizer("sgd", lr), params, state, blobs(), epochs=3,
            batch_size=16, progress=False, on_nonfinite="raise")


def test_nan_loss_from_the_data_is_named():
    model, params, state = mlp()
    images, labels = blobs()
    images[40] = np.nan
    result = fit(model, LOSS, make_optimizer("sgd", 0.01), params, state, (images, labels),
                 epochs=2, batch_size=16, progress=False)
    assert result.stopped is not None
    # fcnn's ReLU maps NaN to 0, so the loss can stay finite while the first layer's
    # gradient (which multiplies by the NaN input) does not
    assert ("the loss is not finite" in result.stopped
            or "the gradient of params['1']['kernel'] is not finite" in result.stopped)
    assert "No checkpoint was written" in result.stopped
    order = np.random.default_rng((0, 0)).permutation(96)
    batch = int(np.flatnonzero(order == 40)[0]) // 16
    assert f"step {batch + 1} (epoch 1, batch {batch + 1})" in result.stopped


def test_evaluate_pads_the_last_batch_and_matches_a_direct_computation():
    model, params, state = mlp()
    images, labels = blobs(37)
    ev = evaluate_step(make_eval_step(model, LOSS), params, state, images, labels, batch_size=8)
    logits, _ = model.apply(params, state, jnp.asarray(images), train=False)
    assert ev["loss"] == pytest.approx(float(LOSS(logits, jnp.asarray(labels))), rel=1e-5)
    assert ev["accuracy"] == pytest.approx(float(np.mean(np.argmax(logits, -1) == labels)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, r"epochs=0"),
    (dict(epochs=1, batch_size=0), ValueError, r"batch_size=0"),
    (dict(epochs=1, on_nonfinite="ignore"), ValueError, r"on_nonfinite='ignore'"),
    (dict(epochs=1, resume=True), ValueError, r"resume=True needs out_dir"),
    (dict(epochs=1, keep=True), ValueError, r"keep=True"),
    (dict(epochs=1, eval_data=blobs(), eval_batch_size=-2), ValueError, r"eval_batch_size=-2"),
])
def test_bad_arguments(kwargs, error, match):
    model, params, state = mlp()
    with pytest.raises(error, match=match):
        fit(model, LOSS, make_optimizer("sgd", 0.1), params, state, blobs(), progress=False,
            **kwargs)


def test_bad_data_is_a_clear_error():
    model, params, state = mlp()
    with pytest.raises(TypeError, match="train_data=dict"):
        fit(model, LOSS, make_optimizer("sgd", 0.1), params, state, {"x": 1}, epochs=1)
