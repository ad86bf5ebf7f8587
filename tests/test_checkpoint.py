"""Checkpoints: round trip, rotation, atomic writes, resume, and every way to fail loudly."""

import json
import os

import jax
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.train import (
    CheckpointError,
    fit,
    init_opt_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
)
from fcnn.train import checkpoint as ckpt_module

LOSS = losses.softmax_cross_entropy


def model_and_data(hidden=8):
    # dropout uses the rng and batch norm the state: resume must restore both exactly
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(hidden), fcnn.BatchNorm(), fcnn.Relu(),
                        fcnn.Dropout(0.3), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 4, 4, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(60, 4, 4, 1)).astype(np.float32)
    labels = (np.arange(60) % 3).astype(np.int32)
    return model, params, state, (images, labels)


def trees():
    _, params, state, _ = model_and_data()
    opt = make_optimizer("adam", 1e-3)
    return params, state, init_opt_state(opt, params)


def leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    return all(np.asarray(x).tobytes() == np.asarray(y).tobytes() and np.asarray(x).dtype == np.asarray(y).dtype
               for x, y in zip(la, lb))


def test_round_trip_and_rotation(tmp_path):
    params, state, opt_state = trees()
    rng = jax.random.PRNGKey(7)
    for step in (10, 20, 30, 40):
        path = save_checkpoint(tmp_path, step, params=params, state=state, opt_state=opt_state,
                               rng=rng, position=(step // 10, 0), extra={"seed": 3}, keep=2)
    assert [os.path.basename(p) for p in list_checkpoints(tmp_path)] == [
        "ckpt_00000030.json", "ckpt_00000040.json"]
    assert sorted(os.listdir(tmp_path)) == [
        "ckpt_00000030.json", "ckpt_00000030.npz", "ckpt_00000040.json", "ckpt_00000040.npz"]
    assert latest_checkpoint(tmp_path) == path
    out = load_checkpoint(tmp_path, params=params, state=state, opt_state=opt_state)
    assert leaves_equal(out["params"], params) and leaves_equal(out["state"], state)
    assert leaves_equal(out["opt_state"], opt_state)
    assert jax.tree.structure(out["opt_state"]) == jax.tree.structure(opt_state)
    np.testing.assert_array_equal(out["rng"], rng)
    assert (out["step"], out["position"], out["extra"]) == (40, (4, 0), {"seed": 3})
    # readable without pickle, by name
    with np.load(str(path).replace(".json", ".npz"), allow_pickle=False) as data:
        assert "params['1']['kernel']" in data.files


def test_typed_keys_round_trip(tmp_path):
    params, state, opt_state = trees()
    key = jax.random.key(3)
    save_checkpoint(tmp_path, 1, params=params, state=state, opt_state=opt_state, rng=key)
    out = load_checkpoint(tmp_path, params=params, state=state, opt_state=opt_state)
    np.testing.assert_array_equal(jax.random.key_data(out["rng"]), jax.random.key_data(key))


def test_truncated_or_corrupted_checkpoint_names_the_file_and_the_previous_still_loads(tmp_path):
    params, state, opt_state = trees()
    kw = dict(params=params, state=state, opt_state=opt_state, rng=jax.random.PRNGKey(0))
    first = save_checkpoint(tmp_path, 1, **kw)
    second = save_checkpoint(tmp_path, 2, **kw)
    npz = second.replace(".json", ".npz")
    data = open(npz, "rb").read()
    with open(npz, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated
    template = dict(params=params, state=state, opt_state=opt_state)
    with pytest.raises(CheckpointError, match=r"ckpt_00000002\.npz.*corrupted or truncated"):
        load_checkpoint(second, **template)
    assert load_checkpoint(first, **template)["step"] == 1
    # a corrupted metadata file
    with open(second, "w") as f:
        f.write('{"format": "fcnn-checkpoint", "step": ')
    with pytest.raises(CheckpointError, match=r"ckpt_00000002\.json.*corrupted or truncated"):
        load_checkpoint(second, **template)
    with pytest.raises(CheckpointError, match=r"ckpt_00000099\.json.*does not exist"):
        load_checkpoint(os.path.join(tmp_path, "ckpt_00000099.json"), **template)


def test_checkpoint_from_a_different_model_names_the_first_mismatch(tmp_path):
    params, state, opt_state = trees()
    save_checkpoint(tmp_path, 5, params=params, state=state, opt_state=opt_state,
                    rng=jax.random.PRNGKey(0))
    model, other, other_state, _ = model_and_data(hidden=16)
    other_opt = init_opt_state(make_optimizer("adam", 1e-3), other)
    with pytest.raises(CheckpointError, match=r"does not fit this model: params\['1'\]\['bias'\] has "
                                               r"shape \(8,\) in the checkpoint but \(16,\) in the model"):
        load_checkpoint(tmp_path, params=other, state=other_state, opt_state=other_opt)
    smaller = {k: v for k, v in params.items() if k != "5"}
    with pytest.raises(CheckpointError, match=r"holds params\['5'\]\['bias'\].*does not have"):
        load_checkpoint(tmp_path, params=smaller, state=state, opt_state=opt_state)
    sgd_state = init_opt_state(make_optimizer("momentum", 0.1), params)
    with pytest.raises(CheckpointError, match=r"opt_state.*different model or optimizer|opt_state.*does not have"):
        load_checkpoint(tmp_path, params=params, state=state, opt_state=sgd_state)


def test_metadata_that_disagrees_with_the_arrays_is_rejected(tmp_path):
    params, state, opt_state = trees()
    path = save_checkpoint(tmp_path, 5, params=params, state=state, opt_state=opt_state,
                           rng=jax.random.PRNGKey(0), position=(1, 0))
    template = dict(params=params, state=state, opt_state=opt_state)
    original = json.load(open(path))
    for edit, match in [
        (lambda m: m.update(step=9), r"disagrees with its arrays: step 9"),
        (lambda m: m.update(position=[3, 0]), r"disagrees with its arrays.*position \[3, 0\]"),
        (lambda m: m["arrays"]["params['1']['kernel']"].update(shape=[2, 2]),
         r"disagrees with its arrays: params\['1'\]\['kernel'\]"),
        (lambda m: m["arrays"].pop("rng"), r"disagrees with its arrays.*unlisted: \['rng'\]"),
        (lambda m: m.update(format="other"), r"is not an fcnn checkpoint"),
    ]:
        metadata = json.loads(json.dumps(original))
        edit(metadata)
        with open(path, "w") as f:
            json.dump(metadata, f)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(path, **template)


@pytest.mark.parametrize("change, error, match", [
    (dict(rng=None), TypeError, r"rng=None"),
    (dict(rng=np.zeros(2, np.float32)), TypeError, r"rng of dtype float32 and shape \(2,\)"),
    (dict(position=(1,)), ValueError, r"position=\(1,\).*\(epoch, step\)"),
    (dict(position=(0, -1)), ValueError, r"position=\(0, -1\)"),
    (dict(position=(True, 0)), ValueError, r"position=\(True, 0\)"),
    (dict(keep=0), ValueError, r"keep=0"),
    (dict(extra={"when": object}), TypeError, r"extra=.*JSON"),
    (dict(params={"name": "conv", "w": np.zeros(2)}), TypeError, r"params\['name'\]='conv'"),
    (dict(state={"obj": np.array([None])}), TypeError, r"state\['obj'\].*dtype object"),
    (dict(opt_state=(jax.random.key(0),)), TypeError, r"opt_state\[0\] is a typed PRNG key"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, change, error, match):
    kw = dict(params={"w": np.zeros(2, np.float32)}, state={}, opt_state={},
              rng=jax.random.PRNGKey(0), position=(0, 0))
    kw.update(change)
    directory = tmp_path / "not-yet"
    with pytest.raises(error, match=match):
        save_checkpoint(directory, 1, **kw)
    assert not directory.exists()


def test_a_crash_while_writing_leaves_the_previous_checkpoint_as_latest(tmp_path, monkeypatch):
    params, state, opt_state = trees()
    kw = dict(params=params, state=state, opt_state=opt_state, rng=jax.random.PRNGKey(0))
    good = save_checkpoint(tmp_path, 1, **kw)

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ckpt_module.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, **kw)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt_00000001.json", "ckpt_00000001.npz"]
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(tmp_path, params=params, state=state, opt_state=opt_state)["step"] == 1


def test_resume_after_an_epoch_is_bit_identical(tmp_path):
    model, params, state, data = model_and_data()
    opt = make_optimizer("momentum", 0.05, l2=1e-3)
    kw = dict(epochs=3, batch_size=16, seed=5, progress=False, eval_data=data)
    whole = fit(model, LOSS, opt, params, state, data, **kw)
    first = fit(model, LOSS, opt, params, state, data, **dict(kw, epochs=1), out_dir=tmp_path)
    assert first.epoch == 1 and latest_checkpoint(tmp_path / "checkpoints") is not None
    resumed = fit(model, LOSS, opt, params, state, data, **kw, out_dir=tmp_path, resume=True)
    assert resumed.step == whole.step == 3 * (60 // 16)
    assert leaves_equal(resumed.params, whole.params)
    assert leaves_equal(resumed.state, whole.state)
    assert leaves_equal(resumed.opt_state, whole.opt_state)
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["train_loss"] for r in lines] == [r["train_loss"] for r in whole.history]
    # a different batch size would change the data order: refused
    with pytest.raises(ValueError, match="cannot resume.*batch_size"):
        fit(model, LOSS, opt, params, state, data, **dict(kw, batch_size=8), out_dir=tmp_path,
            resume=True)
