"""The documented conventions at the kinks, tested exactly at the kink.

The three-way tests keep their inputs away from kinks (finite differences are
meaningless there), so a rule that changed its convention at a kink would pass them.
Here every piecewise op is evaluated at the kink itself and compared with the
convention documented in fcnn/ops/activations.py, fcnn/losses.py and
docs/derivations/activations_losses.md:

* the rectifiers (relu, leaky_relu, prelu, rrelu in training and evaluation) and elu
  use the x > 0 branch only for x strictly positive: at x = 0 the derivative is the
  negative side's (0 for relu, the slope for the leaky ones, alpha e^0 for elu),
  i.e. the left derivative, which a one-sided difference confirms;
* maxout routes the gradient of tied pieces to the first maximal piece (autodiff of
  `max` splits it evenly instead, a documented difference);
* l1_penalty's derivative at w = 0 is sign(0) = 0;
* the smooth activations take their textbook values at 0.

Both `backward="custom"` and `backward="autodiff"` are checked: the forwards are
written so that plain autodiff agrees with the hand rule at the kinks too (maxout's
ties excepted).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnn import losses
from fcnn.ops import activations as act
from tests.reference import activation_ref as ref

BACKWARDS = ("custom", "autodiff")
SELU = ref.SELU_SCALE * ref.SELU_ALPHA
# (label, f(x, backward), f'(0) by the documented convention, a kink at 0?)
AT_ZERO = [
    ("relu", act.relu, 0.0, True),
    ("leaky_relu_default", act.leaky_relu, 0.01, True),
    ("leaky_relu_darknet", functools.partial(act.leaky_relu, negative_slope=0.1), 0.1, True),
    ("leaky_relu_negative_slope", functools.partial(act.leaky_relu, negative_slope=-0.5), -0.5, True),
    ("rrelu_eval", functools.partial(act.rrelu, lower=0.1, upper=0.3, train=False), 0.2, True),
    ("elu_alpha_half", functools.partial(act.elu, alpha=0.5), 0.5, True),
    ("elu_alpha_2", functools.partial(act.elu, alpha=2.0), 2.0, True),
    ("selu", act.selu, SELU, True),
    ("sigmoid", act.sigmoid, 0.25, False),
    ("tanh", act.tanh, 1.0, False),
    ("softplus", act.softplus, 0.5, False),
    ("gelu", act.gelu, 0.5, False),
    ("gelu_tanh", functools.partial(act.gelu, approximate=True), 0.5, False),
    ("silu", act.silu, 0.5, False),
]


def _grad_at(f, x, backward):
    return np.asarray(jax.grad(lambda v: jnp.sum(f(v, backward=backward)))(x))


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("label, f, expected, kink", AT_ZERO, ids=[c[0] for c in AT_ZERO])
def test_derivative_at_exactly_zero(label, f, expected, kink, backward):
    x = jnp.zeros((3,), jnp.float64)
    np.testing.assert_allclose(_grad_at(f, x, backward), expected, rtol=1e-14, atol=0,
                               err_msg=f"{label}'(0) with backward={backward!r}")
    # The convention is the left derivative: a one-sided difference from below agrees
    # (for the smooth ones, so does the two-sided difference).
    eps = 1e-7
    plain = functools.partial(f, backward="autodiff")
    left = (np.asarray(plain(x)) - np.asarray(plain(x - eps))) / eps
    np.testing.assert_allclose(left, expected, rtol=1e-5, atol=1e-6)
    if kink:  # and the right derivative differs, so the test can tell the sides apart
        right = (np.asarray(plain(x + eps)) - np.asarray(plain(x))) / eps
        assert not np.allclose(right, expected, rtol=1e-3), label


def test_zero_amid_other_values_takes_the_negative_side():
    """A zero between positive and negative entries, cotangents not all one."""
    x = jnp.asarray([-1.5, 0.0, 2.0, 0.0, -0.0])
    g = jnp.asarray([1.0, 2.0, 3.0, -4.0, 5.0])
    for backward in BACKWARDS:
        for f, slope in ((act.relu, 0.0), (functools.partial(act.leaky_relu, negative_slope=0.2), 0.2)):
            _, vjp = jax.vjp(lambda v: f(v, backward=backward), x)
            np.testing.assert_allclose(vjp(g)[0], [slope * 1.0, slope * 2.0, 3.0, slope * -4.0, slope * 5.0],
                                       rtol=1e-15)


@pytest.mark.parametrize("backward", BACKWARDS)
def test_prelu_dx_and_dslope_at_zero(backward):
    # one slope per channel; column 0 all zeros, column 1 zeros and negatives
    slope = jnp.asarray([0.25, -0.5, 0.1])
    x = jnp.asarray([[0.0, 0.0, 1.0], [0.0, -2.0, 0.0], [0.0, 0.0, -3.0]])
    g = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    _, vjp = jax.vjp(lambda v, a: act.prelu(v, a, backward=backward), x, slope)
    dx, dslope = vjp(g)
    # every zero takes the slope of its channel
    want_dx = np.where(np.asarray(x) > 0, 1.0, np.asarray(slope)[None, :]) * np.asarray(g)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-15)
    np.testing.assert_allclose(dx, ref.prelu_vjp(x, slope, g)[0], rtol=1e-15)
    # dslope sums g x over x <= 0: a zero adds g * 0 = 0 on either convention
    np.testing.assert_allclose(dslope, [0.0, 5.0 * -2.0, 9.0 * -3.0], rtol=1e-15)
    np.testing.assert_allclose(dslope, ref.prelu_vjp(x, slope, g)[1], rtol=1e-15)
    # and a shared slope: dx at 0 is the slope
    _, vjp = jax.vjp(lambda v, a: act.prelu(v, a, backward=backward), x, jnp.asarray(0.3))
    dx, dslope = vjp(g)
    np.testing.assert_allclose(dx, np.where(np.asarray(x) > 0, 1.0, 0.3) * np.asarray(g), rtol=1e-15)
    np.testing.assert_allclose(dslope, -10.0 - 27.0, rtol=1e-15)


@pytest.mark.parametrize("backward", BACKWARDS)
def test_rrelu_in_training_at_zero_takes_the_drawn_slope(backward):
    key = jax.random.PRNGKey(4)
    shape = (4, 5)
    # the slope drawn for each element, read from the output at x = -1 (same key, shape)
    drawn = -np.asarray(act.rrelu(-jnp.ones(shape), train=True, rng=key))
    assert np.all((drawn >= 1 / 8) & (drawn <= 1 / 3)) and drawn.std() > 0.01
    dx = jax.grad(lambda v: jnp.sum(act.rrelu(v, train=True, rng=key, backward=backward)))(
        jnp.zeros(shape))
    np.testing.assert_allclose(dx, drawn, rtol=1e-15)
    # at evaluation, the mean slope (1/8 + 1/3) / 2 = 11/48
    dx = jax.grad(lambda v: jnp.sum(act.rrelu(v, train=False, backward=backward)))(jnp.zeros(shape))
    np.testing.assert_allclose(dx, 11 / 48, rtol=1e-15)


@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_maxout_ties_go_to_the_first_maximal_piece(pieces):
    rng = np.random.default_rng(pieces)
    # small integers: most units hold tied maxima, some with every piece equal
    x = rng.integers(0, 2, size=(5, 3 * pieces)).astype(np.float64)
    x[0] = 1.0
    g = rng.normal(size=(5, 3))
    _, vjp = jax.vjp(lambda v: act.maxout(v, pieces), jnp.asarray(x))
    dx = np.asarray(vjp(jnp.asarray(g))[0])
    want = np.zeros_like(x)
    for n in range(5):
        for f in range(3):
            block = x[n, f * pieces:(f + 1) * pieces]
            want[n, f * pieces + int(np.flatnonzero(block == block.max())[0])] = g[n, f]
    np.testing.assert_array_equal(dx, want)
    np.testing.assert_array_equal(dx, ref.maxout_vjp(x, pieces, g))
    # the all-tied unit: only piece 0 of each unit receives its gradient
    np.testing.assert_array_equal(dx[0].reshape(3, pieces)[:, 1:], 0.0)


def test_maxout_autodiff_splits_ties_evenly_the_documented_difference():
    x = jnp.asarray([[2.0, 2.0, 1.0, 5.0, 5.0, 5.0]])
    dx = jax.grad(lambda v: jnp.sum(act.maxout(v, 3, backward="autodiff")))(x)
    np.testing.assert_allclose(dx, [[0.5, 0.5, 0.0, 1 / 3, 1 / 3, 1 / 3]], rtol=1e-15)
    dx = jax.grad(lambda v: jnp.sum(act.maxout(v, 3)))(x)
    np.testing.assert_array_equal(dx, [[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])


@pytest.mark.parametrize("backward", BACKWARDS)
def test_l1_penalty_derivative_at_zero_is_zero(backward):
    w = jnp.asarray([-2.0, 0.0, 3.0, -0.0])
    g = jax.grad(lambda v: losses.l1_penalty({"w": v}, backward=backward))(w)
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("backward", BACKWARDS)
def test_smooth_losses_whose_stable_forms_have_kinks(backward):
    """BCE from logits is computed through max(z, 0) and |z| (or `where` branches), and
    softmax through a max shift: smooth functions whose formulas have kinks at z = 0
    and at tied maxima. The gradient there must be the smooth one."""
    y = jnp.asarray([[0.0, 0.3, 1.0]])
    g = jax.grad(lambda z: losses.binary_cross_entropy_with_logits(z, y, backward=backward))(
        jnp.zeros((1, 3)))
    np.testing.assert_allclose(g, 0.5 - np.asarray(y), rtol=1e-15)  # sigma(0) - y, n = 1
    z = jnp.asarray([[1.0, 1.0, -1.0], [2.0, 2.0, 2.0]])  # tied maxima
    labels = jnp.asarray([0, 2])
    g = jax.grad(lambda v: losses.softmax_cross_entropy(v, labels, backward=backward))(z)
    p = ref.softmax(np.asarray(z))
    np.testing.assert_allclose(g, (p - np.eye(3)[[0, 2]]) / 2, rtol=1e-14)
    cotangent = np.array([[3.0, 1.0, 1.0], [1.0, -1.0, 2.0]])
    for f, oracle in ((act.softmax, ref.softmax_vjp), (act.log_softmax, ref.log_softmax_vjp)):
        _, vjp = jax.vjp(lambda v, f=f: f(v, backward=backward), z)
        np.testing.assert_allclose(vjp(jnp.asarray(cotangent))[0],
                                   oracle(np.asarray(z), cotangent), rtol=1e-13, atol=1e-15)
