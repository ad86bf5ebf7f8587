"""oneDNN's convolutions (fcnn.ops.onednn) equal XLA's convolution and its gradients.

Forward, input gradient and kernel gradient, run as XLA FFI custom calls into oneDNN,
are compared with `lax.conv_general_dilated` and `jax.vjp` of it computed in float64
from the same float32 inputs, over 1x1/3x3/5x5 kernels, strides 1-2, SAME, VALID and
uneven padding, kernel dilation, groups (depthwise included), batch 1 and 8, channels
1, 3, 16 and 64, and 1-3 spatial dimensions, under jit. Tolerance (float32): the
largest error is at most 1e-5 of the largest reference entry (measured: 5e-8 to 9e-7,
float32 rounding of sums of up to 1600 products). Also: bfloat16, vmap
(batch folded into N, and the XLA fallback for vmapped kernels), reverse-mode
derivatives to second order, the XLA fallback for unsupported settings and for a
machine without the library, and the first-use build.

Skipped, with the reason, when oneDNN or a C++ compiler is missing (install the
`onednn` extra: `pip install onednn-cpu-gomp onednn-devel-cpu-gomp`).
"""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax

from fcnn.ops import onednn
from fcnn.ops.onednn import build
from fcnn.ops.onednn import conv as onednn_conv
from tests.reference import conv_ref

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    if not onednn.available():
        try:
            build.load()
            REASON = "oneDNN disabled (FCNN_ONEDNN=0)"
        except build.OnednnUnavailable as e:
            REASON = str(e)
        pytest.skip(f"oneDNN convolutions unavailable: {REASON}", allow_module_level=True)

SPATIAL = {1: "W", 2: "HW", 3: "DHW"}
REL_TOL = 1e-5
TARGETS = tuple(onednn_conv._TARGETS.values())


