"""Dataset readers, splits, normalization and the downloader, on small files the tests
write themselves in the real formats (no network, no real dataset needed)."""

import gzip
import hashlib
import io
import os
import re
import struct
import tarfile
import tracemalloc

import numpy as np
import pytest

from fcnn.data import (
    DataFormatError,
    Split,
    fit_normalization,
    load_dataset,
    load_digits,
    read_cifar10,
    read_cifar10_class_names,
    read_fashion_mnist,
    read_idx,
    read_mnist,
    split_off,
    subsample,
    train_validation_test_split,
)
from fcnn.data import download
from fcnn.data import idx as idx_module
from fcnn.data.normalize import channel_mean_std
from fcnn.data.split import split_indices
from tests.memory import peak_of_failure

RNG = np.random.default_rng(1234)


# Writers for the real formats -------------------------------------------------


def idx_bytes(array, magic=None) -> bytes:
    """IDX encoding written from the format description: magic, big-endian sizes, data."""
    array = np.asarray(array)
    type_codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    dtype = np.dtype(">i4") if array.dtype == np.int32 else (
        np.dtype(">f4") if array.dtype == np.float32 else np.dtype(np.uint8)
    )
    if magic is None:
        magic = (type_codes[dtype] << 8) | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(dtype).tobytes()


