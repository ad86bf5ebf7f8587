"""Dense, Flatten and GlobalAvgPool: ops, hand-written backward rules and layers.

Gradients are checked three ways: against the naive-loop NumPy oracles
(tests/reference/dense_ref.py, tests/reference/pool_ref.py), against `jax.vjp` of the
plain forward (`backward="autodiff"`), and against central finite differences in
float64.
"""

import itertools
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.ops.conv import conv
from fcnn.ops.dense import dense
from fcnn.ops.pooling import global_avg_pool
from tests.reference import dense_ref, pool_ref
from tests.reference import derivation_pages as pages

TOL = dict(atol=1e-12, rtol=1e-12)

LEADS = [(), (1,), (5,), (2, 3), (3, 1, 2), (2, 2, 2, 1)]
FEATURES = [(1, 1), (3, 2), (6, 5), (4, 1), (1, 4)]
SHAPES = [
    dict(testcase_name=f"lead{'x'.join(map(str, lead)) or '0'}_{n_in}to{n_out}_"
         f"{'bias' if bias else 'nobias'}", lead=lead, n_in=n_in, n_out=n_out, bias=bias)
    for lead, (n_in, n_out), bias in itertools.product(LEADS, FEATURES, (True, False))
]
# Every shape runs jitted in `make test` (about 10 s of CPU time for all of them); one
# in twelve also runs eagerly, whose op-by-op compilation would dominate the budget.
SHAPES_DEFAULT = SHAPES[::3]
SHAPES_REST = [s for i, s in enumerate(SHAPES) if i % 3]
SHAPES_BOTH = SHAPES_DEFAULT[::4]
SHAPES_JIT = [s for i, s in enumerate(SHAPES_DEFAULT) if i % 4]


def dense_case(lead, n_in, n_out, bias):
    rng = np.random.default_rng(zlib.crc32(f"{lead}{n_in}{n_out}{bias}".encode()))
    x = rng.normal(size=(*lead, n_in))
    kernel = rng.normal(size=(n_in, n_out))
    b = rng.normal(size=(n_out,)) if bias else None
    g = rng.normal(size=(*lead, n_out))
    return x, kernel, b, g


def all_ways(g, directions, eps=1e-5):
    """(y, grads) for the hand rule and for autodiff, and central differences of
    <g, y> along `directions`, in one function (one compilation per test)."""

    def f(x, kernel, bias):
        out = {}
        for backward in ("custom", "autodiff"):
            y, vjp = jax.vjp(lambda *a: dense(*a, backward=backward), x, kernel, bias)
            out[backward] = (y, vjp(g))

        def loss(*a):
            return jnp.sum(dense(*a) * g)

        out["numeric"] = [
            (loss(*(a + eps * d for a, d in zip((x, kernel, bias), v)))
             - loss(*(a - eps * d for a, d in zip((x, kernel, bias), v)))) / (2 * eps)
            for v in directions
        ]
        return out

    return f


class DenseSweepCase(chex.TestCase):
    """One shape: hand rule and autodiff against the oracle, and finite differences."""

    def _check(self, lead, n_in, n_out, bias):
        x, kernel, b, g = dense_case(lead, n_in, n_out, bias)
        y_ref = dense_ref.dense_forward(x, kernel, b)
        grads_ref = dense_ref.dense_backward(x, kernel, g, with_bias=bias)
        rng = np.random.default_rng(1)
        args = (x, kernel, b)
        directions = [
            tuple(None if a is None else rng.normal(size=a.shape) for a in args) for _ in range(2)
        ]
        if not bias:
            args, directions = args[:2], [d[:2] for d in directions]
            f = all_ways(g, directions)
            out = self.variant(lambda x, k: f(x, k, None))(*args)
        else:
            out = self.variant(all_ways(g, directions))(*args)
        for way in ("custom", "autodiff"):
            y, grads = out[way]
            chex.assert_shape(y, (*lead, n_out))
            chex.assert_trees_all_close(y, y_ref, **TOL, custom_message=way)
            chex.assert_trees_all_close(grads, grads_ref, **TOL, custom_message=way)
        _, grads = out["custom"]
        for v, numeric in zip(directions, out["numeric"]):
            analytic = sum(np.vdot(gr, d) for gr, d in zip(grads, v) if d is not None)
            np.testing.assert_allclose(numeric, analytic, rtol=1e-7, atol=1e-8)


