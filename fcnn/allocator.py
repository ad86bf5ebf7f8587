"""A faster memory allocator for command-line programs, when the machine has one.

With glibc's malloc, XLA on the CPU unmaps and maps its large temporary buffers
again at every step (tens of thousands of page faults per training step); tcmalloc
and mimalloc keep them. An allocator must be loaded before the process starts, so a
program that wants one re-executes itself once with `LD_PRELOAD` set:

    from fcnn import allocator
    allocator.use_fast_allocator()   # first thing in a command-line entry point

Which one (`FCNN_ALLOCATOR`): `auto` (default) takes tcmalloc when the system has it
(`apt-get install libtcmalloc-minimal4`), else mimalloc when the `cmeel-mimalloc`
wheel is installed (`pip install "fcnn[fast]"`; `make install` does); `tcmalloc` or
`mimalloc` ask for one; `system` keeps glibc's. Nothing happens when the library is
missing, on other systems than Linux, or when `LD_PRELOAD` already names one of them.
The allocator changes where buffers live, never the numbers computed in them.
"""

from __future__ import annotations

import os
import sys

TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)
ALLOCATOR_ENV = "FCNN_ALLOCATOR"
ALLOCATOR_CHOICES = ("auto", "tcmalloc", "mimalloc", "system")
PRELOADABLE = ("tcmalloc", "mimalloc")  # `auto`'s order
# Extra environment of a process with the allocator preloaded: tcmalloc otherwise
# reports every allocation above 1 GiB on stderr.
QUIET = {"tcmalloc": {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}, "mimalloc": {}}


def find_tcmalloc() -> str | None:
    """The path of tcmalloc's shared library, or None when it is not installed."""
    return next((p for p in TCMALLOC_PATHS if os.path.exists(p)), None)


def find_mimalloc() -> str | None:
    """libmimalloc.so of the `cmeel-mimalloc` wheel of this Python (it lands in
    site-packages/cmeel.prefix/lib/), or None when the wheel is not installed."""
    from importlib import metadata

    try:
        files = metadata.distribution("cmeel-mimalloc").files or []
    except metadata.PackageNotFoundError:
        return None
    candidates = sorted((str(f.locate()) for f in files if f.name.startswith("libmimalloc.so")),
                        key=len)  # libmimalloc.so before libmimalloc.so.3.4
    return next((c for c in candidates if os.path.exists(c)), None)


FINDERS = {"tcmalloc": find_tcmalloc, "mimalloc": find_mimalloc}


def preloaded() -> str | None:
    """The name of the fast allocator preloaded into this process, or None."""
    preload = os.environ.get("LD_PRELOAD", "")
    return next((name for name in PRELOADABLE if name in preload), None)


def tcmalloc_loaded() -> bool:
    """True when tcmalloc is preloaded into this process."""
    return preloaded() == "tcmalloc"


def chosen() -> tuple[str, str | None]:
    """(name, library path) of the allocator `FCNN_ALLOCATOR` asks for on this machine;
    the path is None for `system` or when the library is not installed."""
    choice = os.environ.get(ALLOCATOR_ENV, "auto")
    if choice not in ALLOCATOR_CHOICES:
        raise ValueError(f"{ALLOCATOR_ENV}={choice!r}: expected one of {', '.join(ALLOCATOR_CHOICES)}")
    if choice == "system":
        return choice, None
    for name in (PRELOADABLE if choice == "auto" else (choice,)):
        path = FINDERS[name]()
        if path is not None:
            return name, path
    return choice, None


def use_fast_allocator() -> bool:
    """Re-executes the running program with tcmalloc or mimalloc preloaded, when possible.

    Returns False (and does nothing) when one is already loaded, none is installed,
    none is wanted (`FCNN_ALLOCATOR=system`) or the program cannot be re-executed;
    does not return otherwise. Call it before any work: the program starts again
    from the top.
    """
    name, library = chosen()
    if library is None or preloaded() or not sys.platform.startswith("linux"):
        return False
    argv = getattr(sys, "orig_argv", None)
    if not argv:
        return False
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    for key, value in QUIET[name].items():
        env.setdefault(key, value)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return False
    return True  # not reached: execve replaced the process


use_tcmalloc = use_fast_allocator  # the earlier name, when tcmalloc was the only choice

__all__ = ["chosen", "find_mimalloc", "find_tcmalloc", "preloaded", "tcmalloc_loaded",
           "use_fast_allocator", "use_tcmalloc"]