def same(size, window, stride=1, dilation=1):
    eff = (window - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return (total // 2, total - total // 2)


# (name, x shape, kernel shape (*K, C_in // groups, C_out), settings)
CONFIGS = [
    ("3x3_same_c1_b8", (8, 10, 10, 1), (3, 3, 1, 16), dict(pads=(same(10, 3),) * 2)),
    ("3x3_same_c3_b1", (1, 9, 9, 3), (3, 3, 3, 16), dict(pads=(same(9, 3),) * 2)),
    ("3x3_same_c16_b8", (8, 8, 8, 16), (3, 3, 16, 16), dict(pads=(same(8, 3),) * 2)),
    ("3x3_same_c64_b1", (1, 6, 6, 64), (3, 3, 64, 64), dict(pads=(same(6, 3),) * 2)),
    ("3x3_valid_c16", (8, 7, 9, 16), (3, 3, 16, 32), dict(pads=((0, 0), (0, 0)))),
    ("1x1_c64", (8, 5, 5, 64), (1, 1, 64, 16), dict(pads=((0, 0), (0, 0)))),
    ("1x1_stride2_c16", (1, 9, 9, 16), (1, 1, 16, 32), dict(strides=(2, 2), pads=((0, 0), (0, 0)))),
    ("5x5_same_c3", (8, 12, 12, 3), (5, 5, 3, 16), dict(pads=(same(12, 5),) * 2)),
    ("5x5_valid_c1_b1", (1, 12, 11, 1), (5, 5, 1, 3), dict(pads=((0, 0), (0, 0)))),
    ("3x3_stride2_same_even", (8, 12, 12, 16), (3, 3, 16, 32),
     dict(strides=(2, 2), pads=(same(12, 3, 2),) * 2)),
    ("3x3_stride2_same_odd", (1, 11, 11, 3), (3, 3, 3, 16),
     dict(strides=(2, 2), pads=(same(11, 3, 2),) * 2)),
    ("5x5_stride2_uneven", (8, 13, 10, 16), (5, 5, 16, 16),
     dict(strides=(2, 1), pads=((2, 1), (0, 3)))),
    ("3x3_uneven_pad", (1, 8, 8, 16), (3, 3, 16, 64), dict(pads=((0, 2), (2, 1)))),
    ("3x3_dilation2", (8, 11, 11, 16), (3, 3, 16, 16),
     dict(pads=(same(11, 3, 1, 2),) * 2, dilation=(2, 2))),
    ("3x3_dilation_stride", (1, 12, 11, 3), (3, 3, 3, 16),
     dict(strides=(2, 2), pads=((1, 2), (0, 1)), dilation=(2, 1))),
    ("groups2", (8, 8, 8, 16), (3, 3, 8, 32), dict(pads=(same(8, 3),) * 2, groups=2)),
    ("groups4_stride2", (1, 9, 9, 64), (3, 3, 16, 64),
     dict(strides=(2, 2), pads=((1, 1), (1, 1)), groups=4)),
    ("depthwise_c16", (8, 10, 10, 16), (3, 3, 1, 16), dict(pads=(same(10, 3),) * 2, groups=16)),
    ("depthwise_c64_stride2", (1, 9, 9, 64), (3, 3, 1, 64),
     dict(strides=(2, 2), pads=((1, 1), (1, 1)), groups=64)),
    ("depthwise_multiplier2_dilated", (8, 9, 9, 3), (5, 5, 1, 6),
     dict(pads=(same(9, 5, 1, 2),) * 2, dilation=(2, 2), groups=3)),
    ("1d", (8, 17, 16), (5, 16, 16), dict(strides=(2,), pads=((2, 1),))),
    ("1d_c1_dilated", (1, 20, 1), (3, 1, 16), dict(pads=((2, 2),), dilation=(2,))),
    ("3d", (1, 6, 7, 5, 3), (3, 3, 3, 3, 16),
     dict(strides=(1, 2, 1), pads=((1, 1), (0, 2), (1, 1)), dilation=(1, 1, 2))),
    ("3d_groups", (8, 4, 5, 6, 16), (1, 3, 3, 8, 16), dict(pads=((0, 0), (1, 1), (1, 1)), groups=2)),
]


def _settings(kw):
    nd = len(kw["pads"])
    return dict(strides=kw.get("strides", (1,) * nd), pads=kw["pads"],
                dilation=kw.get("dilation", (1,) * nd), input_dilation=kw.get("input_dilation"),
                groups=kw.get("groups", 1))


def _lax(x, kernel, kw):
    s = _settings(kw)
    sp = SPATIAL[x.ndim - 2]
    return lax.conv_general_dilated(
        x, kernel, s["strides"], s["pads"], lhs_dilation=s["input_dilation"],
        rhs_dilation=s["dilation"], dimension_numbers=("N" + sp + "C", sp + "IO", "N" + sp + "C"),
        feature_group_count=s["groups"])


def _arrays(x_shape, k_shape, kw, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(dtype)
    k = rng.normal(size=k_shape).astype(dtype)
    y_shape = jax.eval_shape(lambda a, b: _lax(a, b, kw), x, k).shape
    dy = rng.normal(size=y_shape).astype(dtype)
    return x, k, dy


def _reference(x, k, dy, kw):
    """(y, dx, dw) from lax.conv_general_dilated and jax.vjp of it, in float64."""
    x64, k64, dy64 = (jnp.asarray(a, jnp.float64) for a in (x, k, dy))
    y, vjp = jax.vjp(lambda a, b: _lax(a, b, kw), x64, k64)
    dx, dw = vjp(dy64)
    return y, dx, dw


def _three(x, k, dy, kw):
    s = _settings(kw)
    return (onednn.conv_forward(x, k, **s),
            onednn.conv_input_grad(dy, k, x.shape, **s),
            onednn.conv_kernel_grad(x, dy, k.shape, **s))


def _assert_close(got, want, rel=REL_TOL, name=""):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-30)
    err = float(np.max(np.abs(got - want))) / scale
    assert err <= rel, f"{name}: max error {err:.2e} of the largest entry > {rel:.0e}"


def _custom_calls(fn, *args):
    text = jax.jit(fn).lower(*args).as_text()
    return [t for t in TARGETS if t in text]


# ----------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("name,x_shape,k_shape,kw", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_three_passes_equal_xla_under_jit(name, x_shape, k_shape, kw):
    s = _settings(kw)
    assert onednn.supports(x_shape, k_shape, **s), [
        onednn.implementation(p, x_shape, k_shape, **s)
        for p in ("forward", "input_grad", "kernel_grad")]
    x, k, dy = _arrays(x_shape, k_shape, kw)
    fn = jax.jit(lambda x, k, dy: _three(x, k, dy, kw))
    assert _custom_calls(lambda x, k, dy: _three(x, k, dy, kw), x, k, dy) == list(TARGETS)
    for got, want, what in zip(fn(x, k, dy), _reference(x, k, dy, kw), ("y", "dx", "dw")):
        assert got.dtype == jnp.float32
        _assert_close(got, want, name=f"{name} {what}")


class JitAndEagerTest(chex.TestCase):
    """The custom calls give the same values traced once under jit and called eagerly,
    and match the naive-loop NumPy oracle."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        (CONFIGS[i][0], *CONFIGS[i][1:]) for i in (0, 14, 17, 22))
    def test_three_passes(self, x_shape, k_shape, kw):
        x, k, dy = _arrays(x_shape, k_shape, kw, seed=1)
        chex.clear_trace_counter()

        @self.variant
        def run(x, k, dy):
            chex.assert_max_traces(n=1)
            return _three(x, k, dy, kw)

        s = _settings(kw)
        ref_kw = dict(strides=s["strides"], padding=s["pads"], dilation=s["dilation"],
                      input_dilation=s["input_dilation"] or (1,) * len(s["pads"]),
                      groups=s["groups"])
        x64, k64, dy64 = (np.asarray(a, np.float64) for a in (x, k, dy))
        y_ref = conv_ref.conv_forward(x64, k64, **ref_kw)
        dx_ref, dw_ref, _ = conv_ref.conv_backward(x64, k64, dy64, **ref_kw)
        for got, want, what in zip(run(x, k, dy), (y_ref, dx_ref, dw_ref), ("y", "dx", "dw")):
            _assert_close(got, want, name=what)


def test_hand_computed_example():
    """The notes' 5x5 image with a 3x3 filter: a(0, 0) = 4 (VALID, stride 1)."""
    image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], np.float32)
    filt = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    y = jax.jit(lambda x, k: onednn.conv_forward(x, k, pads=((0, 0), (0, 0))))(
        image[None, :, :, None], filt[:, :, None, None])
    np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0],
                                  [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_bfloat16_close_to_float32_reference():
    name, x_shape, k_shape, kw = CONFIGS[2]
    x, k, dy = _arrays(x_shape, k_shape, kw, seed=2)
    bf = [jnp.asarray(a, jnp.bfloat16) for a in (x, k, dy)]
    assert onednn.supports(x_shape, k_shape, **_settings(kw), dtype=jnp.bfloat16)
    got = jax.jit(lambda x, k, dy: _three(x, k, dy, kw))(*bf)
    want = _reference(*(np.asarray(a, np.float32) for a in bf), kw)
    for g, w in zip(got, want):
        assert g.dtype == jnp.bfloat16
        _assert_close(g, w, rel=2e-2, name="bfloat16")  # bf16 has 8 significant bits


# ----------------------------------------------------------------------------------
# Transformations


def test_vmap_over_activations_folds_into_the_batch():
    name, x_shape, k_shape, kw = CONFIGS[9]
    s = _settings(kw)
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(3, *x_shape)).astype(np.float32)
    k = rng.normal(size=k_shape).astype(np.float32)
    fwd = lambda xs, k: jax.vmap(lambda x: onednn.conv_forward(x, k, **s))(xs)
    assert _custom_calls(fwd, xs, k) == [TARGETS[0]]
    ys = jax.jit(fwd)(xs, k)
    want = jax.vmap(lambda x: _lax(x, k, kw))(xs)
    _assert_close(ys, want, name="vmap forward")
    dx = jax.jit(jax.vmap(lambda dy: onednn.conv_input_grad(dy, k, x_shape, **s)))(ys)
    want = jax.vmap(lambda dy: jax.vjp(lambda x: _lax(x, k, kw), xs[0])[1](dy)[0])(ys)
    _assert_close(dx, want, name="vmap input grad")


