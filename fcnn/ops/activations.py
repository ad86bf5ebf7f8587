"""Activation functions, each a `jax.custom_vjp` whose derivative is written by hand.

Every function maps an array of any shape to an array of the same shape (softmax
and log-softmax normalise along `axis`; maxout shrinks the last axis by `pieces`).
Each takes `backward="custom"` (the hand-derived rule below the forward) or
`backward="autodiff"` (plain autodiff of the same forward). Integer inputs are
promoted to the default float dtype. Derivations: docs/derivations/activations_losses.md.

Conventions at the kinks: relu, leaky_relu, prelu and rrelu use the x > 0 branch
only for x strictly positive, so their derivative at x = 0 is the negative-side
slope (0 for relu). Maxout routes the gradient to the first maximal piece.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from fcnn._checks import (
    check_axis, check_backward, check_bool, check_int, check_number, number_or_array,
)
from fcnn.ops.hand_rule import hand_rule


def as_float(x) -> jax.Array:
    """x as a JAX array, integer and bool inputs promoted to the default float dtype."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def sum_to_shape(g: jax.Array, shape) -> jax.Array:
    """Sums `g` over the axes along which an array of `shape` was broadcast to g.shape.

    `shape` has the rank of `g` (size-1 axes were broadcast); this is the adjoint of
    broadcasting, used by every backward rule whose argument was broadcast.
    """
    shape = tuple(shape)
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return (g.sum(axis=axes, keepdims=True) if axes else g).reshape(shape)


def _output_rule(name, f, derivative_from_output):
    """An element-wise op whose derivative is a function of its output y = f(x):
    the forward keeps only y, the backward returns g * f'(x) computed from y."""

    def fwd(x):
        y = f(x)
        return y, y

    def bwd(y, g):
        return (g * derivative_from_output(y),)

    return hand_rule(name, f, fwd, bwd)


# sigmoid: f = 1 / (1 + e^-x),  f' = f (1 - f): only the output is kept.
def sigmoid_derivative(y):
    """sigma'(x) from y = sigma(x)."""
    return y * (1 - y)


_SIGMOID = _output_rule("sigmoid", lax.logistic, sigmoid_derivative)


def sigmoid(x, *, backward: str = "custom") -> jax.Array:
    """Logistic sigmoid f(x) = 1 / (1 + e^-x), element-wise; f'(x) = f(x) (1 - f(x)).

    Shapes: any -> same. Saturates: f'(0) = 1/4 and f' ~ 0 for |x| >> 1.
    """
    return _SIGMOID.select(backward)(as_float(x))


# tanh: f' = 1 - f^2 (the notes print -tanh^2, a typo: the derivative at 0 is 1).
def tanh_derivative(y):
    """tanh'(x) from y = tanh(x)."""
    return 1 - y * y


_TANH = _output_rule("tanh", jnp.tanh, tanh_derivative)


def tanh(x, *, backward: str = "custom") -> jax.Array:
    """Hyperbolic tangent, element-wise; f'(x) = 1 - f(x)^2.

    Shapes: any -> same. tanh(x) = 2 sigmoid(2x) - 1: a zero-centred, rescaled sigmoid.
    """
    return _TANH.select(backward)(as_float(x))


# relu: f = max(0, x),  f' = [x > 0]  (0 at x = 0). NaN stays NaN (as in jax.nn.relu),
# so a diverging network shows up in its loss rather than being silently zeroed.
def _relu_plain(x):
    return jnp.where((x > 0) | jnp.isnan(x), x, jnp.zeros_like(x))


def _relu_fwd(x):
    return _relu_plain(x), x


def _relu_bwd(x, g):
    return (jnp.where(x > 0, g, jnp.zeros_like(g)),)


_RELU = hand_rule("relu", _relu_plain, _relu_fwd, _relu_bwd)


def relu(x, *, backward: str = "custom") -> jax.Array:
    """Rectified linear unit f(x) = max(0, x); f'(x) = 1 if x > 0 else 0 (0 at x = 0).

    Shapes: any -> same.
    """
    return _RELU.select(backward)(as_float(x))


# prelu: f = x if x > 0 else a x,  df/dx = [x > 0] + a [x <= 0],  df/da = x [x <= 0],
# summed over every position that shares the slope a.
def _prelu_plain(x, slope):
    return jnp.where(x > 0, x, slope * x)


def _prelu_fwd(x, slope):
    return _prelu_plain(x, slope), (x, slope)


