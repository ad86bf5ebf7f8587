"""Property-based fuzzing (hypothesis) of convolution, transposed convolution, padding
modes, pooling and normalization.

Random valid configurations are checked in float64 against the naive-loop NumPy
oracles of tests/reference: the forward, and the hand-written backward applied to a
random cotangent. In the slow runs pooling and normalization are also checked against
autodiff of the plain forward (`backward="autodiff"`), which doubles the compile time
of each example. Random invalid configurations must raise ValueError or TypeError
before any array work, with a message naming the argument.

Example counts: every property runs 100 derandomized examples (the same ones on each
run, so CI is reproducible); with FCNN_FUZZ_EXAMPLES=n set, n fresh random examples
per property. The `slow` twins (`make test-slow`) run each property with 1000.

Convolution is never compared with `backward="autodiff"` here: in jaxlib 0.10.2 the
float64 autodiff input gradient of some grouped, strided, kernel-dilated
convolutions aborts the process (see tests/test_lowering.py), and the NumPy oracle
checks every configuration instead. The transposed convolution and the padding modes
are compared with autodiff in the slow runs (their autodiff is a plain convolution with
input dilation, and slices and concatenations).

Each example costs one XLA compilation for its shapes (the arrays are tiny), so the
checked computations are jitted on a hashable description of the configuration
(repeated configurations reuse the compiled code), and compiled with LLVM's
optimisation off: XLA's graph passes (fusion, simplification) still run, and the
compile time that dominates each example drops by about 40%. The compiled code is
dropped every KEEP_COMPILED calls: thousands of compiled functions exhaust the
process's memory mappings (see `_jit`).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from typing import NamedTuple

import chex
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fcnn
from fcnn.ops import pooling
from fcnn.ops import onednn
from fcnn.ops.conv import ONEDNN, conv, conv_output_shape
from fcnn.ops.conv import _resolve as _resolve_conv
from fcnn.ops.lowering import Lowering
from fcnn.ops.conv_transpose import conv_transpose, conv_transpose_output_shape
from fcnn.ops.normalization import normalize
from fcnn.ops.padding import MODES as PAD_MODES
from fcnn.ops.padding import pad, pad_output_shape
from tests.reference import conv_ref, conv_transpose_ref, norm_ref, padding_ref, pool_ref

EXAMPLES = int(os.environ.get("FCNN_FUZZ_EXAMPLES", 100))
EXPLORE = "FCNN_FUZZ_EXAMPLES" in os.environ
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not EXPLORE,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=max(1000, EXAMPLES))

TOL = dict(atol=1e-10, rtol=1e-10)
NORM_TOL = dict(atol=1e-9, rtol=1e-9)

# Sizes keep the loop oracles fast: at most this many multiply-adds (conv) or
# Jacobian entries (normalization) per example.
ORACLE_BUDGET = 6000
NORM_BUDGET = 30000
SPATIAL_MAX = {1: 7, 2: 5, 3: 4}
WINDOW_MAX = {1: 4, 2: 3, 3: 2}

seeds = st.integers(0, 2**32 - 1)


def _tuple(draw, ndim, low, high):
    return tuple(draw(st.lists(st.integers(low, high), min_size=ndim, max_size=ndim)))


def _as_arg(draw, values):
    """An int-or-tuple argument: the int form sometimes, when every entry is equal."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


def _padding(draw, max_pads):
    """ "SAME"/"VALID" (any case), an int, or (low, high) pairs, possibly asymmetric;
    explicit pads at most `max_pads` (one bound per spatial dimension)."""
    kind = draw(st.sampled_from(["SAME", "same", "VALID", "int", "pairs"]))
    if kind == "int":
        return draw(st.integers(0, min(max_pads)))
    if kind == "pairs":
        return tuple((draw(st.integers(0, m)), draw(st.integers(0, m))) for m in max_pads)
    return kind


def _close(actual, expected, tol, what):
    chex.assert_trees_all_close(
        np.asarray(actual), np.asarray(expected, np.float64), **tol,
        custom_message=what,
    )


# Each compiled function holds ~25 memory mappings: a few thousand of them (the slow
# runs) exceed vm.max_map_count (65530), LLVM fails to allocate and the process
# segfaults. The compiled code is dropped every this many calls.
KEEP_COMPILED = 200


def _jit(static_argnums):
    """jax.jit with LLVM optimisation off, dropping its compiled code now and then."""

    def wrap(fn):
        jitted = jax.jit(fn, static_argnums=static_argnums,
                         compiler_options={"xla_backend_optimization_level": 0})
        calls = itertools.count(1)

        @functools.wraps(fn)
        def call(*args):
            if next(calls) % KEEP_COMPILED == 0:
                jitted.clear_cache()
            return jitted(*args)

        return call

    return wrap


def _hashable(kwargs: dict):
    return tuple(sorted(kwargs.items()))


# ------------------------------------------------------------------ convolution


class ConvCase(NamedTuple):
    x_shape: tuple
    kernel_shape: tuple
    kwargs: dict
    bias: bool
    seed: int


