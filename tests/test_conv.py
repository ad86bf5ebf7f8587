"""Convolution: the op's forward and hand-written backward, and the Conv layer.

Every gradient is checked three ways: against the naive-loop NumPy oracle
(tests/reference/conv_ref.py), against `jax.vjp` of the plain forward
(`backward="autodiff"`), and against central finite differences in float64.
"""

import functools
import importlib
import re
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn import _checks
from fcnn.ops import lowering
from fcnn.ops.conv import conv, conv_output_shape
from fcnn.ops.hand_rule import traced_rules
from tests.reference import conv_ref
from tests.reference import derivation_pages as pages

conv_module = importlib.import_module("fcnn.ops.conv")

TOL = dict(atol=1e-10, rtol=1e-10)

# (name, x shape, kernel shape, keyword arguments). Kernel: (*K, C_in // groups, C_out).
CONFIGS = [
    # 1-D
    ("1d_valid", (2, 7, 3), (3, 3, 4), dict(padding="VALID")),
    ("1d_same", (2, 7, 3), (3, 3, 4), dict(padding="SAME")),
    ("1d_same_s2_odd_total", (2, 7, 3), (3, 3, 4), dict(padding="SAME", strides=2)),
    ("1d_same_s3_not_dividing", (2, 8, 2), (3, 2, 3), dict(padding="SAME", strides=3)),
    ("1d_valid_s3_not_dividing", (2, 8, 2), (2, 2, 3), dict(padding="VALID", strides=3)),
    ("1d_int_pad", (2, 6, 2), (3, 2, 2), dict(padding=2)),
    ("1d_pairs_asym", (2, 6, 2), (3, 2, 2), dict(padding=((0, 3),))),
    ("1d_pad_wider_than_window", (1, 5, 2), (2, 2, 3), dict(padding=((4, 5),), strides=2)),
    ("1d_same_even_kernel", (2, 6, 2), (4, 2, 2), dict(padding="SAME")),
    ("1d_dil2", (2, 9, 2), (3, 2, 3), dict(padding="VALID", dilation=2)),
    ("1d_dil3_same_s2", (2, 9, 2), (2, 2, 3), dict(padding="SAME", dilation=3, strides=2)),
    ("1d_indil2", (2, 5, 2), (3, 2, 2), dict(padding="VALID", input_dilation=2)),
    ("1d_indil3_s2_pad", (2, 4, 2), (3, 2, 2), dict(padding=2, input_dilation=3, strides=2)),
    ("1d_indil2_same", (1, 5, 2), (2, 2, 2), dict(padding="SAME", input_dilation=2)),
    ("1d_groups2", (2, 6, 4), (3, 2, 6), dict(groups=2)),
    ("1d_depthwise", (2, 6, 3), (3, 1, 3), dict(groups=3)),
    ("1d_depthwise_mult2_s2", (2, 6, 3), (3, 1, 6), dict(groups=3, strides=2)),
    ("1d_everything", (2, 6, 4), (2, 2, 4),
     dict(strides=3, dilation=2, input_dilation=2, groups=2, padding=((2, 1),))),
    ("1d_kernel1_s2", (2, 5, 3), (1, 3, 2), dict(padding="VALID", strides=2)),
    ("1d_window_equals_input", (2, 4, 2), (4, 2, 3), dict(padding="VALID")),
    ("1d_one_channel", (1, 7, 1), (3, 1, 1), dict(strides=2)),
    # 2-D
    ("2d_valid", (2, 5, 5, 3), (3, 3, 3, 2), dict(padding="VALID")),
    ("2d_same", (2, 5, 6, 2), (3, 3, 2, 3), dict(padding="SAME")),
    ("2d_same_s2", (2, 5, 5, 3), (3, 3, 3, 2), dict(strides=2)),
    ("2d_notes_7x7x3_volume", (1, 5, 5, 3), (3, 3, 3, 2), dict(padding=1, strides=2)),
    ("2d_strides_mixed_same", (1, 7, 6, 2), (3, 2, 2, 2), dict(strides=(2, 3))),
    ("2d_strides_mixed_valid", (1, 7, 6, 2), (3, 2, 2, 2), dict(strides=(3, 2), padding="VALID")),
    ("2d_int_pad_s2", (2, 6, 6, 2), (3, 3, 2, 2), dict(padding=1, strides=2)),
    ("2d_pairs", (1, 5, 6, 2), (2, 3, 2, 3), dict(padding=((1, 2), (0, 3)))),
    ("2d_pairs_wide", (1, 4, 4, 1), (2, 2, 1, 2), dict(padding=((3, 0), (0, 4)), strides=(2, 1))),
    ("2d_dil2", (1, 7, 7, 2), (3, 3, 2, 2), dict(padding="VALID", dilation=2)),
    ("2d_dil_mixed_same", (1, 7, 6, 2), (3, 2, 2, 2), dict(dilation=(1, 3))),
    ("2d_dil2_s2_same", (1, 8, 8, 1), (3, 3, 1, 2), dict(dilation=2, strides=2)),
    ("2d_indil2", (1, 4, 4, 2), (3, 3, 2, 2), dict(padding="VALID", input_dilation=2)),
    ("2d_indil_mixed", (1, 4, 3, 2), (2, 3, 2, 2), dict(padding=1, input_dilation=(2, 3))),
    ("2d_transposed_conv", (1, 3, 3, 2), (3, 3, 2, 2),
     dict(padding=((2, 2), (2, 2)), input_dilation=2)),
    ("2d_indil2_s2_same", (1, 4, 4, 2), (3, 3, 2, 2), dict(input_dilation=2, strides=2)),
    ("2d_groups2", (2, 5, 5, 4), (3, 3, 2, 4), dict(groups=2)),
    ("2d_groups4_mult2_s2", (1, 6, 6, 4), (3, 3, 1, 8), dict(groups=4, strides=2)),
    ("2d_depthwise", (2, 5, 5, 3), (3, 3, 1, 3), dict(groups=3)),
    ("2d_depthwise_valid_s2", (1, 7, 7, 2), (3, 3, 1, 2),
     dict(groups=2, padding="VALID", strides=2)),
    ("2d_groups3_pairs", (1, 5, 5, 6), (2, 2, 2, 3), dict(groups=3, padding=((1, 0), (0, 1)))),
    ("2d_everything", (1, 5, 4, 4), (2, 3, 2, 4),
     dict(strides=(2, 3), dilation=(2, 1), input_dilation=(1, 2), groups=2,
          padding=((1, 2), (2, 0)))),
    ("2d_kernel1x1", (2, 4, 4, 3), (1, 1, 3, 5), dict()),
    ("2d_kernel1x1_s2", (1, 5, 5, 3), (1, 1, 3, 2), dict(padding="VALID", strides=2)),
    ("2d_rect_kernel", (1, 6, 5, 2), (1, 4, 2, 2), dict()),
    ("2d_window_equals_input", (2, 4, 4, 2), (4, 4, 2, 3), dict(padding="VALID")),
    ("2d_stride_beyond_window", (1, 9, 9, 1), (2, 2, 1, 2), dict(padding="VALID", strides=4)),
    ("2d_stride_beyond_window_same", (1, 9, 8, 1), (2, 2, 1, 2), dict(strides=4)),
    # 3-D
    ("3d_valid", (1, 4, 4, 4, 2), (2, 2, 2, 2, 2), dict(padding="VALID")),
    ("3d_same", (1, 4, 5, 3, 2), (3, 3, 2, 2, 2), dict()),
    ("3d_same_s2", (2, 4, 4, 4, 1), (3, 3, 3, 1, 2), dict(strides=2)),
    ("3d_strides_mixed", (1, 5, 4, 3, 2), (2, 2, 2, 2, 2), dict(strides=(2, 1, 3), padding="VALID")),
    ("3d_pairs", (1, 3, 4, 3, 1), (2, 2, 2, 1, 2), dict(padding=((1, 0), (0, 2), (1, 1)))),
    ("3d_dil", (1, 5, 5, 4, 1), (2, 2, 2, 1, 2), dict(dilation=(2, 2, 1), padding="VALID")),
    ("3d_indil2", (1, 3, 3, 2, 1), (2, 2, 2, 1, 2), dict(input_dilation=2, padding="VALID")),
    ("3d_groups2", (1, 4, 4, 4, 4), (2, 2, 2, 2, 4), dict(groups=2)),
    ("3d_depthwise_s2", (1, 4, 4, 3, 3), (2, 2, 2, 1, 3), dict(groups=3, strides=2)),
    ("3d_everything", (1, 4, 3, 4, 4), (2, 2, 1, 2, 2),
     dict(strides=2, dilation=(1, 1, 2), input_dilation=(2, 1, 1), groups=2, padding=1)),
    ("3d_int_pad_s3", (1, 5, 5, 5, 1), (3, 3, 3, 1, 1), dict(padding=1, strides=3)),
    ("3d_kernel1", (1, 3, 3, 3, 2), (1, 1, 1, 2, 3), dict()),
]
CONFIG_BY_NAME = {c[0]: c for c in CONFIGS}
# Compilation dominates the run time, so every configuration runs jitted by default
# and a core subset (one per feature) also runs unjitted; the unjitted run of the
# rest is behind the `slow` marker.
CORE = [
    "1d_same_s3_not_dividing", "1d_pad_wider_than_window", "1d_indil3_s2_pad",
    "1d_depthwise_mult2_s2", "1d_everything", "2d_notes_7x7x3_volume", "2d_pairs_wide",
    "2d_dil2_s2_same", "2d_transposed_conv", "2d_groups4_mult2_s2", "2d_everything",
    "3d_same_s2", "3d_everything",
]
REST = [c[0] for c in CONFIGS if c[0] not in CORE]
FINITE_DIFFERENCES = [
    "1d_valid_s3_not_dividing", "1d_pad_wider_than_window", "2d_same_s2",
    "2d_transposed_conv", "2d_everything", "3d_everything",
    "2d_stride_beyond_window",  # r = 3 cells past the last window: the (p_hi - r) padding
]


