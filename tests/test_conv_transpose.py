"""Transposed convolution: the op's forward and hand-written backward, and the layer.

Every gradient is checked three ways: against the naive scatter-loop NumPy oracle
(tests/reference/conv_transpose_ref.py), against `jax.vjp` of the plain forward
(`backward="autodiff"`), and against central finite differences in float64. The
output-size formula is checked against PyTorch's documented examples, worked by hand.
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
from fcnn.ops.conv import conv
from fcnn.ops.conv_transpose import conv_transpose, conv_transpose_output_shape
from fcnn.ops.hand_rule import traced_rules
from tests.reference import conv_transpose_ref as ref
from tests.reference import derivation_pages as pages

TOL = dict(atol=1e-10, rtol=1e-10)

# (name, x shape, kernel shape (*K, C_in // groups, C_out), keyword arguments)
CONFIGS = [
    ("1d_valid_s2", (2, 4, 2), (3, 2, 3), dict(strides=2, padding="VALID")),
    ("1d_same_s2", (2, 5, 2), (3, 2, 2), dict(strides=2, padding="SAME")),
    ("1d_same_kernel_below_stride", (1, 4, 2), (2, 2, 1), dict(strides=3, padding="SAME")),
    ("1d_pad1_outpad1", (2, 4, 1), (3, 1, 2), dict(strides=2, padding=1, output_padding=1)),
    ("1d_pairs_dil2", (1, 5, 2), (2, 2, 2), dict(padding=((3, 0),), dilation=2)),
    ("1d_outpad_below_dilation", (1, 3, 1), (2, 1, 1),
     dict(strides=1, dilation=3, output_padding=2, padding=((0, 2),))),
    ("1d_groups2", (2, 4, 4), (2, 2, 4), dict(strides=2, groups=2, padding="VALID")),
    ("2d_same_s2", (2, 3, 4, 3), (3, 3, 3, 2), dict(strides=2)),
    ("2d_torch_doc", (1, 5, 4, 2), (3, 5, 2, 3), dict(strides=(2, 1), padding=((4, 4), (2, 2)))),
    ("2d_pad1_outpad1", (1, 3, 3, 2), (3, 3, 2, 2), dict(strides=2, padding=1, output_padding=1)),
    ("2d_everything", (1, 3, 2, 4), (2, 3, 2, 4),
     dict(strides=(2, 3), dilation=(2, 1), groups=2, padding=((1, 0), (0, 2)),
          output_padding=(1, 2))),
    ("2d_depthwise", (2, 3, 3, 3), (3, 3, 1, 6), dict(strides=2, groups=3, padding="SAME")),
    ("2d_kernel1_s2", (1, 3, 3, 2), (1, 1, 2, 2), dict(strides=2, padding="SAME")),
    ("3d_same_s2", (1, 2, 3, 2, 2), (2, 2, 2, 2, 2), dict(strides=2)),
    ("3d_everything", (1, 2, 2, 3, 2), (2, 1, 2, 1, 2),
     dict(strides=(1, 2, 2), dilation=(2, 1, 1), groups=2, padding=1, output_padding=(1, 0, 1))),
]
CONFIG_BY_NAME = {c[0]: c for c in CONFIGS}
# Compilation dominates the run time: every configuration runs jitted, a core subset
# (one per feature) also eagerly.
CORE = ["1d_same_kernel_below_stride", "1d_outpad_below_dilation", "2d_torch_doc",
        "2d_everything", "2d_depthwise", "3d_everything"]
REST = [n for n in CONFIG_BY_NAME if n not in CORE]
FINITE_DIFFERENCES = ["1d_pairs_dil2", "2d_everything", "3d_everything"]


def named(names):
    return [dict(testcase_name=n, name=n) for n in names]


@functools.lru_cache(maxsize=None)
def case(name):
    """Float64 inputs, a cotangent, and the oracle's forward and backward."""
    _, x_shape, k_shape, kwargs = CONFIG_BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, kernel, bias = (rng.normal(size=s) for s in (x_shape, k_shape, k_shape[-1:]))
    y = ref.conv_transpose_forward(x, kernel, bias, **kwargs)
    dy = rng.normal(size=y.shape)
    return (x, kernel, bias, dy), y, ref.conv_transpose_backward(x, kernel, dy, **kwargs)