class DenseSweepTest(DenseSweepCase):
    """y = x W + b over >= 50 shapes with extra leading axes, jitted and not."""

    def test_sweep_size(self):
        self.assertGreaterEqual(len(SHAPES_BOTH) + len(SHAPES_JIT) + len(SHAPES_REST), 50)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*SHAPES_BOTH)
    def test_matches_oracle_autodiff_and_finite_differences(self, lead, n_in, n_out, bias):
        self._check(lead, n_in, n_out, bias)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*SHAPES_JIT)
    def test_matches_oracle_autodiff_and_finite_differences_jit(self, lead, n_in, n_out, bias):
        self._check(lead, n_in, n_out, bias)

    @parameterized.parameters("custom", "autodiff")
    def test_tiny_example_of_the_derivation_page(self, backward):
        # docs/derivations/pooling_dense.md, "A tiny example with numbers", read from the page
        ex = pages.example("pooling_dense", "dense_tiny")
        pages.check_shown("pooling_dense", "dense_tiny")
        x = pages.array(ex["x"]).reshape(1, -1)
        y, vjp = jax.vjp(lambda *a: dense(*a, backward=backward),
                         x, pages.array(ex["W"]), pages.array(ex["b"]))
        dx, dkernel, dbias = vjp(pages.array(ex["dy"]).reshape(1, -1))
        np.testing.assert_array_equal(y, [ex["y"]])
        np.testing.assert_array_equal(dx, [ex["dx"]])
        np.testing.assert_array_equal(dkernel, ex["dW"])
        np.testing.assert_array_equal(dbias, ex["db"])

    def test_mixed_dtypes_promote_and_gradients_keep_dtypes(self):
        x = jnp.ones((2, 3), jnp.float32)
        kernel = jnp.ones((3, 4), jnp.float64)
        y = dense(x, kernel, jnp.zeros(4, jnp.float32))
        self.assertEqual(y.dtype, jnp.float64)
        dx, dk = jax.grad(lambda x, k: jnp.sum(dense(x, k)), argnums=(0, 1))(x, kernel)
        self.assertEqual((dx.dtype, dk.dtype), (jnp.float32, jnp.float64))


class DenseSweepRestTest(DenseSweepCase):
    """The other two thirds of the shapes, jitted (run by `make test` too)."""

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*SHAPES_REST)
    def test_matches_oracle_autodiff_and_finite_differences(self, lead, n_in, n_out, bias):
        self._check(lead, n_in, n_out, bias)


