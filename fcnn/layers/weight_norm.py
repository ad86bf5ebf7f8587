"""Weight normalization as a wrapper: `WeightNorm(Dense(...))`, `WeightNorm(Conv(...))`."""

from __future__ import annotations

from fcnn import _checks
from fcnn.layers.base import Layer, _check_layers
from fcnn.ops.normalization import weight_normalize

__all__ = ["WeightNorm"]

_RESERVED = ("v", "g")


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

    return Layer(init, apply, name=name, children=(layer,), role=layer.role)