def write(path, data: bytes, *, compress=None):
    path = str(path)
    if compress is None:
        compress = path.endswith(".gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)
    return path


def make_mnist_dir(folder, n_train=12, n_test=7, *, gz=True):
    """Writes the four MNIST files; returns the arrays written (N, 28, 28), (N,)."""
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    suffix = ".gz" if gz else ""
    for kind, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = RNG.integers(0, 10, (n,), dtype=np.uint8)
        write(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), idx_bytes(images, 2051))
        write(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"), idx_bytes(labels, 2049))
        arrays[kind] = (images, labels)
    return arrays


def cifar_records(images, labels) -> bytes:
    """One record per image: label byte, then the R plane, G plane, B plane (row-major)."""
    out = bytearray()
    for image, label in zip(images, labels):
        out.append(int(label))
        for channel in range(3):
            for row in range(32):
                for col in range(32):
                    out.append(int(image[row, col, channel]))
    return bytes(out)


def make_cifar_dir(folder, per_batch=2, n_test=3, class_names=None):
    os.makedirs(folder, exist_ok=True)
    arrays = {"train": ([], []), "test": None}
    for i in range(1, 6):
        images = RNG.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = RNG.integers(0, 10, (per_batch,), dtype=np.uint8)
        write(os.path.join(folder, f"data_batch_{i}.bin"), cifar_records(images, labels))
        arrays["train"][0].append(images)
        arrays["train"][1].append(labels)
    arrays["train"] = tuple(np.concatenate(a) for a in arrays["train"])
    images = RNG.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    labels = RNG.integers(0, 10, (n_test,), dtype=np.uint8)
    write(os.path.join(folder, "test_batch.bin"), cifar_records(images, labels))
    arrays["test"] = (images, labels)
    names = class_names or ["airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck"]
    write(os.path.join(folder, "batches.meta.txt"), ("\n".join(names) + "\n\n").encode())
    return arrays


# IDX --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, suffix, dtype):
    array = (RNG.normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = write(tmp_path / f"a.idx{suffix}", idx_bytes(array))
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_mnist_synthetic(tmp_path):
    arrays = make_mnist_dir(tmp_path)
    for kind in ("train", "test"):
        images, labels = read_mnist(tmp_path, kind)
        expected_images, expected_labels = arrays[kind]
        assert images.shape == expected_images.shape + (1,) and images.dtype == np.uint8
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(images[..., 0], expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
        floats, _ = read_mnist(tmp_path, kind, as_float=True)
        assert floats.dtype == np.float32
        np.testing.assert_allclose(floats[..., 0], expected_images / 255.0, rtol=1e-6)


def test_read_mnist_accepts_root_and_uncompressed(tmp_path):
    arrays = make_mnist_dir(tmp_path / "mnist", gz=False)
    images, labels = read_mnist(tmp_path, "test")  # the root, with a mnist/ sub-folder
    np.testing.assert_array_equal(images[..., 0], arrays["test"][0])
    np.testing.assert_array_equal(labels, arrays["test"][1])


def test_read_fashion_mnist_from_root(tmp_path):
    make_mnist_dir(tmp_path / "mnist")
    arrays = make_mnist_dir(tmp_path / "fashion-mnist")
    images, labels = read_fashion_mnist(tmp_path, "train")
    np.testing.assert_array_equal(images[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(labels, arrays["train"][1])


def test_missing_directory_names_path_and_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist") as info:
        read_mnist(missing)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_missing_file_lists_expected_and_found(tmp_path):
    make_mnist_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz.*contains: "):
        read_mnist(tmp_path, "test")


def test_bad_kind(tmp_path):
    with pytest.raises(ValueError, match=r"kind='validation'"):
        read_mnist(tmp_path, "validation")


def test_wrong_magic_number(tmp_path):
    make_mnist_dir(tmp_path)
    labels = RNG.integers(0, 10, (12,), dtype=np.uint8)
    # A labels file where the images file should be: magic 2049 instead of 2051.
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(labels, 2049))
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz: magic number 2049.*expected 2051"):
        read_mnist(tmp_path)


def test_garbage_magic_number(tmp_path):
    path = write(tmp_path / "x.idx", b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(DataFormatError, match=r"x\.idx: magic number .* is not an IDX magic"):
        read_idx(path)


def test_truncated_uncompressed_file(tmp_path):
    data = idx_bytes(RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8), 2051)
    path = write(tmp_path / "images.idx", data[:-10])
    with pytest.raises(DataFormatError, match=r"images\.idx: truncated IDX file.*3126 bytes follow"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = write(tmp_path / "short.idx", struct.pack(">I", 2051) + b"\x00\x00")
    with pytest.raises(DataFormatError, match=r"short\.idx: truncated IDX header"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx_bytes(RNG.integers(0, 256, (20, 28, 28), dtype=np.uint8), 2051))
    path = write(tmp_path / "cut.idx.gz", data[: len(data) // 2], compress=False)
    with pytest.raises(DataFormatError, match=r"cut\.idx\.gz: truncated"):
        read_idx(path)


def test_gzip_content_shorter_than_header_claims(tmp_path):
    data = idx_bytes(RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8), 2051)
    path = write(tmp_path / "short.idx.gz", data[:-100])
    with pytest.raises(DataFormatError, match=r"short\.idx\.gz: truncated IDX file"):
        read_idx(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_lying_header_rejected_before_large_allocation(tmp_path, suffix):
    # Header claims 2**32 - 1 images of 28 x 28 (about 3 TB); the file holds 100 bytes.
    header = struct.pack(">IIII", 2051, 2**32 - 1, 28, 28)
    path = write(tmp_path / f"huge.idx{suffix}", header + bytes(100))
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=r"huge\.idx.*truncated IDX file"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"peak allocation {peak} bytes"


def _peak_and_message(fn) -> tuple[int, str]:
    return peak_of_failure(fn, DataFormatError)


def test_gzip_bomb_is_refused_from_its_trailer_without_inflating(tmp_path, monkeypatch):
    # 32 MiB of zeros behind a header claiming 10^9 images: the gzip trailer's ISIZE
    # (16 + 32 MiB) contradicts the claim, and the file has a single member
    header = struct.pack(">IIII", 2051, 10**9, 28, 28)
    path = write(tmp_path / "bomb.idx.gz", header + bytes(32 << 20))
    monkeypatch.setattr(idx_module, "_inflated_size", None)  # must not be needed
    peak, message = _peak_and_message(lambda: read_idx(path))
    assert peak < 4 << 20, f"peak allocation {peak} bytes"
    assert "bomb.idx.gz: truncated IDX file" in message and "ISIZE" in message
    assert f"only {32 << 20} bytes follow the 16-byte header" in message


def test_gzip_bomb_with_a_second_member_is_counted_in_constant_memory(tmp_path):
    # a trailer that covers only a tiny last member: the stream is counted, not kept
    header = struct.pack(">IIII", 2051, 10**9, 28, 28)
    path = write(tmp_path / "two.idx.gz",
                 gzip.compress(header + bytes(32 << 20)) + gzip.compress(b"\x00"), compress=False)
    peak, message = _peak_and_message(lambda: read_idx(path))
    assert peak < 8 << 20, f"peak allocation {peak} bytes"
    assert "two.idx.gz: truncated IDX file" in message
    assert f"only {(32 << 20) + 1} bytes follow" in message and "once inflated" in message


def test_claim_of_4_gib_that_the_trailer_cannot_confirm_is_counted(tmp_path):
    # 256^4 = 2^32 data bytes claimed: ISIZE (20, the bare header) equals the claim
    # mod 2^32, so only counting shows the data are missing
    path = write(tmp_path / "wrap.idx.gz", struct.pack(">IIIII", 0x0804, 256, 256, 256, 256))
    with pytest.raises(DataFormatError, match=r"wrap\.idx\.gz: truncated IDX file.*only 0 bytes"):
        read_idx(path)


def test_gzip_of_several_members_or_zero_padded_still_loads(tmp_path):
    images = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    data = idx_bytes(images, 2051)
    members = write(tmp_path / "members.idx.gz",
                    gzip.compress(data[:1000]) + gzip.compress(data[1000:]), compress=False)
    padded = write(tmp_path / "padded.idx.gz", gzip.compress(data) + bytes(8), compress=False)
    np.testing.assert_array_equal(read_idx(members), images)
    np.testing.assert_array_equal(read_idx(padded), images)


def test_truncated_gzip_whose_last_bytes_read_as_a_small_trailer(tmp_path, monkeypatch):
    # the cut leaves 4 bytes that read as ISIZE = 1, fewer than the header claims: refused
    # from the trailer, and the message says the gzip file may be the truncated one
    monkeypatch.setattr(idx_module, "_inflated_size", None)
    images = (np.arange(20 * 28 * 28) * 7919 % 251).astype(np.uint8).reshape(20, 28, 28)
    data = gzip.compress(idx_bytes(images, 2051), mtime=0)
    path = write(tmp_path / "cut.idx.gz", data[:200] + b"\x01\x00\x00\x00", compress=False)
    with pytest.raises(DataFormatError, match=r"cut\.idx\.gz: truncated.*truncated gzip file"):
        read_idx(path)


def test_trailing_data_rejected(tmp_path):
    data = idx_bytes(RNG.integers(0, 10, (5,), dtype=np.uint8), 2049)
    path = write(tmp_path / "labels.idx.gz", data + b"\x01\x02")
    with pytest.raises(DataFormatError, match=r"labels\.idx\.gz: .*more data"):
        read_idx(path)


def test_count_mismatch_between_images_and_labels(tmp_path):
    make_mnist_dir(tmp_path, n_train=12)
    write(tmp_path / "train-labels-idx1-ubyte.gz",
          idx_bytes(RNG.integers(0, 10, (11,), dtype=np.uint8), 2049))
    with pytest.raises(DataFormatError, match=r"holds 12 images but .*train-labels.*holds 11 labels"):
        read_mnist(tmp_path)


def test_not_gzip_where_gzip_expected(tmp_path):
    make_mnist_dir(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte.gz",
          idx_bytes(RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8), 2051), compress=False)
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz: not a gzip file"):
        read_mnist(tmp_path)


def test_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8))))
    data[30:60] = bytes(30)
    path = write(tmp_path / "bad.idx.gz", bytes(data), compress=False)
    with pytest.raises(DataFormatError, match=r"bad\.idx\.gz: "):
        read_idx(path)


def test_label_out_of_range(tmp_path):
    make_mnist_dir(tmp_path, n_test=7)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([1, 2, 3, 12, 0, 1, 2], np.uint8), 2049))
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte\.gz: label 12 out of range"):
        read_mnist(tmp_path, "test")