def _prelu_bwd(res, g):
    x, slope = res
    positive = x > 0
    dx = jnp.where(positive, g, slope * g)
    dslope = sum_to_shape(jnp.where(positive, jnp.zeros_like(g), g * x), slope.shape)
    return dx, dslope.astype(slope.dtype)


_PRELU = hand_rule("prelu", _prelu_plain, _prelu_fwd, _prelu_bwd)


def _expand_slope(x: jax.Array, slope, name: str) -> jax.Array:
    """Reshapes a slope of shape () or matching x's trailing axes to x's rank."""
    slope = jnp.asarray(slope)
    if not jnp.issubdtype(slope.dtype, jnp.inexact):
        slope = slope.astype(x.dtype)
    s, xs = slope.shape, x.shape
    if len(s) > len(xs) or any(a not in (1, b) for a, b in zip(s, xs[len(xs) - len(s):])):
        channels = f"({xs[-1]},)" if xs else "()"
        raise ValueError(
            f"{name} has shape {s}: expected () (one slope shared by all units) or "
            f"{channels} (one per channel, the last axis), or any shape matching the "
            f"trailing axes of x, which has shape {xs}"
        )
    return slope.reshape((1,) * (len(xs) - len(s)) + s)


def prelu(x, slope, *, backward: str = "custom") -> jax.Array:
    """Parametric ReLU f(x) = x if x > 0 else a x, with a learnable slope a.

    Shapes: x any; slope () (shared) or (C,) for channels-last x (..., C), or any
    shape matching x's trailing axes. df/dx = 1 or a; df/da = sum of x over the
    non-positive positions that share a (He et al., 2015).
    """
    x = as_float(x)
    return _PRELU.select(backward)(x, _expand_slope(x, slope, "slope"))


def leaky_relu(x, negative_slope: float = 0.01, *, backward: str = "custom") -> jax.Array:
    """Leaky ReLU f(x) = x if x > 0 else negative_slope * x; f' = 1 or negative_slope.

    Shapes: any -> same. A PReLU whose slope is fixed (Darknet uses 0.1). The slope may
    be an array (e.g. traced, to vmap over slopes); it receives a gradient like PReLU's.
    """
    negative_slope = number_or_array(negative_slope, "negative_slope")
    x = as_float(x)
    slope = jnp.asarray(negative_slope, x.dtype)
    return _PRELU.select(backward)(x, _expand_slope(x, slope, "negative_slope"))


def check_rrelu_bounds(lower, upper) -> tuple[float, float]:
    """Validates RReLU's slope range: finite numbers with lower <= upper."""
    lower = check_number(lower, "lower")
    upper = check_number(upper, "upper")
    if lower > upper:
        raise ValueError(
            f"lower={lower!r}, upper={upper!r}: RReLU draws slopes from [lower, upper], "
            "so lower must be <= upper"
        )
    return lower, upper


def rrelu(
    x,
    *,
    lower: float = 1 / 8,
    upper: float = 1 / 3,
    train: bool,
    rng=None,
    backward: str = "custom",
) -> jax.Array:
    """Randomized leaky ReLU: x if x > 0 else a x (Xu et al., 2015).

    Training: one slope a ~ U[lower, upper] per element, drawn from `rng`.
    Evaluation: the fixed mean slope (lower + upper) / 2. df/dx = 1 or a.
    Shapes: any -> same.
    """
    lower, upper = check_rrelu_bounds(lower, upper)
    check_backward(backward)
    train = check_bool(train, "rrelu: train")
    x = as_float(x)
    if not train:
        return leaky_relu(x, (lower + upper) / 2, backward=backward)
    if rng is None:
        raise ValueError(
            "rrelu(train=True) needs an rng to draw the slopes: pass rng=key, "
            "or train=False for the fixed mean slope"
        )
    slope = jax.random.uniform(rng, x.shape, x.dtype, lower, upper)
    return _PRELU.select(backward)(x, slope)


def _split_sign(x):
    """(x where x > 0 else 0, x where x <= 0 else 0), each with derivative 1 on its side.

    Used to keep exponentials finite in the branch `where` discards: jnp.maximum and
    jnp.abs would also do that, but their derivative at x = 0 is 1/2 or arbitrary,
    which would make plain autodiff of the forward wrong exactly at 0.
    """
    zero = jnp.zeros_like(x)
    positive = x > 0
    return jnp.where(positive, x, zero), jnp.where(positive, zero, x)


# softplus: f = log(1 + e^x) = x + log1p(e^-x) for x > 0, log1p(e^x) otherwise
# (never overflows),  f' = sigmoid(x).
def _softplus_plain(x):
    xp, xn = _split_sign(x)
    return jnp.where(x > 0, xp + jnp.log1p(jnp.exp(-xp)), jnp.log1p(jnp.exp(xn)))


