"""Activations: values and backward rules checked against autodiff, central finite
differences (float64) and the naive-loop oracle in tests/reference/activation_ref.py;
the notes' facts about sigmoid, tanh and relu; the layers and the name registry."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.ops import activations as act
from tests.reference import activation_ref as ref
from tests.reference import derivation_pages as pages

EPS = 1e-6  # central-difference step for float64


def _inputs(shape, seed):
    """Uniform in [-4, 4], kept 0.05 away from 0 so no difference straddles a kink."""
    x = np.random.default_rng(seed).uniform(-4, 4, shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


@functools.partial(jax.jit, static_argnums=0)
def _fd_vjp(name, x, g):
    """Central differences of <g, f(x)> with respect to every entry of x, in one batch.

    Jitted once per case and shared by both variants: it is the yardstick, not the
    code under test.
    """
    f = functools.partial(CASES[name][0], backward="autodiff")
    n = x.size
    steps = (EPS * jnp.eye(n, dtype=x.dtype)).reshape((n,) + x.shape)
    diff = f(x[None] + steps) - f(x[None] - steps)
    return (diff * g[None]).reshape(n, -1).sum(axis=1).reshape(x.shape) / (2 * EPS)


def _elementwise_case(fn, key):
    return fn, functools.partial(ref.elementwise, key), functools.partial(ref.elementwise_vjp, key)


# name -> (f(x, backward=...), oracle forward, oracle vjp(x, g)); f broadcasts over a
# new leading axis, which the finite differences use.
CASES = {
    "sigmoid": _elementwise_case(act.sigmoid, "sigmoid"),
    "tanh": _elementwise_case(act.tanh, "tanh"),
    "relu": _elementwise_case(act.relu, "relu"),
    "leaky_relu": _elementwise_case(act.leaky_relu, "leaky_relu"),
    "softplus": _elementwise_case(act.softplus, "softplus"),
    "elu": _elementwise_case(act.elu, "elu"),
    "selu": _elementwise_case(act.selu, "selu"),
    "gelu": _elementwise_case(act.gelu, "gelu"),
    "gelu_tanh": _elementwise_case(functools.partial(act.gelu, approximate=True), "gelu_tanh"),
    "silu": _elementwise_case(act.silu, "silu"),
    "softmax_last": (
        act.softmax, ref.softmax, ref.softmax_vjp,
    ),
    "softmax_axis_minus2": (
        functools.partial(act.softmax, axis=-2),
        functools.partial(ref.softmax, axis=-2),
        functools.partial(ref.softmax_vjp, axis=-2),
    ),
    "log_softmax_last": (act.log_softmax, ref.log_softmax, ref.log_softmax_vjp),
    "log_softmax_axis_minus2": (
        functools.partial(act.log_softmax, axis=-2),
        functools.partial(ref.log_softmax, axis=-2),
        functools.partial(ref.log_softmax_vjp, axis=-2),
    ),
    "leaky_relu_darknet": (
        functools.partial(act.leaky_relu, negative_slope=0.1),
        functools.partial(ref.prelu, slope=0.1),
        lambda x, g: ref.prelu_vjp(x, 0.1, g)[0],
    ),
    "prelu_per_channel": (
        lambda x, backward: act.prelu(x, jnp.array([0.25, -0.5, 0.1, 2.0]), backward=backward),
        lambda x: ref.prelu(x, np.array([0.25, -0.5, 0.1, 2.0])),
        lambda x, g: ref.prelu_vjp(x, np.array([0.25, -0.5, 0.1, 2.0]), g)[0],
    ),
    "maxout_2": (
        lambda x, backward: act.maxout(x, 2, backward=backward),
        lambda x: ref.maxout(x, 2),
        lambda x, g: ref.maxout_vjp(x, 2, g),
    ),
}
OUT_SHAPES = {"maxout_2": (3, 2)}  # others keep the (3, 4) shape


class BackwardRuleTest(chex.TestCase):
    """custom rule == autodiff == finite differences == NumPy oracle, values and VJPs."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in CASES])
    def test_three_ways(self, name):
        f, oracle, oracle_vjp = CASES[name]
        x = _inputs((3, 4), seed=len(name))
        g = np.random.default_rng(1).normal(size=OUT_SHAPES.get(name, (3, 4)))

        @self.variant
        def run(x, g):
            y_c, vjp_c = jax.vjp(functools.partial(f, backward="custom"), x)
            y_a, vjp_a = jax.vjp(functools.partial(f, backward="autodiff"), x)
            return y_c, vjp_c(g)[0], y_a, vjp_a(g)[0]

        y_c, dx_c, y_a, dx_a = run(jnp.asarray(x), jnp.asarray(g))
        dx_fd = _fd_vjp(name, jnp.asarray(x), jnp.asarray(g))
        chex.assert_shape(dx_c, x.shape)
        chex.assert_trees_all_close(y_c, y_a, oracle(x), atol=1e-12, rtol=1e-12)
        chex.assert_trees_all_close(dx_c, dx_a, atol=1e-12, rtol=1e-12)
        chex.assert_trees_all_close(dx_c, oracle_vjp(x, g), atol=1e-12, rtol=1e-12)
        chex.assert_trees_all_close(dx_c, dx_fd, atol=1e-7)