@st.composite
def conv_cases(draw):
    ndim = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    spatial = _tuple(draw, ndim, 1, SPATIAL_MAX[ndim])
    window = _tuple(draw, ndim, 1, WINDOW_MAX[ndim])
    strides = _tuple(draw, ndim, 1, 3)
    dilation = _tuple(draw, ndim, 1, 3)
    input_dilation = _tuple(draw, ndim, 1, 2)
    if draw(st.booleans()):  # depthwise: one input channel per group
        groups, c_in_g, c_out_g = draw(st.integers(1, 4)), 1, draw(st.integers(1, 2))
    else:  # up to 4 channels per group, so that each lowering `conv` picks is reached
        groups, c_in_g, c_out_g = (draw(st.integers(1, n)) for n in (3, 4, 3))
    padding = _padding(draw, (3,) * ndim)
    kwargs = dict(
        strides=_as_arg(draw, strides),
        padding=padding,
        dilation=_as_arg(draw, dilation),
        input_dilation=_as_arg(draw, input_dilation),
        groups=groups,
    )
    x_shape = (batch, *spatial, groups * c_in_g)
    kernel_shape = (*window, c_in_g, groups * c_out_g)
    out = conv_ref.output_shape(x_shape, kernel_shape, **_ref_geometry(kwargs))
    assume(all(o >= 1 for o in out[1:-1]))
    assume(math.prod(out) * math.prod(window) * c_in_g <= ORACLE_BUDGET)
    return ConvCase(x_shape, kernel_shape, kwargs, draw(st.booleans()), draw(seeds))


def _ref_geometry(kwargs):
    return {k: kwargs[k] for k in ("strides", "padding", "dilation", "input_dilation")}


@_jit(static_argnums=(4,))
def _conv_vjp(x, kernel, bias, dy, kwargs):
    y, vjp = jax.vjp(lambda x, k, b: conv(x, k, b, **dict(kwargs)), x, kernel, bias)
    return y, vjp(dy)


def check_conv(case: ConvCase):
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    kernel = rng.standard_normal(case.kernel_shape)
    bias = rng.standard_normal(case.kernel_shape[-1]) if case.bias else None
    geometry = _ref_geometry(case.kwargs)
    out_shape = conv_ref.output_shape(case.x_shape, case.kernel_shape, **geometry)
    dy = rng.standard_normal(out_shape)

    assert conv_output_shape(case.x_shape, case.kernel_shape, **case.kwargs) == out_shape
    y, (dx, dkernel, dbias) = _conv_vjp(x, kernel, bias, dy, _hashable(case.kwargs))
    chex.assert_shape(y, out_shape)
    groups = dict(groups=case.kwargs["groups"])
    _close(y, conv_ref.conv_forward(x, kernel, bias, **geometry, **groups), TOL, "forward")
    rdx, rdkernel, rdbias = conv_ref.conv_backward(x, kernel, dy, **geometry, **groups)
    _close(dx, rdx, TOL, "input gradient")
    _close(dkernel, rdkernel, TOL, "kernel gradient")
    if case.bias:
        _close(dbias, rdbias, TOL, "bias gradient")
    else:
        assert dbias is None


@FAST
@given(conv_cases())
def test_conv_fuzz(case):
    """Random 1-3 d convolutions: forward and custom backward equal the loop oracle."""
    check_conv(case)


@pytest.mark.slow
@SLOW
@given(conv_cases())
def test_conv_fuzz_slow(case):
    check_conv(case)


# oneDNN computes in float32 (its f64 support is the reference implementation, which
# `supports` refuses), so its route is checked in float32 against the float64 oracle
# of the same float32 inputs, on the configurations it takes (about a third).
ONEDNN_TOL = dict(atol=2e-4, rtol=2e-4)
ONEDNN_ROUTE = Lowering(ONEDNN, ONEDNN, ONEDNN)


def check_conv_onednn(case: ConvCase):
    if not onednn.available():
        pytest.skip("oneDNN convolutions unavailable (see tests/test_onednn.py)")
    config, _ = _resolve_conv(case.x_shape, case.kernel_shape, **case.kwargs)
    assume(onednn.supports(case.x_shape, case.kernel_shape, config.strides, config.pads,
                           config.dilation, config.input_dilation, config.groups))
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape).astype(np.float32)
    kernel = rng.standard_normal(case.kernel_shape).astype(np.float32)
    bias = rng.standard_normal(case.kernel_shape[-1]).astype(np.float32) if case.bias else None
    geometry, groups = _ref_geometry(case.kwargs), dict(groups=case.kwargs["groups"])
    out_shape = conv_ref.output_shape(case.x_shape, case.kernel_shape, **geometry)
    dy = rng.standard_normal(out_shape).astype(np.float32)
    kwargs = _hashable(dict(case.kwargs, lowering=ONEDNN_ROUTE))
    y, (dx, dkernel, dbias) = _conv_vjp(x, kernel, bias, dy, kwargs)
    assert y.dtype == dx.dtype == dkernel.dtype == np.float32
    x64, k64, dy64 = (a.astype(np.float64) for a in (x, kernel, dy))
    b64 = None if bias is None else bias.astype(np.float64)
    _close(y, conv_ref.conv_forward(x64, k64, b64, **geometry, **groups), ONEDNN_TOL,
           "oneDNN forward")
    rdx, rdkernel, rdbias = conv_ref.conv_backward(x64, k64, dy64, **geometry, **groups)
    _close(dx, rdx, ONEDNN_TOL, "oneDNN input gradient")
    _close(dkernel, rdkernel, ONEDNN_TOL, "oneDNN kernel gradient")
    if case.bias:
        _close(dbias, rdbias, ONEDNN_TOL, "bias gradient (oneDNN route)")


