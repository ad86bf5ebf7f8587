"""The Dataset container and `load_dataset`, the one entry point by name."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fcnn.data import cifar10, digits, idx
from fcnn.data.errors import DATA_DIR_HELP
from fcnn.data.normalize import Normalization, check_normalization, fit_normalization
from fcnn.data.split import Split, check_seed, resolve_size, split_off

DATA_DIR_ENV = "FCNN_DATA_DIR"
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset, split and normalized.

    `train`, `validation` (None when no validation split was asked for) and `test` are
    `Split(images, labels)` with images (N, H, W, C) float32 and labels (N,) int32.
    `normalization` holds the statistics fitted on `train` (None for raw values), so
    anything evaluated later can be normalized the same way.
    """

    name: str
    train: Split
    validation: Split | None
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    normalization: Normalization | None


def resolve_data_dir(data_dir, name: str) -> str:
    """`data_dir`, else $FCNN_DATA_DIR; raises a message saying what to pass otherwise."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        raise FileNotFoundError(f"dataset {name!r} reads files from disk: {DATA_DIR_HELP}")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        what = "is a file, not a directory" if os.path.exists(data_dir) else "does not exist"
        raise FileNotFoundError(f"dataset {name!r}: data directory {data_dir!r} {what}; {DATA_DIR_HELP}")
    return data_dir


def _read_raw(name: str, data_dir):
    """Returns (train_images, train_labels, test_images, test_labels, class_names)."""
    if name == "digits":
        (x, y), (xt, yt) = digits.load_digits()
        return x, y, xt, yt, digits.DIGITS_CLASS_NAMES
    directory = resolve_data_dir(data_dir, name)
    if name == "cifar10":
        x, y = cifar10.read_cifar10(directory, "train")
        xt, yt = cifar10.read_cifar10(directory, "test")
        return x, y, xt, yt, cifar10.read_cifar10_class_names(directory)
    if name == "mnist":
        reader, names = idx.read_mnist, idx.MNIST_CLASS_NAMES
    else:
        reader, names = idx.read_fashion_mnist, idx.FASHION_MNIST_CLASS_NAMES
    x, y = reader(directory, "train")
    xt, yt = reader(directory, "test")
    return x, y, xt, yt, names


def load_dataset(
    name: str,
    data_dir=None,
    *,
    normalize: str | None = "standardize",
    validation_size=0,
    seed: int = 0,
) -> Dataset:
    """Loads a dataset by name: "digits", "mnist", "fashion-mnist" or "cifar10".

    `data_dir` (default: $FCNN_DATA_DIR) is the folder holding the files, or a data
    root with one sub-folder per dataset (`mnist/`, `fashion-mnist/`,
    `cifar-10-batches-bin/`); "digits" is bundled with scikit-learn and needs none.
    `validation_size` (a count or a fraction of the training set) is split off the
    training set, stratified, with `seed`; the test split is the dataset's own and
    never changes. `normalize` is "standardize" (per-channel zero mean, unit
    variance), "minmax" (per-channel [0, 1]) or None (raw pixel values as float32),
    with statistics fitted on the training split only (after removing validation).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown: expected one of {DATASETS}")
    normalize = check_normalization(normalize)
    seed = check_seed(seed)
    x, y, xt, yt, class_names = _read_raw(name, data_dir)
    n_validation = resolve_size(validation_size, y.shape[0], "validation_size")
    validation = None
    if n_validation:
        train, validation = split_off(x, y, n_validation, seed=seed, name="validation_size")
    else:
        train = Split(x, y)
    test = Split(xt, yt)
    normalization = fit_normalization(train.images, normalize) if normalize else None

    def finish(split: Split | None) -> Split | None:
        if split is None:
            return None
        if normalization is None:
            images = split.images.astype(np.float32)
        else:
            images = normalization.apply(split.images)
        return Split(images, split.labels.astype(np.int32))

    return Dataset(
        name=name,
        train=finish(train),
        validation=finish(validation),
        test=finish(test),
        num_classes=len(class_names),
        class_names=tuple(class_names),
        image_shape=tuple(int(d) for d in x.shape[1:]),
        normalization=normalization,
    )
