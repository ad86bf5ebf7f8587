"""Mixed precision: bfloat16 compute with float32 params, gradients and outputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.precision import mixed
from fcnn.train import fit, make_optimizer, predict

LOSS = losses.softmax_cross_entropy
# bfloat16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2%); through a few
# layers the errors add up to ~1% of the outputs' scale
BF16_TOL = 0.03


def small_cnn():
    model = fcnn.serial(fcnn.Conv(8, 3), fcnn.BatchNorm(), fcnn.Relu(), fcnn.MaxPool(2),
                        fcnn.Flatten(), fcnn.Dense(16), fcnn.Relu(), fcnn.Dense(4))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 8, 8, 1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 8, 8, 1)), jnp.float32)
    labels = jnp.arange(16) % 4
    return model, params, state, x, labels


def close_in_bf16(low, high):
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    scale = np.max(np.abs(high))
    assert np.max(np.abs(low - high)) <= BF16_TOL * scale, (np.max(np.abs(low - high)), scale)


def test_outputs_are_float32_and_close_to_the_float32_model():
    model, params, state, x, _ = small_cnn()
    wrapped = mixed(model)
    assert wrapped.children == (model,) and wrapped.name == "mixed[bfloat16]"
    # same params and state: init is the model's
    _, p2, s2 = wrapped.init(jax.random.PRNGKey(0), (-1, 8, 8, 1))
    chex.assert_trees_all_equal(p2, params)
    chex.assert_trees_all_equal(s2, state)
    run = jax.jit(lambda layer, p, s, x, train: layer.apply(p, s, x, train=train),
                  static_argnums=(0, 4))
    for train in (False, True):
        want, want_state = run(model, params, state, x, train)
        got, got_state = run(wrapped, params, state, x, train)
        assert got.dtype == jnp.float32
        assert not np.array_equal(got, want)  # bfloat16 did run
        close_in_bf16(got, want)
        # the running statistics keep float32 (and, in training, their float32 update)
        chex.assert_trees_all_equal_dtypes(got_state, state)
        chex.assert_trees_all_close(got_state, want_state, rtol=0.02, atol=0.02)
    # eval mode returns the state unchanged, not rounded to bfloat16
    _, same = run(wrapped, params, state, x, False)
    chex.assert_trees_all_equal(same, state)


def test_the_model_computes_in_bfloat16_inside():
    model, params, state, x, _ = small_cnn()
    jaxpr = str(jax.make_jaxpr(lambda p, s, x: mixed(model).apply(p, s, x, train=False))(
        params, state, x))
    # the convolution and both dense layers run on bfloat16 operands
    assert "bf16[16,8,8,8]" in jaxpr  # the conv's output
    assert "bf16[16,4]" in jaxpr  # the last dense layer's output
    assert "f32[16,4]" in jaxpr  # cast back


def test_gradients_reach_the_float32_params_as_float32_under_jit():
    model, params, state, x, labels = small_cnn()
    wrapped = mixed(model)

    def loss(apply, p):
        logits, _ = apply(p, state, x, train=True)
        return LOSS(logits, labels)

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def grads(p):
        return jax.grad(lambda q: loss(wrapped.apply, q))(p)

    low = grads(params)
    grads(jax.tree.map(lambda a: a * 1.01, params))  # no retrace
    high = jax.jit(jax.grad(lambda q: loss(model.apply, q)))(params)
    chex.assert_trees_all_equal_dtypes(low, params)
    flat_low = np.concatenate([np.ravel(g) for g in jax.tree.leaves(low)])
    flat_high = np.concatenate([np.ravel(g) for g in jax.tree.leaves(high)])
    cosine = flat_low @ flat_high / np.linalg.norm(flat_low) / np.linalg.norm(flat_high)
    assert cosine > 0.99, cosine


def test_mixed_trains_with_fit_and_checkpoints_fit_the_plain_model():
    centers = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype(np.float32) * 2
    labels = (np.arange(96) % 3).astype(np.int32)
    images = centers[labels] + np.random.default_rng(1).normal(
        size=(96, 8, 8, 1)).astype(np.float32) * 0.5
    model = fcnn.serial(fcnn.Conv(4, 3), fcnn.Relu(), fcnn.MaxPool(2), fcnn.Flatten(),
                        fcnn.Dense(3))
    wrapped = mixed(model)
    _, params, state = wrapped.init(jax.random.PRNGKey(0), (-1, 8, 8, 1))
    result = fit(wrapped, LOSS, make_optimizer("adam", 0.01), params, state, (images, labels),
                 epochs=3, batch_size=32, progress=False)
    chex.assert_trees_all_equal_dtypes(result.params, params)  # float32 master weights
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the trained float32 params serve the plain model and the mixed one alike
    plain = predict(model, result.params, result.state, images)
    low = predict(wrapped, result.params, result.state, images)
    assert np.mean(plain.argmax(-1) == labels) > 0.9
    assert np.mean(plain.argmax(-1) == low.argmax(-1)) > 0.95


@pytest.mark.parametrize("dtype, error, match", [
    (jnp.int8, ValueError, r"compute_dtype=int8: expected a floating-point dtype"),
    ("half-float", TypeError, r"compute_dtype='half-float'"),
])
def test_bad_compute_dtype(dtype, error, match):
    with pytest.raises(error, match=match):
        mixed(fcnn.Dense(2), compute_dtype=dtype)
    with pytest.raises(TypeError, match=r"mixed: argument 0 is 3"):
        mixed(3)
