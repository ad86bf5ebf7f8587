"""Max and average pooling: the op's two paths, its hand-written backward, the layers.

Every gradient is checked three ways: against the naive-loop NumPy oracle
(tests/reference/pool_ref.py), against `jax.vjp` of the plain forward
(`backward="autodiff"`), and against central finite differences in float64 (max
pooling on inputs without ties, so that the arg-max is stable under the step).
"""

import functools
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.ops import pooling
from fcnn.ops.pooling import avg_pool, max_pool, pool, pool_output_shape
from tests.reference import derivation_pages as pages
from tests.reference import pool_ref

TOL = dict(atol=1e-12, rtol=1e-12)

# (name, x shape, window_shape, strides, padding)
CONFIGS = [
    # 1-D
    ("1d_w2", (2, 8, 3), 2, None, "VALID"),
    ("1d_w2_odd_crop", (2, 9, 3), 2, None, "VALID"),
    ("1d_w3_s1", (2, 9, 3), 3, 1, "VALID"),
    ("1d_w3_s2", (2, 9, 3), 3, 2, "VALID"),
    ("1d_w3_s2_same", (2, 9, 3), 3, 2, "SAME"),
    ("1d_w2_same_odd", (2, 9, 3), 2, None, "SAME"),
    ("1d_w3_same_nonoverlap", (2, 10, 2), 3, 3, "SAME"),
    ("1d_w4_s3_pad1", (2, 9, 3), 4, 3, 1),
    ("1d_w4_s1_same_even", (1, 7, 2), 4, 1, "SAME"),
    ("1d_w5_s1_same", (1, 7, 2), 5, 1, "SAME"),
    ("1d_w1", (2, 5, 3), 1, 1, "VALID"),
    ("1d_w2_s3_gaps", (2, 9, 3), 2, 3, "VALID"),
    ("1d_pairs", (2, 9, 3), 3, 2, ((2, 1),)),
    ("1d_window_equals_input", (2, 7, 3), 7, None, "VALID"),
    # 2-D
    ("2d_2x2", (2, 6, 6, 2), 2, None, "VALID"),
    ("2d_2x2_odd_crop", (2, 7, 8, 3), 2, 2, "VALID"),
    ("2d_3x3", (2, 6, 6, 2), 3, None, "VALID"),
    ("2d_3x3_s1", (2, 6, 6, 2), 3, 1, "VALID"),
    ("2d_3x3_s2", (2, 7, 8, 3), 3, 2, "VALID"),
    ("2d_3x3_s2_same", (2, 7, 8, 3), 3, 2, "SAME"),
    ("2d_3x3_s1_same", (2, 6, 6, 2), 3, 1, "SAME"),
    ("2d_2x2_s1", (2, 6, 6, 2), 2, 1, "VALID"),
    ("2d_2x2_s2_same_even", (2, 6, 6, 2), 2, 2, "SAME"),
    ("2d_2x2_same_odd", (1, 5, 9, 2), 2, None, "SAME"),
    ("2d_3x3_s3_same", (1, 5, 9, 2), 3, 3, "SAME"),
    ("2d_rect_nonoverlap", (2, 7, 8, 3), (2, 3), (2, 3), "VALID"),
    ("2d_rect_overlap", (2, 7, 8, 3), (3, 2), (1, 2), "VALID"),
    ("2d_strides_mixed", (2, 6, 6, 2), 2, (1, 2), "VALID"),
    ("2d_int_pad1_s2", (2, 7, 8, 3), 3, 2, 1),
    ("2d_int_pad1_nonoverlap", (2, 6, 6, 2), 2, 2, 1),
    ("2d_int_pad2_s1", (1, 5, 5, 2), 3, 1, 2),
    ("2d_pairs", (2, 7, 8, 3), 3, (1, 2), ((1, 0), (2, 1))),
    ("2d_pairs_nonoverlap", (2, 6, 6, 2), 2, None, ((1, 0), (0, 1))),
    ("2d_pairs_asym_s2", (2, 7, 8, 3), 3, 2, ((0, 1), (1, 0))),
    ("2d_stride_beyond_window", (2, 7, 8, 3), 2, 3, "VALID"),
    ("2d_window_equals_input", (2, 4, 5, 2), (4, 5), None, "VALID"),
    ("2d_1x1", (2, 5, 5, 2), 1, None, "VALID"),
    ("2d_1x1_s2", (2, 5, 5, 2), 1, 2, "VALID"),
    ("2d_4x4_s2", (2, 7, 8, 3), 4, 2, "VALID"),
    ("2d_5x5_s1_same", (1, 6, 6, 2), 5, 1, "SAME"),
    ("2d_3x3_s2_valid_odd", (2, 7, 8, 3), 3, 2, "VALID"),
    ("2d_full_rows", (2, 7, 8, 3), (1, 8), None, "VALID"),
    ("2d_notes_2x2_s2", (1, 4, 4, 1), 2, 2, "VALID"),
    ("2d_one_channel_s2_same", (3, 5, 5, 1), 3, 2, "SAME"),
    # 3-D
    ("3d_2", (2, 4, 4, 4, 1), 2, None, "VALID"),
    ("3d_2_odd_crop", (1, 5, 6, 4, 2), 2, None, "VALID"),
    ("3d_2_s1", (1, 5, 6, 4, 2), 2, 1, "VALID"),
    ("3d_2_same_odd", (1, 5, 6, 3, 2), 2, None, "SAME"),
    ("3d_3_s2_same", (1, 5, 6, 4, 2), 3, 2, "SAME"),
    ("3d_mixed", (1, 5, 6, 4, 2), (2, 3, 2), (1, 3, 2), "VALID"),
    ("3d_pad1_nonoverlap", (1, 5, 6, 4, 2), 2, 2, 1),
    ("3d_pairs", (1, 4, 5, 4, 1), (2, 2, 3), 1, ((1, 0), (0, 1), (1, 1))),
    ("3d_3_s1_same", (1, 4, 4, 4, 1), 3, 1, "SAME"),
    ("3d_1x2x2", (1, 5, 6, 4, 2), (1, 2, 2), None, "VALID"),
    ("3d_window_equals_input", (2, 3, 2, 3, 1), (3, 2, 3), None, "VALID"),
]
CONFIG_BY_NAME = {c[0]: c for c in CONFIGS}
PADDED = [c[0] for c in CONFIGS if c[4] not in ("VALID", 0)]