# The two backward routes of the conv op on every backend: the textbook rule with XLA's
# convolutions, and the same rule with its passes lowered to matrix products.
ROUTES = {
    "xla": None,
    "lowered": lowering.Lowering("conv_forward_taps", "conv_input_grad_col2im",
                                 "conv_kernel_grad_im2col"),
}
ROUTE_RULES = {"xla": "conv", "lowered": "conv/lowered"}


def fd_cases(names, routes):
    return [dict(testcase_name=n, name=n, route=r) for n in names for r in routes]


def normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def numpy_init(rng, shape, dtype=jnp.float32):
    """A kernel initializer drawing with NumPy, for tests that only need some values:
    `jax.random.normal` compiles once per new shape, which would dominate the run time."""
    return jnp.asarray(0.3 * normal(int(np.asarray(rng).sum()), shape), dtype)


def named(names):
    return [dict(testcase_name=n, name=n) for n in names]


@functools.lru_cache(maxsize=None)
def case(name):
    """Float64 inputs, a cotangent, and the oracle's forward and backward for one config."""
    _, x_shape, k_shape, kwargs = CONFIG_BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.normal(size=x_shape)
    kernel = rng.normal(size=k_shape)
    bias = rng.normal(size=k_shape[-1:])
    y = conv_ref.conv_forward(x, kernel, bias, **kwargs)
    dy = rng.normal(size=y.shape)
    grads = conv_ref.conv_backward(x, kernel, dy, **kwargs)
    return (x, kernel, bias, dy), y, grads


def value_and_vjp(kwargs, backward, lowering=None):
    def f(x, kernel, bias, dy):
        y, vjp = jax.vjp(
            lambda x, k, b: conv(x, k, b, backward=backward, lowering=lowering, **kwargs),
            x, kernel, bias,
        )
        return y, vjp(dy)

    return f


def check_against_oracle(variant, name):
    """Forward and (dx, dkernel, dbias) of both rules, and of the custom rule with every
    pass lowered to matrix products (a superset of what "auto" picks on the CPU),
    against the oracle and each other."""
    kwargs = CONFIG_BY_NAME[name][3]
    (x, kernel, bias, dy), y_ref, grads_ref = case(name)

    @variant
    def both_rules(x, kernel, bias, dy):
        return (value_and_vjp(kwargs, "custom")(x, kernel, bias, dy),
                value_and_vjp(kwargs, "autodiff")(x, kernel, bias, dy),
                value_and_vjp(kwargs, "custom", ROUTES["lowered"])(x, kernel, bias, dy))

    (y, grads), (y_ad, grads_ad), (y_low, grads_low) = both_rules(x, kernel, bias, dy)
    chex.assert_shape(y, y_ref.shape)
    chex.assert_trees_all_close(y, y_ref, **TOL)
    chex.assert_trees_all_close(grads, grads_ref, **TOL)
    chex.assert_trees_all_close(y_low, y_ref, **TOL)
    chex.assert_trees_all_close(grads_low, grads_ref, **TOL)
    chex.assert_trees_all_close(y_ad, y_ref, **TOL)
    chex.assert_trees_all_close(grads_ad, grads_ref, **TOL)
    chex.assert_trees_all_close(grads, grads_ad, **TOL)
    assert y.shape == conv_output_shape(x.shape, kernel.shape, **kwargs)


