"""IDX files (MNIST, Fashion-MNIST): a header parser and the two datasets' readers.

An IDX file is a 4-byte magic number 0x0000TTDD (TT the element type, DD the number
of dimensions), DD big-endian uint32 sizes, then the elements, row-major. MNIST
images have magic 2051 (0x0803: uint8, 3 dims N x rows x cols), labels 2049 (0x0801:
uint8, 1 dim N). Reference: LeCun, Cortes and Burges, "The MNIST database of
handwritten digits"; Xiao, Rasul and Vollgraf (2017) for Fashion-MNIST.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from fcnn.data.errors import DataFormatError, check_kind, missing_files_error

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# Element type byte -> numpy dtype (big-endian where it matters).
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Sub-folder names under which a data root may hold each dataset.
MNIST_SUBDIRS = ("mnist", "MNIST")
FASHION_MNIST_SUBDIRS = ("fashion-mnist", "fashion_mnist", "FashionMNIST", "fashion")

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_MEMBER = _GZIP_MAGIC + b"\x08"  # how every gzip member begins (deflate method)
_GZIP_MIN_SIZE = 18  # a 10-byte member header and the 8-byte trailer
_MOD32 = 1 << 32
_CHUNK = 1 << 22
_SCAN_CHUNK = 1 << 20


def _read_bounded(stream, size: int) -> bytearray:
    """Reads up to `size` bytes in chunks, so memory follows what the file really holds."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(_CHUNK, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _gzip_trailer_size(raw) -> int | None:
    """ISIZE of a gzip file: the last member's uncompressed size mod 2^32 (RFC 1952).

    Read from the last 4 bytes; None when they may not be a trailer: a file too short
    to hold one, or four zero bytes (gzip readers accept zero padding after the end).
    """
    size = os.fstat(raw.fileno()).st_size
    if size < _GZIP_MIN_SIZE:
        return None
    raw.seek(size - 4)
    isize = int.from_bytes(raw.read(4), "little")
    raw.seek(0)
    return isize or None


def _may_hold_several_members(path: str) -> bool:
    """False when the bytes that begin a gzip member occur nowhere after the first one.

    True may be a false alarm (the three bytes inside compressed data); it only means
    the trailer cannot be trusted to cover the whole file.
    """
    with open(path, "rb") as raw:
        raw.seek(1)
        tail = b""
        while chunk := raw.read(_SCAN_CHUNK):
            if _GZIP_MEMBER in chunk or _GZIP_MEMBER in tail + chunk[:2]:
                return True
            tail = chunk[-2:]
    return False


def _inflated_size(path: str, limit: int) -> int:
    """Bytes a gzip file inflates to, counted up to limit + 1 in one reused buffer."""
    buffer = memoryview(bytearray(_SCAN_CHUNK))
    total = 0
    with gzip.open(path, "rb") as stream:
        while total <= limit:
            read = stream.readinto(buffer[: min(_SCAN_CHUNK, limit + 1 - total)])
            if not read:
                break
            total += read
    return total


def _gzip_shortfall(path: str, isize: int | None, claimed: int) -> tuple[int, str] | None:
    """What a gzip IDX file inflates to when that is known to be fewer than the
    `claimed` bytes (header + data), with where the number comes from; else None.

    Decided without inflating when the trailer settles it: a single member whose
    ISIZE differs from the claim (mod 2^32) does not hold it. Otherwise (several
    members, zero padding, or a claim of 4 GiB or more, which ISIZE cannot confirm)
    the stream is inflated and counted in constant memory before any data are kept.
    """
    if isize is not None and claimed < _MOD32 and isize >= claimed:
        return None  # the claim is there (anything beyond it is reported by the read)
    if isize is not None and isize != claimed % _MOD32 and not _may_hold_several_members(path):
        return isize, (
            "according to the ISIZE field of its gzip trailer (the uncompressed size mod "
            "2^32; a truncated gzip file, whose last 4 bytes are then no trailer, is "
            "refused here too)"
        )
    inflated = _inflated_size(path, claimed)
    return (inflated, "once inflated") if inflated < claimed else None


def _describe_magic(magic: int) -> str:
    return f"{magic} (0x{magic:08x})"


