"""BatchIterator: deterministic order, drop/keep policy, exact resume, balanced sampling,
prefetching, and no retracing of a jitted step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnn.data import BatchIterator


def make_data(n=50, classes=5):
    # Each image holds its own index, so a batch tells which examples it contains.
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 3), np.float32)
    labels = (np.arange(n) % classes).astype(np.int32)
    return images, labels


def ids(batch):
    images, _ = batch
    return np.asarray(images)[:, 0, 0, 0].astype(int).tolist()


def take(iterator, count):
    return [ids(next(iterator)) for _ in range(count)]


def test_batches_are_device_arrays_of_the_right_shape():
    images, labels = make_data()
    it = BatchIterator(images, labels, 8, seed=0)
    batch_images, batch_labels = next(it)
    assert isinstance(batch_images, jax.Array) and isinstance(batch_labels, jax.Array)
    chex.assert_shape(batch_images, (8, 2, 2, 3))
    chex.assert_shape(batch_labels, (8,))
    assert batch_images.dtype == jnp.float32 and batch_labels.dtype == jnp.int32
    # Labels travel with their images.
    np.testing.assert_array_equal(np.asarray(batch_labels), np.array(ids((batch_images, None))) % 5)


def test_keep_last_covers_every_example_once_per_epoch():
    images, labels = make_data(50)
    it = BatchIterator(images, labels, 8, seed=3, drop_last=False)
    assert it.steps_per_epoch == 7
    for epoch in range(3):
        batches = [ids(b) for b in it.epoch_batches()]
        assert [len(b) for b in batches] == [8] * 6 + [2]
        assert sorted(sum(batches, [])) == list(range(50))
        assert it.position == (epoch + 1, 0)


def test_drop_last_gives_full_batches_and_varies_the_dropped_examples():
    images, labels = make_data(50)
    it = BatchIterator(images, labels, 8, seed=3)
    assert it.steps_per_epoch == 6
    dropped = []
    for _ in range(4):
        batches = [ids(b) for b in it.epoch_batches()]
        assert all(len(b) == 8 for b in batches) and len(batches) == 6
        seen = sum(batches, [])
        assert len(set(seen)) == 48
        dropped.append(tuple(sorted(set(range(50)) - set(seen))))
    assert len(set(dropped)) > 1


def test_order_is_a_function_of_seed_and_epoch():
    images, labels = make_data()
    a = take(BatchIterator(images, labels, 10, seed=5), 10)
    b = take(BatchIterator(images, labels, 10, seed=5, prefetch=False), 10)
    c = take(BatchIterator(images, labels, 10, seed=6), 10)
    assert a == b
    assert a != c
    assert a[:5] != a[5:]  # epoch 1 is reshuffled
    order = np.random.default_rng((5, 1)).permutation(50)  # the documented rule
    assert sum(a[5:], []) == order.tolist()


@pytest.mark.parametrize("prefetch", [True, False, 3])
@pytest.mark.parametrize("balanced", [False, True])
def test_resume_from_position_is_exact(prefetch, balanced):
    images, labels = make_data(47, classes=4)
    reference = BatchIterator(images, labels, 6, seed=11, balanced=balanced, prefetch=prefetch)
    steps = reference.steps_per_epoch
    expected = take(reference, 3 * steps)
    for stop in (0, 4, steps, steps + 2, 2 * steps - 1):
        it = BatchIterator(images, labels, 6, seed=11, balanced=balanced, prefetch=prefetch)
        take(it, stop)
        position = it.position
        assert all(type(p) is int for p in position)
        assert position == divmod(stop, steps)
        resumed = BatchIterator(images, labels, 6, seed=11, balanced=balanced, start=position)
        assert resumed.position == position
        assert take(resumed, 6) == expected[stop:stop + 6]
        it.seek((0, 0))  # seek discards prefetched batches
        assert take(it, 2) == expected[:2]


def test_epoch_batches_from_mid_epoch():
    images, labels = make_data(40)
    it = BatchIterator(images, labels, 10, seed=0, start=(2, 1))
    rest = [ids(b) for b in it.epoch_batches()]
    assert len(rest) == 3 and it.position == (3, 0)
    full = BatchIterator(images, labels, 10, seed=0, start=(2, 0))
    assert [ids(b) for b in full.epoch_batches()][1:] == rest
    assert ids(it.batch_at(2, 1)) == rest[0]


def test_prefetch_does_not_move_position():
    images, labels = make_data()
    it = BatchIterator(images, labels, 5, seed=0, prefetch=4)
    next(it)
    assert it.position == (0, 1)
    assert len(it._buffer) == 4  # batches already on their way to the device


def test_balanced_sampling_draws_every_class_equally():
    labels = np.repeat(np.arange(3), [40, 10, 3]).astype(np.int32)
    images = np.arange(53, dtype=np.float32).reshape(53, 1, 1, 1)
    it = BatchIterator(images, labels, 12, seed=2, balanced=True, drop_last=False)
    assert it.epoch_size == 120 and it.steps_per_epoch == 10
    for epoch in range(2):
        order = it.epoch_order(epoch)
        np.testing.assert_array_equal(np.bincount(labels[order]), [40, 40, 40])
        uses = np.bincount(order, minlength=53)
        assert np.all(uses[:40] == 1)
        assert np.all(uses[40:50] == 4)
        assert set(uses[50:].tolist()) <= {13, 14} and uses[50:].sum() == 40
        served = sum((np.asarray(b[1]).tolist() for b in it.epoch_batches()), [])
        assert np.bincount(served).tolist() == [40, 40, 40]
    assert not np.array_equal(it.epoch_order(0), it.epoch_order(1))


def test_no_copy_of_the_dataset():
    images, labels = make_data()
    it = BatchIterator(images, labels, 10, seed=0)
    assert np.shares_memory(it.images, images)
    index = it.batch_indices(0, 2)
    np.testing.assert_array_equal(it.batch_at(0, 2)[0], images[index])


def test_device_arrays_as_input():
    images, labels = make_data()
    a = take(BatchIterator(jnp.asarray(images), jnp.asarray(labels), 10, seed=1), 7)
    b = take(BatchIterator(images, labels, 10, seed=1), 7)
    assert a == b


@pytest.mark.parametrize("drop_last, traces", [(True, 1), (False, 2)])
def test_jitted_step_traces_once_per_shape(drop_last, traces):
    images, labels = make_data(50)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=traces)
    def step(x, y):
        return jnp.sum(x) + jnp.sum(y)

    it = BatchIterator(images, labels, 8, seed=0, drop_last=drop_last)
    for _ in range(3 * it.steps_per_epoch):
        step(*next(it))


def test_errors():
    images, labels = make_data(20)
    with pytest.raises(ValueError, match=r"batch_size=32 is larger than the 20 examples.*drop_last=False"):
        BatchIterator(images, labels, 32, seed=0)
    assert BatchIterator(images, labels, 32, seed=0, drop_last=False).steps_per_epoch == 1
    with pytest.raises(ValueError, match=r"batch_size=0: expected a positive int"):
        BatchIterator(images, labels, 0, seed=0)
    with pytest.raises(ValueError, match=r"position \(0, 5\).*steps_per_epoch \(= 5\)"):
        BatchIterator(images, labels, 4, seed=0, start=(0, 5))
    with pytest.raises(ValueError, match=r"position \(-1, 0\)"):
        BatchIterator(images, labels, 4, seed=0).seek((-1, 0))
    with pytest.raises(ValueError, match=r"images has shape \(20, 2, 2, 3\) but labels has 19"):
        BatchIterator(images, labels[:19], 4, seed=0)
    with pytest.raises(ValueError, match=r"1-D integer array"):
        BatchIterator(images, labels.astype(np.float32), 4, seed=0)
    with pytest.raises(ValueError, match=r"seed=None"):
        BatchIterator(images, labels, 4, seed=None)
    with pytest.raises(ValueError, match=r"prefetch=-1"):
        BatchIterator(images, labels, 4, seed=0, prefetch=-1)