def _softplus_fwd(x):
    return _softplus_plain(x), x


def _softplus_bwd(x, g):
    return (g * lax.logistic(x),)


_SOFTPLUS = hand_rule("softplus", _softplus_plain, _softplus_fwd, _softplus_bwd)


def softplus(x, *, backward: str = "custom") -> jax.Array:
    """Softplus f(x) = log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|); f' = sigmoid(x).

    Shapes: any -> same. Finite for every finite x (e.g. softplus(1000) = 1000).
    """
    return _SOFTPLUS.select(backward)(as_float(x))


# elu: f = x if x > 0 else alpha (e^x - 1),  f' = 1 or alpha e^x (= f + alpha).
# Exponentials see only the x <= 0 part, so autodiff gets no inf * 0 = nan.
def _elu_plain(alpha, x):
    _, xn = _split_sign(x)
    return jnp.where(x > 0, x, alpha * jnp.expm1(xn))


def _elu_fwd(alpha, x):
    return _elu_plain(alpha, x), x


def _elu_bwd(alpha, x, g):
    _, xn = _split_sign(x)
    return (jnp.where(x > 0, g, g * alpha * jnp.exp(xn)),)


_ELU = hand_rule("elu", _elu_plain, _elu_fwd, _elu_bwd, nondiff_argnums=(0,))


def elu(x, alpha: float = 1.0, *, backward: str = "custom") -> jax.Array:
    """Exponential linear unit: x if x > 0 else alpha (e^x - 1) (Clevert et al., 2016).

    Shapes: any -> same. f' = 1 for x > 0, alpha e^x otherwise.
    """
    alpha = check_number(alpha, "alpha")
    return _ELU.select(backward)(alpha, as_float(x))


# Klambauer et al. (2017): the fixed point of mean 0 and variance 1.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(x, *, backward: str = "custom") -> jax.Array:
    """Scaled ELU: scale * elu(x, alpha) with the self-normalising constants.

    Shapes: any -> same. f' = scale for x > 0, scale alpha e^x otherwise.
    """
    return SELU_SCALE * elu(x, SELU_ALPHA, backward=backward)


# gelu (exact): f = x Phi(x),  f' = Phi(x) + x phi(x).
# gelu (tanh):  f = x/2 (1 + tanh u), u = c (x + 0.044715 x^3), c = sqrt(2/pi),
#               f' = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2).
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715


def _gelu_plain(approximate, x):
    if approximate:
        return 0.5 * x * (1 + jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)))
    return 0.5 * x * lax.erfc(-x / math.sqrt(2))


def _gelu_fwd(approximate, x):
    return _gelu_plain(approximate, x), x


def _gelu_bwd(approximate, x, g):
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3))
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du),)
    cdf = 0.5 * lax.erfc(-x / math.sqrt(2))
    pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return (g * (cdf + x * pdf),)


_GELU = hand_rule("gelu", _gelu_plain, _gelu_fwd, _gelu_bwd, nondiff_argnums=(0,))


def gelu(x, approximate: bool = False, *, backward: str = "custom") -> jax.Array:
    """Gaussian error linear unit x Phi(x) (Hendrycks & Gimpel, 2016).

    Shapes: any -> same. approximate=False: the exact form with the normal CDF Phi;
    approximate=True: the tanh approximation. f' = Phi(x) + x phi(x) (exact form).
    """
    return _GELU.select(backward)(check_bool(approximate, "approximate"), as_float(x))


# silu: f = x s(x),  f' = s + x s (1 - s) = s (1 + x (1 - s)).
def _silu_plain(x):
    return x * lax.logistic(x)


def _silu_fwd(x):
    return _silu_plain(x), x


def _silu_bwd(x, g):
    s = lax.logistic(x)
    return (g * s * (1 + x * (1 - s)),)


_SILU = hand_rule("silu", _silu_plain, _silu_fwd, _silu_bwd)


def silu(x, *, backward: str = "custom") -> jax.Array:
    """SiLU / swish f(x) = x sigmoid(x); f' = s (1 + x (1 - s)) with s = sigmoid(x).

    Shapes: any -> same (Elfwing et al., 2018; Ramachandran et al., 2017).
    """
    return _SILU.select(backward)(as_float(x))


swish = silu


# softmax: p = e^(x - max) / sum e^(x - max) (the shift changes nothing but overflow),
# dp_i/dx_j = p_i ([i = j] - p_j), so the VJP is  p * (g - sum(g p)).
def _softmax_plain(axis, x):
    z = x - lax.stop_gradient(x.max(axis=axis, keepdims=True))
    e = jnp.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_fwd(axis, x):
    p = _softmax_plain(axis, x)
    return p, p


