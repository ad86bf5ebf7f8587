"""The three models in flax.linen (NHWC, HWIO); BatchNorm's running averages in the
"batch_stats" collection, updated by `apply(..., mutable=["batch_stats"])`."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.peers import _common
from benchmarks.peers._jax import check_like, count, mean_cross_entropy, trainer, versions

PAD1 = ((1, 1), (1, 1))


def module_name(spec) -> str:
    return spec.name.replace(".", "_")


class Net(nn.Module):
    layers: Any  # the model's layer specs (a tuple)

    def layer(self, spec, x):
        if isinstance(spec, _common.Conv):
            return nn.Conv(spec.cout, (spec.k, spec.k), strides=(spec.stride,) * 2,
                           padding=PAD1, use_bias=spec.bias, name=module_name(spec))(x)
        if isinstance(spec, _common.BN):
            return nn.BatchNorm(use_running_average=False, momentum=_common.BN_MOMENTUM,
                                epsilon=_common.BN_EPSILON, name=module_name(spec))(x)
        if isinstance(spec, _common.Dense):
            return nn.Dense(spec.fout, name=module_name(spec))(x)
        if isinstance(spec, _common.Block):
            conv1, bn1, conv2, bn2 = spec.layers()
            y = nn.relu(self.layer(bn1, self.layer(conv1, x)))
            y = self.layer(bn2, self.layer(conv2, y))
            if spec.projects:
                x = x[:, ::spec.stride, ::spec.stride]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, spec.cout - x.shape[-1])))
            return nn.relu(y + x)
        if spec == _common.RELU:
            return nn.relu(x)
        if spec == _common.MAXPOOL:
            return nn.max_pool(x, (2, 2), strides=(2, 2))
        if spec == _common.FLATTEN:
            return x.reshape((x.shape[0], -1))
        if spec == _common.GLOBAL_AVG_POOL:
            return jnp.mean(x, axis=(1, 2))
        raise ValueError(f"no linen layer for {spec!r}")

    @nn.compact
    def __call__(self, x):
        for spec in self.layers:
            x = self.layer(spec, x)
        return x


def variables(model, shared):
    """{"params": ..., "batch_stats": ...} from the shared arrays."""
    params, stats = {}, {}
    for spec in _common.param_layers(model):
        if isinstance(spec, _common.BN):
            params[module_name(spec)] = {"scale": shared.take(spec.name, "scale"),
                                         "bias": shared.take(spec.name, "bias")}
            stats[module_name(spec)] = {"mean": jnp.zeros(spec.c), "var": jnp.ones(spec.c)}
        else:
            entry = {"kernel": shared.take(spec.name, "w")}
            if not isinstance(spec, _common.Conv) or spec.bias:
                entry["bias"] = shared.take(spec.name, "b")
            params[module_name(spec)] = entry
    out = {"params": jax.tree_util.tree_map(jnp.asarray, params)}
    if stats:
        out["batch_stats"] = stats
    return out


def make(model, shared):
    """(net, params, batch_stats, count)."""
    net = Net(tuple(model.layers))
    loaded = variables(model, shared)
    reference = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0),
                                                jnp.zeros((2,) + tuple(model.image))))
    check_like(loaded, dict(reference), f"linen {model.name}")
    return net, loaded["params"], loaded.get("batch_stats", {}), count(loaded["params"])


def build(args, model, shared, x, y):
    del args
    net, params, batch_stats, n = make(model, shared)

    def loss_fn(params, batch_stats, x, y):
        if batch_stats:
            logits, updates = net.apply({"params": params, "batch_stats": batch_stats}, x,
                                        mutable=["batch_stats"])
            batch_stats = updates["batch_stats"]
        else:
            logits = net.apply({"params": params}, x)
        return mean_cross_entropy(logits, y), batch_stats

    return (trainer(loss_fn, params, batch_stats, x, y),
            dict(versions(), flax=flax.__version__, param_count=n))


if __name__ == "__main__":
    _common.run(build, framework="linen")
