"""Image folders, `root/<split>/<class>/*.jpg|jpeg|png`, read from a directory or a .zip.

The layout torchvision's ImageFolder and Keras' image_dataset_from_directory read:

    root/train/cat/0001.jpg   root/train/dog/0002.png   ...
    root/test/cat/0107.jpg    ...
    root/validation/...       (optional; also spelled val/)

The split folders may sit under one top-level folder (`cifar10/train/...`), as they
do in a zip made from a folder. The class names are the class folders' names, sorted;
every split must have the same class folders, and label i is the i-th name. Images
are ordered by class, then by path. Images may be nested deeper inside a class
folder; other files, hidden files and folders and `__MACOSX/` are ignored.

Decoding uses Pillow, JPEG and PNG only. Images are converted to RGB (`channels=3`;
an alpha channel is dropped) or grayscale "L" (`channels=1`); 16-bit PNGs are scaled
to 8 bits. All images of a split must have one size, unless `size=(H, W)` asks to
resize them (bilinear). Images come out as uint8 (N, H, W, C), labels as int32 (N,).

A zip is read in place, never extracted. A member with an absolute path or a '..'
component refuses the whole zip; every image member's declared uncompressed size is
checked against MAX_MEMBER_BYTES before anything is decoded, and each member is read
in bounded chunks that stop at its declared size (zipfile never returns more), so a
zip bomb cannot exhaust memory; an image's pixel count is checked (from its header)
against MAX_IMAGE_PIXELS before it is decoded.

Decoding is slow (CIFAR-10's 60,000 JPEGs take seconds), so the decoded arrays of
each split are cached as .npz (see fcnn.data.cache): under `cache_dir`, by default
$FCNN_CACHE_DIR, else ~/.cache/fcnn; `cache_dir=False` turns it off. The key holds
the source's path, size and mtime (for a folder: every image file's), the split, the
reader's options and Pillow's version, so any change decodes again.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import PIL
from PIL import Image

from fcnn._checks import is_int
from fcnn.data import cache
from fcnn.data.errors import DataFormatError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test", "validation")
# The folder names each split may have, in order of preference.
SPLIT_FOLDERS = {"train": ("train",), "test": ("test",), "validation": ("validation", "val")}
MAX_MEMBER_BYTES = 256 << 20  # an image file larger than this is refused unread
MAX_IMAGE_PIXELS = 1 << 26  # 67 megapixels, checked from the header before decoding
CACHE_NAMESPACE = "image-folder"
_CACHE_VERSION = 1
_FORMATS = ("JPEG", "PNG")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_IGNORED_FOLDERS = frozenset({"__MACOSX"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
                  zlib.error, Image.DecompressionBombError)

LAYOUT_HELP = (
    "expected split folders train/ and test/ (optionally validation/ or val/), each "
    "holding one folder per class with .jpg, .jpeg or .png images, directly or under "
    "one top-level folder"
)


# Arguments --------------------------------------------------------------------


def check_size(size) -> tuple[int, int] | None:
    """None, or (height, width) as two positive ints."""
    if size is None:
        return None
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(is_int(s) and s > 0 for s in size))
    if not ok:
        raise ValueError(f"size={size!r}: expected None or (height, width), two positive ints")
    return int(size[0]), int(size[1])


def check_channels(channels) -> int:
    """1 (grayscale) or 3 (RGB)."""
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels={channels!r}: expected 3 (RGB) or 1 (grayscale)")
    return int(channels)


def check_split(split) -> str:
    """A split name: "train", "test" or "validation" (also "val")."""
    if split == "val":
        return "validation"
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS} (or 'val')")
    return split


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bool):
        raise TypeError(f"path={path!r}: expected a directory or a .zip file path")
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise TypeError(f"path={path!r}: expected a directory or a .zip file path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"image folder {path!r} does not exist: {LAYOUT_HELP}")
    return path


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _ignored(component: str) -> bool:
    return component.startswith(".") or component in _IGNORED_FOLDERS


# Layout -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where the split folders are and what they hold.

    `root` is the folder holding the split folders (a directory path), or for a zip
    the member-name prefix ("" or "top/"). `splits` maps a split name to its folder
    name. For a zip, `members[split]` lists (member name below `root`, ZipInfo, label)
    in reading order.
    """

    path: str
    is_zip: bool
    root: str
    splits: dict
    class_names: tuple
    members: dict | None = None

    def where(self, *parts: str, folder: bool = False) -> str:
        """A printable location: a path, or 'zip path, member name' inside a zip."""
        if self.is_zip:
            name = self.root + "/".join(parts)
            return f"{self.path}, {'folder' if folder else 'member'} {name}{'/' * folder}"
        return os.path.join(self.root, *parts)


