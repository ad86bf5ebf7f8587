"""Extreme numbers: saturated logits, huge inputs, zero-variance batches, tiny and
huge learning rates.

Values and gradients must be finite (`chex.assert_tree_all_finite`) and equal the
closed-form mathematics, written here from the formulas (limits such as
sigmoid(-1000) = e^-1000 = 0 in floating point), never taken from the code under
test. Every op runs with its hand-written rule and with autodiff of the plain
forward; activations, losses, conv, pooling and dense in float32 and float64, the
normalization layers in float64 (and `normalize` in float32 on equal values far from
0). Softmax, log-softmax and the saturating functions run jitted and eagerly (chex
variants); the rest runs jitted only (run eagerly, every primitive compiles on its
own, which would make this file several times slower).

fcnn has no log-sigmoid op: log sigmoid(x) = -softplus(-x) is checked through
softplus, and -log sigmoid(z) is the binary cross-entropy of label 1.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn import losses
from fcnn.ops import activations as act
from fcnn.ops import pooling
from fcnn.ops.conv import conv
from fcnn.ops.dense import dense
from fcnn.ops.normalization import normalize
from fcnn.train import make_optimizer, make_train_step
from tests.reference import norm_ref

BACKWARDS = ("custom", "autodiff")
DTYPES = (jnp.float32, jnp.float64)
# float32 results are compared to float64 closed forms; subnormals (e.g. e^-100 =
# 3.7e-44) may be flushed to zero on the CPU, hence the absolute floor.
TOL = {jnp.float32: dict(rtol=1e-6, atol=1e-30), jnp.float64: dict(rtol=1e-12, atol=1e-300)}
# Derivatives built from outputs, s (1 - s) and 1 - tanh^2, are accurate to a few ulps
# of 1, not of their own size: 1 - sigmoid(100) rounds to 0 where the closed form
# gives e^-100. (Autodiff forms the same products.)
GRAD_TOL = {jnp.float32: dict(rtol=1e-6, atol=1e-7), jnp.float64: dict(rtol=1e-12, atol=1e-16)}


def value_and_vjp(fn, x, g=None):
    """fn(x) and the VJP of `g` (default ones) at x."""
    y, vjp = jax.vjp(fn, x)
    g = jnp.ones_like(y) if g is None else g
    return y, vjp(g)[0]


def vjp_at(fn, args, g, has_aux=False):
    """fn(*args) and the VJP of `g` for every argument (the aux output last, if any)."""
    if has_aux:
        y, vjp, aux = jax.vjp(fn, *args, has_aux=True)
        return y, vjp(g), aux
    y, vjp = jax.vjp(fn, *args)
    return y, vjp(g)


def assert_close(actual, expected, dtype, what="", grad=False):
    chex.assert_tree_all_finite(actual)
    chex.assert_trees_all_close(
        np.asarray(actual, np.float64), np.asarray(expected, np.float64),
        **(GRAD_TOL if grad else TOL)[dtype], custom_message=what,
    )


DTYPE_CASES = [(jnp.dtype(d).name, d) for d in DTYPES]


def per_backward(fn):
    """x -> {backward: fn(x, backward)} for both rules, traced as one function."""
    return lambda *args: {b: fn(*args, b) for b in BACKWARDS}


# ---------------------------------------------------------------- closed forms


def sigmoid(v: float) -> float:
    """1 / (1 + e^-v) without overflow: e^v / (1 + e^v) for v < 0."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    return math.exp(v) / (1.0 + math.exp(v))


def softplus(v: float) -> float:
    """log(1 + e^v) = max(v, 0) + log1p(e^-|v|)."""
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def tanh_prime(v: float) -> float:
    """1 / cosh^2 v = 4 e^-2|v| / (1 + e^-2|v|)^2."""
    e = math.exp(-2 * abs(v))
    return 4 * e / (1 + e) ** 2


SATURATING = [
    # name, f(x), closed-form f, closed-form f'
    ("sigmoid", act.sigmoid, sigmoid, lambda v: sigmoid(v) * sigmoid(-v)),
    ("tanh", act.tanh, math.tanh, tanh_prime),
    ("softplus", act.softplus, softplus, sigmoid),
    # log sigmoid(x) = -softplus(-x);  d/dx = sigmoid(-x)
    ("log_sigmoid", lambda x, backward: -act.softplus(-x, backward=backward),
     lambda v: -softplus(-v), lambda v: sigmoid(-v)),
]

