"""fit as a Keras, Flax or PyTorch user expects it: labels that do not fit the model
and learning rates of the wrong sign refused before training, divergence stopped like
NaN, callbacks (early stopping, keep-best, reduce-on-plateau) that survive a resume,
augmentation inside the compiled step, a clean Ctrl-C, TensorBoard event files."""

import json
import os

import jax
import numpy as np
import optax
import pytest

import fcnn
from fcnn import augment, losses
from fcnn.train import FitInterrupted, callbacks, fit, list_checkpoints, make_optimizer

LOSS = losses.softmax_cross_entropy


def data(n=64, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.int32)
    images = rng.normal(size=(n, 4, 4, 1)).astype(np.float32) + labels[:, None, None, None]
    return images, labels


def model(outputs=4):
    return fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dropout(0.1), fcnn.Dense(outputs))


def init(net, shape=(-1, 4, 4, 1)):
    _, params, state = net.init(jax.random.PRNGKey(0), shape)
    return params, state


def never_called(*args):
    raise AssertionError("training started")


@pytest.mark.parametrize("labels_shift, outputs, match", [
    (0, 3, r"train_data labels range over 0\.\.3 but the model has 3 outputs"),
    (5, 4, r"train_data labels range over 5\.\.8 but the model has 4 outputs"),
    (-1, 4, r"labels range over -1\.\.2"),
])
def test_labels_that_do_not_fit_the_model_are_refused_before_training(labels_shift, outputs, match):
    images, labels = data()
    net = model(outputs)
    params, state = init(net)
    with pytest.raises(ValueError, match=match):
        fit(net, LOSS, optax.sgd(0.1), params, state, (images, labels + labels_shift), epochs=1,
            batch_size=16, progress=False, train_step=never_called)


def test_eval_labels_are_checked_too():
    images, labels = data()
    net = model(4)
    params, state = init(net)
    with pytest.raises(ValueError, match=r"eval_data labels range over 0\.\.9 but the model has 4"):
        fit(net, LOSS, optax.sgd(0.1), params, state, (images, labels), epochs=1, batch_size=16,
            eval_data=(images, np.arange(64) % 10), progress=False, train_step=never_called)


def test_a_negative_learning_rate_is_refused_before_training():
    images, labels = data()
    net = model()
    params, state = init(net)
    with pytest.raises(ValueError, match=r"increase the loss: is the learning rate negative"):
        fit(net, LOSS, optax.sgd(-0.1), params, state, (images, labels), epochs=1, batch_size=16,
            progress=False)


