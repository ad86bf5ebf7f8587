"""Activation layers, generated from the table `fcnn.ops.activations.ACTIVATIONS`.

Every element-wise activation of the table becomes a layer constructor named as the
entry says (`fcnn.Relu()`, `fcnn.LeakyRelu(negative_slope=0.1)`, ...) whose keyword
arguments are the entry's options; `Activation(name, **options)` builds any of them
by name, so an experiment can sweep over names. The activations that are more than
an element-wise function have a layer written here: PRelu (a learned slope), RRelu
(random slopes, needs an rng in training), Softmax/LogSoftmax (an axis) and Maxout
(the max over groups of channels, which shrinks the last axis).

Every activation layer has role ACTIVATION and carries its table entry in
`layer.info["activation"]`, which is what the diagnostics read.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from fcnn._checks import check_axis, check_backward, check_number, is_int
from fcnn.layers.base import ACTIVATION, Layer, check_train_flag, require_rng
from fcnn.ops import activations as act


def _activation_layer(spec: act.ActivationSpec, display: str, init, apply) -> Layer:
    return Layer(init, apply, name=display, role=ACTIVATION, info={"activation": spec})


def _shape_preserving_init(rng, input_shape):
    del rng
    return tuple(input_shape), {}, {}


def _display(spec: act.ActivationSpec, options: dict) -> str:
    changed = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
               for k, v in options.items() if v != spec.options[k][0]]
    return f"{spec.layer}({', '.join(changed)})" if changed else spec.layer


def _elementwise_constructor(spec: act.ActivationSpec):
    """The layer constructor of an element-wise entry: its options as arguments, in the
    order of the entry (positional or by keyword)."""

    def constructor(*args, backward: str = "custom", **options) -> Layer:
        if len(args) > len(spec.options):
            raise TypeError(
                f"{spec.layer}() takes {len(spec.options)} positional argument(s) "
                f"({', '.join(spec.options) or 'none'}), got {len(args)}"
            )
        for name, value in zip(spec.options, args):
            if name in options:
                raise TypeError(f"{spec.layer}() got multiple values for argument {name!r}")
            options[name] = value
        unknown = sorted(set(options) - set(spec.options))
        if unknown:
            raise TypeError(
                f"{spec.layer}() got an unexpected keyword argument {unknown[0]!r}; its options "
                f"are {sorted(spec.options) or 'none'}"
            )
        values = {k: check(options.get(k, default), k) for k, (default, check) in spec.options.items()}
        fn = functools.partial(spec.fn, **values, backward=check_backward(backward))
        display = _display(spec, values)

        def apply(params, state, x, *, train, rng=None):
            del params, rng
            check_train_flag(train, display)
            return fn(x), state

        return _activation_layer(spec, display, _shape_preserving_init, apply)

    constructor.__name__ = constructor.__qualname__ = spec.layer
    options = ", ".join(f"{k}={d!r}" for k, (d, _) in spec.options.items())
    constructor.__doc__ = f"The {spec.name} activation as a layer ({options or 'no options'}); " \
                          f"see fcnn.ops.activations.{spec.fn.__name__}."
    return constructor


def PRelu(shared: bool = False, init: float = 0.25, *, backward: str = "custom") -> Layer:
    """f(x) = x if x > 0 else a x with a learnable slope a (He et al., 2015).

    params: {"slope": ()} if `shared`, else {"slope": (C,)}, one per channel (the
    last axis of x), every entry initialised to `init`.
    """
    if not isinstance(shared, bool):
        raise TypeError(f"shared={shared!r}: expected True (one slope) or False (one per channel)")
    init_value = check_number(init, "init")
    check_backward(backward)
    display = "PRelu(shared)" if shared else "PRelu"

    def init_fn(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if shared:
            return input_shape, {"slope": jnp.full((), init_value, jnp.float32)}, {}
        if len(input_shape) < 2 or not is_int(input_shape[-1]) or input_shape[-1] < 1:
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

    return _activation_layer(act.ACTIVATIONS["prelu"], display, init_fn, apply)


def RRelu(lower: float = 1 / 8, upper: float = 1 / 3, *, backward: str = "custom") -> Layer:
    """Randomized leaky ReLU (Xu et al., 2015): in training one slope per element drawn
    from the uniform distribution U[lower, upper] (as in the RReLU paper; a Gaussian,
    as one source of the notes has it, is not what the paper uses), at evaluation the
    mean slope (lower + upper) / 2. Needs an rng when train=True."""
    lower, upper = act.check_rrelu_bounds(lower, upper)
    check_backward(backward)
    display = f"RRelu({lower:.4g}, {upper:.4g})"

    def apply(params, state, x, *, train, rng=None):
        del params
        train = check_train_flag(train, display)
        if train:
            require_rng(rng, display)
        y = act.rrelu(x, lower=lower, upper=upper, train=train, rng=rng, backward=backward)
        return y, state

    return _activation_layer(act.ACTIVATIONS["rrelu"], display, _shape_preserving_init, apply)


def _axis_layer(spec: act.ActivationSpec, axis: int, backward: str) -> Layer:
    """A softmax-like layer: checks `axis` against the input rank at init."""
    if not is_int(axis):
        raise TypeError(f"axis={axis!r}: expected an int")
    check_backward(backward)
    display = f"{spec.layer}(axis={axis})"

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        check_axis(axis, len(input_shape), f"{display}: axis", shape=input_shape)
        return input_shape, {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, display)
        return spec.fn(x, axis=axis, backward=backward), state

    return _activation_layer(spec, display, init, apply)


def Softmax(axis: int = -1, *, backward: str = "custom") -> Layer:
    """Softmax along `axis` (default: the last, the classes)."""
    return _axis_layer(act.ACTIVATIONS["softmax"], axis, backward)


def LogSoftmax(axis: int = -1, *, backward: str = "custom") -> Layer:
    """log(softmax(x)) along `axis`, computed stably."""
    return _axis_layer(act.ACTIVATIONS["log_softmax"], axis, backward)


def MaxoutUnits(pieces: int = 2, *, backward: str = "custom") -> Layer:
    """Maxout units over the channel axis: (N, ..., F * pieces) -> (N, ..., F).

    y_f = max_j x[..., f * pieces + j] (Goodfellow et al., 2013); put it after a Conv
    or Dense with `pieces` times the features (`fcnn.Maxout` builds both at once).
    The gradient goes to the first maximal piece. No params, no state.
    """
    pieces = act.check_pieces(pieces)
    check_backward(backward)
    display = f"MaxoutUnits({pieces})"

    def init(rng, input_shape):
        del rng
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] % pieces:
            raise ValueError(
                f"{display}: input_shape={input_shape}: the last axis must hold features * "
                f"pieces channels, a multiple of {pieces}"
            )
        return input_shape[:-1] + (input_shape[-1] // pieces,), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, display)
        return act.maxout(x, pieces, backward=backward), state

    return _activation_layer(act.ACTIVATIONS["maxout"], display, init, apply)


_WRITTEN = {"prelu": PRelu, "rrelu": RRelu, "softmax": Softmax, "log_softmax": LogSoftmax,
            "maxout": MaxoutUnits}
_CONSTRUCTORS = {
    name: _WRITTEN[name] if spec.kind != "elementwise" else _elementwise_constructor(spec)
    for name, spec in act.ACTIVATIONS.items()
}
globals().update({spec.layer: _CONSTRUCTORS[name] for name, spec in act.ACTIVATIONS.items()
                  if spec.kind == "elementwise"})
Swish = globals()[act.ACTIVATIONS[act.ALIASES["swish"]].layer]

__all__ = ["Activation", "MaxoutUnits", "PRelu", "RRelu", "Softmax", "LogSoftmax", "Swish"] + [
    spec.layer for spec in act.ACTIVATIONS.values() if spec.kind == "elementwise"]


def Activation(name: str, **kwargs) -> Layer:
    """The activation layer registered under `name`, built with `kwargs`.

    `name` is one of `fcnn.ops.activations.ACTIVATION_NAMES`, e.g.
    Activation("leaky_relu", negative_slope=0.1) or Activation("prelu", shared=True).
    """
    spec = act.activation_spec(name)
    constructor = _CONSTRUCTORS.get(spec.name) or _elementwise_constructor(spec)  # registered later
    return constructor(**kwargs)
