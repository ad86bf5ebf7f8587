"""The three models in dm-haiku (NHWC, HWIO); BatchNorm's running averages in haiku's
state (`hk.transform_with_state`)."""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from benchmarks.peers import _common
from benchmarks.peers._jax import check_like, count, mean_cross_entropy, trainer, versions

PAD1 = ((1, 1), (1, 1))
ROLES = {"w": "w", "b": "b", "scale": "scale", "offset": "bias"}


def module_name(spec) -> str:
    return spec.name.replace(".", "_")


def layer(spec, x):
    if isinstance(spec, _common.Conv):
        return hk.Conv2D(spec.cout, spec.k, stride=spec.stride, padding=PAD1,
                         with_bias=spec.bias, name=module_name(spec))(x)
    if isinstance(spec, _common.BN):
        return hk.BatchNorm(True, True, decay_rate=_common.BN_MOMENTUM, eps=_common.BN_EPSILON,
                            name=module_name(spec))(x, is_training=True)
    if isinstance(spec, _common.Dense):
        return hk.Linear(spec.fout, name=module_name(spec))(x)
    if isinstance(spec, _common.Block):
        conv1, bn1, conv2, bn2 = spec.layers()
        y = jax.nn.relu(layer(bn1, layer(conv1, x)))
        y = layer(bn2, layer(conv2, y))
        if spec.projects:
            x = x[:, ::spec.stride, ::spec.stride]
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, spec.cout - x.shape[-1])))
        return jax.nn.relu(y + x)
    if spec == _common.RELU:
        return jax.nn.relu(x)
    if spec == _common.MAXPOOL:
        return hk.max_pool(x, window_shape=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding="VALID")
    if spec == _common.FLATTEN:
        return hk.Flatten()(x)
    if spec == _common.GLOBAL_AVG_POOL:
        return jnp.mean(x, axis=(1, 2))
    raise ValueError(f"no haiku layer for {spec!r}")


def make(model, shared):
    """(transformed, params, state, count)."""
    def forward(x):
        for spec in model.layers:
            x = layer(spec, x)
        return x

    net = hk.without_apply_rng(hk.transform_with_state(forward))
    reference, state = net.init(jax.random.PRNGKey(0), jnp.zeros((2,) + tuple(model.image)))
    by_name = {module_name(s): s for s in _common.param_layers(model)}
    params = {
        module: {key: jnp.asarray(shared.take(by_name[module].name, ROLES[key], leaf.shape))
                 for key, leaf in leaves.items()}
        for module, leaves in reference.items()
    }
    check_like(params, reference, f"haiku {model.name}")
    return net, params, state, count(params)


def build(args, model, shared, x, y):
    del args
    net, params, state, n = make(model, shared)

    def loss_fn(params, state, x, y):
        logits, state = net.apply(params, state, x)
        return mean_cross_entropy(logits, y), state

    return trainer(loss_fn, params, state, x, y), dict(versions(), haiku=hk.__version__,
                                                       param_count=n)


if __name__ == "__main__":
    _common.run(build, framework="haiku")