class ConvSweepTest(chex.TestCase):
    """The op over the sweep of configurations."""

    def test_sweep_is_large_and_covers_every_feature(self):
        self.assertGreaterEqual(len(CONFIGS), 50)
        self.assertEqual(sorted(CORE + REST), sorted(CONFIG_BY_NAME))
        kinds = {type(c[3].get("padding", "SAME")).__name__ for c in CONFIGS}
        self.assertEqual(kinds, {"str", "int", "tuple"})
        self.assertEqual({len(c[1]) - 2 for c in CONFIGS}, {1, 2, 3})
        self.assertTrue(any(c[3].get("groups", 1) == c[1][-1] for c in CONFIGS))  # depthwise
        for key in ("dilation", "input_dilation", "strides"):
            self.assertTrue(any(c[3].get(key, 1) not in (1, (1,) * (len(c[1]) - 2)) for c in CONFIGS))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*named(CORE))
    def test_matches_oracle_and_autodiff(self, name):
        check_against_oracle(self.variant, name)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*named(REST))
    def test_matches_oracle_and_autodiff_rest(self, name):
        check_against_oracle(self.variant, name)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*fd_cases(FINITE_DIFFERENCES, ["xla"]))
    def test_central_finite_differences(self, name, route):
        self._check_finite_differences(name, route)

    # The lowered route (col2im input gradient, im2col kernel gradient) jitted only.
    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*fd_cases(FINITE_DIFFERENCES, ["lowered"]))
    def test_central_finite_differences_lowered(self, name, route):
        self._check_finite_differences(name, route)

    def _check_finite_differences(self, name, route):
        """Central differences of the plain forward against the gradient of the hand
        rule taking `route`: XLA's input- and kernel-gradient convolutions
        (lowering=None) or the col2im / im2col matrix-product lowerings, passed
        explicitly so that the test does not depend on what "auto" picks."""
        kwargs = CONFIG_BY_NAME[name][3]
        (x, kernel, bias, dy), _, _ = case(name)
        rng = np.random.default_rng(1)
        # three random directions through all three arguments at once
        dirs = [np.stack([rng.normal(size=np.shape(a)) for _ in range(3)]) for a in (x, kernel, bias)]
        eps = 1e-4

        def loss(x, kernel, bias, backward="autodiff", lowering=None):
            return jnp.sum(conv(x, kernel, bias, backward=backward, lowering=lowering, **kwargs) * dy)

        @self.variant
        def numeric_and_analytic(x, kernel, bias, dirs):
            args = (x, kernel, bias)
            grads = jax.grad(functools.partial(loss, backward="custom", lowering=ROUTES[route]),
                             argnums=(0, 1, 2))(*args)
            analytic = [sum(jnp.vdot(g, d[i]) for g, d in zip(grads, dirs)) for i in range(3)]
            numeric = [
                (loss(*(a + eps * d[i] for a, d in zip(args, dirs)))
                 - loss(*(a - eps * d[i] for a, d in zip(args, dirs)))) / (2 * eps)
                for i in range(3)
            ]
            return jnp.stack(numeric), jnp.stack(analytic)

        with traced_rules() as seen:
            numeric, analytic = numeric_and_analytic(x, kernel, bias, dirs)
        self.assertEqual(seen, {ROUTE_RULES[route]})  # the route under test really ran
        np.testing.assert_allclose(numeric, analytic, rtol=1e-7, atol=1e-8)


@pytest.mark.slow
class ConvSweepUnjittedTest(chex.TestCase):
    """The unjitted run of the configurations outside the core subset."""

    @chex.variants(without_jit=True)
    @parameterized.named_parameters(*named(REST))
    def test_matches_oracle_and_autodiff_rest(self, name):
        check_against_oracle(self.variant, name)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("name", ["1d_everything", "2d_groups3_pairs"])
def test_elementwise_finite_differences(name, route):
    (x, kernel, bias, dy), _, _ = case(name)
    kwargs = CONFIG_BY_NAME[name][3]
    loss = jax.jit(lambda x, k, b: jnp.sum(conv(x, k, b, backward="autodiff", **kwargs) * dy))
    with traced_rules() as seen:
        grads = jax.jit(jax.grad(
            lambda x, k, b: jnp.sum(conv(x, k, b, lowering=ROUTES[route], **kwargs) * dy),
            argnums=(0, 1, 2)))(x, kernel, bias)
    assert seen == {ROUTE_RULES[route]}
    eps = 1e-5
    args = [x, kernel, bias]
    for i, arg in enumerate(args):
        numeric = np.zeros_like(arg)
        for idx in np.ndindex(arg.shape):
            step = np.zeros_like(arg)
            step[idx] = eps
            hi = loss(*[a + step if j == i else a for j, a in enumerate(args)])
            lo = loss(*[a - step if j == i else a for j, a in enumerate(args)])
            numeric[idx] = (hi - lo) / (2 * eps)
        np.testing.assert_allclose(grads[i], numeric, rtol=1e-7, atol=1e-8)


def test_float32_custom_matches_autodiff():
    (x, kernel, bias, dy), _, _ = case("2d_everything")
    x, kernel, bias, dy = (a.astype(np.float32) for a in (x, kernel, bias, dy))
    kwargs = CONFIG_BY_NAME["2d_everything"][3]
    y, g = value_and_vjp(kwargs, "custom")(x, kernel, bias, dy)
    y_ad, g_ad = value_and_vjp(kwargs, "autodiff")(x, kernel, bias, dy)
    assert y.dtype == jnp.float32 and all(a.dtype == jnp.float32 for a in g)
    chex.assert_trees_all_close((y, g), (y_ad, g_ad), atol=1e-5, rtol=1e-5)


def test_custom_backward_is_the_rule_in_use(monkeypatch):
    x = jnp.ones((1, 5, 8))  # 8 input channels: XLA's convolution on every backend
    kernel = jnp.ones((3, 8, 2))
    assert conv_module.resolve_lowering("auto", x.shape, kernel.shape) == conv_module.XLA_EVERYWHERE
    monkeypatch.setattr(conv_module, "_conv_input_grad", lambda dy, k, c, s: jnp.full((1, 5, 8), 7.0))
    dx = jax.grad(lambda x: jnp.sum(conv(x, kernel)))(x)
    np.testing.assert_array_equal(dx, np.full((1, 5, 8), 7.0))
    dx_ad = jax.grad(lambda x: jnp.sum(conv(x, kernel, backward="autodiff")))(x)
    assert not np.allclose(dx_ad, 7.0)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the lowering choice is CPU-only")
