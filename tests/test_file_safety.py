"""Files cannot run code or exhaust memory.

1. No source file in fcnn/, experiments/ or benchmarks/ can turn a file into code: an
   AST walk (comments and docstrings do not count) refuses pickle-like modules,
   eval/exec, np.load(allow_pickle=True), torch.load without weights_only=True and
   yaml.load without a safe loader; the checker is shown to flag each form.
2. IDX and CIFAR-10 files that claim more data than they hold are rejected before
   any large allocation (tracemalloc, and an address-space limit in a subprocess).
3. A checkpoint whose metadata disagrees with its arrays, field by field, is
   rejected with a CheckpointError naming what disagrees.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import fcnn
from fcnn.data import DataFormatError, read_cifar10, read_idx
from fcnn.data.cifar10 import RECORD_BYTES
from fcnn.train import CheckpointError, init_opt_state, load_checkpoint, make_optimizer
from fcnn.train import save_checkpoint
from tests.memory import peak_of_failure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ("fcnn", "experiments", "benchmarks")

# 1. Source that can turn a file into code ------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve",
                     "marshal"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node, aliases=None) -> str:
    """'numpy.load' for the expression np.load after `import numpy as np` (the first
    name resolved through `aliases`), '' for anything that is not a dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append((aliases or {}).get(node.id, node.id))
        return ".".join(reversed(parts))
    return ""


def _aliases(tree) -> dict[str, str]:
    """Local name -> what it names, from every import in the file (scopes ignored)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def forbidden_constructs(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, what) for every construct through which a file read could run code."""
    found = []
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.level == 0 and node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, aliases)
            last = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
                found.append((node.lineno, f"{name}(...)"))
            elif name in ("__import__", "importlib.import_module") and node.args and isinstance(
                    node.args[0], ast.Constant) and str(node.args[0].value).split(".")[0] in (
                    FORBIDDEN_MODULES):
                found.append((node.lineno, f"{name}({node.args[0].value!r})"))
            elif name.split(".")[0] in FORBIDDEN_MODULES and last in ("load", "loads"):
                found.append((node.lineno, f"{name}(...)"))
            elif last == "read_pickle":
                found.append((node.lineno, f"{name}(...)"))
            allow = _keyword(node, "allow_pickle")
            if allow is not None and not _is_constant(allow, False):
                shown = f"{name or 'call'}(..., allow_pickle={ast.unparse(allow)})"
                found.append((node.lineno, shown))
            if name == "torch.load" and not _is_constant(_keyword(node, "weights_only"), True):
                found.append((node.lineno, "torch.load(...) without weights_only=True"))
            if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.full_load_all",
                        "yaml.unsafe_load_all"):
                found.append((node.lineno, f"{name}(...)"))
            if name in ("yaml.load", "yaml.load_all"):
                loader = _keyword(node, "Loader")
                if loader is None and len(node.args) > 1:
                    loader = node.args[1]
                if loader is None or _dotted(loader, aliases).rsplit(".", 1)[-1] not in (
                        SAFE_YAML_LOADERS):
                    found.append((node.lineno, f"{name}(...) without a safe Loader"))
    return found


def _sources():
    for top in SCANNED:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def test_no_source_can_turn_a_file_into_code():
    paths = list(_sources())
    assert len(paths) > 40
    assert any(p.endswith(os.path.join("train", "checkpoint.py")) for p in paths)
    problems = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(path, ROOT)
        problems += [f"{rel}:{line}: {what}" for line, what in forbidden_constructs(text, rel)]
        if "allow_pickle=True" in text:  # not even in a comment or a docstring
            problems.append(f"{rel}: the text 'allow_pickle=True'")
    assert not problems, "\n".join(problems)


