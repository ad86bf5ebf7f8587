"""The layer protocol: `Layer(init, apply)`, and the combinators that compose layers.

A layer is a pair of pure functions:

    init(rng, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, train, rng=None) -> (y, new_state)

`input_shape` includes the batch dimension (which may be -1). `params` and `state`
are dicts (pytrees); `state` is `{}` for stateless layers. `train` is keyword-only
and has no default. Combinators are layers too: they split the rng per child and
thread `state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fcnn._checks import check_axis, is_int, positive_int

Shape = tuple[int, ...]
Params = Any
State = Any

MISSING_RNG = (
    "{layer} needs an rng in training mode: call "
    "apply(params, state, x, train=True, rng=key), or use train=False for evaluation"
)


class InitFn(Protocol):
    def __call__(self, rng: jax.Array, input_shape: Shape) -> tuple[Any, Params, State]:
        ...


class ApplyFn(Protocol):
    def __call__(
        self, params: Params, state: State, x: Any, *, train: bool, rng: jax.Array | None = None
    ) -> tuple[Any, State]:
        ...


# Roles: what a layer does, as tools (summary, diagnostics, probes) read it.
ACTIVATION = "activation"
NORMALIZATION = "normalization"
CONVOLUTION = "convolution"
DENSE = "dense"
POOLING = "pooling"
DROPOUT = "dropout"
SERIAL = "serial"  # children applied one after another, params/state keyed "0", "1", ...


class _Functions(NamedTuple):
    init: InitFn
    apply: ApplyFn


class Layer(_Functions):
    """A layer: two pure functions, and plain data about them that tools read.

    `init, apply = layer` always works (a layer is the pair). Beside the pair it
    carries `name` (e.g. "Conv(32, 3)"), `children` (the layers it is built from, in
    the order its params are keyed), `role` (ACTIVATION, NORMALIZATION, CONVOLUTION,
    DENSE, POOLING, DROPOUT, SERIAL or None) and `info` (a mapping of anything else a
    tool may need, e.g. {"activation": <ActivationSpec>}). A layer written by a user
    with this constructor is as visible to `summary` and the diagnostics as a built-in.
    """

    def __new__(cls, init: InitFn, apply: ApplyFn, name: str | None = None,
                children: Sequence["Layer"] = (), role: str | None = None,
                info: Mapping[str, Any] | None = None):
        if not (callable(init) and callable(apply)):
            raise TypeError(
                f"Layer(init={init!r}, apply={apply!r}): expected two functions, "
                "init(rng, input_shape) and apply(params, state, x, *, train, rng=None)"
            )
        name = name if name is not None else getattr(init, "__qualname__", "layer")
        self = super().__new__(cls, _checked_init(init, name), apply)
        self.name = name
        self.children = _check_layers(tuple(children), f"{self.name}: children", allow_empty=True)
        self.role = role
        self.info = dict(info or {})
        return self

    def __repr__(self) -> str:
        if not self.children or "(" in self.name:  # a name with arguments says it all
            return self.name
        inner = ",\n".join(repr(child) for child in self.children).replace("\n", "\n  ")
        return f"{self.name}(\n  {inner}\n)"

    def _replace(self, **changes) -> "Layer":
        fields = dict(init=self.init, apply=self.apply, name=self.name, children=self.children,
                      role=self.role, info=self.info)
        fields.update(changes)
        return Layer(**fields)


INIT_RNG = (
    "{layer}.init: rng={rng!r}: expected a PRNG key, e.g. model.init(jax.random.PRNGKey(0), "
    "input_shape)"
)
INIT_SHAPE = (
    "{layer}.init: input_shape={shape!r}: expected a tuple of ints with the batch axis first "
    "(-1 or None when the batch size is not fixed), e.g. (None, 28, 28, 1)"
)


def _checked_init(init, name: str):
    """`init` with its arguments checked: a PRNG key (None only for a layer without
    random parameters), and a shape whose batch axis may be None (read as -1, the
    unknown batch size every layer accepts). A layer's init calls
    its children's, so every layer checks what it is given."""
    if getattr(init, "__fcnn_checked__", False):
        return init

    def checked(rng, input_shape):
        if rng is not None and not isinstance(rng, (jax.Array, np.ndarray)):
            raise TypeError(INIT_RNG.format(layer=name, rng=rng))
        return init(rng, _batch_shape(input_shape, name))

    checked.__fcnn_checked__ = True
    checked.__wrapped__ = init
    return checked