def test_one_channel_convolutions_take_the_matrix_product_lowering_on_the_cpu(monkeypatch):
    lowering = conv_module.lowering
    x = jnp.ones((128, 28, 28, 1))  # RefNet's first layer at batch 128
    kernel = jnp.ones((3, 3, 1, 4))
    route = conv_module.resolve_lowering("auto", x.shape, kernel.shape)
    assert route == lowering.Lowering(
        "conv_forward_taps", "conv_input_grad_col2im", "conv_kernel_grad_im2col")
    assert conv_module.resolve_lowering(None, x.shape, kernel.shape) == conv_module.XLA_EVERYWHERE
    marked = {}
    for name in route:
        original = getattr(lowering, name)
        monkeypatch.setattr(lowering, name, functools.partial(
            lambda fn, key, *a, **k: marked.setdefault(key, True) and fn(*a, **k), original, name))
    jax.eval_shape(jax.grad(lambda x, k: jnp.sum(conv(x, k)), argnums=(0, 1)), x, kernel)
    assert not marked  # the op's default is the textbook rule
    layer = fcnn.Conv(4, 3)  # the layer opts into the measured lowering
    _, params, _ = layer.init(jax.random.PRNGKey(0), x.shape)
    jax.eval_shape(jax.grad(lambda x, p: jnp.sum(layer.apply(p, {}, x, train=True)[0]),
                            argnums=(0, 1)), x, params)
    assert set(marked) == {"conv_forward_taps", "conv_input_grad_col2im", "conv_kernel_grad_im2col"}


def test_no_bias_gives_no_bias_gradient_and_integers_are_promoted():
    x = np.arange(10, dtype=np.int32).reshape(1, 5, 2)
    kernel = np.ones((2, 2, 1), np.int32)
    y = conv(x, kernel, padding="VALID")
    assert jnp.issubdtype(y.dtype, jnp.floating)
    np.testing.assert_array_equal(y[0, :, 0], [0 + 1 + 2 + 3, 2 + 3 + 4 + 5, 4 + 5 + 6 + 7, 6 + 7 + 8 + 9])
    grads = jax.grad(lambda x, k: jnp.sum(conv(x, k, padding="VALID")), argnums=(0, 1))(
        x.astype(np.float64), kernel.astype(np.float64)
    )
    assert grads[0].shape == x.shape and grads[1].shape == kernel.shape
    # nested lists work like arrays
    np.testing.assert_array_equal(conv([[[1], [2], [3]]], [[[1]], [[1]]], [0.5], padding="VALID"),
                                  [[[3.5], [5.5]]])


# ----------------------------------------------------------------------------------
# The notes' worked numbers

# The numbers are read from the derivation page (docs/derivations/conv.md), so the page
# and the tests cannot drift apart.
NOTES = pages.example("conv", "conv_5x5")
NOTES_IMAGE, NOTES_FILTER, NOTES_FEATURE_MAP = (
    NOTES["image"], NOTES["filter"], NOTES["feature_map"])


@pytest.mark.parametrize("backward", ["custom", "autodiff"])
def test_notes_5x5_image_with_3x3_filter(backward):
    x = jnp.asarray(NOTES_IMAGE, jnp.float32).reshape(1, 5, 5, 1)
    kernel = jnp.asarray(NOTES_FILTER, jnp.float32).reshape(3, 3, 1, 1)
    y = conv(x, kernel, strides=1, padding="VALID", backward=backward)
    chex.assert_shape(y, (1, 3, 3, 1))
    np.testing.assert_array_equal(y[0, :, :, 0], NOTES_FEATURE_MAP)
    assert y[0, 0, 0, 0] == 4
    np.testing.assert_array_equal(
        conv_ref.conv_forward(np.reshape(NOTES_IMAGE, (1, 5, 5, 1)),
                              np.reshape(NOTES_FILTER, (3, 3, 1, 1)), padding="VALID")[0, :, :, 0],
        NOTES_FEATURE_MAP,
    )


# Every route of the op: the hand rule with XLA's convolutions, with the matrix-product
# lowerings, and plain autodiff.
PAGE_ROUTES = [("custom", None), ("custom", "lowered"), ("autodiff", None)]


def _page_grads(x, w, b, dy, backward, route, **kwargs):
    lowering_ = None if route is None else ROUTES[route]
    y, vjp = jax.vjp(lambda x, w, b: conv(x, w, b, backward=backward, lowering=lowering_,
                                          **kwargs), x, w, b)
    return (y, *vjp(dy))


@pytest.mark.parametrize("backward, route", PAGE_ROUTES)
@pytest.mark.parametrize("name", ["conv_1d_stride_2", "conv_1d_stride_2_six_cells"])
def test_derivation_page_1d_backward_example(name, backward, route):
    """docs/derivations/conv.md, "A 1-D example with numbers", read from the page."""
    ex = pages.example("conv", name)
    pages.check_shown("conv", name)
    x = pages.array(ex["x"]).reshape(1, -1, 1)
    w = pages.array(ex["w"]).reshape(-1, 1, 1)
    dy = pages.array(ex["dy"]).reshape(1, -1, 1)
    y, dx, dw, db = _page_grads(x, w, jnp.zeros(1, jnp.float64), dy, backward, route,
                                strides=ex["strides"], padding=ex["padding"])
    np.testing.assert_array_equal(y.ravel(), ex["y"])
    np.testing.assert_array_equal(dx.ravel(), ex["dx"])
    np.testing.assert_array_equal(dw.ravel(), ex["dw"])
    np.testing.assert_array_equal(db, [ex["db"]])
    # The recipe, step by step: dy dilated by the stride, padded (low F - 1 - p_lo, high
    # F - 1 - p_hi + r), correlated with the flipped kernel.
    s, k = ex["strides"], len(ex["w"])
    dilated = np.zeros((len(ex["dy"]) - 1) * s + 1)
    dilated[::s] = ex["dy"]
    np.testing.assert_array_equal(dilated, ex["dy_dilated"])
    np.testing.assert_array_equal(np.flip(ex["w"]), ex["flipped_w"])
    padded = np.pad(dilated, ex["recipe_padding"])
    recipe = [padded[i:i + k] @ np.asarray(ex["flipped_w"]) for i in range(len(padded) - k + 1)]
    np.testing.assert_array_equal(recipe, ex["dx"])
    config, out_shape = conv_module._resolve(x.shape, w.shape, ex["strides"], ex["padding"], 1, 1, 1)
    assert conv_module._input_grad_padding(x.shape[1:-1], w.shape[:1], out_shape[1:-1],
                                           config) == (tuple(ex["recipe_padding"]),)


@pytest.mark.parametrize("backward, route", PAGE_ROUTES)
def test_derivation_page_5x5_example_backwards(backward, route):
    """docs/derivations/conv.md, "The 5x5 example, backwards", read from the page."""
    ex = pages.example("conv", "conv_5x5_backward")
    pages.check_shown("conv", "conv_5x5")
    pages.check_shown("conv", "conv_5x5_backward")
    assert ex["dy"] == "ones"
    x = pages.array(NOTES_IMAGE).reshape(1, 5, 5, 1)
    w = pages.array(NOTES_FILTER).reshape(3, 3, 1, 1)
    y, dx, dw, db = _page_grads(x, w, jnp.zeros(1, jnp.float64), jnp.ones((1, 3, 3, 1)),
                                backward, route, strides=NOTES["strides"],
                                padding=NOTES["padding"])
    np.testing.assert_array_equal(y[0, :, :, 0], NOTES_FEATURE_MAP)
    np.testing.assert_array_equal(db, [ex["db"]])
    np.testing.assert_array_equal(dw[:, :, 0, 0], ex["dw"])
    np.testing.assert_array_equal(dx[0, :, :, 0], ex["dx"])


