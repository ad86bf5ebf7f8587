"""CIFAR-10, binary version: fixed-size records converted to NHWC; and where to find
the image-folder version (JPEGs in a zip or a folder, read by fcnn.data.image_folder).

Each record is 1 label byte followed by 3072 pixel bytes: the 1024 red values, then
the green, then the blue, each plane 32 x 32 row-major. The training set is
`data_batch_1.bin` .. `data_batch_5.bin`, the test set `test_batch.bin`, the class
names one per line in `batches.meta.txt`. Reference: Krizhevsky (2009), "Learning
Multiple Layers of Features from Tiny Images"; https://www.cs.toronto.edu/~kriz/cifar.html.

The image-folder version is `cifar10-jpeg.zip` (or any zip, or an unpacked folder,
of the layout `[cifar10/]train/<class>/*.jpg` and `test/<class>/*.jpg`);
`find_cifar10_images` locates it, and `load_dataset("cifar10")` reads it when the
binary files are absent.

The Python version of the dataset is a set of pickles; it is refused, because
unpickling a file can run arbitrary code.
"""

from __future__ import annotations

import os

import numpy as np

from fcnn.data import image_folder
from fcnn.data.errors import DataFormatError, check_kind, missing_files_error

HEIGHT = WIDTH = 32
CHANNELS = 3
RECORD_BYTES = 1 + HEIGHT * WIDTH * CHANNELS  # 3073
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
CIFAR10_ZIP = "cifar10-jpeg.zip"
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
# Sub-folder names under which a data root may hold the binary version.
CIFAR10_SUBDIRS = ("cifar-10-batches-bin", "cifar10", "cifar-10", "CIFAR10")
# Files and folders that mark the pickled Python version.
_PYTHON_VERSION_MARKERS = ("data_batch_1", "batches.meta", "test_batch")
_PYTHON_VERSION_DIR = "cifar-10-batches-py"

PYTHON_VERSION_REFUSED = (
    "{path} holds the Python (pickled) version of CIFAR-10, which fcnn does not read "
    "because unpickling a file can run arbitrary code. Download the binary version "
    "instead: cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
    "(it unpacks to cifar-10-batches-bin/ with data_batch_1.bin .. data_batch_5.bin, "
    "test_batch.bin and batches.meta.txt), or call fcnn.data.download.download_cifar10"
)


def _files_for(kind: str) -> tuple[str, ...]:
    return TRAIN_FILES if check_kind(kind) == "train" else TEST_FILES


def _is_python_version(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, m)) for m in _PYTHON_VERSION_MARKERS)


def resolve_cifar10_directory(directory, kind: str = "train") -> str:
    """The folder holding the binary files: `directory` itself or a known sub-folder.

    Raises FileNotFoundError listing the expected files, or ValueError when only the
    pickled Python version is there.
    """
    files = _files_for(kind)
    directory = os.fspath(directory)
    candidates = (directory, *(os.path.join(directory, s) for s in CIFAR10_SUBDIRS))
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in files):
            return folder
    for folder in (*candidates, os.path.join(directory, _PYTHON_VERSION_DIR)):
        if _is_python_version(folder):
            raise ValueError(PYTHON_VERSION_REFUSED.format(path=folder))
    error = missing_files_error(directory, files, f"CIFAR-10 binary version ({kind})")
    raise FileNotFoundError(
        f"{error} (also looked in the sub-folders {', '.join(CIFAR10_SUBDIRS)})"
    )


def _record_count(path: str) -> int:
    size = os.path.getsize(path)
    if size == 0 or size % RECORD_BYTES:
        raise DataFormatError(
            f"{path}: size {size} bytes is not a positive multiple of the "
            f"{RECORD_BYTES}-byte CIFAR-10 record (1 label byte + 3072 pixel bytes); "
            "the file is truncated or not a CIFAR-10 binary batch"
        )
    return size // RECORD_BYTES


