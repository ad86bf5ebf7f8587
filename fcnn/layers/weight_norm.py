"""Weight normalization as a wrapper: `WeightNorm(Dense(...))`, `WeightNorm(Conv(...))`,
and its data-dependent initialization (`data_dependent_init`)."""

from __future__ import annotations

import jax.numpy as jnp

from fcnn import _checks
from fcnn.layers.base import Layer, _check_layers, apply_with_intermediates, walk_layers
from fcnn.ops.normalization import check_epsilon, weight_normalize

__all__ = ["WeightNorm", "data_dependent_init"]

_RESERVED = ("v", "g")
# Layer.info key marking a WeightNorm wrapper, so tools find it without parsing names.
WEIGHT_NORM = "weight_norm"


def WeightNorm(layer: Layer, *, backward: str = "custom") -> Layer:  # noqa: N802
    """Reparameterises a layer's kernel as w = g * v / ||v||, one g per output unit.

    Wraps a layer whose params have a "kernel" with the output units on its last
    axis (Dense: (in, out); Conv: HWIO (*window, in, out)). Params become
    {"v": kernel shape, "g": (out,), ...the layer's other params (e.g. "bias")};
    state, input and output shapes are the wrapped layer's. The norm of unit o runs
    over all of v[..., o]. At init v is the wrapped layer's initial kernel and
    g = ||v||, so the initial function is unchanged.

    Gradients (see `fcnn.ops.normalization.weight_normalize`):
        dg = dw . v / ||v||,   dv = (g / ||v||) (dw - dg v / ||v||)
    so dv is orthogonal to v and the scale of v does not change w.

    Reference: Salimans & Kingma (2016).
    """
    (layer,) = _check_layers((layer,), "WeightNorm")
    _checks.check_backward(backward)
    name = f"WeightNorm({layer.name})"

    def init(rng, input_shape):
        out_shape, params, state = layer.init(rng, input_shape)
        if not isinstance(params, dict) or "kernel" not in params:
            keys = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"{name}: the wrapped layer's params are {keys}: expected a 'kernel' "
                "(WeightNorm wraps Dense or Conv)"
            )
        clash = [k for k in _RESERVED if k in params]
        if clash:
            raise ValueError(f"{name}: the wrapped layer already has params {clash}")
        v = params["kernel"]
        if v.ndim < 2:
            raise ValueError(
                f"{name}: kernel has shape {v.shape}: expected (in, out) or "
                "(*window, in, out)"
            )
        g = (v.reshape(-1, v.shape[-1]) ** 2).sum(0) ** 0.5  # ||v|| per output unit
        new_params = {k: p for k, p in params.items() if k != "kernel"}
        new_params.update(v=v, g=g)
        return out_shape, new_params, state

    def apply(params, state, x, *, train, rng=None):
        missing = [k for k in _RESERVED if k not in params]
        if missing:
            raise ValueError(
                f"{name}: params has no {missing} (keys {sorted(params)}); pass the "
                "params returned by this layer's init"
            )
        inner = {k: p for k, p in params.items() if k not in _RESERVED}
        inner["kernel"] = weight_normalize(params["v"], params["g"], backward=backward)
        return layer.apply(inner, state, x, train=train, rng=rng)

    return Layer(init, apply, name=name, children=(layer,), role=layer.role,
                 info={WEIGHT_NORM: True})


def _node(params, path: str):
    for key in path.split("/") if path else ():
        params = params[key]
    return params


def _replaced(params, path: str, value):
    """`params` with the dict at `path` ("3", "0/1", ...) replaced by `value`."""
    if not path:
        return value
    head, _, rest = path.partition("/")
    return {**params, head: _replaced(params[head], rest, value)}


def data_dependent_init(model: Layer, params, state, x, *, epsilon: float = 1e-5):
    """Salimans & Kingma's data-dependent initialization of every WeightNorm layer.

    On the batch `x`, layer after layer in forward order (so each sees the output of
    the layers before it, already initialized): with g = 1 and bias = 0 the layer
    computes t = x . v / ||v||; with mu[o] and sigma[o]^2 the mean and variance of t
    for output unit o over the batch (and positions, for a convolution),

        g <- 1 / sqrt(sigma^2 + epsilon),   bias <- -mu / sqrt(sigma^2 + epsilon)

    so every unit's pre-activation starts with zero mean and unit variance on `x`
    (without a bias only g is set: unit variance about the mean mu). v and every
    other parameter are returned unchanged. The model runs in evaluation mode;
    `state` is not changed.

    Returns the new params. Raises ValueError when `model` has no WeightNorm layer, or
    has one inside a combinator other than `serial` (not reached by this pass).

    Reference: Salimans & Kingma, "Weight normalization", NeurIPS 2016, section 3.
    """
    epsilon = check_epsilon(epsilon)
    _, _, seen = apply_with_intermediates(model, params, state, x, train=False)
    paths = [item.path for item in seen if item.layer.info.get(WEIGHT_NORM)]
    total = sum(1 for layer in walk_layers(model) if layer.info.get(WEIGHT_NORM))
    if not total:
        raise ValueError(f"data_dependent_init: {model.name} has no WeightNorm layer to "
                         "initialize; wrap its Dense or Conv layers in fcnn.WeightNorm")
    if len(paths) != total:
        raise ValueError(
            f"data_dependent_init: {total - len(paths)} of the {total} WeightNorm layers of "
            f"{model.name} sit inside a combinator other than serial, which this pass does "
            "not enter; build the model with fcnn.serial around them")
    for path in paths:
        node = _node(params, path)
        trial = dict(node, g=jnp.ones_like(node["g"]))
        if "bias" in node:
            trial["bias"] = jnp.zeros_like(node["bias"])
        _, _, seen = apply_with_intermediates(model, _replaced(params, path, trial), state, x,
                                              train=False)
        t = next(item.value for item in seen if item.path == path)
        axes = tuple(range(t.ndim - 1))
        inv = 1 / jnp.sqrt(jnp.var(t, axis=axes) + epsilon)
        new = dict(node, g=inv.astype(node["g"].dtype))
        if "bias" in node:
            new["bias"] = (-jnp.mean(t, axis=axes) * inv).astype(node["bias"].dtype)
        params = _replaced(params, path, new)
    return params
