"""Checkpoints: params, state, optimizer state, rng, step and data position on disk.

A checkpoint is two files in one directory:

    ckpt_00001200.npz    the arrays, one entry per leaf, named by its key path
                         (e.g. "params['3']['kernel']", "opt_state[0].mu['3']['kernel']"),
                         plus "rng" and copies of the step and data position
    ckpt_00001200.json   the metadata: step, data position (epoch, step), every
                         array's shape and dtype, the size and SHA-256 of the .npz,
                         and any extra fields (seed, batch size, ...)

Both are written to a temporary file in the same directory, flushed to disk and
renamed (`os.replace`, atomic on POSIX), the arrays first and the metadata last:
a checkpoint exists once its .json does, so a crash at any point leaves the
previous checkpoint as the latest valid one. Only the newest `keep` are kept.
What a crash can leave behind (a temporary file, arrays without metadata) is never
listed as a checkpoint; `remove_partial` deletes it.

Loading never unpickles (`np.load(..., allow_pickle=False)`) and checks, each with
an error naming the file: that every metadata field has its type, that the metadata
belongs to its file name (step) and names its own .npz, that the .npz is intact
(size, then hash), that the metadata agrees with the arrays (names, shapes, dtypes,
step and position), and that the arrays fit the model they are loaded into (naming
the first parameter path whose shape differs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import reprlib
import tempfile
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "fcnn-checkpoint"
VERSION = 1
GROUPS = ("params", "state", "opt_state")
_NAME = re.compile(r"^ckpt_(\d{8,})\.json$")
# the arrays every checkpoint holds besides the trees, and their shapes
# (None: any shape, e.g. the key data of any PRNG implementation)
_REQUIRED = {"rng": None, "meta/step": (), "meta/position": (2,)}
_ARRAYS_NAME = re.compile(r"^ckpt_(\d{8,})\.npz$")
# what `_atomic_write` names its temporary files while writing a checkpoint
_TEMP_NAME = re.compile(r"^\.ckpt_\d{8,}\.(npz|json)\..*\.tmp$")


NUMERIC_LEAVES = (
    "a checkpoint stores numeric arrays only (bool, int, float or complex leaves); keep "
    "names and other objects out of params, state and opt_state, or in extra="
)


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted, inconsistent or from another model."""


def _stem(step: int) -> str:
    return f"ckpt_{int(step):08d}"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: str, write) -> None:
    """Writes via `write(fileobj)` to a temporary file, fsyncs, renames onto `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _flatten(group: str, tree) -> dict[str, np.ndarray]:
    """One numeric array per leaf, named by its key path; refuses any other leaf."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = group + jax.tree_util.keystr(path)
        if _is_key(leaf):
            raise TypeError(
                f"{name} is a typed PRNG key ({leaf.dtype}): store jax.random.key_data of "
                "it (raw uint32), or pass the run's key as rng="
            )
        try:
            array = np.asarray(leaf)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} of type {type(leaf).__name__} cannot be stored: {NUMERIC_LEAVES} ({err})"
            ) from None
        # strings, bytes and objects would need pickle, which load_checkpoint never runs
        if array.dtype.kind in "OSU":
            raise TypeError(f"{name}={reprlib.repr(leaf)} (dtype {array.dtype}): {NUMERIC_LEAVES}")
        out[name] = array
    return out


def check_keep(keep):
    """`keep` as save_checkpoint takes it: a positive int, or None to keep every checkpoint."""
    if keep is not None and (not isinstance(keep, (int, np.integer)) or isinstance(keep, bool)
                             or keep < 1):
        raise ValueError(f"keep={keep!r}: expected a positive int or None (keep all)")
    return None if keep is None else int(keep)


def _check_position(position) -> tuple[int, int]:
    ok = (isinstance(position, (tuple, list)) and len(position) == 2 and all(
        isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in position))
    if not ok:
        raise ValueError(
            f"position={position!r}: expected (epoch, step), two ints >= 0: the data "
            "iterator's position of the next batch (BatchIterator.position)"
        )
    return int(position[0]), int(position[1])


