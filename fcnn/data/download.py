"""Optional downloads into a cache directory, checksummed and written atomically.

Every file is streamed into a temporary file in the destination folder, its checksum
checked, flushed to disk, and only then renamed onto its final name (`os.replace`
is atomic on one file system). A failed or interrupted download, or a checksum
mismatch, leaves nothing behind under the final name. The test suite never
downloads; it exercises this code with local `file://` URLs or a replaced `fetch`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request

from fcnn.data import cache, cifar10, idx

# Downloads go to the same folder as the decoded-array cache (see fcnn.data.cache).
CACHE_ENV = cache.CACHE_ENV
default_cache_dir = cache.default_cache_dir

_CHUNK = 1 << 20

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# MD5 of the .gz files as distributed by the mirrors above.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# MD5 of the decompressed MNIST files: the same for any gzip wrapper of the data.
MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_ARCHIVE_DIR = "cifar-10-batches-bin"


class ChecksumError(ValueError):
    """A downloaded file's digest differs from the expected one."""


def open_url(url: str, timeout: float = 60.0):
    """Opens `url` (http, https or file) for reading bytes; the default `fetch`."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (checksummed)


def _hasher(md5, sha256, *, required: bool):
    """(hashlib object, expected hex digest) for the one checksum given."""
    if md5 is not None and sha256 is not None:
        raise ValueError("give one checksum, md5=... or sha256=..., not both")
    if md5 is not None:
        return hashlib.md5(usedforsecurity=False), md5.lower()
    if sha256 is not None:
        return hashlib.sha256(), sha256.lower()
    if required:
        raise ValueError("a download needs a checksum: pass md5=... or sha256=...")
    return None, None


def file_digest(path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(destination, chunks, *, md5=None, sha256=None, source: str = "") -> str:
    """Writes the byte chunks to `destination` via a temporary file and a rename.

    When `md5` or `sha256` is given the digest of the bytes must equal it; on a
    mismatch, or any error while writing, the temporary file is removed and
    `destination` is left as it was. Returns the destination path.
    """
    digest, expected = _hasher(md5, sha256, required=False)
    destination = os.fspath(destination)
    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(destination)}.", suffix=".part"
    )
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                if digest is not None:
                    digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest is not None and digest.hexdigest() != expected:
            raise ChecksumError(
                f"{source or destination}: {digest.name} checksum {digest.hexdigest()} "
                f"differs from the expected {expected}; the file was not written to "
                f"{destination!r} (corrupt or changed download)"
            )
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return destination


def download_file(url: str, destination, *, md5=None, sha256=None, fetch=None) -> str:
    """Downloads `url` to `destination` unless a file with the right checksum is there.

    `fetch(url)` returns a readable binary context manager (default `open_url`).
    Returns the destination path.
    """
    digest, expected = _hasher(md5, sha256, required=True)
    if os.path.isfile(destination) and file_digest(destination, digest.name) == expected:
        return os.fspath(destination)
    fetch = fetch or open_url

    def chunks():
        with fetch(url) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                yield chunk

    return atomic_write(destination, chunks(), md5=md5, sha256=sha256, source=url)


def _download_idx_set(folder: str, mirrors, checksums, fetch) -> str:
    for name, md5 in checksums.items():
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror + name, os.path.join(folder, name), md5=md5, fetch=fetch)
                break
            except (urllib.error.URLError, OSError, ChecksumError) as error:
                errors.append(f"{mirror + name}: {error}")
        else:
            raise OSError(f"could not download {name}; tried:\n  " + "\n  ".join(errors))
    return folder


def download_mnist(cache_dir=None, *, fashion: bool = False, mirrors=None, fetch=None) -> str:
    """Downloads MNIST (or Fashion-MNIST) into `cache_dir/mnist` (`fashion-mnist`).

    Returns the folder, ready for `read_mnist` / `load_dataset(..., data_dir=folder)`.
    """
    root = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    if fashion:
        folder = os.path.join(root, idx.FASHION_MNIST_SUBDIRS[0])
        return _download_idx_set(folder, mirrors or FASHION_MNIST_MIRRORS, FASHION_MNIST_MD5, fetch)
    folder = os.path.join(root, idx.MNIST_SUBDIRS[0])
    return _download_idx_set(folder, mirrors or MNIST_MIRRORS, MNIST_MD5, fetch)


def download_cifar10(cache_dir=None, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, fetch=None) -> str:
    """Downloads the binary CIFAR-10 archive and unpacks its data files.

    Only the expected regular files (the six `.bin` batches and `batches.meta.txt`)
    are taken from the archive, each written atomically into
    `cache_dir/cifar-10-batches-bin`; no archive path is ever used as a file name.
    Returns that folder.
    """
    root = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = os.path.join(root, CIFAR10_ARCHIVE_DIR)
    wanted = (*cifar10.TRAIN_FILES, *cifar10.TEST_FILES, cifar10.META_FILE)
    if all(os.path.isfile(os.path.join(folder, name)) for name in wanted):
        return folder
    archive = download_file(url, os.path.join(root, "cifar-10-binary.tar.gz"), md5=md5, fetch=fetch)
    found = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = os.path.basename(member.name)
            if member.isfile() and name in wanted and member.name == f"{CIFAR10_ARCHIVE_DIR}/{name}":
                # The archive's checksum already vouches for its members.
                source = tar.extractfile(member)
                atomic_write(os.path.join(folder, name), iter(lambda: source.read(_CHUNK), b""))
                found.add(name)
    missing = sorted(set(wanted) - found)
    if missing:
        raise OSError(f"{archive}: the archive lacks {', '.join(missing)}")
    return folder