# (W1, F, P, S, W2) worked by hand from W2 = (W1 - F + 2P) / S + 1
OUTPUT_SIZES = [
    (5, 3, 0, 2, 2),      # the notes: (5 - 3 + 0) / 2 + 1
    (5, 3, 0, 1, 3),
    (5, 3, 1, 2, 3),      # the notes' 7x7x3 volume with stride 2
    (7, 3, 0, 1, 5),
    (7, 3, 0, 2, 3),
    (7, 3, 1, 3, 3),
    (28, 5, 0, 1, 24),
    (32, 5, 2, 1, 32),
    (224, 3, 1, 1, 224),
    (227, 11, 0, 4, 55),  # AlexNet's first layer
    (224, 7, 3, 2, 112),
    (10, 10, 0, 1, 1),
]


def _page_output_sizes():
    """The table of docs/derivations/conv.md, "Output size": (W1, F, P, S, W2), W2 the
    number after the last "=" of its cell (or its first number)."""
    rows = []
    for w1, f, p, s, w2 in pages.markdown_table("conv", "## Output size"):
        rows.append((int(w1), int(f), int(p), int(s),
                     int(re.search(r"\d+", w2.rsplit("=", 1)[-1]).group())))
    return rows


def test_the_output_size_table_of_the_derivation_page_is_in_the_sweep():
    page = _page_output_sizes()
    assert len(page) >= 5
    assert set(page) <= set(OUTPUT_SIZES), sorted(set(page) - set(OUTPUT_SIZES))


@pytest.mark.parametrize("w1,f,p,s,w2", OUTPUT_SIZES)
def test_output_size_formula(w1, f, p, s, w2):
    assert _checks.output_size(w1, f, s, (p, p)) == w2
    assert conv_output_shape((1, w1, 1), (f, 1, 1), s, p) == (1, w2, 1)
    assert conv_output_shape((-1, w1, w1, 3), (f, f, 3, 7), s, p) == (-1, w2, w2, 7)
    if w1 <= 32:
        y = conv(jnp.zeros((1, w1, 1)), jnp.zeros((f, 1, 1)), strides=s, padding=p)
        assert y.shape == (1, w2, 1)


def test_notes_7x7x3_volume_two_filters_stride_2_and_56_parameters():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(1, 5, 5, 3)).astype(np.float64)
    kernel = rng.integers(-1, 2, size=(3, 3, 3, 2)).astype(np.float64)
    bias = np.array([1.0, 0.0])
    y = conv(x, kernel, bias, strides=2, padding=1)
    chex.assert_shape(y, (1, 3, 3, 2))
    # zero-padding by 1 is the 7x7x3 volume drawn in the notes, then a VALID conv
    volume = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    assert volume.shape == (1, 7, 7, 3)
    y_volume = conv(volume, kernel, bias, strides=2, padding="VALID")
    np.testing.assert_allclose(y, y_volume)
    # one output cell by hand: the window at the top-left of the volume, filter 0
    cell = np.sum(volume[0, 0:3, 0:3, :] * kernel[..., 0]) + bias[0]
    np.testing.assert_allclose(y[0, 0, 0, 0], cell)

    init, apply = fcnn.Conv(2, 3, strides=2, padding=1, kernel_init=numpy_init)
    out_shape, params, _ = init(jax.random.PRNGKey(0), (1, 5, 5, 3))
    assert out_shape == (1, 3, 3, 2)
    assert fcnn.count_params(params) == (3 * 3 * 3 + 1) * 2 == 56
    assert apply(params, {}, x, train=False)[0].shape == (1, 3, 3, 2)


def test_ten_5x5x3_filters_have_760_parameters():
    _, params, _ = fcnn.Conv(10, 5, kernel_init=numpy_init).init(jax.random.PRNGKey(0), (1, 32, 32, 3))
    assert params["kernel"].shape == (5, 5, 3, 10)
    assert fcnn.count_params(params) == (5 * 5 * 3 + 1) * 10 == 760


# ----------------------------------------------------------------------------------
# Hand-computed results on small arange inputs


def _arange_1d(n=5, c=1):
    return jnp.arange(n * c, dtype=jnp.float64).reshape(1, n, c)


@pytest.mark.parametrize(
    "kernel,kwargs,expected",
    [
        # y[o] = x[o] + 2 x[o+1]
        ([1, 2], dict(padding="VALID"), [2, 5, 8, 11]),
        ([1, 2], dict(padding="VALID", strides=2), [2, 8]),
        # taps two apart: y[o] = x[o] + 2 x[o+2]
        ([1, 2], dict(padding="VALID", dilation=2), [4, 7, 10]),
        # x dilated to [0, 0, 1, 0, 2, 0, 3, 0, 4]
        ([1, 2], dict(padding="VALID", input_dilation=2), [0, 2, 1, 4, 2, 6, 3, 8]),
        # SAME with a 3-tap window pads one zero on each side
        ([1, 1, 1], dict(padding="SAME"), [1, 3, 6, 9, 7]),
        # SAME, stride 2: out = ceil(5/2) = 3, total pad (3-1)*2 + 3 - 5 = 2
        ([1, 1, 1], dict(padding="SAME", strides=2), [1, 6, 7]),
        # explicit (2, 0): [0, 0, 0, 1, 2, 3, 4]
        ([1, 10, 100], dict(padding=((2, 0),)), [0, 100, 210, 321, 432]),
    ],
)
def test_arange_1d_forward(kernel, kwargs, expected):
    k = jnp.asarray(kernel, jnp.float64).reshape(-1, 1, 1)
    for backward in ("custom", "autodiff"):
        y = conv(_arange_1d(), k, backward=backward, **kwargs)
        np.testing.assert_array_equal(y[0, :, 0], expected)