# Each forbidden form, and its safe neighbour that must pass.
FORBIDDEN_SNIPPETS = [
    ("import pickle", "import pickle"),
    ("import cPickle as p", "import cPickle"),
    ("import dill", "import dill"),
    ("import joblib.numpy_pickle", "import joblib.numpy_pickle"),
    ("import shelve", "import shelve"),
    ("import marshal", "import marshal"),
    ("from pickle import loads", "from pickle import ..."),
    ("from joblib import load", "from joblib import ..."),
    ("x = eval(text)", "eval(...)"),
    ("exec(code, {})", "exec(...)"),
    ("builtins.eval('1')", "builtins.eval(...)"),
    ("m = __import__('pickle')", "__import__('pickle')"),
    ("m = importlib.import_module('marshal')", "importlib.import_module('marshal')"),
    ("obj = pickle.load(f)", "pickle.load(...)"),
    ("obj = pickle.loads(b)", "pickle.loads(...)"),
    ("a = np.load(path, allow_pickle=True)", "np.load(..., allow_pickle=True)"),
    ("a = numpy.load(path, allow_pickle=flag)", "numpy.load(..., allow_pickle=flag)"),
    ("a = jnp.load(path, mmap_mode='r', allow_pickle=True)", "jnp.load(..., allow_pickle=True)"),
    ("from numpy import load; a = load(path, allow_pickle=True)",
     "numpy.load(..., allow_pickle=True)"),
    ("df = pd.read_pickle(path)", "pd.read_pickle(...)"),
    ("s = torch.load(path)", "torch.load(...) without weights_only=True"),
    ("s = torch.load(path, weights_only=False)", "torch.load(...) without weights_only=True"),
    ("import torch as th; s = th.load(path)", "torch.load(...) without weights_only=True"),
    ("from torch import load; s = load(path)", "torch.load(...) without weights_only=True"),
    ("from yaml import load as read; c = read(f)", "yaml.load(...) without a safe Loader"),
    ("c = yaml.load(f)", "yaml.load(...) without a safe Loader"),
    ("c = yaml.load(f, Loader=yaml.Loader)", "yaml.load(...) without a safe Loader"),
    ("c = yaml.load(f, yaml.UnsafeLoader)", "yaml.load(...) without a safe Loader"),
    ("c = yaml.unsafe_load(f)", "yaml.unsafe_load(...)"),
    ("c = yaml.full_load(f)", "yaml.full_load(...)"),
]
ALLOWED_SNIPPETS = [
    '"""Never pickle.load(f), eval(s) or np.load(p, allow_pickle=True)."""',
    "# eval(text) and import pickle in a comment",
    "a = np.load(path, allow_pickle=False)",
    "a = np.load(path)",
    "s = torch.load(path, weights_only=True)",
    "c = yaml.load(f, Loader=yaml.SafeLoader)",
    "c = yaml.load(f, yaml.CSafeLoader)",
    "c = yaml.safe_load(f)",
    "model.eval()",
    "r = self.evaluate(x)",
    "shape = jax.eval_shape(f, x)",
    "import pickletools_docs_example as ok",
    "import numpy as np; a = np.load(path, allow_pickle=False)",
    "from yaml import safe_load; c = safe_load(f)",
    "def eval_(x): return x",
    "from fcnn.train import checkpoint",
]


@pytest.mark.parametrize("snippet, what", FORBIDDEN_SNIPPETS)
def test_the_checker_flags_every_forbidden_form(snippet, what):
    source = textwrap.dedent(f"""
        def f(path, f, b, text, code, flag):
            {snippet}
        """)
    assert forbidden_constructs(source) == [(3, what)]


@pytest.mark.parametrize("snippet", ALLOWED_SNIPPETS)
def test_the_checker_lets_safe_forms_through(snippet):
    assert forbidden_constructs(snippet) == []


# 2. Headers that claim more than the file holds --------------------------------

SMALL = 8 << 20  # bytes (the gzip reader reads in 4 MiB chunks); every claim is far above


def _peak(fn) -> tuple[int, str]:
    return peak_of_failure(fn, DataFormatError)


