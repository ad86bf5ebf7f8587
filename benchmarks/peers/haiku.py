"""RefNet-MNIST in dm-haiku (NHWC, HWIO)."""

from __future__ import annotations

import haiku as hk
import jax

from benchmarks.peers import _common
from benchmarks.peers._jax import mean_cross_entropy, trainer, versions


def refnet(x):
    x = hk.Conv2D(32, 3, padding="SAME")(x)
    x = hk.max_pool(jax.nn.relu(x), window_shape=2, strides=2, padding="VALID")
    x = hk.Conv2D(64, 3, padding="SAME")(x)
    x = hk.max_pool(jax.nn.relu(x), window_shape=2, strides=2, padding="VALID")
    x = hk.Flatten()(x)
    x = jax.nn.relu(hk.Linear(128)(x))
    return hk.Linear(10)(x)


def build(args, p, x, y):
    del args
    model = hk.without_apply_rng(hk.transform(refnet))
    params = {
        "conv2_d": {"w": p["conv1_w"], "b": p["conv1_b"]},
        "conv2_d_1": {"w": p["conv2_w"], "b": p["conv2_b"]},
        "linear": {"w": p["dense1_w"], "b": p["dense1_b"]},
        "linear_1": {"w": p["dense2_w"], "b": p["dense2_b"]},
    }

    def loss_fn(params, x, y):
        return mean_cross_entropy(model.apply(params, x), y)

    return trainer(loss_fn, params, x, y), dict(versions(), haiku=hk.__version__)


if __name__ == "__main__":
    _common.run(build, framework="haiku")
