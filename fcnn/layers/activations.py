"""Activation layers: one per activation, and `Activation(name)` to pick one by name.

All are shape-preserving. Only PRelu has params ({"slope": () or (C,)}); only RRelu
is stochastic (it needs an rng when train=True). The functions are in
`fcnn.ops.activations`; `Activation(name, **kwargs)` accepts every name in
`ACTIVATION_NAMES`, so an experiment can sweep over names.
"""

from __future__ import annotations

import functools
import numbers

import jax.numpy as jnp

from fcnn import _checks
from fcnn._checks import check_backward
from fcnn.layers.base import Layer, check_train_flag, make_layer, require_rng
from fcnn.ops import activations as act


def _elementwise(display: str, fn) -> Layer:
    """A layer without params or state: y = fn(x), same shape as x."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, display)
        return fn(x), state

    return make_layer(display, init, apply)


def Sigmoid(*, backward: str = "custom") -> Layer:
    """f(x) = 1 / (1 + e^-x), element-wise."""
    return _elementwise("Sigmoid", functools.partial(act.sigmoid, backward=check_backward(backward)))


def Tanh(*, backward: str = "custom") -> Layer:
    """f(x) = tanh(x), element-wise."""
    return _elementwise("Tanh", functools.partial(act.tanh, backward=check_backward(backward)))


def Relu(*, backward: str = "custom") -> Layer:
    """f(x) = max(0, x), element-wise (derivative 0 at x = 0)."""
    return _elementwise("Relu", functools.partial(act.relu, backward=check_backward(backward)))


def LeakyRelu(negative_slope: float = 0.01, *, backward: str = "custom") -> Layer:
    """f(x) = x if x > 0 else negative_slope * x (Darknet uses negative_slope=0.1)."""
    negative_slope = act.check_real(negative_slope, "negative_slope")
    fn = functools.partial(
        act.leaky_relu, negative_slope=negative_slope, backward=check_backward(backward)
    )
    return _elementwise(f"LeakyRelu({negative_slope:g})", fn)


def PRelu(shared: bool = False, init: float = 0.25, *, backward: str = "custom") -> Layer:
    """f(x) = x if x > 0 else a x with a learnable slope a (He et al., 2015).

    params: {"slope": ()} if `shared`, else {"slope": (C,)}, one per channel (the
    last axis of x), every entry initialised to `init`.
    """
    if not isinstance(shared, bool):
        raise TypeError(f"shared={shared!r}: expected True (one slope) or False (one per channel)")
    init_value = act.check_real(init, "init")
    check_backward(backward)
    display = "PRelu(shared)" if shared else "PRelu"

    def init_fn(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if shared:
            return input_shape, {"slope": jnp.full((), init_value, jnp.float32)}, {}
        if len(input_shape) < 2 or not isinstance(input_shape[-1], numbers.Integral) or input_shape[-1] < 1:
            raise ValueError(
                f"PRelu: input_shape={input_shape}: one slope per channel needs "
                "(batch, ..., channels) with a known channel count; use shared=True "
                "for one slope"
            )
        slope = jnp.full((int(input_shape[-1]),), init_value, jnp.float32)
        return input_shape, {"slope": slope}, {}

    def apply(params, state, x, *, train, rng=None):
        del rng
        check_train_flag(train, display)
        return act.prelu(x, params["slope"], backward=backward), state

    return make_layer(display, init_fn, apply)


def RRelu(lower: float = 1 / 8, upper: float = 1 / 3, *, backward: str = "custom") -> Layer:
    """Randomized leaky ReLU: slopes ~ U[lower, upper] per element in training, the mean
    slope (lower + upper) / 2 at evaluation. Needs an rng when train=True."""
    lower, upper = act.check_rrelu_bounds(lower, upper)
    check_backward(backward)
    display = f"RRelu({lower:.4g}, {upper:.4g})"

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params
        train = check_train_flag(train, display)
        if train:
            require_rng(rng, display)
        y = act.rrelu(x, lower=lower, upper=upper, train=train, rng=rng, backward=backward)
        return y, state

    return make_layer(display, init, apply)


def Softplus(*, backward: str = "custom") -> Layer:
    """f(x) = log(1 + e^x), element-wise, computed without overflow."""
    return _elementwise("Softplus", functools.partial(act.softplus, backward=check_backward(backward)))


def Elu(alpha: float = 1.0, *, backward: str = "custom") -> Layer:
    """f(x) = x if x > 0 else alpha (e^x - 1)."""
    alpha = act.check_real(alpha, "alpha")
    fn = functools.partial(act.elu, alpha=alpha, backward=check_backward(backward))
    return _elementwise(f"Elu({alpha:g})", fn)


def Selu(*, backward: str = "custom") -> Layer:
    """Scaled ELU with the self-normalising constants (Klambauer et al., 2017)."""
    return _elementwise("Selu", functools.partial(act.selu, backward=check_backward(backward)))


def Gelu(approximate: bool = False, *, backward: str = "custom") -> Layer:
    """f(x) = x Phi(x) (exact), or its tanh approximation if `approximate`."""
    approximate = _checks.check_bool(approximate, "approximate")
    fn = functools.partial(act.gelu, approximate=approximate, backward=check_backward(backward))
    return _elementwise("Gelu(tanh)" if approximate else "Gelu", fn)


def Silu(*, backward: str = "custom") -> Layer:
    """f(x) = x sigmoid(x) (SiLU, also called swish)."""
    return _elementwise("Silu", functools.partial(act.silu, backward=check_backward(backward)))


Swish = Silu


def _axis_layer(display: str, fn, axis: int, backward: str) -> Layer:
    """A softmax-like layer: checks `axis` against the input rank at init."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis={axis!r}: expected an int")
    check_backward(backward)

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if not -len(input_shape) <= axis < len(input_shape):
            raise ValueError(
                f"{display}: axis={axis} is out of range for input_shape={input_shape}"
            )
        return input_shape, {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, display)
        return fn(x, axis=axis, backward=backward), state

    return make_layer(display, init, apply)


def Softmax(axis: int = -1, *, backward: str = "custom") -> Layer:
    """Softmax along `axis` (default: the last, the classes)."""
    return _axis_layer(f"Softmax(axis={axis})", act.softmax, axis, backward)


def LogSoftmax(axis: int = -1, *, backward: str = "custom") -> Layer:
    """log(softmax(x)) along `axis`, computed stably."""
    return _axis_layer(f"LogSoftmax(axis={axis})", act.log_softmax, axis, backward)


_LAYERS = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": Relu,
    "leaky_relu": LeakyRelu,
    "prelu": PRelu,
    "rrelu": RRelu,
    "softplus": Softplus,
    "elu": Elu,
    "selu": Selu,
    "gelu": Gelu,
    "silu": Silu,
    "swish": Swish,
    "softmax": Softmax,
    "log_softmax": LogSoftmax,
}
if tuple(_LAYERS) != act.ACTIVATION_NAMES:  # pragma: no cover - a wiring mistake
    raise ImportError("activation layers and activation functions are registered differently")


def Activation(name: str, **kwargs) -> Layer:
    """The activation layer registered under `name`, built with `kwargs`.

    `name` is one of `fcnn.ops.activations.ACTIVATION_NAMES`, e.g.
    Activation("leaky_relu", negative_slope=0.1) or Activation("prelu", shared=True).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"activation={name!r}: expected a name (str), one of {act.ACTIVATION_NAMES}"
        )
    if name not in _LAYERS:
        raise ValueError(
            f"activation={name!r}: unknown activation; valid names are {act.ACTIVATION_NAMES}"
        )
    return _LAYERS[name](**kwargs)


