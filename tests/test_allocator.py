"""The tcmalloc re-execution of command-line programs (fcnn/allocator.py)."""

import os
import subprocess
import sys

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


@pytest.mark.skipif(allocator.find_tcmalloc() is None or not sys.platform.startswith("linux"),
                    reason="tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")
def test_the_program_restarts_once_with_tcmalloc_mapped_and_its_arguments_kept():
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
