"""The three models in `jax.example_libraries.stax` (NHWC, HWIO).

stax has no convolution without bias and no state: a conv without bias and a
BatchNorm are written here as stax layers (an `(init_fun, apply_fun)` pair each, as
stax's own). The BatchNorm normalises with the batch statistics and hands them to the
`stats` list passed down through `apply_fun`'s keyword arguments (stax.serial and
stax.parallel pass them on); the train step returns them beside the loss and updates
the running averages from them, as the other frameworks do inside their layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.example_libraries import stax

from benchmarks.peers import _common
from benchmarks.peers._jax import check_like, count, mean_cross_entropy, trainer, versions

PAD1 = ((1, 1), (1, 1))


def conv_no_bias(cout: int, k: int, stride: int):
    """stax.Conv without its bias."""
    def init_fun(rng, input_shape):
        shape = (k, k, input_shape[-1], cout)
        n, h, w, _ = input_shape
        out = (n, (h + 2 - k) // stride + 1, (w + 2 - k) // stride + 1, cout)
        return out, (jax.nn.initializers.he_normal()(rng, shape),)

    def apply_fun(params, x, **kwargs):
        return lax.conv_general_dilated(x, params[0], (stride, stride), PAD1,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    return init_fun, apply_fun


def batch_norm():
    """Batch statistics over N, H, W; appends (mean, var) to kwargs["stats"]."""
    def init_fun(rng, input_shape):
        c = input_shape[-1]
        return input_shape, (jnp.ones((c,)), jnp.zeros((c,)))

    def apply_fun(params, x, stats=None, **kwargs):
        gamma, beta = (p.reshape(1, 1, 1, -1) for p in params)
        mean = jnp.mean(x, axis=(0, 1, 2), keepdims=True)
        var = jnp.var(x, axis=(0, 1, 2), keepdims=True)
        if stats is not None:
            stats.append((mean.reshape(-1), var.reshape(-1), x.size // x.shape[-1]))
        return (x - mean) * lax.rsqrt(var + _common.BN_EPSILON) * gamma + beta

    return init_fun, apply_fun


def zero_pad_shortcut(cout: int, stride: int):
    """Option A: x[:, ::s, ::s] with zero channels appended up to cout."""
    def init_fun(rng, input_shape):
        n, h, w, _ = input_shape
        return (n, -(-h // stride), -(-w // stride), cout), ()

    def apply_fun(params, x, **kwargs):
        x = x[:, ::stride, ::stride]
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, cout - x.shape[-1])))

    return init_fun, apply_fun


def global_avg_pool():
    def init_fun(rng, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fun(params, x, **kwargs):
        return jnp.mean(x, axis=(1, 2))

    return init_fun, apply_fun


def layer(spec, shared):
    """(stax layer, its params from the shared arrays, running statistics)."""
    if isinstance(spec, _common.Conv):
        w = shared.take(spec.name, "w")
        if spec.bias:
            b = shared.take(spec.name, "b").reshape(1, 1, 1, -1)
            return stax.Conv(spec.cout, (spec.k, spec.k), (spec.stride,) * 2, PAD1), (w, b), []
        return conv_no_bias(spec.cout, spec.k, spec.stride), (w,), []
    if isinstance(spec, _common.BN):
        params = (shared.take(spec.name, "scale"), shared.take(spec.name, "bias"))
        return batch_norm(), params, [(jnp.zeros(spec.c), jnp.ones(spec.c))]
    if isinstance(spec, _common.Dense):
        return stax.Dense(spec.fout), (shared.take(spec.name, "w"), shared.take(spec.name, "b")), []
    if isinstance(spec, _common.Block):
        main, main_params, running = serial(spec.layers()[:2] + (_common.RELU,)
                                            + spec.layers()[2:], shared)
        short = (zero_pad_shortcut(spec.cout, spec.stride) if spec.projects else stax.Identity)
        block = stax.serial(stax.FanOut(2), stax.parallel(main, short), stax.FanInSum, stax.Relu)
        return block, [(), (main_params, ()), (), ()], running
    if spec == _common.RELU:
        return stax.Relu, (), []
    if spec == _common.MAXPOOL:
        return stax.MaxPool((2, 2), strides=(2, 2)), (), []
    if spec == _common.FLATTEN:
        return stax.Flatten, (), []
    if spec == _common.GLOBAL_AVG_POOL:
        return global_avg_pool(), (), []
    raise ValueError(f"no stax layer for {spec!r}")


def serial(specs, shared):
    layers, params, running = [], [], []
    for spec in specs:
        lay, p, r = layer(spec, shared)
        layers.append(lay)
        params.append(p)
        running += r
    return stax.serial(*layers), params, running


def make(model, shared):
    """(apply_fun, params, running statistics, count)."""
    (init_fun, apply_fun), params, running = serial(model.layers, shared)
    reference = jax.eval_shape(lambda: init_fun(jax.random.PRNGKey(0),
                                                (2,) + tuple(model.image))[1])
    params = jax.tree_util.tree_map(jnp.asarray, params)
    check_like(params, reference, f"stax {model.name}")
    return apply_fun, params, running, count(params)


def build(args, model, shared, x, y):
    del args
    apply_fun, params, running, n = make(model, shared)
    m = _common.BN_MOMENTUM

    def loss_fn(params, running, x, y):
        stats = []
        logits = apply_fun(params, x, stats=stats)
        new = [(m * rm + (1 - m) * mean, m * rv + (1 - m) * var * k / (k - 1))
               for (rm, rv), (mean, var, k) in zip(running, stats)]
        return mean_cross_entropy(logits, y), jax.lax.stop_gradient(new)

    return trainer(loss_fn, params, running, x, y), dict(versions(), param_count=n)


if __name__ == "__main__":
    _common.run(build, framework="stax")