class PReluSlopeTest(chex.TestCase):
    """PReLU's slope gradient, shared and per channel, three ways."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("shared", ()), ("per_channel", (4,)), ("per_pixel", (2, 4)))
    def test_slope_gradient(self, slope_shape):
        x = _inputs((3, 2, 4), seed=3)
        slope = np.random.default_rng(4).uniform(-0.5, 0.5, slope_shape)
        g = np.random.default_rng(5).normal(size=x.shape)

        @self.variant
        def run(x, slope, g):
            outs = {}
            for backward in ("custom", "autodiff"):
                _, vjp = jax.vjp(lambda a: act.prelu(x, a, backward=backward), slope)
                outs[backward] = vjp(g)[0]
            return outs

        outs = run(jnp.asarray(x), jnp.asarray(slope), jnp.asarray(g))
        _, dslope_ref = ref.prelu_vjp(x, slope, g)
        n = slope.size
        steps = EPS * np.eye(n).reshape((n,) + slope.shape)
        fd = np.array([
            (np.sum(g * ref.prelu(x, slope + s)) - np.sum(g * ref.prelu(x, slope - s))) / (2 * EPS)
            for s in steps
        ]).reshape(slope.shape)
        chex.assert_shape(outs["custom"], slope.shape)
        chex.assert_trees_all_close(outs["custom"], outs["autodiff"], atol=1e-12)
        chex.assert_trees_all_close(outs["custom"], dslope_ref, atol=1e-10)
        chex.assert_trees_all_close(outs["custom"], fd, atol=1e-7)


class RReluTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_training_slopes_and_gradient(self):
        x = jnp.asarray(_inputs((64, 8), seed=7))
        key = jax.random.PRNGKey(3)

        @self.variant
        def run(x, key):
            y, vjp = jax.vjp(lambda v: act.rrelu(v, train=True, rng=key), x)
            y_a, vjp_a = jax.vjp(lambda v: act.rrelu(v, train=True, rng=key, backward="autodiff"), x)
            return y, vjp(jnp.ones_like(x))[0], y_a, vjp_a(jnp.ones_like(x))[0]

        y, dx, y_a, dx_a = run(x, key)
        negative = np.asarray(x) < 0
        slopes = np.asarray(y)[negative] / np.asarray(x)[negative]
        self.assertTrue(np.all(slopes >= 1 / 8 - 1e-12) and np.all(slopes <= 1 / 3 + 1e-12))
        self.assertGreater(slopes.std(), 0.03)  # drawn per element, not one shared slope
        # the slope drawn for each element is also its derivative
        chex.assert_trees_all_close(np.asarray(dx)[negative], slopes, atol=1e-12)
        drawn = jax.random.uniform(key, x.shape, x.dtype, 1 / 8, 1 / 3)
        chex.assert_trees_all_close(y, y_a, ref.prelu(x, drawn), atol=1e-12)
        chex.assert_trees_all_close(dx, dx_a, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(dx)[~negative], 1.0)
        # mean slope (1/8 + 1/3)/2 = 11/48 over 300-odd draws
        self.assertAlmostEqual(float(slopes.mean()), 11 / 48, delta=0.01)

    def test_same_rng_same_slopes_and_evaluation_mean(self):
        x = -jnp.ones((5, 6))
        a = act.rrelu(x, train=True, rng=jax.random.PRNGKey(0))
        b = act.rrelu(x, train=True, rng=jax.random.PRNGKey(0))
        c = act.rrelu(x, train=True, rng=jax.random.PRNGKey(1))
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, c))
        ev = act.rrelu(x, lower=0.1, upper=0.3, train=False)
        chex.assert_trees_all_close(ev, -0.2 * np.ones((5, 6)), atol=1e-7)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"lower=0.5, upper=0.2: .*lower must be <= upper"):
            act.rrelu(jnp.ones(3), lower=0.5, upper=0.2, train=False)
        with pytest.raises(ValueError, match=r"lower=0.5, upper=0.2"):
            fcnn.RRelu(lower=0.5, upper=0.2)
        with pytest.raises(ValueError, match="needs an rng"):
            act.rrelu(jnp.ones(3), train=True)
        init, apply = fcnn.RRelu()
        shape, params, state = init(jax.random.PRNGKey(0), (2, 3))
        with pytest.raises(ValueError, match=r"RRelu\(0.125, 0.3333\) needs an rng in training mode"):
            apply(params, state, jnp.ones(shape), train=True)
        with pytest.raises(TypeError, match="train=1"):
            apply(params, state, jnp.ones(shape), train=1)


class NotesFactsTest(chex.TestCase):
    """The notes' statements about sigmoid, tanh, relu and softmax."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_sigmoid_tanh_relu_derivatives(self):
        @self.variant
        def derivs(x):
            return {
                name: jax.vmap(jax.grad(fn))(x)
                for name, fn in (("sigmoid", act.sigmoid), ("tanh", act.tanh), ("relu", act.relu))
            }

        d = derivs(jnp.array([-10.0, -2.0, 0.0, 2.0, 10.0]))
        self.assertAlmostEqual(float(d["sigmoid"][2]), 0.25, places=12)
        self.assertLess(float(d["sigmoid"][0]), 5e-5)
        self.assertLess(float(d["sigmoid"][4]), 5e-5)
        self.assertAlmostEqual(float(d["tanh"][2]), 1.0, places=12)  # the notes' -tanh^2 would give 0
        np.testing.assert_array_equal(d["relu"], [0.0, 0.0, 0.0, 1.0, 1.0])  # 0 at x = 0

    @parameterized.parameters("custom", "autodiff")
    def test_derivatives_of_the_derivation_page(self, backward):
        """docs/derivations/activations_losses.md: sigmoid'(0) = 1/4, sigmoid'(+-10) ~
        4.5e-5, tanh'(0) = 1, relu'(0) = 0 and RReLU's evaluation slope 11/48, read
        from the page."""
        page = "activations_losses"
        ex = {name: pages.example(page, name) for name in (
            "sigmoid_derivative", "tanh_derivative", "relu_derivative", "rrelu_evaluation_slope")}

        def derivative(fn, at, **kwargs):
            return float(jax.grad(lambda v: fn(v, backward=backward, **kwargs))(jnp.asarray(at)))

        self.assertEqual(derivative(act.sigmoid, 0.0), ex["sigmoid_derivative"]["at_0"])
        value, half_unit = pages.printed(ex["sigmoid_derivative"]["at_10"])
        for at in (-10.0, 10.0):
            self.assertAlmostEqual(derivative(act.sigmoid, at), value, delta=half_unit)
        self.assertEqual(derivative(act.tanh, 0.0), ex["tanh_derivative"]["at_0"])
        self.assertEqual(derivative(act.relu, 0.0), ex["relu_derivative"]["at_0"])
        slopes = ex["rrelu_evaluation_slope"]
        lower, upper = pages.fraction(slopes["lower"]), pages.fraction(slopes["upper"])
        self.assertEqual((lower + upper) / 2, pages.fraction(slopes["mean"]))
        # the defaults are the page's bounds, and the evaluation slope is their mean
        self.assertAlmostEqual(derivative(act.rrelu, -1.0, train=False),
                               float(pages.fraction(slopes["mean"])), places=15)
        self.assertAlmostEqual(derivative(act.rrelu, -1.0, train=False, lower=float(lower),
                                          upper=float(upper)),
                               float(pages.fraction(slopes["mean"])), places=15)

    def test_tanh_is_a_scaled_sigmoid(self):
        x = jnp.linspace(-5.0, 5.0, 41)
        chex.assert_trees_all_close(act.tanh(x), 2 * act.sigmoid(2 * x) - 1, atol=1e-12)

    def test_softmax_of_the_notes_scores(self):
        p = np.asarray(act.softmax(jnp.array([3.0, 1.0, -3.0])))
        self.assertAlmostEqual(p.sum(), 1.0, places=12)
        self.assertTrue(p[0] > p[1] > p[2] > 0)
        chex.assert_trees_all_close(p, ref.softmax(np.array([3.0, 1.0, -3.0])), atol=1e-12)

    def test_extreme_inputs_stay_finite(self):
        @jax.jit
        def run(x):
            return {
                "softmax": act.softmax(x),
                "log_softmax": act.log_softmax(x),
                "softplus": act.softplus(x),
                "sigmoid": act.sigmoid(x),
                "grads": jax.grad(lambda v: act.log_softmax(v)[0] + act.softplus(v).sum()
                                  + act.elu(v).sum() + act.silu(v).sum())(x),
            }

        for dtype in (jnp.float32, jnp.float64):
            out = run(jnp.array([1000.0, -1000.0], dtype))
            chex.assert_tree_all_finite(out)
            chex.assert_trees_all_close(out["softmax"], np.array([1.0, 0.0]), atol=1e-6)
            chex.assert_trees_all_close(out["log_softmax"], np.array([0.0, -2000.0]), atol=1e-3)
            chex.assert_trees_all_close(out["softplus"], np.array([1000.0, 0.0]), atol=1e-3)
            chex.assert_trees_all_close(out["sigmoid"], np.array([1.0, 0.0]), atol=1e-6)

    def test_leaky_relu_default_slope(self):
        np.testing.assert_allclose(act.leaky_relu(jnp.array([-2.0, 3.0])), [-0.02, 3.0])

    def test_jit_traces_once(self):
        @jax.jit
        @chex.assert_max_traces(n=1)
        def f(x):
            return act.softmax(act.gelu(x)).sum()

        chex.clear_trace_counter()
        jax.grad(f)(jnp.ones((2, 3)))
        jax.grad(f)(jnp.zeros((2, 3)))

    def test_dtypes(self):
        for name in act.ACTIVATION_NAMES:
            if act.activation_spec(name).kind in ("parametric", "stochastic", "pieces"):
                continue
            fn = act.get_activation(name)
            out32 = jax.eval_shape(fn, jax.ShapeDtypeStruct((2, 3), jnp.float32))
            self.assertEqual(out32.dtype, jnp.float32, name)
            out_int = jax.eval_shape(fn, jax.ShapeDtypeStruct((2, 3), jnp.int32))
            self.assertTrue(jnp.issubdtype(out_int.dtype, jnp.floating), name)
        f32 = jax.ShapeDtypeStruct((2, 3), jnp.float32)
        self.assertEqual(jax.eval_shape(act.prelu, f32, jax.ShapeDtypeStruct((3,), jnp.float32)).dtype, jnp.float32)


