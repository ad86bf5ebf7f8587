"""The tcmalloc re-execution of command-line programs (fcnn/allocator.py)."""

import os
import subprocess
import sys
import warnings

import pytest

from fcnn import allocator

PROGRAM = (
    "import sys\n"
    "from fcnn import allocator\n"
    "allocator.use_tcmalloc()\n"
    "maps = open('/proc/self/maps').read()\n"
    "print('tcmalloc' in maps, sys.argv[1:])\n"
)


def run(env_extra, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ALLOCATOR_ENV)}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROGRAM, *args], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def tcmalloc_missing_reason() -> str | None:
    """Why the re-execution cannot be tested here, naming what is missing and how to
    install it; None when it can."""
    if not sys.platform.startswith("linux"):
        return (f"the tcmalloc re-execution is Linux-only (LD_PRELOAD), and this is "
                f"{sys.platform!r}")
    if allocator.find_tcmalloc() is None:
        return ("tcmalloc is not installed: none of "
                f"{', '.join(allocator.TCMALLOC_PATHS)} exists. Install it with "
                "`sudo apt-get install libtcmalloc-minimal4` (Debian/Ubuntu) or "
                "`sudo dnf install gperftools-libs` (Fedora/RHEL) to run this test")
    return None


def test_the_program_restarts_once_with_tcmalloc_mapped_and_its_arguments_kept():
    reason = tcmalloc_missing_reason()
    if reason is not None:
        # A skip's reason shows only with -rs; the warning also shows in the summary
        # of a plain `make test`, so a machine without tcmalloc is never silent.
        warnings.warn(f"test_allocator skipped: {reason}", UserWarning, stacklevel=1)
        pytest.skip(reason)
    assert run({}, "--flag", "two words") == "True ['--flag', 'two words']"


def test_system_allocator_on_request():
    assert run({allocator.ALLOCATOR_ENV: "system"}, "a") == "False ['a']"


def test_unknown_allocator_name_is_refused(monkeypatch):
    monkeypatch.setenv(allocator.ALLOCATOR_ENV, "jemalloc")
    with pytest.raises(ValueError, match="FCNN_ALLOCATOR='jemalloc': expected one of tcmalloc, system"):
        allocator.use_tcmalloc()


def test_nothing_happens_when_already_preloaded(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/somewhere/libtcmalloc_minimal.so.4")
    monkeypatch.delenv(allocator.ALLOCATOR_ENV, raising=False)
    assert allocator.use_tcmalloc() is False