def _spatial(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def non_overlapping(name):
    _, shape, window, strides, _ = CONFIG_BY_NAME[name]
    ndim = len(shape) - 2
    return strides is None or _spatial(window, ndim) == _spatial(strides, ndim)



def split_sweep(sweep):
    """Every case runs jitted in `make test`; one in twelve also runs eagerly (an
    eager run compiles every small op, which would dominate the time budget). The
    split is (both ways, jitted in the first third, jitted in the rest); the rest
    used to be behind the `slow` marker, but it costs about 15 s of CPU time in all,
    well inside `make test`'s budget, and a configuration no CI run reaches proves
    nothing."""
    default = sweep[::3]
    rest = [c for i, c in enumerate(sweep) if i % 3]
    return default[::4], [c for i, c in enumerate(default) if i % 4], rest


MAX_SWEEP = [dict(testcase_name=n, name=n, count_include_pad=False) for n in CONFIG_BY_NAME]
AVG_SWEEP = MAX_SWEEP + [
    dict(testcase_name=f"{n}_count_pad", name=n, count_include_pad=True) for n in PADDED[::3]
]
MAX_BOTH, MAX_JIT, MAX_REST = split_sweep(MAX_SWEEP)
AVG_BOTH, AVG_JIT, AVG_REST = split_sweep(AVG_SWEEP)
FD_SWEEP = [
    dict(testcase_name=f"{kind}_{n}", kind=kind, name=n)
    for kind in ("max", "avg")
    for n in ["1d_w4_s3_pad1", "2d_pairs", "3d_3_s2_same"]
]
TIE_NAMES = ["2d_2x2_odd_crop", "2d_pairs_nonoverlap", "3d_2_same_odd"]
FAST_SWEEP = [
    dict(testcase_name=f"{kind}_{n}", kind=kind, name=n)
    for kind in ("max", "avg") for n in TIE_NAMES
]
XLA_TIE_SWEEP = [
    dict(testcase_name=n, name=n)
    for n in ["1d_w3_s1", "2d_3x3_s2_same", "3d_pairs"]
]


def kwargs_of(name):
    _, _, window, strides, padding = CONFIG_BY_NAME[name]
    return dict(window_shape=window, strides=strides, padding=padding)


def distinct_values(rng, shape):
    """Values spaced 0.1 apart in random order: no ties, a stable arg-max under 1e-4 steps."""
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.1 - size * 0.05).reshape(shape).astype(np.float64)


def tied_values(rng, shape):
    """Small integers: most windows hold several equal maxima."""
    return rng.integers(0, 3, size=shape).astype(np.float64)