# CIFAR-10 ---------------------------------------------------------------------


def test_read_cifar10_converts_planes_to_nhwc(tmp_path):
    arrays = make_cifar_dir(tmp_path / "cifar-10-batches-bin")
    for kind in ("train", "test"):
        images, labels = read_cifar10(tmp_path, kind)  # root with the standard sub-folder
        assert images.shape == arrays[kind][0].shape and images.dtype == np.uint8
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(images, arrays[kind][0])
        np.testing.assert_array_equal(labels, arrays[kind][1])
    floats, _ = read_cifar10(tmp_path / "cifar-10-batches-bin", "test", as_float=True)
    np.testing.assert_allclose(floats, arrays["test"][0] / 255.0, rtol=1e-6)
    assert read_cifar10_class_names(tmp_path)[0] == "airplane"


def test_cifar_red_plane_comes_first(tmp_path):
    # A hand-made record: red plane all 10, green 20, blue 30 -> every pixel (10, 20, 30).
    os.makedirs(tmp_path, exist_ok=True)
    record = bytes([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    write(tmp_path / "test_batch.bin", record)
    images, labels = read_cifar10(tmp_path, "test")
    assert labels.tolist() == [7]
    np.testing.assert_array_equal(images[0, 5, 9], [10, 20, 30])


def test_cifar_size_not_multiple_of_record(tmp_path):
    make_cifar_dir(tmp_path)
    with open(tmp_path / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 5)
    with pytest.raises(DataFormatError, match=r"data_batch_3\.bin: size 6151 bytes is not a positive multiple of the 3073"):
        read_cifar10(tmp_path, "train")


def test_cifar_empty_file(tmp_path):
    make_cifar_dir(tmp_path)
    write(tmp_path / "test_batch.bin", b"")
    with pytest.raises(DataFormatError, match=r"test_batch\.bin: size 0 bytes"):
        read_cifar10(tmp_path, "test")


def test_cifar_label_out_of_range(tmp_path):
    record = bytes([10]) + bytes(3072)
    write(tmp_path / "test_batch.bin", record)
    with pytest.raises(DataFormatError, match=r"test_batch\.bin: record 0 has label 10"):
        read_cifar10(tmp_path, "test")


def test_cifar_python_version_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    os.makedirs(folder)
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        write(folder / name, b"not read")
    for directory in (tmp_path, folder):
        with pytest.raises(ValueError, match=r"Python \(pickled\) version.*binary version"):
            read_cifar10(directory)


def test_cifar_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin.*data_batch_5\.bin.*it is empty"):
        read_cifar10(tmp_path, "train")


def test_cifar_bad_meta(tmp_path):
    make_cifar_dir(tmp_path, class_names=["a", "b"])
    with pytest.raises(DataFormatError, match=r"batches\.meta\.txt: expected 10 class names"):
        read_cifar10_class_names(tmp_path)


# Digits -----------------------------------------------------------------------


def test_digits_embedded_split():
    from sklearn import datasets

    (x, y), (xt, yt) = load_digits()
    assert x.shape[1:] == (8, 8, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    assert x.shape[0] + xt.shape[0] == 1797 and xt.shape[0] == round(0.2 * 1797)
    assert int(x.max()) == 16
    bunch = datasets.load_digits()
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([y, yt]), minlength=10), np.bincount(bunch.target, minlength=10)
    )
    # Stratified: every class is in the test split in proportion (within one example).
    expected = np.bincount(bunch.target) * xt.shape[0] / 1797
    assert np.all(np.abs(np.bincount(yt, minlength=10) - expected) <= 1)
    # Fixed: a second call gives the same split.
    (x2, _), (xt2, yt2) = load_digits()
    np.testing.assert_array_equal(xt, xt2)
    np.testing.assert_array_equal(yt, yt2)
    # The images are sklearn's, unchanged: every test image is one of the originals.
    originals = {img.astype(np.uint8).tobytes() for img in bunch.images}
    assert all(img[..., 0].tobytes() in originals for img in xt)
    floats = load_digits(as_float=True)[1][0]
    np.testing.assert_allclose(floats, xt / 16.0, rtol=1e-6)


# load_dataset -----------------------------------------------------------------


def test_load_dataset_digits_standardized_on_train_only():
    ds = load_dataset("digits", validation_size=0.1, seed=3)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.image_shape == (8, 8, 1)
    assert ds.class_names == tuple(str(d) for d in range(10))
    for split in (ds.train, ds.validation, ds.test):
        assert split.images.dtype == np.float32 and split.labels.dtype == np.int32
    assert ds.validation.num_examples == round(0.1 * ds.train.num_examples / 0.9)
    # Fitted on the training split alone: exactly zero mean and unit std there only.
    np.testing.assert_allclose(ds.train.images.mean(dtype=np.float64), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.train.images.std(dtype=np.float64), 1.0, atol=1e-5)
    assert abs(ds.validation.images.mean(dtype=np.float64)) > 1e-4
    assert abs(ds.test.images.mean(dtype=np.float64)) > 1e-4
    # The same statistics map validation back to the raw values 0..16.
    raw = ds.normalization.invert(ds.validation.images)
    np.testing.assert_allclose(raw, np.round(raw), atol=1e-4)
    assert raw.min() > -1e-4 and raw.max() < 16 + 1e-4


def test_load_dataset_minmax_and_raw():
    ds = load_dataset("digits", normalize="minmax")
    assert ds.validation is None
    assert ds.train.images.min() == 0.0 and ds.train.images.max() == 1.0
    raw = load_dataset("digits", normalize=None)
    assert raw.normalization is None
    np.testing.assert_array_equal(raw.test.images, np.round(raw.test.images))
    assert raw.train.images.max() == 16.0
    np.testing.assert_allclose(ds.test.images, raw.test.images / 16.0, rtol=1e-6)


def test_load_dataset_seed_changes_validation_only():
    a = load_dataset("digits", validation_size=100, seed=0, normalize=None)
    b = load_dataset("digits", validation_size=100, seed=1, normalize=None)
    np.testing.assert_array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.validation.images, b.validation.images)
    assert a.validation.num_examples == 100


