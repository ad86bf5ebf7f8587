"""Determinism: the same seed gives bit-identical results, a different seed does not.

Covered: training with `fit` on the embedded digits (params, state, optimizer state
and metrics, in this process and in two fresh processes), augmentation, dropout,
RReLU in training mode, and the shuffling of `BatchIterator`. Comparisons are exact
(`np.array_equal`), never with a tolerance.

The cross-process check runs this module as a script (`python -m
tests.test_determinism --seed 0`), which trains the same small model and prints a
SHA-256 of its parameters.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import augment
from fcnn.data import BatchIterator, load_digits
from fcnn.ops import activations as act
from fcnn.ops import dropout as dropout_ops
from fcnn.train import fit, make_optimizer, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_EXAMPLES = 256  # 8 steps of 32: a few seconds, compile included
BATCH = 32


def leaves_equal(a, b) -> bool:
    """Same tree structure and bit-identical leaves (same dtype, shape and bytes)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(la, lb)
    )


def params_hash(params) -> str:
    """SHA-256 of every leaf's path, dtype, shape and bytes, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        leaf = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def _model():
    """Conv - BatchNorm - ReLU - max pool - dropout - dense: params, state and rng all matter."""
    return fcnn.serial(
        fcnn.Conv(8, 3), fcnn.BatchNorm(), fcnn.Relu(), fcnn.MaxPool(2),
        fcnn.Flatten(), fcnn.Dropout(0.25), fcnn.Dense(10),
    )


@functools.lru_cache(maxsize=None)
def _setup():
    """The data, model, optimizer and one jitted step, shared by every run of this process."""
    (images, labels), _ = load_digits(as_float=True)
    data = (images[:TRAIN_EXAMPLES], labels[:TRAIN_EXAMPLES])
    model = _model()
    optimizer = make_optimizer("momentum", 0.05)
    step = make_train_step(model, fcnn.losses.softmax_cross_entropy, optimizer)
    return data, model, optimizer, step


def train(seed: int):
    """Initialises with `seed` and trains one epoch of 8 steps with `seed` (data order
    and dropout); returns the FitResult."""
    data, model, optimizer, step = _setup()
    _, params, state = model.init(jax.random.PRNGKey(seed), (BATCH, 8, 8, 1))
    return fit(
        model, fcnn.losses.softmax_cross_entropy, optimizer, params, state, data,
        epochs=1, batch_size=BATCH, seed=seed, progress=False, log_every=4, train_step=step,
    )


_train_cached = functools.lru_cache(maxsize=None)(train)


def _history(result):
    """The metrics of every epoch but the wall-clock time."""
    return [{k: v for k, v in record.items() if k != "seconds"} for record in result.history]


# ------------------------------------------------------------------ training


def test_fit_same_seed_is_bit_identical():
    first, second = _train_cached(0), train(0)
    assert first.step == second.step == TRAIN_EXAMPLES // BATCH
    assert leaves_equal(first.params, second.params)
    assert leaves_equal(first.state, second.state)
    assert leaves_equal(first.opt_state, second.opt_state)
    assert _history(first) == _history(second)


def test_fit_different_seed_differs():
    first, other = _train_cached(0), _train_cached(1)
    for name in ("params", "state"):
        a = jax.tree_util.tree_leaves(getattr(first, name))
        b = jax.tree_util.tree_leaves(getattr(other, name))
        assert not any(np.array_equal(x, y) for x, y in zip(a, b) if np.size(x) > 1), name
    assert params_hash(first.params) != params_hash(other.params)
    assert _history(first) != _history(other)


def _hash_in_subprocess(seed: int) -> str:
    # each process draws its own PYTHONHASHSEED: set and dict orders may differ
    out = subprocess.run(
        [sys.executable, "-m", "tests.test_determinism", "--seed", str(seed)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_fit_is_bit_identical_across_processes():
    """Two fresh processes print the same parameter hash, and so does this process."""
    hashes = [_hash_in_subprocess(0) for _ in range(2)]
    assert len(hashes[0]) == 64 and hashes[0] == hashes[1]
    assert hashes[0] == params_hash(_train_cached(0).params)


# ------------------------------------------------------------------ augmentation

AUGMENTATIONS = {
    # a chain splits its key between the links: a flip, a crop, a rotation and noise
    "chain": augment.chain(
        functools.partial(augment.random_flip, horizontal=True, vertical=True),
        functools.partial(augment.random_crop, padding=2, mode="reflect"),
        augment.random_rotation, augment.gaussian_noise,
    ),
    "random_shift": augment.random_shift,
    "random_scale": augment.random_scale,
    "blur": augment.blur,
    "color_jitter": augment.color_jitter,
}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentation_same_key_same_images(name):
    images = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    fn = jax.jit(functools.partial(augment.map_batch, AUGMENTATIONS[name]))
    first = np.asarray(fn(jax.random.PRNGKey(7), images))
    assert np.array_equal(first, np.asarray(fn(jax.random.PRNGKey(7), images)))
    assert not np.array_equal(first, np.asarray(fn(jax.random.PRNGKey(8), images)))
    assert not np.array_equal(first, images)


# ------------------------------------------------------------------ dropout and RReLU


@pytest.mark.parametrize("op", ["dropout", "spatial_dropout", "Dropout", "rrelu", "RRelu"])
def test_random_layers_same_key_same_output(op):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 6, 6, 8)))
    if op == "dropout":
        fn = functools.partial(dropout_ops.dropout, x, 0.5, train=True)
    elif op == "spatial_dropout":
        fn = functools.partial(dropout_ops.spatial_dropout, x, 0.5, train=True)
    elif op == "rrelu":
        def fn(rng):
            return act.rrelu(x, train=True, rng=rng)
    else:
        layer = fcnn.Dropout(0.5) if op == "Dropout" else fcnn.RRelu()
        _, params, state = layer.init(jax.random.PRNGKey(0), x.shape)

        def fn(rng):
            return layer.apply(params, state, x, train=True, rng=rng)[0]
    fn = jax.jit(fn)
    first = np.asarray(fn(jax.random.PRNGKey(3)))
    assert np.array_equal(first, np.asarray(fn(jax.random.PRNGKey(3))))
    assert not np.array_equal(first, np.asarray(fn(jax.random.PRNGKey(4))))
    # the draw is random, not a constant pattern: a unit kept or a slope drawn
    # varies across positions
    assert len(np.unique(np.round(first / np.asarray(x), 6))) > 1


# ------------------------------------------------------------------ batching


@pytest.mark.parametrize("balanced", [False, True])
def test_batch_iterator_same_seed_same_order(balanced):
    labels = np.arange(50, dtype=np.int32) % 3
    images = np.arange(50, dtype=np.float32).reshape(50, 1)

    def batches(seed, count=12):
        it = BatchIterator(images, labels, 8, seed=seed, balanced=balanced, prefetch=False)
        return [tuple(np.asarray(a) for a in next(it)) for _ in range(count)]  # > 2 epochs

    first, again, other = batches(5), batches(5), batches(6)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(first, again))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    # each epoch reshuffles: epoch 0 and epoch 1 of one seed differ
    steps = BatchIterator(images, labels, 8, seed=5, balanced=balanced).steps_per_epoch
    assert not np.array_equal(first[0][0], first[steps][0])


def main(argv=None):
    """Trains with --seed in this fresh process and prints the parameter hash."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # the configuration tests/conftest.py gives the test process
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_enable_x64", True)
    print(params_hash(train(args.seed).params))


if __name__ == "__main__":
    main()