SATURATING_POINTS = (-1000.0, -100.0, 100.0, 1000.0)


def table_values_and_derivatives(table, x, backward):
    """{name: (f(x), f'(x))} for every function of `table`, in one traced function."""
    return {row[0]: value_and_vjp(lambda x: row[1](x, backward=backward), x) for row in table}


def _flat(out):
    """{backward: {name: v}} -> [((backward, name), v)]."""
    return [((b, n), v) for b, table in out.items() for n, v in table.items()]


class SaturatingTest(chex.TestCase):
    """sigmoid, tanh, softplus and log-sigmoid at +-100 and +-1000."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_saturating(self, dtype):
        x = jnp.asarray(SATURATING_POINTS, dtype)
        out = self.variant(per_backward(
            lambda x, b: table_values_and_derivatives(SATURATING, x, b)))(x)
        for (backward, name), (y, dx) in _flat(out):
            row = next(r for r in SATURATING if r[0] == name)
            assert_close(y, [row[2](v) for v in SATURATING_POINTS], dtype, f"{backward} {name}")
            assert_close(dx, [row[3](v) for v in SATURATING_POINTS], dtype,
                         f"{backward} {name}'", grad=True)

    def test_closed_forms_at_the_points(self):
        """The limits the table relies on, spelled out."""
        assert sigmoid(-1000) == 0.0 and sigmoid(1000) == 1.0
        assert sigmoid(-100) == pytest.approx(math.exp(-100), rel=1e-12)
        assert softplus(1000) == 1000.0 and softplus(-1000) == 0.0
        assert tanh_prime(1000) == 0.0 and tanh_prime(100) == pytest.approx(4 * math.exp(-200))


# ---------------------------------------------------------------- logits +-1000


class LogitsTest(chex.TestCase):
    """Logits of +-1000 through softmax, log-softmax and the two cross-entropies."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_softmax(self, dtype):
        x = jnp.asarray([[1000.0, -1000.0, 0.0], [1000.0, 1000.0, -1000.0]], dtype)
        g = jnp.asarray([[1.0, 2.0, 3.0], [1.0, -1.0, 2.0]], dtype)
        out = self.variant(per_backward(
            lambda x, g, b: value_and_vjp(lambda x: act.softmax(x, backward=b), x, g)))(x, g)
        for backward, (y, dx) in out.items():
            # p = e^x / sum e^x: e^-1000 and e^-2000 are 0 next to 1
            assert_close(y, [[1, 0, 0], [0.5, 0.5, 0]], dtype, f"{backward} softmax")
            # VJP p_j (g_j - sum_i g_i p_i): row 1 is 0 (p one-hot); row 2 0.5 (+-1 - 0)
            assert_close(dx, [[0, 0, 0], [0.5, -0.5, 0]], dtype, f"{backward} softmax vjp")

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_log_softmax(self, dtype):
        x = jnp.asarray([[1000.0, -1000.0, 0.0]], dtype)
        g = jnp.asarray([[1.0, 2.0, 3.0]], dtype)
        out = self.variant(per_backward(
            lambda x, g, b: value_and_vjp(lambda x: act.log_softmax(x, backward=b), x, g)))(x, g)
        for backward, (y, dx) in out.items():
            # log p = x - logsumexp(x) = x - 1000 (e^-1000 and e^-2000 vanish next to 1)
            assert_close(y, [[0, -2000, -1000]], dtype, f"{backward} log_softmax")
            # VJP g_j - p_j sum_i g_i = g - [6, 0, 0]
            assert_close(dx, [[-5, 2, 3]], dtype, f"{backward} log_softmax vjp")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_softmax_cross_entropy(self, dtype):
        logits = jnp.asarray([[1000.0, -1000.0], [1000.0, -1000.0], [1000.0, 1000.0]], dtype)
        labels = jnp.asarray([0, 1, 1], jnp.int32)
        one_hot = jax.nn.one_hot(labels, 2, dtype=dtype)

        def both(z, b):
            return {
                kind: jax.value_and_grad(
                    lambda z: losses.softmax_cross_entropy(z, y, backward=b))(z)
                for kind, y in (("int labels", labels), ("one-hot labels", one_hot))
            }

        out = self.variant(per_backward(both))(logits)
        for (backward, kind), (value, grad) in _flat(out):
            # -log p_y per example: 0 (true logit 1000 vs -1000), 2000 (true -1000 vs
            # 1000), log 2 (a tie); the mean over n = 3
            assert_close(value, (0 + 2000 + math.log(2)) / 3, dtype, f"{backward} {kind} loss")
            # dC/dz = (p - y) / n
            assert_close(grad, np.array([[0, 0], [1, -1], [0.5, -0.5]]) / 3, dtype,
                         f"{backward} {kind} grad")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_binary_cross_entropy_with_logits(self, dtype):
        z = jnp.asarray([[1000.0, -1000.0, 1000.0, -1000.0, 100.0, -100.0]], dtype)
        y = jnp.asarray([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0]], dtype)
        out = self.variant(per_backward(lambda z, y, b: jax.value_and_grad(
            lambda z, y: losses.binary_cross_entropy_with_logits(z, y, backward=b),
            argnums=(0, 1))(z, y)))(z, y)
        # -[y log s(z) + (1 - y) log(1 - s(z))] = softplus(z) - z y, summed (n = 1)
        points = np.ravel(z).tolist()
        expected = sum(softplus(a) - a * b for a, b in zip(points, np.ravel(y).tolist()))
        assert expected == pytest.approx(0 + 1000 + 1000 + 0 + math.exp(-100) + 100)
        for backward, (value, (dz, dy)) in out.items():
            assert_close(value, expected, dtype, f"{backward} loss")
            # dC/dz = s(z) - y;  dC/dy = -z
            assert_close(dz, [[0, -1, 1, 0, -sigmoid(-100), sigmoid(-100) - 1]], dtype,
                         f"{backward} dz", grad=True)
            assert_close(dy, [[-v for v in points]], dtype, f"{backward} dy")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_negative_log_sigmoid(self, dtype):
        """-log sigmoid(z) = BCE(z, 1) = softplus(-z): 0 at 1000, 1000 at -1000."""
        points = (-1000.0, -100.0, 100.0, 1000.0)
        z = jnp.asarray(points, dtype)[:, None]

        def total(z, b):  # the loss is a mean over the batch: times n gives the sum
            return losses.binary_cross_entropy_with_logits(
                z, jnp.ones_like(z), backward=b) * z.shape[0]

        out = self.variant(per_backward(lambda z, b: jax.value_and_grad(total)(z, b)))(z)
        for backward, (value, dz) in out.items():
            assert_close(value, sum(softplus(-v) for v in points), dtype,
                         f"{backward} sum of -log sigmoid")
            assert_close(dz[:, 0], [-sigmoid(-v) for v in points], dtype,
                         f"{backward} d/dz = -sigmoid(-z)", grad=True)


