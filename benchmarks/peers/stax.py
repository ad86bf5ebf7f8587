"""RefNet-MNIST in `jax.example_libraries.stax` (NHWC, HWIO)."""

from __future__ import annotations

import jax.numpy as jnp
from jax.example_libraries import stax

from benchmarks.peers import _common
from benchmarks.peers._jax import mean_cross_entropy, trainer, versions


def build(args, p, x, y):
    del args
    _, apply_fn = stax.serial(
        stax.Conv(32, (3, 3), padding="SAME"), stax.Relu,
        stax.MaxPool((2, 2), strides=(2, 2)),
        stax.Conv(64, (3, 3), padding="SAME"), stax.Relu,
        stax.MaxPool((2, 2), strides=(2, 2)),
        stax.Flatten,
        stax.Dense(128), stax.Relu,
        stax.Dense(10),
    )
    # stax keeps conv biases as (1, 1, 1, C) and stateless layers as ().
    params = [
        (p["conv1_w"], p["conv1_b"].reshape(1, 1, 1, -1)), (), (),
        (p["conv2_w"], p["conv2_b"].reshape(1, 1, 1, -1)), (), (),
        (),
        (p["dense1_w"], p["dense1_b"]), (),
        (p["dense2_w"], p["dense2_b"]),
    ]

    def loss_fn(params, x, y):
        return mean_cross_entropy(apply_fn(params, x), y)

    return trainer(loss_fn, params, x, y), versions()


if __name__ == "__main__":
    _common.run(build, framework="stax")