def _rng_data(rng) -> tuple[np.ndarray, bool]:
    """(key data as an integer array, whether `rng` was a typed key)."""
    if _is_key(rng):
        return np.asarray(jax.random.key_data(rng)), True
    if isinstance(rng, (jax.Array, np.ndarray)) and jnp.issubdtype(rng.dtype, jnp.unsignedinteger):
        return np.asarray(rng), False
    got = (f"rng={reprlib.repr(rng)}" if not isinstance(rng, (jax.Array, np.ndarray))
           else f"rng of dtype {rng.dtype} and shape {tuple(rng.shape)}")
    raise TypeError(
        f"{got}: expected a PRNG key, typed (jax.random.key) or raw uint32 key data "
        "(jax.random.PRNGKey)"
    )


def save_checkpoint(
    directory,
    step: int,
    *,
    params,
    state,
    opt_state,
    rng,
    position=(0, 0),
    extra: dict | None = None,
    keep: int | None = 3,
) -> str:
    """Writes checkpoint `step` atomically; keeps the newest `keep`; returns the .json path.

    `rng` is a PRNG key (raw uint32 or typed); `position` is the data iterator's
    (epoch, step) of the next batch; `extra` is any JSON-serialisable dict.
    Every leaf of params, state and opt_state must be numeric (bool, int, float or
    complex). A bad argument or leaf raises ValueError / TypeError naming it before
    anything is written.
    """
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step={step!r}: expected an int >= 0")
    keep = check_keep(keep)
    position = _check_position(position)
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra={reprlib.repr(extra)}: expected a dict of JSON values, or None")
    try:
        json.dumps(extra or {})
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"extra={reprlib.repr(extra)}: expected a dict of JSON values ({err})"
        ) from None
    arrays = {}
    for group, tree in zip(GROUPS, (params, state, opt_state)):
        arrays.update(_flatten(group, tree))
    arrays["rng"], typed_key = _rng_data(rng)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    arrays["meta/step"] = np.asarray(int(step), np.int64)
    arrays["meta/position"] = np.asarray(position, np.int64)
    stem = _stem(step)
    npz_path = os.path.join(directory, stem + ".npz")
    json_path = os.path.join(directory, stem + ".json")
    _atomic_write(npz_path, lambda f: np.savez(f, **arrays))
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "position": list(position),
        "rng_typed": typed_key,
        "npz": stem + ".npz",
        "size": os.path.getsize(npz_path),
        "sha256": _sha256(npz_path),
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "extra": extra or {},
    }
    text = json.dumps(metadata, indent=1, sort_keys=True).encode()
    _atomic_write(json_path, lambda f: f.write(text))
    if keep is not None:
        for old in list_checkpoints(directory)[:-keep]:
            _remove(old)
    return json_path


