"""RefNet-MNIST in flax.linen (NHWC, HWIO)."""

from __future__ import annotations

import flax
import flax.linen as nn

from benchmarks.peers import _common
from benchmarks.peers._jax import mean_cross_entropy, trainer, versions


class RefNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128)(x))
        return nn.Dense(10)(x)


def build(args, p, x, y):
    del args
    model = RefNet()
    params = {"params": {
        "Conv_0": {"kernel": p["conv1_w"], "bias": p["conv1_b"]},
        "Conv_1": {"kernel": p["conv2_w"], "bias": p["conv2_b"]},
        "Dense_0": {"kernel": p["dense1_w"], "bias": p["dense1_b"]},
        "Dense_1": {"kernel": p["dense2_w"], "bias": p["dense2_b"]},
    }}

    def loss_fn(params, x, y):
        return mean_cross_entropy(model.apply(params, x), y)

    return trainer(loss_fn, params, x, y), dict(versions(), flax=flax.__version__)


if __name__ == "__main__":
    _common.run(build, framework="linen")