@FAST
@given(conv_cases())
def test_conv_fuzz_onednn(case):
    """The oneDNN route of `conv` on random configurations it supports: forward and
    both gradients equal the loop oracle (float32)."""
    check_conv_onednn(case)


@pytest.mark.slow
@SLOW
@given(conv_cases())
def test_conv_fuzz_onednn_slow(case):
    check_conv_onednn(case)


# ------------------------------------------------------------------ transposed convolution


class ConvTransposeCase(NamedTuple):
    x_shape: tuple
    kernel_shape: tuple
    kwargs: dict
    bias: bool
    seed: int


@st.composite
def conv_transpose_cases(draw):
    ndim = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    spatial = _tuple(draw, ndim, 1, SPATIAL_MAX[ndim] - 1)
    window = _tuple(draw, ndim, 1, WINDOW_MAX[ndim])
    strides = _tuple(draw, ndim, 1, 3)
    dilation = _tuple(draw, ndim, 1, 3)
    groups, c_in_g, c_out_g = (draw(st.integers(1, n)) for n in (3, 2, 2))
    padding = _padding(draw, (3,) * ndim)
    kwargs = dict(strides=_as_arg(draw, strides), padding=padding,
                  dilation=_as_arg(draw, dilation), groups=groups)
    if padding not in ("SAME", "same") and draw(st.booleans()):
        kwargs["output_padding"] = _as_arg(draw, tuple(
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dilation)))
    x_shape = (batch, *spatial, groups * c_in_g)
    kernel_shape = (*window, c_in_g, groups * c_out_g)
    geometry = {k: v for k, v in kwargs.items() if k != "groups"}
    out = conv_transpose_ref.output_shape(x_shape, kernel_shape, **geometry)
    assume(all(o >= 1 for o in out[1:-1]))
    assume(math.prod(x_shape) * math.prod(window) * c_out_g <= ORACLE_BUDGET)
    return ConvTransposeCase(x_shape, kernel_shape, kwargs, draw(st.booleans()), draw(seeds))


@_jit(static_argnums=(4, 5))
def _conv_transpose_vjp(x, kernel, bias, dy, kwargs, backwards):
    out = []
    for backward in backwards:
        y, vjp = jax.vjp(lambda x, k, b: conv_transpose(x, k, b, backward=backward, **dict(kwargs)),
                         x, kernel, bias)
        out.append((y, vjp(dy)))
    return out


def check_conv_transpose(case: ConvTransposeCase, autodiff=False):
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    kernel = rng.standard_normal(case.kernel_shape)
    bias = rng.standard_normal(case.kernel_shape[-1]) if case.bias else None
    out_shape = conv_transpose_ref.output_shape(case.x_shape, case.kernel_shape, **case.kwargs)
    dy = rng.standard_normal(out_shape)
    assert conv_transpose_output_shape(case.x_shape, case.kernel_shape, **case.kwargs) == out_shape
    y_ref = conv_transpose_ref.conv_transpose_forward(x, kernel, bias, **case.kwargs)
    rdx, rdkernel, rdbias = conv_transpose_ref.conv_transpose_backward(x, kernel, dy, **case.kwargs)
    backwards = ("custom", "autodiff") if autodiff else ("custom",)
    results = _conv_transpose_vjp(x, kernel, bias, dy, _hashable(case.kwargs), backwards)
    for backward, (y, (dx, dkernel, dbias)) in zip(backwards, results):
        chex.assert_shape(y, out_shape)
        _close(y, y_ref, TOL, f"{backward}: forward")
        _close(dx, rdx, TOL, f"{backward}: input gradient")
        _close(dkernel, rdkernel, TOL, f"{backward}: kernel gradient")
        if case.bias:
            _close(dbias, rdbias, TOL, f"{backward}: bias gradient")
        else:
            assert dbias is None


@FAST
@given(conv_transpose_cases())
def test_conv_transpose_fuzz(case):
    """Random 1-3 d transposed convolutions (strides, every padding form, output
    padding, dilation, groups): forward and custom backward equal the scatter oracle."""
    check_conv_transpose(case)


@pytest.mark.slow
@SLOW
@given(conv_transpose_cases())
def test_conv_transpose_fuzz_slow(case):
    check_conv_transpose(case, autodiff=True)


# ------------------------------------------------------------------ padding modes