# ---------------------------------------------------------------- inputs of +-1e4

BIG = 1e4
ELEMENTWISE = [
    # name, f(x, backward), f(+1e4), f(-1e4), f'(+1e4), f'(-1e4)
    ("relu", act.relu, BIG, 0.0, 1.0, 0.0),
    ("leaky_relu", lambda x, backward: act.leaky_relu(x, 0.01, backward=backward),
     BIG, -0.01 * BIG, 1.0, 0.01),
    # alpha (e^x - 1) -> -alpha, alpha e^x -> 0
    ("elu", act.elu, BIG, -1.0, 1.0, 0.0),
    ("selu", act.selu, act.SELU_SCALE * BIG, -act.SELU_SCALE * act.SELU_ALPHA,
     act.SELU_SCALE, 0.0),
    # x Phi(x): Phi(1e4) = 1, Phi(-1e4) = 0 (and x phi(x) = 0)
    ("gelu", act.gelu, BIG, 0.0, 1.0, 0.0),
    ("gelu_tanh", lambda x, backward: act.gelu(x, True, backward=backward), BIG, 0.0, 1.0, 0.0),
    # x sigmoid(x); s (1 + x (1 - s)) with s = 1 or e^-1e4 = 0
    ("silu", act.silu, BIG, 0.0, 1.0, 0.0),
    ("softplus", act.softplus, BIG, 0.0, 1.0, 0.0),
    ("sigmoid", act.sigmoid, 1.0, 0.0, 0.0, 0.0),
    ("tanh", act.tanh, 1.0, -1.0, 0.0, 0.0),
]