def test_arange_1d_backward_by_hand():
    x, k = _arange_1d(), jnp.asarray([1.0, 2.0], jnp.float64).reshape(2, 1, 1)
    b = jnp.zeros((1,), jnp.float64)
    # VALID: y[o] = x[o] w0 + x[o+1] w1, o = 0..3; with dy = 1 everywhere
    # dx[i] = sum_o w[i - o] = [w0, w0+w1, w0+w1, w0+w1, w1]; dw[k] = sum_o x[o+k]; db = 4
    dx, dw, db = jax.grad(lambda x, k, b: jnp.sum(conv(x, k, b, padding="VALID")), argnums=(0, 1, 2))(x, k, b)
    np.testing.assert_array_equal(dx.ravel(), [1, 3, 3, 3, 2])
    np.testing.assert_array_equal(dw.ravel(), [0 + 1 + 2 + 3, 1 + 2 + 3 + 4])
    np.testing.assert_array_equal(db, [4])
    # stride 2 does not divide 5 - 2: outputs at o = 0, 2 only, x[4] is never read
    dx, dw = jax.grad(lambda x, k: jnp.sum(conv(x, k, padding="VALID", strides=2)), argnums=(0, 1))(x, k)
    np.testing.assert_array_equal(dx.ravel(), [1, 2, 1, 2, 0])
    np.testing.assert_array_equal(dw.ravel(), [0 + 2, 1 + 3])
    # dy = [1, 10]: dx = [1, 2, 10, 20, 0]
    _, vjp = jax.vjp(lambda x: conv(x, k, padding="VALID", strides=2), x)
    (dx,) = vjp(jnp.asarray([1.0, 10.0], jnp.float64).reshape(1, 2, 1))
    np.testing.assert_array_equal(dx.ravel(), [1, 2, 10, 20, 0])


def test_arange_2d_blocks_and_depthwise():
    x = jnp.arange(16, dtype=jnp.float64).reshape(1, 4, 4, 1)
    y = conv(x, jnp.ones((2, 2, 1, 1), jnp.float64), strides=2, padding="VALID")
    np.testing.assert_array_equal(y[0, :, :, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                                                  [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    # depthwise: channel 0 = arange, channel 1 = 100 + arange, each with its own 1x1 scale
    x2 = jnp.concatenate([x, x + 100], axis=-1)
    kernel = jnp.asarray([2.0, -1.0], jnp.float64).reshape(1, 1, 1, 2)
    y2 = conv(x2, kernel, groups=2)
    np.testing.assert_array_equal(y2[..., 0], 2 * x[..., 0])
    np.testing.assert_array_equal(y2[..., 1], -(x[..., 0] + 100))


# ----------------------------------------------------------------------------------
# The layer

LAYER_CASES = [
    ("2d_int_kernel", dict(features=4, kernel_size=3), (-1, 6, 6, 2)),
    ("1d_int_kernel", dict(features=3, kernel_size=3), (2, 9, 2)),
    ("3d_int_kernel", dict(features=2, kernel_size=2, strides=2), (-1, 4, 5, 6, 1)),
    ("2d_tuple_valid_s2", dict(features=5, kernel_size=(3, 2), strides=2, padding="VALID"), (3, 9, 8, 3)),
    ("2d_dilated", dict(features=2, kernel_size=3, dilation=2), (-1, 7, 7, 2)),
    ("2d_pairs", dict(features=2, kernel_size=(2, 3), padding=((1, 0), (2, 2))), (2, 5, 4, 2)),
    ("2d_depthwise", dict(features=6, kernel_size=3, groups=3, strides=(1, 2)), (-1, 5, 6, 3)),
    ("2d_no_bias_int_pad", dict(features=2, kernel_size=3, padding=2, use_bias=False), (1, 4, 4, 1)),
    ("2d_input_dilation", dict(features=2, kernel_size=3, input_dilation=2, padding=1), (-1, 3, 3, 2)),
    ("1d_tuple_kernel", dict(features=2, kernel_size=(4,), strides=3), (-1, 10, 2)),
]


class ConvLayerTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*LAYER_CASES)
    def test_init_shape_is_apply_shape(self, kwargs, input_shape):
        init, apply = fcnn.Conv(**kwargs, kernel_init=numpy_init)
        out_shape, params, state = init(jax.random.PRNGKey(0), input_shape)
        concrete = tuple(2 if d == -1 else d for d in input_shape)
        x = normal(1, concrete)
        y, new_state = self.variant(lambda p, x: apply(p, state, x, train=False))(params, x)
        self.assertEqual(out_shape[0], input_shape[0])
        self.assertEqual(tuple(y.shape), (concrete[0], *out_shape[1:]))
        self.assertEqual(new_state, {})
        self.assertEqual("bias" in params, kwargs.get("use_bias", True))
        nd = len(input_shape) - 2
        kernel_size = kwargs["kernel_size"]
        window = (kernel_size,) * nd if isinstance(kernel_size, int) else kernel_size
        groups = kwargs.get("groups", 1)
        self.assertEqual(params["kernel"].shape,
                         (*window, input_shape[-1] // groups, kwargs["features"]))

    @chex.variants(with_jit=True, without_jit=True)
    def test_grad_through_serial_matches_oracle(self):
        model = fcnn.serial(fcnn.Conv(3, 3, strides=2), fcnn.Conv(2, (2, 2), padding="VALID", groups=1))
        _, params, state = model.init(jax.random.PRNGKey(0), (-1, 7, 7, 2))
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        rng = np.random.default_rng(3)
        x = rng.normal(size=(2, 7, 7, 2))
        r = rng.normal(size=(2, 3, 3, 2))

        @self.variant
        def loss(params, x):
            y, _ = model.apply(params, state, x, train=True)
            return jnp.sum(y * r)

        grads, dx = jax.grad(loss, argnums=(0, 1))(params, x)
        # the same chain through the NumPy oracle
        p0, p1 = params["0"], params["1"]
        h = conv_ref.conv_forward(x, p0["kernel"], p0["bias"], strides=2)
        dh, dk1, db1 = conv_ref.conv_backward(h, p1["kernel"], r, padding="VALID")
        dx_ref, dk0, db0 = conv_ref.conv_backward(x, p0["kernel"], dh, strides=2)
        chex.assert_trees_all_close(
            (grads, dx),
            ({"0": {"kernel": dk0, "bias": db0}, "1": {"kernel": dk1, "bias": db1}}, dx_ref),
            **TOL,
        )

    def test_vmap_over_a_batch_of_models(self):
        init, apply = fcnn.Conv(3, 3, strides=2, kernel_init=numpy_init, bias_init=numpy_init)
        models = [init(jax.random.PRNGKey(i), (-1, 6, 6, 2))[1] for i in range(4)]
        stacked = jax.tree_util.tree_map(lambda *p: jnp.stack(p), *models)
        x = normal(9, (5, 6, 6, 2))
        ys = jax.vmap(lambda p: apply(p, {}, x, train=False)[0])(stacked)
        chex.assert_shape(ys, (4, 5, 3, 3, 3))
        for i, p in enumerate(models):
            chex.assert_trees_all_close(ys[i], apply(p, {}, x, train=False)[0], atol=1e-5, rtol=1e-5)

        def loss(p):
            return jnp.sum(apply(p, {}, x, train=True)[0] ** 2)

        grads = jax.vmap(jax.grad(loss))(stacked)
        for i, p in enumerate(models):
            chex.assert_trees_all_close(
                jax.tree_util.tree_map(lambda g: g[i], grads), jax.grad(loss)(p), atol=1e-4, rtol=1e-4
            )

    def test_jitted_training_step_traces_once(self):
        chex.clear_trace_counter()
        model = fcnn.serial(fcnn.Conv(4, 3, strides=2), fcnn.Conv(1, 3, padding="VALID"))
        _, params, state = model.init(jax.random.PRNGKey(0), (-1, 8, 8, 1))
        x, target = normal(1, (4, 8, 8, 1)), normal(2, (4, 2, 2, 1))

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(params, x, target):
            def loss(p):
                y, _ = model.apply(p, state, x, train=True)
                return jnp.mean((y - target) ** 2)

            value, grads = jax.value_and_grad(loss)(params)
            return jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, params, grads), value

        losses = []
        for _ in range(6):
            params, value = step(params, x, target)
            losses.append(float(value))
        assert losses[-1] < losses[0]


def test_int_kernel_size_follows_the_input_rank():
    init, _ = fcnn.Conv(2, 3, kernel_init=numpy_init)
    for shape, window in [((1, 8, 2), (3,)), ((1, 8, 8, 2), (3, 3)), ((1, 4, 4, 4, 2), (3, 3, 3))]:
        _, params, _ = init(jax.random.PRNGKey(0), shape)
        assert params["kernel"].shape == (*window, 2, 2)


def test_layer_custom_and_autodiff_backward_agree():
    x = normal(1, (2, 6, 6, 4), np.float64)
    grads = []
    for backward in ("custom", "autodiff"):
        init, apply = fcnn.Conv(4, 3, groups=2, strides=2, backward=backward, kernel_init=numpy_init)
        _, params, _ = init(jax.random.PRNGKey(0), x.shape)
        grads.append(jax.grad(lambda p: jnp.sum(apply(p, {}, x, train=True)[0] ** 2))(params))
    chex.assert_trees_all_close(grads[0], grads[1], **TOL)


# ----------------------------------------------------------------------------------
# Bad input


def _conv_call(x_shape=(1, 5, 5, 4), k_shape=(3, 3, 4, 2), bias_shape=None, **kwargs):
    bias = None if bias_shape is None else jnp.zeros(bias_shape)
    return conv(jnp.zeros(x_shape), jnp.zeros(k_shape), bias, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x_shape=(5, 4), k_shape=(4, 2)), r"x has shape \(5, 4\) \(rank 2\).*rank 3 or 4 or 5"),
        (dict(x_shape=(1, 2, 2, 2, 2, 4), k_shape=(1, 1, 1, 1, 4, 2)), r"rank 6"),
        (dict(k_shape=(3, 4, 2)), r"kernel has shape \(3, 4, 2\) \(rank 3\): expected rank 4"),
        (dict(k_shape=(3, 3, 3, 2)), r"kernel expects C_in=3 .*input has 4 channels"),
        (dict(k_shape=(3, 3, 4, 2), groups=2), r"kernel expects C_in=8 .*input has 4 channels"),
        (dict(groups=3, k_shape=(3, 3, 1, 3)), r"groups=3: in_channels \(=4\) must be divisible by groups"),
        (dict(groups=2, k_shape=(3, 3, 2, 3)), r"groups=2: out_channels \(=3\) must be divisible by groups"),
        (dict(groups=0), r"groups=0: expected a positive int"),
        (dict(strides=0), r"strides=0: every entry must be positive"),
        (dict(strides=(1, -2)), r"strides=\(1, -2\): every entry must be positive"),
        (dict(strides=(1, 2, 3)), r"strides=\(1, 2, 3\): expected an int or a tuple of 2 ints"),
        (dict(dilation=0), r"dilation=0: every entry must be positive"),
        (dict(input_dilation=(1, 0)), r"input_dilation=\(1, 0\): every entry must be positive"),
        (dict(padding="FULL"), r"padding='FULL': expected \"SAME\", \"VALID\""),
        (dict(padding=-1), r"padding=-1"),
        (dict(padding=((1, 1),)), r"expected 2 \(low, high\) pairs"),
        (dict(padding="VALID", k_shape=(6, 3, 4, 2)), r"window of size 6 does not fit spatial dimension 0 of size 5"),
        (dict(padding="VALID", dilation=3), r"window of size 7 does not fit"),
        (dict(bias_shape=(3,)), r"bias has shape \(3,\): expected \(2,\)"),
        (dict(bias_shape=(1, 2)), r"bias has shape \(1, 2\)"),
        (dict(backward="manual"), r"backward='manual': expected one of"),
    ],
)
def test_conv_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _conv_call(**kwargs)


