"""Image folders (root/<split>/<class>/*.jpg|jpeg|png) from a directory or a zip, the
decoded-array cache, CIFAR-10 from its image-folder version, and the real CIFAR-10 zip.

The synthetic folders and zips are written here with Pillow; the real zip is read
from FCNN_DATA_DIR (skipped when absent, a failure with FCNN_REQUIRE_DATA=1).
"""

from __future__ import annotations

import io
import os
import re
import struct
import time
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from fcnn.data import (
    CIFAR10_CLASS_NAMES,
    DataFormatError,
    find_cifar10_images,
    image_folder_class_names,
    inspect_image_folder,
    load_dataset,
    load_image_folder,
    read_cifar10_images,
    read_image_folder,
)
from fcnn.data import image_folder as image_folder_module
from tests.conftest import skip_or_fail_missing_data
from tests.memory import peak_of_failure
from tests.test_data_readers import make_cifar_dir

RNG = np.random.default_rng(20240607)


# Writers ----------------------------------------------------------------------


def encode(array, fmt: str = "PNG", **options) -> bytes:
    """PNG or JPEG bytes of a uint8 (H, W, 3) or (H, W) array."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, fmt, **options)
    return buffer.getvalue()


def random_image(height=4, width=5, channels=3):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def write_files(root, files: dict) -> str:
    """Writes {relative path: bytes} under `root`; returns root."""
    for name, data in files.items():
        path = os.path.join(root, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


def write_zip(path, files: dict, *, prefix: str = "", directories: bool = False,
              compression=zipfile.ZIP_DEFLATED) -> str:
    """A zip of {relative path: bytes}, under `prefix`, with folder entries if asked."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        if directories:
            folders = sorted({prefix + name.rsplit("/", 1)[0] + "/" for name in files})
            for folder in folders:
                archive.writestr(zipfile.ZipInfo(folder), b"")
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return str(path)


def png_dataset():
    """Files of 3 classes (sorted: ant, cat, dog) in train and test, and the expected
    (images, labels) per split in the reader's order (class, then path)."""
    layout = {"train": {"dog": 2, "cat": 3, "ant": 1}, "test": {"cat": 1, "dog": 1, "ant": 2}}
    files, expected = {}, {}
    for split, classes in layout.items():
        images, labels = [], []
        for label, name in enumerate(sorted(classes)):
            for i in range(classes[name]):
                image = random_image()
                files[f"{split}/{name}/{i:03d}.png"] = encode(image)
                images.append(image)
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels, np.int32))
    return files, expected


@pytest.fixture
def no_cache(monkeypatch, tmp_path):
    """The default cache folder points into this test's tmp_path."""
    monkeypatch.setenv("FCNN_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts the images decoded (calls of image_folder.decode_image)."""
    calls = []
    original = image_folder_module.decode_image

    def counting(data, where, **kwargs):
        calls.append(where)
        return original(data, where, **kwargs)

    monkeypatch.setattr(image_folder_module, "decode_image", counting)
    return calls


# Reading ----------------------------------------------------------------------


def test_directory_of_pngs_exact_pixels_labels_and_classes(tmp_path, no_cache):
    files, expected = png_dataset()
    root = write_files(tmp_path / "pets", files)
    assert image_folder_class_names(root) == ("ant", "cat", "dog")
    for split in ("train", "test"):
        images, labels = read_image_folder(root, split, cache_dir=False)
        assert images.dtype == np.uint8 and images.shape == expected[split][0].shape
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])


@pytest.mark.parametrize("prefix", ["", "pets/"], ids=["flat", "top-level-folder"])
@pytest.mark.parametrize("directories", [False, True], ids=["files-only", "with-dir-entries"])
def test_zip_with_and_without_a_top_level_folder(tmp_path, prefix, directories):
    files, expected = png_dataset()
    path = write_zip(tmp_path / "pets.zip", files, prefix=prefix, directories=directories)
    info = inspect_image_folder(path)
    assert info.class_names == ("ant", "cat", "dog") and info.root == prefix
    assert info.splits == {"train": "train", "test": "test"}
    for split in ("train", "test"):
        images, labels = read_image_folder(path, split, cache_dir=False)
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])