def _idx_header(type_code: int, dims) -> bytes:
    return struct.pack(">I", (type_code << 8) | len(dims)) + b"".join(
        struct.pack(">I", d) for d in dims)


def _write(path, data: bytes, gz: bool = False) -> str:
    path = str(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)
    return path


IDX_LIES = {
    # name: (element type, declared sizes, bytes actually following the header)
    "1e9 images of 28x28, 100 bytes": (0x08, (10**9, 28, 28), 100),
    "1e9 labels, 100 bytes": (0x08, (10**9,), 100),
    "float64 cube of 2^32-1 per side, 0 bytes": (0x0E, (2**32 - 1,) * 3, 0),
    "int32 images, one element short": (0x0C, (3, 28, 28), 3 * 28 * 28 * 4 - 4),
    "4-d uint8 claiming 2^40 elements, 1 KiB": (0x08, (2**10, 2**10, 2**10, 2**10), 1024),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", list(IDX_LIES))
def test_idx_header_claiming_more_than_the_file_holds(tmp_path, case, gz):
    type_code, dims, held = IDX_LIES[case]
    path = _write(tmp_path / "lying.idx", _idx_header(type_code, dims) + bytes(held), gz)
    peak, message = _peak(lambda: read_idx(path))
    assert peak < SMALL, f"peak allocation {peak} bytes"
    assert "lying.idx" in message and "truncated IDX file" in message
    assert f"shape {tuple(dims)}" in message and f"only {held} bytes follow" in message


def test_plain_idx_file_larger_than_memory_but_smaller_than_its_claim_is_not_read(tmp_path):
    # a sparse 2 GiB file claiming 1e9 images of 28x28 (784 GB): rejected on its size,
    # before a single data byte is read
    path = str(tmp_path / "sparse.idx")
    with open(path, "wb") as f:
        f.write(_idx_header(0x08, (10**9, 28, 28)))
        f.truncate(2 << 30)
    peak, message = _peak(lambda: read_idx(path))
    assert peak < SMALL and f"only {(2 << 30) - 16} bytes follow" in message


def test_gzip_idx_that_inflates_to_less_than_its_claim_is_rejected_before_inflating(tmp_path):
    path = _write(tmp_path / "bomb.idx", _idx_header(0x08, (10**9, 28, 28)) + bytes(64 << 20),
                  gz=True)
    assert os.path.getsize(path) < 128 << 10
    peak, message = _peak(lambda: read_idx(path))
    assert "truncated IDX file" in message
    assert peak < SMALL, f"peak allocation {peak} bytes"


def _import_only_readers() -> str:
    # Loads fcnn.data.idx and fcnn.data.cifar10 without the package __init__ files (which
    # import jax), so the process fits in a small address space.
    return textwrap.dedent(f"""
        import resource, sys, types
        for name, path in (("fcnn", {os.path.join(ROOT, "fcnn")!r}),
                           ("fcnn.data", {os.path.join(ROOT, "fcnn", "data")!r})):
            module = types.ModuleType(name)
            module.__path__ = [path]
            sys.modules[name] = module
        import numpy
        from fcnn.data.idx import read_idx
        from fcnn.data.cifar10 import read_cifar10
        from fcnn.data.errors import DataFormatError
        limit = 1 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        """)


def test_readers_under_a_one_gigabyte_address_space_limit(tmp_path):
    """A reader that allocated what a header claims would die of MemoryError here."""
    idx_plain = _write(tmp_path / "a.idx", _idx_header(0x08, (10**9, 28, 28)) + bytes(100))
    idx_gz = _write(tmp_path / "b.idx", _idx_header(0x08, (10**9, 28, 28)) + bytes(100), gz=True)
    cifar = tmp_path / "cifar"
    os.makedirs(cifar)
    _write(cifar / "test_batch.bin", bytes(RECORD_BYTES * 2 - 1))
    script = _import_only_readers() + textwrap.dedent(f"""
        for call in (lambda: read_idx({idx_plain!r}), lambda: read_idx({idx_gz!r}),
                     lambda: read_cifar10({str(cifar)!r}, "test")):
            try:
                call()
            except DataFormatError as error:
                print("rejected:", str(error)[:60])
            else:
                print("accepted")
        try:  # the limit is real: a 2 GB allocation fails
            numpy.ones(2 << 30, numpy.uint8)
            print("limit not enforced")
        except MemoryError:
            print("limit enforced")
        """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["rejected"] * 3 + ["limit enforced"], lines


CIFAR_SIZES = {
    "one byte short of two records": RECORD_BYTES * 2 - 1,
    "one byte over one record": RECORD_BYTES + 1,
    "a partial record": 100,
    "1 label byte only": 1,
}


@pytest.mark.parametrize("case", list(CIFAR_SIZES))
def test_cifar_file_not_a_whole_number_of_records(tmp_path, case):
    size = CIFAR_SIZES[case]
    _write(tmp_path / "test_batch.bin", bytes(size))
    peak, message = _peak(lambda: read_cifar10(tmp_path, "test"))
    assert f"test_batch.bin: size {size} bytes is not a positive multiple of the 3073" in message
    assert peak < SMALL


def test_cifar_every_size_is_checked_before_anything_is_read(tmp_path):
    # batches 1-4 are sparse files of 100000 whole records (300 MB each), batch 5 is
    # one byte short: the reader must fail on batch 5 without allocating for 1-4
    for i in range(1, 5):
        with open(tmp_path / f"data_batch_{i}.bin", "wb") as f:
            f.truncate(RECORD_BYTES * 100_000)
    _write(tmp_path / "data_batch_5.bin", bytes(RECORD_BYTES * 3 - 1))
    peak, message = _peak(lambda: read_cifar10(tmp_path, "train"))
    assert "data_batch_5.bin: size" in message and peak < SMALL


# 3. Checkpoints whose metadata disagrees with their arrays --------------------


def _trees():
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(4), fcnn.BatchNorm(), fcnn.Relu(),
                        fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 2, 2, 1))
    return params, state, init_opt_state(make_optimizer("adam", 1e-3), params)