def test_conv_output_shape_rejects_bad_input():
    with pytest.raises(ValueError, match=r"input_shape has shape \(5, 5\)"):
        conv_output_shape((5, 5), (3, 1, 1))
    with pytest.raises(ValueError, match=r"kernel_shape has shape"):
        conv_output_shape((1, 5, 5, 1), (3, 1, 1))
    with pytest.raises(ValueError, match=r"does not fit"):
        conv_output_shape((-1, 2, 2, 1), (3, 3, 1, 1), padding="VALID")
    with pytest.raises(ValueError, match=r"batch size"):
        conv_output_shape((-2, 5, 1), (3, 1, 1))
    with pytest.raises(TypeError, match=r"strides=.a.: expected an int or a tuple"):
        conv_output_shape((1, 5, 1), (3, 1, 1), strides="a")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(features=0, kernel_size=3), ValueError, r"features=0: expected a positive int"),
        (dict(features=2.5, kernel_size=3), ValueError, r"features=2.5"),
        (dict(features=2, kernel_size=0), ValueError, r"kernel_size=0: expected a positive int"),
        (dict(features=2, kernel_size=(3, 0)), ValueError, r"kernel_size=\(3, 0\): every entry must be positive"),
        (dict(features=2, kernel_size=(1, 1, 1, 1)), ValueError, r"kernel_size=\(1, 1, 1, 1\): expected an int or a tuple of 1, 2 or 3"),
        (dict(features=2, kernel_size="3"), TypeError, r"kernel_size='3'"),
        (dict(features=2, kernel_size=(3, 3), strides=(1, 1, 1)), ValueError, r"strides=\(1, 1, 1\): expected an int or a tuple of 2 ints"),
        (dict(features=2, kernel_size=3, strides=0), ValueError, r"strides=0: expected a positive int"),
        (dict(features=2, kernel_size=3, dilation=-1), ValueError, r"dilation=-1"),
        (dict(features=2, kernel_size=3, input_dilation=0), ValueError, r"input_dilation=0"),
        (dict(features=2, kernel_size=3, padding="full"), ValueError, r"padding='full'"),
        (dict(features=2, kernel_size=(3, 3), padding=((1, 1),)), ValueError, r"expected 2 \(low, high\) pairs"),
        (dict(features=2, kernel_size=3, groups=0), ValueError, r"groups=0"),
        (dict(features=3, kernel_size=3, groups=2), ValueError, r"groups=2: features \(=3\) must be divisible by groups"),
        (dict(features=2, kernel_size=3, use_bias="yes"), TypeError, r"use_bias='yes'"),
        (dict(features=2, kernel_size=3, backward="manual"), ValueError, r"backward='manual'"),
        (dict(features=2, kernel_size=3, kernel_init="no_such_init"), ValueError, r"initializer='no_such_init'"),
    ],
)
def test_layer_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fcnn.Conv(**kwargs)