def test_vmap_over_kernels_and_per_example_kernel_grads_fall_back_to_xla():
    name, x_shape, k_shape, kw = CONFIGS[15]
    s = _settings(kw)
    rng = np.random.default_rng(4)
    x = rng.normal(size=x_shape).astype(np.float32)
    ks = rng.normal(size=(2, *k_shape)).astype(np.float32)
    ys = jax.jit(jax.vmap(lambda k: onednn.conv_forward(x, k, **s)))(ks)
    _assert_close(ys, jax.vmap(lambda k: _lax(x, k, kw))(ks), name="vmap kernels")
    # Per-example kernel gradients: x and dy both carry the vmapped axis.
    xs, dys = x[:, None], np.asarray(ys[0])[:, None]
    per_example = jax.jit(jax.vmap(
        lambda x, dy: onednn.conv_kernel_grad(x, dy, k_shape, **s)))(xs, dys)
    want = jax.vmap(lambda x, dy: jax.vjp(lambda k: _lax(x, k, kw), ks[0])[1](dy)[0])(xs, dys)
    _assert_close(per_example, want, name="per-example kernel grads")


def test_grad_through_forward_matches_autodiff_of_xla():
    name, x_shape, k_shape, kw = CONFIGS[12]
    s = _settings(kw)
    x, k, dy = _arrays(x_shape, k_shape, kw, seed=5)
    loss = lambda conv: lambda x, k: jnp.vdot(conv(x, k), dy)
    got = jax.jit(jax.grad(loss(lambda x, k: onednn.conv_forward(x, k, **s)), (0, 1)))(x, k)
    x64, k64 = jnp.asarray(x, jnp.float64), jnp.asarray(k, jnp.float64)
    want = jax.grad(loss(lambda x, k: _lax(x, k, kw)), (0, 1))(x64, k64)
    for g, w in zip(got, want):
        _assert_close(g, w, name="grad")


