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

For inference, `load_for_inference(run_dir_or_path)` returns (params, state) alone:
no optimizer-state or rng template is needed, because the metadata records the
structure of params and state ("trees"). With `save_checkpoint(..., model=model)`
the metadata also holds the model's fingerprint (`model_fingerprint`: its layer
tree, every parameter's shape and dtype, and a hash of both), which
`load_for_inference(..., model=model)` checks, naming what differs.

The best checkpoint of a run (by whatever measure the caller keeps) is marked by
`mark_best(path)`: a small pointer file `best.json` beside the checkpoints, written
atomically, naming the checkpoint and its hash. Rotation never deletes the
checkpoint it names; `best_checkpoint(directory)` reads it, and
`load_for_inference(run_dir, which="best")` loads it.
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

from fcnn._checks import check_int, is_int

FORMAT = "fcnn-checkpoint"
VERSION = 1
BEST_FORMAT = "fcnn-best-checkpoint"
BEST_NAME = "best.json"  # the pointer to the best checkpoint, beside the checkpoints
RUN_SUBDIR = "checkpoints"  # where `fit` writes the checkpoints of a run folder
BEST_SUBDIR = "best"  # where fit's KeepBest keeps the best checkpoint, in RUN_SUBDIR
WHICH = ("latest", "best")
GROUPS = ("params", "state", "opt_state")
_NAME = re.compile(r"^ckpt_(\d{8,})\.json$")
# the arrays every checkpoint holds besides the trees, and their shapes
# (None: any shape, e.g. the key data of any PRNG implementation)
_REQUIRED = {"rng": None, "meta/step": (), "meta/position": (2,)}
_ARRAYS_NAME = re.compile(r"^ckpt_(\d{8,})\.npz$")
# what `_atomic_write` names its temporary files while writing a checkpoint
_TEMP_NAME = re.compile(r"^\.(ckpt_\d{8,}\.(npz|json)|best\.json)\..*\.tmp$")


