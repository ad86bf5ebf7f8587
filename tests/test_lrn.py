"""Local response normalization: the `lrn` op against a direct loop over channels
(tests/reference/norm_ref.py), autodiff and central finite differences; the LRN layer."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.ops.lrn import lrn
from tests.reference import norm_ref

TOL = dict(atol=1e-10, rtol=1e-10)


def randn(seed, shape, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, size=shape)


# (name, lrn keyword arguments, oracle (radius, k, alpha', beta)) -- the oracle's
# numbers are written out here, not taken from the library.
CASES = [
    ("default_alexnet", {}, (2, 2.0, 1e-4, 0.75)),
    ("radius1", dict(depth_radius=1), (1, 2.0, 1e-4, 0.75)),
    ("radius2_strong", dict(depth_radius=2, k=1.0, alpha=0.05, beta=0.6), (2, 1.0, 0.05, 0.6)),
    ("size3_alpha_over_n", dict(size=3, alpha=0.3, alpha_over_n=True), (1, 2.0, 0.1, 0.75)),
    ("size5_alpha_over_n", dict(size=5, alpha=0.5, alpha_over_n=True), (2, 2.0, 0.1, 0.75)),
    ("radius0", dict(depth_radius=0, alpha=0.2, beta=1.0), (0, 2.0, 0.2, 1.0)),
    ("window_wider_than_channels", dict(depth_radius=4, alpha=0.1), (4, 2.0, 0.1, 0.75)),
]
SHAPE = (2, 3, 2, 7)


class LrnOpTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_forward_matches_channel_loop(self, kwargs, oracle):
        # activations of ReLU-like size, so the alpha term matters even for alpha=1e-4
        x = randn(0, SHAPE, scale=20.0)
        f = self.variant(lambda x: [lrn(x, backward=b, **kwargs) for b in ("custom", "autodiff")])
        y, y_autodiff = f(x)
        chex.assert_trees_all_close(y, norm_ref.lrn_forward(x, *oracle), **TOL)
        chex.assert_trees_all_close(y_autodiff, y, **TOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[CASES[i] for i in (0, 3)])
    def test_backward_matches_oracle_and_autodiff(self, kwargs, oracle):
        self._check_backward(kwargs, oracle)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[CASES[i] for i in (1, 2, 4, 5, 6)])
    def test_backward_matches_oracle_and_autodiff_more(self, kwargs, oracle):
        self._check_backward(kwargs, oracle)

    def _check_backward(self, kwargs, oracle):
        x, dy = randn(1, SHAPE, scale=20.0), randn(2, SHAPE)

        def grad(backward):
            return self.variant(
                lambda x: jax.vjp(lambda x: lrn(x, backward=backward, **kwargs), x)[1](dy)[0]
            )(x)

        custom = grad("custom")
        chex.assert_trees_all_close(custom, grad("autodiff"), **TOL)
        chex.assert_trees_all_close(custom, norm_ref.lrn_backward(x, *oracle, dy), **TOL)

    @parameterized.named_parameters(*[CASES[i] for i in (1, 2, 3)])
    def test_central_finite_differences(self, kwargs, oracle):
        del oracle
        x, w = randn(3, SHAPE, scale=3.0), randn(4, SHAPE)
        loss = jax.jit(lambda x: jnp.sum(w * lrn(x, **kwargs)))
        g = jax.jit(jax.grad(loss))(x)
        d, eps = randn(5, SHAPE), 1e-6
        numeric = (loss(x + eps * d) - loss(x - eps * d)) / (2 * eps)
        np.testing.assert_allclose(float(jnp.sum(g * d)), float(numeric), rtol=1e-7)


def test_alpha_over_n_is_alpha_divided_by_the_window_size():
    x = randn(0, SHAPE, scale=20.0)
    chex.assert_trees_all_close(
        lrn(x, size=5, alpha=0.5, alpha_over_n=True), lrn(x, size=5, alpha=0.1), **TOL
    )
    assert not np.allclose(lrn(x, alpha=0.5), lrn(x, alpha=0.1))


def test_other_channel_axis():
    x = randn(0, (2, 6, 3), scale=5.0)
    y = lrn(x, depth_radius=1, alpha=0.1, axis=1)
    want = np.moveaxis(norm_ref.lrn_forward(np.moveaxis(x, 1, -1), 1, 2.0, 0.1, 0.75), -1, 1)
    chex.assert_trees_all_close(y, want, **TOL)


def test_custom_backward_is_the_rule_in_use():
    x = jnp.ones((2, 5))
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x: lrn(x))(x))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x: lrn(x, backward="autodiff"))(x))


def test_layer_matches_op_and_has_no_params():
    layer = fcnn.LRN(depth_radius=1, alpha=0.01)
    shape, params, state = layer.init(jax.random.PRNGKey(0), (-1, 4, 4, 6))
    assert shape == (-1, 4, 4, 6) and params == {} and state == {}
    x = randn(0, (2, 4, 4, 6), scale=10.0)
    for train in (True, False):
        y, new_state = jax.jit(lambda x: layer.apply(params, state, x, train=train))(x)
        chex.assert_trees_all_close(y, norm_ref.lrn_forward(x, 1, 2.0, 0.01, 0.75), **TOL)
        assert new_state == {}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(size=4), ValueError, r"size=4: expected an odd window size"),
        (dict(size=0), ValueError, r"size=0: expected a positive int"),
        (dict(depth_radius=-1), ValueError, r"depth_radius=-1: expected an int >= 0"),
        (dict(size=5, depth_radius=1), ValueError, r"size=5 and depth_radius=1 disagree"),
        (dict(k=0.0), ValueError, r"k=0.0: expected a finite number > 0"),
        (dict(alpha=-1e-4), ValueError, r"alpha=-0.0001: expected a finite number >= 0"),
        (dict(beta=float("inf")), ValueError, r"beta=inf: expected a finite number"),
        (dict(alpha_over_n=1), TypeError, r"alpha_over_n=1: expected True or False"),
        (dict(backward="fast"), ValueError, r"backward='fast'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        lrn(jnp.ones((1, 5)), **kwargs)
    with pytest.raises(error, match=match):
        fcnn.LRN(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"axis=2: expected an int in \[-2, 1\] for an input of rank 2"):
        lrn(jnp.ones((1, 5)), axis=2)
    with pytest.raises(TypeError, match=r"dtype int32"):
        lrn(jnp.ones((1, 5), jnp.int32))
    layer = fcnn.LRN()
    with pytest.raises(ValueError, match=r"LRN: input_shape=\(5,\) has rank 1"):
        layer.init(jax.random.PRNGKey(0), (5,))
