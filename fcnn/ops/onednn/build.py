"""Finding oneDNN, compiling conv.cc against it once, loading and registering it.

    python -m fcnn.ops.onednn        # build now (or reuse), print what was found

The shared library is compiled on first use into a cache directory, never into the
package: `FCNN_CACHE_DIR` if set, else `$XDG_CACHE_HOME/fcnn`, else `~/.cache/fcnn`,
under `onednn/`. Its file name carries a hash of everything it was built from (the
C++ source, the compiler command, the XLA FFI headers and oneDNN's version headers),
so a changed source, jax or oneDNN builds afresh and a stale build is never loaded.
It is written to a temporary name and renamed into place, so concurrent processes
(pytest-xdist) at worst build twice.

oneDNN is looked up, first found wins, in:
    $FCNN_ONEDNN_ROOT            a prefix with include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so*
    sys.prefix                   where `pip install onednn-cpu-gomp onednn-devel-cpu-gomp` puts it
    site.USER_BASE               the same with `pip install --user`
    /usr, /usr/local             a system install (Debian's libdnnl-dev is oneDNN 2.x: too old)
It must be oneDNN >= 3.0. The compiler is $CXX, else c++, else g++.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import site
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

SOURCE = Path(__file__).with_name("conv.cc")
LIBRARY_PREFIX = "libfcnn_onednn"
TARGETS = {
    "fcnn_onednn_conv_forward": "FcnnOnednnConvForward",
    "fcnn_onednn_conv_input_grad": "FcnnOnednnConvInputGrad",
    "fcnn_onednn_conv_kernel_grad": "FcnnOnednnConvKernelGrad",
}
CXXFLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-w")

NOT_FOUND = (
    "oneDNN >= 3.0 was not found (looked for include/oneapi/dnnl/dnnl.hpp and "
    "lib/libdnnl.so in {places}); install it with `pip install onednn-cpu-gomp "
    "onednn-devel-cpu-gomp` (or `pip install fcnn[onednn]`), or point FCNN_ONEDNN_ROOT "
    "at a prefix holding it"
)
NO_COMPILER = "no C++ compiler found ($CXX, c++, g++); install one, e.g. `apt-get install g++`"
BUILD_FAILED = "compiling {source} failed (exit code {code}): {tail}"


class OnednnUnavailable(RuntimeError):
    """oneDNN's convolutions cannot be built or loaded on this machine (the reason)."""


class Install(NamedTuple):
    """Where oneDNN's headers and shared library are."""

    include: Path
    lib: Path
    version: tuple[int, int, int]


def cache_dir() -> Path:
    """The directory the compiled library goes to (created on demand)."""
    root = os.environ.get("FCNN_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg, "fcnn") if xdg else os.path.join(
            os.path.expanduser("~"), ".cache", "fcnn")
    return Path(root) / "onednn"


def _candidate_prefixes() -> list[Path]:
    out = []
    if os.environ.get("FCNN_ONEDNN_ROOT"):
        out.append(Path(os.environ["FCNN_ONEDNN_ROOT"]))
    out += [Path(sys.prefix), Path(site.getuserbase()), Path(sys.base_prefix),
            Path("/usr/local"), Path("/usr")]
    return list(dict.fromkeys(out))


def _header_version(include: Path) -> tuple[int, int, int] | None:
    header = include / "oneapi" / "dnnl" / "dnnl_version.h"
    if not header.exists():
        return None
    values = {}
    for line in header.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("DNNL_VERSION_"):
            values[parts[1][len("DNNL_VERSION_"):]] = parts[2]
    try:
        return tuple(int(values[k]) for k in ("MAJOR", "MINOR", "PATCH"))
    except (KeyError, ValueError):
        return None


