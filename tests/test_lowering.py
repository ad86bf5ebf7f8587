"""The matrix-product lowerings of convolution equal `lax.conv_general_dilated`.

Forward (tap sum and im2col), input gradient (col2im) and kernel gradient (im2col)
are compared with XLA's convolution and with `jax.vjp` of it, over strides,
asymmetric padding, kernel and input dilation, groups and 1-3 spatial dimensions, in
float32 and float64, and against the naive-loop NumPy oracle in float64.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax

from fcnn.ops import lowering
from tests.reference import conv_ref

DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}

# (name, x shape, kernel shape, settings). Kernel: (*K, C_in // groups, C_out).
CONFIGS = [
    ("1d_same", (2, 7, 3), (3, 3, 4), dict(pads=((1, 1),))),
    ("1d_stride3_asymmetric", (2, 8, 2), (2, 2, 3), dict(strides=(3,), pads=((0, 2),))),
    ("1d_input_dilation", (2, 5, 2), (3, 2, 2), dict(pads=((2, 1),), input_dilation=(2,))),
    ("1d_padding_wider_than_window", (1, 5, 2), (2, 2, 3),
     dict(strides=(2,), pads=((4, 5),))),
    ("2d_first_layer", (2, 6, 6, 1), (3, 3, 1, 4), dict(pads=((1, 1), (1, 1)))),
    ("2d_stride_dilation", (2, 9, 8, 3), (3, 2, 3, 4),
     dict(strides=(2, 1), pads=((1, 2), (0, 1)), dilation=(2, 2))),
    ("2d_groups", (2, 6, 5, 6), (3, 3, 2, 6), dict(pads=((1, 1), (2, 0)), groups=3)),
    ("2d_depthwise_stride2", (1, 5, 5, 4), (3, 3, 1, 4),
     dict(strides=(2, 2), pads=((1, 1), (1, 1)), groups=4)),
    ("2d_everything", (2, 5, 6, 4), (2, 3, 2, 6),
     dict(strides=(2, 3), pads=((2, 1), (0, 3)), dilation=(1, 2), input_dilation=(2, 1),
          groups=2)),
    ("2d_1x1_stride2", (2, 5, 5, 3), (1, 1, 3, 2), dict(strides=(2, 2), pads=((0, 0), (0, 0)))),
    ("2d_window_is_input", (1, 3, 3, 2), (3, 3, 2, 3), dict(pads=((0, 0), (0, 0)))),
    ("3d", (1, 4, 5, 3, 2), (2, 2, 2, 2, 3),
     dict(strides=(1, 2, 1), pads=((1, 0), (0, 1), (1, 1)), dilation=(1, 1, 2))),
]
UNJITTED = ("1d_input_dilation", "2d_everything", "2d_first_layer", "3d")
DTYPES = (jnp.float32, jnp.float64)
TOL = {jnp.float32: dict(rtol=1e-5, atol=1e-4), jnp.float64: dict(rtol=1e-11, atol=1e-11)}


def _random_configs(count, seed=0):
    """A reproducible random sweep over every setting (run by `make test-slow`)."""
    rng = np.random.RandomState(seed)
    out = []
    while len(out) < count:
        nd = int(rng.randint(1, 4))
        groups = int(rng.choice([1, 2, 3]))
        cig, cog = int(rng.randint(1, 4)), int(rng.randint(1, 3))
        spatial = tuple(int(v) for v in rng.randint(3, 8, size=nd))
        window = tuple(int(v) for v in rng.randint(1, 4, size=nd))
        kw = dict(
            strides=tuple(int(v) for v in rng.randint(1, 4, size=nd)),
            pads=tuple((int(lo), int(hi)) for lo, hi in rng.randint(0, 4, size=(nd, 2))),
            dilation=tuple(int(v) for v in rng.randint(1, 3, size=nd)),
            input_dilation=tuple(int(v) for v in rng.randint(1, 3, size=nd)),
            groups=groups,
        )
        x_shape = (2, *spatial, cig * groups)
        k_shape = (*window, cig, cog * groups)
        if lowering.supports(x_shape, k_shape, **kw):
            out.append((f"random_{len(out)}", x_shape, k_shape, kw))
    return out


def _settings(kw):
    nd = len(kw["pads"])
    return dict(
        strides=kw.get("strides", (1,) * nd), pads=kw["pads"],
        dilation=kw.get("dilation", (1,) * nd),
        input_dilation=kw.get("input_dilation", (1,) * nd), groups=kw.get("groups", 1),
    )


def _xla(kw):
    """lax.conv_general_dilated with the same settings, channels-last."""
    s = _settings(kw)

    def conv(x, kernel):
        return lax.conv_general_dilated(
            x, kernel, window_strides=s["strides"], padding=s["pads"],
            lhs_dilation=s["input_dilation"], rhs_dilation=s["dilation"],
            dimension_numbers=DIMENSION_NUMBERS[x.ndim - 2],
            feature_group_count=s["groups"],
        )

    return conv


def _arrays(x_shape, k_shape, kw, dtype, seed=0):
    """x, kernel, the XLA output y and a random cotangent dy, and the vjp of XLA's conv."""
    rng = np.random.RandomState(seed)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    kernel = jnp.asarray(rng.standard_normal(k_shape), dtype)
    y, vjp = jax.vjp(_xla(kw), x, kernel)
    dy = jnp.asarray(rng.standard_normal(y.shape), dtype)
    return x, kernel, y, dy, vjp


