"""Padding modes: the `pad` op's forward and hand-written backward (the adjoint of the
copy), and `Conv(..., padding_mode=...)`.

Every gradient is checked three ways: against the naive-loop NumPy oracle
(tests/reference/padding_ref.py), against `jax.vjp` of the plain forward
(`backward="autodiff"`), and against central finite differences in float64. The
forward is also checked against NumPy's own `np.pad` ("reflect", "edge", "wrap").
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
from fcnn.ops.padding import MODES, pad, pad_output_shape
from tests.reference import conv_ref, padding_ref
from tests.reference import derivation_pages as pages
from tests.finite_differences import check_directional_derivatives

TOL = dict(atol=1e-12, rtol=1e-12)
NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}

# (name, x shape, padding)
SHAPES = [
    ("1d_int", (2, 5, 3), 2),
    ("1d_pair_full", (2, 4, 1), ((3, 3),)),  # reflect: W - 1; circular/replicate: more
    ("2d_per_dim", (2, 4, 5, 2), (1, 2)),
    ("2d_pairs", (1, 3, 4, 2), ((2, 0), (0, 3))),
    ("2d_one_cell_wide", (1, 1, 3, 1), ((0, 0), (2, 1))),
    ("3d_pairs", (1, 3, 2, 3, 2), ((1, 2), (1, 0), (0, 2))),
]
CASES = [(f"{mode}_{name}", mode, name) for mode in MODES for name, _, _ in SHAPES]
SHAPE_BY_NAME = {s[0]: s for s in SHAPES}
CORE = [c for i, c in enumerate(CASES) if i % 3 == 0]
REST = [c for i, c in enumerate(CASES) if i % 3]


def _fits(mode, name):
    _, shape, padding = SHAPE_BY_NAME[name]
    try:
        pad_output_shape(shape, padding, mode)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def case(mode, name):
    _, shape, padding = SHAPE_BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(f"{mode}{name}".encode()))
    x = rng.normal(size=shape)
    y = padding_ref.pad_forward(x, padding, mode)
    g = rng.normal(size=y.shape)
    return x, g, y, padding_ref.pad_backward(x.shape, g, padding, mode)


class PadSweepTest(chex.TestCase):

    def _check(self, mode, name):
        if not _fits(mode, name):
            self.skipTest(f"padding too wide for {mode}")
        padding = SHAPE_BY_NAME[name][2]
        x, g, y_ref, dx_ref = case(mode, name)

        @self.variant
        def both(x, g):
            out = []
            for backward in ("custom", "autodiff"):
                y, vjp = jax.vjp(lambda x: pad(x, padding, mode, backward), x)
                out.append((y, vjp(g)[0]))
            return out

        (y, dx), (y_ad, dx_ad) = both(x, g)
        chex.assert_shape(y, pad_output_shape(x.shape, padding, mode))
        chex.assert_trees_all_close(y, y_ref, **TOL)
        chex.assert_trees_all_close(dx, dx_ref, **TOL)
        chex.assert_trees_all_close(y_ad, y_ref, **TOL)
        chex.assert_trees_all_close(dx, dx_ad, **TOL)
        pairs = padding_ref._pairs(padding, x.ndim - 2)
        np_pad = np.pad(x, [(0, 0), *pairs, (0, 0)], mode=NUMPY_MODE[mode])
        chex.assert_trees_all_close(y, np_pad, **TOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CORE)
    def test_matches_oracle_numpy_and_autodiff(self, mode, name):
        self._check(mode, name)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*REST)
    def test_matches_oracle_numpy_and_autodiff_rest(self, mode, name):
        self._check(mode, name)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(m, m) for m in MODES])
    def test_central_finite_differences(self, mode):
        x, g, _, _ = case(mode, "2d_pairs")
        padding = SHAPE_BY_NAME["2d_pairs"][2]
        check_directional_derivatives(self.variant, lambda x: jnp.sum(pad(x, padding, mode) * g), x)


@pytest.mark.parametrize("mode", MODES)
def test_worked_example_of_the_derivation_page(mode):
    """docs/derivations/more_layers.md, "Padding modes", read from the page: x = [1, 2,
    3, 4] padded by 2 on each side; with dy = 1 everywhere, dx counts how many output
    cells copy each input cell."""
    ex = pages.example("more_layers", "pad_1d")
    pages.check_shown("more_layers", "pad_1d")
    x = pages.array(ex["x"]).reshape(1, -1, 1)
    np.testing.assert_array_equal(pad(x, ex["padding"], mode).ravel(), ex[mode])
    dx = jax.grad(lambda x: jnp.sum(pad(x, ex["padding"], mode)))(x)
    np.testing.assert_array_equal(dx.ravel(), ex[f"dx_{mode}"])
    np.testing.assert_array_equal(padding_ref.pad_forward(x, ex["padding"], mode).ravel(), ex[mode])


def test_reflect_folds_each_border_cell_onto_its_source():
    # dy = 10^o tells which output cell went where: reflect folds cells 0, 1 (copies
    # of x[2], x[1]) and 6, 7 (copies of x[2], x[1]) back
    x = jnp.asarray([1.0, 2.0, 3.0, 4.0], jnp.float64).reshape(1, 4, 1)
    dy = 10.0 ** jnp.arange(8, dtype=jnp.float64).reshape(1, 8, 1)
    _, vjp = jax.vjp(lambda x: pad(x, 2, "reflect"), x)
    np.testing.assert_array_equal(vjp(dy)[0].ravel(), [1e2, 1e1 + 1e3 + 1e7, 1e0 + 1e4 + 1e6, 1e5])


def test_custom_backward_is_the_rule_in_use():
    x = jnp.ones((1, 3, 3, 1))
    with traced_rules() as ran:
        jax.grad(lambda x: jnp.sum(pad(x, 1, "reflect") ** 2))(x)
    assert "pad" in ran
    with traced_rules() as ran:
        jax.grad(lambda x: jnp.sum(pad(x, 1, "circular", backward="autodiff") ** 2))(x)
    assert "pad" not in ran


def test_integer_input_becomes_float():
    y = pad(np.arange(3).reshape(1, 3, 1), 1, "replicate")
    assert jnp.issubdtype(y.dtype, jnp.floating)
    np.testing.assert_array_equal(y.ravel(), [0, 0, 1, 2, 2])


# ----------------------------------------------------------------------------------
# Conv(padding_mode=...)

CONV_CASES = [
    ("reflect_same", dict(features=3, kernel_size=3, padding_mode="reflect"), (2, 5, 6, 2)),
    ("circular_s2_same", dict(features=2, kernel_size=3, strides=2, padding_mode="circular"),
     (1, 5, 5, 2)),
    ("replicate_pairs_1d", dict(features=2, kernel_size=(4,), padding=((3, 1),),
                                padding_mode="replicate"), (2, 6, 1)),
    ("reflect_dilated_3d", dict(features=2, kernel_size=2, dilation=2, padding=1,
                                padding_mode="reflect"), (-1, 3, 4, 3, 1)),
    ("replicate_depthwise", dict(features=4, kernel_size=3, groups=2, padding_mode="replicate"),
     (-1, 4, 4, 2)),
]


class ConvPaddingModeTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CONV_CASES)
    def test_init_shape_is_apply_shape_and_equals_numpy_pad_then_valid(self, kwargs, shape):
        layer = fcnn.Conv(**kwargs, kernel_init=fcnn.initializers.lecun_normal)
        out_shape, params, state = layer.init(jax.random.PRNGKey(0), shape)
        zeros_shape = fcnn.Conv(**{**kwargs, "padding_mode": "zeros"}).init(
            jax.random.PRNGKey(0), shape)[0]
        self.assertEqual(out_shape, zeros_shape)  # the same size as zero padding
        concrete = tuple(2 if d == -1 else d for d in shape)
        x = np.random.default_rng(3).normal(size=concrete)
        params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
        y, _ = self.variant(lambda p, x: layer.apply(p, state, x, train=False))(params, x)
        self.assertEqual(y.shape, (concrete[0], *out_shape[1:]))
        # the definition: numpy's pad of the mode, then a VALID convolution (the oracle)
        nd = x.ndim - 2
        k = kwargs["kernel_size"]
        window = (k,) * nd if isinstance(k, int) else k
        strides = kwargs.get("strides", 1)
        dilation = kwargs.get("dilation", 1)
        pairs = conv_ref.resolve_padding(
            kwargs.get("padding", "SAME"), x.shape[1:-1],
            [(w - 1) * (dilation if isinstance(dilation, int) else dilation[i]) + 1
             for i, w in enumerate(window)],
            (strides,) * nd if isinstance(strides, int) else strides)
        xp = np.pad(x, [(0, 0), *pairs, (0, 0)], mode=NUMPY_MODE[kwargs["padding_mode"]])
        want = conv_ref.conv_forward(xp, params["kernel"], params["bias"], strides=strides,
                                     padding="VALID", dilation=dilation,
                                     groups=kwargs.get("groups", 1))
        chex.assert_trees_all_close(y, want, atol=1e-10, rtol=1e-10)

    def test_gradient_through_the_padding_matches_the_oracle_chain(self):
        layer = fcnn.Conv(2, 3, padding_mode="reflect")
        _, params, _ = layer.init(jax.random.PRNGKey(0), (1, 4, 5, 2))
        params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
        rng = np.random.default_rng(4)
        x, r = rng.normal(size=(1, 4, 5, 2)), rng.normal(size=(1, 4, 5, 2))
        dx = jax.grad(lambda x: jnp.sum(layer.apply(params, {}, x, train=True)[0] * r))(x)
        xp = padding_ref.pad_forward(x, 1, "reflect")
        dxp, _, _ = conv_ref.conv_backward(xp, params["kernel"], r, padding="VALID")
        chex.assert_trees_all_close(dx, padding_ref.pad_backward(x.shape, dxp, 1, "reflect"),
                                    atol=1e-10, rtol=1e-10)

    def test_the_layer_runs_the_padding_rule(self):
        init, apply = fcnn.Conv(2, 3, padding_mode="circular")
        _, params, _ = init(jax.random.PRNGKey(0), (1, 4, 4, 1))
        with traced_rules() as ran:
            jax.grad(lambda x: jnp.sum(apply(params, {}, x, train=True)[0]))(jnp.ones((1, 4, 4, 1)))
        assert {"pad", "conv"} <= ran or {"pad", "conv/lowered"} <= ran

    def test_default_is_zeros_and_name_shows_the_mode(self):
        self.assertEqual(fcnn.Conv(2, 3).name, "Conv(2, 3)")
        self.assertEqual(fcnn.Conv(2, 3, padding_mode="reflect").name,
                         "Conv(2, 3, padding_mode='reflect')")


# ----------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("shape,padding,mode,error,match", [
    ((1, 4, 4, 1), 1, "mirror", ValueError, r"padding_mode='mirror': expected one of \('zeros'"),
    ((1, 4, 4, 1), -1, "zeros", ValueError, r"padding=-1: expected a non-negative int"),
    ((1, 4, 4, 1), ((1, 1),), "zeros", ValueError, r"padding=\(\(1, 1\),\): expected 2 \(low, high\) pairs"),
    ((1, 4, 4, 1), (1, 2, 3), "zeros", ValueError, r"padding=\(1, 2, 3\): expected 2 ints"),
    ((1, 4, 4, 1), ((1, -1), (0, 0)), "zeros", ValueError, r"padding=\(\(1, -1\), \(0, 0\)\)"),
    ((1, 4, 4, 1), ((1, 2, 3), (0, 0)), "zeros", ValueError, r"padding=\(\(1, 2, 3\), \(0, 0\)\)"),
    ((1, 4, 4, 1), "SAME", "zeros", TypeError, r"padding='SAME'"),
    ((1, 4, 4, 1), 1.0, "zeros", TypeError, r"padding=1\.0"),
    ((1, 4, 4, 1), 4, "reflect", ValueError,
     r"padding \(4, 4\) of spatial dimension 0 \(size 4\) is too wide for padding_mode='reflect': each side must be at most size - 1 \(= 3\)"),
    ((1, 4, 2, 1), ((0, 0), (0, 3)), "circular", ValueError,
     r"spatial dimension 1 \(size 2\) is too wide for padding_mode='circular'.*at most the size \(= 2\)"),
    ((4, 4), 1, "zeros", ValueError, r"x has shape \(4, 4\) \(rank 2\): pad expects rank 3 or 4 or 5"),
])
def test_pad_rejects_bad_input(shape, padding, mode, error, match):
    with pytest.raises(error, match=match):
        pad(jnp.zeros(shape), padding, mode)


def test_pad_rejects_bad_backward_and_output_shape_checks():
    with pytest.raises(ValueError, match=r"backward='hand'"):
        pad(jnp.zeros((1, 3, 1)), 1, "zeros", backward="hand")
    with pytest.raises(ValueError, match=r"input_shape has shape \(3,\)"):
        pad_output_shape((3,), 1)
    assert pad_output_shape((-1, 3, 4, 2), ((1, 0), (2, 2)), "replicate") == (-1, 4, 8, 2)


@pytest.mark.parametrize("kwargs,input_shape,error,match", [
    (dict(padding_mode="mirror"), None, ValueError, r"padding_mode='mirror': expected one of"),
    (dict(padding_mode="reflect", input_dilation=2), None, ValueError,
     r"input_dilation=2 with padding_mode='reflect'"),
    (dict(padding_mode="reflect", padding=3), (1, 3, 8, 1), ValueError,
     r"padding \(3, 3\) of spatial dimension 0 \(size 3\) is too wide for padding_mode='reflect'"),
    (dict(padding_mode="circular", kernel_size=(3, 3), padding=((1, 1),)), (1, 4, 4, 1), ValueError,
     r"expected 2 \(low, high\) pairs"),
])
def test_conv_padding_mode_rejects_bad_arguments(kwargs, input_shape, error, match):
    kwargs = {"features": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=match):
        layer = fcnn.Conv(**kwargs)
        layer.init(jax.random.PRNGKey(0), input_shape)
