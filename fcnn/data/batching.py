"""Deterministic, resumable mini-batches with prefetching to the device.

The order of epoch e is a pure function of (seed, e): a permutation drawn from
`numpy.random.default_rng((seed, e))`. Batch (e, s) is the slice
[s * batch_size, (s + 1) * batch_size) of that order, gathered from the arrays by
index, so no epoch ever copies the whole dataset and any position can be restarted
exactly, which is what checkpoints rely on.

Last partial batch: dropped by default (`drop_last=True`), so every step sees the
same shape and a jitted step never retraces; with `drop_last=False` it is kept, and
the step traces once more for its smaller shape.

Class-balanced sampling (`balanced=True`) is the "label shuffling" used for
imbalanced classes: each epoch lists every class equally often, M times, M being the
size of the largest class; a class of n_c < M examples repeats its examples in
reshuffled rounds (each appears floor(M / n_c) or ceil(M / n_c) times), then the
whole list is shuffled. An epoch then has (number of classes) * M examples.
"""

from __future__ import annotations

import collections

import jax
import numpy as np

from fcnn._checks import check_bool, check_int, is_int, positive_int

# Batches put on the device ahead of the one being consumed when `prefetch=True`.
DEFAULT_PREFETCH = 2


def put_global(array, device):
    """`array` on `device` (a device, a sharding or None): with a sharding that spans
    several processes, every process holds the whole value and puts only the rows of
    its own devices (`jax.make_array_from_process_local_data`)."""
    if device is None or not hasattr(device, "addressable_devices_indices_map") \
            or device.is_fully_addressable:
        return jax.device_put(array, device)
    array = np.asarray(array)
    index = device.addressable_devices_indices_map(array.shape).values()
    starts = [rows[0].start or 0 for rows in index]
    stops = [array.shape[0] if rows[0].stop is None else rows[0].stop for rows in index]
    local = array[min(starts):max(stops)]  # a 1-D data mesh: the process's rows are one block
    return jax.make_array_from_process_local_data(device, local, array.shape)