def test_second_order_reverse_mode():
    """d/dk of ||dx||^2 and d/dx of ||dw||^2, through the vjps of the gradients."""
    name, x_shape, k_shape, kw = CONFIGS[4]
    s = _settings(kw)
    x, k, dy = _arrays(x_shape, k_shape, kw, seed=6)
    x64, k64, dy64 = (jnp.asarray(a, jnp.float64) for a in (x, k, dy))

    def xla_dx(dy, k):
        return jax.vjp(lambda a: _lax(a, k, kw), jnp.zeros(x_shape, k.dtype))[1](dy)[0]

    def xla_dw(x, dy):
        return jax.vjp(lambda b: _lax(x, b, kw), jnp.zeros(k_shape, x.dtype))[1](dy)[0]

    got = jax.jit(jax.grad(
        lambda dy, k: jnp.sum(onednn.conv_input_grad(dy, k, x_shape, **s) ** 2), (0, 1)))(dy, k)
    want = jax.grad(lambda dy, k: jnp.sum(xla_dx(dy, k) ** 2), (0, 1))(dy64, k64)
    for g, w in zip(got, want):
        _assert_close(g, w, name="second order via input grad")
    got = jax.jit(jax.grad(
        lambda x, dy: jnp.sum(onednn.conv_kernel_grad(x, dy, k_shape, **s) ** 2), (0, 1)))(x, dy)
    want = jax.grad(lambda x, dy: jnp.sum(xla_dw(x, dy) ** 2), (0, 1))(x64, dy64)
    for g, w in zip(got, want):
        _assert_close(g, w, name="second order via kernel grad")


# ----------------------------------------------------------------------------------
# Fallbacks


UNSUPPORTED = [
    ("input_dilation", (2, 5, 5, 3), (3, 3, 3, 4),
     dict(pads=((2, 2), (2, 2)), input_dilation=(2, 2)), np.float32),
    ("negative_padding", (2, 8, 8, 3), (3, 3, 3, 4), dict(pads=((-1, 1), (1, 0))), np.float32),
    ("float64", (2, 6, 6, 3), (3, 3, 3, 4), dict(pads=((1, 1), (1, 1))), np.float64),
]


