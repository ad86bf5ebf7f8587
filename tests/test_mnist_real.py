"""The real MNIST files from FCNN_DATA_DIR (the data root or its mnist/ folder).

Skipped when the files are absent; with FCNN_REQUIRE_DATA=1 that is a failure. The
expected numbers come from the dataset's README (counts, first labels, per-class
counts, and the published MD5 sums of the uncompressed files).
"""

import functools
import hashlib
import os
import struct
import time

import numpy as np
import pytest

from fcnn.data import load_dataset, read_mnist
from fcnn.data.download import MNIST_CONTENT_MD5
from tests.conftest import skip_or_fail_missing_data

pytestmark = pytest.mark.data

TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.fixture(scope="module")
def data_dir():
    root = os.environ.get("FCNN_DATA_DIR")
    if not root:
        skip_or_fail_missing_data("FCNN_DATA_DIR is not set (it should point at shared/data)")
    for folder in (root, os.path.join(root, "mnist")):
        if os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
            return root
    skip_or_fail_missing_data(f"MNIST files not found in {root!r} or its mnist/ folder")


@functools.lru_cache(maxsize=None)
def _read(directory, kind):
    return read_mnist(directory, kind)


def test_reading_all_of_mnist_is_fast(data_dir):
    start = time.perf_counter()
    train = read_mnist(data_dir, "train")
    test = read_mnist(data_dir, "test")
    elapsed = time.perf_counter() - start
    print(f"read all of MNIST (70,000 images) in {elapsed:.2f} s")
    assert train[0].shape[0] + test[0].shape[0] == 70_000
    assert elapsed < 10.0, f"reading MNIST took {elapsed:.1f} s"


@pytest.mark.parametrize(
    "kind, count, first, per_class",
    [
        ("train", 60_000, FIRST_TRAIN_LABELS, TRAIN_CLASS_COUNTS),
        ("test", 10_000, FIRST_TEST_LABELS, TEST_CLASS_COUNTS),
    ],
)
def test_counts_shapes_and_labels(data_dir, kind, count, first, per_class):
    images, labels = _read(data_dir, kind)
    assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int32
    assert labels[:10].tolist() == first
    assert np.bincount(labels, minlength=10).tolist() == per_class
    assert int(images.min()) == 0 and int(images.max()) == 255


@pytest.mark.parametrize("kind", ["train", "test"])
def test_parsed_arrays_match_published_checksums(data_dir, kind):
    # Re-encoding the parsed arrays as IDX must give back the original files' bytes.
    images, labels = _read(data_dir, kind)
    prefix = "train" if kind == "train" else "t10k"
    n = labels.shape[0]
    image_bytes = struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
    label_bytes = struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
    assert hashlib.md5(image_bytes).hexdigest() == MNIST_CONTENT_MD5[f"{prefix}-images-idx3-ubyte"]
    assert hashlib.md5(label_bytes).hexdigest() == MNIST_CONTENT_MD5[f"{prefix}-labels-idx1-ubyte"]


def test_root_and_mnist_folder_both_accepted(data_dir):
    folders = [data_dir]
    if os.path.isdir(os.path.join(data_dir, "mnist")):
        folders.append(os.path.join(data_dir, "mnist"))
    elif os.path.basename(os.path.normpath(data_dir)) == "mnist":
        folders.append(os.path.dirname(os.path.normpath(data_dir)))
    assert len(folders) == 2
    for folder in folders:
        assert read_mnist(folder, "test")[1][:10].tolist() == FIRST_TEST_LABELS


def test_load_dataset_mnist(data_dir):
    ds = load_dataset("mnist", data_dir, validation_size=5000, seed=0)
    assert ds.train.images.shape == (55_000, 28, 28, 1)
    assert ds.validation.images.shape == (5_000, 28, 28, 1)
    assert ds.test.images.shape == (10_000, 28, 28, 1)
    assert ds.test.labels[:10].tolist() == FIRST_TEST_LABELS
    # The well-known MNIST statistics, 0.1307 and 0.3081 in [0, 1] units.
    np.testing.assert_allclose(ds.normalization.mean / 255, [0.1307], atol=2e-4)
    np.testing.assert_allclose(ds.normalization.std / 255, [0.3081], atol=2e-4)
    assert np.bincount(ds.validation.labels, minlength=10).min() > 400
