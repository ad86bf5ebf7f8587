"""Inference: predict, evaluate, the label check, loading a checkpoint or a run folder
for inference (fingerprints, the best mark) and the confusion-matrix plot."""

import json
import os
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses, metrics
from fcnn.layers.base import make_layer
from fcnn.train import (
    CheckpointError,
    best_checkpoint,
    check_labels,
    evaluate,
    evaluate_step,
    fit,
    init_opt_state,
    latest_checkpoint,
    load_checkpoint,
    load_for_inference,
    make_eval_step,
    make_optimizer,
    mark_best,
    model_fingerprint,
    predict,
    remove_partial,
    save_checkpoint,
)

LOSS = losses.softmax_cross_entropy


def blobs(n=60, seed=0):
    """Three separated classes of 3x3x1 'images'."""
    centers = np.random.default_rng(0).normal(size=(3, 3, 3, 1)).astype(np.float32) * 3
    rng = np.random.default_rng(seed + 1)
    labels = (np.arange(n) % 3).astype(np.int32)
    images = centers[labels] + rng.normal(size=(n, 3, 3, 1)).astype(np.float32) * 0.3
    return images, labels


def counting(counter):
    """Identity layer that counts how often it is traced (Python calls of apply)."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, train, rng
        counter.append(1)
        return x, state

    return make_layer("counting", init, apply)


def net(hidden=8, counter=None, input_shape=(-1, 3, 3, 1)):
    layers = [fcnn.Flatten(), fcnn.Dense(hidden), fcnn.BatchNorm(), fcnn.Relu(), fcnn.Dropout(0.5),
              fcnn.Dense(3)]
    if counter is not None:
        layers.insert(0, counting(counter))
    model = fcnn.serial(*layers)
    _, params, state = model.init(jax.random.PRNGKey(0), input_shape)
    # running statistics that are not the initial ones, so eval mode is visible
    state = jax.tree.map(lambda x: x + 0.5 if x.dtype == jnp.float32 else x, state)
    return model, params, state


# ---- predict ----------------------------------------------------------------------


def test_predict_is_eval_mode_batched_padded_and_compiled_once():
    counter = []
    model, params, state = net(counter=counter)
    images, _ = blobs(37)
    want, _ = model.apply(params, state, jnp.asarray(images), train=False)
    counter.clear()
    got = predict(model, params, state, images, batch_size=8)  # 5 batches, the last padded
    assert isinstance(got, np.ndarray) and got.shape == (37, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(counter) == 1  # one trace for the 5 batches
    # same batch shape again: no new trace; a new batch shape: one more
    predict(model, params, state, images[:20], batch_size=8)
    assert len(counter) == 1
    np.testing.assert_allclose(predict(model, params, state, images, batch_size=64), want,
                               rtol=1e-5, atol=1e-6)
    assert len(counter) == 2
    # dropout is off: two calls agree exactly
    np.testing.assert_array_equal(predict(model, params, state, images, batch_size=8), got)


def test_predict_probabilities():
    model, params, state = net()
    images, _ = blobs(10)
    probs = predict(model, params, state, images, output="probabilities", batch_size=4)
    logits = predict(model, params, state, images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits, axis=-1), rtol=1e-5, atol=1e-7)
    assert probs.dtype == np.float32


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(output="probs"), ValueError, r"output='probs': expected one of \('logits', 'probabilities'\)"),
    (dict(batch_size=0), ValueError, r"batch_size=0"),
    (dict(images=np.zeros((0, 3, 3, 1), np.float32)), ValueError, r"images has shape \(0, 3, 3, 1\)"),
    (dict(images=np.zeros(5, np.float32)), ValueError, r"images has shape \(5,\).*x\[None\]"),
    (dict(images=np.array([["a"]])), TypeError, r"images has dtype <U1"),
    (dict(images=np.zeros((4, 4, 4, 1), np.float32)), ValueError,
     r"params\['1'\]\['kernel'\] has shape \(9, 8\) but this input needs \(16, 8\)"),
    (dict(model="net"), TypeError, r"model='net': expected a Layer"),
])
def test_predict_bad_arguments(kwargs, error, match):
    model, params, state = net()
    args = dict(model=model, images=blobs(4)[0])
    args.update(kwargs)
    model, images = args.pop("model"), args.pop("images")
    with pytest.raises(error, match=match):
        predict(model, params, state, images, **args)


# ---- evaluate and the label check -------------------------------------------------


def test_evaluate_matches_the_eval_step_and_the_metric_functions():
    model, params, state = net()
    images, labels = blobs(37)
    low = evaluate_step(make_eval_step(model, LOSS), params, state, images, labels, batch_size=8)
    split = SimpleNamespace(images=images, labels=labels)
    out = evaluate(model, params, state, split, batch_size=8)
    assert set(out) == {"loss", "accuracy"} and all(isinstance(v, float) for v in out.values())
    assert out["loss"] == pytest.approx(low["loss"], rel=1e-5)
    assert out["accuracy"] == pytest.approx(low["accuracy"])

    def worst_logit(logits, labels):
        del labels
        return jnp.min(logits)

    out = evaluate(model, params, state, (images, labels), batch_size=8,
                   metrics=("accuracy", "top2", "confusion", "precision", "recall", "f1",
                            worst_logit))
    logits = predict(model, params, state, images)
    confusion = np.asarray(metrics.confusion_matrix(logits, labels))
    np.testing.assert_array_equal(out["confusion"], confusion)
    assert out["confusion"].sum() == 37
    assert out["top2"] == pytest.approx(float(metrics.top_k_accuracy(logits, labels, 2)))
    for name in ("precision", "recall", "f1"):
        per_class = np.asarray(getattr(metrics, name)(logits, labels))
        np.testing.assert_allclose(out[name], per_class, rtol=1e-6)
        assert out[f"{name}_macro"] == pytest.approx(
            float(metrics.macro_average(per_class, confusion)), rel=1e-6)
    assert out["worst_logit"] == pytest.approx(float(logits.min()))


def test_evaluate_top_k_defaults_to_5_and_is_refused_beyond_the_outputs():
    model, params, state = net()
    with pytest.raises(ValueError, match=r"'top_k' asks for the top-5 accuracy but the model has 3 "
                                         r"outputs: expected k in \[1, 3\]"):
        evaluate(model, params, state, blobs(6), metrics=("top_k",))
    with pytest.raises(ValueError, match=r"metrics\[1\]='f2': unknown metric"):
        evaluate(model, params, state, blobs(6), metrics=("loss", "f2"))
    with pytest.raises(ValueError, match=r"'loss' is asked for twice"):
        evaluate(model, params, state, blobs(6), metrics=("loss", "loss"))
    with pytest.raises(TypeError, match=r"data=int"):
        evaluate(model, params, state, 3)


def test_labels_out_of_range_are_refused_before_any_work():
    counter = []
    model, params, state = net(counter=counter)
    images, labels = blobs(12)
    counter.clear()
    with pytest.raises(ValueError, match=r"labels range over 0\.\.9 but the model has 3 outputs"):
        evaluate(model, params, state, (images, np.where(labels == 2, 9, labels)))
    with pytest.raises(ValueError, match=r"labels range over -1\.\.2 but the model has 3 outputs"):
        evaluate(model, params, state, (images, np.where(labels == 0, -1, labels)))
    assert counter == []  # the model never ran
    assert check_labels(model, params, images.shape, labels) == 3
    with pytest.raises(ValueError, match=r"rows of 5 classes .* the model has 3 outputs"):
        check_labels(model, None, images.shape, np.zeros((12, 5), np.float32))
    with pytest.raises(TypeError, match=r"labels has dtype float32"):
        check_labels(model, None, images.shape, labels.astype(np.float32))
    with pytest.raises(ValueError, match=r"labels has shape \(11,\) for images of shape \(12, 3, 3, 1\)"):
        check_labels(model, None, images.shape, labels[:11])
    with pytest.raises(ValueError, match=r"does not fit the parameters"):
        check_labels(model, params, (12, 4, 4, 1), labels)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    assert check_labels(model, params, images.shape, one_hot) == 3


# ---- loading for inference --------------------------------------------------------


def _trees(hidden=8, input_shape=(-1, 3, 3, 1)):
    model, params, state = net(hidden, input_shape=input_shape)
    return model, params, state, init_opt_state(make_optimizer("adam", 1e-3), params)


def _save(directory, step, params, state, opt_state, **kw):
    return save_checkpoint(directory, step, params=params, state=state, opt_state=opt_state,
                           rng=jax.random.PRNGKey(0), **kw)


def _same(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_run_folder_of_fit_loads_for_inference_without_templates(tmp_path):
    model, params, state = net()
    data = blobs(48)
    result = fit(model, LOSS, make_optimizer("adam", 0.05), params, state, data, epochs=2,
                 batch_size=16, out_dir=tmp_path, progress=False)
    got_params, got_state = load_for_inference(tmp_path)  # the run folder: its newest
    assert _same(got_params, result.params) and _same(got_state, result.state)
    np.testing.assert_array_equal(predict(model, got_params, got_state, data[0]),
                                  predict(model, result.params, result.state, data[0]))
    # the same from the checkpoint folder, the .json and the .npz
    for path in (tmp_path / "checkpoints", result.checkpoint, result.checkpoint[:-5] + ".npz"):
        assert _same(load_for_inference(path, model=model)[0], result.params)
    printed = repr(load_checkpoint(result.checkpoint, params=params, state=state,
                                   opt_state=result.opt_state))
    assert printed == (f"Checkpoint(step=6, position=(2, 0), params=123 in 6 arrays, "
                       f"path={result.checkpoint!r})")


def test_the_fingerprint_names_what_differs(tmp_path):
    model, params, state, opt_state = _trees()
    path = _save(tmp_path, 3, params, state, opt_state, model=model)
    saved = json.load(open(path))["model"]
    assert saved == model_fingerprint(model, params)
    assert saved["count"] == 123 and saved["params"]["['1']['kernel']"] == "float32[9, 8]"
    # the same architecture built again has the same fingerprint; the values do not count
    again, other_params, _ = net()
    assert model_fingerprint(again, jax.tree.map(jnp.zeros_like, other_params)) == saved
    assert _same(load_for_inference(path, model=again, params_template=other_params)[0], params)
    wider, wider_params, _ = net(16)
    with pytest.raises(CheckpointError, match=r"saved from another model than the one given: the "
                                              r"model differs: line 3 of its layer tree is "
                                              r"'Dense\(8\)' in the checkpoint but 'Dense\(16\)'"):
        load_for_inference(path, model=wider)
    # same layers, built for 4x4 images: the parameters differ, named by path
    _, big_params, _ = net(input_shape=(-1, 4, 4, 1))
    with pytest.raises(CheckpointError, match=r"the parameters differ: params\['1'\]\['kernel'\] is "
                                              r"float32\[9, 8\] in the checkpoint but "
                                              r"float32\[16, 8\] in the params given"):
        load_for_inference(path, model=model, params_template=big_params)
    with pytest.raises(TypeError, match=r"model=3: expected a Layer"):
        load_for_inference(path, model=3)


def test_only_the_optimizer_differs_is_said_so(tmp_path):
    model, params, state, opt_state = _trees()
    path = _save(tmp_path, 3, params, state, opt_state, model=model)
    momentum = init_opt_state(make_optimizer("momentum", 0.1), params)
    with pytest.raises(CheckpointError, match=r"fits the model \(params and state\) but not this "
                                              r"optimizer state: opt_state.*different optimizer"):
        load_checkpoint(path, params=params, state=state, opt_state=momentum)
    # ... and the model alone loads, with no optimizer or rng template
    got_params, got_state = load_for_inference(path, model=model)
    assert _same(got_params, params) and _same(got_state, state)


def test_best_checkpoint_survives_rotation_and_loads_with_which_best(tmp_path):
    model, params, state, opt_state = _trees()
    folder = tmp_path / "checkpoints"
    bumped = jax.tree.map(lambda x: x + 1, params)
    best = _save(folder, 2, params, state, opt_state, keep=2)
    assert best_checkpoint(folder) is None
    pointer = mark_best(best, info={"eval_accuracy": 0.97})
    assert os.path.basename(pointer) == "best.json"
    assert json.load(open(pointer))["info"] == {"eval_accuracy": 0.97}
    for step in (4, 6, 8):
        _save(folder, step, bumped, state, opt_state, keep=2)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    assert names == ["best.json", "ckpt_00000002.json", "ckpt_00000006.json", "ckpt_00000008.json"]
    assert best_checkpoint(folder) == best
    assert latest_checkpoint(folder).endswith("ckpt_00000008.json")
    assert _same(load_for_inference(tmp_path, which="best")[0], params)
    assert _same(load_for_inference(tmp_path)[0], bumped)
    with pytest.raises(ValueError, match=r"which='best' picks a checkpoint in a folder"):
        load_for_inference(best, which="best")
    with pytest.raises(ValueError, match=r"which='newest': expected one of \('latest', 'best'\)"):
        load_for_inference(tmp_path, which="newest")
    # a temporary file of an interrupted mark is a leftover like any other
    leftover = folder / ".best.json.abc123.tmp"
    leftover.write_text("{")
    assert str(leftover) in remove_partial(folder)


def test_a_stale_or_missing_best_mark_is_an_error(tmp_path):
    model, params, state, opt_state = _trees()
    _save(tmp_path, 1, params, state, opt_state)
    with pytest.raises(CheckpointError, match=r"no best checkpoint in .*mark_best"):
        load_for_inference(tmp_path, which="best")
    mark_best(latest_checkpoint(tmp_path))
    # a fresh run writes another checkpoint under the same name: the mark is stale
    _save(tmp_path, 1, jax.tree.map(lambda x: x * 2, params), state, opt_state)
    with pytest.raises(CheckpointError, match=r"now holds another checkpoint.*stale"):
        load_for_inference(tmp_path, which="best")
    os.unlink(tmp_path / "ckpt_00000001.json")
    with pytest.raises(CheckpointError, match=r"names 'ckpt_00000001\.json', which does not exist"):
        load_for_inference(tmp_path, which="best")


def test_a_checkpoint_without_recorded_structure_needs_templates(tmp_path):
    model, params, state, opt_state = _trees()
    path = _save(tmp_path, 1, params, state, opt_state)
    metadata = json.load(open(path))
    del metadata["trees"]  # as written before the structure was recorded
    with open(path, "w") as f:
        json.dump(metadata, f)
    with pytest.raises(CheckpointError, match=r"records no structure of its params.*params_template="):
        load_for_inference(path)
    got_params, got_state = load_for_inference(path, params_template=params, state_template=state)
    assert _same(got_params, params) and _same(got_state, state)
    with pytest.raises(CheckpointError, match=r"does not fit this model: params\['1'\]\['bias'\] has "
                                              r"shape \(8,\) in the checkpoint but \(16,\)"):
        load_for_inference(path, params_template=net(16)[1], state_template=state)


# ---- the confusion-matrix plot ----------------------------------------------------


def test_plot_confusion_matrix_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from fcnn.plots import plot_confusion_matrix

    model, params, state = net()
    confusion = evaluate(model, params, state, blobs(30), metrics=("confusion",))["confusion"]
    for normalize in (None, "true", "pred"):
        path = plot_confusion_matrix(confusion, tmp_path / f"cm_{normalize}.png",
                                     class_names=["a", "b", "c"], normalize=normalize)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["cm_None.png", "cm_pred.png", "cm_true.png"]
    with pytest.raises(ValueError, match=r"class_names=\['a'\]: expected 3 names"):
        plot_confusion_matrix(confusion, tmp_path / "x.png", class_names=["a"])
    with pytest.raises(ValueError, match=r"normalize='rows'"):
        plot_confusion_matrix(confusion, tmp_path / "x.png", normalize="rows")
    with pytest.raises(ValueError, match=r"confusion has shape \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "x.png")
    assert not os.path.exists(tmp_path / "x.png")


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    from fcnn import plots

    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"fcnn.plots needs matplotlib.*pip install matplotlib"):
        plots.plot_confusion_matrix(np.eye(2), tmp_path / "cm.png")


def test_which_best_reads_the_best_folder_of_fits_keep_best(tmp_path):
    model, params, state = net()
    result = fit(model, LOSS, make_optimizer("adam", 0.05), params, state, blobs(48), epochs=3,
                 batch_size=16, eval_data=blobs(30, seed=1), out_dir=tmp_path, progress=False,
                 callbacks=[fcnn.train.KeepBest("eval_loss", mode="min")])
    best_folder = tmp_path / "checkpoints" / "best"
    kept = latest_checkpoint(best_folder)
    assert kept is not None
    template = dict(params=params, state=state, opt_state=result.opt_state)
    want = load_checkpoint(kept, **template)
    got_params, got_state = load_for_inference(tmp_path, which="best")
    assert _same(got_params, want["params"]) and _same(got_state, want["state"])
    assert best_checkpoint(tmp_path / "checkpoints") == kept
