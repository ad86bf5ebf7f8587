"""Seeded train / validation / test splits, stratified by class by default.

The procedure behind them: tune hyper-parameters on the validation split, and
evaluate on the test split once, at the end. The same seed always gives the same
split, and the examples keep their original order inside each part.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fcnn._checks import check_int, check_number, is_int


class Split(NamedTuple):
    """One part of a dataset: images (N, H, W, C) and labels (N,) int32."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])


def resolve_size(size, total: int, name: str = "size") -> int:
    """A part size given as a count (int in [0, total]) or a fraction (float in [0, 1))."""
    if is_int(size):
        return check_int(size, name, low=0, high=total, what="a count",
                         hint=f"(of the {total} examples) or a fraction in [0, 1)")
    if isinstance(size, (float, np.floating)):
        fraction = check_number(size, name, low=0.0, high=1.0, high_open=True, what="a fraction")
        return int(round(fraction * total))
    raise TypeError(f"{name}={size!r}: expected an int count or a float fraction")


def split_indices(labels, size, *, seed: int, stratify: bool = True, name: str = "size"):
    """Chooses `size` of the examples to hold out; returns `(kept, held_out)` indices.

    Both index arrays are sorted. With `stratify`, each class contributes in proportion
    to its count (within one example): the examples are ordered by the key
    (rank within its class in a seeded shuffle + 1/2) / class count, and the first
    `size` are held out.
    """
    seed = check_int(seed, "seed", low=0)
    labels = np.asarray(labels)
    total = labels.shape[0]
    count = resolve_size(size, total, name)
    rng = np.random.default_rng(seed)
    order = rng.permutation(total)
    if stratify and total:
        _, inverse, counts = np.unique(labels[order], return_inverse=True, return_counts=True)
        by_class = np.argsort(inverse, kind="stable")
        starts = np.cumsum(counts) - counts
        ranks = np.empty(total, np.float64)
        ranks[by_class] = np.arange(total) - np.repeat(starts, counts)
        order = order[np.argsort((ranks + 0.5) / counts[inverse], kind="stable")]
    return np.sort(order[count:]), np.sort(order[:count])


def split_off(images, labels, size, *, seed: int, stratify: bool = True, name: str = "size"):
    """Splits `(images, labels)` into `(kept, held_out)` Splits; see `split_indices`."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images has {images.shape[0]} examples but labels has {labels.shape[0]}"
        )
    kept, held = split_indices(labels, size, seed=seed, stratify=stratify, name=name)
    return Split(images[kept], labels[kept]), Split(images[held], labels[held])


def subsample(split: Split, size: int | None, *, seed: int) -> Split:
    """A fixed random `size` examples of `split`, in their original order.

    `size=None` or a size of at least the split's returns the split itself. The same
    seed always picks the same examples (not stratified: the held-out part of
    `split_indices(..., stratify=False)`).
    """
    if size is None or size >= split.num_examples:
        return split
    _, held = split_indices(split.labels, size, seed=seed, stratify=False)
    return Split(split.images[held], split.labels[held])


def train_validation_test_split(
    images, labels, *, validation_size, test_size, seed: int = 0, stratify: bool = True
):
    """Splits one labelled set into `(train, validation, test)` Splits with a fixed seed.

    Sizes are counts or fractions of the whole set. The test part is chosen first, so
    changing `validation_size` never changes the test set.
    """
    total = np.asarray(labels).shape[0]
    n_test = resolve_size(test_size, total, "test_size")
    n_validation = resolve_size(validation_size, total, "validation_size")
    if n_test + n_validation > total:
        raise ValueError(
            f"validation_size={validation_size!r} and test_size={test_size!r} together "
            f"take {n_validation + n_test} examples, more than the {total} available"
        )
    rest, test = split_off(images, labels, n_test, seed=seed, stratify=stratify, name="test_size")
    train, validation = split_off(
        rest.images, rest.labels, n_validation, seed=seed + 1, stratify=stratify,
        name="validation_size",
    )
    return train, validation, test
