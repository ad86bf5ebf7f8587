"""The three models in Equinox: per-example CHW modules, vmapped over the batch (the
Equinox idiom); BatchNorm (mode "batch") reduces over the vmapped axis "batch" and keeps
its running averages in an `eqx.nn.State`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from benchmarks.peers import _common
from benchmarks.peers._jax import mean_cross_entropy, versions

AXIS = "batch"


def _set(module, pairs):
    """`module` with its arrays replaced: pairs of (attribute, value)."""
    names = [n for n, _ in pairs]
    return eqx.tree_at(lambda m: tuple(getattr(m, n) for n in names), module,
                       tuple(jnp.asarray(v).reshape(getattr(module, n).shape) for n, v in pairs))


def conv(spec, shared, key):
    m = eqx.nn.Conv2d(spec.cin, spec.cout, spec.k, stride=spec.stride, padding=spec.k // 2,
                      use_bias=spec.bias, key=key)
    pairs = [("weight", shared.take(spec.name, "w"))]
    if spec.bias:
        pairs.append(("bias", shared.take(spec.name, "b")))
    return _set(m, pairs)


def batch_norm(spec, shared):
    m = eqx.nn.BatchNorm(spec.c, axis_name=AXIS, eps=_common.BN_EPSILON,
                         momentum=_common.BN_MOMENTUM, mode="batch")
    return _set(m, [("weight", shared.take(spec.name, "scale")),
                    ("bias", shared.take(spec.name, "bias"))])


class Block(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    stride: int = eqx.field(static=True)
    cout: int = eqx.field(static=True)
    projects: bool = eqx.field(static=True)

    def __call__(self, x, state):  # x: (C, H, W)
        y, state = self.bn1(self.conv1(x), state)
        y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)
        if self.projects:
            x = x[:, ::self.stride, ::self.stride]
            x = jnp.pad(x, ((0, self.cout - x.shape[0]), (0, 0), (0, 0)))
        return jax.nn.relu(y + x), state


def layer(spec, shared, key):
    if isinstance(spec, _common.Conv):
        return conv(spec, shared, key)
    if isinstance(spec, _common.BN):
        return batch_norm(spec, shared)
    if isinstance(spec, _common.Dense):
        m = eqx.nn.Linear(spec.fin, spec.fout, key=key)
        return _set(m, [("weight", shared.take(spec.name, "w")),
                        ("bias", shared.take(spec.name, "b"))])
    if isinstance(spec, _common.Block):
        c1, b1, c2, b2 = spec.layers()
        k1, k2 = jax.random.split(key)
        return Block(conv(c1, shared, k1), batch_norm(b1, shared), conv(c2, shared, k2),
                     batch_norm(b2, shared), spec.stride, spec.cout, spec.projects)
    if spec == _common.RELU:
        return eqx.nn.Lambda(jax.nn.relu)
    if spec == _common.MAXPOOL:
        return eqx.nn.MaxPool2d(2, 2)
    if spec == _common.FLATTEN:
        return eqx.nn.Lambda(lambda x: x.reshape(-1))
    if spec == _common.GLOBAL_AVG_POOL:
        return eqx.nn.Lambda(lambda x: jnp.mean(x, axis=(1, 2)))
    raise ValueError(f"no equinox layer for {spec!r}")


class Net(eqx.Module):
    layers: tuple

    def __init__(self, model, shared):
        keys = jax.random.split(jax.random.PRNGKey(0), len(model.layers))
        self.layers = tuple(layer(s, shared, k) for s, k in zip(model.layers, keys))

    def __call__(self, x, state):  # one example (C, H, W)
        for m in self.layers:
            if isinstance(m, (eqx.nn.BatchNorm, Block)):
                x, state = m(x, state)
            else:
                x = m(x)
        return x, state


def make(model, shared):
    """(net, state, count) with the shared parameters (converted to NCHW)."""
    net, state = eqx.nn.make_with_state(Net)(model, shared.channels_first(model))
    n = int(sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_array))))
    return net, state, n


def build(args, model, shared, x, y):
    del args
    net, state, n = make(model, shared)
    opt = optax.sgd(_common.LEARNING_RATE, momentum=_common.MOMENTUM)

    def loss_fn(net, state, x, y):
        logits, state = jax.vmap(net, axis_name=AXIS, in_axes=(0, None),
                                 out_axes=(0, None))(x, state)
        return mean_cross_entropy(logits, y), state

    @eqx.filter_jit
    def train_step(net, state, opt_state, x, y):
        (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(net, state, x, y)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, updates), state, opt_state, loss

    carry = [net, state, opt.init(eqx.filter(net, eqx.is_array))]
    x = jnp.asarray(x.transpose(0, 3, 1, 2))
    y = jnp.asarray(y)

    def step():
        net, state, opt_state, loss = train_step(*carry, x, y)
        jax.block_until_ready((eqx.filter(net, eqx.is_array), state, opt_state, loss))
        carry[:] = [net, state, opt_state]
        return float(loss)

    return step, dict(versions(), equinox=eqx.__version__, param_count=n)


if __name__ == "__main__":
    _common.run(build, framework="equinox")