class BigInputTest(chex.TestCase):
    """Inputs of +-1e4 through the activations, conv, pooling and dense."""

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_elementwise(self, dtype):
        x = jnp.asarray([BIG, -BIG], dtype)
        out = self.variant(per_backward(
            lambda x, b: table_values_and_derivatives(ELEMENTWISE, x, b)))(x)
        for (backward, name), (y, dx) in _flat(out):
            _, _, y_pos, y_neg, d_pos, d_neg = next(r for r in ELEMENTWISE if r[0] == name)
            assert_close(y, [y_pos, y_neg], dtype, f"{backward} {name}")
            assert_close(dx, [d_pos, d_neg], dtype, f"{backward} {name}'")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_conv(self, dtype):
        # (1, 5, 5, 2) filled with +-1e4, a 3x3 kernel of ones (2 -> 3 channels), VALID
        kernel = jnp.ones((3, 3, 2, 3), dtype)
        g = jnp.ones((1, 3, 3, 3), dtype)

        def run(kernel, g, b):
            return [vjp_at(lambda x, k: conv(x, k, padding="VALID", backward=b),
                           (jnp.full((1, 5, 5, 2), v, dtype), kernel), g) for v in (BIG, -BIG)]

        out = self.variant(per_backward(run))(kernel, g)
        cover = np.array([1, 2, 3, 2, 1])  # windows covering each row (or column)
        for (backward, i), (y, (dx, dk)) in _flat({b: dict(enumerate(v)) for b, v in out.items()}):
            value = (BIG, -BIG)[i]
            what = f"{backward} x = {value}"
            assert_close(y, np.full((1, 3, 3, 3), 18 * value), dtype, f"{what}: y = 9 taps x 2")
            # dx[i, j, c] = 3 output channels * cover[i] * cover[j]
            assert_close(dx, 3 * np.outer(cover, cover)[None, :, :, None] * np.ones((1, 5, 5, 2)),
                         dtype, f"{what}: dx")
            # dk = sum over the 9 output positions of x
            assert_close(dk, np.full((3, 3, 2, 3), 9 * value), dtype, f"{what}: dkernel")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_pooling(self, dtype):
        # -1e4 everywhere but the top-left cell of each 2x2 window, which holds +1e4
        corner = np.zeros((4, 4))
        corner[::2, ::2] = 1
        x = jnp.asarray(np.where(corner, BIG, -BIG)[None, :, :, None], dtype)
        g = jnp.ones((1, 2, 2, 1), dtype)

        def run(x, g, b):
            return {
                "max": vjp_at(lambda x: pooling.max_pool(x, 2, backward=b), (x,), g),
                "avg": vjp_at(lambda x: pooling.avg_pool(x, 2, backward=b), (x,), g),
            }

        out = self.variant(per_backward(run))(x, g)
        expected = {
            "max": (BIG, corner),  # the gradient goes to the single maximum
            "avg": ((BIG - 3 * BIG) / 4, np.full((4, 4), 0.25)),
        }
        for (backward, kind), (y, (dx,)) in _flat(out):
            assert_close(y, np.full((1, 2, 2, 1), expected[kind][0]), dtype, f"{backward} {kind}")
            assert_close(dx, expected[kind][1][None, :, :, None], dtype, f"{backward} d{kind}")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*DTYPE_CASES)
    def test_dense(self, dtype):
        kernel = jnp.ones((4, 3), dtype)
        bias = jnp.asarray([1.0, 2.0, 3.0], dtype)
        g = jnp.ones((2, 3), dtype)

        def run(kernel, bias, g, b):
            return [vjp_at(lambda x, k, c: dense(x, k, c, backward=b),
                           (jnp.full((2, 4), v, dtype), kernel, bias), g) for v in (BIG, -BIG)]

        out = self.variant(per_backward(run))(kernel, bias, g)
        for (backward, i), (y, (dx, dk, db)) in _flat({b: dict(enumerate(v)) for b, v in out.items()}):
            value = (BIG, -BIG)[i]
            what = f"{backward} x = {value}"
            assert_close(y, 4 * value + np.array([[1, 2, 3]] * 2), dtype, f"{what}: y = 4 x + b")
            assert_close(dx, np.full((2, 4), 3.0), dtype, f"{what}: dx = sum over outputs")
            assert_close(dk, np.full((4, 3), 2 * value), dtype, f"{what}: dW = x^T g")
            assert_close(db, np.full(3, 2.0), dtype, f"{what}: db = sum over the batch")


