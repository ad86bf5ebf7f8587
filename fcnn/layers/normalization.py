"""Normalization layers: BatchNorm, LayerNorm, InstanceNorm, GroupNorm and LRN.

BatchNorm, LayerNorm, InstanceNorm and GroupNorm are one op,
`fcnn.ops.normalization.normalize`, over different axes of a channels-last input
(N, *spatial, C):

    BatchNorm     every axis but the channel axis (statistics per channel)
    LayerNorm     every axis but the batch axis (statistics per example)
    InstanceNorm  the spatial axes (statistics per example and channel)
    GroupNorm     the spatial axes and the channels of a group (per example and group)

Each has a learnable per-channel scale gamma (init 1) and shift beta (init 0),
params {"scale": (C,), "bias": (C,)}, switched off by `use_scale` / `use_bias`.
Only BatchNorm has state: the running statistics it uses when `train=False`.

Every layer remembers the input shape it was initialised for and refuses an input
of another rank or channel count at apply time (a layer rebuilt without calling
init checks the channel count against its params and state only).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from fcnn import _checks, initializers
from fcnn.layers.base import NORMALIZATION, Layer, check_train_flag
from fcnn.ops.lrn import lrn, lrn_config
from fcnn.ops import normalization as norm_ops
from fcnn.ops.normalization import check_epsilon, normalize, normalize_with_stats

__all__ = ["BatchNorm", "GroupNorm", "InstanceNorm", "LRN", "LayerNorm"]

RUNNING_AVERAGES = ("ema", "mean")

MISSING_RUNNING_STATS = (
    "{layer}: train={train} needs the running statistics in `state` (keys 'mean' and "
    "'var' of shape ({channels},)), got state={got}; pass the state returned by "
    "init and by the training steps: y, state = apply(params, state, x, train=...)"
)


MOMENTUM_HINT = (
    "(the weight of the old running value: new = momentum * old + (1 - momentum) * batch); "
    "usual values are 0.9 to 0.999"
)


def _check_axis(axis, ndim: int, layer: str, shape) -> int:
    return _checks.check_axis(axis, ndim, f"{layer}: axis", shape=shape,
                              hint="(channels last is -1)")


class _Built:
    """The input shapes a layer was initialised for, to reject mismatched inputs.

    A layer object may be reused at several places of a model (with other shapes),
    so every shape seen by init is kept and an input must match one of them.
    """

    def __init__(self, layer: str):
        self.layer = layer
        self.shapes: list[tuple] = []

    def record(self, input_shape, min_rank: int, what: str):
        shape = tuple(input_shape)
        if len(shape) < min_rank:
            raise ValueError(
                f"{self.layer}: input_shape={shape} has rank {len(shape)}: expected rank "
                f">= {min_rank}, {what}"
            )
        if shape not in self.shapes:
            self.shapes.append(shape)
        return shape

    @staticmethod
    def _matches(x, shape, channel_axis: int) -> bool:
        if x.ndim != len(shape):
            return False
        c = shape[channel_axis]
        return c == -1 or x.shape[channel_axis] == c

    def check(self, x, channel_axis: int = -1):
        if not self.shapes or any(self._matches(x, s, channel_axis) for s in self.shapes):
            return
        shape = self.shapes[-1]
        if x.ndim != len(shape):
            raise ValueError(
                f"{self.layer}: input has shape {x.shape} (rank {x.ndim}), but the layer "
                f"was initialised for input shape {shape} (rank {len(shape)}); "
                "re-run init with the new input shape"
            )
        raise ValueError(
            f"{self.layer}: input has shape {x.shape} with {x.shape[channel_axis]} "
            f"channels (axis {channel_axis}), but the layer was initialised for "
            f"{shape[channel_axis]} channels (input shape {shape})"
        )


def _channels(shape, axis: int, layer: str) -> int:
    c = shape[axis]
    if not _checks.is_int(c) or c < 1:
        raise ValueError(
            f"{layer}: input_shape={tuple(shape)}: the channel axis {axis} has size {c!r}; "
            "the number of channels must be known at init (only the batch may be -1)"
        )
    return int(c)


def _affine_init(rng, channels, use_scale, use_bias, scale_init, bias_init, dtype):
    scale_rng, bias_rng = jax.random.split(rng)
    params = {}
    if use_scale:
        params["scale"] = scale_init(scale_rng, (channels,), dtype)
    if use_bias:
        params["bias"] = bias_init(bias_rng, (channels,), dtype)
    return params


def _affine_params(params, layer: str, channels: int, use_scale: bool, use_bias: bool, bshape):
    """(scale, bias) reshaped to `bshape`, or None when switched off."""
    out = []
    for key, used in (("scale", use_scale), ("bias", use_bias)):
        if not used:
            out.append(None)
            continue
        if key not in params:
            raise ValueError(
                f"{layer}: params has no {key!r} (keys {sorted(params)}); pass the params "
                f"returned by init, or build the layer with use_{key}=False"
            )
        p = params[key]
        if jnp.shape(p) != (channels,):
            raise ValueError(
                f"{layer}: params[{key!r}] has shape {jnp.shape(p)}, expected "
                f"({channels},) for an input with {channels} channels"
            )
        out.append(jnp.reshape(p, bshape))
    return out


def _common(epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype):
    if not jnp.issubdtype(param_dtype, jnp.floating):
        raise TypeError(f"param_dtype={param_dtype!r}: expected a floating-point dtype")
    return (
        check_epsilon(epsilon),
        _checks.check_bool(use_scale, "use_scale"),
        _checks.check_bool(use_bias, "use_bias"),
        initializers.get(scale_init),
        initializers.get(bias_init),
        _checks.check_backward(backward),
        jnp.dtype(param_dtype),
    )


def BatchNorm(
    momentum: float = 0.99,
    epsilon: float = 1e-5,
    running_average: str = "ema",
    axis: int = -1,
    use_scale: bool = True,
    use_bias: bool = True,
    axis_name=None,
    scale_init=initializers.ones,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
):
    """Batch normalization; running statistics new = momentum * old + (1 - momentum) * batch.

    (`momentum` is the weight of the old value, as in Flax and optax's EMA; PyTorch's
    `momentum` is the weight of the batch, so PyTorch's 0.1 is our 0.9.)

    Shapes: x (N, *spatial, C) with the channel axis `axis` (default last); y like x.
    Params {"scale": (C,), "bias": (C,)}; state {"mean": (C,), "var": (C,),
    "count": ()}: the running mean and variance, and the number of training batches
    they have seen.

    train=True: y = scale * (x - mu_B) / sqrt(var_B + epsilon) + bias with the batch
    statistics over every axis but `axis` (m values per channel, var_B divided by m),
    and the running statistics updated in the returned state from mu_B and the
    unbiased variance m / (m - 1) * var_B:
      running_average="ema":  new = momentum * old + (1 - momentum) * batch
      running_average="mean": the mean over all training batches so far (the notes'
        inference statistics: E[x] = mean of mu_B, Var[x] = mean of m/(m-1) var_B).
    train=False: the same formula with the running statistics; each example's output
    depends only on that example, and the state is returned unchanged.

    `axis_name`: under `jax.vmap`/`pmap`/`shard_map` over that axis (each device
    holding a shard (N / D, *spatial, C) of the batch), the batch statistics are
    averaged across devices and so are the sums of the backward; m counts the
    values of all devices. Take gradients inside the mapped function, as
    data-parallel training does (the hand-written backward runs its cross-device
    means there); for `jax.grad(jax.vmap(...))` use backward="autodiff".

    Reference: Ioffe & Szegedy (2015), Algorithms 1 and 2.
    """
    momentum = _checks.check_number(momentum, "momentum", low=0.0, high=1.0, hint=MOMENTUM_HINT)
    epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype = _common(
        epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype
    )
    if running_average not in RUNNING_AVERAGES:
        raise ValueError(
            f"running_average={running_average!r}: expected 'ema' (exponential moving "
            "average with momentum) or 'mean' (average over all training batches)"
        )
    if not _checks.is_int(axis):
        raise TypeError(f"axis={axis!r}: expected an int (the channel axis, -1 for channels last)")
    name = "BatchNorm"
    built = _Built(name)

    def init(rng, input_shape):
        shape = built.record(input_shape, 2, "(batch, ..., channels)")
        ax = _check_axis(axis, len(shape), name, shape)
        c = _channels(shape, ax, name)
        params = _affine_init(rng, c, use_scale, use_bias, scale_init, bias_init, param_dtype)
        state = {
            "mean": jnp.zeros((c,), param_dtype),
            "var": jnp.ones((c,), param_dtype),
            "count": jnp.zeros((), jnp.int32),
        }
        return shape, params, state

    def apply(params, state, x, *, train, rng=None):
        del rng
        train = check_train_flag(train, name)
        x = jnp.asarray(x)
        ax = _check_axis(axis, x.ndim, name, x.shape)
        built.check(x, ax)
        c = x.shape[ax]
        if not isinstance(state, dict) or any(
            k not in state or jnp.shape(state[k]) != (c,) for k in ("mean", "var")
        ):
            got = state if not isinstance(state, dict) else {
                k: jnp.shape(v) for k, v in state.items()
            }
            raise ValueError(
                MISSING_RUNNING_STATS.format(layer=name, train=train, channels=c, got=got)
            )
        bshape = tuple(c if d == ax else 1 for d in range(x.ndim))
        scale, bias = _affine_params(params, name, c, use_scale, use_bias, bshape)
        if not train:
            y = normalize_with_stats(
                x,
                jnp.reshape(state["mean"], bshape),
                jnp.reshape(state["var"], bshape),
                scale,
                bias,
                epsilon=epsilon,
                backward=backward,
            )
            return y, state

        axes = tuple(d for d in range(x.ndim) if d != ax)
        m = math.prod(x.shape[d] for d in axes)
        m *= norm_ops.axis_name_size(axis_name, name)
        if m < 2:
            raise ValueError(
                f"{name}: train=True on input shape {x.shape} gives {m} value per channel; "
                "batch statistics need at least 2 (use a larger batch, or train=False)"
            )
        y, mean, var = normalize(
            x, scale, bias, axes=axes, epsilon=epsilon, axis_name=axis_name, backward=backward
        )
        old_mean, old_var = state["mean"], state["var"]
        batch_mean = lax.stop_gradient(mean).reshape(c)
        batch_var = lax.stop_gradient(var).reshape(c) * (m / (m - 1))
        count = state.get("count", jnp.zeros((), jnp.int32))
        if running_average == "ema":
            new_mean = momentum * old_mean + (1.0 - momentum) * batch_mean
            new_var = momentum * old_var + (1.0 - momentum) * batch_var
        else:
            w = 1.0 / (count + 1).astype(batch_mean.dtype)
            new_mean = old_mean + w * (batch_mean - old_mean)
            new_var = old_var + w * (batch_var - old_var)
        new_state = dict(state)
        new_state.update(
            mean=new_mean.astype(old_mean.dtype),
            var=new_var.astype(old_var.dtype),
            count=(count + 1).astype(jnp.result_type(count)),
        )
        return y, new_state

    return Layer(init, apply, name=name, role=NORMALIZATION)


def _per_example_norm(
    name, plan, min_rank, what,
    epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype,
):
    """A stateless normalization over per-example axes; `plan(shape)` -> (groups, axes).

    The input (N, *spatial, C) is viewed as (N, *spatial, G, C // G) and normalized
    over `axes` of that view; statistics never mix examples.
    """
    epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype = _common(
        epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype
    )
    built = _Built(name)

    def init(rng, input_shape):
        shape = built.record(input_shape, min_rank, what)
        c = _channels(shape, -1, name)
        plan(shape)  # validates
        params = _affine_init(rng, c, use_scale, use_bias, scale_init, bias_init, param_dtype)
        return shape, params, {}

    def apply(params, state, x, *, train, rng=None):
        del rng
        check_train_flag(train, name)
        x = jnp.asarray(x)
        built.check(x, -1)
        if x.ndim < min_rank:
            raise ValueError(
                f"{name}: input has shape {x.shape} (rank {x.ndim}): expected rank "
                f">= {min_rank}, {what}"
            )
        c = x.shape[-1]
        groups, axes = plan(x.shape)
        view = x.shape[:-1] + (groups, c // groups)
        scale, bias = _affine_params(
            params, name, c, use_scale, use_bias, (groups, c // groups)
        )
        y, _, _ = normalize(
            x.reshape(view), scale, bias, axes=axes, epsilon=epsilon, backward=backward
        )
        return y.reshape(x.shape), state

    return Layer(init, apply, name=name, role=NORMALIZATION)


def LayerNorm(
    axes=None,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init=initializers.ones,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
):
    """Layer normalization: each example standardised over `axes` (default: all but batch).

    Shapes: x (N, *spatial, C) or (N, C); y like x; params {"scale": (C,),
    "bias": (C,)} per channel. `axes` are axes of the input (never 0, the batch);
    axes=-1 normalizes over the channels of each position only.

        y = scale * (x - mu_n) / sqrt(var_n + epsilon) + bias,  mu_n, var_n per example

    Reference: Ba, Kiros & Hinton (2016).
    """
    if axes is not None:
        axes = norm_ops.axes_tuple(axes, none_ok=True)
    name = "LayerNorm"

    def plan(shape):
        ndim = len(shape)
        if axes is None:
            chosen = tuple(range(1, ndim))
        else:
            try:
                chosen = norm_ops.canonical_axes(axes, ndim)
            except ValueError as err:
                raise ValueError(f"{name} on input shape {tuple(shape)}: {err}") from None
            if 0 in chosen:
                raise ValueError(
                    f"{name}: axes={axes!r} includes the batch axis 0; layer normalization "
                    "normalizes each example on its own (use BatchNorm for batch statistics)"
                )
        # In the (N, *spatial, 1, C) view the channel axis moves one to the right.
        return 1, tuple(a + 1 if a == ndim - 1 else a for a in chosen)

    return _per_example_norm(
        name, plan, 2, "(batch, ..., channels)",
        epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype,
    )


def InstanceNorm(
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init=initializers.ones,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
):
    """Instance normalization: each example and channel standardised over the spatial axes.

    Shapes: x (N, *spatial, C) with 1 to 3 (or more) spatial dims; y like x; params
    {"scale": (C,), "bias": (C,)}. Equals GroupNorm with one channel per group.

    Reference: Ulyanov, Vedaldi & Lempitsky (2016).
    """
    name = "InstanceNorm"

    def plan(shape):
        ndim = len(shape)
        # view (N, *spatial, C, 1): reduce the spatial axes and the size-1 axis
        return shape[-1], tuple(range(1, ndim - 1)) + (ndim,)

    return _per_example_norm(
        name, plan, 3, "(batch, *spatial, channels) with at least one spatial dimension "
        "(for (batch, channels) inputs use LayerNorm)",
        epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype,
    )


def GroupNorm(
    num_groups: int = 32,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init=initializers.ones,
    bias_init=initializers.zeros,
    backward: str = "custom",
    param_dtype=jnp.float32,
):
    """Group normalization: each example standardised per group of C / num_groups channels.

    Shapes: x (N, *spatial, C); y like x; params {"scale": (C,), "bias": (C,)}.
    The statistics of group g run over the spatial axes and channels
    g * C/G .. (g + 1) * C/G - 1 of one example.

    C must be divisible by the number of groups. When C < num_groups (e.g. 16
    channels with the default 32) the layer uses C groups of one channel, i.e.
    instance normalization, rather than failing: "at most num_groups groups".
    num_groups=1 is layer normalization over (*spatial, C).

    Reference: Wu & He (2018), whose default is G = 32.
    """
    num_groups = _checks.positive_int(num_groups, "num_groups")
    name = "GroupNorm"

    def plan(shape):
        ndim, c = len(shape), shape[-1]
        groups = min(num_groups, c)
        if c % groups:
            raise ValueError(
                f"{name}: channels (={c}) must be divisible by num_groups (={num_groups}); "
                f"divisors of {c} are {[g for g in range(1, c + 1) if c % g == 0]}"
            )
        # view (N, *spatial, G, C // G): reduce the spatial axes and the last axis
        return groups, tuple(range(1, ndim - 1)) + (ndim,)

    return _per_example_norm(
        name, plan, 2, "(batch, ..., channels)",
        epsilon, use_scale, use_bias, scale_init, bias_init, backward, param_dtype,
    )


def LRN(
    size=None,
    depth_radius=None,
    k: float = 2.0,
    alpha: float = 1e-4,
    beta: float = 0.75,
    alpha_over_n: bool = False,
    backward: str = "custom",
):
    """Local response normalization across channels, b = a / (k + alpha * sum a^2)^beta.

    Shapes: x (N, *spatial, C); y like x; no params, no state. Defaults are
    AlexNet's (n = 5, k = 2, alpha = 1e-4, beta = 0.75) with alpha not divided by n;
    `alpha_over_n=True` divides it by n (Caffe, PyTorch). See `fcnn.ops.lrn.lrn`.

    Reference: Krizhevsky, Sutskever & Hinton (2012), section 3.3.
    """
    lrn_config(size, depth_radius, k, alpha, beta, alpha_over_n)  # validates early
    _checks.check_backward(backward)
    name = "LRN"
    built = _Built(name)

    def init(rng, input_shape):
        del rng
        shape = built.record(input_shape, 2, "(batch, ..., channels)")
        _channels(shape, -1, name)
        return shape, {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        x = jnp.asarray(x)
        built.check(x, -1)
        y = lrn(
            x, size=size, depth_radius=depth_radius, k=k, alpha=alpha, beta=beta,
            alpha_over_n=alpha_over_n, backward=backward,
        )
        return y, state

    return Layer(init, apply, name=name, role=NORMALIZATION)