def test_divergence_stops_like_a_nan(tmp_path):
    """A loss that explodes (but stays finite) stops training with the step and a
    message; the last good checkpoint is kept."""
    images, labels = data()
    net = model()
    params, state = init(net)
    growing = optax.chain(optax.scale(-1.0), optax.scale_by_schedule(lambda t: 10.0 ** (t // 4)))
    result = fit(net, LOSS, growing, params, state, (images * 100, labels), epochs=20, batch_size=16,
                 log_every=1, out_dir=tmp_path, progress=False, divergence=100.0)
    assert result.nonfinite and result.stopped
    assert "times the first step's loss" in result.stopped or "not finite" in result.stopped
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[-1]["stopped"] == result.stopped
    with pytest.raises(fcnn.train.NonFiniteError):
        fit(net, LOSS, growing, params, state, (images * 100, labels), epochs=20, batch_size=16,
            log_every=1, progress=False, divergence=100.0, on_nonfinite="raise")


def test_early_stopping_and_keep_best_survive_a_resume(tmp_path):
    images, labels = data()
    net = model()
    params, state = init(net)
    kwargs = dict(epochs=12, batch_size=16, eval_data=(images, labels), progress=False)

    def run(out, epochs, resume=False):
        cbs = [callbacks.EarlyStopping("eval_loss", patience=2, min_delta=0.5),
               callbacks.KeepBest("eval_accuracy")]
        return fit(net, LOSS, make_optimizer("sgd", 0.05), params, state, (images, labels),
                   **dict(kwargs, epochs=epochs), callbacks=cbs, out_dir=out, resume=resume), cbs

    whole, _ = run(tmp_path / "a", 12)
    assert whole.stopped and "early stopping" in whole.stopped and not whole.nonfinite
    assert whole.epoch < 12
    best = list_checkpoints(tmp_path / "a" / "checkpoints" / "best")
    assert len(best) == 1
    # the same run cut after 2 epochs and resumed: same stop, same best
    run(tmp_path / "b", 2)
    resumed, cbs = run(tmp_path / "b", 12, resume=True)
    assert (resumed.epoch, resumed.stopped) == (whole.epoch, whole.stopped)
    assert cbs[1].best == pytest.approx(max(h["eval_accuracy"] for h in whole.history))
    a = json.load(open(best[0]))
    b = json.load(open(list_checkpoints(tmp_path / "b" / "checkpoints" / "best")[0]))
    assert a["step"] == b["step"]


def test_reduce_on_plateau_lowers_the_injected_learning_rate():
    images, labels = data()
    net = model()
    params, state = init(net)
    seen = []
    result = fit(net, LOSS, make_optimizer("sgd", 0.1), params, state, (images, labels), epochs=4,
                 batch_size=16, progress=False, eval_data=(images, labels),
                 callbacks=[callbacks.ReduceOnPlateau("eval_loss", patience=0, min_delta=1e9, factor=0.5),
                            lambda record: seen.append(record["learning_rate"])])
    assert result.stopped is None
    # epoch 1 sets the best; from epoch 2 on nothing improves by 1e9: halved after each
    np.testing.assert_allclose(seen, [0.1, 0.1, 0.05, 0.025], rtol=1e-6)


def test_a_plain_function_callback_can_stop():
    images, labels = data()
    net = model()
    params, state = init(net)
    result = fit(net, LOSS, make_optimizer("sgd", 0.1), params, state, (images, labels), epochs=5,
                 batch_size=16, progress=False, callbacks=lambda r: "stop" if r["epoch"] == 2 else None)
    assert result.epoch == 2 and "stopped by the callback" in result.stopped


def test_augmentation_runs_in_the_step_and_resumes_bit_identically(tmp_path):
    images, labels = data()
    net = model()
    params, state = init(net)
    flip = augment.chain(augment.random_flip, augment.gaussian_noise)
    kwargs = dict(batch_size=16, augment=flip, progress=False, checkpoint_every=3, seed=1)
    whole = fit(net, LOSS, make_optimizer("adam", 0.01), params, state, (images, labels), epochs=3,
                out_dir=tmp_path / "a", **kwargs)
    plain = fit(net, LOSS, make_optimizer("adam", 0.01), params, state, (images, labels), epochs=3,
                **dict(kwargs, augment=None, checkpoint_every=None))
    assert not np.allclose(whole.params["1"]["kernel"], plain.params["1"]["kernel"])
    fit(net, LOSS, make_optimizer("adam", 0.01), params, state, (images, labels), epochs=1,
        out_dir=tmp_path / "b", **kwargs)
    resumed = fit(net, LOSS, make_optimizer("adam", 0.01), params, state, (images, labels), epochs=3,
                  out_dir=tmp_path / "b", resume=True, **kwargs)
    for x, y in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(resumed.params)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_ctrl_c_stops_with_one_line_and_the_result_so_far(tmp_path, capsys):
    images, labels = data()
    net = model()
    params, state = init(net)
    calls = []
    step = fcnn.train.make_train_step(net, LOSS, make_optimizer("sgd", 0.1))

    def interrupted_step(*args):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return step(*args)

    with pytest.raises(FitInterrupted) as info:
        fit(net, LOSS, make_optimizer("sgd", 0.1), params, state, (images, labels), epochs=3,
            batch_size=16, out_dir=tmp_path, progress=False, train_step=interrupted_step)
    err = capsys.readouterr().err
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.result.step == 6 and info.value.result.checkpoint.endswith(".json")
    assert "interrupted after step 6 (epoch 2, batch 2)" in err and "resume with fit(..., resume=True)" in err
    assert err.count("\n") == 1
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1]


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra (tensorboardX) is not installed")
    images, labels = data()
    net = model()
    params, state = init(net)
    fit(net, LOSS, make_optimizer("sgd", 0.1), params, state, (images, labels), epochs=2,
        batch_size=16, progress=False, out_dir=tmp_path, tensorboard=True)
    events = [f for f in os.listdir(tmp_path / "tensorboard") if f.startswith("events.out.tfevents")]
    assert len(events) == 1 and os.path.getsize(tmp_path / "tensorboard" / events[0]) > 100