# ---------------------------------------------------------------- zero variance

EPS = 1e-5


def zero_variance_dx(dy, scale_full, axes):
    """dx of y = scale (x - mu) / sqrt(var + eps) + bias where every group is constant.

    With xhat = 0 the three-term formula keeps two terms:
    dx = (dxhat - mean_group(dxhat)) / sqrt(eps), dxhat = dy * scale.
    """
    dxhat = dy * scale_full
    return (dxhat - dxhat.mean(axis=axes, keepdims=True)) / math.sqrt(EPS)


# name, layer, the group axes of x (N, H, W, C), or of its (N, H, W, G, C / G) view
NORM_LAYERS = [
    ("batch_norm", lambda b: fcnn.BatchNorm(backward=b), (0, 1, 2), None),
    ("layer_norm", lambda b: fcnn.LayerNorm(backward=b), (1, 2, 3), None),
    ("instance_norm", lambda b: fcnn.InstanceNorm(backward=b), (1, 2), None),
    ("group_norm", lambda b: fcnn.GroupNorm(2, backward=b), (1, 2, 4), 2),
]
CONSTANTS = [("zero", 0.0), ("small", 3.7), ("big_negative", -BIG)]


class ZeroVarianceTest(chex.TestCase):
    """A batch whose values are all equal through every normalization layer."""

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[
        (f"{n}_{b}", layer, axes, groups, b) for n, layer, axes, groups in NORM_LAYERS
        for b in BACKWARDS
    ])
    def test_normalization_layer(self, make_layer, axes, groups, backward):
        shape = (3, 2, 2, 4)
        layer = make_layer(backward)
        _, params, state = layer.init(jax.random.PRNGKey(0), shape)
        rng = np.random.default_rng(0)
        params = {"scale": rng.uniform(0.5, 2, 4), "bias": rng.standard_normal(4)}
        dy = rng.standard_normal(shape)
        values = jnp.asarray([c for _, c in CONSTANTS], jnp.float64)

        def at(value):  # one input of equal values
            x = jnp.full(shape, value, jnp.float64)
            return vjp_at(lambda p, x: layer.apply(p, state, x, train=True), (params, x), dy,
                          has_aux=True)

        ys, (dparams, dxs), new_states = self.variant(jax.vmap(at))(values)
        chex.assert_tree_all_finite((ys, new_states, dparams, dxs))
        scale_full = np.broadcast_to(params["scale"], shape)
        view = shape if groups is None else shape[:-1] + (groups, shape[-1] // groups)
        expected_dx = zero_variance_dx(dy.reshape(view), scale_full.reshape(view), axes)
        for i, (name, value) in enumerate(CONSTANTS):
            # xhat = 0: y is the bias, the scale gets no gradient, the bias all of dy
            assert_close(ys[i], np.broadcast_to(params["bias"], shape), jnp.float64,
                         f"{name}: y = bias")
            assert_close(dparams["scale"][i], np.zeros(4), jnp.float64, f"{name}: dscale")
            assert_close(dparams["bias"][i], dy.sum(axis=(0, 1, 2)), jnp.float64,
                         f"{name}: dbias")
            assert_close(dxs[i], expected_dx.reshape(shape), jnp.float64, f"{name}: dx")
            if "mean" in new_states:  # BatchNorm: running statistics of a zero variance
                momentum = 0.99  # the state keeps the layer's float32 parameter dtype
                assert_close(new_states["mean"][i], np.full(4, (1 - momentum) * value),
                             jnp.float32, f"{name}: running mean")
                assert_close(new_states["var"][i], np.full(4, momentum * 1.0), jnp.float32,
                             f"{name}: running var")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[(f"{b}", b) for b in BACKWARDS])
    def test_batch_norm_eval_with_zero_running_variance(self, backward):
        """Evaluation with running variance 0: y = scale (x - mean) / sqrt(eps) + bias."""
        layer = fcnn.BatchNorm(backward=backward)
        shape = (2, 3, 3, 2)
        _, _, state = layer.init(jax.random.PRNGKey(0), shape)
        params = {"scale": jnp.asarray([2.0, -1.0]), "bias": jnp.asarray([0.5, 1.5])}
        state = dict(state, mean=jnp.asarray([7.0, 7.0]), var=jnp.zeros(2))
        x = jnp.full(shape, 7.0, jnp.float64)
        y, (dx,), _ = self.variant(lambda x: vjp_at(
            lambda x: layer.apply(params, state, x, train=False), (x,), jnp.ones(shape),
            has_aux=True))(x)
        assert_close(y, np.broadcast_to([0.5, 1.5], shape), jnp.float64, "y = bias")
        assert_close(dx, np.broadcast_to(np.array([2.0, -1.0]) / math.sqrt(EPS), shape),
                     jnp.float64, "dx = scale / sqrt(eps)")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[(f"{b}", b) for b in BACKWARDS])
    def test_lrn(self, backward):
        """All-equal input a: b_c = a / (k + alpha n_c a^2)^beta, n_c the neighbours of c."""
        layer = fcnn.LRN(backward=backward)  # n = 5, k = 2, alpha = 1e-4, beta = 0.75
        shape = (2, 2, 2, 6)
        _, params, state = layer.init(jax.random.PRNGKey(0), shape)
        dy = np.random.default_rng(1).standard_normal(shape)
        values = jnp.asarray([c for _, c in CONSTANTS], jnp.float64)

        def at(value):
            x = jnp.full(shape, value, jnp.float64)
            return vjp_at(lambda x: layer.apply(params, state, x, train=False), (x,), dy,
                          has_aux=True)

        ys, (dxs,), _ = self.variant(jax.vmap(at))(values)
        neighbours = np.array([3, 4, 5, 5, 4, 3])  # |j - c| <= 2 within 6 channels
        for i, (name, value) in enumerate(CONSTANTS):
            expected = value / (2 + 1e-4 * neighbours * value**2) ** 0.75
            assert_close(ys[i], np.broadcast_to(expected, shape), jnp.float64, f"{name}: y")
            if value == 0:  # every a = 0: db/da = k^-beta on the diagonal only
                assert_close(dxs[i], dy * 2**-0.75, jnp.float64, f"{name}: dx")
            else:
                x = np.full(shape, value)
                assert_close(dxs[i], norm_ref.lrn_backward(x, 2, 2.0, 1e-4, 0.75, dy),
                             jnp.float64, f"{name}: dx")

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[(f"{b}", b) for b in BACKWARDS])
    def test_weight_norm_equal_inputs_zero_gain(self, backward):
        """WeightNorm(Dense) on equal inputs with g = 0: w = 0, y = bias, finite gradients.

        dg = dw . v / ||v|| and dv = (g / ||v||)(dw - dg v / ||v||) = 0 at g = 0.
        """
        layer = fcnn.WeightNorm(fcnn.Dense(3, backward=backward), backward=backward)
        _, params, state = layer.init(jax.random.PRNGKey(0), (4, 5))
        v = np.asarray(params["v"], np.float64)
        params = {"v": jnp.asarray(v), "g": jnp.zeros(3), "bias": jnp.asarray([1.0, 2.0, 3.0])}
        x = jnp.full((4, 5), 2.5, jnp.float64)
        y, (dparams,), _ = self.variant(lambda p: vjp_at(
            lambda p: layer.apply(p, state, x, train=True), (p,), jnp.ones((4, 3)),
            has_aux=True))(params)
        chex.assert_tree_all_finite(dparams)
        assert_close(y, np.broadcast_to([1.0, 2.0, 3.0], (4, 3)), jnp.float64, "y = bias")
        assert_close(dparams["v"], np.zeros_like(v), jnp.float64, "dv = 0 at g = 0")
        # dw = x^T dy = 4 * 2.5 in every entry; dg_o = sum_i dw_io v_io / ||v_o||
        dg = (10.0 * v).sum(axis=0) / np.sqrt((v**2).sum(axis=0))
        assert_close(dparams["g"], dg, jnp.float64, "dg")