def test_load_dataset_files(tmp_path, monkeypatch):
    arrays = make_mnist_dir(tmp_path / "mnist")
    make_mnist_dir(tmp_path / "fashion-mnist")
    cifar = make_cifar_dir(tmp_path / "cifar-10-batches-bin")
    monkeypatch.setenv("FCNN_DATA_DIR", str(tmp_path))
    ds = load_dataset("mnist", normalize=None)
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.test.images[..., 0], arrays["test"][0].astype(np.float32))
    fashion = load_dataset("fashion-mnist", tmp_path / "fashion-mnist")
    assert fashion.class_names[0] == "T-shirt/top"
    c = load_dataset("cifar10", str(tmp_path), normalize="standardize")
    assert c.image_shape == (32, 32, 3) and c.class_names[-1] == "truck"
    np.testing.assert_allclose(c.train.images.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        c.normalization.mean, cifar["train"][0].reshape(-1, 3).mean(axis=0), rtol=1e-5
    )


def test_load_dataset_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"'imagenet' is unknown.*'digits', 'mnist', 'fashion-mnist', 'cifar10'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"normalize='zscore'"):
        load_dataset("digits", normalize="zscore")
    monkeypatch.delenv("FCNN_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data-dir.*FCNN_DATA_DIR"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*--data-dir"):
        load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"validation_size=2000: expected a count in \[0, \d+\]"):
        load_dataset("digits", validation_size=2000)


