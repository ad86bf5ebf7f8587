"""Upsampling: the `upsample` op's forward and hand-written backward, and `Upsample`.

Every gradient is checked three ways: against the naive-loop NumPy oracle
(tests/reference/resize_ref.py), against `jax.vjp` of the plain forward
(`backward="autodiff"`), and against central finite differences in float64. The
bilinear values are checked against PyTorch's half-pixel rule (align_corners=False),
worked by hand.
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
from fcnn.ops.hand_rule import traced_rules
from fcnn.ops.resize import METHODS, upsample, upsample_output_shape
from tests.reference import derivation_pages as pages
from tests.reference import resize_ref
from tests.finite_differences import check_directional_derivatives

TOL = dict(atol=1e-12, rtol=1e-12)

# (name, x shape, scale)
SHAPES = [
    ("1d_s2", (2, 5, 3), 2),
    ("1d_s3_one_cell", (1, 1, 2), 3),
    ("2d_s2", (2, 3, 4, 2), 2),
    ("2d_mixed", (1, 4, 3, 1), (3, 2)),
    ("2d_one_axis", (1, 3, 2, 2), (1, 4)),
    ("3d_s2", (1, 2, 3, 2, 2), 2),
    ("3d_mixed", (1, 2, 2, 3, 1), (1, 3, 2)),
]
SHAPE_BY_NAME = {s[0]: s for s in SHAPES}
CASES = [(f"{m}_{name}", m, name) for m in METHODS for name, _, _ in SHAPES]
CORE = CASES[::2]
REST = CASES[1::2]


@functools.lru_cache(maxsize=None)
def case(method, name):
    _, shape, scale = SHAPE_BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(f"{method}{name}".encode()))
    x = rng.normal(size=shape)
    y = resize_ref.upsample_forward(x, scale, method)
    g = rng.normal(size=y.shape)
    return x, g, y, resize_ref.upsample_backward(x.shape, g, scale, method)


class UpsampleSweepTest(chex.TestCase):

    def _check(self, method, name):
        scale = SHAPE_BY_NAME[name][2]
        x, g, y_ref, dx_ref = case(method, name)

        @self.variant
        def both(x, g):
            out = []
            for backward in ("custom", "autodiff"):
                y, vjp = jax.vjp(lambda x: upsample(x, scale, method, backward), x)
                out.append((y, vjp(g)[0]))
            return out

        (y, dx), (y_ad, dx_ad) = both(x, g)
        chex.assert_shape(y, upsample_output_shape(x.shape, scale))
        chex.assert_trees_all_close(y, y_ref, **TOL)
        chex.assert_trees_all_close(dx, dx_ref, **TOL)
        chex.assert_trees_all_close(y_ad, y_ref, **TOL)
        chex.assert_trees_all_close(dx, dx_ad, **TOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CORE)
    def test_matches_oracle_and_autodiff(self, method, name):
        self._check(method, name)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*REST)
    def test_matches_oracle_and_autodiff_rest(self, method, name):
        self._check(method, name)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(m, m) for m in METHODS])
    def test_central_finite_differences(self, method):
        x, g, _, _ = case(method, "2d_mixed")
        scale = SHAPE_BY_NAME["2d_mixed"][2]
        check_directional_derivatives(self.variant, lambda x: jnp.sum(upsample(x, scale, method) * g), x)


@pytest.mark.parametrize("name,method", [("upsample_nearest_1d", "nearest"),
                                         ("upsample_bilinear_1d", "bilinear")])
def test_worked_examples_of_the_derivation_page(name, method):
    """docs/derivations/more_layers.md, "Upsampling", read from the page. The bilinear
    numbers are PyTorch's: F.interpolate(x, scale_factor=2, mode="linear",
    align_corners=False) of [1, 2, 3, 4] is [1, 1.25, 1.75, ..., 3.75, 4]."""
    ex = pages.example("more_layers", name)
    pages.check_shown("more_layers", name)
    x = pages.array(ex["x"]).reshape(1, -1, 1)
    y, vjp = jax.vjp(lambda x: upsample(x, ex["scale"], method), x)
    np.testing.assert_allclose(y.ravel(), ex["y"], atol=1e-15)
    np.testing.assert_allclose(vjp(pages.array(ex["dy"]).reshape(1, -1, 1))[0].ravel(), ex["dx"],
                               atol=1e-15)
    if "dx_for_ones" in ex:
        np.testing.assert_allclose(vjp(jnp.ones_like(y))[0].ravel(), ex["dx_for_ones"], atol=1e-15)
    np.testing.assert_allclose(resize_ref.upsample_forward(x, ex["scale"], method).ravel(), ex["y"])


def test_bilinear_two_by_two_by_hand():
    """[[0, 1], [2, 3]] upsampled by 2: the inner cells are 3/4, 1/4 mixtures per axis,
    e.g. y[1, 1] = .75 (.75 * 0 + .25 * 1) + .25 (.75 * 2 + .25 * 3) = 0.75."""
    x = jnp.asarray([[0.0, 1.0], [2.0, 3.0]], jnp.float64).reshape(1, 2, 2, 1)
    y = upsample(x, 2, "bilinear")[0, :, :, 0]
    row = np.array([0, 0.25, 0.75, 1])
    want = 2 * row[:, None] + row[None, :]  # x[i, j] = 2 i + j is linear: reproduced
    np.testing.assert_allclose(y, want, atol=1e-15)
    assert float(y[1, 1]) == 0.75


def test_nearest_by_hand():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]], jnp.float64).reshape(1, 2, 2, 1)
    y = upsample(x, (2, 3))[0, :, :, 0]
    np.testing.assert_array_equal(y, [[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4]] * 2)
    dy = jnp.arange(24, dtype=jnp.float64).reshape(1, 4, 6, 1)
    _, vjp = jax.vjp(lambda x: upsample(x, (2, 3)), x)
    # dx[0, 0] = sum of dy over rows 0-1, columns 0-2 = 0+1+2+6+7+8
    np.testing.assert_array_equal(vjp(dy)[0][0, :, :, 0], [[24, 42], [96, 114]])


def test_custom_backward_is_the_rule_in_use():
    x = jnp.ones((1, 3, 3, 1))
    for method in METHODS:
        with traced_rules() as ran:
            jax.grad(lambda x: jnp.sum(upsample(x, 2, method) ** 2))(x)
        assert "upsample" in ran
        with traced_rules() as ran:
            jax.grad(lambda x: jnp.sum(upsample(x, 2, method, "autodiff") ** 2))(x)
        assert "upsample" not in ran


# ----------------------------------------------------------------------------------
# The layer

LAYER_CASES = [
    ("nearest_int_2d", dict(scale=2), (-1, 3, 4, 2)),
    ("bilinear_tuple_2d", dict(scale=(2, 3), method="bilinear"), (2, 3, 2, 1)),
    ("nearest_1d", dict(scale=3), (2, 4, 1)),
    ("bilinear_3d", dict(scale=(1, 2, 2), method="bilinear"), (-1, 2, 2, 3, 1)),
]


class UpsampleLayerTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*LAYER_CASES)
    def test_init_shape_is_apply_shape(self, kwargs, input_shape):
        init, apply = fcnn.Upsample(**kwargs)
        out_shape, params, state = init(jax.random.PRNGKey(0), input_shape)
        self.assertEqual((params, state), ({}, {}))
        concrete = tuple(2 if d == -1 else d for d in input_shape)
        x = np.random.default_rng(0).normal(size=concrete)
        y, _ = self.variant(lambda x: apply({}, {}, x, train=False))(x)
        self.assertEqual(out_shape[0], input_shape[0])
        self.assertEqual(tuple(y.shape), (concrete[0], *out_shape[1:]))
        chex.assert_trees_all_close(
            y, resize_ref.upsample_forward(x, kwargs["scale"], kwargs.get("method", "nearest")),
            **TOL)


# ----------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(scale=0), ValueError, r"scale=0: every entry must be positive"),
    (dict(scale=(2, 0)), ValueError, r"scale=\(2, 0\): every entry must be positive"),
    (dict(scale=(2, 2, 2)), ValueError, r"scale=\(2, 2, 2\): expected an int or a tuple of 2 ints"),
    (dict(scale=1.5), TypeError, r"scale=1\.5: expected an int or a tuple of 2 ints"),
    (dict(scale=2, method="bicubic"), ValueError, r"method='bicubic': expected one of \('nearest', 'bilinear'\)"),
    (dict(scale=2, backward="hand"), ValueError, r"backward='hand'"),
    (dict(scale=2, shape=(4, 4)), ValueError, r"x has shape \(4, 4\) \(rank 2\): upsample expects rank 3 or 4 or 5"),
])
def test_op_rejects_bad_input(kwargs, error, match):
    shape = kwargs.pop("shape", (1, 3, 3, 1))
    with pytest.raises(error, match=match):
        upsample(jnp.zeros(shape), **kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(scale=0), ValueError, r"scale=0: expected a positive int"),
    (dict(scale=(2, 0)), ValueError, r"scale=\(2, 0\): every entry must be positive"),
    (dict(scale=(1, 1, 1, 1)), ValueError, r"scale=\(1, 1, 1, 1\): expected an int or a tuple of 1, 2 or 3"),
    (dict(scale="2"), TypeError, r"scale='2'"),
    (dict(scale=2.0), TypeError, r"scale=2\.0"),
    (dict(scale=2, method="area"), ValueError, r"method='area'"),
])
def test_layer_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fcnn.Upsample(**kwargs)


def test_layer_rejects_inputs_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"scale=\(2, 2\) has 2 entries, so the input must have rank 4"):
        fcnn.Upsample((2, 2)).init(jax.random.PRNGKey(0), (1, 4, 1))
    with pytest.raises(ValueError, match=r"input_shape has shape \(4, 1\) \(rank 2\)"):
        fcnn.Upsample(2).init(jax.random.PRNGKey(0), (4, 1))
    with pytest.raises(TypeError, match=r"train='no'"):
        fcnn.Upsample(2).apply({}, {}, jnp.zeros((1, 2, 1)), train="no")
