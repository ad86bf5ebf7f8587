"""Fine-tuning: predict only, train the last layer, train everything."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.train import (
    count_trainable,
    init_opt_state,
    last_layer_path,
    make_eval_step,
    make_optimizer,
    make_train_step,
    partition,
    trainable_mask,
)

LOSS = losses.softmax_cross_entropy


def pretrained():
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(6), fcnn.BatchNorm(), fcnn.Relu(),
                        fcnn.Dense(8), fcnn.Relu(), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 5, 5, 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (12, 5, 5, 2), jnp.float32)
    y = jnp.arange(12, dtype=jnp.int32) % 3
    return model, params, state, (x, y)


def host(tree):
    return jax.tree.map(lambda a: np.array(a, copy=True), tree)


def test_masks_of_the_three_modes():
    _, params, _, _ = pretrained()
    assert all(jax.tree_util.tree_leaves(trainable_mask(params, "all")))
    assert not any(jax.tree_util.tree_leaves(trainable_mask(params, "predict")))
    last = trainable_mask(params, "last")
    assert last["6"] == {"kernel": True, "bias": True}
    assert not any(jax.tree_util.tree_leaves({k: v for k, v in last.items() if k != "6"}))
    assert count_trainable(params, last) == 8 * 3 + 3


def test_last_layer_descends_into_nested_combinators():
    model = fcnn.serial(fcnn.serial(fcnn.Flatten(), fcnn.Dense(4)),
                        fcnn.serial(fcnn.Dense(3), fcnn.Relu()))
    _, params, _ = model.init(jax.random.PRNGKey(0), (-1, 6))
    assert last_layer_path(params) == ("1", "0")


def test_train_last_layer_keeps_the_rest_bit_identical_and_stateless():
    model, params, state, batch = pretrained()
    before = host(params)
    mask = trainable_mask(params, "last")
    opt = make_optimizer("adam", 0.05)
    opt_state = init_opt_state(opt, params, mask)
    # frozen parts cost no optimizer state: Adam keeps mu and nu for 27 numbers only
    state_size = sum(np.size(x) for x in jax.tree_util.tree_leaves(opt_state))
    scalars = sum(np.size(x) for x in jax.tree_util.tree_leaves(init_opt_state(opt, {"k": jnp.zeros(1)})))
    assert state_size == 2 * count_trainable(params, mask) + scalars - 2
    step = make_train_step(model, LOSS, opt, trainable=mask)
    p = jax.tree.map(jnp.copy, params)
    for i in range(4):
        p, state, opt_state, _ = step(p, state, opt_state, batch, jax.random.PRNGKey(i))
    after = host(p)
    for path, leaf in jax.tree_util.tree_flatten_with_path(after)[0]:
        old = before
        for key in path:
            old = old[key.key]
        if path[0].key == "6":
            assert not np.array_equal(leaf, old), path
        else:  # bit for bit, not merely close
            assert leaf.tobytes() == old.tobytes(), path


def test_train_all_equals_ordinary_training():
    model, params, state, batch = pretrained()
    opt = make_optimizer("sgd", 0.1)
    a = make_train_step(model, LOSS, opt, trainable=trainable_mask(params, "all"), donate=False)
    b = make_train_step(model, LOSS, opt, donate=False)
    pa = a(params, state, init_opt_state(opt, params, trainable_mask(params, "all")), batch, None)[0]
    pb = b(params, state, init_opt_state(opt, params), batch, None)[0]
    for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_array_equal(x, y)


def test_predict_mode_trains_nothing():
    model, params, state, batch = pretrained()
    with pytest.raises(ValueError, match="nothing to train.*make_eval_step"):
        make_train_step(model, LOSS, make_optimizer("sgd", 0.1),
                        trainable=trainable_mask(params, "predict"))
    metrics = make_eval_step(model, LOSS)(params, state, batch)
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_bad_masks_and_modes():
    _, params, _, _ = pretrained()
    with pytest.raises(ValueError, match="mode='first'"):
        trainable_mask(params, "first")
    with pytest.raises(ValueError, match="structure of params"):
        partition(params, {"6": True})
    bad = jax.tree.map(lambda _: 1.0, params)
    with pytest.raises(TypeError, match="expected Python bools"):
        partition(params, bad)
    with pytest.raises(ValueError, match="no layer with parameters"):
        trainable_mask({"0": {}, "1": {}}, "last")


def test_frozen_batch_norm_runs_in_inference_mode_and_keeps_its_state():
    """Mode "last" freezes the BatchNorm: it normalizes with its running statistics (as
    Keras does for a non-trainable BatchNorm) and its state stays bit-identical; with
    "all" the same BatchNorm updates its running statistics."""
    model, params, state, batch = pretrained()
    opt = make_optimizer("sgd", 0.1)
    for mode, frozen in (("last", True), ("all", False)):
        mask = trainable_mask(params, mode)
        step = make_train_step(model, LOSS, opt, trainable=mask, donate=False)
        _, new_state, _, _ = step(params, state, init_opt_state(opt, params, mask), batch, None)
        same = all(a.tobytes() == b.tobytes() for a, b in zip(
            jax.tree_util.tree_leaves(host(new_state)), jax.tree_util.tree_leaves(host(state))))
        assert same == frozen, mode
    # the frozen step's forward pass is the evaluation forward pass
    mask = trainable_mask(params, "last")
    step = make_train_step(model, LOSS, opt, trainable=mask, donate=False)
    metrics = step(params, state, init_opt_state(opt, params, mask), batch, None)[3]
    evaluated = make_eval_step(model, LOSS)(params, state, batch)
    np.testing.assert_allclose(metrics["loss"], evaluated["loss"], rtol=1e-6)