# Splits -----------------------------------------------------------------------


def test_split_indices_deterministic_disjoint_stratified():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    kept, held = split_indices(labels, 0.2, seed=7)
    kept2, held2 = split_indices(labels, 0.2, seed=7)
    np.testing.assert_array_equal(held, held2)
    np.testing.assert_array_equal(kept, kept2)
    assert len(held) == 20 and len(kept) == 80
    assert set(held).isdisjoint(kept) and set(held) | set(kept) == set(range(100))
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=4), [10, 6, 3, 1])
    other = split_indices(labels, 0.2, seed=8)[1]
    assert not np.array_equal(held, other)
    unstratified = split_indices(labels, 20, seed=7, stratify=False)[1]
    assert len(unstratified) == 20


def test_split_off_and_three_way():
    images = np.arange(60).reshape(60, 1, 1, 1)
    labels = np.arange(60) % 3
    rest, held = split_off(images, labels, 6, seed=0)
    assert isinstance(rest, Split) and rest.num_examples == 54 and held.num_examples == 6
    np.testing.assert_array_equal(held.images[:, 0, 0, 0] % 3, held.labels)
    train, validation, test = train_validation_test_split(
        images, labels, validation_size=9, test_size=12, seed=1
    )
    assert (train.num_examples, validation.num_examples, test.num_examples) == (39, 9, 12)
    ids = np.concatenate([s.images.ravel() for s in (train, validation, test)])
    assert sorted(ids.tolist()) == list(range(60))
    _, _, test2 = train_validation_test_split(images, labels, validation_size=20, test_size=12, seed=1)
    np.testing.assert_array_equal(test.images, test2.images)
    with pytest.raises(ValueError, match=r"together take 61 examples, more than the 60"):
        train_validation_test_split(images, labels, validation_size=50, test_size=11)
    with pytest.raises(ValueError, match=r"test_size=1.5: expected a fraction in \[0, 1\)"):
        train_validation_test_split(images, labels, validation_size=0, test_size=1.5)
    with pytest.raises(ValueError, match=r"seed=-1"):
        split_off(images, labels, 3, seed=-1)


def test_subsample_is_a_fixed_subset_in_the_original_order():
    images = np.arange(50).reshape(50, 1, 1, 1) * 2
    whole = Split(images, np.arange(50) % 5)
    part = subsample(whole, 12, seed=3)
    ids = part.images[:, 0, 0, 0] // 2
    assert part.num_examples == 12 and len(set(ids.tolist())) == 12
    assert np.all(np.diff(ids) > 0)  # original order kept
    np.testing.assert_array_equal(part.labels, ids % 5)  # images and labels stay paired
    np.testing.assert_array_equal(subsample(whole, 12, seed=3).images, part.images)
    assert not np.array_equal(subsample(whole, 12, seed=4).images, part.images)
    assert subsample(whole, None, seed=3) is whole and subsample(whole, 50, seed=3) is whole