def _softmax_bwd(axis, p, g):
    return (p * (g - (g * p).sum(axis=axis, keepdims=True)),)


_SOFTMAX = hand_rule("softmax", _softmax_plain, _softmax_fwd, _softmax_bwd, nondiff_argnums=(0,))


def softmax(x, axis: int = -1, *, backward: str = "custom") -> jax.Array:
    """Softmax along `axis`: p_i = e^x_i / sum_j e^x_j, shifted by the max for stability.

    Shapes: any -> same; every slice along `axis` sums to 1.
    VJP: p * (g - sum(g p)) along `axis`.
    """
    x = as_float(x)
    axis = check_axis(axis, x.ndim, shape=x.shape)
    return _SOFTMAX.select(backward)(axis, x)


# log_softmax: l = z - log sum e^z with z = x - max,  dl_i/dx_j = [i = j] - p_j,
# so the VJP is  g - p sum(g)  with p = e^l.
def _log_softmax_plain(axis, x):
    z = x - lax.stop_gradient(x.max(axis=axis, keepdims=True))
    return z - jnp.log(jnp.exp(z).sum(axis=axis, keepdims=True))


def _log_softmax_fwd(axis, x):
    y = _log_softmax_plain(axis, x)
    return y, y


def _log_softmax_bwd(axis, y, g):
    return (g - jnp.exp(y) * g.sum(axis=axis, keepdims=True),)


_LOG_SOFTMAX = hand_rule(
    "log_softmax", _log_softmax_plain, _log_softmax_fwd, _log_softmax_bwd, nondiff_argnums=(0,)
)


def log_softmax(x, axis: int = -1, *, backward: str = "custom") -> jax.Array:
    """log(softmax(x)) along `axis`, as z - log sum e^z with z = x - max(x).

    Shapes: any -> same. Finite where log(softmax(x)) underflows (e.g. x = [1000, -1000]).
    VJP: g - softmax(x) sum(g) along `axis`.
    """
    x = as_float(x)
    axis = check_axis(axis, x.ndim, shape=x.shape)
    return _LOG_SOFTMAX.select(backward)(axis, x)