def _read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _write_npz(path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def _redigest(metadata: dict, npz_path: str) -> None:
    data = open(npz_path, "rb").read()
    metadata["size"] = len(data)
    metadata["sha256"] = hashlib.sha256(data).hexdigest()


KERNEL = "params['1']['kernel']"
MU = "opt_state.inner_state[0].mu['1']['kernel']"


def _edit_json(edit):
    def apply(meta, arrays, folder):
        del arrays, folder
        edit(meta)
    return apply


def _edit_npz(edit, *, listed: bool = False, redigest: bool = True):
    """Changes the arrays; `listed`: also describe them in the metadata as they now are."""
    def apply(meta, arrays, folder):
        edit(arrays)
        if listed:
            meta["arrays"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                              for k, v in arrays.items()}
        npz = os.path.join(folder, meta["npz"])
        _write_npz(npz, arrays)
        if redigest:
            _redigest(meta, npz)
    return apply


def _set(d, key, value):
    d[key] = value


def _truncate_npz(*, redigest: bool):
    def apply(meta, arrays, folder):
        del arrays
        npz = os.path.join(folder, meta["npz"])
        data = open(npz, "rb").read()
        with open(npz, "wb") as f:
            f.write(data[: len(data) - 100])
        if redigest:  # size and digest agree: only reading can tell
            _redigest(meta, npz)
    return apply


def _object_array(meta, arrays, folder):
    # an array that only unpickling could read: refused, never unpickled
    npz = os.path.join(folder, meta["npz"])
    _write_npz(npz, dict(arrays, rng=np.array([{"x": 1}, None], dtype=object)))
    _redigest(meta, npz)


def _renamed(step_in_name: int):
    def apply(meta, arrays, folder):
        del arrays
        old = os.path.join(folder, meta["npz"])
        meta["npz"] = f"ckpt_{step_in_name:08d}.npz"
        os.replace(old, os.path.join(folder, meta["npz"]))
        return f"ckpt_{step_in_name:08d}.json"
    return apply


CHECKPOINT_CASES = {
    # metadata fields
    "array dtype": (_edit_json(lambda m: m["arrays"][KERNEL].update(dtype="float64")),
                    r"disagrees with its arrays: params\['1'\]\['kernel'\] is float32\[4, 4\] in "
                    r"the \.npz but float64\[4, 4\] in the metadata"),
    "array shape of an optimizer leaf": (
        _edit_json(lambda m: m["arrays"][MU].update(shape=[4, 5])),
        r"disagrees with its arrays: opt_state.*mu\['1'\]\['kernel'\] is float32\[4, 4\]"),
    "tree path renamed": (
        _edit_json(lambda m: _set(m["arrays"], "params['1']['kernal']", m["arrays"].pop(KERNEL))),
        r"listed but absent: \[\"params\['1'\]\['kernal'\]\"\], present but unlisted: "
        r"\[\"params\['1'\]\['kernel'\]\"\]"),
    "array missing from the metadata": (
        _edit_json(lambda m: m["arrays"].pop(MU)),
        r"present but unlisted: \[.*mu\['1'\]\['kernel'\]"),
    "extra array in the metadata": (
        _edit_json(lambda m: _set(m["arrays"], "params['9']['w']",
                                  {"shape": [1], "dtype": "float32"})),
        r"listed but absent: \[\"params\['9'\]\['w'\]\"\]"),
    "sha256 of other bytes": (_edit_json(lambda m: _set(m, "sha256", "0" * 64)),
                              r"ckpt_00000005\.npz.*SHA-256 does not match"),
    "sha256 not a digest": (_edit_json(lambda m: _set(m, "sha256", "abc")),
                            r"field 'sha256' is 'abc', expected 64 lowercase hexadecimal"),
    "size": (_edit_json(lambda m: _set(m, "size", m["size"] + 1)),
             r"ckpt_00000005\.npz.*holds \d+ bytes but .* records \d+"),
    "size not a number": (_edit_json(lambda m: _set(m, "size", "big")), r"field 'size' is 'big'"),
    "version": (_edit_json(lambda m: _set(m, "version", 2)), r"version 2 is not supported"),
    "step as text": (_edit_json(lambda m: _set(m, "step", "5")), r"field 'step' is '5'"),
    "position of one number": (_edit_json(lambda m: _set(m, "position", [1])),
                               r"field 'position' is \[1\], expected \[epoch, step\]"),
    "rng_typed not a bool": (_edit_json(lambda m: _set(m, "rng_typed", "no")),
                             r"field 'rng_typed' is 'no'"),
    "extra not an object": (_edit_json(lambda m: _set(m, "extra", [1])), r"field 'extra' is \[1\]"),
    "arrays not an object": (_edit_json(lambda m: _set(m, "arrays", [KERNEL])), r"field 'arrays'"),
    "negative array shape": (_edit_json(lambda m: m["arrays"][KERNEL].update(shape=[-4, 4])),
                             r"field 'arrays'"),
    "npz naming another checkpoint's arrays": (
        _edit_json(lambda m: _set(m, "npz", "ckpt_00000004.npz")),
        r"field 'npz' is 'ckpt_00000004\.npz', expected 'ckpt_00000005\.npz'"),
    "npz outside the directory": (_edit_json(lambda m: _set(m, "npz", "../ckpt_00000005.npz")),
                                  r"field 'npz' is '\.\./ckpt_00000005\.npz'"),
    "a required field missing": (_edit_json(lambda m: m.pop("sha256")),
                                 r"is not an fcnn checkpoint"),
    "metadata naming a different step than its file": (
        _renamed(7), r"ckpt_00000007\.json' holds step 5 .*file name is that of step 7"),
    # the arrays file (size and digest made to agree, so only the content can disagree)
    "array missing from the .npz": (_edit_npz(lambda a: a.pop(MU)),
                                    r"listed but absent: \[.*mu\['1'\]\['kernel'\]"),
    "extra array in the .npz": (_edit_npz(lambda a: _set(a, "params['9']['w']", np.ones(1))),
                                r"present but unlisted: \[\"params\['9'\]\['w'\]\"\]"),
    "array in the .npz of another shape": (
        _edit_npz(lambda a: _set(a, KERNEL, np.ones((4, 5), np.float32))),
        r"params\['1'\]\['kernel'\] is float32\[4, 5\] in the \.npz"),
    "array in the .npz of another dtype": (
        _edit_npz(lambda a: _set(a, KERNEL, a[KERNEL].astype(np.float64))),
        r"params\['1'\]\['kernel'\] is float64\[4, 4\] in the \.npz"),
    "step in the .npz": (_edit_npz(lambda a: _set(a, "meta/step", np.asarray(6, np.int64))),
                         r"step 5 / position \[0, 0\] in the metadata, step 6"),
    "position in the .npz": (
        _edit_npz(lambda a: _set(a, "meta/position", np.asarray([0, 2], np.int64))),
        r"position \[0, 2\] in the \.npz"),
    "step array of the wrong shape, described": (
        _edit_npz(lambda a: _set(a, "meta/step", np.asarray([5, 5], np.int64)), listed=True),
        r"no integer array 'meta/step' of shape \(\)"),
    "rng missing, described": (_edit_npz(lambda a: a.pop("rng"), listed=True),
                               r"no integer array 'rng'"),
    "stray array, described": (_edit_npz(lambda a: _set(a, "notes", np.zeros(2)), listed=True),
                               r"holds an array 'notes' that belongs to none of"),
    "a model array the model lacks, described": (
        _edit_npz(lambda a: _set(a, "params['1']['scale']", np.ones(4, np.float32)), listed=True),
        r"does not fit this model: it holds params\['1'\]\['scale'\]"),
    "a model array of another dtype, described": (
        _edit_npz(lambda a: _set(a, KERNEL, a[KERNEL].astype(np.float16)), listed=True),
        r"params\['1'\]\['kernel'\] has dtype float16 in the checkpoint but float32 in the model"),
    "truncated .npz, size and digest agreeing": (_truncate_npz(redigest=True),
                                                 r"ckpt_00000005\.npz.* cannot be read"),
    "truncated .npz": (_truncate_npz(redigest=False),
                       r"ckpt_00000005\.npz.*corrupted or truncated: it holds \d+ bytes"),
    "object (pickled) array in the .npz": (_object_array, r"ckpt_00000005\.npz.* cannot be read.*"
                                                          r"allow_pickle=False"),
}


@pytest.fixture(scope="module")
def trees():
    return _trees()


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_checkpoint_whose_metadata_disagrees_is_rejected(tmp_path, trees, case):
    params, state, opt_state = trees
    tamper, match = CHECKPOINT_CASES[case]
    json_path = save_checkpoint(tmp_path, 5, params=params, state=state, opt_state=opt_state,
                                rng=jax.random.PRNGKey(1), keep=None)
    template = dict(params=params, state=state, opt_state=opt_state)
    assert load_checkpoint(json_path, **template)["step"] == 5  # intact before the edit
    metadata = json.load(open(json_path))
    arrays = _read_npz(os.path.join(tmp_path, metadata["npz"]))
    new_name = tamper(metadata, arrays, str(tmp_path))
    os.unlink(json_path)
    json_path = os.path.join(tmp_path, new_name or os.path.basename(json_path))
    with open(json_path, "w") as f:
        json.dump(metadata, f)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(json_path, **template)