@pytest.mark.parametrize("value", [10000.3, -777.7, 3.7])
@pytest.mark.parametrize("shape, axes", [((16, 5, 5, 2), (0, 1, 2)), ((2, 20, 20, 2), (1, 2))])
def test_float32_zero_variance_gives_the_bias(value, shape, axes):
    """float32 equal values far from 0: the statistics see exactly zero variance.

    A plain float32 sum of hundreds of copies of 10000.3 rounds, the mean misses the
    value by ~0.03 and 1/sqrt(var + eps) ~ 316 turns that into outputs of +-1
    instead of the bias; shifting by one value of each group keeps the mean exact.
    """
    x = jnp.full(shape, value, jnp.float32)
    scale, bias = jnp.asarray([1.5, -2.0], jnp.float32), jnp.asarray([0.25, 0.5], jnp.float32)
    for backward in BACKWARDS:
        y, mean, var = normalize(x, scale, bias, axes=axes, backward=backward)
        chex.assert_trees_all_close(y, jnp.broadcast_to(bias, shape), atol=1e-6, rtol=0)
        chex.assert_trees_all_close(var, jnp.zeros_like(var), atol=0, rtol=0)
        chex.assert_trees_all_close(mean, jnp.full_like(mean, value), atol=0, rtol=0)