class BatchIterator:
    """Yields `(images, labels)` batches forever, epoch after epoch, on the device.

    Args:
      images: (N, ...) array (numpy, or a jax array already on the device).
      labels: (N,) integer array.
      batch_size: examples per batch.
      seed: fixes the order of every epoch.
      drop_last: drop the last partial batch of each epoch (the default), or keep it.
      balanced: draw every class equally often per epoch (label shuffling).
      start: the (epoch, step) to start from, e.g. a checkpoint's `position`.
      prefetch: True (2 batches ahead), False, or the number of batches to put on
        the device ahead of the one being consumed; the transfers are asynchronous,
        so they overlap the computation on the current batch.
      device: where batches go (a jax Device or Sharding); None for the default.

    `position` is the (epoch, step) of the next batch to be returned, as two Python
    ints; `BatchIterator(..., start=it.position)` or `it.seek(position)` resumes
    exactly there.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        *,
        seed: int,
        drop_last: bool = True,
        balanced: bool = False,
        start=(0, 0),
        prefetch: bool | int = True,
        device=None,
    ):
        self.images = images if isinstance(images, (np.ndarray, jax.Array)) else np.asarray(images)
        labels = labels if isinstance(labels, (np.ndarray, jax.Array)) else np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels has shape {tuple(labels.shape)} and dtype {labels.dtype}: expected "
                "a 1-D integer array of class indices"
            )
        if self.images.ndim < 1 or self.images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images has shape {tuple(self.images.shape)} but labels has "
                f"{labels.shape[0]} entries: the first axes must agree"
            )
        self.labels = labels
        self.batch_size = positive_int(batch_size, "batch_size")
        self.seed = check_int(seed, "seed", low=0)
        self.drop_last = check_bool(drop_last, "drop_last")
        self.balanced = check_bool(balanced, "balanced")
        self.device = device
        if isinstance(prefetch, bool):
            prefetch = DEFAULT_PREFETCH if prefetch else 0
        self.prefetch = check_int(prefetch, "prefetch", low=0, what="True, False or an int")

        host_labels = np.asarray(labels)
        if self.balanced:
            classes = np.unique(host_labels)
            self._members = [np.flatnonzero(host_labels == c) for c in classes]
            largest = max((m.shape[0] for m in self._members), default=0)
            self.epoch_size = len(self._members) * largest
        else:
            self.epoch_size = int(host_labels.shape[0])
        if self.epoch_size == 0:
            raise ValueError("BatchIterator needs at least one example, got none")
        if self.drop_last:
            self.steps_per_epoch = self.epoch_size // self.batch_size
            if self.steps_per_epoch == 0:
                raise ValueError(
                    f"batch_size={batch_size!r} is larger than the {self.epoch_size} "
                    "examples of an epoch, so drop_last=True would leave no batch; use a "
                    "smaller batch_size or drop_last=False"
                )
        else:
            self.steps_per_epoch = -(-self.epoch_size // self.batch_size)
        self._order_cache: tuple[int, np.ndarray] | None = None
        self.seek(start)

    # Order -----------------------------------------------------------------------

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The example indices of epoch `epoch`, in the order they are served."""
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        rng = np.random.default_rng((self.seed, epoch))
        if not self.balanced:
            order = rng.permutation(self.epoch_size)
        else:
            per_class = self.epoch_size // len(self._members)
            picks = []
            for members in self._members:
                rounds = -(-per_class // members.shape[0])
                picks.append(
                    np.concatenate([rng.permutation(members) for _ in range(rounds)])[:per_class]
                )
            order = rng.permutation(np.concatenate(picks))
        order.flags.writeable = False
        self._order_cache = (epoch, order)
        return order

    def batch_indices(self, epoch: int, step: int) -> np.ndarray:
        """The example indices of batch (epoch, step)."""
        epoch, step = self._check_position((epoch, step))
        begin = step * self.batch_size
        return self.epoch_order(epoch)[begin:begin + self.batch_size]

    def batch_at(self, epoch: int, step: int):
        """Batch (epoch, step) as arrays on the host side, without moving `position`."""
        index = self.batch_indices(epoch, step)
        return self.images[index], self.labels[index]

    # Position --------------------------------------------------------------------

    def _check_position(self, position) -> tuple[int, int]:
        ok = (
            isinstance(position, (tuple, list))
            and len(position) == 2
            and all(is_int(p) for p in position)
        )
        if not ok or position[0] < 0 or not 0 <= position[1] < self.steps_per_epoch:
            raise ValueError(
                f"position {position!r}: expected (epoch, step) with epoch >= 0 and "
                f"0 <= step < steps_per_epoch (= {self.steps_per_epoch})"
            )
        return int(position[0]), int(position[1])

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, step) of the next batch `next()` returns."""
        return self._position

    def seek(self, position) -> None:
        """Moves to `position` = (epoch, step); prefetched batches are discarded."""
        self._position = self._check_position(position)
        self._load_position = self._position
        self._buffer: collections.deque = collections.deque()

    def _advance(self, position):
        epoch, step = position
        step += 1
        return (epoch + 1, 0) if step == self.steps_per_epoch else (epoch, step)

    # Iteration -------------------------------------------------------------------

    def _load_next(self) -> None:
        images, labels = self.batch_at(*self._load_position)
        # device_put is asynchronous: the copy proceeds while earlier batches train.
        self._buffer.append((put_global(images, self.device), put_global(labels, self.device)))
        self._load_position = self._advance(self._load_position)

    def __iter__(self):
        return self

    def __next__(self):
        while len(self._buffer) < 1 + self.prefetch:
            self._load_next()
        self._position = self._advance(self._position)
        return self._buffer.popleft()

    def epoch_batches(self):
        """Yields the remaining batches of the current epoch (all of them at step 0)."""
        epoch = self._position[0]
        while self._position[0] == epoch:
            yield next(self)

    def __repr__(self) -> str:
        return (
            f"BatchIterator(examples={self.labels.shape[0]}, batch_size={self.batch_size}, "
            f"steps_per_epoch={self.steps_per_epoch}, drop_last={self.drop_last}, "
            f"balanced={self.balanced}, position={self.position})"
        )