def read_cifar10(directory, kind: str = "train", *, as_float: bool = False):
    """Reads the CIFAR-10 training (5 batches) or test split from the binary files.

    `directory` holds the `.bin` files or is a data root with a
    `cifar-10-batches-bin/` sub-folder. Returns `(images, labels)`: images
    (N, 32, 32, 3) NHWC, uint8 in 0..255, or float32 in [0, 1] when `as_float`;
    labels (N,) int32 in 0..9.
    """
    folder = resolve_cifar10_directory(directory, kind)
    paths = [os.path.join(folder, f) for f in _files_for(kind)]
    counts = [_record_count(p) for p in paths]  # every size checked before reading any
    images = np.empty((sum(counts), HEIGHT, WIDTH, CHANNELS), np.uint8)
    labels = np.empty((sum(counts),), np.int32)
    start = 0
    for path, count in zip(paths, counts):
        records = np.fromfile(path, dtype=np.uint8)
        if records.size != count * RECORD_BYTES:  # the file changed while reading
            raise DataFormatError(f"{path}: expected {count * RECORD_BYTES} bytes, read {records.size}")
        records = records.reshape(count, RECORD_BYTES)
        file_labels = records[:, 0]
        if int(file_labels.max()) >= len(CIFAR10_CLASS_NAMES):
            bad = int(np.argmax(file_labels >= len(CIFAR10_CLASS_NAMES)))
            raise DataFormatError(
                f"{path}: record {bad} has label {int(file_labels[bad])}, expected 0 to 9 "
                "(is this a CIFAR-100 file? its records have 2 label bytes)"
            )
        labels[start:start + count] = file_labels
        planes = records[:, 1:].reshape(count, CHANNELS, HEIGHT, WIDTH)
        images[start:start + count] = planes.transpose(0, 2, 3, 1)
        start += count
    if as_float:
        images = np.divide(images, np.float32(255), dtype=np.float32)
    return images, labels


def read_cifar10_class_names(directory) -> tuple[str, ...]:
    """The ten class names from `batches.meta.txt`, one per line (blank lines ignored).

    Falls back to the standard names when the file is absent.
    """
    folder = resolve_cifar10_directory(directory, "test")
    path = os.path.join(folder, META_FILE)
    if not os.path.isfile(path):
        return CIFAR10_CLASS_NAMES
    try:
        with open(path, encoding="utf-8") as f:
            names = tuple(line.strip() for line in f if line.strip())
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not a text file of class names ({error})") from None
    if len(names) != len(CIFAR10_CLASS_NAMES):
        raise DataFormatError(
            f"{path}: expected {len(CIFAR10_CLASS_NAMES)} class names, one per line, "
            f"found {len(names)}"
        )
    return names


def _holds_cifar10_images(path: str) -> bool:
    """True when `path` (a zip or a folder) is an image folder of the CIFAR-10 classes
    with train and test splits; False for anything else (nothing is decoded)."""
    try:
        info = image_folder.inspect_image_folder(path)
    except (OSError, ValueError):
        return False
    return info.class_names == CIFAR10_CLASS_NAMES and {"train", "test"} <= set(info.splits)


def find_cifar10_images(directory) -> str | None:
    """The image-folder version of CIFAR-10 in `directory` or a known sub-folder of it
    (cifar10/, ...): `cifar10-jpeg.zip`, else any other .zip of that layout, else an
    unpacked folder of it; None when there is none. Only the named zip is taken on its
    name alone (it is checked when read); the others are listed first."""
    directory = os.fspath(directory)
    for folder in (directory, *(os.path.join(directory, s) for s in CIFAR10_SUBDIRS)):
        if not os.path.isdir(folder):
            continue
        named = os.path.join(folder, CIFAR10_ZIP)
        if os.path.isfile(named):
            return named
        for name in sorted(os.listdir(folder)):
            candidate = os.path.join(folder, name)
            if name.lower().endswith(".zip") and os.path.isfile(candidate):
                if _holds_cifar10_images(candidate):
                    return candidate
        if _holds_cifar10_images(folder):
            return folder
    return None


def read_cifar10_images(path, *, cache_dir=None):
    """Reads the image-folder version (a zip or folder found by `find_cifar10_images`).

    Returns `(train_images, train_labels, test_images, test_labels)`: images
    (N, 32, 32, 3) uint8, labels (N,) int32 in the standard order (airplane ..
    truck, which is also the sorted folder order). The decoded arrays are cached;
    see fcnn.data.image_folder for `cache_dir`.
    """
    arrays, class_names = image_folder.read_splits(path, ("train", "test"), cache_dir=cache_dir)
    if class_names != CIFAR10_CLASS_NAMES:
        raise DataFormatError(
            f"{path}: class folders {class_names}, expected the CIFAR-10 classes "
            f"{CIFAR10_CLASS_NAMES}")
    (x, y), (xt, yt) = arrays["train"], arrays["test"]
    for images in (x, xt):
        if images.shape[1:] != (HEIGHT, WIDTH, CHANNELS):
            raise DataFormatError(
                f"{path}: images of shape {images.shape[1:]}, expected "
                f"({HEIGHT}, {WIDTH}, {CHANNELS}) for CIFAR-10")
    return x, y, xt, yt
