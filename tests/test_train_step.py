"""The jitted train/eval steps and the optimizer factory."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import fcnn
import fcnn.metrics
from fcnn import losses
from fcnn.train import (
    describe_nonfinite,
    init_opt_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
)
from fcnn.train.population import set_hyperparams
from fcnn.train.regularizers import kernel_mask

LOSS = losses.softmax_cross_entropy


def small_cnn():
    return fcnn.serial(fcnn.Conv(4, 3), fcnn.Relu(), fcnn.MaxPool(2), fcnn.Flatten(), fcnn.Dense(3))


def small_mlp():
    # compiles fast: most engine tests do not need convolutions
    return fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dense(3))


def setup(model=None, shape=(8, 6, 6, 2), seed=0):
    model = model or small_mlp()
    _, params, state = model.init(jax.random.PRNGKey(seed), (-1,) + shape[1:])
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), shape, jnp.float32)
    y = jnp.arange(shape[0], dtype=jnp.int32) % 3
    return model, params, state, (x, y)


def copy(tree):
    return jax.tree.map(jnp.copy, tree)


def data_loss(model, params, state, batch):
    logits, _ = model.apply(params, state, batch[0], train=True)
    return LOSS(logits, batch[1])


class TrainStepTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("lr_0.1", 0.1), ("lr_0.03", 0.03))
    def test_sgd_step_is_params_minus_lr_times_gradient(self, lr):
        model, params, state, batch = setup()
        opt = make_optimizer("sgd", lr)
        step = self.variant(make_train_step(model, LOSS, opt, jit=False))
        grads = jax.grad(lambda p: data_loss(model, p, state, batch))(params)
        want = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        new_params, _, _, metrics = step(copy(params), state, init_opt_state(opt, params), batch,
                                         jax.random.PRNGKey(0))
        chex.assert_trees_all_close(new_params, want, rtol=1e-5, atol=1e-6)
        assert float(metrics["loss"]) == pytest.approx(float(data_loss(model, params, state, batch)),
                                                       rel=1e-5)
        assert set(metrics) == {"loss", "accuracy", "learning_rate", "nonfinite"}
        assert float(metrics["learning_rate"]) == pytest.approx(lr)
        assert int(metrics["nonfinite"]) == 0

    @chex.variants(with_jit=True, without_jit=True)
    def test_eval_step_weights_ignore_padding_rows(self):
        model, params, state, (x, y) = setup()
        step = self.variant(make_eval_step(model, LOSS, jit=False))
        full = step(params, state, (x[:5], y[:5]))
        padded = step(params, state, (x, y, jnp.array([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32)))
        for key in ("loss", "accuracy"):
            assert float(padded[key]) == pytest.approx(float(full[key]), rel=1e-5)
        assert float(padded["count"]) == 5.0
        logits, _ = model.apply(params, state, x[:5], train=False)
        want = np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(y[:5]))
        assert float(full["accuracy"]) == pytest.approx(want)


def test_training_reduces_the_loss_metrics_stay_on_device_inputs_are_donated():
    model, params, state, batch = setup()
    opt = make_optimizer("adam", 0.01)
    step = make_train_step(model, LOSS, opt)
    p, s, o = copy(params), state, init_opt_state(opt, params)
    new_p, s, o, metrics = step(p, s, o, batch, jax.random.PRNGKey(0))
    assert all(isinstance(v, jax.Array) for v in metrics.values())
    assert p["1"]["kernel"].is_deleted()  # donated: its buffer now holds the new params
    assert not new_p["1"]["kernel"].is_deleted()
    first, p = float(metrics["loss"]), new_p
    for i in range(1, 30):
        p, s, o, metrics = step(p, s, o, batch, jax.random.PRNGKey(i))
    assert float(metrics["loss"]) < 0.5 * first


def test_no_retracing_across_steps_and_epochs():
    chex.clear_trace_counter()
    model, params, state, _ = setup()
    opt = make_optimizer("momentum", 0.05)
    raw = make_train_step(model, LOSS, opt, jit=False)
    step = jax.jit(chex.assert_max_traces(raw, n=1), donate_argnums=(0, 1, 2))
    eval_raw = make_eval_step(model, LOSS, jit=False)
    eval_step = jax.jit(chex.assert_max_traces(eval_raw, n=1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(70, 6, 6, 2)).astype(np.float32)
    labels = (np.arange(70) % 3).astype(np.int32)
    result = fcnn.train.fit(
        model, LOSS, opt, params, state, (images, labels), epochs=3, batch_size=16,
        eval_data=(images[:37], labels[:37]), eval_batch_size=16, progress=False,
        train_step=step, eval_step=eval_step, log_every=3,
    )
    assert result.step == 3 * (70 // 16)
    # the library's own jitted step: one compiled program after many steps
    lib_step = make_train_step(model, LOSS, opt)
    p, s, o = copy(params), state, init_opt_state(opt, params)
    for i in range(5):
        p, s, o, _ = lib_step(p, s, o, (images[:16], labels[:16]), jax.random.PRNGKey(i))
    assert lib_step._cache_size() == 1


def test_batch_that_does_not_fit_the_model_is_a_clear_error():
    model, params, state, (x, y) = setup(small_cnn())
    opt = make_optimizer("sgd", 0.1)
    step = make_train_step(model, LOSS, opt)
    bad = jnp.zeros((8, 10, 10, 2), jnp.float32)  # model initialised on 6x6
    with pytest.raises(ValueError, match=r"shape \(8, 10, 10, 2\).*params\['4'\]\['kernel'\] has "
                                         r"shape \(36, 3\) but this input needs \(100, 3\)"):
        step(copy(params), state, init_opt_state(opt, params), (bad, y), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"\(8, 6, 6, 3\) does not fit"):
        step(copy(params), state, init_opt_state(opt, params),
             (jnp.zeros((8, 6, 6, 3), jnp.float32), y), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="labels"):
        step(copy(params), state, init_opt_state(opt, params), (x, y[:3]), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"expected a batch \(images, labels\)"):
        step(copy(params), state, init_opt_state(opt, params), x, jax.random.PRNGKey(0))


def test_nonfinite_code_names_loss_gradient_or_parameter():
    model, params, state, (x, y) = setup()
    opt = make_optimizer("sgd", 0.1)
    step = make_train_step(model, LOSS, opt)
    nan_params = copy(params)
    nan_params["3"]["bias"] = nan_params["3"]["bias"].at[0].set(jnp.nan)  # NaN logits
    *_, m = step(nan_params, state, init_opt_state(opt, params), (x, y), jax.random.PRNGKey(0))
    assert describe_nonfinite(int(m["nonfinite"]), params) == "the loss is not finite"

    # a huge learning rate (injected: the same compiled step): finite loss and
    # gradients, infinite updated parameters
    huge = set_hyperparams(init_opt_state(opt, params), {"learning_rate": 1e38})
    *_, m = step(copy(params), state, huge, (x * 1e3, y), jax.random.PRNGKey(0))
    text = describe_nonfinite(int(m["nonfinite"]), params)
    assert text.startswith("the updated parameter params['") and "step was too large" in text

    # a penalty whose gradient is infinite at the current params
    inf_grad = make_train_step(model, LOSS, opt, penalty=lambda p: jnp.sum(jnp.sqrt(jnp.abs(p["3"]["bias"]))))
    *_, m = inf_grad(copy(params), state, init_opt_state(opt, params), (x, y), jax.random.PRNGKey(0))
    assert describe_nonfinite(int(m["nonfinite"]), params) == (
        "the gradient of params['3']['bias'] is not finite (the loss was finite)")


def test_penalty_is_added_to_the_objective():
    model, params, state, batch = setup()
    opt = make_optimizer("sgd", 0.1)
    lam = 0.01
    step = make_train_step(model, LOSS, opt, penalty=lambda p: lam * losses.l2_penalty(p))
    grads = jax.grad(lambda p: data_loss(model, p, state, batch)
                     + lam * 0.5 * sum(jnp.sum(w ** 2) for w in jax.tree_util.tree_leaves(p)))(params)
    new, _, _, m = step(copy(params), state, init_opt_state(opt, params), batch, jax.random.PRNGKey(0))
    chex.assert_trees_all_close(new, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads),
                                rtol=1e-5, atol=1e-6)
    assert "penalty" in m


@functools.lru_cache(maxsize=None)
def shared_grad_fn():
    """One compiled gradient for every optimizer comparison."""
    model, params, state, batch = setup()
    return params, jax.jit(jax.grad(lambda p: data_loss(model, p, state, batch)))


REFERENCE = {
    "sgd": (dict(), lambda lr: optax.sgd(lr)),
    "momentum": (dict(momentum=0.8), lambda lr: optax.sgd(lr, momentum=0.8)),
    "nesterov": (dict(momentum=0.8), lambda lr: optax.sgd(lr, momentum=0.8, nesterov=True)),
    "rmsprop": (dict(decay=0.95, eps=1e-6), lambda lr: optax.rmsprop(lr, decay=0.95, eps=1e-6)),
    "adam": (dict(b1=0.8, b2=0.99), lambda lr: optax.adam(lr, b1=0.8, b2=0.99)),
    "adamw": (dict(weight_decay=0.1),
              lambda lr: optax.adamw(lr, weight_decay=0.1, mask=kernel_mask)),
    "rprop": (dict(), lambda lr: optax.rprop(lr)),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_optimizer_matches_optax_alias(name):
    """Our chains (with injected hyper-parameters) give optax's own optimizer's updates."""
    params, grad_fn = shared_grad_fn()
    kwargs, reference = REFERENCE[name]
    ours, theirs = make_optimizer(name, 0.01, **kwargs), reference(0.01)
    p_ours, p_theirs = params, params
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for _ in range(4):
        u, s_ours = ours.update(grad_fn(p_ours), s_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, u)
        u, s_theirs = theirs.update(grad_fn(p_theirs), s_theirs, p_theirs)
        p_theirs = optax.apply_updates(p_theirs, u)
    chex.assert_trees_all_close(p_ours, p_theirs, rtol=1e-5, atol=1e-7)
    assert not np.allclose(p_ours["3"]["kernel"], params["3"]["kernel"])


@pytest.mark.parametrize("build, error, match", [
    (lambda: make_optimizer("sgd", 0.0), ValueError, r"learning_rate=0\.0: expected a learning rate > 0"),
    (lambda: make_optimizer("adam", -1e-3), ValueError, r"learning_rate=-0\.001"),
    (lambda: make_optimizer("lbfgs", 0.1), ValueError, r"optimizer 'lbfgs'"),
    (lambda: make_optimizer("momentum", 0.1, momentum=1.5), ValueError, r"momentum=1\.5"),
    (lambda: make_optimizer("sgd", 0.1, l2=-1.0), ValueError, r"l2=-1\.0"),
    (lambda: make_optimizer("rprop", 0.1, weight_decay=0.1), ValueError, r"use l2= instead"),
    (lambda: make_train_step(small_cnn(), LOSS, "adam"), TypeError, r"optimizer='adam'"),
    (lambda: make_train_step(small_cnn, LOSS, optax.sgd(0.1)), TypeError, r"expected a Layer"),
    (lambda: make_train_step(small_cnn(), None, optax.sgd(0.1)), TypeError, r"loss_fn=None"),
])
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_schedule_learning_rate_is_reported():
    model, params, state, batch = setup()
    opt = make_optimizer("sgd", fcnn.schedules.exponential_decay(0.1, 1, 0.5))
    step = make_train_step(model, LOSS, opt)
    p, s, o = copy(params), state, init_opt_state(opt, params)
    seen = []
    for i in range(3):
        p, s, o, m = step(p, s, o, batch, jax.random.PRNGKey(i))
        seen.append(float(m["learning_rate"]))
    np.testing.assert_allclose(seen, [0.1, 0.05, 0.025], rtol=1e-6)


def test_classification_metrics_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=50).astype(np.int32)
    pred = logits.argmax(-1)
    assert float(fcnn.metrics.accuracy(logits, labels)) == pytest.approx(np.mean(pred == labels))
    onehot = np.eye(4, dtype=np.float32)[labels]
    assert float(fcnn.metrics.accuracy(logits, onehot)) == pytest.approx(np.mean(pred == labels))
    top2 = np.argsort(-logits, axis=-1)[:, :2]
    assert float(fcnn.metrics.top_k_accuracy(logits, labels, 2)) == pytest.approx(
        np.mean([labels[i] in top2[i] for i in range(50)]))
    want = np.zeros((4, 4), np.int64)
    for t, p in zip(labels, pred):
        want[t, p] += 1
    np.testing.assert_array_equal(fcnn.metrics.confusion_matrix(logits, labels), want)
    with pytest.raises(ValueError, match=r"k=5: expected an int in \[1, 4\]"):
        fcnn.metrics.top_k_accuracy(logits, labels, 5)
    with pytest.raises(ValueError, match=r"labels has shape \(3,\)"):
        fcnn.metrics.accuracy(logits, labels[:3])