class PadCase(NamedTuple):
    x_shape: tuple
    padding: object
    mode: str
    seed: int


@st.composite
def pad_cases(draw):
    ndim = draw(st.integers(1, 3))
    spatial = _tuple(draw, ndim, 1, SPATIAL_MAX[ndim])
    x_shape = (draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 3)))
    mode = draw(st.sampled_from(PAD_MODES))
    # reflect: at most W - 1 per side; circular: at most W; the others: anything
    limits = [{"reflect": w - 1, "circular": w}.get(mode, 4) for w in spatial]
    pairs = tuple((draw(st.integers(0, m)), draw(st.integers(0, m))) for m in limits)
    form = draw(st.sampled_from(["pairs", "per_dim", "int"]))
    if form == "int":
        padding = draw(st.integers(0, min(limits)))
    elif form == "per_dim":
        padding = tuple(max(p) for p in pairs)
    else:
        padding = pairs
    return PadCase(x_shape, padding, mode, draw(seeds))


@_jit(static_argnums=(2, 3, 4))
def _pad_vjp(x, g, padding, mode, backwards):
    out = []
    for backward in backwards:
        y, vjp = jax.vjp(lambda x: pad(x, padding, mode, backward), x)
        out.append((y, vjp(g)[0]))
    return out


def check_pad(case: PadCase, autodiff=False):
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    y_ref = padding_ref.pad_forward(x, case.padding, case.mode)
    g = rng.standard_normal(y_ref.shape)
    dx_ref = padding_ref.pad_backward(x.shape, g, case.padding, case.mode)
    assert pad_output_shape(case.x_shape, case.padding, case.mode) == y_ref.shape
    backwards = ("custom", "autodiff") if autodiff else ("custom",)
    for backward, (y, dx) in zip(backwards, _pad_vjp(x, g, case.padding, case.mode, backwards)):
        chex.assert_shape(y, y_ref.shape)
        _close(y, y_ref, TOL, f"{backward}: forward")
        _close(dx, dx_ref, TOL, f"{backward}: backward")


@FAST
@given(pad_cases())
def test_pad_fuzz(case):
    """Random paddings (1-3 d, every mode up to its size limit, int / per-dimension /
    pair forms): forward and custom backward equal the loop oracle."""
    check_pad(case)


@pytest.mark.slow
@SLOW
@given(pad_cases())
def test_pad_fuzz_slow(case):
    check_pad(case, autodiff=True)


# ------------------------------------------------------------------ pooling


class PoolCase(NamedTuple):
    x_shape: tuple
    kind: str
    window: object
    strides: object
    padding: object
    count_include_pad: bool
    path: str
    ties: bool
    seed: int


@st.composite
def pool_cases(draw):
    ndim = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 3))
    spatial = _tuple(draw, ndim, 1, SPATIAL_MAX[ndim] + 1)
    window = _tuple(draw, ndim, 1, 3)
    # strides None (= window, non-overlapping), or drawn: overlapping or strided
    strides = {
        "default": None, "window": window, "drawn": _tuple(draw, ndim, 1, 3),
    }[draw(st.sampled_from(["default", "window", "drawn"]))]
    effective_strides = window if strides is None else strides
    # a window must hold at least one input cell: at most window - 1 padding per side
    padding = _padding(draw, tuple(w - 1 for w in window))
    pads = pool_ref.resolve_padding(padding, spatial, window, effective_strides)
    out = [
        (n + lo + hi - w) // s + 1
        for n, w, s, (lo, hi) in zip(spatial, window, effective_strides, pads)
    ]
    assume(all(o >= 1 for o in out))
    kind = draw(st.sampled_from(["max", "avg"]))
    non_overlapping = tuple(effective_strides) == tuple(window)
    paths = ["auto", "general", "fast"] if non_overlapping else ["auto", "general"]
    path = draw(st.sampled_from(paths))
    return PoolCase(
        (batch, *spatial, channels), kind, _as_arg(draw, window),
        None if strides is None else _as_arg(draw, strides), padding,
        kind == "avg" and draw(st.booleans()), path, draw(st.booleans()), draw(seeds),
    )


@_jit(static_argnums=(2, 3))
def _pool_vjp(x, g, kwargs, backwards):
    """[(y, dx)] for each of `backwards`."""
    out = []
    for backward in backwards:
        y, vjp = jax.vjp(lambda x: pooling.pool(x, **dict(kwargs), backward=backward), x)
        out.append((y, vjp(g)[0]))
    return out