@pytest.mark.parametrize("name,x_shape,k_shape,kw,dtype", UNSUPPORTED,
                         ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_settings_report_it_and_fall_back_to_xla(name, x_shape, k_shape, kw, dtype):
    s = _settings(kw)
    assert not onednn.supports(x_shape, k_shape, **s, dtype=dtype)
    assert onednn.implementation("forward", x_shape, k_shape, **s, dtype=dtype).startswith(
        "unsupported:")
    x, k, dy = _arrays(x_shape, k_shape, kw, seed=7, dtype=dtype)
    assert _custom_calls(lambda x, k, dy: _three(x, k, dy, kw), x, k, dy) == []
    for got, want in zip(jax.jit(lambda x, k, dy: _three(x, k, dy, kw))(x, k, dy),
                         _reference(x, k, dy, kw)):
        assert got.dtype == dtype
        _assert_close(got, want, name=name)


def test_mixed_dtypes_raise_as_in_lax():
    x = jnp.ones((2, 6, 6, 3), jnp.float32)
    k = jnp.ones((3, 3, 3, 4), jnp.bfloat16)
    with pytest.raises(TypeError, match="same dtypes"):
        onednn.conv_forward(x, k, pads=((1, 1), (1, 1)))


def test_bad_geometry_raises():
    with pytest.raises(ValueError, match="groups"):
        onednn.conv_forward(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 2, 4)), pads=((1, 1),) * 2)
    with pytest.raises(ValueError, match="pads"):
        onednn.conv_forward(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 3, 4)), pads=((1, 1),))
    with pytest.raises(ValueError, match="dy has shape"):
        onednn.conv_input_grad(jnp.ones((1, 4, 4, 4)), jnp.ones((3, 3, 3, 4)), (1, 5, 5, 3),
                               pads=((1, 1),) * 2)
    assert not onednn.supports((1, 2, 2, 3), (3, 3, 3, 4), pads=((0, 0),) * 2)


@pytest.fixture
def no_library(monkeypatch):
    """A process in which building or loading the library fails."""

    def fail():
        raise build.OnednnUnavailable("no oneDNN here (test)")

    monkeypatch.setattr(build, "load", fail)
    monkeypatch.setitem(onednn_conv._state, "notified", False)
    return fail


def test_unavailable_library_warns_once_and_falls_back_to_xla(no_library):
    with pytest.warns(RuntimeWarning, match=r"unavailable \(no oneDNN here \(test\)\)"):
        assert not onednn.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not onednn.available()  # the notice comes once
        name, x_shape, k_shape, kw = CONFIGS[16]
        assert not onednn.supports(x_shape, k_shape, **_settings(kw))
        x, k, dy = _arrays(x_shape, k_shape, kw, seed=8)
        assert _custom_calls(lambda x, k, dy: _three(x, k, dy, kw), x, k, dy) == []
        got = jax.jit(lambda x, k, dy: _three(x, k, dy, kw))(x, k, dy)
    for g, w in zip(got, _reference(x, k, dy, kw)):
        _assert_close(g, w, name="fallback")
    assert onednn.version() is None


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("FCNN_ONEDNN", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not onednn.available()
        assert not onednn.supports((2, 6, 6, 3), (3, 3, 3, 4), pads=((1, 1), (1, 1)))


# ----------------------------------------------------------------------------------
# Building


def test_first_use_build_into_a_fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FCNN_CACHE_DIR", str(tmp_path))
    path = build.build()
    assert path.parent == tmp_path / "onednn" and path.name.startswith("libfcnn_onednn-")
    assert path.stat().st_size > 0
    assert build.build() == path  # the second call reuses it
    assert [p.name for p in (tmp_path / "onednn").iterdir()] == [path.name]


def test_failed_compilation_is_reported(monkeypatch, tmp_path):
    source = tmp_path / "conv.cc"
    source.write_text("this is not C++\n")
    monkeypatch.setattr(build, "SOURCE", source)
    monkeypatch.setenv("FCNN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(build.OnednnUnavailable, match="compiling .* failed"):
        build.build()
    assert list((tmp_path / "cache" / "onednn").iterdir()) == []  # no partial library


def test_version_names_the_runtime():
    assert "cpu runtime" in onednn.version()