def _remove(json_path: str) -> None:
    # metadata first: without it the arrays are no longer a checkpoint
    npz_path = json_path[: -len(".json")] + ".npz"
    for path in (json_path, npz_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_partial(directory) -> list[str]:
    """Deletes what an interrupted write left in `directory`; returns the paths deleted.

    That is temporary files (`.ckpt_*.tmp`) and arrays (`ckpt_*.npz`) without their
    metadata: a process killed between the two renames of `save_checkpoint`, or
    between the two deletions of a rotation. Neither is ever listed as a checkpoint.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    names = set(os.listdir(directory))
    removed = []
    for name in sorted(names):
        match = _ARRAYS_NAME.match(name)
        orphan = match is not None and name[: -len(".npz")] + ".json" not in names
        if orphan or _TEMP_NAME.match(name):
            path = os.path.join(directory, name)
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def list_checkpoints(directory) -> list[str]:
    """The .json paths of the checkpoints in `directory`, oldest first (by step)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory) -> str | None:
    """The .json path of the newest checkpoint in `directory`, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def _json_path(path) -> str:
    path = os.fspath(path)
    if path.endswith(".npz"):
        path = path[: -len(".npz")] + ".json"
    if os.path.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint (ckpt_*.json) in directory {path!r}")
        path = latest
    return path


def read_metadata(path) -> dict:
    """The metadata of a checkpoint (.json or .npz path), validated for form."""
    json_path = _json_path(path)
    try:
        with open(json_path, "rb") as f:
            metadata = json.loads(f.read().decode())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint metadata {json_path!r} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"checkpoint metadata {json_path!r} is corrupted or truncated ({err}); an older "
            "checkpoint in the same directory may still be usable"
        ) from None
    required = ("format", "version", "step", "position", "npz", "sha256", "arrays")
    if not isinstance(metadata, dict) or any(k not in metadata for k in required) or (
        metadata.get("format") != FORMAT
    ):
        raise CheckpointError(
            f"{json_path!r} is not an fcnn checkpoint (expected format {FORMAT!r} with "
            f"fields {required})"
        )
    if metadata["version"] != VERSION:
        raise CheckpointError(
            f"{json_path!r}: checkpoint version {metadata['version']!r} is not supported "
            f"(this fcnn reads version {VERSION})"
        )
    _check_fields(metadata, json_path)
    metadata["json_path"] = json_path
    metadata["npz_path"] = os.path.join(os.path.dirname(json_path), metadata["npz"])
    return metadata


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_fields(metadata: dict, json_path: str) -> None:
    """Raises CheckpointError naming the first metadata field of the wrong type or value."""

    def bad(field, expected):
        raise CheckpointError(
            f"checkpoint metadata {json_path!r}: field {field!r} is "
            f"{metadata.get(field)!r}, expected {expected}"
        )

    if not _is_int(metadata["step"]) or metadata["step"] < 0:
        bad("step", "an int >= 0")
    position = metadata["position"]
    if not (isinstance(position, list) and len(position) == 2 and all(
            _is_int(p) and p >= 0 for p in position)):
        bad("position", "[epoch, step], two ints >= 0")
    if not isinstance(metadata.get("rng_typed", False), bool):
        bad("rng_typed", "true or false")
    if not isinstance(metadata.get("extra", {}), dict):
        bad("extra", "a JSON object")
    if "size" in metadata and (not _is_int(metadata["size"]) or metadata["size"] < 0):
        bad("size", "the .npz size in bytes, an int >= 0")
    sha = metadata["sha256"]
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        bad("sha256", "64 lowercase hexadecimal digits")
    arrays = metadata["arrays"]
    if not isinstance(arrays, dict) or any(
        not isinstance(spec, dict)
        or not isinstance(spec.get("shape"), list)
        or not all(_is_int(d) and d >= 0 for d in spec["shape"])
        or not isinstance(spec.get("dtype"), str)
        for spec in arrays.values()
    ):
        bad("arrays", 'a JSON object {name: {"shape": [ints], "dtype": str}}')
    # the arrays must be this checkpoint's own, in the same directory
    stem = os.path.basename(json_path)[: -len(".json")] if json_path.endswith(".json") else None
    if stem is not None and metadata["npz"] != stem + ".npz":
        bad("npz", f"{stem + '.npz'!r}, the arrays file beside it")


def _read_arrays(metadata) -> dict[str, np.ndarray]:
    npz_path = metadata["npz_path"]
    if not os.path.exists(npz_path):
        raise CheckpointError(f"checkpoint arrays {npz_path!r} do not exist")
    if "size" in metadata and os.path.getsize(npz_path) != metadata["size"]:
        raise CheckpointError(
            f"checkpoint file {npz_path!r} is corrupted or truncated: it holds "
            f"{os.path.getsize(npz_path)} bytes but {metadata['json_path']!r} records "
            f"{metadata['size']}; an older checkpoint in the same directory may still be usable"
        )
    if _sha256(npz_path) != metadata["sha256"]:
        raise CheckpointError(
            f"checkpoint file {npz_path!r} is corrupted or truncated: its SHA-256 does not "
            f"match the one recorded in {metadata['json_path']!r}; an older checkpoint in the "
            "same directory may still be usable"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise CheckpointError(f"checkpoint file {npz_path!r} cannot be read: {err}") from None
    listed = metadata["arrays"]
    if set(listed) != set(arrays):
        missing = sorted(set(listed) - set(arrays))
        unlisted = sorted(set(arrays) - set(listed))
        raise CheckpointError(
            f"checkpoint {metadata['json_path']!r}: the metadata disagrees with its arrays "
            f"(listed but absent: {missing[:3]}, present but unlisted: {unlisted[:3]})"
        )
    for required, shape in _REQUIRED.items():
        array = arrays.get(required)
        if array is None or (shape is not None and array.shape != shape) or not np.issubdtype(
                array.dtype, np.integer):
            raise CheckpointError(
                f"checkpoint {metadata['json_path']!r} has no integer array {required!r}"
                + ("" if shape is None else f" of shape {shape}") + ", which every checkpoint holds"
            )
    strays = sorted(k for k in arrays if k not in _REQUIRED and not k.startswith(GROUPS))
    if strays:
        raise CheckpointError(
            f"checkpoint {metadata['json_path']!r} holds an array {strays[0]!r} that belongs "
            f"to none of {GROUPS} and is not one of {tuple(_REQUIRED)}"
        )
    for key, spec in listed.items():
        array = arrays[key]
        if list(array.shape) != list(spec.get("shape", [])) or str(array.dtype) != spec.get("dtype"):
            raise CheckpointError(
                f"checkpoint {metadata['json_path']!r}: the metadata disagrees with its arrays: "
                f"{key} is {array.dtype}{list(array.shape)} in the .npz but "
                f"{spec.get('dtype')}{spec.get('shape')} in the metadata"
            )
    if int(arrays["meta/step"]) != metadata["step"] or [
        int(p) for p in arrays["meta/position"]
    ] != list(metadata["position"]):
        raise CheckpointError(
            f"checkpoint {metadata['json_path']!r}: the metadata disagrees with its arrays: "
            f"step {metadata['step']} / position {metadata['position']} in the metadata, "
            f"step {int(arrays['meta/step'])} / position {arrays['meta/position'].tolist()} "
            "in the .npz"
        )
    match = _NAME.match(os.path.basename(metadata["json_path"]))
    if match and int(match.group(1)) != metadata["step"]:
        raise CheckpointError(
            f"checkpoint {metadata['json_path']!r} holds step {metadata['step']} (metadata "
            f"and arrays agree), but its file name is that of step {int(match.group(1))}"
        )
    return arrays


def _restore_group(group: str, template, arrays, source: str):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for path, leaf in leaves:
        key = group + jax.tree_util.keystr(path)
        want_shape = tuple(np.shape(leaf))
        if key not in arrays:
            raise CheckpointError(
                f"checkpoint {source!r} does not fit this model: {key} (shape {want_shape}) "
                "is not in the checkpoint; it was saved from a different model or optimizer"
            )
        array = arrays[key]
        if tuple(array.shape) != want_shape:
            raise CheckpointError(
                f"checkpoint {source!r} does not fit this model: {key} has shape "
                f"{tuple(array.shape)} in the checkpoint but {want_shape} in the model"
            )
        want_dtype = np.dtype(getattr(leaf, "dtype", array.dtype))
        if array.dtype != want_dtype:
            raise CheckpointError(
                f"checkpoint {source!r} does not fit this model: {key} has dtype "
                f"{array.dtype} in the checkpoint but {want_dtype} in the model"
            )
        restored.append(jnp.asarray(array))
    expected = {group + jax.tree_util.keystr(p) for p, _ in leaves}
    extra = sorted(k for k in arrays if k.startswith(group) and k not in expected and (
        k[len(group):len(group) + 1] in ("[", ".", "")))
    if extra:
        raise CheckpointError(
            f"checkpoint {source!r} does not fit this model: it holds {extra[0]} "
            f"(shape {tuple(arrays[extra[0]].shape)}), which this model does not have"
        )
    return jax.tree_util.tree_unflatten(treedef, restored)


def load_checkpoint(path, *, params, state, opt_state) -> dict:
    """Loads a checkpoint into the structure of the given (template) trees.

    `path` is a .json or .npz file of the checkpoint, or a directory (its latest).
    `params`, `state`, `opt_state` are templates: trees of arrays or
    `jax.ShapeDtypeStruct` of the model being restored (e.g. freshly initialised).

    Returns a dict with "params", "state", "opt_state", "rng", "step", "position"
    ((epoch, step) of the next batch), "extra", and "path" (the .json).
    Raises `CheckpointError` naming the file when it is missing, corrupted or
    truncated, when its metadata disagrees with its arrays, or when it does not fit
    the templates (naming the first path whose shape differs).
    """
    metadata = read_metadata(path)
    arrays = _read_arrays(metadata)
    source = metadata["json_path"]
    out = {
        group: _restore_group(group, template, arrays, source)
        for group, template in zip(GROUPS, (params, state, opt_state))
    }
    rng = jnp.asarray(arrays["rng"])
    if metadata.get("rng_typed"):
        rng = jax.random.wrap_key_data(rng)
    out.update(
        rng=rng,
        step=int(metadata["step"]),
        position=tuple(int(p) for p in metadata["position"]),
        extra=metadata.get("extra", {}),
        path=source,
    )
    return out