# Normalization ----------------------------------------------------------------


def test_channel_statistics_match_numpy():
    images = RNG.integers(0, 256, (9000, 3, 2, 3), dtype=np.uint8)  # more than one chunk
    mean, std = channel_mean_std(images)
    flat = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-12)


def test_normalization_apply_invert_and_constant_channel():
    images = RNG.normal(3.0, 2.0, (20, 4, 4, 2)).astype(np.float32)
    images[..., 1] = 5.0
    for kind in ("standardize", "minmax"):
        norm = fit_normalization(images, kind)
        assert norm.scale[1] == 1.0  # constant channel: shifted only
        out = norm.apply(images)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out[..., 1], 0.0, atol=1e-6)
        np.testing.assert_allclose(norm.invert(out), images, atol=1e-5)
        single = norm.apply(images[0])  # one image (H, W, C) works too
        np.testing.assert_allclose(single, out[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"fitted on 2 channels"):
        norm.apply(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"normalize='l2'"):
        fit_normalization(images, "l2")


# Download ---------------------------------------------------------------------


def _no_part_files(folder):
    return not [n for n in os.listdir(folder) if n.endswith(".part")]


def test_download_file_url_with_checksum(tmp_path):
    source = write(tmp_path / "source.bin", b"payload" * 1000)
    md5 = hashlib.md5(b"payload" * 1000).hexdigest()
    destination = tmp_path / "cache" / "file.bin"
    url = "file://" + os.path.abspath(source)
    assert download.download_file(url, destination, md5=md5) == str(destination)
    assert destination.read_bytes() == b"payload" * 1000
    assert _no_part_files(destination.parent)

    def refuse(url):
        raise AssertionError("a file with the right checksum must not be fetched again")

    download.download_file(url, destination, md5=md5, fetch=refuse)


def test_download_checksum_mismatch_writes_nothing(tmp_path):
    source = write(tmp_path / "source.bin", b"tampered")
    destination = tmp_path / "cache" / "file.bin"
    with pytest.raises(download.ChecksumError, match=r"md5 checksum .* differs from the expected 0+"):
        download.download_file("file://" + str(source), destination, md5="0" * 32)
    assert not destination.exists() and _no_part_files(destination.parent)


def test_download_interrupted_keeps_old_file(tmp_path):
    destination = tmp_path / "file.bin"
    destination.write_bytes(b"old contents")

    class Broken(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection lost")
            return super().read(4)

    with pytest.raises(ConnectionResetError):
        download.download_file("http://example.invalid/x", destination,
                               sha256="0" * 64, fetch=lambda url: Broken(b"new contents"))
    assert destination.read_bytes() == b"old contents"
    assert _no_part_files(tmp_path)


def test_download_needs_a_checksum(tmp_path):
    with pytest.raises(ValueError, match=r"needs a checksum"):
        download.download_file("file:///dev/null", tmp_path / "x")


def test_download_mnist_from_local_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    arrays = make_mnist_dir(mirror)
    checksums = {
        name: download.file_digest(mirror / name) for name in download.MNIST_MD5
    }
    monkeypatch.setattr(download, "MNIST_MD5", checksums)
    bad_mirror = "file://" + str(tmp_path / "missing") + "/"
    folder = download.download_mnist(tmp_path / "cache", mirrors=(bad_mirror, f"file://{mirror}/"))
    assert folder == str(tmp_path / "cache" / "mnist")
    images, labels = read_mnist(tmp_path / "cache")
    np.testing.assert_array_equal(labels, arrays["train"][1])


def test_download_cifar10_extracts_only_expected_members(tmp_path):
    source = tmp_path / "src" / "cifar-10-batches-bin"
    arrays = make_cifar_dir(source)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
        evil = tarfile.TarInfo("cifar-10-batches-bin/../../evil.bin")
        tar.addfile(evil, io.BytesIO(b""))
    md5 = download.file_digest(archive)
    folder = download.download_cifar10(tmp_path / "cache", url=f"file://{archive}", md5=md5)
    assert not (tmp_path / "evil.bin").exists() and not (tmp_path / "cache" / "evil.bin").exists()
    images, labels = read_cifar10(folder, "test")
    np.testing.assert_array_equal(images, arrays["test"][0])
    assert sorted(os.listdir(folder)) == sorted(
        [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]
    )
    assert re.fullmatch(r"[0-9a-f]{32}", md5)