def value_and_vjp(kwargs, backward):
    def f(x, kernel, bias, dy):
        y, vjp = jax.vjp(
            lambda x, k, b: conv_transpose(x, k, b, backward=backward, **kwargs), x, kernel, bias)
        return y, vjp(dy)

    return f


class ConvTransposeSweepTest(chex.TestCase):

    def test_sweep_covers_every_feature(self):
        self.assertEqual(sorted(CORE + REST), sorted(CONFIG_BY_NAME))
        self.assertEqual({len(c[1]) - 2 for c in CONFIGS}, {1, 2, 3})
        kinds = {type(c[3].get("padding", "SAME")).__name__ for c in CONFIGS}
        self.assertEqual(kinds, {"str", "int", "tuple"})
        for key in ("output_padding", "dilation", "groups", "strides"):
            self.assertTrue(any(key in c[3] for c in CONFIGS), key)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*named(CORE))
    def test_matches_oracle_and_autodiff(self, name):
        self._check(name)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*named(REST))
    def test_matches_oracle_and_autodiff_rest(self, name):
        self._check(name)

    def _check(self, name):
        kwargs = CONFIG_BY_NAME[name][3]
        (x, kernel, bias, dy), y_ref, grads_ref = case(name)

        @self.variant
        def both(x, kernel, bias, dy):
            return (value_and_vjp(kwargs, "custom")(x, kernel, bias, dy),
                    value_and_vjp(kwargs, "autodiff")(x, kernel, bias, dy))

        (y, grads), (y_ad, grads_ad) = both(x, kernel, bias, dy)
        chex.assert_shape(y, y_ref.shape)
        self.assertEqual(y.shape, conv_transpose_output_shape(x.shape, kernel.shape, **kwargs))
        chex.assert_trees_all_close(y, y_ref, **TOL)
        chex.assert_trees_all_close(grads, grads_ref, **TOL)
        chex.assert_trees_all_close(y_ad, y_ref, **TOL)
        chex.assert_trees_all_close(grads, grads_ad, **TOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*named(FINITE_DIFFERENCES[1:]))
    def test_central_finite_differences(self, name):
        self._finite_differences(name)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*named(FINITE_DIFFERENCES[:1]))
    def test_central_finite_differences_jit(self, name):
        self._finite_differences(name)

    def _finite_differences(self, name):
        kwargs = CONFIG_BY_NAME[name][3]
        (x, kernel, bias, dy), _, _ = case(name)
        rng = np.random.default_rng(1)
        dirs = [np.stack([rng.normal(size=np.shape(a)) for _ in range(3)]) for a in (x, kernel, bias)]
        eps = 1e-4

        def loss(x, kernel, bias):
            return jnp.sum(conv_transpose(x, kernel, bias, **kwargs) * dy)

        @self.variant
        def numeric_and_analytic(x, kernel, bias, dirs):
            args = (x, kernel, bias)
            grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
            analytic = [sum(jnp.vdot(g, d[i]) for g, d in zip(grads, dirs)) for i in range(3)]
            numeric = [
                (loss(*(a + eps * d[i] for a, d in zip(args, dirs)))
                 - loss(*(a - eps * d[i] for a, d in zip(args, dirs)))) / (2 * eps)
                for i in range(3)
            ]
            return jnp.stack(numeric), jnp.stack(analytic)

        numeric, analytic = numeric_and_analytic(x, kernel, bias, dirs)
        np.testing.assert_allclose(numeric, analytic, rtol=1e-7, atol=1e-8)


def test_custom_backward_is_the_rule_in_use():
    x, kernel = jnp.ones((1, 3, 2)), jnp.ones((2, 2, 3))
    with traced_rules() as ran:
        jax.grad(lambda x, k: jnp.sum(conv_transpose(x, k, strides=2)), argnums=(0, 1))(x, kernel)
    assert "conv_transpose" in ran
    with traced_rules() as ran:
        jax.grad(lambda x: jnp.sum(conv_transpose(x, kernel, backward="autodiff")))(x)
    assert "conv_transpose" not in ran