def check_pool(case: PoolCase, autodiff=False):
    rng = np.random.default_rng(case.seed)
    if case.ties:  # a few integer levels: every window holds tied maxima
        x = rng.integers(-2, 3, size=case.x_shape).astype(np.float64)
    else:
        x = rng.standard_normal(case.x_shape)
    ref_kw = dict(window_shape=case.window, strides=case.strides, padding=case.padding)
    avg_kw = dict(count_include_pad=case.count_include_pad) if case.kind == "avg" else {}
    y_ref = pool_ref.pool_forward(x, case.kind, **ref_kw, **avg_kw)
    g = rng.standard_normal(y_ref.shape)
    dx_ref = pool_ref.pool_backward(x, g, case.kind, **ref_kw, **avg_kw)

    assert pooling.pool_output_shape(
        case.x_shape, case.window, case.strides, case.padding
    ) == y_ref.shape
    kwargs = dict(kind=case.kind, **ref_kw, count_include_pad=case.count_include_pad,
                  path=case.path)
    backwards = ("custom", "autodiff") if autodiff else ("custom",)
    for backward, (y, dx) in zip(backwards, _pool_vjp(x, g, _hashable(kwargs), backwards)):
        chex.assert_shape(y, y_ref.shape)
        _close(y, y_ref, TOL, f"{backward}: forward")
        # the hand rule sends a tie's gradient to the first maximum, as the oracle does;
        # autodiff of the blocks (fast) path splits ties evenly: compared without ties
        if backward == "custom" or not (case.ties and case.kind == "max"):
            _close(dx, dx_ref, TOL, f"{backward}: backward")


@FAST
@given(pool_cases())
def test_pool_fuzz(case):
    """Random max/avg pooling (1-3 d, overlapping or not, every padding form, both paths,
    tied maxima): forward and custom backward equal the loop oracle."""
    check_pool(case)


@pytest.mark.slow
@SLOW
@given(pool_cases())
def test_pool_fuzz_slow(case):
    check_pool(case, autodiff=True)


# ------------------------------------------------------------------ normalization


class NormCase(NamedTuple):
    kind: str
    x_shape: tuple  # the shape normalized (for group norm: (N, *S, G, C // G))
    axes: tuple
    param_shape: tuple | None  # None: no scale and bias
    epsilon: float
    seed: int