class DenseAsConvolutionTest(chex.TestCase):
    """The notes' view of a fully-connected layer as a convolution."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_dense_on_flattened_map_equals_full_size_valid_convolution(self):
        # a Dense layer on a flattened 7x7xC map is a 7x7 VALID convolution whose
        # kernel is the Dense kernel reshaped to (7, 7, C, out)
        rng = np.random.default_rng(0)
        n, c, out = 3, 4, 5
        x = rng.normal(size=(n, 7, 7, c))
        kernel = rng.normal(size=(7 * 7 * c, out))
        bias = rng.normal(size=(out,))
        g = rng.normal(size=(n, out))

        @self.variant
        def both(x, kernel, bias):
            flat = lambda x, k, b: dense(x.reshape(n, -1), k, b)  # noqa: E731
            as_conv = lambda x, k, b: conv(  # noqa: E731
                x, k.reshape(7, 7, c, out), b, padding="VALID").reshape(n, out)
            y1, vjp1 = jax.vjp(flat, x, kernel, bias)
            y2, vjp2 = jax.vjp(as_conv, x, kernel, bias)
            return (y1, vjp1(g)), (y2, vjp2(g))

        (y1, grads1), (y2, grads2) = both(x, kernel, bias)
        chex.assert_trees_all_close(y1, y2, atol=1e-10, rtol=1e-10)
        chex.assert_trees_all_close(grads1, grads2, atol=1e-10, rtol=1e-10)
        chex.assert_trees_all_close(y1, dense_ref.dense_forward(x.reshape(n, -1), kernel, bias),
                                    **TOL)

    def test_one_by_one_convolution_is_dense_over_channels(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(2, 5, 6, 3))
        kernel = rng.normal(size=(3, 4))
        y_conv = conv(x, kernel.reshape(1, 1, 3, 4), padding="VALID")
        chex.assert_trees_all_close(dense(x, kernel), y_conv, atol=1e-10, rtol=1e-10)


class DenseLayerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        dict(testcase_name="flat", shape=(4, 6), use_bias=True),
        dict(testcase_name="no_bias", shape=(4, 6), use_bias=False),
        dict(testcase_name="sequence", shape=(2, 3, 6), use_bias=True),
    )
    def test_init_shape_equals_apply_shape(self, shape, use_bias):
        init, apply = fcnn.Dense(7, use_bias=use_bias)
        out_shape, params, state = init(jax.random.PRNGKey(0), (-1,) + shape[1:])
        self.assertEqual(out_shape, (-1,) + shape[1:-1] + (7,))
        self.assertEqual(sorted(params), ["bias", "kernel"] if use_bias else ["kernel"])
        chex.assert_shape(params["kernel"], (6, 7))
        self.assertEqual(state, {})
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        y, _ = self.variant(lambda p, x: apply(p, state, x, train=False))(params, x)
        self.assertEqual(y.shape, (shape[0],) + tuple(out_shape[1:]))

    def test_param_count_and_initializers(self):
        init, _ = fcnn.Dense(10, bias_init=fcnn.initializers.constant(0.5),
                             kernel_init=fcnn.initializers.zeros)
        _, params, _ = init(jax.random.PRNGKey(0), (-1, 128))
        self.assertEqual(fcnn.count_params(params), 128 * 10 + 10)
        np.testing.assert_array_equal(params["bias"], np.full(10, 0.5, np.float32))
        np.testing.assert_array_equal(params["kernel"], np.zeros((128, 10), np.float32))
        self.assertEqual(params["kernel"].dtype, jnp.float32)

    def test_refnet_mnist_shapes_and_parameter_count(self):
        model = fcnn.serial(
            fcnn.Conv(32, 3, padding="SAME"), fcnn.MaxPool(2, strides=2),
            fcnn.Conv(64, 3, padding="SAME"), fcnn.MaxPool(2, strides=2),
            fcnn.Flatten(), fcnn.Dense(128), fcnn.Dense(10),
        )
        shapes = {}

        def init(rng):
            shapes["out"], params, state = model.init(rng, (-1, 28, 28, 1))
            return params, state

        abstract, state = jax.eval_shape(init, jax.random.PRNGKey(0))  # no random draws
        self.assertEqual(shapes["out"], (-1, 10))
        self.assertEqual(abstract["5"]["kernel"].shape, (7 * 7 * 64, 128))
        self.assertEqual(fcnn.count_params(abstract),
                         288 + 32 + 18432 + 64 + 401408 + 128 + 1280 + 10)
        params = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), abstract)
        y, _ = jax.jit(lambda p, x: model.apply(p, state, x, train=False))(
            params, jnp.zeros((2, 28, 28, 1)))
        chex.assert_shape(y, (2, 10))

    def test_backward_switch_reaches_the_op(self):
        rng = np.random.default_rng(0)
        params = {"kernel": jnp.asarray(rng.normal(size=(4, 3))), "bias": jnp.zeros(3)}
        x = jnp.asarray(rng.normal(size=(2, 4)))
        grads = []
        for backward in ("custom", "autodiff"):
            _, apply = fcnn.Dense(3, backward=backward)
            grads.append(jax.grad(
                lambda p: jnp.sum(apply(p, {}, x, train=False)[0] ** 2))(params))
        chex.assert_trees_all_close(*grads, **TOL)


class FlattenAndGlobalAvgPoolTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        dict(testcase_name="1d", shape=(2, 5, 3)),
        dict(testcase_name="2d", shape=(2, 7, 7, 4)),
        dict(testcase_name="3d", shape=(1, 3, 4, 2, 3)),
    )
    def test_flatten_shapes_and_gradient(self, shape):
        init, apply = fcnn.Flatten()
        out_shape, params, state = init(None, (-1,) + shape[1:])
        self.assertEqual(out_shape, (-1, int(np.prod(shape[1:]))))
        self.assertEqual((params, state), ({}, {}))
        rng = np.random.default_rng(0)
        x = rng.normal(size=shape)
        g = rng.normal(size=(shape[0], out_shape[1]))
        y, vjp = jax.vjp(self.variant(lambda x: apply({}, {}, x, train=False)[0]), x)
        self.assertEqual(y.shape, (shape[0], out_shape[1]))
        # row-major: the (h, w, c) entry lands at (h * W + w) * C + c
        np.testing.assert_array_equal(y, x.reshape(shape[0], -1))
        np.testing.assert_array_equal(vjp(g)[0], g.reshape(shape))

    def test_flatten_channels_last_order_by_hand(self):
        x = jnp.arange(8.0).reshape(1, 2, 2, 2)  # x[0, h, w, c] = 4h + 2w + c
        y, _ = fcnn.Flatten().apply({}, {}, x, train=False)
        np.testing.assert_array_equal(y, [[0, 1, 2, 3, 4, 5, 6, 7]])
        y, _ = fcnn.Flatten().apply({}, {}, jnp.zeros((0, 3, 3)), train=False)
        self.assertEqual(y.shape, (0, 9))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        dict(testcase_name="1d", shape=(2, 5, 3)),
        dict(testcase_name="2d", shape=(2, 7, 6, 4)),
        dict(testcase_name="3d", shape=(2, 3, 4, 2, 3)),
    )
    def test_global_avg_pool_oracle_autodiff_finite_differences(self, shape):
        rng = np.random.default_rng(zlib.crc32(str(shape).encode()))
        x = rng.normal(size=shape)
        g = rng.normal(size=(shape[0], shape[-1]))
        v = rng.normal(size=shape)
        eps = 1e-5

        @self.variant
        def all_ways(x):
            out = {}
            for backward in ("custom", "autodiff"):
                y, vjp = jax.vjp(lambda x: global_avg_pool(x, backward), x)
                out[backward] = (y, vjp(g)[0])
            loss = lambda x: jnp.sum(global_avg_pool(x) * g)  # noqa: E731
            out["numeric"] = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
            return out

        out = all_ways(x)
        y_ref = pool_ref.global_avg_pool_forward(x)
        dx_ref = pool_ref.global_avg_pool_backward(x.shape, g)
        for way in ("custom", "autodiff"):
            y, dx = out[way]
            chex.assert_shape(y, (shape[0], shape[-1]))
            chex.assert_trees_all_close(y, y_ref, **TOL, custom_message=way)
            chex.assert_trees_all_close(dx, dx_ref, **TOL, custom_message=way)
        np.testing.assert_allclose(out["numeric"], np.vdot(dx_ref, v), rtol=1e-7, atol=1e-8)

    def test_global_avg_pool_layer_shapes(self):
        init, apply = fcnn.GlobalAvgPool()
        for shape in [(-1, 5, 3), (-1, 7, 7, 64), (-1, 2, 3, 4, 8)]:
            out_shape, params, state = init(None, shape)
            self.assertEqual(out_shape, (-1, shape[-1]))
            x = jnp.ones((2,) + shape[1:])
            y, _ = apply(params, state, x, train=True)
            self.assertEqual(y.shape, (2, shape[-1]))
        # the mean of arange over a 2x2 map, per channel
        y, _ = apply({}, {}, jnp.arange(8.0).reshape(1, 2, 2, 2), train=False)
        np.testing.assert_array_equal(y, [[3.0, 4.0]])


class BadInputTest(chex.TestCase):
    def test_dense_in_features_mismatch_names_both_numbers(self):
        with pytest.raises(ValueError, match=r"x has 5 input features .* kernel expects 4"):
            dense(jnp.ones((2, 5)), jnp.ones((4, 3)))

    def test_dense_other_errors(self):
        with pytest.raises(ValueError, match=r"kernel has shape \(4,\): expected rank 2"):
            dense(jnp.ones((2, 4)), jnp.ones(4))
        with pytest.raises(ValueError, match=r"bias has shape \(4,\): expected \(3,\)"):
            dense(jnp.ones((2, 4)), jnp.ones((4, 3)), jnp.ones(4))
        with pytest.raises(ValueError, match="x is a scalar"):
            dense(jnp.ones(()), jnp.ones((1, 3)))
        with pytest.raises(ValueError, match="backward='hand'"):
            dense(jnp.ones((2, 4)), jnp.ones((4, 3)), backward="hand")

    def test_dense_layer_errors(self):
        with pytest.raises(ValueError, match="features=0"):
            fcnn.Dense(0)
        with pytest.raises(TypeError, match="use_bias='no'"):
            fcnn.Dense(3, use_bias="no")
        with pytest.raises(ValueError, match="unknown initializer"):
            fcnn.Dense(3, kernel_init="nope")
        with pytest.raises(ValueError, match=r"Dense\(3\): input_shape=\(5,\)"):
            fcnn.Dense(3).init(jax.random.PRNGKey(0), (5,))
        init, apply = fcnn.Dense(3)
        _, params, _ = init(jax.random.PRNGKey(0), (-1, 4))
        with pytest.raises(ValueError, match=r"params expect 4 input features .*add Flatten"):
            apply(params, {}, jnp.ones((2, 2, 2, 1)), train=False)
        with pytest.raises(TypeError, match="train=None"):
            apply(params, {}, jnp.ones((2, 4)), train=None)

    def test_flatten_and_global_avg_pool_errors(self):
        with pytest.raises(ValueError, match=r"Flatten: input_shape has shape \(3,\)"):
            fcnn.Flatten().init(None, (3,))
        with pytest.raises(ValueError, match=r"Flatten: x has shape \(\)"):
            fcnn.Flatten().apply({}, {}, jnp.ones(()), train=False)
        with pytest.raises(ValueError, match="expects rank 3 or 4 or 5"):
            global_avg_pool(jnp.ones((2, 3)))
        with pytest.raises(ValueError, match="backward='x'"):
            fcnn.GlobalAvgPool(backward="x")