# ---------------------------------------------------------------- learning rates


def _tiny_model():
    return fcnn.serial(
        fcnn.Flatten(), fcnn.Dense(8, param_dtype=jnp.float64), fcnn.Tanh(),
        fcnn.Dense(4, param_dtype=jnp.float64),
    )


def _one_step(optimizer_name, learning_rate):
    model = _tiny_model()
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(0, 1, (8, 6, 6, 1)))
    labels = jnp.asarray(rng.integers(0, 4, 8), jnp.int32)
    _, params, state = model.init(jax.random.PRNGKey(0), images.shape)
    optimizer = make_optimizer(optimizer_name, learning_rate)
    step = make_train_step(model, losses.softmax_cross_entropy, optimizer, donate=False)

    def objective(p):
        logits, _ = model.apply(p, state, images, train=True, rng=jax.random.PRNGKey(1))
        return losses.softmax_cross_entropy(logits, labels)

    grads = jax.jit(jax.grad(objective))(params)
    new, new_state, _, metrics = step(
        params, state, fcnn.train.init_opt_state(optimizer, params), (images, labels),
        jax.random.PRNGKey(1),
    )
    return params, grads, new, metrics


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_tiny_learning_rate_step(name):
    """lr = 1e-12: every value finite, and the step is the closed form in float64.

    SGD: w - lr g. Adam's first step: w - lr m_hat / (sqrt(v_hat) + eps) =
    w - lr g / (|g| + eps), i.e. lr times the sign of g wherever |g| >> eps.
    """
    lr = 1e-12
    params, grads, new, metrics = _one_step(name, lr)
    chex.assert_tree_all_finite((new, metrics))
    assert int(metrics["nonfinite"]) == 0
    if name == "sgd":
        expected = jax.tree.map(lambda w, g: w - lr * g, params, grads)
    else:
        expected = jax.tree.map(lambda w, g: w - lr * g / (jnp.abs(g) + 1e-8), params, grads)
    chex.assert_trees_all_close(new, expected, atol=1e-24, rtol=1e-12)
    # the step is visible in float64 (not lost to rounding)
    changes = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(new), jax.tree.leaves(params))]
    assert min(changes) > 0


def test_huge_learning_rate_step():
    """lr = 1e6: the step's own finiteness code agrees with the values it returns, and
    when they are finite the SGD step is still w - lr g."""
    lr = 1e6
    params, grads, new, metrics = _one_step("sgd", lr)
    leaves_finite = all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(new))
    loss_finite = bool(jnp.isfinite(metrics["loss"]))
    assert (int(metrics["nonfinite"]) == 0) == (leaves_finite and loss_finite)
    if leaves_finite:
        expected = jax.tree.map(lambda w, g: w - lr * g, params, grads)
        chex.assert_trees_all_close(new, expected, rtol=1e-9, atol=1e-6)