NUMERIC_LEAVES = (
    "a checkpoint stores numeric arrays only (bool, int, float or complex leaves); keep "
    "names and other objects out of params, state and opt_state, or in extra="
)


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted, inconsistent or from another model."""


def _stem(step: int) -> str:
    return f"ckpt_{int(step):08d}"


def checkpoint_path(directory, step: int) -> str:
    """The .json path the checkpoint of `step` has in `directory`."""
    return os.path.join(os.fspath(directory), _stem(step) + ".json")


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
    return None if keep is None else check_int(keep, "keep", low=1, hint="or None (keep all)")


def _check_position(position) -> tuple[int, int]:
    ok = (isinstance(position, (tuple, list)) and len(position) == 2 and all(
        is_int(p) and p >= 0 for p in position))
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
    model=None,
) -> str:
    """Writes checkpoint `step` atomically; keeps the newest `keep`; returns the .json path.

    `rng` is a PRNG key (raw uint32 or typed); `position` is the data iterator's
    (epoch, step) of the next batch; `extra` is any JSON-serialisable dict.
    `model`, when given, is the Layer the params belong to: its `model_fingerprint`
    is stored in the metadata and checked by `load_for_inference(..., model=...)`.
    Every leaf of params, state and opt_state must be numeric (bool, int, float or
    complex). A bad argument or leaf raises ValueError / TypeError naming it before
    anything is written. Rotation keeps the newest `keep` and the one `mark_best`
    names.
    """
    step = check_int(step, "step", low=0)
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
    fingerprint = None if model is None else model_fingerprint(model, params)
    trees = {group: _skeleton(group, tree, arrays) for group, tree in (("params", params),
                                                                       ("state", state))}
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
        "trees": trees,
    }
    if fingerprint is not None:
        metadata["model"] = fingerprint
    text = json.dumps(metadata, indent=1, sort_keys=True).encode()
    _atomic_write(json_path, lambda f: f.write(text))
    if keep is not None:
        best = best_checkpoint(directory)  # the checkpoint mark_best names is kept
        for old in list_checkpoints(directory)[:-keep]:
            if old != best:
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


def _check_fields(metadata: dict, json_path: str) -> None:
    """Raises CheckpointError naming the first metadata field of the wrong type or value."""

    def bad(field, expected):
        raise CheckpointError(
            f"checkpoint metadata {json_path!r}: field {field!r} is "
            f"{metadata.get(field)!r}, expected {expected}"
        )

    if not is_int(metadata["step"]) or metadata["step"] < 0:
        bad("step", "an int >= 0")
    position = metadata["position"]
    if not (isinstance(position, list) and len(position) == 2 and all(
            is_int(p) and p >= 0 for p in position)):
        bad("position", "[epoch, step], two ints >= 0")
    if not isinstance(metadata.get("rng_typed", False), bool):
        bad("rng_typed", "true or false")
    if not isinstance(metadata.get("extra", {}), dict):
        bad("extra", "a JSON object")
    trees = metadata.get("trees", {})
    if not isinstance(trees, dict) or any(
            not isinstance(trees.get(g), (dict, type(None))) for g in ("params", "state")):
        bad("trees", 'a JSON object {"params": structure or null, "state": structure or null}')
    model = metadata.get("model")
    if model is not None and not (
            isinstance(model, dict) and isinstance(model.get("model"), str)
            and isinstance(model.get("params"), dict) and isinstance(model.get("sha256"), str)):
        bad("model", 'a model fingerprint {"model": str, "params": {...}, "sha256": str}')
    if "size" in metadata and (not is_int(metadata["size"]) or metadata["size"] < 0):
        bad("size", "the .npz size in bytes, an int >= 0")
    sha = metadata["sha256"]
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        bad("sha256", "64 lowercase hexadecimal digits")
    arrays = metadata["arrays"]
    if not isinstance(arrays, dict) or any(
        not isinstance(spec, dict)
        or not isinstance(spec.get("shape"), list)
        or not all(is_int(d) and d >= 0 for d in spec["shape"])
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


# What a mismatch in each group says: params and state belong to the model; the
# optimizer state is checked last, so a mismatch there means the model fits and only
# the optimizer (its kind, settings or trainable mask) differs.
_MISFIT = {
    "params": ("does not fit this model", "the model", "a different model"),
    "state": ("does not fit this model", "the model", "a different model"),
    "opt_state": (
        "fits the model (params and state) but not this optimizer state",
        "the optimizer state given",
        "a different optimizer (another kind, settings or trainable mask; to load the "
        "model alone, for inference, use load_for_inference)",
    ),
}


def _in_group(group: str, key: str) -> bool:
    """Whether array `key` is a leaf of `group` ("params['1']" is, "params2" is not)."""
    return key.startswith(group) and key[len(group):len(group) + 1] in ("[", ".", "")


def _restore_group(group: str, template, arrays, source: str):
    misfit, ours, other = _MISFIT[group]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for path, leaf in leaves:
        key = group + jax.tree_util.keystr(path)
        want_shape = tuple(np.shape(leaf))
        if key not in arrays:
            raise CheckpointError(
                f"checkpoint {source!r} {misfit}: {key} (shape {want_shape}) is not in the "
                f"checkpoint, which does not have it; it was saved from {other}"
            )
        array = arrays[key]
        if tuple(array.shape) != want_shape:
            raise CheckpointError(
                f"checkpoint {source!r} {misfit}: {key} has shape "
                f"{tuple(array.shape)} in the checkpoint but {want_shape} in {ours}"
            )
        want_dtype = np.dtype(getattr(leaf, "dtype", array.dtype))
        if array.dtype != want_dtype:
            raise CheckpointError(
                f"checkpoint {source!r} {misfit}: {key} has dtype "
                f"{array.dtype} in the checkpoint but {want_dtype} in {ours}"
            )
        restored.append(jnp.asarray(array))
    expected = {group + jax.tree_util.keystr(p) for p, _ in leaves}
    extra = sorted(k for k in arrays if _in_group(group, k) and k not in expected)
    if extra:
        raise CheckpointError(
            f"checkpoint {source!r} {misfit}: it holds {extra[0]} "
            f"(shape {tuple(arrays[extra[0]].shape)}), which {ours} does not have"
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
    out = Checkpoint(
        (group, _restore_group(group, template, arrays, source))
        for group, template in zip(GROUPS, (params, state, opt_state))
    )
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


class Checkpoint(dict):
    """What `load_checkpoint` returns: a plain dict, printed short.

    `repr` shows the step, the data position, the parameter count and the path, not
    the arrays: `Checkpoint(step=24, position=(4, 0), params=1,163 in 4 arrays,
    path='runs/digits/checkpoints/ckpt_00000024.json')`.
    """

    def __repr__(self) -> str:
        leaves = jax.tree_util.tree_leaves(self.get("params"))
        count = sum(int(np.size(leaf)) for leaf in leaves)
        return (f"Checkpoint(step={self.get('step')}, position={self.get('position')}, "
                f"params={count:,} in {len(leaves)} arrays, path={self.get('path')!r})")


# ---------------------------------------------------------------------------------
# Structure of params and state, and the model fingerprint


def _skeleton(group: str, tree, arrays: dict):
    """The structure of a tree of str-keyed dicts as JSON, each leaf the name of its
    array in the .npz; None for any other structure (loading it then needs a template).

    e.g. {"0": {}, "1": {"bias": "params['1']['bias']", "kernel": "params['1']['kernel']"}}
    """
    names = []

    def walk(node, prefix):
        if isinstance(node, dict):
            if not all(isinstance(k, str) for k in node):
                raise TypeError
            return {k: walk(v, f"{prefix}[{k!r}]") for k, v in node.items()}
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(node)) and node is not None:
            names.append(prefix)
            return prefix
        raise TypeError

    try:
        skeleton = walk(tree, group)
    except TypeError:
        return None
    ours = {k for k in arrays if _in_group(group, k)}
    # the names must be the ones _flatten gave the arrays (jax's key paths)
    return skeleton if set(names) == ours and len(names) == len(ours) else None


def _from_skeleton(skeleton, arrays: dict, group: str, source: str):
    used = []

    def build(node):
        if isinstance(node, dict):
            return {k: build(v) for k, v in node.items()}
        if isinstance(node, str) and node in arrays and _in_group(group, node):
            used.append(node)
            return jnp.asarray(arrays[node])
        raise CheckpointError(
            f"checkpoint {source!r}: the structure of {group} recorded in its metadata names "
            f"{node!r}, which is not one of its {group} arrays"
        )

    tree = build(skeleton)
    unused = sorted({k for k in arrays if _in_group(group, k)} - set(used))
    if unused:
        raise CheckpointError(
            f"checkpoint {source!r}: the structure of {group} recorded in its metadata does "
            f"not place the array {unused[0]!r}"
        )
    return tree


def _spec(leaf) -> str:
    return f"{np.dtype(getattr(leaf, 'dtype', np.asarray(leaf).dtype))}{list(np.shape(leaf))}"


def model_fingerprint(model, params) -> dict:
    """What identifies a model and its parameters, as JSON, with a hash of it.

    Returns {"model": repr(model) (the layer tree by name, e.g. "serial(\\n  Conv(32, 3),
    ..."), "params": {key path: "dtype[shape]"} for every parameter (e.g.
    {"['0']['kernel']": "float32[3, 3, 1, 32]"}), "count": the number of parameters,
    "sha256": the SHA-256 of the canonical JSON of "model" and "params"}. Two models
    with the same layers and parameter shapes have the same hash; arrays' values do
    not enter it.
    """
    if not (isinstance(model, tuple) and len(model) == 2 and all(map(callable, model))):
        raise TypeError(f"model={model!r}: expected a Layer(init, apply), e.g. fcnn.serial(...)")
    from fcnn.layers.base import Layer  # the repr of a bare (init, apply) pair is its Layer's

    layer = model if isinstance(model, Layer) else Layer(*model)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    described = {jax.tree_util.keystr(path): _spec(leaf) for path, leaf in leaves}
    core = {"model": repr(layer), "params": described}
    digest = hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()
    count = sum(int(np.size(leaf)) for _, leaf in leaves)
    return dict(core, count=count, sha256=digest)


def _fingerprint_difference(saved: dict, given: dict, *, params_given: bool) -> str | None:
    """What differs between two fingerprints, in words, or None if they agree."""
    if saved["model"] != given["model"]:
        ours, theirs = saved["model"].splitlines(), given["model"].splitlines()
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if a != b:
                a, b = a.strip().rstrip(","), b.strip().rstrip(",")
                return (f"the model differs: line {i + 1} of its layer tree is {a!r} in the "
                        f"checkpoint but {b!r} in the model given")
        longer, which = (ours, "checkpoint's") if len(ours) > len(theirs) else (theirs, "given")
        return (f"the model differs: the {which} model has more layers, from "
                f"{longer[min(len(ours), len(theirs))].strip()!r} on")
    if not params_given:
        return None
    a, b = saved["params"], given["params"]
    for key in sorted(set(a) | set(b)):
        if key not in b:
            return f"the parameters differ: params{key} ({a[key]}) is in the checkpoint only"
        if key not in a:
            return f"the parameters differ: params{key} ({b[key]}) is in the params given only"
        if a[key] != b[key]:
            return (f"the parameters differ: params{key} is {a[key]} in the checkpoint but "
                    f"{b[key]} in the params given")
    return None


# ---------------------------------------------------------------------------------
# The best checkpoint, and finding a checkpoint in a run folder


def mark_best(path, *, info: dict | None = None) -> str:
    """Marks the checkpoint at `path` (.json or .npz) as its directory's best one.

    Writes `best.json` beside it atomically: {"format", "checkpoint" (its file name),
    "step", "sha256" (of its arrays), "info" (any JSON dict, e.g. {"eval_accuracy":
    0.98})}. From then on rotation keeps that checkpoint, and `best_checkpoint` and
    `load_for_inference(run_dir, which="best")` find it (unless the folder has a
    `best/` sub-folder of fit's KeepBest, which comes first). Returns the pointer's path.
    """
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info={reprlib.repr(info)}: expected a dict of JSON values, or None")
    try:
        json.dumps(info or {})
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"info={reprlib.repr(info)}: expected a dict of JSON values ({err})"
        ) from None
    metadata = read_metadata(path)
    if not os.path.exists(metadata["npz_path"]):
        raise CheckpointError(f"checkpoint arrays {metadata['npz_path']!r} do not exist")
    pointer = {
        "format": BEST_FORMAT,
        "version": VERSION,
        "checkpoint": os.path.basename(metadata["json_path"]),
        "step": metadata["step"],
        "sha256": metadata["sha256"],
        "info": info or {},
    }
    text = json.dumps(pointer, indent=1, sort_keys=True).encode()
    best = os.path.join(os.path.dirname(metadata["json_path"]), BEST_NAME)
    _atomic_write(best, lambda f: f.write(text))
    return best


def _read_best(directory: str) -> str | None:
    """The .json path `best.json` in `directory` names, or None if there is none; a
    pointer that is unreadable or names a missing or replaced checkpoint raises."""
    pointer_path = os.path.join(directory, BEST_NAME)
    try:
        with open(pointer_path, "rb") as f:
            pointer = json.loads(f.read().decode())
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{pointer_path!r} is corrupted ({err})") from None
    if not isinstance(pointer, dict):
        pointer = {}
    name = pointer.get("checkpoint")
    if pointer.get("format") != BEST_FORMAT or not isinstance(name, str) or not _NAME.match(name):
        raise CheckpointError(
            f"{pointer_path!r} is not an fcnn best-checkpoint pointer (expected format "
            f"{BEST_FORMAT!r} naming a ckpt_*.json file)"
        )
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise CheckpointError(
            f"{pointer_path!r} names {name!r}, which does not exist (deleted by hand, or by "
            "a fresh run into the same folder)"
        )
    if read_metadata(path)["sha256"] != pointer.get("sha256"):
        raise CheckpointError(
            f"{pointer_path!r} names {name!r}, but that file now holds another checkpoint "
            "(its arrays' hash differs from the one marked best): the mark is stale"
        )
    return path


def best_checkpoint(directory) -> str | None:
    """The .json path of the best checkpoint of a checkpoint folder: the newest in its
    `best/` sub-folder (fit's KeepBest), else the one `mark_best` marked; or None (also
    when the mark is unreadable or stale: `find_checkpoint(..., "best")` says why)."""
    directory = os.fspath(directory)
    kept = latest_checkpoint(os.path.join(directory, BEST_SUBDIR))
    if kept is not None:
        return kept
    try:
        return _read_best(directory)
    except CheckpointError:
        return None


def find_checkpoint(path, which: str = "latest") -> str:
    """The .json path of a checkpoint from a checkpoint file, a checkpoint folder, or a
    run folder written by `fit` (its `checkpoints/` sub-folder).

    For a folder, `which` is "latest" (the newest step) or "best": the checkpoint in
    its `best/` sub-folder (where `fit`'s KeepBest callback keeps it), else the one
    `mark_best` marked; for a file it must be "latest" (the file itself).
    """
    if which not in WHICH:
        raise ValueError(f"which={which!r}: expected one of {WHICH}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path={reprlib.repr(path)}: expected a checkpoint .json / .npz path, a checkpoint "
            "folder or a run folder (str or os.PathLike)"
        )
    path = os.fspath(path)
    if not os.path.isdir(path):
        if which != "latest":
            raise ValueError(
                f"which={which!r} picks a checkpoint in a folder, but {path!r} is a file (or "
                "missing): pass the run folder, or which='latest' for this file"
            )
        return _json_path(path)
    sub = os.path.join(path, RUN_SUBDIR)
    directory = sub if os.path.isdir(sub) and not list_checkpoints(path) else path
    if which == "best":
        best = latest_checkpoint(os.path.join(directory, BEST_SUBDIR)) or _read_best(directory)
        if best is None:
            raise CheckpointError(
                f"no best checkpoint in {directory!r}: neither a {BEST_SUBDIR}/ sub-folder "
                f"(fit with the KeepBest callback) nor a {BEST_NAME} (mark_best(path)); or "
                "pass which='latest'"
            )
        return best
    latest = latest_checkpoint(directory)
    if latest is None:
        raise CheckpointError(
            f"no checkpoint (ckpt_*.json) in {directory!r}"
            + ("" if directory == sub else f" (nor a {RUN_SUBDIR}/ sub-folder of checkpoints)")
        )
    return latest


def load_for_inference(path_or_run_dir, model=None, params_template=None, *,
                       state_template=None, which: str = "latest") -> tuple:
    """(params, state) of a checkpoint, for inference; no optimizer or rng needed.

    Args:
      path_or_run_dir: a checkpoint (.json or .npz), a folder of checkpoints, or a run
        folder written by `fit` (its `checkpoints/`).
      model: the Layer the params are for. When the checkpoint holds a fingerprint
        (`save_checkpoint(..., model=...)`), it must match, else CheckpointError
        naming what differs (a layer, or a parameter's shape or dtype). Checkpoints
        saved without a model are loaded unchecked.
      params_template, state_template: trees (arrays or `jax.ShapeDtypeStruct`) the
        arrays must fit, checked as `load_checkpoint` does; by default the structure
        recorded in the metadata (checkpoints of older fcnn versions need them).
      which: in a folder, "latest" or "best" (see `find_checkpoint`).

    The arrays are checked (size, hash, names, shapes, dtypes) as by `load_checkpoint`.
    """
    json_path = find_checkpoint(path_or_run_dir, which)
    metadata = read_metadata(json_path)
    source = metadata["json_path"]
    saved = metadata.get("model")
    if model is not None and saved is not None:
        given = model_fingerprint(model, params_template if params_template is not None else {})
        what = _fingerprint_difference(saved, given, params_given=params_template is not None)
        if what is not None:
            raise CheckpointError(
                f"checkpoint {source!r} was saved from another model than the one given: "
                f"{what} (fingerprints {saved['sha256'][:12]} saved, {given['sha256'][:12]} "
                "given)"
            )
    elif model is not None:
        model_fingerprint(model, {})  # at least a Layer
    arrays = _read_arrays(metadata)
    out = []
    for group, template in (("params", params_template), ("state", state_template)):
        if template is not None:
            out.append(_restore_group(group, template, arrays, source))
            continue
        skeleton = metadata.get("trees", {}).get(group)
        if skeleton is None:
            raise CheckpointError(
                f"checkpoint {source!r} records no structure of its {group} (written by an "
                f"older fcnn, or {group} is not a tree of dicts): pass {group}_template=, e.g. "
                f"the {group} of model.init(rng, input_shape)"
            )
        out.append(_from_skeleton(skeleton, arrays, group, source))
    return tuple(out)
