"""Per-example gradients: vmap of grad, whose mean is the batch gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.train.per_example import example_loss, per_example_grad_norms, per_example_grads

LOSS = losses.softmax_cross_entropy


def cnn():
    model = fcnn.serial(fcnn.Conv(3, 3), fcnn.Tanh(), fcnn.AvgPool(2), fcnn.Flatten(), fcnn.Dense(4))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 6, 6, 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 6, 6, 2), jnp.float32)
    y = jnp.array([0, 1, 2, 3, 0, 1, 2], jnp.int32)
    return model, params, state, (x, y)


class PerExampleTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_rows_are_single_examples_and_their_mean_is_the_batch_gradient(self):
        model, params, state, (x, y) = cnn()
        loss = example_loss(model, LOSS, state)
        grads = self.variant(lambda p, b: per_example_grads(loss, p, b))(params, (x, y))
        chex.assert_trees_all_equal_shapes(
            grads, jax.tree.map(lambda p: jnp.zeros((7,) + p.shape), params))

        def batch_loss(p):
            logits, _ = model.apply(p, state, x, train=False)
            return LOSS(logits, y)

        batch = jax.grad(batch_loss)(params)
        chex.assert_trees_all_close(jax.tree.map(lambda g: jnp.mean(g, axis=0), grads), batch,
                                    rtol=1e-5, atol=1e-6)
        for i in (0, 4):
            alone = jax.grad(loss)(params, (x[i], y[i]))
            chex.assert_trees_all_close(jax.tree.map(lambda g: g[i], grads), alone,
                                        rtol=1e-5, atol=1e-6)


def test_gradient_norms_of_a_linear_model_in_closed_form():
    """loss = 0.5 (w . x - t)^2: gradient (w . x - t) x, norm |w . x - t| ||x||."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=3)
    xs, ts = rng.normal(size=(5, 3)), rng.normal(size=5)
    grads = per_example_grads(lambda p, e: 0.5 * (jnp.dot(p["w"], e[0]) - e[1]) ** 2,
                              {"w": jnp.asarray(w)}, (jnp.asarray(xs), jnp.asarray(ts)))
    residual = xs @ w - ts
    np.testing.assert_allclose(grads["w"], residual[:, None] * xs, rtol=1e-10)
    np.testing.assert_allclose(per_example_grad_norms(grads),
                               np.abs(residual) * np.linalg.norm(xs, axis=1), rtol=1e-10)


def test_bad_batches():
    with pytest.raises(ValueError, match="sharing a leading"):
        per_example_grads(lambda p, e: 0.0, {"w": jnp.ones(2)}, (jnp.ones((3, 2)), jnp.ones(4)))
    with pytest.raises(TypeError, match="loss_fn"):
        per_example_grads(None, {"w": jnp.ones(2)}, jnp.ones((3, 2)))