def _batch_shape(shape, layer: str):
    """A shape with None as its batch size read as -1; a tuple of shapes (the input of
    a merging layer) each the same way."""
    if not isinstance(shape, (tuple, list)):
        raise TypeError(INIT_SHAPE.format(layer=layer, shape=shape))
    if shape and all(isinstance(s, (tuple, list)) for s in shape):
        return tuple(_batch_shape(s, layer) for s in shape)
    given = tuple(shape)
    shape = (-1,) + given[1:] if given and given[0] is None else given
    if any(d is None for d in shape):
        raise TypeError(INIT_SHAPE.format(layer=layer, shape=given))
    return shape


def make_layer(name: str, init: InitFn, apply: ApplyFn, children: Sequence[Layer] = (),
               role: str | None = None, info: Mapping[str, Any] | None = None) -> Layer:
    """`Layer(init, apply, name, children, role, info)`, the positional form."""
    return Layer(init, apply, name=name, children=children, role=role, info=info)


def walk_layers(layer: Layer):
    """Yields `layer` and every layer it is built from, depth first."""
    yield layer
    for child in layer.children:
        yield from walk_layers(child)


def check_train_flag(train, layer: str) -> bool:
    """`train` must be a Python bool: it selects a code path at trace time."""
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(
            f"{layer}: train={train!r}: expected True or False (a Python bool, "
            "not an array; it selects batch statistics and dropout at trace time)"
        )
    return bool(train)


def require_rng(rng, layer: str) -> jax.Array:
    """Raises the standard missing-rng error for stochastic layers in training."""
    if rng is None:
        raise ValueError(MISSING_RNG.format(layer=layer))
    return rng


def _split(rng, n: int):
    if rng is None:
        return [None] * n
    return list(jax.random.split(rng, n))


def _check_layers(layers, combinator: str, *, allow_empty: bool = False) -> tuple[Layer, ...]:
    if not layers and not allow_empty:
        raise ValueError(f"{combinator}() needs at least one layer, got none")
    if len(layers) == 1 and isinstance(layers[0], list):
        raise TypeError(
            f"{combinator}([...]): got one list of {len(layers[0])} layers: pass the layers as "
            f"separate arguments, {combinator}(a, b), or unpack a list, {combinator}(*layers)"
        )
    for i, layer in enumerate(layers):
        if not (isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer))):
            raise TypeError(
                f"{combinator}: argument {i} is {layer!r}: expected a Layer(init, apply) "
                "(did you forget to call the constructor, e.g. Relu() rather than Relu?)"
            )
    return tuple(layer if isinstance(layer, Layer) else Layer(*layer) for layer in layers)


def _check_children(tree, keys, combinator: str, what: str) -> None:
    """`params` or `state` of a combinator must hold one entry per child, keyed "0", "1", ..."""
    if not isinstance(tree, Mapping) or any(k not in tree for k in keys):
        got = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(
            f"{combinator} of {len(keys)} layers: {what} has keys {got}, expected {keys}; "
            f"pass the {what} returned by this model's init"
        )


