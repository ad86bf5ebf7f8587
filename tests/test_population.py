"""Population training: K models in one vmapped step, each equal to training it alone."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.train import init_opt_state, make_optimizer, make_train_step
from fcnn.data import BatchIterator
from fcnn.train import evaluate_step, train_steps
from fcnn.train.population import (
    init_population,
    make_population_eval_step,
    make_population_step,
    member,
    seed_keys,
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


@pytest.mark.parametrize("name", ["rprop", "adam"])
def test_per_member_rates_reach_optimizers_whose_state_starts_from_the_rate(name):
    """Rprop's step sizes start at the learning rate: a member's rate set after init
    must act as if the optimizer had been built with it (optax's own optimizer at
    that rate is the reference)."""
    import optax

    net, seeds, lrs = model(), (3, 3), (0.001, 0.05)
    params, state, opt_state = init_population(net, make_optimizer(name, 0.3), SHAPE, seeds,
                                               hyperparams={"learning_rate": lrs})
    step = make_population_step(net, LOSS, make_optimizer(name, 0.3))
    data = batches()
    for i, batch in enumerate(data):
        rngs = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), i) for s in seeds])
        params, state, opt_state, _ = step(params, state, opt_state, batch, rngs)

    for k, lr in enumerate(lrs):
        reference = optax.rprop(lr) if name == "rprop" else optax.adam(lr)
        _, p, s = net.init(jax.random.PRNGKey(seeds[k]), SHAPE)
        o = reference.init(p)
        for i, batch in enumerate(data):
            def loss(p):
                logits, new_state = net.apply(p, s, batch[0], train=True,
                                              rng=jax.random.fold_in(jax.random.PRNGKey(seeds[k]), i))
                return LOSS(logits, batch[1]), new_state
            grads, s = jax.grad(loss, has_aux=True)(p)
            updates, o = reference.update(grads, o, p)
            p = optax.apply_updates(p, updates)
        chex.assert_trees_all_close(member(params, k), p, rtol=1e-5, atol=1e-6)


def test_population_initialisation_is_per_seed():
    net = model()
    params, _, _ = init_population(net, make_optimizer("sgd", 0.1), SHAPE, (0, 1))
    _, alone, _ = net.init(jax.random.PRNGKey(1), SHAPE)
    chex.assert_trees_all_equal(member(params, 1), alone)


def test_the_engine_trains_a_population_whose_members_diverge_alone():
    """A population runs through the same engine as one model; a member with an absurd
    learning rate diverges without touching the others; evaluation gives one value per
    member."""
    net = fcnn.serial(fcnn.Flatten(), fcnn.Dense(6), fcnn.Relu(), fcnn.Dense(3))
    rng = np.random.default_rng(1)
    images = rng.normal(size=(40, 5, 5, 2)).astype(np.float32)
    labels = (np.arange(40) % 3).astype(np.int32)
    seeds = (0, 1, 2, 3)
    opt = make_optimizer("sgd", 0.1)
    params, state, opt_state = init_population(
        net, opt, SHAPE, seeds, hyperparams={"learning_rate": [0.01, 0.02, 0.05, 1e30]})
    iterator = BatchIterator(images, labels, 8, seed=0)
    codes = []
    for out in train_steps(make_population_step(net, LOSS, opt), params, state, opt_state, iterator,
                           seed_keys(seeds), count=2 * iterator.steps_per_epoch):
        params, state, opt_state = out.params, out.state, out.opt_state
        codes.append(np.asarray(out.metrics["nonfinite"]))
    chex.assert_shape(params["1"]["kernel"], (4, 50, 6))
    diverged = np.any(np.stack(codes) != 0, axis=0)
    assert diverged.tolist() == [False, False, False, True]
    ev = evaluate_step(make_population_eval_step(net, LOSS), params, state, images, labels, batch_size=16)
    chex.assert_shape(ev["accuracy"], (4,))
    assert np.all(np.isfinite(ev["loss"][:3]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(seeds=(0, 1), hyperparams={"learning_rate": [0.1]}),
     r"hyperparams\['learning_rate'\] has shape \(1,\): expected one value per seed, \(2,\)"),
    (dict(seeds=(0, 1), hyperparams={"learning_rate": [0.1, -0.1]}),
     r"hyperparams\['learning_rate'\]\[1\]=-0.1: expected a finite number > 0"),
    (dict(seeds=(0, 0)), r"seeds must be distinct"),
    (dict(seeds=()), r"at least one seed"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        init_population(model(), make_optimizer("sgd", 0.1), SHAPE, **kwargs)


def test_hyperparams_need_an_injecting_optimizer():
    import optax

    params = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="inject_hyperparams"):
        set_hyperparams(optax.sgd(0.1).init(params), {"learning_rate": jnp.ones(2)})
    state = make_optimizer("sgd", 0.1).init(params)
    with pytest.raises(ValueError, match="'momentum' is not a hyper-parameter"):
        set_hyperparams(state, {"momentum": jnp.ones(())})