@functools.lru_cache(maxsize=None)
def case(kind, name, count_include_pad=False):
    """Float64 input, a cotangent, and the oracle's forward and backward."""
    shape = CONFIG_BY_NAME[name][1]
    kw = kwargs_of(name)
    rng = np.random.default_rng(zlib.crc32(f"{kind}{name}".encode()))
    x = distinct_values(rng, shape) if kind == "max" else rng.normal(size=shape)
    y = pool_ref.pool_forward(x, kind, kw["window_shape"], kw["strides"], kw["padding"],
                              count_include_pad)
    g = rng.normal(size=y.shape)
    dx = pool_ref.pool_backward(x, g, kind, kw["window_shape"], kw["strides"],
                                kw["padding"], count_include_pad)
    return x, g, y, dx


def value_and_vjp(kind, kwargs, backward="custom", path="auto"):
    def f(x, g):
        y, vjp = jax.vjp(lambda x: pool(x, kind, backward=backward, path=path, **kwargs), x)
        return y, vjp(g)[0]

    return f


def all_ways(kind, kwargs, both_paths):
    """One function (one compilation per test) returning (y, dx) for the hand rule,
    for autodiff of the forward and, for disjoint windows, for the general path."""
    def f(x, g):
        out = {
            "custom": value_and_vjp(kind, kwargs)(x, g),
            "autodiff": value_and_vjp(kind, kwargs, "autodiff")(x, g),
        }
        if both_paths:
            out["general"] = value_and_vjp(kind, kwargs, path="general")(x, g)
        return out

    return f


class SweepCase(chex.TestCase):
    """One sweep case: the hand rule, autodiff and (disjoint windows) the general path
    against the oracle, in one compiled function."""

    def _check(self, kind, name, count_include_pad):
        kwargs = kwargs_of(name)
        if kind == "avg":
            kwargs["count_include_pad"] = count_include_pad
        x, g, y_ref, dx_ref = case(kind, name, count_include_pad)
        out = self.variant(all_ways(kind, kwargs, non_overlapping(name)))(x, g)
        chex.assert_shape(out["custom"][0], y_ref.shape)
        self.assertEqual(y_ref.shape, pool_output_shape(x.shape, **kwargs_of(name)))
        for way, (y, dx) in out.items():  # custom, autodiff, and general (disjoint windows)
            chex.assert_trees_all_close(y, y_ref, **TOL, custom_message=way)
            chex.assert_trees_all_close(dx, dx_ref, **TOL, custom_message=way)


class PoolSweepTest(SweepCase):
    """Both pool kinds over the sweep, against the oracle and autodiff, jitted and not."""

    def test_sweep_is_large_and_covers_every_feature(self):
        self.assertGreaterEqual(len(MAX_BOTH) + len(MAX_JIT) + len(MAX_REST), 50)
        self.assertGreaterEqual(len(AVG_BOTH) + len(AVG_JIT) + len(AVG_REST), 50)
        self.assertEqual({len(c[1]) - 2 for c in CONFIGS}, {1, 2, 3})
        self.assertEqual({type(c[4]).__name__ for c in CONFIGS}, {"str", "int", "tuple"})
        self.assertTrue(any(not non_overlapping(c[0]) for c in CONFIGS))
        self.assertGreaterEqual(sum(non_overlapping(c[0]) for c in CONFIGS), 15)
        self.assertTrue(any(c[1][1] % 2 for c in CONFIGS))  # odd sizes

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*MAX_BOTH)
    def test_max_pool_matches_oracle_and_autodiff(self, name, count_include_pad):
        self._check("max", name, count_include_pad)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*MAX_JIT)
    def test_max_pool_matches_oracle_and_autodiff_jit(self, name, count_include_pad):
        self._check("max", name, count_include_pad)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*AVG_BOTH)
    def test_avg_pool_matches_oracle_and_autodiff(self, name, count_include_pad):
        self._check("avg", name, count_include_pad)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*AVG_JIT)
    def test_avg_pool_matches_oracle_and_autodiff_jit(self, name, count_include_pad):
        self._check("avg", name, count_include_pad)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*FD_SWEEP)
    def test_central_finite_differences(self, kind, name):
        x, g, _, _ = case(kind, name)
        kwargs = kwargs_of(name)
        eps = 1e-4  # max pool inputs are 0.1 apart: no arg-max changes within the step

        def loss(x):
            return jnp.sum(pool(x, kind, **kwargs) * g)

        @self.variant
        def numeric_and_analytic(x, v):
            numeric = jax.vmap(lambda v: (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps))(v)
            analytic = jax.vmap(lambda v: jnp.vdot(jax.grad(loss)(x), v))(v)
            return numeric, analytic

        v = np.random.default_rng(2).normal(size=(3, *x.shape))  # three random directions
        numeric, analytic = numeric_and_analytic(x, v)
        np.testing.assert_allclose(numeric, analytic, rtol=1e-7, atol=1e-8)