def _tuple_of_shapes(input_shape, name: str) -> list[tuple]:
    """The shapes of a merging layer's inputs: a non-empty tuple of shapes."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
        isinstance(s, (list, tuple)) for s in input_shape
    ):
        raise ValueError(
            f"{name}: input_shape={input_shape!r}: expected a tuple of input shapes, one per "
            "branch (put fan_out(n) and parallel(...) before it)"
        )
    return [tuple(s) for s in input_shape]


def _tuple_of_inputs(xs, name: str) -> list[tuple]:
    if not isinstance(xs, (list, tuple)) or not xs:
        raise ValueError(
            f"{name}: got a {type(xs).__name__}: expected a tuple of inputs, one per branch"
        )
    return [tuple(np.shape(x)) for x in xs]


def serial(*layers: Layer) -> Layer:
    """Applies `layers` one after another; params and state are keyed "0", "1", ..."""
    layers = _check_layers(layers, "serial")
    keys = [str(i) for i in range(len(layers))]

    def init(rng, input_shape):
        params, state = {}, {}
        shape = input_shape
        for key, layer, layer_rng in zip(keys, layers, jax.random.split(rng, len(layers))):
            shape, params[key], state[key] = layer.init(layer_rng, shape)
        return shape, params, state

    def apply(params, state, x, *, train, rng=None):
        _check_children(params, keys, "serial", "params")
        _check_children(state, keys, "serial", "state")
        new_state = {}
        for key, layer, layer_rng in zip(keys, layers, _split(rng, len(layers))):
            x, new_state[key] = layer.apply(params[key], state[key], x, train=train, rng=layer_rng)
        return x, new_state

    return Layer(init, apply, name="serial", children=layers, role=SERIAL)


compose = serial


def parallel(*layers: Layer) -> Layer:
    """Applies layer i to input i of a tuple; returns the tuple of outputs.

    Combine with `fan_out` and `fan_in_sum` / `fan_in_concat` for branching models.
    """
    layers = _check_layers(layers, "parallel")
    keys = [str(i) for i in range(len(layers))]

    def init(rng, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != len(layers) or not all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            raise ValueError(
                f"parallel of {len(layers)} layers: input_shape={input_shape!r}: expected a "
                f"tuple of {len(layers)} shapes (use fan_out({len(layers)}) first)"
            )
        params, state, shapes = {}, {}, []
        for key, layer, shape, layer_rng in zip(
            keys, layers, input_shape, jax.random.split(rng, len(layers))
        ):
            out, params[key], state[key] = layer.init(layer_rng, tuple(shape))
            shapes.append(out)
        return tuple(shapes), params, state

    def apply(params, state, xs, *, train, rng=None):
        if not isinstance(xs, (list, tuple)) or len(xs) != len(layers):
            raise ValueError(
                f"parallel of {len(layers)} layers: expected a tuple of {len(layers)} inputs, "
                f"got {type(xs).__name__}"
            )
        _check_children(params, keys, "parallel", "params")
        _check_children(state, keys, "parallel", "state")
        outs, new_state = [], {}
        for key, layer, x, layer_rng in zip(keys, layers, xs, _split(rng, len(layers))):
            y, new_state[key] = layer.apply(params[key], state[key], x, train=train, rng=layer_rng)
            outs.append(y)
        return tuple(outs), new_state

    return Layer(init, apply, name="parallel", children=layers)


def fan_out(num: int) -> Layer:
    """Copies the input into a tuple of `num` identical inputs."""
    num = positive_int(num, "num")

    def init(rng, input_shape):
        del rng
        return (tuple(input_shape),) * num, {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, train, rng
        return (x,) * num, state

    return make_layer(f"fan_out({num})", init, apply)


def fan_in_sum() -> Layer:
    """Sums a tuple of inputs of one shape."""

    def same_shapes(shapes):
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(
                    f"fan_in_sum: input {i} has shape {shape}, expected {shapes[0]} "
                    "like input 0"
                )
        return shapes[0]

    def init(rng, input_shape):
        del rng
        return same_shapes(_tuple_of_shapes(input_shape, "fan_in_sum")), {}, {}

    def apply(params, state, xs, *, train, rng=None):
        del params, train, rng
        same_shapes(_tuple_of_inputs(xs, "fan_in_sum"))  # no silent broadcasting
        return sum(xs[1:], xs[0]), state

    return make_layer("fan_in_sum", init, apply)


def fan_in_concat(axis: int = -1) -> Layer:
    """Concatenates a tuple of inputs along `axis` (default: channels).

    The inputs must have one rank and agree on every other axis.
    """
    if not is_int(axis):
        raise TypeError(f"fan_in_concat: axis={axis!r}: expected an int")
    name = f"fan_in_concat(axis={axis})"

    def check(shapes):
        rank = len(shapes[0])
        ax = check_axis(axis, rank, f"{name}: axis", hint=f"(input 0 has shape {shapes[0]})")
        for i, shape in enumerate(shapes):
            if len(shape) != rank or any(
                a != b for d, (a, b) in enumerate(zip(shape, shapes[0])) if d != ax
            ):
                raise ValueError(
                    f"{name}: input {i} has shape {shape}, but input 0 has shape "
                    f"{shapes[0]}; inputs must agree on every axis but {ax}"
                )
        return ax

    def init(rng, input_shape):
        del rng
        shapes = _tuple_of_shapes(input_shape, name)
        ax = check(shapes)
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        return tuple(out), {}, {}

    def apply(params, state, xs, *, train, rng=None):
        del params, train, rng
        check(_tuple_of_inputs(xs, name))
        return jnp.concatenate(xs, axis=axis), state

    return make_layer(name, init, apply)


def identity() -> Layer:
    """The identity layer."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, train, rng
        return x, state

    return make_layer("identity", init, apply)