def test_directory_with_a_top_level_folder_and_ignored_files(tmp_path):
    files, expected = png_dataset()
    files.update({
        "README.txt": b"not an image",  # beside the split folders: ignored
        "train/notes.md": b"ignored",  # in a split folder, outside any class
        "train/cat/.hidden.png": b"not read",
        "train/cat/labels.csv": b"ignored",
        "test/dog/.thumbs/x.png": b"not read",
    })
    root = write_files(tmp_path / "outer" / "pets", files)
    images, labels = read_image_folder(tmp_path / "outer", "train", cache_dir=False)
    np.testing.assert_array_equal(images, expected["train"][0])
    np.testing.assert_array_equal(labels, expected["train"][1])
    assert inspect_image_folder(tmp_path / "outer").root == root


def test_zip_ignores_macos_metadata_and_hidden_members(tmp_path):
    files, expected = png_dataset()
    files["__MACOSX/train/cat/._000.png"] = b"resource fork"
    files["train/.DS_Store"] = b"junk"
    path = write_zip(tmp_path / "pets.zip", files, compression=zipfile.ZIP_STORED)
    images, labels = read_image_folder(path, "test", cache_dir=False)
    np.testing.assert_array_equal(images, expected["test"][0])
    np.testing.assert_array_equal(labels, expected["test"][1])


def test_nested_images_upper_case_extensions_and_jpeg(tmp_path):
    a, c = random_image(8, 8), random_image(8, 8)
    rows, cols = np.mgrid[0:8, 0:8]
    b = np.stack([rows * 30, cols * 30, rows * 10 + cols * 10 + 50], -1).astype(np.uint8)
    files = {"train/x/sub/1.PNG": encode(a), "train/x/0.JPG": encode(b, "JPEG", quality=95),
             "train/y/2.jpeg": encode(c, "JPEG", quality=95),
             "test/x/0.png": encode(a), "test/y/0.png": encode(c)}
    root = write_files(tmp_path / "d", files)
    images, labels = read_image_folder(root, cache_dir=False)
    assert labels.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(images[1], a)  # "0.JPG" sorts before "sub/1.PNG"
    # JPEG pixels are exactly what Pillow decodes, and close to the source
    decoded_b = np.asarray(Image.open(io.BytesIO(files["train/x/0.JPG"])).convert("RGB"))
    np.testing.assert_array_equal(images[0], decoded_b)
    assert np.abs(images[0].astype(int) - b).mean() < 4