# maxout: y_f = max_j x_(f, j) over the k pieces of feature f; the gradient goes to the
# maximal piece (the first one on ties; autodiff of max splits ties evenly instead).
def _maxout_plain(pieces, x):
    return x.reshape(x.shape[:-1] + (x.shape[-1] // pieces, pieces)).max(axis=-1)


def _maxout_fwd(pieces, x):
    xr = x.reshape(x.shape[:-1] + (x.shape[-1] // pieces, pieces))
    return xr.max(axis=-1), jnp.argmax(xr, axis=-1)


def _maxout_bwd(pieces, winner, g):
    routed = g[..., None] * jax.nn.one_hot(winner, pieces, dtype=g.dtype)
    return (routed.reshape(routed.shape[:-2] + (-1,)),)


_MAXOUT = hand_rule("maxout", _maxout_plain, _maxout_fwd, _maxout_bwd, nondiff_argnums=(0,))


PIECES_HINT = "(maxout needs k >= 2 linear pieces per unit; k = 1 is a plain linear unit)"


def check_pieces(pieces) -> int:
    """Maxout needs at least two linear pieces (one piece is just a linear unit)."""
    return check_int(pieces, "pieces", low=2, hint=PIECES_HINT)


def maxout(x, pieces: int, *, backward: str = "custom") -> jax.Array:
    """Maxout over groups of `pieces` channels: y_f = max_j x[..., f * pieces + j].

    Shapes: (..., F * pieces) -> (..., F). Apply it to a Dense or Conv output with
    `pieces` times the features (Goodfellow et al., 2013). dy_f/dx = one-hot of the
    first maximal piece.
    """
    pieces = check_pieces(pieces)
    x = as_float(x)
    if x.ndim == 0 or x.shape[-1] % pieces:
        raise ValueError(
            f"maxout: x has shape {x.shape}: the last axis must hold features * pieces "
            f"channels, a multiple of pieces={pieces}"
        )
    return _MAXOUT.select(backward)(pieces, x)


# ----------------------------------------------------------------------------------
# The table: every activation once. The layers (fcnn.layers.activations) and the
# diagnostics (fcnn.diagnostics) are generated from it, so adding an element-wise
# activation is its op above plus one entry here.


@dataclass(frozen=True)
class ActivationSpec:
    """One activation as every tool sees it.

    name: the registry name, `fcnn.Activation(name)`.
    fn: the op, fn(x, **options, backward=...).
    layer: the layer constructor's name, `fcnn.<layer>(**options)`.
    options: keyword options of the op -> (default, check(value, name) -> value).
    derivative_from_output: y -> f'(x) with y = f(x), for activations that saturate
      (sigmoid, tanh); diagnostics count a value as saturated when this is below 10%
      of its value at x = 0. None for activations without saturating tails.
    family: "relu" for the rectifiers (identity for x > 0, a fixed, random or
      learned slope below), used by the studies to group them; else None.
    kind: how the layer is built: "elementwise" (generated from this entry),
      "parametric" (PReLU: a learned slope), "stochastic" (RReLU: needs an rng),
      "axis" (softmax: normalises along an axis), "pieces" (maxout: shrinks the last
      axis); the non-elementwise kinds have a hand-written layer.
    """

    name: str
    fn: Callable
    layer: str
    options: Mapping[str, tuple[Any, Callable]] = field(default_factory=dict)
    derivative_from_output: Callable | None = None
    family: str | None = None
    kind: str = "elementwise"

    @property
    def saturates(self) -> bool:
        return self.derivative_from_output is not None


ACTIVATIONS: dict[str, ActivationSpec] = {spec.name: spec for spec in (
    ActivationSpec("sigmoid", sigmoid, "Sigmoid", derivative_from_output=sigmoid_derivative),
    ActivationSpec("tanh", tanh, "Tanh", derivative_from_output=tanh_derivative),
    ActivationSpec("relu", relu, "Relu", family="relu"),
    ActivationSpec("leaky_relu", leaky_relu, "LeakyRelu",
                   {"negative_slope": (0.01, check_number)}, family="relu"),
    ActivationSpec("prelu", prelu, "PRelu", family="relu", kind="parametric"),
    ActivationSpec("rrelu", rrelu, "RRelu", family="relu", kind="stochastic"),
    ActivationSpec("softplus", softplus, "Softplus"),
    ActivationSpec("elu", elu, "Elu", {"alpha": (1.0, check_number)}),
    ActivationSpec("selu", selu, "Selu"),
    ActivationSpec("gelu", gelu, "Gelu", {"approximate": (False, check_bool)}),
    ActivationSpec("silu", silu, "Silu"),
    ActivationSpec("softmax", softmax, "Softmax", kind="axis"),
    ActivationSpec("log_softmax", log_softmax, "LogSoftmax", kind="axis"),
    ActivationSpec("maxout", maxout, "MaxoutUnits", kind="pieces"),
)}
# Other names for the same activation (the spec, the op and the layer are shared).
ALIASES = {"swish": "silu"}

# The built-in names (activation_names() also lists those registered since).
ACTIVATION_NAMES = tuple(list(ACTIVATIONS)[:11] + list(ALIASES) + list(ACTIVATIONS)[11:])


def activation_names() -> tuple[str, ...]:
    """Every name `activation_spec` accepts: the built-in ones, then any registered."""
    return ACTIVATION_NAMES + tuple(n for n in ACTIVATIONS if n not in ACTIVATION_NAMES)


def register_activation(spec: ActivationSpec) -> ActivationSpec:
    """Adds an activation to the table from outside the library: `fcnn.Activation(name)`
    then builds its layer and the diagnostics measure it like a built-in one."""
    if not isinstance(spec, ActivationSpec):
        raise TypeError(f"spec={spec!r}: expected an ActivationSpec")
    if spec.name in activation_names():
        raise ValueError(f"activation {spec.name!r} is already in the table")
    if spec.kind != "elementwise":
        raise ValueError(f"spec.kind={spec.kind!r}: only element-wise activations can be registered; "
                         "write a Layer with role ACTIVATION for the others")
    ACTIVATIONS[spec.name] = spec
    return spec


def activation_spec(name: str) -> ActivationSpec:
    """The table entry registered under `name` (one of `activation_names()`)."""
    if not isinstance(name, str):
        raise TypeError(f"activation={name!r}: expected a name (str), one of {activation_names()}")
    if name not in activation_names():
        raise ValueError(
            f"activation={name!r}: unknown activation; valid names are {activation_names()}"
        )
    return ACTIVATIONS[ALIASES.get(name, name)]


def get_activation(name: str):
    """The activation function registered under `name` (one of ACTIVATION_NAMES).

    prelu takes a slope array, rrelu takes train/rng and maxout the number of pieces;
    the others need only x. `fcnn.Activation(name)` builds the matching layer.
    """
    return activation_spec(name).fn