class PoolSweepRestTest(SweepCase):
    """The other two thirds of the sweep, jitted (run by `make test` too)."""

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*MAX_REST)
    def test_max_pool_matches_oracle_and_autodiff(self, name, count_include_pad):
        self._check("max", name, count_include_pad)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*AVG_REST)
    def test_avg_pool_matches_oracle_and_autodiff(self, name, count_include_pad):
        self._check("avg", name, count_include_pad)


@pytest.mark.parametrize("kind,name", [("max", "2d_pairs_asym_s2"), ("avg", "3d_pairs")])
def test_elementwise_finite_differences(kind, name):
    x, g, _, _ = case(kind, name)
    kwargs = kwargs_of(name)
    loss = jax.jit(lambda x: jnp.sum(pool(x, kind, **kwargs) * g))
    grad = jax.grad(loss)(x)
    eps = 1e-5
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        numeric[idx] = (loss(x + step) - loss(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


class FastPathTest(chex.TestCase):
    """The blocks path (window == strides) and the reduce_window path agree exactly."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*FAST_SWEEP)
    def test_fast_path_equals_general_path_with_ties(self, kind, name):
        kwargs = kwargs_of(name)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        x = tied_values(rng, CONFIG_BY_NAME[name][1])
        g = rng.normal(size=pool_output_shape(x.shape, **kwargs))

        @self.variant
        def both(x, g):
            fast = value_and_vjp(kind, kwargs, path="fast")(x, g)
            return fast, value_and_vjp(kind, kwargs, path="general")(x, g)

        (y_fast, dx_fast), (y_gen, dx_gen) = both(x, g)
        if kind == "max":  # the same cells win: bit-identical
            np.testing.assert_array_equal(y_fast, y_gen)
            np.testing.assert_array_equal(dx_fast, dx_gen)
        else:  # sums in another order: equal up to rounding
            chex.assert_trees_all_close(y_fast, y_gen, **TOL)
            chex.assert_trees_all_close(dx_fast, dx_gen, **TOL)
        dx_ref = pool_ref.pool_backward(x, g, kind, **kwargs)
        chex.assert_trees_all_close(dx_fast, dx_ref, **TOL)

    def test_large_disjoint_windows_use_the_mask_and_agree(self):
        # prod(window) > _MAX_WALK: the blocks mask instead of the window walk
        self.assertGreater(4 * 4, pooling._MAX_WALK)
        x = tied_values(np.random.default_rng(3), (2, 8, 9, 2))
        for path in ("fast", "general"):
            g = jax.grad(lambda x: jnp.sum(pool(x, "max", 4, path=path) ** 2))(x)
            y = pool_ref.pool_forward(x, "max", 4)
            np.testing.assert_allclose(g, pool_ref.pool_backward(x, 2 * y, "max", 4), **TOL)

    def test_auto_picks_the_fast_path_for_non_overlapping_windows(self):
        cfg = pooling._config((2, 28, 28, 32), "max", 2, None, "VALID", False, "t", "auto")
        self.assertTrue(cfg.fast)
        cfg = pooling._config((2, 7, 7, 3), "avg", 2, 2, "SAME", False, "t", "auto")
        self.assertTrue(cfg.fast)
        cfg = pooling._config((2, 28, 28, 32), "max", 3, 2, "VALID", False, "t", "auto")
        self.assertFalse(cfg.fast)


class TieRuleTest(chex.TestCase):
    """The first maximum in row-major window order takes the whole gradient."""

    def grad(self, x, **kwargs):
        x = jnp.asarray(x, jnp.float64)
        return np.asarray(jax.grad(lambda x: jnp.sum(max_pool(x, **kwargs)))(x))

    def test_two_by_two_window_with_tie_across_rows(self):
        # window [[1, 3], [3, 2]]: (0, 1) comes before (1, 0) in row-major order
        x = np.array([[1.0, 3.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
        expected = np.array([[0.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
        for path in ("fast", "general"):
            g = jax.grad(lambda x: jnp.sum(pool(x, "max", 2, path=path)))(x)
            np.testing.assert_array_equal(g, expected)

    def test_constant_map_sends_gradient_to_each_window_first_cell(self):
        expected = np.zeros((1, 4, 4, 1))
        expected[0, ::2, ::2, 0] = 1.0
        np.testing.assert_array_equal(self.grad(np.ones((1, 4, 4, 1)), window_shape=2), expected)

    def test_overlapping_windows_on_constant_map(self):
        # 3x3 windows, stride 1, on 4x4 ones: windows start at (0,0), (0,1), (1,0), (1,1)
        expected = np.zeros((1, 4, 4, 1))
        expected[0, :2, :2, 0] = 1.0
        g = self.grad(np.ones((1, 4, 4, 1)), window_shape=3, strides=1)
        np.testing.assert_array_equal(g, expected)

    def test_overlapping_windows_accumulate_on_a_shared_maximum(self):
        # 1-D [0, 5, 0, 5, 0], window 3 stride 1: windows [0,5,0] [5,0,5] [0,5,0]
        x = np.array([0.0, 5.0, 0.0, 5.0, 0.0]).reshape(1, 5, 1)
        g = self.grad(x, window_shape=3, strides=1)
        np.testing.assert_array_equal(g.ravel(), [0.0, 2.0, 0.0, 1.0, 0.0])

    def test_three_d_constant_block(self):
        g = self.grad(np.full((1, 2, 2, 2, 1), 7.0), window_shape=2)
        expected = np.zeros((1, 2, 2, 2, 1))
        expected[0, 0, 0, 0, 0] = 1.0
        np.testing.assert_array_equal(g, expected)

    def test_padded_cells_never_win(self):
        # all-negative input with padding 1: the -inf padding must not take gradient
        x = -np.ones((1, 3, 3, 1))
        g = self.grad(x, window_shape=2, strides=2, padding=1)
        np.testing.assert_array_equal(g.sum(), 4.0)  # 4 windows, 4 real winners
        self.assertEqual(g[0, 0, 0, 0], 1.0)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*XLA_TIE_SWEEP)
    def test_tie_rule_matches_xla_select_and_scatter_and_oracle(self, name):
        kwargs = kwargs_of(name)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        x = tied_values(rng, CONFIG_BY_NAME[name][1])
        g = rng.normal(size=pool_output_shape(x.shape, **kwargs))
        # autodiff of reduce_window max is XLA's select-and-scatter
        _, dx, _, dx_xla = self.variant(lambda x, g: (
            *value_and_vjp("max", kwargs)(x, g),
            *value_and_vjp("max", kwargs, "autodiff", "general")(x, g),
        ))(x, g)
        chex.assert_trees_all_close(dx, dx_xla, **TOL)
        chex.assert_trees_all_close(dx, pool_ref.pool_backward(x, g, "max", **kwargs), **TOL)

    def test_autodiff_of_the_fast_path_splits_ties_evenly(self):
        # documented difference: reshape-then-max autodiff shares the gradient
        x = jnp.ones((1, 2, 2, 1), jnp.float64)
        g = jax.grad(lambda x: jnp.sum(max_pool(x, 2, backward="autodiff")))(x)
        np.testing.assert_allclose(g, np.full((1, 2, 2, 1), 0.25))


class HandComputedTest(chex.TestCase):
    """Small arange inputs with results worked out by hand."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_one_d(self):
        x = jnp.arange(6.0).reshape(1, 6, 1)
        f = self.variant(lambda x: (max_pool(x, 2), avg_pool(x, 2), max_pool(x, 3, 1)))
        y_max, y_avg, y_max3 = f(x)
        np.testing.assert_array_equal(y_max.ravel(), [1.0, 3.0, 5.0])
        np.testing.assert_array_equal(y_avg.ravel(), [0.5, 2.5, 4.5])
        np.testing.assert_array_equal(y_max3.ravel(), [2.0, 3.0, 4.0, 5.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_two_by_two_on_four_by_four(self):
        x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        y_max = self.variant(lambda x: max_pool(x, 2))(x)
        y_avg = self.variant(lambda x: avg_pool(x, 2))(x)
        np.testing.assert_array_equal(y_max[0, :, :, 0], [[5.0, 7.0], [13.0, 15.0]])
        np.testing.assert_array_equal(y_avg[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
        g = jax.grad(lambda x: jnp.sum(max_pool(x, 2)))(x)
        expected = np.zeros((4, 4))
        expected[1::2, 1::2] = 1.0
        np.testing.assert_array_equal(g[0, :, :, 0], expected)
        g = jax.grad(lambda x: jnp.sum(avg_pool(x, 2)))(x)
        np.testing.assert_array_equal(g[0, :, :, 0], np.full((4, 4), 0.25))

    @parameterized.parameters("custom", "autodiff")
    def test_worked_examples_of_the_derivation_page(self, backward):
        """docs/derivations/pooling_dense.md, "A 4x4 example with numbers", "Overlapping
        windows" and "Average pooling", read from the page: two ties decided by
        row-major order (the general path, whose autodiff is XLA's select-and-scatter,
        has the same tie rule; autodiff of the fast path splits ties, see below)."""
        page = "pooling_dense"
        ex = pages.example(page, "max_pool_4x4")
        for name in ("max_pool_4x4", "max_pool_4x4_overlapping", "avg_pool_4x4"):
            pages.check_shown(page, name)
        x = pages.array(ex["x"]).reshape(1, 4, 4, 1)
        dy = pages.array(ex["dy"]).reshape(1, 2, 2, 1)
        path = "general" if backward == "autodiff" else "auto"
        y, vjp = jax.vjp(lambda x: pool(x, "max", ex["window"], ex["strides"],
                                        backward=backward, path=path), x)
        np.testing.assert_array_equal(y[0, :, :, 0], ex["y"])
        dx = vjp(dy)[0][0, :, :, 0]
        np.testing.assert_allclose(dx, ex["dx"], rtol=0, atol=0)
        assert not np.allclose(dx, ex["dx_if_the_last_maximum_won"])

        over = pages.example(page, "max_pool_4x4_overlapping")
        y, vjp = jax.vjp(lambda x: max_pool(x, over["window"], over["strides"], backward=backward), x)
        np.testing.assert_array_equal(y[0, :, :, 0], over["y"])
        assert over["dy"] == "ones"
        np.testing.assert_array_equal(vjp(jnp.ones_like(y))[0][0, :, :, 0], over["dx"])

        avg = pages.example(page, "avg_pool_4x4")
        y, vjp = jax.vjp(lambda x: avg_pool(x, avg["window"], avg["strides"], backward=backward), x)
        np.testing.assert_array_equal(y[0, :, :, 0], avg["y"])
        per_block = np.kron(pages.array(avg["dx_per_block"]), np.ones((2, 2)))
        np.testing.assert_allclose(vjp(dy)[0][0, :, :, 0], per_block, rtol=1e-15)

    @parameterized.parameters("custom", "autodiff")
    def test_worked_one_d_ties_and_same_padding_of_the_derivation_page(self, backward):
        page = "pooling_dense"
        ties = pages.example(page, "max_pool_1d_ties")
        pages.check_shown(page, "max_pool_1d_ties")
        x = pages.array(ties["x"]).reshape(1, -1, 1)
        assert ties["dy"] == "ones"
        g = jax.grad(lambda x: jnp.sum(max_pool(x, ties["window"], ties["strides"],
                                                backward=backward)))(x)
        np.testing.assert_array_equal(g.ravel(), ties["dx"])

        same = pages.example(page, "avg_pool_same_padding")
        assert same["x"].startswith("arange(9)") and same["dy"] == "ones"
        x = jnp.arange(9.0).reshape(1, 3, 3, 1)
        kw = dict(window_shape=same["window"], strides=same["strides"], padding=same["padding"],
                  backward=backward)
        self.assertEqual(float(avg_pool(x, **kw)[0, 0, 0, 0]),
                         same["y_00_sum"] / same["y_00_divisor"])
        self.assertAlmostEqual(float(avg_pool(x, count_include_pad=True, **kw)[0, 0, 0, 0]),
                               same["y_00_sum"] / same["y_00_divisor_count_include_pad"], places=15)
        g = jax.grad(lambda x: jnp.sum(avg_pool(x, **kw)))(x)
        self.assertAlmostEqual(float(g[0, 0, 0, 0]),
                               sum(1 / d for d in same["dx_00_divisors"]), places=15)

    def test_three_by_three_stride_two_pad_one(self):
        # padded grid 6x6, windows start at padded 0 and 2, i.e. real rows/cols
        # {0, 1} and {1, 2, 3}
        x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        y = max_pool(x, 3, 2, padding=1)
        np.testing.assert_array_equal(y[0, :, :, 0], [[5.0, 7.0], [13.0, 15.0]])
        y = avg_pool(x, 3, 2, padding=1)
        # window (0, 0): cells 0, 1, 4, 5; window (0, 1): cells 1, 2, 3, 5, 6, 7
        np.testing.assert_allclose(y[0, 0, :, 0], [10.0 / 4, 24.0 / 6])
        y = avg_pool(x, 3, 2, padding=1, count_include_pad=True)
        np.testing.assert_allclose(y[0, 0, :, 0], [10.0 / 9, 24.0 / 9])

    def test_same_padding_average_counts(self):
        x = jnp.arange(9.0).reshape(1, 3, 3, 1)
        y = avg_pool(x, 3, 1, "SAME")
        # corner (0, 0) sees 0, 1, 3, 4; the centre sees all nine cells
        self.assertEqual(float(y[0, 0, 0, 0]), 2.0)
        self.assertEqual(float(y[0, 1, 1, 0]), 4.0)
        # backward, the centre cell: in all nine windows, of 4, 6, 4, 6, 9, 6, 4, 6, 4 cells
        g = jax.grad(lambda x: jnp.sum(avg_pool(x, 3, 1, "SAME")))(x)
        self.assertAlmostEqual(float(g[0, 1, 1, 0]), 4 / 4 + 4 / 6 + 1 / 9, places=15)

    def test_notes_output_size_formula(self):
        # W2 = (W1 - F) / S + 1 for pooling: 224x224x64, F=2, S=2 -> 112x112x64
        self.assertEqual(pool_output_shape((1, 224, 224, 64), 2, 2), (1, 112, 112, 64))
        self.assertEqual(pool_output_shape((-1, 7, 7, 3), 3, 2, "SAME"), (-1, 4, 4, 3))


class PoolLayerTest(chex.TestCase):
    def setUp(self):
        super().setUp()
        chex.clear_trace_counter()

    LAYERS = [
        dict(testcase_name="max_1d", layer=("MaxPool", (2,), {}), shape=(2, 9, 3)),
        dict(testcase_name="max_2d", layer=("MaxPool", (2,), {}), shape=(2, 7, 6, 3)),
        dict(testcase_name="max_3d", layer=("MaxPool", (2,), {"strides": 1}),
             shape=(1, 4, 5, 3, 2)),
        dict(testcase_name="max_same", layer=("MaxPool", (3, 2, "SAME"), {}), shape=(2, 7, 7, 2)),
        dict(testcase_name="max_pairs",
             layer=("MaxPool", ((2, 3),), {"padding": ((1, 0), (0, 2))}), shape=(2, 5, 5, 2)),
        dict(testcase_name="avg_2d", layer=("AvgPool", (3,), {"strides": 1, "padding": 1}),
             shape=(2, 6, 6, 2)),
        dict(testcase_name="avg_count_pad", layer=("AvgPool", (2,), {"padding": "SAME",
             "count_include_pad": True}), shape=(2, 5, 5, 2)),
        dict(testcase_name="avg_3d", layer=("AvgPool", ((2, 2, 1),), {}),
             shape=(1, 4, 4, 3, 2)),
    ]

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*LAYERS)
    def test_init_shape_equals_apply_shape(self, layer, shape):
        name, args, kwargs = layer
        init, apply = getattr(fcnn, name)(*args, **kwargs)
        out_shape, params, state = init(jax.random.PRNGKey(0), (-1,) + shape[1:])
        self.assertEqual((params, state), ({}, {}))
        x = np.random.default_rng(0).normal(size=shape)
        y, new_state = self.variant(lambda x: apply(params, state, x, train=True))(x)
        self.assertEqual(y.shape, (shape[0],) + tuple(out_shape[1:]))
        self.assertEqual(out_shape[0], -1)
        self.assertEqual(new_state, {})

    def test_two_by_two_max_pool_stride_two_halves_the_map(self):
        init, apply = fcnn.MaxPool(2, strides=2)
        for shape in [(4, 28, 28, 32), (4, 14, 14, 64)]:
            out_shape, _, _ = init(jax.random.PRNGKey(0), shape)
            self.assertEqual(out_shape, (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
            x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
            y, _ = apply({}, {}, x, train=False)
            chex.assert_shape(y, out_shape)
            np.testing.assert_array_equal(y, x.reshape(4, shape[1] // 2, 2, shape[2] // 2, 2,
                                                       shape[3]).max(axis=(2, 4)))

    def test_jitted_apply_traces_once(self):
        _, apply = fcnn.MaxPool(2)

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(x):
            return apply({}, {}, x, train=False)[0]

        x = jnp.ones((2, 6, 6, 3))
        step(x)
        step(x + 1.0)

    def test_backward_switch_reaches_the_op(self):
        x = jnp.ones((1, 2, 2, 1), jnp.float64)
        for backward, expected in [("custom", [1.0, 0, 0, 0]), ("autodiff", [0.25] * 4)]:
            _, apply = fcnn.MaxPool(2, backward=backward)
            g = jax.grad(lambda x: jnp.sum(apply({}, {}, x, train=False)[0]))(x)
            np.testing.assert_allclose(g.ravel(), expected)

    def test_int_window_takes_rank_from_input(self):
        init, _ = fcnn.AvgPool(2)
        for shape in [(1, 4, 3), (1, 4, 4, 3), (1, 4, 4, 4, 3)]:
            out_shape, _, _ = init(jax.random.PRNGKey(0), shape)
            self.assertEqual(out_shape, (1,) + (2,) * (len(shape) - 2) + (3,))

    def test_tuple_window_fixes_rank(self):
        init, apply = fcnn.MaxPool((2, 2))
        with pytest.raises(ValueError, match=r"window_shape=\(2, 2\) has 2 spatial dimension"):
            init(jax.random.PRNGKey(0), (1, 4, 4, 4, 3))
        with pytest.raises(ValueError, match="must have rank 4"):
            apply({}, {}, jnp.ones((1, 4, 3)), train=False)
        init, _ = fcnn.MaxPool(2, padding=((1, 1),))
        with pytest.raises(ValueError, match="padding=.* has 1 spatial dimension"):
            init(jax.random.PRNGKey(0), (1, 4, 4, 3))


class BadInputTest(chex.TestCase):
    x = jnp.ones((2, 6, 6, 3))

    @parameterized.named_parameters(
        ("zero_window", dict(window_shape=0), r"window_shape=0: .*positive"),
        ("negative_window", dict(window_shape=-2), "window_shape=-2"),
        ("zero_in_tuple", dict(window_shape=(2, 0)), "every entry must be positive"),
        ("zero_stride", dict(window_shape=2, strides=0), "strides=0"),
        ("negative_stride", dict(window_shape=2, strides=(1, -1)), "strides="),
        ("window_tuple_wrong_length", dict(window_shape=(2, 2, 2)),
         r"expected an int or a tuple of 2 ints .* got 3 entries"),
        ("unknown_padding", dict(window_shape=2, padding="FULL"), "padding='FULL'"),
        ("negative_padding", dict(window_shape=2, padding=-1), "padding=-1"),
        ("padding_pairs_wrong_length", dict(window_shape=2, padding=((1, 1),)),
         r"expected 2 \(low, high\) pairs"),
        ("window_bigger_than_input", dict(window_shape=7),
         "window of size 7 does not fit spatial dimension 0 of size 6"),
        ("padding_leaves_empty_window", dict(window_shape=2, padding=3),
         "leaves windows of size .* with no input cell"),
        ("bad_backward", dict(window_shape=2, backward="manual"), "backward='manual'"),
    )
    def test_max_and_avg_pool_reject(self, kw, match):
        for op in (max_pool, avg_pool):
            with pytest.raises((ValueError, TypeError), match=match):
                op(self.x, **kw)

    def test_wrong_rank(self):
        for shape in [(6, 6), (2, 6), (1, 2, 3, 4, 5, 6)]:
            with pytest.raises(ValueError, match=r"x has shape .* expects rank 3 or 4 or 5"):
                max_pool(jnp.ones(shape), 1)
        with pytest.raises(ValueError, match="GlobalAvgPool expects rank"):
            fcnn.GlobalAvgPool().init(None, (2, 3))

    def test_other_arguments(self):
        with pytest.raises(TypeError, match="count_include_pad='yes'"):
            avg_pool(self.x, 2, count_include_pad="yes")
        with pytest.raises(TypeError, match="dtype int32: expected a floating-point"):
            max_pool(jnp.ones((1, 4, 4, 1), jnp.int32), 2)
        with pytest.raises(ValueError, match="kind='sum'"):
            pool(self.x, "sum", 2)
        with pytest.raises(ValueError, match="path='fast' needs window_shape == strides"):
            pool(self.x, "max", 3, 1, path="fast")
        with pytest.raises(ValueError, match=r"strides=\(1, 1, 1\) has 3 entries but window_shape=\(2, 2\) has 2"):
            fcnn.MaxPool((2, 2), strides=(1, 1, 1))
        with pytest.raises(ValueError, match="window of size 9 does not fit"):
            fcnn.MaxPool(9).init(jax.random.PRNGKey(0), (1, 8, 8, 3))
        with pytest.raises(TypeError, match="train=1"):
            fcnn.MaxPool(2).apply({}, {}, self.x, train=1)