def test_float32_custom_matches_autodiff():
    (x, kernel, bias, dy), _, _ = case("2d_everything")
    x, kernel, bias, dy = (a.astype(np.float32) for a in (x, kernel, bias, dy))
    kwargs = CONFIG_BY_NAME["2d_everything"][3]
    y, g = value_and_vjp(kwargs, "custom")(x, kernel, bias, dy)
    y_ad, g_ad = value_and_vjp(kwargs, "autodiff")(x, kernel, bias, dy)
    assert y.dtype == jnp.float32 and all(a.dtype == jnp.float32 for a in g)
    chex.assert_trees_all_close((y, g), (y_ad, g_ad), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------
# Semantics by hand: PyTorch's formula and examples, the scatter, the adjoint of conv


def _torch_size(w, k, s=1, p=0, op=0, d=1):
    """PyTorch's documented H_out = (H_in - 1) * stride - 2 * padding
    + dilation * (kernel_size - 1) + output_padding + 1."""
    return (w - 1) * s - 2 * p + d * (k - 1) + op + 1


@pytest.mark.parametrize("w,k,s,p,op,d", [
    (50, 3, 2, 0, 0, 1), (100, 3, 2, 0, 0, 1),  # ConvTranspose2d(16, 33, 3, stride=2)
    (50, 3, 2, 4, 0, 1), (100, 5, 1, 2, 0, 1),  # (3, 5), stride (2, 1), padding (4, 2)
    (6, 3, 2, 1, 1, 1),                          # the 12 -> 6 -> 12 round trip
    (7, 4, 3, 2, 2, 1), (5, 3, 1, 0, 2, 3), (1, 1, 1, 0, 0, 1), (4, 2, 2, 0, 1, 2),
])
def test_output_size_is_pytorchs_formula(w, k, s, p, op, d):
    got = conv_transpose_output_shape((1, w, 1), (k, 1, 1), strides=s, padding=p,
                                      output_padding=op, dilation=d)
    assert got == (1, _torch_size(w, k, s, p, op, d), 1)


def test_pytorch_documentation_examples():
    # nn.ConvTranspose2d(16, 33, 3, stride=2) on 50 x 100 -> 101 x 201
    shape = conv_transpose_output_shape((20, 50, 100, 16), (3, 3, 16, 33), strides=2,
                                        padding="VALID")
    assert shape == (20, 101, 201, 33)
    # nn.ConvTranspose2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2)) -> 93 x 100
    shape = conv_transpose_output_shape((20, 50, 100, 16), (3, 5, 16, 33), strides=(2, 1),
                                        padding=((4, 4), (2, 2)))
    assert shape == (20, 93, 100, 33)
    # downsample 12 x 12 with Conv2d(16, 16, 3, stride=2, padding=1) -> 6 x 6, and back
    # with ConvTranspose2d(16, 16, 3, stride=2, padding=1) and output_size 12 x 12,
    # i.e. output_padding=1
    zeros = fcnn.initializers.zeros
    init, _ = fcnn.ConvTranspose(16, 3, strides=2, padding=1, output_padding=1, kernel_init=zeros)
    assert init(jax.random.PRNGKey(0), (-1, 6, 6, 16))[0] == (-1, 12, 12, 16)
    assert fcnn.Conv(16, 3, strides=2, padding=1, kernel_init=zeros).init(
        jax.random.PRNGKey(0), (-1, 12, 12, 16))[0] == (-1, 6, 6, 16)


def test_worked_example_of_the_derivation_page():
    """docs/derivations/more_layers.md, "Transposed convolution", read from the page."""
    ex = pages.example("more_layers", "conv_transpose_1d")
    pages.check_shown("more_layers", "conv_transpose_1d")
    x = pages.array(ex["x"]).reshape(1, -1, 1)
    w = pages.array(ex["w"]).reshape(-1, 1, 1)
    s, p = ex["strides"], ex["padding"]
    np.testing.assert_array_equal(conv_transpose(x, w, strides=s, padding="VALID").ravel(),
                                  ex["y_valid"])
    np.testing.assert_array_equal(
        conv_transpose(x, w, strides=s, padding=p, output_padding=1).ravel(),
        ex["y_output_padding_1"])
    y, vjp = jax.vjp(lambda x, w: conv_transpose(x, w, strides=s, padding=p), x, w)
    np.testing.assert_array_equal(y.ravel(), ex["y"])
    dx, dw = vjp(pages.array(ex["dy"]).reshape(1, -1, 1))
    np.testing.assert_array_equal(dx.ravel(), ex["dx"])
    np.testing.assert_array_equal(dw.ravel(), ex["dw"])
    dy = pages.array(ex["dy"]).reshape(1, -1, 1)
    np.testing.assert_array_equal(  # the oracle agrees with the page too
        ref.conv_transpose_backward(x, w, dy, strides=s, padding=p)[0].ravel(), ex["dx"])


def test_same_and_dilation_by_hand():
    x = jnp.asarray([1.0, 2.0], jnp.float64).reshape(1, 2, 1)
    w = jnp.asarray([1.0, 10.0, 100.0], jnp.float64).reshape(3, 1, 1)
    # "SAME": out = 2 * 2 = 4, crop max(3 - 2, 0) = 1 split (0, 1)
    np.testing.assert_array_equal(conv_transpose(x, w, strides=2).ravel(), [1, 10, 102, 20])
    # dilation 2: taps 2 apart, stride 1: x0 at 0, 2, 4 and x1 at 1, 3, 5
    np.testing.assert_array_equal(
        conv_transpose(x, w, dilation=2, padding="VALID").ravel(), [1, 2, 10, 20, 100, 200])


def _swapped(kernel, groups):
    """(*K, Cig, G*Cog) -> (*K, Cog, G*Cig): the kernel of the convolution it transposes."""
    *window, k_in, c_out = kernel.shape
    w = kernel.reshape(*window, k_in, groups, c_out // groups)
    nd = len(window)
    w = np.transpose(w, (*range(nd), nd + 2, nd + 1, nd))
    return w.reshape(*window, c_out // groups, groups * k_in)


@pytest.mark.parametrize("name", ["1d_same_s2", "1d_pad1_outpad1", "3d_everything",
                                  "2d_depthwise", "3d_same_s2", "1d_same_kernel_below_stride"])
def test_is_the_adjoint_of_conv(name):
    """<conv_transpose(x), v> = <x, conv(v)>, conv with the same strides, dilation and
    padding (SAME: on the W * S input; explicit: P_lo low and P_hi - output_padding
    high, since the last output_padding cells are what the stride skipped)."""
    _, _, _, kwargs = CONFIG_BY_NAME[name]
    (x, kernel, _, v), _, _ = case(name)
    groups = kwargs.get("groups", 1)
    y = conv_transpose(x, kernel, **kwargs)
    cfg_padding = kwargs.get("padding", "SAME")
    if cfg_padding != "SAME":
        ndim = x.ndim - 2
        pairs = ((cfg_padding, cfg_padding),) * ndim if isinstance(cfg_padding, int) else cfg_padding
        op = kwargs.get("output_padding", 0)
        op = (op,) * ndim if isinstance(op, int) else op
        cfg_padding = tuple((lo, hi - o) for (lo, hi), o in zip(pairs, op))
    back = conv(v, _swapped(kernel, groups), strides=kwargs.get("strides", 1),
                padding=cfg_padding, dilation=kwargs.get("dilation", 1), groups=groups)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, v), np.vdot(x, back), rtol=1e-12)


# ----------------------------------------------------------------------------------
# The layer

LAYER_CASES = [
    ("2d_same_s2", dict(features=4, kernel_size=3, strides=2), (-1, 4, 5, 3)),
    ("1d_valid", dict(features=2, kernel_size=4, strides=3, padding="VALID"), (2, 5, 2)),
    ("3d_int_pad", dict(features=2, kernel_size=2, strides=2, padding=1, output_padding=1),
     (-1, 2, 3, 2, 1)),
    ("2d_tuple_pairs_groups", dict(features=4, kernel_size=(2, 3), groups=2,
                                   padding=((1, 0), (0, 2)), dilation=(1, 2)), (1, 4, 3, 2)),
    ("2d_no_bias", dict(features=3, kernel_size=1, strides=2, use_bias=False), (-1, 3, 3, 2)),
]


class ConvTransposeLayerTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*LAYER_CASES)
    def test_init_shape_is_apply_shape(self, kwargs, input_shape):
        init, apply = fcnn.ConvTranspose(**kwargs)
        out_shape, params, state = init(jax.random.PRNGKey(0), input_shape)
        concrete = tuple(2 if d == -1 else d for d in input_shape)
        x = np.random.default_rng(0).normal(size=concrete).astype(np.float32)
        y, new_state = self.variant(lambda p, x: apply(p, state, x, train=False))(params, x)
        self.assertEqual(out_shape[0], input_shape[0])
        self.assertEqual(tuple(y.shape), (concrete[0], *out_shape[1:]))
        self.assertEqual(new_state, {})
        self.assertEqual("bias" in params, kwargs.get("use_bias", True))
        nd = len(input_shape) - 2
        k = kwargs["kernel_size"]
        window = (k,) * nd if isinstance(k, int) else k
        self.assertEqual(params["kernel"].shape,
                         (*window, input_shape[-1] // kwargs.get("groups", 1), kwargs["features"]))

    def test_layer_gradient_matches_the_oracle(self):
        init, apply = fcnn.ConvTranspose(3, 3, strides=2, padding=1, output_padding=1)
        _, params, _ = init(jax.random.PRNGKey(0), (2, 3, 3, 2))
        params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
        rng = np.random.default_rng(5)
        x = rng.normal(size=(2, 3, 3, 2))
        r = rng.normal(size=(2, 6, 6, 3))
        grads = jax.grad(lambda p: jnp.sum(apply(p, {}, x, train=True)[0] * r))(params)
        kw = dict(strides=2, padding=1, output_padding=1)
        _, dw, db = ref.conv_transpose_backward(x, params["kernel"], r, **kw)
        chex.assert_trees_all_close(grads, {"kernel": dw, "bias": db}, **TOL)

    def test_role_and_name(self):
        layer = fcnn.ConvTranspose(8, (2, 2), strides=2)
        self.assertEqual(layer.role, fcnn.layers.base.CONVOLUTION)
        self.assertEqual(layer.name, "ConvTranspose(8, (2, 2))")


# ----------------------------------------------------------------------------------
# Bad input


def _call(x_shape=(1, 4, 4, 4), k_shape=(3, 3, 4, 2), bias_shape=None, **kwargs):
    bias = None if bias_shape is None else jnp.zeros(bias_shape)
    return conv_transpose(jnp.zeros(x_shape), jnp.zeros(k_shape), bias, **kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(x_shape=(4, 4)), ValueError, r"x has shape \(4, 4\) \(rank 2\).*rank 3 or 4 or 5"),
    (dict(k_shape=(3, 4, 2)), ValueError, r"kernel has shape \(3, 4, 2\) \(rank 3\): expected rank 4"),
    (dict(k_shape=(3, 3, 3, 2)), ValueError, r"kernel expects C_in=3 .*input has 4 channels"),
    (dict(k_shape=(3, 3, 2, 3), groups=2), ValueError, r"groups=2: out_channels \(=3\) must be divisible"),
    (dict(k_shape=(3, 3, 1, 3), groups=3), ValueError, r"groups=3: in_channels \(=4\) must be divisible"),
    (dict(groups=0), ValueError, r"groups=0: expected a positive int"),
    (dict(strides=0), ValueError, r"strides=0: every entry must be positive"),
    (dict(strides=(1, 2, 3)), ValueError, r"strides=\(1, 2, 3\): expected an int or a tuple of 2 ints"),
    (dict(strides=1.5), TypeError, r"strides=1\.5"),
    (dict(dilation=(1, 0)), ValueError, r"dilation=\(1, 0\): every entry must be positive"),
    (dict(padding="FULL"), ValueError, r"padding='FULL'"),
    (dict(padding=-1), ValueError, r"padding=-1"),
    (dict(padding=((1, 1),)), ValueError, r"padding=\(\(1, 1\),\): expected 2 \(low, high\) pairs"),
    (dict(padding=1, output_padding=2, strides=2), ValueError,
     r"output_padding=2: entry 0 \(=2\) must be smaller than max\(strides, dilation\) \(=2\)"),
    (dict(padding=1, output_padding=-1), ValueError, r"output_padding=-1: every entry must be >= 0"),
    (dict(padding=1, output_padding=(1, 1, 1), strides=2), ValueError,
     r"output_padding=\(1, 1, 1\): expected an int or a tuple of 2 ints"),
    (dict(output_padding=1, strides=2), ValueError, r"output_padding=1 with padding='SAME'"),
    (dict(padding=3, x_shape=(1, 1, 4, 4)), ValueError,
     r"padding \(3, 3\) crops every cell of spatial dimension 0 .*output size would be -3"),
    (dict(bias_shape=(3,)), ValueError, r"bias has shape \(3,\): expected \(2,\)"),
    (dict(backward="manual"), ValueError, r"backward='manual': expected one of"),
])
def test_op_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(**kwargs)


