"""Global max pooling, adaptive average pooling, separable convolution, Reshape,
ZeroPadding, Cropping, drop-path (stochastic depth) and label smoothing.

Each op's hand-written backward is checked against a naive-loop NumPy oracle
(tests/reference/), against `jax.vjp` of the plain forward (`backward="autodiff"`) and
against central finite differences in float64; each layer's `init` predicts the shape
its `apply` returns; bad arguments raise ValueError/TypeError naming the argument.
"""

import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn import losses
from fcnn.layers.base import CONVOLUTION, DROPOUT, POOLING
from fcnn.ops.dropout import drop_path
from fcnn.ops.hand_rule import traced_rules
from fcnn.ops.pooling import (
    adaptive_avg_pool,
    adaptive_windows,
    avg_pool,
    global_avg_pool,
    global_max_pool,
)
from tests.reference import conv_ref, loss_ref, padding_ref, pool_ref
from tests.reference import derivation_pages as pages

TOL = dict(atol=1e-12, rtol=1e-12)
KEY = jax.random.PRNGKey(0)


def numpy_init(rng, shape, dtype=jnp.float32):
    """A kernel initializer drawing with NumPy: `jax.random.normal` compiles once per
    new shape, which would dominate the run time of these small tests."""
    return jnp.asarray(0.3 * np.random.default_rng(int(np.asarray(rng).sum())).normal(size=shape),
                       dtype)


def distinct_values(seed, shape):
    """Values 0.1 apart in random order: no ties, a stable arg-max under 1e-4 steps."""
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    return (rng.permutation(size) * 0.1 - size * 0.05).reshape(shape)


def directional_fd(loss, x, seed, eps=1e-5, count=3):
    """(numeric, analytic) derivatives of `loss` along `count` random directions."""
    directions = np.random.default_rng(seed).normal(size=(count, *np.shape(x)))
    grad = jax.grad(loss)(x)
    analytic = np.array([np.vdot(grad, d) for d in directions])
    numeric = np.array([(loss(x + eps * d) - loss(x - eps * d)) / (2 * eps) for d in directions])
    return numeric, analytic


def check_init_shape(test, layer, input_shape, variant, x=None, train=False, rng=None):
    """`init` predicts the shape `apply` returns (a batch of -1 stands for any)."""
    out_shape, params, state = layer.init(KEY, input_shape)
    concrete = tuple(2 if d == -1 else d for d in input_shape)
    x = np.random.default_rng(0).normal(size=concrete) if x is None else x
    y, _ = variant(lambda p, x: layer.apply(p, state, x, train=train, rng=rng))(params, x)
    test.assertEqual(out_shape[0], input_shape[0])
    test.assertEqual(tuple(y.shape), (concrete[0], *out_shape[1:]))
    return y, params


# ----------------------------------------------------------------------------------
# Global max pooling

GMP_SHAPES = [("1d", (2, 7, 3)), ("2d", (3, 4, 5, 2)), ("3d", (2, 3, 2, 4, 2))]


class GlobalMaxPoolTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*GMP_SHAPES[1:2])
    def test_matches_oracle_autodiff_and_finite_differences(self, shape):
        self._check(shape)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(GMP_SHAPES[0], GMP_SHAPES[2])
    def test_matches_oracle_autodiff_and_finite_differences_jit(self, shape):
        self._check(shape)

    def _check(self, shape):
        x = distinct_values(zlib.crc32(str(shape).encode()), shape)
        g = np.random.default_rng(1).normal(size=(shape[0], shape[-1]))

        @self.variant
        def both(x, g):
            out = []
            for backward in ("custom", "autodiff"):
                y, vjp = jax.vjp(lambda x: global_max_pool(x, backward), x)
                out.append((y, vjp(g)[0]))
            return out

        (y, dx), (y_ad, dx_ad) = both(x, g)
        chex.assert_trees_all_close(y, pool_ref.global_max_pool_forward(x), **TOL)
        chex.assert_trees_all_close(dx, pool_ref.global_max_pool_backward(x, g), **TOL)
        chex.assert_trees_all_close((y_ad, dx_ad), (y, dx), **TOL)
        numeric, analytic = directional_fd(lambda x: jnp.sum(global_max_pool(x) * g), x, 2)
        np.testing.assert_allclose(numeric, analytic, rtol=1e-8, atol=1e-9)

    @parameterized.named_parameters(*GMP_SHAPES)
    def test_ties_go_to_the_first_maximum(self, shape):
        x = np.random.default_rng(3).integers(0, 2, size=shape).astype(np.float64)
        g = np.random.default_rng(4).normal(size=(shape[0], shape[-1]))
        _, vjp = jax.vjp(global_max_pool, x)
        chex.assert_trees_all_close(vjp(g)[0], pool_ref.global_max_pool_backward(x, g), **TOL)

    def test_constant_map_by_hand(self):
        """All equal: the custom rule sends the whole gradient to cell (0, 0); autodiff
        of jnp.max splits it evenly (1/4 each): the documented difference."""
        x = jnp.ones((1, 2, 2, 1), jnp.float64)
        dx = jax.grad(lambda x: jnp.sum(global_max_pool(x)))(x)
        np.testing.assert_array_equal(dx.ravel(), [1, 0, 0, 0])
        dx_ad = jax.grad(lambda x: jnp.sum(global_max_pool(x, "autodiff")))(x)
        np.testing.assert_array_equal(dx_ad.ravel(), [0.25] * 4)

    def test_worked_example_of_the_derivation_page(self):
        """docs/derivations/more_layers.md, "Global max pooling", read from the page."""
        ex = pages.example("more_layers", "global_max_pool_tie")
        pages.check_shown("more_layers", "global_max_pool_tie")
        x = pages.array(ex["x"])[None, :, :, None]
        dy = jnp.full((1, 1), float(ex["dy"]), jnp.float64)
        for backward, key in (("custom", "dx"), ("autodiff", "dx_autodiff_of_jnp_max")):
            y, vjp = jax.vjp(lambda x: global_max_pool(x, backward), x)
            np.testing.assert_array_equal(y, [[ex["y"]]])
            np.testing.assert_array_equal(vjp(dy)[0][0, :, :, 0], ex[key])

    def test_custom_backward_is_the_rule_in_use(self):
        with traced_rules() as ran:
            jax.grad(lambda x: jnp.sum(global_max_pool(x) ** 2))(jnp.ones((1, 3, 1)))
        assert "global_max_pool" in ran

    @chex.variants(with_jit=True, without_jit=True)
    def test_layer_init_shape_is_apply_shape(self):
        layer = fcnn.GlobalMaxPool()
        self.assertEqual(layer.role, POOLING)
        y, _ = check_init_shape(self, layer, (-1, 4, 4, 3), self.variant)
        chex.assert_shape(y, (2, 3))

    def test_rejects_bad_input(self):
        with pytest.raises(ValueError, match=r"x has shape \(3, 4\) \(rank 2\): global_max_pool expects rank 3"):
            global_max_pool(jnp.zeros((3, 4)))
        with pytest.raises(TypeError, match=r"global_max_pool: x has dtype int32: expected a floating-point"):
            global_max_pool(jnp.zeros((1, 3, 1), jnp.int32))
        with pytest.raises(ValueError, match=r"backward='hand'"):
            global_max_pool(jnp.zeros((1, 3, 1)), "hand")
        with pytest.raises(ValueError, match=r"backward='hand'"):
            fcnn.GlobalMaxPool("hand")
        with pytest.raises(ValueError, match=r"input_shape has shape \(4,\) \(rank 1\): GlobalMaxPool expects"):
            fcnn.GlobalMaxPool().init(KEY, (4,))


# ----------------------------------------------------------------------------------
# Adaptive average pooling

ADAPTIVE = [
    ("1d_7_to_3", (2, 7, 2), 3),
    ("2d_overlapping", (2, 5, 7, 2), (2, 3)),
    ("2d_dividing", (1, 6, 6, 3), 3),
    ("2d_to_one", (2, 3, 4, 2), 1),
    ("2d_larger_output", (1, 2, 3, 1), (5, 4)),
    ("3d_mixed", (1, 3, 4, 5, 2), (2, 2, 3)),
]
ADAPTIVE_BY_NAME = {a[0]: a for a in ADAPTIVE}


class AdaptiveAvgPoolTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("2d_overlapping", "2d_overlapping"), ("3d_mixed", "3d_mixed"))
    def test_matches_oracle_autodiff_and_finite_differences(self, name):
        self._check(name)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(("1d_7_to_3", "1d_7_to_3"),
                                    ("2d_larger_output", "2d_larger_output"))
    def test_matches_oracle_autodiff_and_finite_differences_jit(self, name):
        self._check(name)

    def _check(self, name):
        _, shape, size = ADAPTIVE_BY_NAME[name]
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        x = rng.normal(size=shape)
        y_ref = pool_ref.adaptive_avg_pool_forward(x, size)
        g = rng.normal(size=y_ref.shape)

        @self.variant
        def both(x, g):
            out = []
            for backward in ("custom", "autodiff"):
                y, vjp = jax.vjp(lambda x: adaptive_avg_pool(x, size, backward), x)
                out.append((y, vjp(g)[0]))
            return out

        (y, dx), (y_ad, dx_ad) = both(x, g)
        chex.assert_trees_all_close(y, y_ref, **TOL)
        chex.assert_trees_all_close(dx, pool_ref.adaptive_avg_pool_backward(x.shape, g, size), **TOL)
        chex.assert_trees_all_close((y_ad, dx_ad), (y, dx), **TOL)
        numeric, analytic = directional_fd(lambda x: jnp.sum(adaptive_avg_pool(x, size) * g), x, 5)
        np.testing.assert_allclose(numeric, analytic, rtol=1e-8, atol=1e-9)

    def test_worked_example_of_the_derivation_page(self):
        """docs/derivations/more_layers.md, "Adaptive average pooling", read from the
        page: W = 5 to O = 3, PyTorch's windows [floor(i W / O), ceil((i + 1) W / O))."""
        ex = pages.example("more_layers", "adaptive_avg_pool_5_to_3")
        pages.check_shown("more_layers", "adaptive_avg_pool_5_to_3")
        size = ex["output_size"]
        assert adaptive_windows(len(ex["x"]), size) == [tuple(w) for w in ex["windows"]]
        assert pool_ref.adaptive_windows(len(ex["x"]), size) == [tuple(w) for w in ex["windows"]]
        x = pages.array(ex["x"]).reshape(1, -1, 1)
        np.testing.assert_allclose(adaptive_avg_pool(x, size).ravel(), ex["y"], rtol=1e-15)
        dx = jax.grad(lambda x: jnp.sum(adaptive_avg_pool(x, size)))(x)
        np.testing.assert_allclose(dx.ravel(), [float(pages.fraction(f)) for f in ex["dx_for_ones"]],
                                   rtol=1e-15)

    def test_more_pytorch_windows(self):
        assert adaptive_windows(13, 6)[:3] == [(0, 3), (2, 5), (4, 7)]  # AlexNet's 13 -> 6
        assert adaptive_windows(2, 5) == [(0, 1), (0, 1), (0, 2), (1, 2), (1, 2)]
        for size, out in ((7, 3), (13, 6), (2, 5), (8, 4)):
            assert adaptive_windows(size, out) == pool_ref.adaptive_windows(size, out)

    def test_special_cases_are_avg_pool_and_global_avg_pool(self):
        x = np.random.default_rng(6).normal(size=(2, 6, 4, 3))
        chex.assert_trees_all_close(adaptive_avg_pool(x, (3, 2)), avg_pool(x, (2, 2)), **TOL)
        chex.assert_trees_all_close(adaptive_avg_pool(x, 1)[:, 0, 0], global_avg_pool(x), **TOL)

    def test_custom_backward_is_the_rule_in_use(self):
        with traced_rules() as ran:
            jax.grad(lambda x: jnp.sum(adaptive_avg_pool(x, 2) ** 2))(jnp.ones((1, 5, 1)))
        assert "adaptive_avg_pool" in ran

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("int_2d", 3, (-1, 7, 9, 2)), ("tuple_2d", (6, 6), (2, 13, 13, 1)),
        ("int_1d", 2, (2, 5, 1)), ("tuple_3d", (1, 2, 2), (-1, 3, 4, 4, 1)))
    def test_layer_init_shape_is_apply_shape(self, output_size, input_shape):
        layer = fcnn.AdaptiveAvgPool(output_size)
        self.assertEqual(layer.role, POOLING)
        check_init_shape(self, layer, input_shape, self.variant)

    def test_rejects_bad_input(self):
        with pytest.raises(ValueError, match=r"output_size=0: every entry must be positive"):
            adaptive_avg_pool(jnp.zeros((1, 4, 1)), 0)
        with pytest.raises(ValueError, match=r"output_size=\(2, 2\): expected an int or a tuple of 1 ints"):
            adaptive_avg_pool(jnp.zeros((1, 4, 1)), (2, 2))
        with pytest.raises(TypeError, match=r"output_size=2\.5"):
            adaptive_avg_pool(jnp.zeros((1, 4, 1)), 2.5)
        with pytest.raises(ValueError, match=r"x has shape \(4,\) \(rank 1\)"):
            adaptive_avg_pool(jnp.zeros((4,)), 2)
        with pytest.raises(ValueError, match=r"output_size=0: expected a positive int"):
            fcnn.AdaptiveAvgPool(0)
        with pytest.raises(ValueError, match=r"output_size=\(1, 1, 1, 1\): expected an int or a tuple of 1, 2 or 3"):
            fcnn.AdaptiveAvgPool((1, 1, 1, 1))
        with pytest.raises(TypeError, match=r"output_size=None"):
            fcnn.AdaptiveAvgPool(None)
        with pytest.raises(ValueError, match=r"output_size=\(6, 6\) has 2 entries, so the input must have rank 4"):
            fcnn.AdaptiveAvgPool((6, 6)).init(KEY, (1, 8, 1))


@pytest.mark.slow
class AdaptiveAvgPoolSlowTest(chex.TestCase):
    """The sweep cases that `make test` leaves out: their special cases are also checked
    against avg_pool and global_avg_pool above."""

    _check = AdaptiveAvgPoolTest._check

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("2d_dividing", "2d_dividing"), ("2d_to_one", "2d_to_one"))
    def test_matches_oracle_autodiff_and_finite_differences_slow(self, name):
        self._check(name)


# ----------------------------------------------------------------------------------
# Depthwise and separable convolution


class SeparableConvTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("2d_multiplier_s2", dict(features=2, kernel_size=(3, 2), depth_multiplier=2, strides=2),
         (2, 7, 6, 2)),
        ("1d_valid_no_bias", dict(features=3, kernel_size=2, padding="VALID", use_bias=False),
         (2, 5, 2)),
    )
    def test_init_shape_is_apply_shape(self, kwargs, input_shape):
        self._check_shapes(kwargs, input_shape)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(
        ("2d", dict(features=4, kernel_size=3), (-1, 5, 6, 3)),
        ("3d_reflect", dict(features=2, kernel_size=2, padding_mode="reflect"), (-1, 3, 3, 4, 2)),
    )
    def test_init_shape_is_apply_shape_jit(self, kwargs, input_shape):
        self._check_shapes(kwargs, input_shape)

    def _check_shapes(self, kwargs, input_shape):
        layer = fcnn.SeparableConv(**kwargs, kernel_init=numpy_init)
        _, params = check_init_shape(self, layer, input_shape, self.variant)
        nd, c = len(input_shape) - 2, input_shape[-1]
        k = kwargs["kernel_size"]
        window = (k,) * nd if isinstance(k, int) else k
        m = kwargs.get("depth_multiplier", 1)
        self.assertEqual(params["0"]["kernel"].shape, (*window, 1, c * m))
        self.assertEqual(params["1"]["kernel"].shape, (*(1,) * nd, c * m, kwargs["features"]))
        self.assertEqual("bias" in params["1"], kwargs.get("use_bias", True))
        self.assertNotIn("bias", params["0"])

    def test_equals_depthwise_then_pointwise_oracle_with_gradients(self):
        layer = fcnn.SeparableConv(3, 3, depth_multiplier=2, strides=2, kernel_init=numpy_init,
                                   bias_init=numpy_init)
        _, params, state = layer.init(KEY, (2, 5, 5, 2))
        params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
        rng = np.random.default_rng(7)
        x = rng.normal(size=(2, 5, 5, 2))
        r = rng.normal(size=(2, 3, 3, 3))

        def loss(params, x):
            return jnp.sum(layer.apply(params, state, x, train=True)[0] * r)

        grads, dx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
        dk, pk, pb = params["0"]["kernel"], params["1"]["kernel"], params["1"]["bias"]
        h = conv_ref.conv_forward(x, dk, None, strides=2, groups=2)
        y = conv_ref.conv_forward(h, pk, pb)
        np.testing.assert_allclose(loss(params, x), np.sum(y * r), rtol=1e-12)
        dh, dpk, dpb = conv_ref.conv_backward(h, pk, r)
        dx_ref, ddk, _ = conv_ref.conv_backward(x, dk, dh, strides=2, groups=2)
        chex.assert_trees_all_close(
            (grads, dx), ({"0": {"kernel": ddk}, "1": {"kernel": dpk, "bias": dpb}}, dx_ref),
            atol=1e-10, rtol=1e-10)

    def test_structure_children_role_and_parameter_count(self):
        layer = fcnn.SeparableConv(8, 3, depth_multiplier=2)  # the page's numbers
        self.assertEqual(layer.role, CONVOLUTION)
        self.assertEqual([c.name for c in layer.children], ["DepthwiseConv(3, depth_multiplier=2)",
                                                           "Conv(8, 1)"])
        self.assertEqual([c.role for c in layer.children], [CONVOLUTION, CONVOLUTION])
        ex = pages.example("more_layers", "separable_params")  # read from the page
        shape = (1, 8, 8, ex["in_channels"])

        def count(layer, shape=shape):
            return fcnn.count_params(jax.eval_shape(lambda: layer.init(KEY, shape)[1]))

        # depthwise 3*3*4*2 = 72, pointwise 4*2*8 + 8 = 72; a full Conv(8, 3) has 296
        depthwise, pointwise = layer.children
        self.assertEqual(count(depthwise), ex["depthwise"])
        multiplied = (1, 8, 8, ex["in_channels"] * ex["depth_multiplier"])
        self.assertEqual(count(pointwise, multiplied), ex["pointwise"])
        self.assertEqual(count(layer), ex["separable"])
        self.assertEqual(ex["depthwise"] + ex["pointwise"], ex["separable"])
        self.assertEqual(count(fcnn.Conv(ex["features"], ex["kernel_size"])), ex["full_conv"])

    def test_depthwise_is_a_grouped_conv(self):
        layer = fcnn.DepthwiseConv(3, depth_multiplier=2, strides=2, kernel_init=numpy_init)
        out_shape, params, _ = layer.init(KEY, (-1, 5, 5, 3))
        self.assertEqual(out_shape, (-1, 3, 3, 6))
        self.assertEqual(params["kernel"].shape, (3, 3, 1, 6))
        x = np.random.default_rng(8).normal(size=(1, 5, 5, 3))
        y, _ = layer.apply(params, {}, x, train=False)
        self.assertEqual(y.shape, (1, *out_shape[1:]))
        want = conv_ref.conv_forward(x, params["kernel"], params["bias"], strides=2, groups=3)
        np.testing.assert_allclose(y, want, atol=1e-5)

    def test_rejects_bad_input(self):
        with pytest.raises(ValueError, match=r"features=0: expected a positive int"):
            fcnn.SeparableConv(0, 3)
        with pytest.raises(ValueError, match=r"depth_multiplier=0: expected a positive int"):
            fcnn.SeparableConv(2, 3, depth_multiplier=0)
        with pytest.raises(ValueError, match=r"kernel_size=\(3, 0\): every entry must be positive"):
            fcnn.SeparableConv(2, (3, 0))
        with pytest.raises(ValueError, match=r"padding_mode='edge': expected one of"):
            fcnn.SeparableConv(2, 3, padding_mode="edge")
        with pytest.raises(ValueError, match=r"padding='full'"):
            fcnn.DepthwiseConv(3, padding="full")
        init, apply = fcnn.SeparableConv(2, 3, kernel_init=numpy_init)
        _, params, state = init(KEY, (1, 5, 5, 3))
        with pytest.raises(ValueError, match=r"x has 4 channels .*but the params expect 3"):
            apply(params, state, jnp.zeros((1, 5, 5, 4)), train=False)
        with pytest.raises(ValueError, match=r"params has keys \['0'\], expected \['0', '1'\]"):
            apply({"0": params["0"]}, state, jnp.zeros((1, 5, 5, 3)), train=False)
        with pytest.raises(ValueError, match=r"input_shape has shape \(5, 3\) \(rank 2\)"):
            init(KEY, (5, 3))


