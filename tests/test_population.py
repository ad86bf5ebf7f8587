"""Population training: K models in one vmapped step, each equal to training it alone."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.train import init_opt_state, make_optimizer, make_train_step
from fcnn.train.population import (
    fit_population,
    init_population,
    make_population_step,
    member,
    set_hyperparams,
)

LOSS = losses.softmax_cross_entropy
SHAPE = (-1, 5, 5, 2)


def model():
    return fcnn.serial(fcnn.Conv(3, 3), fcnn.Relu(), fcnn.Flatten(), fcnn.Dropout(0.2),
                       fcnn.Dense(3))


def batches(n_steps=4, batch=8):
    rng = np.random.default_rng(0)
    return [(jnp.asarray(rng.normal(size=(batch,) + SHAPE[1:]), jnp.float32),
             jnp.asarray(rng.integers(0, 3, size=batch), jnp.int32)) for _ in range(n_steps)]


def test_each_member_equals_the_same_model_trained_alone():
    net = model()
    seeds, lrs = (3, 11, 42), (0.05, 0.1, 0.2)
    opt = make_optimizer("momentum", 0.1)
    params, state, opt_state = init_population(net, opt, SHAPE, seeds,
                                               hyperparams={"learning_rate": lrs})
    step = make_population_step(net, LOSS, opt)
    data = batches()
    for i, batch in enumerate(data):
        rngs = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), i) for s in seeds])
        params, state, opt_state, metrics = step(params, state, opt_state, batch, rngs)
    chex.assert_shape(metrics["loss"], (3,))
    np.testing.assert_allclose(metrics["learning_rate"], lrs, rtol=1e-6)
    assert step._cache_size() == 1

    alone = make_train_step(net, LOSS, opt)
    for k, (seed, lr) in enumerate(zip(seeds, lrs)):
        _, p, s = net.init(jax.random.PRNGKey(seed), SHAPE)
        # the same as make_optimizer("momentum", lr), without compiling a step per rate
        o = set_hyperparams(init_opt_state(opt, p), {"learning_rate": lr})
        for i, batch in enumerate(data):
            p, s, o, m = alone(p, s, o, batch, jax.random.fold_in(jax.random.PRNGKey(seed), i))
        assert float(m["learning_rate"]) == pytest.approx(lr)
        chex.assert_trees_all_close(member(params, k), p, rtol=2e-5, atol=1e-6)
        assert float(metrics["loss"][k]) == pytest.approx(float(m["loss"]), rel=1e-5)


def test_population_initialisation_is_per_seed():
    net = model()
    params, _, _ = init_population(net, make_optimizer("sgd", 0.1), SHAPE, (0, 1))
    _, alone, _ = net.init(jax.random.PRNGKey(1), SHAPE)
    chex.assert_trees_all_equal(member(params, 1), alone)


def test_fit_population_in_groups_records_per_member_history():
    net = fcnn.serial(fcnn.Flatten(), fcnn.Dense(6), fcnn.Relu(), fcnn.Dense(3))
    rng = np.random.default_rng(1)
    images = rng.normal(size=(40, 5, 5, 2)).astype(np.float32)
    labels = (np.arange(40) % 3).astype(np.int32)
    result = fit_population(
        net, LOSS, make_optimizer("sgd", 0.1), (images, labels), seeds=(0, 1, 2, 3),
        population_size=2, hyperparams={"learning_rate": [0.01, 0.02, 0.05, 1e30]},
        epochs=2, batch_size=8, eval_data=(images, labels), progress=False)
    assert len(result.history) == 2
    assert all(len(result.history[0][k]) == 4
               for k in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy"))
    chex.assert_shape(result.params["1"]["kernel"], (4, 50, 6))
    # the member with an absurd learning rate diverges alone
    assert result.diverged_at[:3] == [None, None, None] and result.diverged_at[3] is not None


@pytest.mark.parametrize("kwargs, match", [
    (dict(seeds=(0, 1, 2), population_size=2), r"population_size=2 does not divide the 3 seeds"),
    (dict(seeds=(0, 1), hyperparams={"learning_rate": [0.1]}),
     r"hyperparams\['learning_rate'\] has shape \(1,\): expected one value per seed, \(2,\)"),
    (dict(seeds=(0, 1), hyperparams={"learning_rate": [0.1, -0.1]}), r"must be > 0"),
    (dict(seeds=(0, 0)), r"seeds must be distinct"),
    (dict(seeds=()), r"at least one seed"),
])
def test_bad_arguments(kwargs, match):
    images = np.zeros((16, 5, 5, 2), np.float32)
    labels = np.zeros(16, np.int32)
    with pytest.raises(ValueError, match=match):
        fit_population(model(), LOSS, make_optimizer("sgd", 0.1), (images, labels), epochs=1,
                       batch_size=8, progress=False, **kwargs)


def test_hyperparams_need_an_injecting_optimizer():
    import optax

    params = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="inject_hyperparams"):
        set_hyperparams(optax.sgd(0.1).init(params), {"learning_rate": jnp.ones(2)})
    state = make_optimizer("sgd", 0.1).init(params)
    with pytest.raises(ValueError, match="'momentum' is not a hyper-parameter"):
        set_hyperparams(state, {"momentum": jnp.ones(())})
