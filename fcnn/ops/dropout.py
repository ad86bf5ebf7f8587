"""Dropout: random masks in training, a deterministic map at evaluation.

Two conventions (Srivastava et al., 2014, and the notes) give the same expected
activation at training and evaluation time:

    "inverted"      train: y = x * m / (1 - rate)   eval: y = x
    "scale_at_test" train: y = x * m                eval: y = x * (1 - rate)

with m_i ~ Bernoulli(1 - rate), so E[y_train] = y_eval in both. Only the inverted form
leaves evaluation free of any rescaling, which is why it is the default.

The mask multiplication is a `jax.custom_vjp`: y = x * m, dy/dx = m (the surviving
units, scaled); the mask comes from the rng and is not differentiated.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from fcnn._checks import check_backward
from fcnn.ops.activations import as_float, sum_to_shape
from fcnn.ops.hand_rule import hand_rule

MODES = ("inverted", "scale_at_test")

RATE_HELP = (
    "expected a probability of dropping a unit in [0, 1) (rate=0 keeps every unit; "
    "rate=1 would drop everything)"
)


def check_rate(rate):
    """Validates a drop probability when its value is known (not traced); returns it."""
    if isinstance(rate, jax.core.Tracer):
        return rate
    if isinstance(rate, (bool, np.bool_)):
        raise TypeError(f"rate={rate!r}: {RATE_HELP}")
    if isinstance(rate, (jax.Array, np.ndarray)):
        if np.ndim(rate) != 0:
            raise ValueError(f"rate has shape {np.shape(rate)}: expected a scalar; {RATE_HELP}")
        value = float(rate)
    elif isinstance(rate, numbers.Real):
        value = float(rate)
    else:
        raise TypeError(f"rate={rate!r}: {RATE_HELP}")
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(f"rate={rate!r}: {RATE_HELP}")
    return rate


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    return mode


# y = x * m,  dy/dx = m,  dy/dm = x (summed over the axes where m is shared).
def _apply_mask_plain(x, mask):
    return x * mask


def _apply_mask_fwd(x, mask):
    return x * mask, (x, mask)


def _apply_mask_bwd(res, g):
    x, mask = res
    return g * mask, sum_to_shape(g * x, mask.shape)


APPLY_MASK = hand_rule("dropout", _apply_mask_plain, _apply_mask_fwd, _apply_mask_bwd)


def _normalize_axes(axes, ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        axes = (axes,)
    if not isinstance(axes, (tuple, list)) or not all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes
    ):
        raise TypeError(f"{name}={axes!r}: expected an int or a tuple of ints")
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={axes!r}: axis {a} is out of range for rank {ndim}")
        out.append(int(a) % ndim)
    return tuple(sorted(set(out)))


def dropout(
    x,
    rate,
    rng=None,
    *,
    train: bool,
    mode: str = "inverted",
    shared_axes=(),
    backward: str = "custom",
) -> jax.Array:
    """Drops each unit with probability `rate` in training; see the module docstring.

    Shapes: x any -> same. One mask value is shared along `shared_axes` (e.g. the
    spatial axes, to drop whole feature maps). `rate` is the probability of dropping,
    in [0, 1); rate = 0 returns x unchanged. The same `rng` gives the same mask.
    Training needs `rng`. Expected value: E[y_train] = y_eval (both modes).
    """
    check_backward(backward)
    check_mode(mode)
    rate = check_rate(rate)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"dropout: train={train!r}: expected True or False (a Python bool)")
    x = as_float(x)  # integer inputs (raw pixels) become floats
    shared_axes = _normalize_axes(shared_axes, x.ndim, "shared_axes")
    if train and rng is None:
        raise ValueError(
            "dropout(train=True) needs an rng to draw the mask: pass rng=key, or "
            "train=False for evaluation"
        )
    apply = APPLY_MASK.select(backward)
    known_zero = not isinstance(rate, jax.core.Tracer) and float(rate) == 0.0
    if known_zero or (not train and mode == "inverted"):
        return x
    keep = 1 - jnp.asarray(rate, x.dtype)
    if not train:
        return apply(x, jnp.full((1,) * x.ndim, keep, x.dtype))
    mask_shape = tuple(1 if i in shared_axes else d for i, d in enumerate(x.shape))
    kept = jax.random.bernoulli(rng, keep, mask_shape)
    value = 1 / keep if mode == "inverted" else jnp.ones((), x.dtype)
    mask = jnp.where(kept, value, jnp.zeros((), x.dtype)).astype(x.dtype)
    return apply(x, mask)


def spatial_dropout(
    x, rate, rng=None, *, train: bool, mode: str = "inverted", backward: str = "custom"
) -> jax.Array:
    """Channel-wise dropout: drops whole feature maps of x (N, *spatial, C).

    One Bernoulli draw per (example, channel), shared over the spatial axes
    (Tompson et al., 2015): neighbouring pixels are strongly correlated, so dropping
    single pixels barely regularises a conv layer.
    """
    ndim = np.ndim(x)
    if ndim < 3:
        raise ValueError(
            f"spatial_dropout: x has shape {np.shape(x)}: expected (batch, *spatial, "
            "channels) with at least one spatial axis"
        )
    return dropout(
        x, rate, rng, train=train, mode=mode, shared_axes=tuple(range(1, ndim - 1)),
        backward=backward,
    )


# Stochastic depth (drop-path): the same mask product, one draw per example.
# y = x * m with m[n] = [kept_n] / (1 - rate) shared by every other axis of example n;
# dy/dx = m, so dx = g * m: the gradient of a dropped example's branch is zero and a
# kept one's is scaled by 1 / (1 - rate), as in the forward.
DROP_PATH = hand_rule("drop_path", _apply_mask_plain, _apply_mask_fwd, _apply_mask_bwd)


def drop_path(x, rate, rng=None, *, train: bool, backward: str = "custom") -> jax.Array:
    """Stochastic depth (Huang et al., 2016): drops the whole branch for some examples.

    Put it at the end of a residual branch, y = x + drop_path(branch(x)): in training
    each example's branch output is zeroed with probability `rate` (one Bernoulli draw
    per example, shared by every other axis) and the kept ones are scaled by
    1 / (1 - rate) (inverted scaling), so E[y_train] = y_eval; at evaluation it is the
    identity. Shapes: x (N, ...) -> same. `rate` is the probability of DROPPING, in
    [0, 1). Training needs `rng`. Backward: dx = g * mask (zero for dropped examples).
    """
    check_backward(backward)
    rate = check_rate(rate)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"drop_path: train={train!r}: expected True or False (a Python bool)")
    x = as_float(x)
    if x.ndim < 1:
        raise ValueError(
            f"drop_path: x has shape {x.shape}: expected (batch, ...), one branch output "
            "per example along axis 0"
        )
    if train and rng is None:
        raise ValueError(
            "drop_path(train=True) needs an rng to draw which examples drop the branch: "
            "pass rng=key, or train=False for evaluation"
        )
    known_zero = not isinstance(rate, jax.core.Tracer) and float(rate) == 0.0
    if known_zero or not train:
        return x
    keep = 1 - jnp.asarray(rate, x.dtype)
    kept = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    mask = jnp.where(kept, 1 / keep, jnp.zeros((), x.dtype)).astype(x.dtype)
    return DROP_PATH.select(backward)(x, mask)
