"""RefNet-MNIST in Equinox: per-example CHW modules, vmapped over the batch."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from benchmarks.peers import _common
from benchmarks.peers._jax import mean_cross_entropy, versions


class RefNet(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    dense1: eqx.nn.Linear
    dense2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(1, 32, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(32, 64, 3, padding=1, key=k2)
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.dense1 = eqx.nn.Linear(_common.FLATTEN, 128, key=k3)
        self.dense2 = eqx.nn.Linear(128, 10, key=k4)

    def __call__(self, x):  # x: (C, H, W), one example
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = self.pool(jax.nn.relu(self.conv2(x)))
        x = jax.nn.relu(self.dense1(x.reshape(-1)))
        return self.dense2(x)


def build(args, p, x, y):
    del args
    c = _common.to_channels_first(p)
    model = RefNet(jax.random.PRNGKey(0))
    # Start from the shared parameter values (Equinox keeps conv biases as (C, 1, 1)).
    model = eqx.tree_at(
        lambda m: (m.conv1.weight, m.conv1.bias, m.conv2.weight, m.conv2.bias,
                   m.dense1.weight, m.dense1.bias, m.dense2.weight, m.dense2.bias),
        model,
        tuple(jnp.asarray(a) for a in (
            c["conv1_w"], c["conv1_b"].reshape(-1, 1, 1), c["conv2_w"],
            c["conv2_b"].reshape(-1, 1, 1), c["dense1_w"], c["dense1_b"],
            c["dense2_w"], c["dense2_b"])),
    )
    opt = optax.sgd(_common.LEARNING_RATE, momentum=_common.MOMENTUM)

    def loss_fn(model, x, y):
        return mean_cross_entropy(jax.vmap(model)(x), y)

    @eqx.filter_jit
    def train_step(model, opt_state, x, y):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    state = [model, opt.init(eqx.filter(model, eqx.is_array))]
    x = jnp.asarray(x.transpose(0, 3, 1, 2))
    y = jnp.asarray(y)

    def step():
        model, opt_state, loss = train_step(state[0], state[1], x, y)
        jax.block_until_ready((eqx.filter(model, eqx.is_array), opt_state, loss))
        state[0], state[1] = model, opt_state
        return float(loss)

    return step, dict(versions(), equinox=eqx.__version__)


if __name__ == "__main__":
    _common.run(build, framework="equinox")
