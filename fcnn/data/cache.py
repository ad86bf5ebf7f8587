"""A cache of decoded arrays: one .npz per source, keyed by what it was decoded from.

Where: the `cache_dir` argument when given, else $FCNN_CACHE_DIR, else
~/.cache/fcnn; `cache_dir=False` turns the cache off. The cache never lives in the
data folder.

A cache file holds the arrays and the key they were made under (the source's path,
size, modification time, and the reader's options, as JSON). It is written to a
temporary file in the same folder and renamed onto its name (`os.replace` is atomic),
so a reader sees either no file or a whole one. It is read with
`np.load(..., allow_pickle=False)`, and a file that cannot be read, whose CRCs fail,
or whose key differs from the one asked for is ignored (and then rewritten): a cache
file is never trusted beyond what it proves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

CACHE_ENV = "FCNN_CACHE_DIR"
KEY_ENTRY = "cache_key"
_SAFE_STEM = re.compile(r"[^A-Za-z0-9._-]+")


def default_cache_dir() -> str:
    """$FCNN_CACHE_DIR, else ~/.cache/fcnn."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fcnn")


def resolve_cache_dir(cache_dir) -> str | None:
    """The cache folder to use: `cache_dir`, the default for None, no cache for False."""
    if cache_dir is False:
        return None
    if cache_dir is None:
        return default_cache_dir()
    if isinstance(cache_dir, (str, os.PathLike)) and not isinstance(cache_dir, bool):
        path = os.fspath(cache_dir)
        if isinstance(path, str) and path:
            return path
    raise TypeError(
        f"cache_dir={cache_dir!r}: expected a directory path, None (the default: "
        f"${CACHE_ENV}, else ~/.cache/fcnn) or False (no cache)"
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_entry(cache_dir: str, namespace: str, stem: str, identity: dict,
                fingerprint: dict) -> tuple[str, str]:
    """(path of the cache file, its key) for a source named by `identity` (what is
    read, with which options) in the state `fingerprint` (its size, mtime, ...).

    The file name carries a hash of each part, so files of one identity differ only
    in their last part, and `save_arrays` can remove the stale ones.
    """
    key = json.dumps({"identity": identity, "fingerprint": fingerprint}, sort_keys=True)
    prefix = _identity_prefix(stem, identity)
    return os.path.join(cache_dir, namespace, f"{prefix}{_digest(key)[:16]}.npz"), key


def _identity_prefix(stem: str, identity: dict) -> str:
    safe = _SAFE_STEM.sub("_", stem)[:60] or "data"
    return f"{safe}-{_digest(json.dumps(identity, sort_keys=True))[:16]}-"


def load_arrays(path: str, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of the cache file `path` if it exists, reads whole and holds `key`;
    else None (a missing, truncated, corrupt or foreign file is not an error)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if KEY_ENTRY not in npz.files:
                return None
            stored = npz[KEY_ENTRY]
            if stored.shape != () or stored.dtype.kind != "U" or str(stored[()]) != key:
                return None
            return {name: npz[name] for name in npz.files if name != KEY_ENTRY}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def save_arrays(path: str, key: str, arrays: dict[str, np.ndarray]) -> bool:
    """Writes the arrays and `key` to `path` atomically; removes stale files of the
    same identity. Returns False, with a warning, when the cache cannot be written
    (the arrays were read all the same)."""
    folder = os.path.dirname(path)
    temporary = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".part")
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **arrays, **{KEY_ENTRY: np.array(key)})
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        warnings.warn(f"could not write the cache file {path!r} ({error}); the data were "
                      "read, but will be decoded again next time", stacklevel=3)
        return False
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)
    name = os.path.basename(path)
    prefix = name[: name.rindex("-") + 1]
    for other in os.listdir(folder):
        if other != name and other.startswith(prefix) and other.endswith(".npz"):
            try:
                os.remove(os.path.join(folder, other))
            except OSError:
                pass
    return True
