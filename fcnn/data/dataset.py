"""The Dataset container, `load_dataset` (the entry point by name) and
`load_image_folder` (your own images)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fcnn._checks import check_int
from fcnn.data import cifar10, digits, idx, image_folder
from fcnn.data.errors import DATA_DIR_HELP
from fcnn.data.cache import resolve_cache_dir
from fcnn.data.normalize import Normalization, check_normalization, fit_normalization
from fcnn.data.split import Split, resolve_size, split_off

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


def _read_cifar10(directory: str, cache_dir):
    """The binary version when present, else the image-folder version (zip or folder)."""
    try:
        cifar10.resolve_cifar10_directory(directory, "train")
    except (FileNotFoundError, ValueError) as binary_error:
        source = cifar10.find_cifar10_images(directory)
        if source is None:
            if not isinstance(binary_error, FileNotFoundError):
                raise  # only the pickled version is there: say so
            raise FileNotFoundError(
                f"{binary_error}; nor the image-folder version: {cifar10.CIFAR10_ZIP} (or "
                "another .zip, or a folder, of train/<class>/*.jpg and test/<class>/*.jpg) "
                f"in {directory!r} or its cifar10/ sub-folder") from None
        x, y, xt, yt = cifar10.read_cifar10_images(source, cache_dir=cache_dir)
        return x, y, xt, yt, cifar10.CIFAR10_CLASS_NAMES
    x, y = cifar10.read_cifar10(directory, "train")
    xt, yt = cifar10.read_cifar10(directory, "test")
    return x, y, xt, yt, cifar10.read_cifar10_class_names(directory)


def _read_raw(name: str, data_dir, cache_dir):
    """Returns (train_images, train_labels, test_images, test_labels, class_names)."""
    if name == "digits":
        (x, y), (xt, yt) = digits.load_digits()
        return x, y, xt, yt, digits.DIGITS_CLASS_NAMES
    directory = resolve_data_dir(data_dir, name)
    if name == "cifar10":
        return _read_cifar10(directory, cache_dir)
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
    cache_dir=None,
) -> Dataset:
    """Loads a dataset by name: "digits", "mnist", "fashion-mnist" or "cifar10".

    `data_dir` (default: $FCNN_DATA_DIR) is the folder holding the files, or a data
    root with one sub-folder per dataset (`mnist/`, `fashion-mnist/`,
    `cifar-10-batches-bin/` or `cifar10/`); "digits" is bundled with scikit-learn and
    needs none. CIFAR-10 is read from the binary version when its files are there,
    else from the image-folder version (`cifar10-jpeg.zip`, any .zip of that layout,
    or the unpacked folder), whose decoded arrays are cached in `cache_dir` (default
    $FCNN_CACHE_DIR, else ~/.cache/fcnn; False for no cache).
    `validation_size` (a count or a fraction of the training set) is split off the
    training set, stratified, with `seed`; the test split is the dataset's own and
    never changes. `normalize` is "standardize" (per-channel zero mean, unit
    variance), "minmax" (per-channel [0, 1]) or None (raw pixel values as float32),
    with statistics fitted on the training split only (after removing validation).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown: expected one of {DATASETS}")
    normalize = check_normalization(normalize)
    seed = check_int(seed, "seed", low=0)
    if cache_dir is not None:
        resolve_cache_dir(cache_dir)  # a bad value is refused before any reading
    x, y, xt, yt, class_names = _read_raw(name, data_dir, cache_dir)
    return _assemble(name, Split(x, y), Split(xt, yt), class_names, normalize=normalize,
                     validation_size=validation_size, seed=seed)


def load_image_folder(
    path,
    *,
    channels: int = 3,
    size=None,
    normalize: str | None = "standardize",
    validation_size=0,
    seed: int = 0,
    cache_dir=None,
    name: str | None = None,
) -> Dataset:
    """Loads your own images: a folder or .zip of `[top/]train/<class>/*.jpg|jpeg|png`
    and `test/<class>/...` (optionally `validation/` or `val/`), as `load_dataset` does.

    Class names are the sorted class folders; images are uint8-decoded with Pillow to
    RGB (`channels=3`) or grayscale (`channels=1`), all of one size unless `size=(H,
    W)` resizes them (bilinear); see fcnn.data.image_folder. The decoded arrays are
    cached in `cache_dir` (default $FCNN_CACHE_DIR, else ~/.cache/fcnn; False for no
    cache). A `validation/` folder becomes the validation split; without one,
    `validation_size` (a count or a fraction) is split off the training set,
    stratified, with `seed`. `normalize` as in `load_dataset`; `name` defaults to
    the folder's or zip's name.
    """
    normalize = check_normalization(normalize)
    seed = check_int(seed, "seed", low=0)
    arrays, class_names = image_folder.read_splits(
        path, ("train", "test", "validation"), channels=channels, size=size,
        cache_dir=cache_dir, optional=("validation",))
    validation = None
    if "validation" in arrays:
        if not (isinstance(validation_size, (int, float)) and validation_size == 0):
            raise ValueError(
                f"validation_size={validation_size!r}: {os.fspath(path)!r} has its own "
                "validation split (a validation/ or val/ folder); pass validation_size=0")
        validation = Split(*arrays["validation"])
    if name is None:
        base = os.path.basename(os.path.normpath(os.fspath(path)))
        name = base[:-4] if base.lower().endswith(".zip") else base
    return _assemble(name, Split(*arrays["train"]), Split(*arrays["test"]), class_names,
                     normalize=normalize, validation_size=validation_size, seed=seed,
                     validation=validation)


def _assemble(name, train: Split, test: Split, class_names, *, normalize, validation_size,
              seed, validation: Split | None = None) -> Dataset:
    """Splits off validation, fits the normalization on train and converts to float32."""
    if validation is None:
        n_validation = resolve_size(validation_size, train.labels.shape[0], "validation_size")
        if n_validation:
            train, validation = split_off(*train, n_validation, seed=seed,
                                          name="validation_size")
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
        image_shape=tuple(int(d) for d in train.images.shape[1:]),
        normalization=normalization,
    )