# ----------------------------------------------------------------------------------
# Reshape, ZeroPadding, Cropping


class ReshapeTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("to_map", (7, 7, 4), (-1, 196)), ("infer", (-1, 2), (2, 3, 4)),
        ("flatten_like", (-1,), (2, 3, 2, 2)), ("int", 12, (2, 3, 4)))
    def test_init_shape_is_apply_shape_and_row_major(self, shape, input_shape):
        layer = fcnn.Reshape(shape)
        concrete = tuple(2 if d == -1 else d for d in input_shape)
        x = np.arange(np.prod(concrete), dtype=np.float64).reshape(concrete)
        y, _ = check_init_shape(self, layer, input_shape, self.variant, x=x)
        np.testing.assert_array_equal(np.ravel(y), np.ravel(x))

    def test_gradient_is_the_inverse_reshape(self):
        layer = fcnn.Reshape((2, -1))
        x = np.random.default_rng(0).normal(size=(3, 6))
        r = np.random.default_rng(1).normal(size=(3, 2, 3))
        dx = jax.grad(lambda x: jnp.sum(layer.apply({}, {}, x, train=True)[0] * r))(x)
        np.testing.assert_array_equal(dx, r.reshape(3, 6))

    def test_rejects_bad_input(self):
        with pytest.raises(ValueError, match=r"shape=\(-1, -1\): expected positive sizes and at most one -1"):
            fcnn.Reshape((-1, -1))
        with pytest.raises(ValueError, match=r"shape=\(0, 3\)"):
            fcnn.Reshape((0, 3))
        with pytest.raises(TypeError, match=r"shape=\(2\.0, 3\): expected a non-empty tuple of ints"):
            fcnn.Reshape((2.0, 3))
        with pytest.raises(TypeError, match=r"shape=\(\)"):
            fcnn.Reshape(())
        with pytest.raises(ValueError, match=r"input_shape has shape \(2, 7\), 7 values per example, but shape=\(2, 3\) holds 6"):
            fcnn.Reshape((2, 3)).init(KEY, (2, 7))
        with pytest.raises(ValueError, match=r"x has shape \(2, 7\), 7 values per example, not divisible by 2"):
            fcnn.Reshape((2, -1)).apply({}, {}, jnp.zeros((2, 7)), train=False)


BORDER_CASES = [
    ("int_2d", 1, (-1, 3, 4, 2), (-1, 5, 6, 2)),
    ("per_dim_2d", (1, 2), (2, 3, 4, 1), (2, 5, 8, 1)),
    ("pairs_1d", ((0, 3),), (2, 5, 2), (2, 8, 2)),
    ("pairs_3d", ((1, 0), (0, 2), (1, 1)), (-1, 2, 2, 3, 1), (-1, 3, 4, 5, 1)),
]


class BorderLayersTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*BORDER_CASES)
    def test_zero_padding_then_cropping_round_trip(self, padding, input_shape, padded_shape):
        zero_padding, cropping = fcnn.ZeroPadding(padding), fcnn.Cropping(padding)
        self.assertEqual(zero_padding.init(KEY, input_shape)[0], padded_shape)
        self.assertEqual(cropping.init(KEY, padded_shape)[0], input_shape)
        concrete = tuple(2 if d == -1 else d for d in input_shape)
        x = np.random.default_rng(0).normal(size=concrete)
        y, _ = check_init_shape(self, zero_padding, input_shape, self.variant, x=x)
        np.testing.assert_array_equal(y, padding_ref.pad_forward(x, padding, "zeros"))
        back, _ = check_init_shape(self, cropping, padded_shape, self.variant, x=y)
        np.testing.assert_array_equal(back, x)

    def test_gradients_are_each_others_adjoint(self):
        x = np.random.default_rng(1).normal(size=(2, 4, 5, 3))
        g = np.random.default_rng(2).normal(size=(2, 2, 8, 3))
        crop = fcnn.Cropping(((1, 1), (0, 0)))
        pad = fcnn.ZeroPadding(((0, 0), (1, 2)))
        _, vjp = jax.vjp(lambda x: pad.apply({}, {}, crop.apply({}, {}, x, train=True)[0],
                                             train=True)[0], x)
        want = np.zeros_like(x)
        want[:, 1:3] = g[:, :, 1:6]
        np.testing.assert_array_equal(vjp(g)[0], want)
        with traced_rules() as ran:  # zero padding runs the padding op's hand rule
            jax.grad(lambda x: jnp.sum(pad.apply({}, {}, x, train=True)[0]))(x)
        assert "pad" in ran

    def test_reflect_pad_layer(self):
        layer = fcnn.Pad(((1, 2),), mode="reflect")
        self.assertEqual(layer.init(KEY, (1, 4, 1))[0], (1, 7, 1))
        y, _ = layer.apply({}, {}, jnp.arange(4.0).reshape(1, 4, 1), train=False)
        np.testing.assert_array_equal(y.ravel(), [1, 0, 1, 2, 3, 2, 1])

    def test_rejects_bad_input(self):
        for layer, arg in ((fcnn.ZeroPadding, "padding"), (fcnn.Cropping, "cropping")):
            with pytest.raises(ValueError, match=rf"{arg}=-1: expected a non-negative int"):
                layer(-1)
            with pytest.raises(ValueError, match=rf"{arg}=\(1, -2\)"):
                layer((1, -2))
            with pytest.raises(ValueError, match=rf"{arg}=\(\(1, 2, 3\),\)"):
                layer(((1, 2, 3),))
            with pytest.raises(TypeError, match=rf"{arg}='same'"):
                layer("same")
            with pytest.raises(ValueError, match=rf"{arg}=\(1, 1, 1, 1\): expected an int, or 1, 2 or 3 entries"):
                layer((1, 1, 1, 1))
            with pytest.raises(ValueError, match=rf"{arg}=\(1, 2\) has 2 entries, so the input must have rank 4"):
                layer((1, 2)).init(KEY, (1, 5, 1))
        with pytest.raises(ValueError, match=r"cropping \(2, 2\) removes all 4 cells of spatial dimension 0"):
            fcnn.Cropping(2).init(KEY, (1, 4, 6, 1))
        with pytest.raises(ValueError, match=r"cropping \(0, 3\) removes all 3 cells of spatial dimension 1 of x"):
            fcnn.Cropping(((0, 0), (0, 3))).apply({}, {}, jnp.zeros((1, 5, 3, 1)), train=False)
        with pytest.raises(ValueError, match=r"padding_mode='mirror'"):
            fcnn.Pad(1, mode="mirror")
        with pytest.raises(ValueError, match=r"too wide for padding_mode='reflect'"):
            fcnn.Pad(3, mode="reflect").init(KEY, (1, 3, 1))


# ----------------------------------------------------------------------------------
# Drop-path (stochastic depth)


def drop_path_oracle(x, kept, rate):
    """y[n] = x[n] kept[n] / (1 - rate), one example at a time."""
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        y[n] = x[n] * (1.0 if kept[n] else 0.0) / (1 - rate)
    return y


class DropPathTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("2d", (16, 3, 3, 2)))
    def test_whole_examples_drop_and_gradients_match(self, shape):
        self._check(shape)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(("dense", (16, 5)))
    def test_whole_examples_drop_and_gradients_match_jit(self, shape):
        self._check(shape)

    def _check(self, shape):
        rate = 0.4
        x = np.random.default_rng(0).normal(size=shape) + 5.0  # no zero entries
        g = np.random.default_rng(1).normal(size=shape)
        rng = jax.random.PRNGKey(3)

        @self.variant
        def both(x, g):
            out = []
            for backward in ("custom", "autodiff"):
                y, vjp = jax.vjp(lambda x: drop_path(x, rate, rng, train=True, backward=backward), x)
                out.append((y, vjp(g)[0]))
            return out

        (y, dx), (y_ad, dx_ad) = both(x, g)
        kept = np.array([np.all(np.asarray(y[n]) != 0) for n in range(shape[0])])
        assert 0 < kept.sum() < shape[0]  # this seed drops some examples and keeps some
        chex.assert_trees_all_close(y, drop_path_oracle(x, kept, rate), **TOL)
        chex.assert_trees_all_close(dx, drop_path_oracle(g, kept, rate), **TOL)
        chex.assert_trees_all_close((y_ad, dx_ad), (y, dx), **TOL)
        numeric, analytic = directional_fd(
            lambda x: jnp.sum(drop_path(x, rate, rng, train=True) * g), x, 4)
        np.testing.assert_allclose(numeric, analytic, rtol=1e-8, atol=1e-9)

    def test_worked_example_of_the_derivation_page(self):
        """docs/derivations/more_layers.md, "Drop-path", read from the page: the hand rule
        on the page's mask (a random draw cannot be chosen)."""
        from fcnn.ops.dropout import DROP_PATH

        ex = pages.example("more_layers", "drop_path")
        pages.check_shown("more_layers", "drop_path")
        x = pages.array(ex["x"])
        mask = pages.array(ex["kept"]) / (1 - ex["rate"])
        np.testing.assert_array_equal(mask, ex["mask"])
        y, vjp = jax.vjp(lambda x: DROP_PATH.custom(x, mask[:, None]), x)
        np.testing.assert_array_equal(y, ex["y"])
        np.testing.assert_array_equal(vjp(pages.array(ex["dy"]))[0], ex["dx"])
        np.testing.assert_array_equal(drop_path_oracle(x, ex["kept"], ex["rate"]), ex["y"])

    def test_expected_value_and_evaluation(self):
        x = jnp.ones((20000, 2))
        y = drop_path(x, 0.3, jax.random.PRNGKey(0), train=True)
        kept = float(jnp.mean(y[:, 0] != 0))
        assert abs(kept - 0.7) < 0.02
        assert abs(float(jnp.mean(y)) - 1.0) < 0.03  # E[y_train] = y_eval = x
        np.testing.assert_array_equal(drop_path(x, 0.3, train=False), x)
        np.testing.assert_array_equal(drop_path(x, 0.0, jax.random.PRNGKey(0), train=True), x)

    def test_in_a_residual_block_dropped_examples_pass_through(self):
        branch = fcnn.serial(fcnn.Dense(3, kernel_init=numpy_init, bias_init=fcnn.initializers.ones),
                             fcnn.DropPath(0.5))
        block = fcnn.residual(branch)
        _, params, state = block.init(KEY, (-1, 3))
        x = jnp.zeros((64, 3))
        y, _ = block.apply(params, state, x, train=True, rng=jax.random.PRNGKey(1))
        per_example = np.asarray(y[:, 0])
        assert set(np.round(per_example, 6)) == {0.0, 2.0}  # x + 0, or x + 1 / (1 - 0.5)
        y_eval, _ = block.apply(params, state, x, train=False)
        np.testing.assert_allclose(y_eval, 1.0)

    def test_traced_rate_vmaps_and_the_rule_runs(self):
        x = jnp.ones((8, 2))
        rates = jnp.asarray([0.0, 0.5])
        ys = jax.vmap(lambda r: drop_path(x, r, jax.random.PRNGKey(2), train=True))(rates)
        np.testing.assert_array_equal(ys[0], x)
        assert set(np.unique(np.asarray(ys[1]))) <= {0.0, 2.0}
        with traced_rules() as ran:
            jax.grad(lambda x: jnp.sum(drop_path(x, 0.5, jax.random.PRNGKey(0), train=True)))(x)
        assert "drop_path" in ran

    @chex.variants(with_jit=True, without_jit=True)
    def test_layer_init_shape_is_apply_shape(self):
        layer = fcnn.DropPath(0.2)
        self.assertEqual(layer.role, DROPOUT)
        check_init_shape(self, layer, (-1, 4, 4, 3), self.variant, train=True,
                         rng=jax.random.PRNGKey(0))

    def test_rejects_bad_input(self):
        for rate in (1.0, -0.1, float("nan")):
            with pytest.raises(ValueError, match=r"rate=.*expected a probability of dropping"):
                fcnn.DropPath(rate)
        with pytest.raises(TypeError, match=r"rate=True"):
            drop_path(jnp.ones((2, 2)), True, KEY, train=True)
        with pytest.raises(ValueError, match=r"drop_path\(train=True\) needs an rng"):
            drop_path(jnp.ones((2, 2)), 0.5, train=True)
        with pytest.raises(TypeError, match=r"drop_path: train=1: expected True or False"):
            drop_path(jnp.ones((2, 2)), 0.5, KEY, train=1)
        with pytest.raises(ValueError, match=r"drop_path: x has shape \(\): expected \(batch, \.\.\.\)"):
            drop_path(jnp.ones(()), 0.5, KEY, train=True)
        with pytest.raises(ValueError, match=r"DropPath\(0.5\) needs an rng in training mode"):
            fcnn.DropPath(0.5).apply({}, {}, jnp.ones((2, 2)), train=True)
        with pytest.raises(ValueError, match=r"backward='hand'"):
            fcnn.DropPath(0.5, backward="hand")


# ----------------------------------------------------------------------------------
# Label smoothing


def _smoothing_data():
    r = np.random.default_rng(9)
    labels = np.array([0, 3, 4, 3])
    return r.normal(size=(4, 5)) * 2, labels, np.eye(5)[labels], r.dirichlet(np.ones(5), size=4)


Z, LABELS, ONEHOT, PROBS = _smoothing_data()


class LabelSmoothingTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("distribution_03", "probs", 0.3), ("int_02", "int", 0.2))
    def test_matches_oracle_autodiff_and_finite_differences(self, kind, eps):
        self._check(kind, eps)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(("onehot_01", "onehot", 0.1), ("onehot_1", "onehot", 1.0))
    def test_matches_oracle_autodiff_and_finite_differences_jit(self, kind, eps):
        self._check(kind, eps)

    def _check(self, kind, eps):
        y = {"onehot": ONEHOT, "probs": PROBS, "int": ONEHOT}[kind]

        def loss(z, y, e, backward):
            labels = LABELS if kind == "int" else y
            return losses.softmax_cross_entropy(z, labels, e, backward=backward)

        @self.variant
        def both(z, y, e):
            return [jax.value_and_grad(loss, argnums=(0, 1, 2))(z, y, e, b)
                    for b in ("custom", "autodiff")]

        (value, grads), (value_ad, grads_ad) = both(Z, y, eps)
        want = loss_ref.smoothed_softmax_cross_entropy(Z, y, eps)
        dz, dy, deps = loss_ref.smoothed_softmax_cross_entropy_grad(Z, y, eps)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(value_ad, want, rtol=1e-12)
        chex.assert_trees_all_close(grads[0], dz, atol=1e-12)
        chex.assert_trees_all_close(grads[2], deps, atol=1e-12)
        if kind != "int":  # integer labels have no gradient
            chex.assert_trees_all_close(grads[1], dy, atol=1e-12)
        chex.assert_trees_all_close(grads, grads_ad, atol=1e-12)
        numeric, analytic = directional_fd(lambda z: loss(z, y, eps, "custom"), Z, 6, eps=1e-6)
        np.testing.assert_allclose(numeric, analytic, rtol=1e-7, atol=1e-9)
        # C is linear in eps: a one-sided difference (staying in [0, 1]) is exact
        d_eps = (loss(Z, y, eps, "custom") - loss(Z, y, eps - 1e-6, "custom")) / 1e-6
        np.testing.assert_allclose(d_eps, deps, rtol=1e-6, atol=1e-9)

    def test_worked_example_of_the_derivation_page(self):
        """docs/derivations/more_layers.md, "Label smoothing", read from the page."""
        ex = pages.example("more_layers", "label_smoothing")
        pages.check_shown("more_layers", "label_smoothing")
        z = pages.array(ex["logits"])[None]
        labels, eps = jnp.array([ex["label"]]), ex["label_smoothing"]
        y = np.eye(z.shape[1])[[ex["label"]]]
        np.testing.assert_allclose(loss_ref.smooth_labels(y, eps)[0], ex["targets"], rtol=1e-15)
        value, dz = jax.value_and_grad(losses.softmax_cross_entropy)(z, labels, eps)
        printed, half_unit = pages.printed(ex["loss"])
        assert abs(float(value) - printed) <= half_unit
        np.testing.assert_allclose(dz[0], ex["dlogits"], atol=1e-15)

    def test_is_pytorchs_mixture_of_nll_and_uniform_cross_entropy(self):
        """PyTorch: (1 - eps) * NLL(y) + eps * mean_k(-log p_k), averaged over the batch."""
        logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        nll = -logp[np.arange(4), LABELS]
        want = np.mean((1 - 0.1) * nll + 0.1 * (-logp.mean(axis=1)))
        np.testing.assert_allclose(losses.softmax_cross_entropy(Z, LABELS, 0.1), want, rtol=1e-12)
        np.testing.assert_allclose(losses.softmax_cross_entropy(Z, LABELS, label_smoothing=0.0),
                                   losses.softmax_cross_entropy(Z, LABELS), rtol=0)

    def test_out_of_range_labels_under_jit_still_contribute_nothing(self):
        loss = jax.jit(losses.softmax_cross_entropy)(Z[:2], jnp.array([1, 9]), 0.2)
        only_first = loss_ref.smoothed_softmax_cross_entropy(Z[:1], np.eye(5)[[1]], 0.2) / 2
        np.testing.assert_allclose(loss, only_first, rtol=1e-12)

    def test_traced_smoothing_vmaps_and_the_rule_runs(self):
        values = jax.vmap(lambda e: losses.softmax_cross_entropy(Z, LABELS, e))(jnp.asarray([0.0, 0.1]))
        np.testing.assert_allclose(values[1], losses.softmax_cross_entropy(Z, LABELS, 0.1), rtol=1e-12)
        with traced_rules() as ran:
            jax.grad(lambda z: losses.softmax_cross_entropy(z, LABELS, 0.1))(jnp.asarray(Z))
        assert "softmax_cross_entropy" in ran

    def test_rejects_bad_smoothing(self):
        for eps in (-0.1, 1.5, float("nan"), True, "0.1", None):
            with pytest.raises(ValueError, match=r"label_smoothing=.*expected a number in \[0, 1\]"):
                losses.softmax_cross_entropy(Z, LABELS, eps)
        with pytest.raises(ValueError, match=r"label_smoothing has shape \(2,\)"):
            losses.softmax_cross_entropy(Z, LABELS, np.array([0.1, 0.2]))