@pytest.mark.parametrize(
    "kwargs,input_shape,match",
    [
        (dict(kernel_size=(3, 3)), (1, 8, 2), r"kernel_size=\(3, 3\) has 2 spatial dimension\(s\), so the input must have rank 4"),
        (dict(kernel_size=(3,)), (1, 8, 8, 2), r"kernel_size=\(3,\) has 1 spatial dimension\(s\)"),
        (dict(kernel_size=3), (8, 2), r"input_shape has shape \(8, 2\) \(rank 2\)"),
        (dict(kernel_size=3, groups=2), (1, 8, 8, 3), r"groups=2: in_channels \(=3\) must be divisible by groups"),
        (dict(kernel_size=3), (1, 8, 8, -1), r"input channels=-1: expected a positive int"),
        (dict(kernel_size=5, padding="VALID"), (1, 4, 8, 1), r"window of size 5 does not fit spatial dimension 0 of size 4"),
        (dict(kernel_size=3, strides=(1, 2, 3)), (1, 8, 8, 1), r"strides=\(1, 2, 3\): expected an int or a tuple of 2 ints"),
        (dict(kernel_size=3, padding=((1, 1),)), (1, 8, 8, 1), r"expected 2 \(low, high\) pairs"),
    ],
)
def test_layer_init_rejects_bad_input_shapes(kwargs, input_shape, match):
    init, _ = fcnn.Conv(2, **kwargs, kernel_init=numpy_init)
    with pytest.raises(ValueError, match=match):
        init(jax.random.PRNGKey(0), input_shape)


def test_layer_apply_rejects_inputs_that_do_not_match_the_params():
    init, apply = fcnn.Conv(2, 3, kernel_init=numpy_init)
    _, params, state = init(jax.random.PRNGKey(0), (1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"x has 4 channels .*but the params expect 3"):
        apply(params, state, jnp.zeros((1, 8, 8, 4)), train=False)
    with pytest.raises(ValueError, match=r"x has shape \(1, 8, 3\) \(rank 3\), but the params were initialised for inputs of rank 4"):
        apply(params, state, jnp.zeros((1, 8, 3)), train=False)
    with pytest.raises(ValueError, match=r"x has shape \(8, 3\) \(rank 2\)"):
        apply(params, state, jnp.zeros((8, 3)), train=False)
    with pytest.raises(TypeError, match=r"train=1: expected True or False"):
        apply(params, state, jnp.zeros((1, 8, 8, 3)), train=1)
    fixed_init, fixed_apply = fcnn.Conv(2, (3, 3), kernel_init=numpy_init)
    _, params, _ = fixed_init(jax.random.PRNGKey(0), (1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3\) has 2 spatial dimension\(s\)"):
        fixed_apply(params, {}, jnp.zeros((1, 8, 3)), train=False)


ONEDNN_ROUTE = lowering.Lowering("onednn", "onednn", "onednn")


def _onednn_available():
    from fcnn.ops import onednn

    return onednn.available()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="oneDNN is a CPU lowering")
@pytest.mark.parametrize("name", sorted(CONFIG_BY_NAME))
def test_the_onednn_route_equals_the_textbook_rule_over_the_sweep(name):
    """Every configuration of the sweep in float32 through oneDNN's kernels (or, where
    oneDNN does not support it, their fallback to XLA) against the textbook rule: values
    and the three gradients. oneDNN sums in another order: 1e-5 of the largest entry."""
    if not _onednn_available():
        pytest.skip("oneDNN is not installed or could not be built (pip install '.[onednn]'; "
                    "python -m fcnn.ops.onednn says why)")
    kwargs = CONFIG_BY_NAME[name][3]
    (x, kernel, bias, dy), _, _ = case(name)
    x, kernel, bias, dy = (np.asarray(a, np.float32) for a in (x, kernel, bias, dy))
    got = jax.jit(value_and_vjp(kwargs, "custom", ONEDNN_ROUTE))(x, kernel, bias, dy)
    want = jax.jit(value_and_vjp(kwargs, "custom", None))(x, kernel, bias, dy)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        scale = max(float(np.max(np.abs(w))), 1e-6)
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * scale)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the lowering choice is CPU-only")
def test_auto_routes_many_channel_convolutions_to_onednn_when_it_is_there(monkeypatch):
    config, _ = conv_module._resolve((8, 16, 16, 16), (3, 3, 16, 32), 1, "SAME", 1, 1, 1)
    monkeypatch.setattr(conv_module, "_onednn_runs", lambda *args: True)
    assert conv_module.resolve_lowering("auto", (8, 16, 16, 16), (3, 3, 16, 32), config) == ONEDNN_ROUTE
    tiny, _ = conv_module._resolve((8, 4, 4, 64), (3, 3, 64, 64), 1, "SAME", 1, 1, 1)
    assert conv_module.resolve_lowering("auto", (8, 4, 4, 64), (3, 3, 64, 64), tiny) == lowering.Lowering(
        "onednn", "onednn", "xla")  # XLA's kernel gradient wins on maps of <= 16 positions
    strided, _ = conv_module._resolve((8, 8, 8, 64), (3, 3, 64, 64), 2, "SAME", 1, 1, 1)
    assert conv_module.resolve_lowering("auto", (8, 8, 8, 64), (3, 3, 64, 64), strided).kernel_grad == "xla"
    few, _ = conv_module._resolve((128, 28, 28, 1), (3, 3, 1, 32), 1, "SAME", 1, 1, 1)
    assert conv_module.resolve_lowering("auto", (128, 28, 28, 1), (3, 3, 1, 32), few) == lowering.Lowering(
        "conv_forward_taps", "conv_input_grad_col2im", "onednn")
    monkeypatch.setattr(conv_module, "_onednn_runs", lambda *args: False)
    assert conv_module.resolve_lowering("auto", (8, 16, 16, 16), (3, 3, 16, 32), config) == \
        conv_module.XLA_EVERYWHERE