def _cases(configs):
    return [
        (f"{name}_{jnp.dtype(dt).name}", x_shape, k_shape, kw, dt)
        for name, x_shape, k_shape, kw in configs
        for dt in DTYPES
    ]


class _Checks(chex.TestCase):
    """The three comparisons with XLA, shared by the fast and the slow sweep."""

    def _check_forward(self, x_shape, k_shape, kw, dtype):
        x, kernel, y, _, _ = _arrays(x_shape, k_shape, kw, dtype)
        for fn in (lowering.conv_forward_taps, lowering.conv_forward_im2col):
            out = self.variant(functools.partial(fn, **_settings(kw)))(x, kernel)
            chex.assert_type(out, dtype)
            chex.assert_shape(out, y.shape)
            chex.assert_trees_all_close(out, y, **TOL[dtype])

    def _check_grads(self, x_shape, k_shape, kw, dtype):
        """col2im input gradient and im2col kernel gradient against XLA's vjp."""
        x, kernel, _, dy, vjp = _arrays(x_shape, k_shape, kw, dtype)
        expected_dx, expected_dw = vjp(dy)[:2]
        input_grad = functools.partial(
            lowering.conv_input_grad_col2im, input_shape=x.shape, **_settings(kw))
        kernel_grad = functools.partial(
            lowering.conv_kernel_grad_im2col, kernel_shape=kernel.shape, **_settings(kw))
        for out, expected in ((self.variant(input_grad)(dy, kernel), expected_dx),
                              (self.variant(kernel_grad)(x, dy), expected_dw)):
            chex.assert_type(out, dtype)
            chex.assert_shape(out, expected.shape)
            chex.assert_trees_all_close(out, expected, **TOL[dtype])

    def _check_oracle(self, x_shape, k_shape, kw):
        rng = np.random.RandomState(1)
        x = jnp.asarray(rng.standard_normal(x_shape), jnp.float64)
        kernel = jnp.asarray(rng.standard_normal(k_shape), jnp.float64)
        s = _settings(kw)
        ref_kw = dict(strides=s["strides"], padding=s["pads"], dilation=s["dilation"],
                      input_dilation=s["input_dilation"], groups=s["groups"])
        y_ref = conv_ref.conv_forward(np.asarray(x), np.asarray(kernel), **ref_kw)
        dy = jnp.asarray(rng.standard_normal(y_ref.shape), jnp.float64)
        dx_ref, dw_ref, _ = conv_ref.conv_backward(
            np.asarray(x), np.asarray(kernel), np.asarray(dy), **ref_kw)

        @self.variant
        def all_four(x, kernel, dy):
            return (
                lowering.conv_forward_taps(x, kernel, **s),
                lowering.conv_forward_im2col(x, kernel, **s),
                lowering.conv_input_grad_col2im(dy, kernel, x.shape, **s),
                lowering.conv_kernel_grad_im2col(x, dy, kernel.shape, **s),
            )

        chex.assert_trees_all_close(all_four(x, kernel, dy), (y_ref, y_ref, dx_ref, dw_ref),
                                    **TOL[jnp.float64])