@st.composite
def norm_cases(draw):
    kind = draw(st.sampled_from(["batch", "layer", "instance", "group"]))
    n_spatial = draw(st.integers(1 if kind == "instance" else 0, 3))
    spatial = _tuple(draw, n_spatial, 1, (5, 4, 3)[n_spatial - 1] if n_spatial else 1)
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 6))
    rank = 2 + n_spatial
    spatial_axes = tuple(range(1, 1 + n_spatial))
    if kind == "group":
        groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
        shape = (batch, *spatial, groups, channels // groups)
        axes = spatial_axes + (rank,)
        param_shape = (groups, channels // groups)
    else:
        shape = (batch, *spatial, channels)
        axes = {
            "batch": tuple(range(rank - 1)),
            "layer": tuple(range(1, rank)),
            "instance": spatial_axes,
        }[kind]
        param_shape = draw(st.sampled_from([(channels,), (1,) * (rank - 1) + (channels,)]))
    if draw(st.booleans()):  # negative axes are accepted too
        axes = tuple(a - len(shape) for a in axes)
    m = math.prod(shape[a] for a in axes)
    assume(math.prod(shape) * m <= NORM_BUDGET)
    epsilon = draw(st.sampled_from([1e-5, 1e-3, 0.1, 1.0]))
    return NormCase(kind, shape, axes, draw(st.sampled_from([param_shape, None])), epsilon,
                    draw(seeds))


@_jit(static_argnums=(4, 5, 6))
def _norm_vjp(x, scale, bias, cotangents, axes, epsilon, backwards):
    out = []
    for backward in backwards:
        f = functools.partial(normalize, axes=axes, epsilon=epsilon, backward=backward)
        primals, vjp = jax.vjp(f, x, scale, bias)
        out.append((primals, vjp(cotangents)))
    return out


def _sum_to(g, shape):
    """An elementwise gradient reduced to a parameter of `shape` (NumPy broadcasting)."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(d for d, n in enumerate(shape) if n == 1)
    return g.sum(axis=axes, keepdims=True)


def check_norm(case: NormCase, autodiff=False):
    rng = np.random.default_rng(case.seed)
    x = rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 3), size=case.x_shape)
    axes = tuple(a % x.ndim for a in case.axes)
    if case.param_shape is None:
        scale = bias = None
        scale_full, bias_full = np.ones(x.shape), np.zeros(x.shape)
    else:
        scale, bias = rng.standard_normal((2, *case.param_shape))
        scale_full = np.broadcast_to(scale, x.shape)
        bias_full = np.broadcast_to(bias, x.shape)
    stat_shape = tuple(1 if d in axes else n for d, n in enumerate(x.shape))
    dy = rng.standard_normal(x.shape)
    dmean, dvar = rng.standard_normal((2, *stat_shape))

    key = norm_ref.key_without(axes)
    y_ref, mean_ref, var_ref = norm_ref.normalize_forward(x, scale_full, bias_full, key,
                                                         case.epsilon)

    def by_group(stat):
        return {key(idx): stat[idx] for idx in np.ndindex(*stat_shape)}

    dx_ref, dscale_ref, dbias_ref = norm_ref.normalize_backward(
        x, scale_full, key, case.epsilon, dy, by_group(dmean), by_group(dvar)
    )
    backwards = ("custom", "autodiff") if autodiff else ("custom",)
    results = _norm_vjp(x, scale, bias, (dy, dmean, dvar), case.axes, case.epsilon, backwards)
    for backward, ((y, mean, var), (dx, dscale, dbias)) in zip(backwards, results):
        chex.assert_shape([mean, var], stat_shape)
        _close(y, y_ref, NORM_TOL, f"{backward}: y")
        _close(np.broadcast_to(mean, x.shape), mean_ref, NORM_TOL, f"{backward}: mean")
        _close(np.broadcast_to(var, x.shape), var_ref, NORM_TOL, f"{backward}: var")
        _close(dx, dx_ref, NORM_TOL, f"{backward}: dx")
        if scale is not None:
            _close(dscale, _sum_to(dscale_ref, scale.shape), NORM_TOL, f"{backward}: dscale")
            _close(dbias, _sum_to(dbias_ref, bias.shape), NORM_TOL, f"{backward}: dbias")


@FAST
@given(norm_cases())
def test_normalization_fuzz(case):
    """Random batch/layer/instance/group normalizations (shapes, groups, epsilon,
    with and without scale and bias): y, the statistics and the custom gradients
    (through y, mean and var) equal the loop oracle."""
    check_norm(case)


@pytest.mark.slow
@SLOW
@given(norm_cases())
def test_normalization_fuzz_slow(case):
    check_norm(case, autodiff=True)


# ------------------------------------------------------------------ invalid input


class BadCase(NamedTuple):
    op: str  # "conv", "pool", "normalize" or "group_norm"
    mistake: str
    x_shape: tuple
    other: object  # the kernel shape, pooling kind or scale shape
    kwargs: dict
    error: type
    match: str  # a regex naming the argument
    x_dtype: str = "float64"


def _valid_conv(draw):
    """A valid convolution (stride 1, "SAME") to break one thing in."""
    ndim = draw(st.integers(1, 3))
    spatial = _tuple(draw, ndim, 2, 5)
    window = tuple(draw(st.integers(1, n)) for n in spatial)
    groups = draw(st.integers(1, 3))
    c_in_g, c_out_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    x_shape = (draw(st.integers(1, 2)), *spatial, groups * c_in_g)
    kernel_shape = (*window, c_in_g, groups * c_out_g)
    return ndim, x_shape, kernel_shape, dict(groups=groups)


CONV_MISTAKES = (
    "strides", "dilation", "input_dilation", "negative_int_padding", "negative_pair_padding",
    "pair_count", "padding_name", "groups_in", "groups_out", "kernel_in", "window_too_large",
    "x_rank", "kernel_rank", "tuple_length", "groups_zero", "float_stride", "backward",
    "bias_shape",
)
POOL_MISTAKES = (
    "window_zero", "strides_zero", "empty_window", "window_too_large", "x_rank", "int_dtype",
    "negative_padding", "kind", "count_include_pad", "tuple_length", "padding_name",
)
NORM_MISTAKES = (
    "epsilon", "axis_range", "repeated_axis", "no_axes", "scale_shape", "int_dtype",
    "group_count", "backward",
)


@st.composite
def bad_conv_cases(draw, mistake=None):
    ndim, x_shape, kernel_shape, kw = _valid_conv(draw)
    spatial, window = x_shape[1:-1], kernel_shape[:-2]
    mistake = mistake or draw(st.sampled_from(CONV_MISTAKES))
    bad = functools.partial(BadCase, "conv", mistake)
    zero_or_negative = draw(st.integers(-2, 0))
    some_dim = draw(st.integers(0, ndim - 1))
    bad_tuple = tuple(zero_or_negative if d == some_dim else 1 for d in range(ndim))
    if mistake in ("strides", "dilation", "input_dilation"):
        return bad(x_shape, kernel_shape, dict(kw, **{mistake: bad_tuple}),
                   ValueError, rf"{mistake}=.*must be positive")
    if mistake == "negative_int_padding":
        return bad(x_shape, kernel_shape, dict(kw, padding=draw(st.integers(-3, -1))),
                   ValueError, r"padding=-\d")
    if mistake == "negative_pair_padding":
        pads = tuple((-1, 0) if d == some_dim else (0, 0) for d in range(ndim))
        return bad(x_shape, kernel_shape, dict(kw, padding=pads), ValueError,
                   r"padding=.*non-negative")
    if mistake == "pair_count":
        pads = ((0, 0),) * draw(st.sampled_from([n for n in range(1, 5) if n != ndim]))
        return bad(x_shape, kernel_shape, dict(kw, padding=pads), ValueError,
                   rf"padding=.*expected {ndim} \(low, high\) pairs")
    if mistake == "padding_name":
        return bad(x_shape, kernel_shape,
                   dict(kw, padding=draw(st.sampled_from(["FULL", "valid!", ""]))),
                   ValueError, r"padding=")
    if mistake == "groups_in":  # in-channels not divisible by groups
        c_in = x_shape[-1]
        g = draw(st.sampled_from([g for g in range(2, c_in + 3) if c_in % g]))
        return bad(x_shape, kernel_shape, dict(groups=g), ValueError,
                   rf"groups={g}: in_channels \(={c_in}\) must be divisible by groups")
    if mistake == "groups_out":  # out-channels not divisible by groups
        groups = draw(st.integers(2, 3))
        c_out = draw(st.sampled_from([c for c in range(1, 8) if c % groups]))
        k_in = kernel_shape[-2]
        return bad((*x_shape[:-1], groups * k_in), (*window, k_in, c_out),
                   dict(groups=groups), ValueError,
                   rf"groups={groups}: out_channels \(={c_out}\) must be divisible")
    if mistake == "kernel_in":
        k_in = draw(st.sampled_from([k for k in range(1, 5) if k != kernel_shape[-2]]))
        return bad(x_shape, (*window, k_in, kernel_shape[-1]), kw, ValueError,
                   r"kernel expects C_in")
    if mistake == "window_too_large":
        big = tuple(n + draw(st.integers(1, 2)) if d == some_dim else 1
                    for d, n in enumerate(spatial))
        return bad(x_shape, (*big, *kernel_shape[-2:]), dict(kw, padding="VALID"),
                   ValueError, r"conv: window of size \d+ does not fit spatial dimension")
    if mistake == "x_rank":
        shape = draw(st.sampled_from([(4,), (2, 4), (1, 2, 2, 2, 2, 2)]))
        return bad(shape, kernel_shape, kw, ValueError, r"x has shape .*rank")
    if mistake == "kernel_rank":
        extra = draw(st.sampled_from([-1, 1]))
        shape = kernel_shape[1:] if extra < 0 else (1, *kernel_shape)
        return bad(x_shape, shape, kw, ValueError, r"kernel has shape .*expected rank")
    if mistake == "tuple_length":
        arg = draw(st.sampled_from(["strides", "dilation", "input_dilation"]))
        length = draw(st.sampled_from([n for n in range(1, 5) if n != ndim]))
        return bad(x_shape, kernel_shape, dict(kw, **{arg: (1,) * length}),
                   ValueError, rf"{arg}=.*expected an int or a tuple of {ndim} ints")
    if mistake == "groups_zero":
        return bad(x_shape, kernel_shape, dict(kw, groups=zero_or_negative),
                   ValueError, r"groups=-?\d+: expected a positive int")
    if mistake == "float_stride":
        return bad(x_shape, kernel_shape, dict(kw, strides=1.5), TypeError,
                   r"strides=1\.5")
    if mistake == "backward":
        return bad(x_shape, kernel_shape, dict(kw, backward="manual"), ValueError,
                   r"backward='manual'")
    return bad(x_shape, kernel_shape, dict(kw, bias_shape=(kernel_shape[-1] + 1,)),
               ValueError, r"bias has shape")


@st.composite
def bad_pool_cases(draw, mistake=None):
    ndim = draw(st.integers(1, 3))
    spatial = _tuple(draw, ndim, 2, 5)
    x_shape = (draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 3)))
    window = tuple(draw(st.integers(1, n)) for n in spatial)
    kind = draw(st.sampled_from(["max", "avg"]))
    kw = dict(window_shape=window)
    some_dim = draw(st.integers(0, ndim - 1))
    mistake = mistake or draw(st.sampled_from(POOL_MISTAKES))
    bad = functools.partial(BadCase, "pool", mistake)
    zero_or_negative = draw(st.integers(-2, 0))
    bad_tuple = tuple(zero_or_negative if d == some_dim else 1 for d in range(ndim))
    if mistake == "window_zero":
        return bad(x_shape, kind, dict(window_shape=bad_tuple), ValueError,
                   r"window_shape=.*must be positive")
    if mistake == "strides_zero":
        return bad(x_shape, kind, dict(kw, strides=bad_tuple), ValueError,
                   r"strides=.*must be positive")
    if mistake == "empty_window":  # padding >= window on one side, stride 1: the first
        w = window[some_dim]         # or the last window holds padding only
        pad = draw(st.integers(w, w + 2))
        pads = tuple(((pad, 0) if draw(st.booleans()) else (0, pad)) if d == some_dim else (0, 0)
                     for d in range(ndim))
        return bad(x_shape, kind, dict(kw, strides=1, padding=pads), ValueError,
                   r"padding=.*leaves windows .* with no input cell")
    if mistake == "window_too_large":
        big = tuple(n + draw(st.integers(1, 2)) if d == some_dim else 1
                    for d, n in enumerate(spatial))
        return bad(x_shape, kind, dict(window_shape=big), ValueError,
                   r"window of size \d+ does not fit spatial dimension")
    if mistake == "x_rank":
        shape = draw(st.sampled_from([(4,), (2, 4), (1, 2, 2, 2, 2, 2)]))
        return bad(shape, kind, dict(window_shape=1), ValueError,
                   r"x has shape .*rank")
    if mistake == "int_dtype":
        return bad(x_shape, kind, kw, TypeError, r"x has dtype int32",
                   x_dtype="int32")
    if mistake == "negative_padding":
        return bad(x_shape, kind, dict(kw, padding=zero_or_negative - 1), ValueError,
                   r"padding=-\d")
    if mistake == "kind":
        return bad(x_shape, "min", kw, ValueError, r"kind='min'")
    if mistake == "count_include_pad":
        return bad(x_shape, kind, dict(kw, count_include_pad="yes"), TypeError,
                   r"count_include_pad='yes'")
    if mistake == "padding_name":
        return bad(x_shape, kind, dict(kw, padding="FULL"), ValueError,
                   r"padding='FULL'")
    arg = draw(st.sampled_from(["window_shape", "strides"]))
    length = draw(st.sampled_from([n for n in range(1, 5) if n != ndim]))
    return bad(x_shape, kind, dict(kw, **{arg: (1,) * length}), ValueError,
               rf"{arg}=.*expected an int or a tuple of {ndim} ints")


@st.composite
def bad_norm_cases(draw, mistake=None):
    rank = draw(st.integers(2, 5))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    axes = (0,)
    mistake = mistake or draw(st.sampled_from(NORM_MISTAKES))
    bad = functools.partial(BadCase, "normalize", mistake)
    if mistake == "epsilon":
        eps = draw(st.sampled_from([0.0, -1e-5, float("nan"), float("inf"), True]))
        return bad(shape, None, dict(axes=axes, epsilon=eps), ValueError,
                   r"epsilon=.*expected a finite number > 0")
    if mistake == "axis_range":
        axis = draw(st.sampled_from([rank, rank + 1, -rank - 1]))
        return bad(shape, None, dict(axes=(0, axis)), ValueError,
                   rf"axes=.*axis {axis} is out of range")
    if mistake == "repeated_axis":
        return bad(shape, None, dict(axes=(1, 1 - rank)), ValueError,
                   r"axes=.*repeated axis")
    if mistake == "no_axes":
        return bad(shape, None, dict(axes=()), ValueError, r"axes=\(\)")
    if mistake == "scale_shape":
        return bad(shape, (shape[-1] + 1,), dict(axes=axes), ValueError,
                   r"scale has shape .*does not broadcast")
    if mistake == "int_dtype":
        return bad(shape, None, dict(axes=axes), TypeError,
                   r"x has dtype int32", x_dtype="int32")
    if mistake == "backward":
        return bad(shape, None, dict(axes=axes, backward="hand"), ValueError,
                   r"backward='hand'")
    channels = draw(st.integers(3, 12))  # C - 1 never divides C >= 3
    groups = draw(st.sampled_from([g for g in range(2, channels) if channels % g]))
    return BadCase("group_norm", mistake, shape[:-1] + (channels,), groups, {}, ValueError,
                   rf"channels \(={channels}\) must be divisible by num_groups \(={groups}\)")


def _call_bad(case: BadCase):
    x = np.zeros(case.x_shape, case.x_dtype)
    if case.op == "conv":
        kwargs = dict(case.kwargs)
        bias_shape = kwargs.pop("bias_shape", None)
        bias = None if bias_shape is None else np.zeros(bias_shape)
        return conv(x, np.zeros(case.other), bias, **kwargs)
    if case.op == "pool":
        return pooling.pool(x, case.other, **case.kwargs)
    if case.op == "normalize":
        scale = None if case.other is None else np.ones(case.other)
        return normalize(x, scale, **case.kwargs)
    return fcnn.GroupNorm(case.other).init(jax.random.PRNGKey(0), case.x_shape)


def check_bad(case: BadCase):
    with pytest.raises(case.error, match=case.match):
        _call_bad(case)


bad_cases = st.one_of(bad_conv_cases(), bad_pool_cases(), bad_norm_cases())
MISTAKES = (
    [("conv", m) for m in CONV_MISTAKES]
    + [("pool", m) for m in POOL_MISTAKES]
    + [("normalize", m) for m in NORM_MISTAKES]
)
_BAD_STRATEGIES = {"conv": bad_conv_cases, "pool": bad_pool_cases, "normalize": bad_norm_cases}


@FAST
@given(bad_cases)
def test_invalid_configurations_fuzz(case):
    """Random invalid convolutions, poolings and normalizations raise the documented
    ValueError/TypeError, whose message names the argument and the value."""
    check_bad(case)


@pytest.mark.slow
@SLOW
@given(bad_cases)
def test_invalid_configurations_fuzz_slow(case):
    check_bad(case)


@pytest.mark.parametrize("op, mistake", MISTAKES)
@settings(FAST, max_examples=max(1, EXAMPLES // 20))
@given(data=st.data())
def test_every_mistake_raises(op, mistake, data):
    """Each kind of mistake, whatever the draw above favours, on a few random shapes."""
    check_bad(data.draw(_BAD_STRATEGIES[op](mistake)))


def test_profiles():
    """The fast profile runs EXAMPLES derandomized examples, the slow one >= 1000."""
    assert FAST.max_examples == EXAMPLES and FAST.deadline is None
    assert FAST.derandomize == (not EXPLORE)
    assert SLOW.max_examples >= 1000
