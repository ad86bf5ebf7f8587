"""Dropout: the notes' example, both scaling conventions, spatial dropout, rng rules,
argument errors, and the mask rule checked against autodiff, finite differences and
the naive-loop oracle."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.layers.base import MISSING_RNG
from fcnn.ops.dropout import dropout, spatial_dropout
from tests.reference import activation_ref as ref

X10 = jnp.arange(1.0, 11.0)  # the notes' x = [1, ..., 10]


def _many(x, rate, mode, n, train=True):
    """Training outputs for n different keys, in one vmapped call."""
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    return jax.vmap(lambda k: dropout(x, rate, k, train=train, mode=mode))(keys)


class NotesExampleTest(chex.TestCase):
    def test_rate_04_zero_or_scaled_and_forty_percent_dropped(self):
        ys = np.asarray(_many(X10, 0.4, "inverted", 4000))
        x = np.asarray(X10)
        scaled = np.isclose(ys, x / 0.6, rtol=1e-12)
        zero = ys == 0
        self.assertTrue(np.all(zero | scaled))
        # 40 000 Bernoulli(0.4) draws: std of the fraction is ~0.0025
        self.assertAlmostEqual(zero.mean(), 0.4, delta=0.01)
        # and no unit is special: every position is dropped about 40% of the time
        np.testing.assert_allclose(zero.mean(axis=0), 0.4, atol=0.04)

    def test_evaluation(self):
        np.testing.assert_array_equal(dropout(X10, 0.4, train=False), X10)
        chex.assert_trees_all_close(
            dropout(X10, 0.4, train=False, mode="scale_at_test"), 0.6 * X10, atol=1e-12
        )


class ConventionTest(chex.TestCase):
    @parameterized.named_parameters(("inverted", "inverted"), ("scale_at_test", "scale_at_test"))
    def test_expected_training_activation_equals_evaluation(self, mode):
        x = jnp.linspace(0.5, 2.0, 8)
        mean_train = np.asarray(_many(x, 0.3, mode, 20000)).mean(axis=0)
        evaluation = np.asarray(dropout(x, 0.3, train=False, mode=mode))
        # per unit, the mean of 20 000 draws is within ~4 standard errors
        np.testing.assert_allclose(mean_train, evaluation, rtol=0.03)

    def test_the_two_conventions_differ_by_the_keep_probability(self):
        key = jax.random.PRNGKey(5)
        x = jnp.linspace(0.5, 2.0, 50)
        inverted = dropout(x, 0.3, key, train=True, mode="inverted")
        at_test = dropout(x, 0.3, key, train=True, mode="scale_at_test")
        chex.assert_trees_all_close(inverted * 0.7, at_test, atol=1e-12)
        ratio = dropout(x, 0.3, train=False, mode="scale_at_test") / dropout(x, 0.3, train=False)
        chex.assert_trees_all_close(ratio, 0.7 * jnp.ones(50), atol=1e-12)


class MaskRuleTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("inverted", "inverted", False), ("scale_at_test", "scale_at_test", False),
        ("spatial", "inverted", True),
    )
    def test_three_ways(self, mode, spatial):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 4)))
        g = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
        key = jax.random.PRNGKey(2)
        op = spatial_dropout if spatial else dropout

        @self.variant
        def run(x, g):
            y, vjp = jax.vjp(lambda v: op(v, 0.5, key, train=True, mode=mode), x)
            y_a, vjp_a = jax.vjp(lambda v: op(v, 0.5, key, train=True, mode=mode, backward="autodiff"), x)

            def along_g(v):
                return jnp.sum(g * op(v, 0.5, key, train=True, mode=mode, backward="autodiff"))

            eps = 1e-3  # y is linear in x: the central difference is exact up to rounding
            fd = (along_g(x + eps * g) - along_g(x - eps * g)) / (2 * eps)
            mask = op(jnp.ones_like(x), 0.5, key, train=True, mode=mode)  # the Jacobian diagonal
            return y, vjp(g)[0], y_a, vjp_a(g)[0], mask, fd

        y, dx, y_a, dx_a, mask, fd = run(x, g)
        mask = np.asarray(mask)
        kept_value = 2.0 if mode == "inverted" else 1.0
        self.assertTrue(np.all((mask == 0) | (mask == kept_value)))
        self.assertTrue(0 < (mask == 0).mean() < 1)
        if spatial:  # one value per (example, channel)
            np.testing.assert_array_equal(mask, np.broadcast_to(mask[:, :1, :1, :], x.shape))
            mask = mask[:, :1, :1, :]
        chex.assert_trees_all_close(y, y_a, ref.masked(x, mask), atol=1e-12)
        chex.assert_trees_all_close(dx, dx_a, ref.masked(g, mask), atol=1e-12)
        self.assertAlmostEqual(float(fd), float(np.sum(g * dx)), places=8)

    def test_spatial_drops_whole_channels(self):
        x = jnp.ones((16, 5, 5, 8))
        y = np.asarray(spatial_dropout(x, 0.5, jax.random.PRNGKey(0), train=True))
        per_map = y.reshape(16, 25, 8)
        self.assertTrue(np.all(per_map.min(axis=1) == per_map.max(axis=1)))
        self.assertAlmostEqual((per_map[:, 0, :] == 0).mean(), 0.5, delta=0.15)
        # 1-D and 3-D feature maps too
        for shape in ((4, 7, 3), (2, 3, 3, 3, 4)):
            y = np.asarray(spatial_dropout(jnp.ones(shape), 0.5, jax.random.PRNGKey(1), train=True))
            flat = y.reshape(shape[0], -1, shape[-1])
            self.assertTrue(np.all(flat.min(axis=1) == flat.max(axis=1)))


class RngAndRateTest(chex.TestCase):
    def test_same_rng_same_mask(self):
        x = jnp.ones((4, 6))
        a = dropout(x, 0.5, jax.random.PRNGKey(7), train=True)
        b = dropout(x, 0.5, jax.random.PRNGKey(7), train=True)
        c = dropout(x, 0.5, jax.random.PRNGKey(8), train=True)
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, c))

    def test_rate_zero_is_exactly_the_identity(self):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
        for mode in ("inverted", "scale_at_test"):
            for train in (True, False):
                np.testing.assert_array_equal(
                    dropout(x, 0.0, jax.random.PRNGKey(0), train=train, mode=mode), x
                )
        init, apply = fcnn.Dropout(0)
        np.testing.assert_array_equal(apply({}, {}, x, train=True, rng=jax.random.PRNGKey(0))[0], x)

    def test_traced_rate_vmaps_over_rates(self):
        rates = jnp.array([0.0, 0.25, 0.5])
        ys = jax.vmap(lambda r: dropout(jnp.ones(20000), r, jax.random.PRNGKey(0), train=True))(rates)
        np.testing.assert_array_equal(ys[0], 1.0)
        np.testing.assert_allclose((np.asarray(ys) == 0).mean(axis=1), [0.0, 0.25, 0.5], atol=0.02)

    @parameterized.parameters(1, 1.0, 1.5, -0.1, float("nan"))
    def test_rate_outside_the_unit_interval(self, rate):
        with pytest.raises(ValueError, match=r"rate=.*: expected a probability of dropping a unit in \[0, 1\)"):
            fcnn.Dropout(rate)
        with pytest.raises(ValueError, match=r"expected a probability of dropping a unit in \[0, 1\)"):
            dropout(X10, rate, jax.random.PRNGKey(0), train=True)

    def test_other_errors(self):
        with pytest.raises(TypeError, match=r"rate=True"):
            fcnn.Dropout(True)
        with pytest.raises(TypeError, match=r"rate='0.5'"):
            fcnn.SpatialDropout("0.5")
        with pytest.raises(ValueError, match=r"mode='scale'"):
            fcnn.Dropout(0.5, mode="scale")
        with pytest.raises(ValueError, match=r"dropout\(train=True\) needs an rng"):
            dropout(X10, 0.5, train=True)
        with pytest.raises(ValueError, match=r"shared_axes=\(3,\): axis 3 is out of range for rank 2"):
            dropout(jnp.ones((2, 3)), 0.5, jax.random.PRNGKey(0), train=True, shared_axes=(3,))
        with pytest.raises(ValueError, match=r"spatial_dropout: x has shape \(2, 3\)"):
            spatial_dropout(jnp.ones((2, 3)), 0.5, jax.random.PRNGKey(0), train=True)
        with pytest.raises(ValueError, match=r"SpatialDropout\(0.5\): input_shape=\(2, 3\)"):
            fcnn.SpatialDropout(0.5).init(jax.random.PRNGKey(0), (2, 3))


class LayerTest(chex.TestCase):
    def test_missing_rng_in_training_is_a_clear_error(self):
        for layer, name in ((fcnn.Dropout(0.5), "Dropout(0.5)"), (fcnn.SpatialDropout(0.2), "SpatialDropout(0.2)")):
            init, apply = layer
            shape, params, state = init(jax.random.PRNGKey(0), (2, 4, 4, 3))
            message = MISSING_RNG.format(layer=name)
            with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
                apply(params, state, jnp.ones(shape), train=True)
            y, new_state = apply(params, state, jnp.ones(shape), train=False)  # no rng needed
            np.testing.assert_array_equal(y, 1.0)
            self.assertEqual(new_state, {})
            with pytest.raises(TypeError, match="train='yes'"):
                apply(params, state, jnp.ones(shape), train="yes")

    def test_shapes_predicted_by_init(self):
        for layer, shape in ((fcnn.Dropout(0.5), (-1, 7)), (fcnn.Dropout(0.1, shared_axes=(1,)), (-1, 3, 4)),
                             (fcnn.SpatialDropout(0.3, mode="scale_at_test"), (-1, 4, 4, 2))):
            init, apply = layer
            out_shape, params, state = init(jax.random.PRNGKey(0), shape)
            self.assertEqual(out_shape, shape)
            x = jax.ShapeDtypeStruct((3,) + shape[1:], jnp.float32)
            for train in (True, False):
                y, _ = jax.eval_shape(
                    lambda v: apply(params, state, v, train=train, rng=jax.random.PRNGKey(1)), x
                )
                self.assertEqual((y.shape, y.dtype), (x.shape, x.dtype))

    def test_dropout_on_inputs(self):
        """Dropout as the first layer drops input pixels, raw integers included."""
        model = fcnn.serial(fcnn.Dropout(0.2), fcnn.Dense(3))
        out_shape, params, state = model.init(jax.random.PRNGKey(0), (-1, 64))
        pixels = jnp.asarray(np.random.default_rng(0).integers(1, 256, (5, 64)), jnp.uint8)
        y, _ = model.apply(params, state, pixels, train=True, rng=jax.random.PRNGKey(1))
        chex.assert_shape(y, (5, 3))
        dropped, _ = fcnn.Dropout(0.2).apply({}, {}, pixels, train=True, rng=jax.random.PRNGKey(1))
        self.assertTrue(jnp.issubdtype(dropped.dtype, jnp.floating))
        self.assertAlmostEqual(float((np.asarray(dropped) == 0).mean()), 0.2, delta=0.06)
        y_eval, _ = model.apply(params, state, pixels, train=False)
        chex.assert_trees_all_close(
            y_eval, model.apply(params, state, pixels.astype(jnp.result_type(float)), train=False)[0]
        )


class RateGradientTest(chex.TestCase):
    """The mask's cotangent: with the rate an array, autodiff differentiates the mask's
    scale 1/(1 - rate) (inverted training) or (1 - rate) (scale_at_test evaluation);
    the draw itself (uniform < 1 - rate) is piecewise constant in the rate. The hand
    rule returns sum(g * x) over the positions sharing a mask value as the mask's
    cotangent, so the gradient with respect to the rate must match autodiff and the
    closed forms below."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("inverted_train", "inverted", True, False),
        ("inverted_train_spatial", "inverted", True, True),
        ("scale_at_test_train", "scale_at_test", True, False),
        ("scale_at_test_eval", "scale_at_test", False, False),
        ("inverted_eval", "inverted", False, False),
    )
    def test_gradient_with_respect_to_the_rate(self, mode, train, spatial):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 4, 2)))
        g = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
        key = jax.random.PRNGKey(3)
        rate = jnp.asarray(0.3)
        op = spatial_dropout if spatial else dropout

        def objective(r, backward):
            return jnp.sum(g * op(x, r, key, train=train, mode=mode, backward=backward))

        @self.variant
        def grads(r):
            return (jax.grad(objective)(r, "custom"), jax.grad(objective)(r, "autodiff"),
                    op(jnp.ones_like(x), r, key, train=train, mode=mode))

        custom, autodiff, mask = grads(rate)
        kept = np.asarray(mask) != 0  # the units this key keeps at this rate
        x, g, q = np.asarray(x), np.asarray(g), 0.7
        if train and mode == "inverted":  # d/dr (kept / (1 - r)) = kept / (1 - r)^2
            want = np.sum(g * x * kept) / q**2
        elif not train and mode == "scale_at_test":  # d/dr (1 - r) = -1
            want = -np.sum(g * x)
        else:  # a mask of ones and zeros (training) or no mask at all (evaluation)
            want = 0.0
        if train:
            self.assertTrue(0 < kept.mean() < 1)
        self.assertAlmostEqual(float(custom), float(autodiff), places=12)
        self.assertAlmostEqual(float(custom), want, places=12)
        if want != 0.0:
            self.assertGreater(abs(want), 0.1)  # a zeroed mask cotangent would show