class LoweringTest(_Checks):
    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*_cases(CONFIGS))
    def test_equals_xla(self, x_shape, k_shape, kw, dtype):
        self._check_forward(x_shape, k_shape, kw, dtype)
        self._check_grads(x_shape, k_shape, kw, dtype)

    # Unjitted, op by op, on one configuration per feature (compilation dominates).
    @chex.variants(without_jit=True)
    @parameterized.named_parameters(*_cases(
        [c for c in CONFIGS if c[0] in UNJITTED])[1::2])
    def test_equals_xla_unjitted(self, x_shape, k_shape, kw, dtype):
        self._check_forward(x_shape, k_shape, kw, dtype)
        self._check_grads(x_shape, k_shape, kw, dtype)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[(name, x, k, kw) for name, x, k, kw in CONFIGS])
    def test_matches_numpy_oracle(self, x_shape, k_shape, kw):
        self._check_oracle(x_shape, k_shape, kw)

    @chex.variants(with_jit=True)
    def test_settings_are_static_one_trace_per_shape(self):
        chex.clear_trace_counter()
        s = _settings(CONFIGS[4][3])

        @self.variant
        @chex.assert_max_traces(n=1)
        def forward(x, kernel):
            return lowering.conv_forward_taps(x, kernel, **s)

        x, kernel, y, _, _ = _arrays(CONFIGS[4][1], CONFIGS[4][2], CONFIGS[4][3], jnp.float32)
        for i in range(3):  # new values, same shapes: no new trace
            chex.assert_trees_all_close(forward(x * (i + 1), kernel), y * (i + 1),
                                        **TOL[jnp.float32])
        # the counter really counts: a second shape is a second trace, which it refuses
        with self.assertRaisesRegex(AssertionError, "trace"):
            forward(x[:1], kernel)


# jax/jaxlib 0.10.2: the autodiff input gradient of some grouped, strided,
# kernel-dilated convolutions aborts XLA's compiler in float64 ("Window dimensions do
# not match RHS shape" in algebraic_simplifier), e.g. x (2, 4, 3, 6), kernel
# (2, 3, 3, 2), strides (2, 2), pads ((1, 2), (0, 2)), dilation (1, 2), groups 2. A
# process abort cannot be caught, so the random sweep checks float32 against XLA and
# float64 against the NumPy oracle, which is the definition itself.
@pytest.mark.slow
class LoweringRandomSweepTest(_Checks):
    """The same checks over a random sweep of every setting (`make test-slow`)."""

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(
        *[c[:4] for c in _cases(_random_configs(40)) if c[4] == jnp.float32])
    def test_random_sweep_equals_xla_in_float32(self, x_shape, k_shape, kw):
        self._check_forward(x_shape, k_shape, kw, jnp.float32)
        self._check_grads(x_shape, k_shape, kw, jnp.float32)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*_random_configs(40))
    def test_random_sweep_matches_numpy_oracle_in_float64(self, x_shape, k_shape, kw):
        self._check_oracle(x_shape, k_shape, kw)