def residual(layer: Layer) -> Layer:
    """y = x + layer(x); the layer must preserve the input shape."""
    (layer,) = _check_layers((layer,), "residual")

    def init(rng, input_shape):
        out_shape, params, state = layer.init(rng, input_shape)
        if tuple(out_shape) != tuple(input_shape):
            raise ValueError(
                f"residual: the wrapped layer maps shape {tuple(input_shape)} to "
                f"{tuple(out_shape)}; a residual connection needs the shape unchanged"
            )
        return tuple(input_shape), params, state

    def apply(params, state, x, *, train, rng=None):
        y, new_state = layer.apply(params, state, x, train=train, rng=rng)
        return x + y, new_state

    return Layer(init, apply, name="residual", children=(layer,))


class Intermediate(NamedTuple):
    """One layer's output seen by `apply_with_intermediates`."""

    path: str  # keys into params, e.g. "3" or "5/0"
    layer: Layer  # the layer that produced it (its name, role, info)
    value: Any

    @property
    def name(self) -> str:
        return self.layer.name


def apply_with_intermediates(
    model: Layer, params, state, x, *, train, rng=None
) -> tuple[Any, State, list[Intermediate]]:
    """Applies `model` and also returns every leaf layer's output, in order.

    Walks SERIAL layers recursively (other combinators count as one layer) and
    splits the rng exactly as `serial` does, so `y` equals `model.apply(...)`'s.
    Used by diagnostics (dead units, saturation) and the experiments.
    """
    seen: list[Intermediate] = []

    def walk(layer, params, state, x, rng, prefix):
        if layer.role == SERIAL and layer.children:
            new_state = {}
            children = layer.children
            for i, (child, child_rng) in enumerate(zip(children, _split(rng, len(children)))):
                key = str(i)
                x, new_state[key] = walk(
                    child, params[key], state[key], x, child_rng, f"{prefix}{key}/"
                )
            return x, new_state
        y, new_state = layer.apply(params, state, x, train=train, rng=rng)
        seen.append(Intermediate(prefix.rstrip("/"), layer, y))
        return y, new_state

    y, new_state = walk(_as_layer(model), params, state, x, rng, "")
    return y, new_state, seen


def _as_layer(model) -> Layer:
    return _check_layers((model,), "model")[0]


def count_params(params) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def summary(model: Layer, input_shape: Shape, *, print_fn: Callable[[str], None] | None = print) -> str:
    """Prints (and returns) each layer's output shape, its trainable parameters and its
    non-trainable state (running statistics), as counts of scalars.

    Shapes are computed abstractly with `jax.eval_shape`: no parameters are
    materialised, so large models are cheap to summarise. SERIAL layers are listed
    child by child; any other layer is one row.
    """
    rows: list[tuple[str, str, int, int]] = []

    def walk(layer: Layer, shape, depth: int):
        if layer.role == SERIAL and layer.children:
            for child in layer.children:
                shape = walk(child, shape, depth)
            return shape
        captured = {}

        def init_only(rng):
            captured["out"], p, s = layer.init(rng, shape)
            return p, s

        params, state = jax.eval_shape(init_only, jax.random.PRNGKey(0))
        rows.append(("  " * depth + layer.name, str(captured["out"]), count_params(params),
                     count_params(state)))
        return captured["out"]

    out_shape = walk(_as_layer(model), tuple(input_shape), 0)
    total, total_state = sum(r[2] for r in rows), sum(r[3] for r in rows)
    width = max([len(r[0]) for r in rows] + [5])
    shape_width = max([len(r[1]) for r in rows] + [12])
    lines = [f"{'layer':<{width}}  {'output shape':<{shape_width}}  {'params':>10}  {'state':>8}"]
    lines.append("-" * len(lines[0]))
    for name, shape, n, m in rows:
        lines.append(f"{name:<{width}}  {shape:<{shape_width}}  {n:>10,}  {m:>8,}")
    lines.append("-" * len(lines[0]))
    lines.append(f"{'total':<{width}}  {str(out_shape):<{shape_width}}  {total:>10,}  {total_state:>8,}")
    lines.append(f"trainable parameters {total:,}; non-trainable state (running statistics) "
                 f"{total_state:,}")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