def _parse_idx(stream, path: str, file_size: int | None, expected_magic: int | None,
               gzip_shortfall=None):
    header = _read_bounded(stream, 4)
    if len(header) < 4:
        raise DataFormatError(
            f"{path}: truncated IDX file: it holds {len(header)} bytes, fewer than the "
            "4-byte magic number"
        )
    magic = struct.unpack(">I", bytes(header))[0]
    zero0, zero1, type_code, ndim = header
    if zero0 or zero1 or type_code not in IDX_TYPES or ndim == 0:
        raise DataFormatError(
            f"{path}: magic number {_describe_magic(magic)} is not an IDX magic number "
            "(expected 0x0000TTDD with element type TT in "
            f"{', '.join(f'0x{t:02x}' for t in IDX_TYPES)} and DD >= 1 dimensions; "
            f"MNIST images use {IMAGES_MAGIC}, labels {LABELS_MAGIC})"
        )
    if expected_magic is not None and magic != expected_magic:
        kinds = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
        raise DataFormatError(
            f"{path}: magic number {_describe_magic(magic)}, expected "
            f"{_describe_magic(expected_magic)} ({kinds.get(expected_magic, 'IDX')} file)"
        )
    raw_dims = _read_bounded(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataFormatError(
            f"{path}: truncated IDX header: magic {_describe_magic(magic)} announces "
            f"{ndim} dimension sizes ({4 * ndim} bytes) but the file ends after "
            f"{len(raw_dims)} of them"
        )
    shape = struct.unpack(f">{ndim}I", bytes(raw_dims))
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    header_size = 4 + 4 * ndim
    declared = f"the header declares shape {shape} of {dtype.name}, {expected} data bytes"
    # For an uncompressed file the size is known: reject a lying header before reading.
    if file_size is not None and file_size - header_size < expected:
        raise DataFormatError(
            f"{path}: truncated IDX file: {declared}, but only "
            f"{file_size - header_size} bytes follow the header"
        )
    # For a gzip file, the inflated size, when it is known to fall short, rejects the
    # header before any data are inflated into memory.
    shortfall = None if gzip_shortfall is None else gzip_shortfall(header_size + expected)
    if shortfall is not None:
        inflated, source = shortfall
        raise DataFormatError(
            f"{path}: truncated IDX file: {declared}, but the file holds {inflated} bytes "
            f"{source}, so only {max(inflated - header_size, 0)} bytes follow the "
            f"{header_size}-byte header"
        )
    data = _read_bounded(stream, expected)
    if len(data) < expected:
        raise DataFormatError(
            f"{path}: truncated IDX file: {declared}, but only {len(data)} bytes follow "
            "the header"
        )
    if stream.read(1):
        raise DataFormatError(
            f"{path}: {declared}, but the file holds more data after them (wrong header "
            "or several files concatenated)"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path, *, expected_magic: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzip-compressed when its name ends in .gz) into a numpy array.

    Returns an array of the shape and element type the header declares (native byte
    order). Raises FileNotFoundError for a missing file and DataFormatError (a
    ValueError) naming the file for a bad magic number, a truncated file, trailing
    data, or a file that should be gzip and is not. A header claiming more data than
    the file holds fails without a large allocation: a plain file is measured first;
    a gzip file's claim is compared with the uncompressed size its trailer records
    (counted in constant memory when the trailer cannot settle it); the data are then
    read in bounded chunks.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"IDX file {path!r} is a directory: expected one file, e.g. "
            "train-images-idx3-ubyte.gz (read_mnist reads a whole directory)"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file {path!r} does not exist")
    with open(path, "rb") as raw:
        if path.endswith(".gz"):
            head = raw.read(2)
            if head != _GZIP_MAGIC:
                raise DataFormatError(
                    f"{path}: not a gzip file (it starts with bytes {head.hex() or 'none'}, "
                    f"gzip starts with {_GZIP_MAGIC.hex()}); if it is an uncompressed IDX "
                    "file, remove the .gz suffix from its name"
                )
            isize = _gzip_trailer_size(raw)
            raw.seek(0)
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _parse_idx(stream, path, None, expected_magic,
                                      lambda claimed: _gzip_shortfall(path, isize, claimed))
            except EOFError as error:
                raise DataFormatError(
                    f"{path}: truncated gzip file: the compressed stream ends early ({error})"
                ) from None
            except (gzip.BadGzipFile, zlib.error) as error:
                raise DataFormatError(f"{path}: corrupt gzip data ({error})") from None
        return _parse_idx(raw, path, os.fstat(raw.fileno()).st_size, expected_magic)


def _find_file(directory: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _resolve_directory(directory, subdirs, kind: str, what: str) -> tuple[str, tuple[str, str]]:
    """The folder holding the files: `directory` itself or one of its `subdirs`."""
    check_kind(kind)
    directory = os.fspath(directory)
    stems = MNIST_FILES[kind]
    for folder in (directory, *(os.path.join(directory, s) for s in subdirs)):
        if all(_find_file(folder, stem) for stem in stems):
            return folder, stems
    expected = [stem + ".gz" for stem in stems]
    error = missing_files_error(directory, expected, f"{what} ({kind})")
    raise FileNotFoundError(
        f"{error} (also looked in the sub-folders {', '.join(subdirs)}; uncompressed "
        "files without .gz are accepted too)"
    )


def _read_pair(folder: str, stems, num_classes: int, as_float: bool):
    images_path = _find_file(folder, stems[0])
    labels_path = _find_file(folder, stems[1])
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels: the counts must agree"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise DataFormatError(
            f"{labels_path}: label {int(labels.max())} out of range, expected 0 to "
            f"{num_classes - 1}"
        )
    images = images[..., None]  # NHWC, one channel (a view, no copy)
    if as_float:
        images = np.divide(images, np.float32(255), dtype=np.float32)
    return images, labels.astype(np.int32)


def read_mnist(directory, kind: str = "train", *, as_float: bool = False):
    """Reads the MNIST training or test split from the four standard IDX files.

    `directory` holds `train-images-idx3-ubyte.gz` etc. (or their uncompressed
    versions), or is a data root whose `mnist/` sub-folder holds them.
    Returns `(images, labels)`: images (N, 28, 28, 1), uint8 in 0..255, or float32 in
    [0, 1] when `as_float`; labels (N,) int32 in 0..9.
    """
    folder, stems = _resolve_directory(directory, MNIST_SUBDIRS, kind, "MNIST")
    return _read_pair(folder, stems, len(MNIST_CLASS_NAMES), as_float)


def read_fashion_mnist(directory, kind: str = "train", *, as_float: bool = False):
    """Reads Fashion-MNIST, which uses MNIST's file names and format.

    `directory` holds the four files, or is a data root with a `fashion-mnist/`
    sub-folder. Returns `(images, labels)` as `read_mnist` does; the class names are
    `FASHION_MNIST_CLASS_NAMES`.
    """
    folder, stems = _resolve_directory(directory, FASHION_MNIST_SUBDIRS, kind, "Fashion-MNIST")
    return _read_pair(folder, stems, len(FASHION_MNIST_CLASS_NAMES), as_float)
