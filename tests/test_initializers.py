"""Initializers: fans for Dense and N-d conv kernels, empirical std of large draws
against the formulas, orthogonality, sparse connection counts, names and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn import initializers as init

KEY = jax.random.PRNGKey(0)
DENSE = (1000, 500)  # (in, out)
CONV = (3, 3, 64, 128)  # HWIO


class FanTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("dense", (20, 30), (20, 30)),
        ("conv1d", (5, 3, 8), (15, 40)),
        ("conv2d", (3, 3, 64, 128), (576, 1152)),
        ("conv3d", (2, 3, 4, 5, 6), (120, 144)),
    )
    def test_fans(self, shape, fans):
        self.assertEqual(init.compute_fans(shape), fans)

    def test_rank_one_has_no_fans(self):
        with pytest.raises(ValueError, match=r"shape=\(7,\): fans need a kernel of rank >= 2"):
            init.compute_fans((7,))


def _std(fan_in, fan_out):
    """The target standard deviation of each initializer, written from the papers."""
    return {
        "lecun_normal": math.sqrt(1 / fan_in),
        "lecun_uniform": math.sqrt(1 / fan_in),
        "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
        "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
        "glorot_normal": math.sqrt(2 / (fan_in + fan_out)),
        "glorot_uniform": math.sqrt(2 / (fan_in + fan_out)),
        "he_normal": math.sqrt(2 / fan_in),
        "he_uniform": math.sqrt(2 / fan_in),
        "kaiming_normal": math.sqrt(2 / fan_in),
        "kaiming_uniform": math.sqrt(2 / fan_in),
        "normal": 0.01,  # the notes' 0.01 * randn
        "uniform": 0.05 / math.sqrt(3),  # U(-0.05, 0.05)
    }


class VarianceTest(parameterized.TestCase):
    @parameterized.parameters(
        *[(name, CONV) for name in sorted(_std(1, 1)) if not name.startswith(("glorot", "kaiming"))],
        *[(name, DENSE) for name in ("lecun_normal", "xavier_uniform", "he_normal")],
    )
    def test_empirical_std_matches_the_formula(self, name, shape):
        fan_in, fan_out = {DENSE: (1000, 500), CONV: (576, 1152)}[shape]
        w = np.asarray(init.get(name)(KEY, shape), np.float64)
        want = _std(fan_in, fan_out)[name]
        self.assertEqual(w.shape, shape)
        # 5e5 to 1e6 draws: the standard error of the std is ~0.1 %
        self.assertAlmostEqual(w.std() / want, 1.0, delta=0.01)
        self.assertLess(abs(w.mean()), 0.01 * want)
        if "uniform" in name:  # U(-a, a) with a = sqrt(3) std
            self.assertLessEqual(np.abs(w).max(), math.sqrt(3) * want * (1 + 1e-6))
            self.assertGreater(np.abs(w).max(), 0.99 * math.sqrt(3) * want)

    def test_truncated_normal_keeps_the_variance(self):
        w = np.asarray(init.variance_scaling(2.0, "fan_in", "truncated_normal")(KEY, CONV))
        self.assertAlmostEqual(w.std() / math.sqrt(2 / 576), 1.0, delta=0.01)
        # truncated at two standard deviations of the untruncated normal
        self.assertLessEqual(np.abs(w).max(), 2 * math.sqrt(2 / 576) / 0.8796256610342398 + 1e-6)

    def test_given_std_and_dtype(self):
        w = init.normal(0.3)(KEY, (400, 500), jnp.float64)
        self.assertEqual(w.dtype, jnp.float64)
        self.assertAlmostEqual(float(w.std()), 0.3, delta=0.003)
        self.assertEqual(init.he_uniform(KEY, (4, 5), jnp.float64).dtype, jnp.float64)
        self.assertEqual(init.normal(np.float32(0.5))(KEY, (3,)).shape, (3,))

    def test_same_key_same_draw(self):
        np.testing.assert_array_equal(init.he_normal(KEY, (5, 6)), init.he_normal(KEY, (5, 6)))
        self.assertFalse(np.array_equal(init.he_normal(KEY, (5, 6)), init.he_normal(jax.random.PRNGKey(1), (5, 6))))


class OrthogonalTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("tall", (100, 30)), ("wide", (30, 100)), ("conv_wide", (3, 3, 2, 40)),
    )
    def test_orthonormal_rows_or_columns(self, shape):
        for dtype, tol in ((jnp.float32, 1e-5), (jnp.float64, 1e-12)):
            w = np.asarray(init.orthogonal(scale=2.0)(KEY, shape, dtype), np.float64) / 2.0
            m = w.reshape(-1, shape[-1])  # (fan_in, out)
            gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
            np.testing.assert_allclose(gram, np.eye(len(gram)), atol=tol)

    def test_by_name(self):
        w = np.asarray(init.get("orthogonal")(KEY, (16, 16), jnp.float64))
        np.testing.assert_allclose(w.T @ w, np.eye(16), atol=1e-12)


class SparseTest(parameterized.TestCase):
    @parameterized.named_parameters(("dense", (50, 20), 7), ("conv", (3, 3, 4, 6), 15), ("all", (5, 3), 5))
    def test_each_unit_has_exactly_k_inputs(self, shape, k):
        w = np.asarray(init.sparse(k, std=1.0)(KEY, shape))
        counts = (w.reshape(-1, shape[-1]) != 0).sum(axis=0)
        np.testing.assert_array_equal(counts, k)

    def test_connections_differ_between_units_and_weights_have_the_std(self):
        w = np.asarray(init.sparse(15, std=0.5)(KEY, (400, 300)))
        patterns = {tuple(np.flatnonzero(w[:, j])) for j in range(300)}
        self.assertGreater(len(patterns), 290)
        self.assertAlmostEqual(w[w != 0].std(), 0.5, delta=0.02)

    def test_default_is_martens_fifteen_unit_gaussian_weights_per_unit(self):
        """Martens (2010): each unit has 15 nonzero incoming weights drawn N(0, 1); the
        default and the registered name "sparse" are that."""
        for make in (init.sparse(), init.get("sparse")):
            w = np.asarray(make(KEY, (784, 500)))
            np.testing.assert_array_equal((w != 0).sum(axis=0), 15)
            self.assertAlmostEqual(w[w != 0].std(), 1.0, delta=0.03)
            self.assertAlmostEqual(w[w != 0].mean(), 0.0, delta=0.03)

    def test_too_many_connections(self):
        with pytest.raises(ValueError, match=r"num_connections=15: larger than the 10 inputs"):
            init.sparse(15)(KEY, (10, 4))


class NamesAndErrorsTest(parameterized.TestCase):
    def test_every_name_resolves(self):
        for name in init._BY_NAME:
            w = jax.eval_shape(lambda k, name=name: init.get(name)(k, (20, 10)), KEY)
            self.assertEqual((w.shape, w.dtype), ((20, 10), jnp.float32), name)
        for alias, name in (("glorot", "xavier"), ("kaiming", "he")):
            for dist in ("normal", "uniform"):
                self.assertIs(init.get(f"{alias}_{dist}"), init.get(f"{name}_{dist}"))
        self.assertIs(init.get(init.he_normal), init.he_normal)
        np.testing.assert_array_equal(init.get("zeros")(KEY, (2, 3)), 0.0)
        np.testing.assert_array_equal(init.get("ones")(KEY, (2,)), 1.0)
        np.testing.assert_array_equal(init.constant(0.35)(KEY, (2,)), np.float32(0.35))

    def test_unknown_name_lists_the_valid_ones(self):
        with pytest.raises(ValueError, match=r"initializer='xavier': unknown initializer; valid names are \[.*'he_normal'.*'xavier_uniform'"):
            init.get("xavier")
        with pytest.raises(ValueError, match=r"initializer=None: unknown initializer"):
            init.get(None)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match=r"std=-0.01: expected a finite number >= 0"):
            init.normal(-0.01)
        with pytest.raises(ValueError, match=r"std=-1: expected a finite number >= 0"):
            init.sparse(3, std=-1)
        with pytest.raises(ValueError, match=r"scale=nan"):
            init.uniform(float("nan"))
        with pytest.raises(ValueError, match=r"value='a': expected a finite number"):
            init.constant("a")
        with pytest.raises(ValueError, match=r"num_connections=0: expected a positive int"):
            init.sparse(0)
        with pytest.raises(ValueError, match=r"mode='fan_max'"):
            init.variance_scaling(1.0, "fan_max", "normal")
        with pytest.raises(ValueError, match=r"distribution='cauchy'"):
            init.variance_scaling(1.0, "fan_in", "cauchy")

    def test_layers_take_initializers_by_name(self):
        _, params, _ = fcnn.Dense(300, kernel_init="he_normal").init(KEY, (-1, 800))
        self.assertAlmostEqual(float(params["kernel"].std()) / math.sqrt(2 / 800), 1.0, delta=0.02)
        _, params, _ = fcnn.Conv(64, 3, kernel_init="xavier_uniform").init(KEY, (-1, 8, 8, 32))
        self.assertAlmostEqual(
            float(params["kernel"].std()) / math.sqrt(2 / (9 * 32 + 9 * 64)), 1.0, delta=0.03
        )