def find_onednn() -> Install:
    """The first oneDNN >= 3.0 install found (see the module docstring), or raises."""
    for prefix in _candidate_prefixes():
        include = prefix / "include"
        version = _header_version(include)
        if version is None or version[0] < 3 or not (include / "oneapi/dnnl/dnnl.hpp").exists():
            continue
        for lib in (prefix / "lib", prefix / "lib64", prefix / "lib/x86_64-linux-gnu"):
            if any(lib.glob("libdnnl.so*")):
                return Install(include, lib, version)
    places = ", ".join(str(p) for p in _candidate_prefixes())
    raise OnednnUnavailable(NOT_FOUND.format(places=places))


def find_compiler() -> str:
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise OnednnUnavailable(NO_COMPILER)


def _ffi_include() -> Path:
    import jax.ffi

    return Path(jax.ffi.include_dir())


def compile_command(install: Install, compiler: str, output: Path) -> list[str]:
    """The exact command that builds the library (DT_RPATH, not RUNPATH, so that
    libdnnl's own dependencies are found beside it too)."""
    return [
        compiler, *CXXFLAGS, str(SOURCE),
        f"-I{_ffi_include()}", f"-I{install.include}",
        f"-L{install.lib}", "-ldnnl",
        f"-Wl,-rpath,{install.lib}", "-Wl,--disable-new-dtags",
        "-o", str(output),
    ]


def _fingerprint(install: Install, compiler: str) -> str:
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(" ".join(compile_command(install, compiler, Path("out"))).encode())
    ffi = _ffi_include() / "xla" / "ffi" / "api"
    for name in ("api.h", "c_api.h", "ffi.h"):
        if (ffi / name).exists():
            h.update((ffi / name).read_bytes())
    for name in ("dnnl_version.h", "dnnl_config.h"):
        header = install.include / "oneapi" / "dnnl" / name
        if header.exists():
            h.update(header.read_bytes())
    return h.hexdigest()[:16]


def build(verbose: bool = False) -> Path:
    """Compiles conv.cc into the cache (or finds it there); returns the library's path."""
    if not SOURCE.exists():
        raise OnednnUnavailable(f"{SOURCE} is missing from the installed package")
    install, compiler = find_onednn(), find_compiler()
    target = cache_dir() / f"{LIBRARY_PREFIX}-{_fingerprint(install, compiler)}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    cmd = compile_command(install, compiler, Path(tmp))
    if verbose:
        print(" ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
            raise OnednnUnavailable(BUILD_FAILED.format(
                source=SOURCE, code=proc.returncode, tail=tail))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class Loaded(NamedTuple):
    library: ctypes.CDLL
    path: Path
    version: str


_lock = threading.Lock()
_loaded: Loaded | None = None
_error: str | None = None


def load() -> Loaded:
    """Builds (once per machine), loads (once per process) and registers the FFI
    targets with XLA's CPU platform; raises OnednnUnavailable with the reason."""
    global _loaded, _error
    with _lock:
        if _loaded is not None:
            return _loaded
        if _error is not None:
            raise OnednnUnavailable(_error)
        try:
            import jax.ffi

            path = build()
            lib = ctypes.CDLL(str(path))
            for target, symbol in TARGETS.items():
                jax.ffi.register_ffi_target(
                    target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
            lib.fcnn_onednn_implementation.restype = ctypes.c_int
            buf = ctypes.create_string_buffer(256)
            lib.fcnn_onednn_version(buf, ctypes.c_int64(len(buf)))
            _loaded = Loaded(lib, path, buf.value.decode())
        except OnednnUnavailable as e:
            _error = str(e)
            raise
        except (OSError, AttributeError, ValueError) as e:  # load or registration failed
            _error = f"loading the oneDNN convolution library failed: {e}"
            raise OnednnUnavailable(_error) from e
        return _loaded


def main() -> None:
    import time

    start = time.perf_counter()
    try:
        install = find_onednn()
        print(f"oneDNN {'.'.join(map(str, install.version))}: headers {install.include}, "
              f"library {install.lib}")
        path = build(verbose=True)
        loaded = load()
    except OnednnUnavailable as e:
        print(f"unavailable: {e}")
        raise SystemExit(1)
    print(f"library {path} ({time.perf_counter() - start:.1f} s); oneDNN {loaded.version}")