class RegistryAndLayerTest(chex.TestCase):
    def test_every_name_builds_a_layer_whose_shape_is_predicted(self):
        x = jax.ShapeDtypeStruct((2, 5, 4), jnp.float32)
        for name in act.ACTIVATION_NAMES:
            init, apply = fcnn.Activation(name)
            out_shape, params, state = init(jax.random.PRNGKey(0), (-1, 5, 4))
            expected = (2, 5, 2) if name == "maxout" else (2, 5, 4)  # two pieces per unit
            self.assertEqual(out_shape, (-1,) + expected[1:], name)
            for train in (False, True):
                y, new_state = jax.eval_shape(
                    lambda p, s, v: apply(p, s, v, train=train, rng=jax.random.PRNGKey(1)),
                    params, state, x,
                )
                self.assertEqual((y.shape, y.dtype), (expected, jnp.float32), name)
                self.assertEqual(new_state, {})

    def test_activation_by_name_matches_the_function(self):
        x = jnp.asarray(_inputs((2, 4), seed=12))
        for name in act.ACTIVATION_NAMES:
            if act.activation_spec(name).kind in ("parametric", "stochastic", "pieces"):
                continue
            _, apply = fcnn.Activation(name)
            y, _ = apply({}, {}, x, train=False)
            chex.assert_trees_all_close(y, act.get_activation(name)(x), atol=0)
        _, apply = fcnn.Activation("leaky_relu", negative_slope=0.1)
        chex.assert_trees_all_close(apply({}, {}, x, train=False)[0], act.leaky_relu(x, 0.1))
        self.assertIs(fcnn.Swish, fcnn.Silu)
        self.assertIs(act.get_activation("swish"), act.silu)

    def test_unknown_names_list_the_valid_ones(self):
        with pytest.raises(ValueError, match=r"activation='rectifier': unknown activation; valid names are \('sigmoid', 'tanh', 'relu'"):
            act.get_activation("rectifier")
        with pytest.raises(ValueError, match=r"activation='Relu'.*'leaky_relu'.*'log_softmax'"):
            fcnn.Activation("Relu")
        with pytest.raises(TypeError, match="expected a name"):
            fcnn.Activation(act.relu)
        with pytest.raises(TypeError, match="unexpected keyword"):
            fcnn.Activation("relu", negative_slope=0.1)

    def test_prelu_layer_params_and_gradient(self):
        x = jnp.asarray(_inputs((4, 3, 3, 2), seed=13))
        for shared, shape in ((False, (2,)), (True, ())):
            init, apply = fcnn.PRelu(shared=shared, init=0.25)
            out_shape, params, state = init(jax.random.PRNGKey(0), (-1, 3, 3, 2))
            self.assertEqual(out_shape, (-1, 3, 3, 2))
            chex.assert_shape(params["slope"], shape)
            np.testing.assert_array_equal(params["slope"], 0.25)

            def loss(p):
                return (apply(p, state, x, train=True)[0] ** 2).sum()

            grad = jax.grad(loss)(params)["slope"]
            slope = np.asarray(params["slope"], np.float64)
            y = ref.prelu(x, slope)
            _, want = ref.prelu_vjp(x, slope, 2 * y)
            chex.assert_trees_all_close(grad, want, rtol=1e-5)

    def test_layer_errors(self):
        with pytest.raises(ValueError, match=r"PRelu: input_shape=\(5,\): one slope per channel"):
            fcnn.PRelu().init(jax.random.PRNGKey(0), (5,))
        with pytest.raises(ValueError, match=r"Softmax\(axis=2\): axis=2: expected an int in \[-2, 1\] for an input of rank 2 \(shape \(4, 3\)\)"):
            fcnn.Softmax(axis=2).init(jax.random.PRNGKey(0), (4, 3))
        with pytest.raises(ValueError, match=r"negative_slope=nan: expected a finite number"):
            fcnn.LeakyRelu(float("nan"))
        with pytest.raises(ValueError, match=r"backward='numeric'"):
            fcnn.Relu(backward="numeric")
        with pytest.raises(TypeError, match=r"Sigmoid: train=None"):
            fcnn.Sigmoid().apply({}, {}, jnp.ones(2), train=None)

    def test_op_errors(self):
        with pytest.raises(ValueError, match=r"slope has shape \(3,\): expected \(\) .* \(4,\)"):
            act.prelu(jnp.ones((2, 4)), jnp.ones(3))
        with pytest.raises(ValueError, match=r"axis=2: expected an int in \[-2, 1\] for an input of rank 2"):
            act.softmax(jnp.ones((2, 4)), axis=2)
        with pytest.raises(ValueError, match=r"pieces=1: expected an int >= 2 \(maxout needs k >= 2 linear pieces"):
            act.maxout(jnp.ones((2, 4)), 1)
        with pytest.raises(ValueError, match=r"x has shape \(2, 5\): the last axis must hold features \* pieces"):
            act.maxout(jnp.ones((2, 5)), 2)
        with pytest.raises(ValueError, match=r"backward='manual'"):
            act.sigmoid(jnp.ones(2), backward="manual")
        with pytest.raises(ValueError, match=r"alpha=inf"):
            act.elu(jnp.ones(2), alpha=float("inf"))