def test_output_shape_rejects_bad_input():
    with pytest.raises(ValueError, match=r"input_shape has shape \(5, 5\)"):
        conv_transpose_output_shape((5, 5), (3, 1, 1))
    with pytest.raises(ValueError, match=r"batch size must be >= 0"):
        conv_transpose_output_shape((-2, 5, 1), (3, 1, 1))
    with pytest.raises(ValueError, match=r"kernel_shape has shape \(0, 1, 1\): every entry must be positive"):
        conv_transpose_output_shape((1, 5, 1), (0, 1, 1))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(features=0, kernel_size=3), ValueError, r"features=0: expected a positive int"),
    (dict(features=2, kernel_size=(3, 0)), ValueError, r"kernel_size=\(3, 0\): every entry must be positive"),
    (dict(features=2, kernel_size=(1, 1, 1, 1)), ValueError, r"kernel_size=\(1, 1, 1, 1\): expected an int or a tuple of 1, 2 or 3"),
    (dict(features=2, kernel_size="3"), TypeError, r"kernel_size='3'"),
    (dict(features=2, kernel_size=(3, 3), strides=(1, 1, 1)), ValueError, r"strides=\(1, 1, 1\): expected an int or a tuple of 2 ints"),
    (dict(features=2, kernel_size=3, padding="full"), ValueError, r"padding='full'"),
    (dict(features=2, kernel_size=(3, 3), padding=((1, 1),)), ValueError, r"expected 2 \(low, high\) pairs"),
    (dict(features=2, kernel_size=3, output_padding=1), ValueError, r"output_padding=1 with padding='SAME'"),
    (dict(features=2, kernel_size=3, padding=1, output_padding=-1), ValueError, r"output_padding=-1: expected an int >= 0"),
    (dict(features=2, kernel_size=3, padding=1, output_padding="1"), TypeError, r"output_padding='1'"),
    (dict(features=3, kernel_size=3, groups=2), ValueError, r"groups=2: features \(=3\) must be divisible by groups"),
    (dict(features=2, kernel_size=3, use_bias="yes"), TypeError, r"use_bias='yes'"),
    (dict(features=2, kernel_size=3, backward="manual"), ValueError, r"backward='manual'"),
])
def test_layer_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fcnn.ConvTranspose(**kwargs)