def _find_splits(names, where: str) -> dict:
    """Split name -> folder name among the entries `names` of the split level."""
    splits = {}
    for split, folders in SPLIT_FOLDERS.items():
        found = [f for f in folders if f in names]
        if len(found) > 1:
            raise DataFormatError(
                f"{where}: holds both {found[0]}/ and {found[1]}/; keep one {split} split")
        if found:
            splits[split] = found[0]
    return splits


def _check_classes(layout: _Layout, classes: dict) -> tuple[str, ...]:
    """The sorted class names, the same in every split; else an error naming the gap."""
    for split, folder in layout.splits.items():
        if not classes[split]:
            raise DataFormatError(
                f"{layout.where(folder, folder=True)}: the {split} split is empty: it holds "
                f"no class folders; {LAYOUT_HELP}")
    everything = sorted(set().union(*classes.values()))
    for split, folder in layout.splits.items():
        missing = [c for c in everything if c not in classes[split]]
        if missing:
            other = next(s for s in layout.splits if missing[0] in classes[s])
            raise DataFormatError(
                f"{layout.where(folder, missing[0], folder=True)}: class folder "
                f"{missing[0]!r} is missing from the {split} split (the {other} split has it); "
                "every split needs the same class folders")
    return tuple(everything)


def _directory_layout(path: str) -> _Layout:
    root = path
    names = _visible_entries(root)
    splits = _find_splits({n for n in names if os.path.isdir(os.path.join(root, n))}, root)
    if not splits:
        folders = [n for n in names if os.path.isdir(os.path.join(root, n))]
        if len(folders) == 1:
            inner = os.path.join(root, folders[0])
            inner_names = {n for n in _visible_entries(inner)
                           if os.path.isdir(os.path.join(inner, n))}
            splits = _find_splits(inner_names, inner)
            if splits:
                root = inner
    if not splits:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise FileNotFoundError(
            f"image folder {path!r}: {LAYOUT_HELP}; it contains: {shown or 'nothing'}")
    classes = {
        split: {n for n in _visible_entries(os.path.join(root, folder))
                if os.path.isdir(os.path.join(root, folder, n))}
        for split, folder in splits.items()
    }
    names = _check_classes(_Layout(path, False, root, splits, ()), classes)
    return _Layout(path, False, root, splits, names)


def _visible_entries(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not _ignored(n))