class MaxoutLayerTest(chex.TestCase):
    """Maxout as a Dense/Conv layer with `pieces` times the outputs, then the max."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_dense_maxout_three_ways(self):
        init, apply = fcnn.Maxout(3, pieces=4, param_dtype=jnp.float64)
        out_shape, params, state = init(jax.random.PRNGKey(0), (-1, 5))
        self.assertEqual(out_shape, (-1, 3))
        chex.assert_shape((params["kernel"], params["bias"]), ((5, 12), (12,)))
        params["bias"] = jnp.asarray(np.random.default_rng(1).normal(size=12))
        x = jnp.asarray(np.random.default_rng(2).normal(size=(6, 5)))
        g = jnp.asarray(np.random.default_rng(3).normal(size=(6, 3)))
        _, apply_a = fcnn.Maxout(3, pieces=4, backward="autodiff")

        @self.variant
        def run(p):
            outs = {}
            for name, fn in (("custom", apply), ("autodiff", apply_a)):
                y, vjp = jax.vjp(lambda q: fn(q, state, x, train=False)[0], p)
                outs[name] = (y, vjp(g)[0])
            return outs

        outs = run(params)
        kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
        z = np.asarray(x) @ kernel + bias
        y_ref = ref.maxout(z, 4)
        dz = ref.maxout_vjp(z, 4, np.asarray(g))
        chex.assert_trees_all_close(outs["custom"][0], outs["autodiff"][0], y_ref, atol=1e-12)
        chex.assert_trees_all_close(outs["custom"][1], outs["autodiff"][1], atol=1e-12)
        chex.assert_trees_all_close(
            outs["custom"][1], {"kernel": np.asarray(x).T @ dz, "bias": dz.sum(axis=0)}, atol=1e-12
        )
        # finite differences along a random direction in parameter space
        direction = jax.tree_util.tree_map(
            lambda a: jnp.asarray(np.random.default_rng(4).normal(size=a.shape)), params
        )

        def objective(p):
            return jnp.sum(g * apply_a(p, state, x, train=False)[0])

        shifted = [jax.tree_util.tree_map(lambda a, d: a + s * EPS * d, params, direction) for s in (1, -1)]
        fd = (objective(shifted[0]) - objective(shifted[1])) / (2 * EPS)
        analytic = sum(jnp.vdot(outs["custom"][1][k], direction[k]) for k in params)
        self.assertAlmostEqual(float(fd), float(analytic), places=6)

    def test_conv_maxout_matches_conv_then_max(self):
        init, apply = fcnn.Maxout(2, pieces=3, kind="conv", kernel_size=3, padding="VALID")
        out_shape, params, state = init(jax.random.PRNGKey(0), (-1, 6, 6, 4))
        self.assertEqual(out_shape, (-1, 4, 4, 2))
        chex.assert_shape(params["kernel"], (3, 3, 4, 6))
        x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6, 6, 4)), jnp.float32)
        y, _ = apply(params, state, x, train=False)
        z, _ = fcnn.Conv(6, 3, padding="VALID").apply(params, {}, x, train=False)
        chex.assert_shape(y, (2, 4, 4, 2))
        chex.assert_trees_all_close(y, ref.maxout(np.asarray(z), 3), rtol=1e-6)

    def test_pieces_w_and_minus_w_give_the_absolute_value(self):
        init, apply = fcnn.Maxout(1, pieces=2, use_bias=False)
        _, params, state = init(jax.random.PRNGKey(0), (-1, 1))
        params = {"kernel": jnp.array([[1.0, -1.0]])}
        x = jnp.array([[-2.0], [0.5], [3.0]])
        np.testing.assert_allclose(apply(params, state, x, train=False)[0], np.abs(x))
        params = {"kernel": jnp.array([[1.0, 0.0]])}  # pieces (w, 0): a ReLU
        np.testing.assert_allclose(apply(params, state, x, train=False)[0], np.maximum(x, 0))

    def test_errors(self):
        with pytest.raises(ValueError, match=r"pieces=1: expected an int >= 2 \(maxout needs k >= 2 linear pieces"):
            fcnn.Maxout(4, pieces=1)
        with pytest.raises(ValueError, match=r"features=0: expected a positive int"):
            fcnn.Maxout(0)
        with pytest.raises(ValueError, match=r"kind='rnn': expected one of \('dense', 'conv'\)"):
            fcnn.Maxout(4, kind="rnn")
        with pytest.raises(ValueError, match=r'kind="conv": a convolutional maxout layer needs kernel_size'):
            fcnn.Maxout(4, kind="conv")
        with pytest.raises(ValueError, match=r"kernel_size=3: a dense maxout layer has no kernel size"):
            fcnn.Maxout(4, kernel_size=3)


@pytest.mark.parametrize("backward", ["custom", "autodiff"])
def test_relu_propagates_nan_and_maps_infinities(backward):
    x = jnp.array([jnp.nan, -jnp.inf, jnp.inf, -1.0, 0.0, 2.0])
    y = act.relu(x, backward=backward)
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:], [0.0, np.inf, 0.0, 0.0, 2.0])
    g = jax.grad(lambda v: jnp.sum(act.relu(v, backward=backward)[1:]))(x)
    np.testing.assert_array_equal(g[1:], [0.0, 1.0, 0.0, 0.0, 1.0])