def test_layer_init_and_apply_reject_bad_inputs():
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3\) has 2 spatial dimension\(s\), so the input must have rank 4"):
        fcnn.ConvTranspose(2, (3, 3)).init(jax.random.PRNGKey(0), (1, 8, 2))
    with pytest.raises(ValueError, match=r"groups=2: in_channels \(=3\) must be divisible"):
        fcnn.ConvTranspose(2, 3, groups=2).init(jax.random.PRNGKey(0), (1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"output_padding=\(1, 1\): entry 0 \(=1\) must be smaller"):
        fcnn.ConvTranspose(2, 3, padding=1, output_padding=(1, 1)).init(
            jax.random.PRNGKey(0), (1, 4, 4, 3))
    init, apply = fcnn.ConvTranspose(2, 3, strides=2)
    _, params, state = init(jax.random.PRNGKey(0), (1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"x has 4 channels .*but the params expect 3"):
        apply(params, state, jnp.zeros((1, 4, 4, 4)), train=False)
    with pytest.raises(ValueError, match=r"x has shape \(1, 4, 3\) \(rank 3\), but the params were initialised for inputs of rank 4"):
        apply(params, state, jnp.zeros((1, 4, 3)), train=False)
    with pytest.raises(TypeError, match=r"train=1: expected True or False"):
        apply(params, state, jnp.zeros((1, 4, 4, 3)), train=1)