def _member_parts(zip_path: str, info: zipfile.ZipInfo) -> list[str] | None:
    """The path components of a member, None for an ignored one; refuses unsafe names."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise DataFormatError(
            f"{zip_path}: member {info.filename!r} has an absolute path; refused (a zip of "
            "an image folder holds relative paths only)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataFormatError(
            f"{zip_path}: member {info.filename!r} has a '..' component; refused (a zip "
            "of an image folder holds relative paths inside it only)")
    if not parts or any(_ignored(p) for p in parts):
        return None
    return parts


def _zip_layout(path: str, archive: zipfile.ZipFile) -> _Layout:
    entries = []
    seen = set()
    for info in archive.infolist():
        parts = _member_parts(path, info)
        if parts is None:
            continue
        key = "/".join(parts)
        if not info.is_dir():
            if key in seen:
                raise DataFormatError(f"{path}: member {key!r} occurs twice; refused")
            seen.add(key)
        entries.append((parts, info))

    def folders_at(depth: int) -> set:
        return {parts[depth] for parts, info in entries
                if len(parts) > depth + 1 or (len(parts) == depth + 1 and info.is_dir())}

    tops = sorted({parts[0] for parts, _ in entries})
    prefix = 0
    splits = _find_splits(folders_at(0), path)
    if not splits and len(tops) == 1:
        splits = _find_splits(folders_at(1), f"{path}, folder {tops[0]}/")
        prefix = 1
    if not splits:
        shown = ", ".join(tops[:12]) + (", ..." if len(tops) > 12 else "")
        raise DataFormatError(f"{path}: not a zip of an image folder: {LAYOUT_HELP}; its "
                              f"top level holds: {shown or 'nothing'}")
    root = "".join(p + "/" for p in tops[:prefix])
    folder_split = {folder: split for split, folder in splits.items()}
    classes = {split: set() for split in splits}
    images = {split: {} for split in splits}
    for parts, info in entries:
        parts = parts[prefix:]
        if len(parts) < 2 or parts[0] not in folder_split:
            continue
        split = folder_split[parts[0]]
        if len(parts) == 2 and not info.is_dir():
            continue  # a file directly in the split folder, outside any class
        classes[split].add(parts[1])
        if len(parts) > 2 and not info.is_dir() and _is_image(parts[-1]):
            images[split].setdefault(parts[1], []).append(("/".join(parts), info))
    layout = _Layout(path, True, root, splits, ())
    class_names = _check_classes(layout, classes)
    members = {}
    for split, folder in splits.items():
        listed = []
        for label, name in enumerate(class_names):
            found = sorted(images[split].get(name, ()), key=lambda item: item[0])
            if not found:
                raise DataFormatError(
                    f"{layout.where(folder, name, folder=True)}: class folder holds no images "
                    f"({', '.join(IMAGE_EXTENSIONS)})")
            for member, info in found:
                _check_member(layout, member, info)
                listed.append((member, info, label))
        members[split] = listed
    return _Layout(path, True, root, splits, class_names, members)


def _check_member(layout: _Layout, member: str, info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_MEMBER_BYTES:
        raise DataFormatError(
            f"{layout.where(member)}: declares {info.file_size} uncompressed bytes, more than "
            f"the {MAX_MEMBER_BYTES} allowed for one image file (MAX_MEMBER_BYTES); refused "
            "before decoding (a zip bomb?)")
    if info.flag_bits & 0x1:
        raise DataFormatError(f"{layout.where(member)}: the member is encrypted; fcnn reads "
                              "unencrypted zips only")


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, struct.error) as error:
        raise DataFormatError(
            f"{path}: not a readable zip file ({error}); expected a directory or a .zip "
            "of an image folder") from None


# Reading one split ------------------------------------------------------------


class _Source:
    """A directory or zip, listed at most once and opened only when needed."""

    def __init__(self, path):
        self.path = _check_path(path)
        self.is_zip = os.path.isfile(self.path)
        self._layout = None
        self._archive = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    @property
    def layout(self) -> _Layout:
        if self._layout is None:
            if self.is_zip:
                self._archive = _open_zip(self.path)
                self._layout = _zip_layout(self.path, self._archive)
            else:
                self._layout = _directory_layout(self.path)
        return self._layout

    def split_folder(self, split: str) -> str:
        layout = self.layout
        if split not in layout.splits:
            present = ", ".join(f"{f}/" for f in layout.splits.values())
            raise FileNotFoundError(
                f"image folder {self.path!r} has no {split} split: expected a folder "
                f"{' or '.join(f'{f}/' for f in SPLIT_FOLDERS[split])} next to {present}")
        return layout.splits[split]

    def zip_fingerprint(self) -> dict:
        stat = os.stat(self.path)
        return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}

    def entries(self, split: str) -> tuple[list, dict]:
        """[(location, reader, label)] in order, and the fingerprint of those files."""
        folder = self.split_folder(split)
        layout = self.layout
        if self.is_zip:
            listed = []
            for member, info, label in layout.members[split]:
                where = layout.where(member)
                listed.append((where, _zip_reader(self._archive, info, where), label))
            return listed, self.zip_fingerprint()
        digest = hashlib.sha256()
        listed = []
        for label, name in enumerate(layout.class_names):
            class_dir = os.path.join(layout.root, folder, name)
            found = []
            for current, dirs, files in os.walk(class_dir):  # not into symlinks: no cycles
                dirs[:] = sorted(d for d in dirs if not _ignored(d))
                found += [os.path.join(current, f) for f in files
                          if not _ignored(f) and _is_image(f)]
            if not found:
                raise DataFormatError(
                    f"{class_dir}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            for file in sorted(found, key=lambda f: os.path.relpath(f, class_dir)):
                stat = os.stat(file)
                if stat.st_size > MAX_MEMBER_BYTES:
                    raise DataFormatError(
                        f"{file}: {stat.st_size} bytes, more than the {MAX_MEMBER_BYTES} "
                        "allowed for one image file (MAX_MEMBER_BYTES)")
                relative = os.path.relpath(file, layout.root)
                digest.update(f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
                listed.append((file, _file_reader(file), label))
        fingerprint = {"files": len(listed), "listing_sha256": digest.hexdigest(),
                       "class_names": list(layout.class_names), "root": layout.root}
        return listed, fingerprint


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    def read() -> bytes:
        try:
            with archive.open(info) as stream:
                # Bounded reads: zipfile stops at the declared size, and asking for at
                # most a chunk keeps a lying deflate stream from inflating past it.
                chunks, remaining = [], info.file_size
                while remaining > 0:
                    chunk = stream.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    remaining -= len(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, ValueError) as error:
            raise DataFormatError(f"{where}: corrupt zip member ({error})") from None
        data = b"".join(chunks)
        if len(data) != info.file_size:
            raise DataFormatError(f"{where}: declares {info.file_size} bytes but holds "
                                  f"{len(data)}; the zip is corrupt or truncated")
        return data
    return read


def _file_reader(path: str):
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read(MAX_MEMBER_BYTES + 1)
    return read


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        image = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    return image if image.mode == mode else image.convert(mode)


def decode_image(data: bytes, where: str, *, channels: int = 3, size=None) -> np.ndarray:
    """One JPEG or PNG file's bytes -> uint8 (H, W, channels); `size` = (H, W) resizes.

    Raises DataFormatError naming `where` for anything that is not a readable JPEG or
    PNG, or that has more than MAX_IMAGE_PIXELS pixels (checked before decoding).
    """
    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataFormatError(
                    f"{where}: {height} x {width} pixels (height x width), more than the "
                    f"{MAX_IMAGE_PIXELS} allowed (MAX_IMAGE_PIXELS); refused before decoding")
            converted = _to_mode(image, mode)
            if size is not None and converted.size != (size[1], size[0]):
                converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(converted)
    except DataFormatError:
        raise
    except _DECODE_ERRORS as error:
        raise DataFormatError(f"{where}: not a readable JPEG or PNG image ({error})") from None
    return array[..., None] if array.ndim == 2 else array


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _decode_all(entries: list, channels: int, size) -> tuple[np.ndarray, np.ndarray]:
    count = len(entries)
    labels = np.fromiter((label for _, _, label in entries), np.int32, count)
    images = None
    first = None
    for i, (where, read, _) in enumerate(entries):
        array = decode_image(read(), where, channels=channels, size=size)
        if images is None:
            first = where
            needed = count * array.nbytes
            memory = _memory_bytes()
            if memory is not None and needed > memory:
                raise ValueError(
                    f"{count} images of {array.shape[0]} x {array.shape[1]} x "
                    f"{array.shape[2]} (the size of {where}) need {needed} bytes, more than "
                    f"this machine's {memory} bytes of memory; pass size=(H, W) to resize them")
            images = np.empty((count, *array.shape), np.uint8)
        elif array.shape != images.shape[1:]:
            (h0, w0), (h1, w1) = images.shape[1:3], array.shape[:2]
            raise DataFormatError(
                f"images of different sizes: {first} is {h0} x {w0} pixels (height x width) "
                f"but {where} is {h1} x {w1}; every image must have one size, or pass "
                "size=(H, W) to resize them")
        images[i] = array
    return images, labels


def _identity(source: _Source, split: str, channels: int, size) -> dict:
    return {"reader": "fcnn.data.image_folder", "version": _CACHE_VERSION,
            "source": os.path.realpath(source.path), "split": split, "channels": channels,
            "size": list(size) if size else None, "pillow": PIL.__version__,
            "max_image_pixels": MAX_IMAGE_PIXELS}


def _valid_cached(arrays: dict | None, channels: int, size, expected_count, expected_names):
    """The cached arrays when they have the promised shapes and ranges, else None."""
    if arrays is None or set(arrays) != {"images", "labels", "class_names", "splits"}:
        return None
    images, labels = arrays["images"], arrays["labels"]
    names, splits = arrays["class_names"], arrays["splits"]
    ok = (images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == channels
          and images.shape[0] > 0 and (size is None or images.shape[1:3] == tuple(size))
          and labels.dtype == np.int32 and labels.shape == images.shape[:1]
          and names.dtype.kind == "U" and names.ndim == 1 and names.size > 0
          and splits.dtype.kind == "U" and splits.ndim == 1
          and int(labels.min()) >= 0 and int(labels.max()) < names.size
          and (expected_count is None or images.shape[0] == expected_count)
          and (expected_names is None or tuple(names.tolist()) == tuple(expected_names)))
    return arrays if ok else None


@dataclass(frozen=True)
class _SplitData:
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple
    splits: tuple  # the splits the source holds


def _read_split(source: _Source, split: str, channels: int, size, cache_dir) -> _SplitData:
    if cache_dir is not None and not source.is_zip:
        real_cache, real_source = os.path.realpath(cache_dir), os.path.realpath(source.path)
        if os.path.commonpath([real_cache, real_source]) == real_source:
            raise ValueError(
                f"cache_dir={cache_dir!r} is inside the image folder {source.path!r}: the "
                "cache is never written into the data; pass another folder or cache_dir=False")
    identity = _identity(source, split, channels, size)
    entries = None
    if source.is_zip:
        fingerprint = source.zip_fingerprint()  # a cache hit never opens the zip
        expected_count = expected_names = None
    else:
        entries, fingerprint = source.entries(split)
        expected_count, expected_names = len(entries), source.layout.class_names
    path = key = None
    if cache_dir is not None:
        stem = os.path.basename(os.path.normpath(source.path)) + f"-{split}"
        path, key = cache.cache_entry(cache_dir, CACHE_NAMESPACE, stem, identity, fingerprint)
        arrays = _valid_cached(cache.load_arrays(path, key), channels, size,
                               expected_count, expected_names)
        if arrays is not None:
            return _SplitData(arrays["images"], arrays["labels"],
                              tuple(arrays["class_names"].tolist()),
                              tuple(arrays["splits"].tolist()))
    if entries is None:
        entries, fingerprint_now = source.entries(split)
        if fingerprint_now != fingerprint:  # changed since the cache key was made
            path = None
    images, labels = _decode_all(entries, channels, size)
    if source.is_zip and source.zip_fingerprint() != fingerprint:
        path = None  # the zip changed while it was read: do not cache what was read
    layout = source.layout
    data = _SplitData(images, labels, layout.class_names, tuple(layout.splits))
    if path is not None:
        cache.save_arrays(path, key, {"images": images, "labels": labels,
                                      "class_names": np.array(data.class_names),
                                      "splits": np.array(data.splits)})
    return data


def read_splits(path, splits, *, channels: int = 3, size=None, cache_dir=None,
                optional=()) -> tuple[dict, tuple[str, ...]]:
    """Reads several splits of one image folder, listing and opening it at most once.

    Returns ({split: (images, labels)}, class_names); a split named in `optional` is
    left out when the source does not hold it.
    """
    channels, size = check_channels(channels), check_size(size)
    cache_dir = cache.resolve_cache_dir(cache_dir)
    wanted = [check_split(s) for s in splits]
    optional = {check_split(s) for s in optional}
    out, class_names, present = {}, None, None
    with _Source(path) as source:
        for split in wanted:
            if split in optional:
                held = present if present is not None else tuple(source.layout.splits)
                if split not in held:
                    continue
            data = _read_split(source, split, channels, size, cache_dir)
            if class_names is not None and data.class_names != class_names:
                raise DataFormatError(
                    f"{source.path}: the {split} split has the classes {data.class_names}, "
                    f"the others {class_names}")
            class_names, present = data.class_names, data.splits
            out[split] = (data.images, data.labels)
    return out, class_names


def read_image_folder(path, split: str = "train", *, channels: int = 3, size=None,
                      cache_dir=None):
    """Reads one split of an image folder (a directory or a .zip; see the module doc).

    `split` is "train", "test" or "validation" ("val"); `channels` 3 (RGB) or 1
    (grayscale); `size` None (all images must have one size) or (H, W) to resize
    (bilinear); `cache_dir` a folder, None ($FCNN_CACHE_DIR, else ~/.cache/fcnn) or
    False (no cache). Returns `(images, labels)`: images (N, H, W, channels) uint8,
    labels (N,) int32 indexing `image_folder_class_names(path)`.
    """
    split = check_split(split)
    arrays, _ = read_splits(path, (split,), channels=channels, size=size, cache_dir=cache_dir)
    return arrays[split]


class ImageFolderInfo(NamedTuple):
    """What an image folder holds, from its listing alone (nothing decoded).

    `splits` maps "train", "test", "validation" to the folder names found (e.g.
    "validation" -> "val"); `class_names` are the sorted class folders; `root` is
    the folder holding the split folders (inside a zip: the member prefix, "" or
    "top/").
    """

    path: str
    root: str
    splits: dict
    class_names: tuple


def inspect_image_folder(path) -> ImageFolderInfo:
    """Lists an image folder (directory or .zip) and checks its layout; decodes nothing."""
    with _Source(path) as source:
        layout = source.layout
    return ImageFolderInfo(layout.path, layout.root, dict(layout.splits), layout.class_names)


def image_folder_class_names(path) -> tuple[str, ...]:
    """The class names of an image folder: its class folders' names, sorted."""
    return inspect_image_folder(path).class_names