def test_refnet_second_layer_equals_xla_in_float32():
    """The RefNet-MNIST layer the lowerings are meant for, at its real size."""
    kw = dict(pads=((1, 1), (1, 1)))
    x, kernel, y, dy, vjp = _arrays((4, 14, 14, 32), (3, 3, 32, 64), kw, jnp.float32)
    dx, dw = vjp(dy)
    s = _settings(kw)
    tol = dict(rtol=1e-4, atol=1e-3)
    chex.assert_trees_all_close(jax.jit(functools.partial(
        lowering.conv_forward_im2col, **s))(x, kernel), y, **tol)
    chex.assert_trees_all_close(jax.jit(functools.partial(
        lowering.conv_input_grad_col2im, input_shape=x.shape, **s))(dy, kernel), dx, **tol)
    chex.assert_trees_all_close(jax.jit(functools.partial(
        lowering.conv_kernel_grad_im2col, kernel_shape=kernel.shape, **s))(x, dy), dw, **tol)


@pytest.mark.parametrize(
    "x_shape, k_shape, kw, why",
    [
        ((5, 3), (3, 3), dict(pads=((1, 1),)), "rank 2"),
        ((1, 5, 5, 3, 2, 2, 1), (1, 1, 1, 1, 1, 1, 1), dict(pads=((0, 0),) * 5), "rank 7"),
        ((1, 6, 2), (3, 2, 2), dict(pads=((-1, 0),)), "negative padding"),
        ((1, 6, 2), (3, 2, 2), dict(pads=((0, 0),), strides=(0,)), "zero stride"),
        ((1, 6, 4), (3, 2, 3), dict(pads=((0, 0),), groups=2), "C_out not divisible"),
        ((1, 6, 4), (3, 3, 4), dict(pads=((0, 0),), groups=2), "kernel in-channels"),
        ((1, 2, 2), (3, 2, 2), dict(pads=((0, 0),)), "window larger than the input"),
        ((1, 6, 6, 2), (3, 3, 2, 2), dict(pads=((1, 1),)), "one pad pair for two dims"),
    ],
)
def test_unsupported_cases_are_refused(x_shape, k_shape, kw, why):
    del why
    assert not lowering.supports(x_shape, k_shape, **kw)
    x = jnp.zeros(x_shape, jnp.float32)
    kernel = jnp.zeros(k_shape, jnp.float32)
    with pytest.raises(ValueError, match="Use lax.conv_general_dilated for this case"):
        lowering.conv_forward_taps(x, kernel, **kw)


def test_supports_every_config_of_the_sweep():
    for _, x_shape, k_shape, kw in CONFIGS:
        assert lowering.supports(x_shape, k_shape, **_settings(kw))


def test_gradient_with_a_wrong_cotangent_shape_names_it():
    kernel = jnp.zeros((3, 3, 2, 4), jnp.float32)
    pads = ((1, 1), (1, 1))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 5, 5, 4\): expected \(2, 6, 6, 4\)"):
        lowering.conv_input_grad_col2im(
            jnp.zeros((2, 5, 5, 4), jnp.float32), kernel, (2, 6, 6, 2), pads=pads)
    with pytest.raises(ValueError, match=r"dy has shape \(2, 6, 6, 3\): expected \(2, 6, 6, 4\)"):
        lowering.conv_kernel_grad_im2col(
            jnp.zeros((2, 6, 6, 2), jnp.float32), jnp.zeros((2, 6, 6, 3), jnp.float32),
            kernel.shape, pads=pads)


def test_choose_lowering_uses_matrix_products_only_where_they_were_faster():
    first_128 = lowering.choose_lowering((128, 28, 28, 1), (3, 3, 1, 32))
    assert first_128 == lowering.Lowering(
        "conv_forward_taps", "conv_input_grad_col2im", "conv_kernel_grad_im2col")
    for name in first_128:
        assert callable(getattr(lowering, name))
    first_32 = lowering.choose_lowering((32, 28, 28, 1), (3, 3, 1, 32))
    assert first_32.kernel_grad == "xla" and first_32.forward == "conv_forward_taps"
    rgb = lowering.choose_lowering((128, 28, 28, 3), (3, 3, 3, 32))
    assert rgb == lowering.Lowering("xla", "conv_input_grad_col2im", "xla")
    second = lowering.choose_lowering((128, 14, 14, 32), (3, 3, 32, 64))
    assert second == lowering.Lowering("xla", "xla", "xla")