def test_channels_modes_and_sixteen_bit(tmp_path):
    rgb = random_image(3, 3)
    gray = random_image(3, 3, channels=1)
    rgba = np.concatenate([rgb, np.full((3, 3, 1), 7, np.uint8)], axis=-1)
    wide = (np.arange(9, dtype=np.uint16).reshape(3, 3) * 8000)
    files = {"train/a/rgb.png": encode(rgb), "train/b/gray.png": encode(gray),
             "train/c/rgba.png": encode(rgba), "train/d/wide.png": encode_16bit(wide),
             **{f"test/{k}/0.png": encode(rgb) for k in "abcd"}}
    root = write_files(tmp_path / "modes", files)
    images, _ = read_image_folder(root, cache_dir=False)
    assert images.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(images[0], rgb)
    np.testing.assert_array_equal(images[1], np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(images[2], rgb)  # alpha dropped
    scaled = np.round(wide.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(images[3][..., 0], scaled)
    gray_images, _ = read_image_folder(root, channels=1, cache_dir=False)
    assert gray_images.shape == (4, 3, 3, 1)
    expected_l = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(gray_images[0, ..., 0], expected_l)
    np.testing.assert_array_equal(gray_images[1, ..., 0], gray)
    np.testing.assert_array_equal(gray_images[3, ..., 0], scaled)


def encode_16bit(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def test_mixed_sizes_refused_naming_both_files_unless_resized(tmp_path):
    small, large = random_image(4, 5), random_image(6, 8)
    files = {"train/a/0.png": encode(small), "train/b/1.png": encode(large),
             "test/a/0.png": encode(small), "test/b/0.png": encode(small)}
    root = write_files(tmp_path / "mixed", files)
    first = os.path.join(root, "train", "a", "0.png")
    second = os.path.join(root, "train", "b", "1.png")
    with pytest.raises(DataFormatError) as info:
        read_image_folder(root, cache_dir=False)
    message = str(info.value)
    assert f"{first} is 4 x 5 pixels" in message and f"{second} is 6 x 8" in message
    assert "size=(H, W)" in message
    images, _ = read_image_folder(root, size=(3, 7), cache_dir=False)
    assert images.shape == (2, 3, 7, 3)
    resized = Image.fromarray(large).resize((7, 3), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(images[1], np.asarray(resized))


def test_mixed_sizes_in_a_zip_name_the_members(tmp_path):
    files = {"train/a/0.png": encode(random_image(4, 4)),
             "train/a/1.png": encode(random_image(2, 4)),
             "test/a/0.png": encode(random_image(4, 4))}
    path = write_zip(tmp_path / "m.zip", files, prefix="top/")
    with pytest.raises(DataFormatError, match=r"m\.zip, member top/train/a/0\.png is 4 x 4 .*"
                                              r"m\.zip, member top/train/a/1\.png is 2 x 4"):
        read_image_folder(path, cache_dir=False)


def test_validation_folder_spelled_val(tmp_path, no_cache):
    files, expected = png_dataset()
    files.update({"val/ant/0.png": encode(random_image()), "val/cat/0.png": encode(random_image()),
                  "val/dog/0.png": encode(random_image())})
    root = write_files(tmp_path / "v", files)
    assert inspect_image_folder(root).splits["validation"] == "val"
    images, labels = read_image_folder(root, "val", cache_dir=False)
    assert images.shape[0] == 3 and labels.tolist() == [0, 1, 2]
    ds = load_image_folder(root, normalize=None, cache_dir=False)
    assert ds.validation.num_examples == 3 and ds.name == "v"
    np.testing.assert_array_equal(ds.train.images, expected["train"][0].astype(np.float32))
    with pytest.raises(ValueError, match=r"validation_size=2: .*own validation split"):
        load_image_folder(root, validation_size=2, cache_dir=False)


def test_load_image_folder_from_a_zip(tmp_path, no_cache):
    files, expected = png_dataset()
    path = write_zip(tmp_path / "pets.zip", files, prefix="pets/")
    ds = load_image_folder(path, validation_size=2, seed=0)
    assert ds.name == "pets" and ds.class_names == ("ant", "cat", "dog") and ds.num_classes == 3
    assert ds.image_shape == (4, 5, 3)
    assert ds.train.num_examples == 4 and ds.validation.num_examples == 2
    assert ds.test.num_examples == 4 and ds.train.images.dtype == np.float32
    np.testing.assert_allclose(ds.train.images.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    raw = load_image_folder(path, normalize=None, channels=1, size=(2, 2), name="mine")
    assert raw.name == "mine" and raw.image_shape == (2, 2, 1)


# Errors -----------------------------------------------------------------------


def test_corrupt_image_in_a_directory_names_its_path(tmp_path):
    files, _ = png_dataset()
    files["train/cat/001.png"] = files["train/cat/001.png"][:40]  # truncated
    root = write_files(tmp_path / "bad", files)
    path = os.path.join(root, "train", "cat", "001.png")
    with pytest.raises(DataFormatError, match=rf"{path}: not a readable JPEG or PNG image"):
        read_image_folder(root, cache_dir=False)


def test_corrupt_image_in_a_zip_names_zip_and_member(tmp_path):
    files, _ = png_dataset()
    files["test/dog/000.png"] = b"\x89PNG\r\n\x1a\n garbage"
    path = write_zip(tmp_path / "bad.zip", files, prefix="top/")
    with pytest.raises(DataFormatError,
                       match=r"bad\.zip, member top/test/dog/000\.png: not a readable"):
        read_image_folder(path, "test", cache_dir=False)


def test_text_file_named_jpg_is_refused(tmp_path):
    files, _ = png_dataset()
    files["train/ant/zz.jpg"] = b"hello, I am not a JPEG"
    root = write_files(tmp_path / "t", files)
    with pytest.raises(DataFormatError, match=r"zz\.jpg: not a readable JPEG or PNG"):
        read_image_folder(root, cache_dir=False)


def test_class_missing_from_one_split_is_named(tmp_path):
    files, _ = png_dataset()
    files = {k: v for k, v in files.items() if not k.startswith("test/dog/")}
    root = write_files(tmp_path / "gap", files)
    with pytest.raises(DataFormatError, match=r"class folder 'dog' is missing from the test split"):
        read_image_folder(root, "train", cache_dir=False)
    path = write_zip(tmp_path / "gap.zip", files)
    with pytest.raises(DataFormatError, match=r"gap\.zip, folder test/dog/: class folder 'dog'"):
        image_folder_class_names(path)


def test_empty_split_and_empty_class_are_named(tmp_path):
    files, _ = png_dataset()
    root = write_files(tmp_path / "e", files)
    os.makedirs(os.path.join(root, "validation"))
    with pytest.raises(DataFormatError, match=r"validation: the validation split is empty"):
        read_image_folder(root, cache_dir=False)
    os.rmdir(os.path.join(root, "validation"))
    os.makedirs(os.path.join(root, "train", "eel"))
    os.makedirs(os.path.join(root, "test", "eel"))
    with open(os.path.join(root, "train", "eel", "notes.txt"), "w") as f:
        f.write("no images here")
    eel = os.path.join(root, "train", "eel")
    with pytest.raises(DataFormatError, match=rf"{eel}: class folder holds no images"):
        read_image_folder(root, "train", cache_dir=False)
    path = write_zip(tmp_path / "e.zip", files, directories=True)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo("train/eel/"), b"")
        archive.writestr(zipfile.ZipInfo("test/eel/"), b"")
    with pytest.raises(DataFormatError,
                       match=r"e\.zip, folder train/eel/: class folder holds no images"):
        read_image_folder(path, cache_dir=False)


def test_no_split_folders_or_missing_split(tmp_path):
    root = write_files(tmp_path / "flat", {"cat/0.png": encode(random_image()),
                                           "dog/0.png": encode(random_image())})
    with pytest.raises(FileNotFoundError, match=r"flat'.*train/ and test/.*it contains: cat, dog"):
        read_image_folder(root, cache_dir=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty'.*it contains: nothing"):
        read_image_folder(empty, cache_dir=False)
    path = write_zip(tmp_path / "flat.zip", {"a/cat/0.png": b"x", "b/dog/0.png": b"y"})
    with pytest.raises(DataFormatError,
                       match=r"flat\.zip: not a zip of an image folder.*holds: a, b"):
        read_image_folder(path, cache_dir=False)
    files, _ = png_dataset()
    only_train = write_files(tmp_path / "t",
                             {k: v for k, v in files.items() if k.startswith("train")})
    with pytest.raises(FileNotFoundError,
                       match=r"'.*t' has no test split: expected a folder test/"):
        read_image_folder(only_train, "test", cache_dir=False)
    with pytest.raises(FileNotFoundError, match=r"has no validation split.*validation/ or val/"):
        read_image_folder(only_train, "validation", cache_dir=False)
    with pytest.raises(FileNotFoundError, match=r"has no test split"):
        load_image_folder(only_train, cache_dir=False)


def test_both_val_and_validation_refused(tmp_path):
    files, _ = png_dataset()
    for folder in ("val", "validation"):
        files[f"{folder}/ant/0.png"] = encode(random_image())
    root = write_files(tmp_path / "vv", files)
    with pytest.raises(DataFormatError, match=r"vv: holds both validation/ and val/"):
        image_folder_class_names(root)


def test_missing_path_and_not_a_zip(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist"):
        read_image_folder(tmp_path / "nowhere")
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not really a zip")
    with pytest.raises(DataFormatError, match=r"fake\.zip: not a readable zip file"):
        read_image_folder(fake, cache_dir=False)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"size": (0, 4)}, ValueError, r"size=\(0, 4\): expected None or \(height, width\)"),
    ({"size": (32,)}, ValueError, r"size=\(32,\)"),
    ({"size": 32}, ValueError, r"size=32"),
    ({"size": (3.5, 4)}, ValueError, r"size=\(3\.5, 4\)"),
    ({"channels": 2}, ValueError, r"channels=2: expected 3 \(RGB\) or 1"),
    ({"channels": True}, ValueError, r"channels=True"),
    ({"split": "dev"}, ValueError, r"split='dev': expected one of"),
    ({"cache_dir": True}, TypeError, r"cache_dir=True: expected a directory path"),
    ({"cache_dir": 3}, TypeError, r"cache_dir=3"),
])
def test_bad_arguments_refused_before_any_reading(tmp_path, kwargs, error, match):
    # the path does not exist: the argument is checked first
    with pytest.raises(error, match=match):
        read_image_folder(tmp_path / "nowhere", **kwargs)


def test_path_of_wrong_type():
    with pytest.raises(TypeError, match=r"path=None: expected a directory or a \.zip"):
        read_image_folder(None)


# Zip safety -------------------------------------------------------------------


@pytest.mark.parametrize("member, what", [
    ("/etc/train/cat/0.png", "has an absolute path"),
    ("C:/train/cat/0.png", "has an absolute path"),
    ("train/cat/../../../evil.png", "has a '..' component"),
    ("..\\outside.png", "has a '..' component"),
])
def test_unsafe_member_names_refuse_the_zip(tmp_path, member, what, count_decodes):
    files, _ = png_dataset()
    path = write_zip(tmp_path / "evil.zip", files)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo(member), encode(random_image()))
    with pytest.raises(DataFormatError,
                       match=rf"evil\.zip: member {re.escape(repr(member))} {what}"):
        read_image_folder(path, cache_dir=False)
    assert not count_decodes
    assert sorted(os.listdir(tmp_path)) == ["evil.zip"]  # nothing extracted


def test_duplicate_member_refused(tmp_path):
    files, _ = png_dataset()
    path = write_zip(tmp_path / "dup.zip", files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("train/cat/000.png", encode(random_image()))
    with pytest.raises(DataFormatError,
                       match=r"dup\.zip: member 'train/cat/000\.png' occurs twice"):
        read_image_folder(path, cache_dir=False)


def test_oversized_member_refused_from_its_declared_size_before_decoding(
        tmp_path, monkeypatch, count_decodes):
    # 64 MiB of zeros deflate to about 64 KiB: refused from the central directory
    files, _ = png_dataset()
    path = write_zip(tmp_path / "bomb.zip", files)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/cat/zzz.png", bytes(64 << 20))
    assert os.path.getsize(path) < 1 << 20
    monkeypatch.setattr(image_folder_module, "MAX_MEMBER_BYTES", 16 << 20)
    peak, message = peak_of_failure(lambda: read_image_folder(path, cache_dir=False),
                                    DataFormatError)
    assert "bomb.zip, member train/cat/zzz.png: declares 67108864 uncompressed bytes" in message
    assert "MAX_MEMBER_BYTES" in message
    assert not count_decodes and peak < 4 << 20, f"peak allocation {peak} bytes"


def _lie_about_size(path, member: str, declared: int) -> None:
    """Rewrites the uncompressed size of `member` in the zip's central directory."""
    data = bytearray(open(path, "rb").read())
    name = member.encode()
    start = 0
    while True:
        start = data.index(b"PK\x01\x02", start)
        length = struct.unpack_from("<H", data, start + 28)[0]
        if bytes(data[start + 46:start + 46 + length]) == name:
            struct.pack_into("<I", data, start + 24, declared)
            break
        start += 4
    with open(path, "wb") as f:
        f.write(data)


def test_member_inflating_past_its_declared_size_is_read_only_that_far(tmp_path):
    # the central directory says 1000 bytes; the deflate stream holds 64 MiB
    files, _ = png_dataset()
    path = write_zip(tmp_path / "liar.zip", files)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/dog/zzz.png", bytes(64 << 20))
    _lie_about_size(path, "train/dog/zzz.png", 1000)
    peak, message = peak_of_failure(lambda: read_image_folder(path, cache_dir=False),
                                    DataFormatError)
    assert "liar.zip, member train/dog/zzz.png: corrupt zip member" in message
    assert "CRC" in message
    assert peak < 4 << 20, f"peak allocation {peak} bytes"


def test_image_with_too_many_pixels_refused_from_its_header(tmp_path, monkeypatch):
    files, _ = png_dataset()
    files["train/cat/big.png"] = encode(np.zeros((300, 400, 3), np.uint8))
    root = write_files(tmp_path / "big", files)
    monkeypatch.setattr(image_folder_module, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(DataFormatError, match=r"big\.png: 300 x 400 pixels .*more than the 100000"):
        read_image_folder(root, cache_dir=False)


# Cache ------------------------------------------------------------------------


def _cache_files(cache_dir) -> list[str]:
    folder = os.path.join(cache_dir, "image-folder")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_second_read_comes_from_the_cache(tmp_path, kind, count_decodes, monkeypatch):
    files, expected = png_dataset()
    if kind == "zip":
        source = write_zip(tmp_path / "pets.zip", files)
    else:
        source = write_files(tmp_path / "pets", files)
    before = sorted(os.listdir(tmp_path))
    cache_dir = tmp_path / "cache"
    first = read_image_folder(source, "train", cache_dir=cache_dir)
    assert len(count_decodes) == 6 and len(_cache_files(cache_dir)) == 1
    if kind == "zip":  # a cache hit does not even open the zip
        monkeypatch.setattr(image_folder_module, "_open_zip", None)
    second = read_image_folder(source, "train", cache_dir=cache_dir)
    assert len(count_decodes) == 6, "the second read decoded images again"
    for a, b, c in zip(first, second, expected["train"]):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
        assert a.dtype == b.dtype
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["cache"])  # data folder untouched
    if kind == "directory":
        assert sorted(files) == sorted(
            os.path.relpath(os.path.join(d, f), source).replace(os.sep, "/")
            for d, _, fs in os.walk(source) for f in fs)
    assert not [f for f in _cache_files(cache_dir) if not f.endswith(".npz")]  # no temp files


def test_default_cache_dir_comes_from_the_environment(tmp_path, monkeypatch, count_decodes):
    files, _ = png_dataset()
    source = write_files(tmp_path / "pets", files)
    monkeypatch.setenv("FCNN_CACHE_DIR", str(tmp_path / "env-cache"))
    read_image_folder(source, "test")
    read_image_folder(source, "test")
    assert len(count_decodes) == 4 and len(_cache_files(tmp_path / "env-cache")) == 1
    read_image_folder(source, "test", cache_dir=False)
    read_image_folder(source, "test", cache_dir=False)
    assert len(count_decodes) == 12


def test_changed_directory_invalidates_the_cache(tmp_path, count_decodes):
    files, _ = png_dataset()
    source = write_files(tmp_path / "pets", files)
    cache_dir = tmp_path / "cache"
    read_image_folder(source, "test", cache_dir=cache_dir)
    new = random_image()
    target = os.path.join(source, "test", "cat", "000.png")
    with open(target, "wb") as f:
        f.write(encode(new))
    stat = os.stat(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    images, _ = read_image_folder(source, "test", cache_dir=cache_dir)
    assert len(count_decodes) == 8
    np.testing.assert_array_equal(images[2], new)  # ant ant cat dog
    assert len(_cache_files(cache_dir)) == 1  # the stale file was replaced
    # a new image file also changes the key
    write_files(source, {"test/cat/001.png": encode(random_image())})
    images, _ = read_image_folder(source, "test", cache_dir=cache_dir)
    assert images.shape[0] == 5 and len(count_decodes) == 13


def test_changed_zip_and_changed_options_invalidate_the_cache(tmp_path, count_decodes):
    files, _ = png_dataset()
    path = tmp_path / "pets.zip"
    write_zip(path, files)
    cache_dir = tmp_path / "cache"
    read_image_folder(path, "test", cache_dir=cache_dir)
    assert len(count_decodes) == 4
    changed = dict(files, **{"test/ant/000.png": encode(np.full((4, 5, 3), 9, np.uint8))})
    write_zip(path, changed)
    images, _ = read_image_folder(path, "test", cache_dir=cache_dir)
    assert len(count_decodes) == 8 and (images[0] == 9).all()
    read_image_folder(path, "test", cache_dir=cache_dir, channels=1)
    read_image_folder(path, "test", cache_dir=cache_dir, size=(2, 2))
    assert len(count_decodes) == 16
    read_image_folder(path, "test", cache_dir=cache_dir, size=(2, 2))
    assert len(count_decodes) == 16
    # one file per (source, split, options)
    assert len(_cache_files(cache_dir)) == 3


@pytest.mark.parametrize("damage", ["flip-bytes", "truncate", "empty", "not-npz", "other-key",
                                    "bad-labels"])
def test_corrupt_or_mismatching_cache_file_is_ignored_and_rewritten(tmp_path, damage,
                                                                     count_decodes):
    files, expected = png_dataset()
    source = write_files(tmp_path / "pets", files)
    cache_dir = tmp_path / "cache"
    read_image_folder(source, "train", cache_dir=cache_dir)
    (name,) = _cache_files(cache_dir)
    path = os.path.join(cache_dir, "image-folder", name)
    data = bytearray(open(path, "rb").read())
    if damage == "flip-bytes":
        middle = data.index(b"images.npy") + 200
        data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "not-npz":
        data = b"\x93NUMPY garbage"
    else:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if damage == "other-key":
            arrays["cache_key"] = np.array('{"identity": "something else"}')
        else:
            arrays["labels"] = arrays["labels"] + 7
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    images, labels = read_image_folder(source, "train", cache_dir=cache_dir)
    assert len(count_decodes) == 12, "the damaged cache file was trusted"
    np.testing.assert_array_equal(images, expected["train"][0])
    np.testing.assert_array_equal(labels, expected["train"][1])
    read_image_folder(source, "train", cache_dir=cache_dir)  # rewritten: a hit again
    assert len(count_decodes) == 12


def test_unwritable_cache_warns_and_still_returns_the_images(tmp_path, count_decodes):
    files, expected = png_dataset()
    source = write_files(tmp_path / "pets", files)
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    with pytest.warns(UserWarning, match=r"could not write the cache file"):
        images, _ = read_image_folder(source, "test", cache_dir=blocker)
    np.testing.assert_array_equal(images, expected["test"][0])


def test_cache_inside_the_data_folder_is_refused(tmp_path):
    files, _ = png_dataset()
    source = write_files(tmp_path / "pets", files)
    with pytest.raises(ValueError, match=r"cache_dir=.*is inside the image folder"):
        read_image_folder(source, cache_dir=os.path.join(source, "cache"))
    assert not os.path.exists(os.path.join(source, "cache"))


# CIFAR-10 from its image-folder version ---------------------------------------


def cifar_like_files(per_class=(2, 1), size=(32, 32)):
    files = {}
    for split, count in zip(("train", "test"), per_class):
        for name in CIFAR10_CLASS_NAMES:
            for i in range(count):
                files[f"{split}/{name}/{i:04d}.png"] = encode(random_image(*size))
    return files


def test_load_dataset_cifar10_reads_the_zip_in_its_subfolder(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "data" / "cifar10")
    write_zip(tmp_path / "data" / "cifar10" / "cifar10-jpeg.zip", cifar_like_files(),
              prefix="cifar10/")
    monkeypatch.setenv("FCNN_DATA_DIR", str(tmp_path / "data"))
    ds = load_dataset("cifar10", normalize=None, cache_dir=tmp_path / "cache")
    assert ds.image_shape == (32, 32, 3) and ds.class_names == CIFAR10_CLASS_NAMES
    assert ds.train.num_examples == 20 and ds.test.num_examples == 10
    assert np.bincount(ds.train.labels).tolist() == [2] * 10
    for data_dir in (tmp_path / "data", tmp_path / "data" / "cifar10"):
        assert find_cifar10_images(data_dir).endswith("cifar10-jpeg.zip")
    assert len(_cache_files(tmp_path / "cache")) == 2


def test_cifar10_any_zip_or_unpacked_folder_and_binary_preferred(tmp_path):
    files = cifar_like_files()
    write_zip(tmp_path / "other.zip", {"a/b.png": b"not cifar"})
    write_zip(tmp_path / "my-cifar.zip", files)
    assert find_cifar10_images(tmp_path) == str(tmp_path / "my-cifar.zip")
    unpacked = tmp_path / "u"
    write_files(unpacked / "cifar10", files)
    found = find_cifar10_images(unpacked)  # u/ holds one folder, cifar10/, holding the splits
    assert found == str(unpacked)
    assert inspect_image_folder(found).root == str(unpacked / "cifar10")
    ds = load_dataset("cifar10", unpacked, normalize=None, cache_dir=False)
    assert ds.train.num_examples == 20
    # the binary version, when present too, is read instead
    make_cifar_dir(unpacked / "cifar-10-batches-bin", per_batch=1, n_test=3)
    ds = load_dataset("cifar10", unpacked, normalize=None, cache_dir=False)
    assert ds.train.num_examples == 5 and ds.test.num_examples == 3


def test_cifar10_wrong_classes_or_shape(tmp_path):
    files = cifar_like_files()
    path = write_zip(tmp_path / "cifar10-jpeg.zip", {k.replace("truck", "lorry"): v
                                                     for k, v in files.items()})
    with pytest.raises(DataFormatError, match=r"cifar10-jpeg\.zip: class folders .*'lorry'"):
        read_cifar10_images(path, cache_dir=False)
    path = write_zip(tmp_path / "small.zip", cifar_like_files(size=(8, 8)))
    with pytest.raises(DataFormatError, match=r"small\.zip: images of shape \(8, 8, 3\)"):
        read_cifar10_images(path, cache_dir=False)


def test_cifar10_nothing_found_names_both_versions(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin.*cifar10-jpeg\.zip"):
        load_dataset("cifar10", tmp_path)


# The real CIFAR-10 zip ----------------------------------------------------------

REAL_TRAIN_MEAN = (0.4913, 0.4821, 0.4465)
REAL_TEST_MEAN = (0.4941, 0.4851, 0.4504)


@pytest.fixture(scope="session")
def real_cifar10_zip():
    root = os.environ.get("FCNN_DATA_DIR")
    if not root:
        skip_or_fail_missing_data("FCNN_DATA_DIR is not set (it should point at shared/data)")
    for folder in (root, os.path.join(root, "cifar10")):
        path = os.path.join(folder, "cifar10-jpeg.zip")
        if os.path.isfile(path):
            return root, path
    skip_or_fail_missing_data(f"cifar10-jpeg.zip not found in {root!r} or its cifar10/ folder")


@pytest.fixture(scope="session")
def real_cifar10(real_cifar10_zip, tmp_path_factory):
    """One cold decode of the whole zip per session, into a session cache folder."""
    root, path = real_cifar10_zip
    cache_dir = tmp_path_factory.mktemp("cifar10-cache")
    start = time.perf_counter()
    arrays = read_cifar10_images(path, cache_dir=cache_dir)
    print(f"decoded the CIFAR-10 zip (60,000 JPEGs) in {time.perf_counter() - start:.1f} s")
    return root, path, cache_dir, arrays


@pytest.mark.data
def test_real_cifar10_counts_shapes_and_classes(real_cifar10):
    _, path, _, (x, y, xt, yt) = real_cifar10
    assert x.shape == (50_000, 32, 32, 3) and xt.shape == (10_000, 32, 32, 3)
    assert x.dtype == np.uint8 and y.dtype == np.int32 and yt.dtype == np.int32
    assert np.bincount(y, minlength=10).tolist() == [5_000] * 10
    assert np.bincount(yt, minlength=10).tolist() == [1_000] * 10
    info = inspect_image_folder(path)
    assert info.class_names == CIFAR10_CLASS_NAMES and info.root == "cifar10/"
    assert info.splits == {"train": "train", "test": "test"}
    # members are sorted by path, so the labels come in blocks of one class
    assert (np.diff(y) >= 0).all() and (np.diff(yt) >= 0).all()


@pytest.mark.data
def test_real_cifar10_channel_means_match_the_readme(real_cifar10):
    _, _, _, (x, _, xt, _) = real_cifar10
    train_mean = x.reshape(-1, 3).mean(axis=0, dtype=np.float64) / 255
    test_mean = xt.reshape(-1, 3).mean(axis=0, dtype=np.float64) / 255
    np.testing.assert_allclose(train_mean, REAL_TRAIN_MEAN, atol=1e-3)
    np.testing.assert_allclose(test_mean, REAL_TEST_MEAN, atol=1e-3)


@pytest.mark.data
def test_real_cifar10_second_read_is_from_the_cache(real_cifar10, count_decodes):
    _, path, cache_dir, (x, y, xt, yt) = real_cifar10
    start = time.perf_counter()
    again = read_cifar10_images(path, cache_dir=cache_dir)
    elapsed = time.perf_counter() - start
    print(f"read the CIFAR-10 zip's decoded arrays from the cache in {elapsed:.2f} s")
    assert not count_decodes
    for a, b in zip((x, y, xt, yt), again):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert elapsed < 5.0, f"reading the cache took {elapsed:.1f} s"


@pytest.mark.data
def test_real_cifar10_through_load_dataset(real_cifar10, count_decodes):
    root, _, cache_dir, (_, y, _, yt) = real_cifar10
    ds = load_dataset("cifar10", root, normalize=None, validation_size=5000, seed=0,
                      cache_dir=cache_dir)
    assert not count_decodes
    assert ds.train.images.shape == (45_000, 32, 32, 3)
    assert ds.validation.images.shape == (5_000, 32, 32, 3)
    assert ds.test.images.shape == (10_000, 32, 32, 3)
    assert ds.class_names == CIFAR10_CLASS_NAMES
    assert np.array_equal(ds.test.labels, yt)
    assert np.bincount(ds.validation.labels, minlength=10).tolist() == [500] * 10
