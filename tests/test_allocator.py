"""The allocator re-execution of command-line programs (fcnn/allocator.py)."""

import os
import subprocess
import sys
import warnings

import pytest

from fcnn import allocator

RESTART = (
    "import sys\n"
    "from fcnn import allocator\n"
    "allocator.use_fast_allocator()\n"
)
PROGRAM = RESTART + (
    "maps = open('/proc/self/maps').read()\n"
    "print([n for n in ('tcmalloc', 'mimalloc') if 'lib' + n in maps], sys.argv[1:])\n"
)
# Three SGD steps of the reference CNN on fixed data; the losses as exact hex floats.
TRAINING = RESTART + (
    "import jax, jax.numpy as jnp, optax\n"
    "from fcnn import models\n"
    "from fcnn.losses import softmax_cross_entropy\n"
    "from fcnn.train.step import make_train_step, init_opt_state\n"
    "model = models.refnet()\n"
    "_, params, state = model.init(jax.random.PRNGKey(0), (None, 28, 28, 1))\n"
    "opt = optax.sgd(0.05, momentum=0.9)\n"
    "step = make_train_step(model, softmax_cross_entropy, opt)\n"
    "opt_state = init_opt_state(opt, params)\n"
    "x = jax.random.normal(jax.random.PRNGKey(1), (64, 28, 28, 1))\n"
    "y = jnp.arange(64) % 10\n"
    "rng = jax.random.PRNGKey(2)\n"
    "for _ in range(3):\n"
    "    params, state, opt_state, metrics = step(params, state, opt_state, (x, y), rng)\n"
    "    print(float(metrics['loss']).hex())\n"
)


def run(env_extra, *args, program=PROGRAM):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ALLOCATOR_ENV)}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", program, *args], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def none_installed_reason() -> str | None:
    """Why the re-execution cannot be tested here, naming what is missing and how to
    install it; None when it can."""
    if not sys.platform.startswith("linux"):
        return f"the allocator re-execution is Linux-only (LD_PRELOAD), and this is {sys.platform!r}"
    if allocator.find_tcmalloc() is None and allocator.find_mimalloc() is None:
        return ("neither tcmalloc (none of " + ", ".join(allocator.TCMALLOC_PATHS) + ") nor "
                "the cmeel-mimalloc wheel is installed: `pip install 'fcnn[fast]'` (which "
                "`make test` does) to run this test")
    return None


def skip_unless_installed():
    reason = none_installed_reason()
    if reason is not None:
        # A skip's reason shows only with -rs; the warning also shows in the summary
        # of a plain `make test`, so a machine without either is never silent.
        warnings.warn(f"test_allocator skipped: {reason}", UserWarning, stacklevel=2)
        pytest.skip(reason)


def test_the_program_restarts_once_with_the_first_installed_allocator_and_its_arguments():
    skip_unless_installed()
    expected = "tcmalloc" if allocator.find_tcmalloc() else "mimalloc"
    assert run({}, "--flag", "two words") == f"['{expected}'] ['--flag', 'two words']"


def test_mimalloc_on_request():
    if allocator.find_mimalloc() is None:
        pytest.skip("the cmeel-mimalloc wheel is not installed (`pip install 'fcnn[fast]'`)")
    assert run({allocator.ALLOCATOR_ENV: "mimalloc"}, "a") == "['mimalloc'] ['a']"


def test_system_allocator_on_request():
    assert run({allocator.ALLOCATOR_ENV: "system"}, "a") == "[] ['a']"


def test_the_allocator_does_not_change_the_numbers():
    skip_unless_installed()
    system = run({allocator.ALLOCATOR_ENV: "system"}, program=TRAINING).splitlines()
    fast = run({}, program=TRAINING).splitlines()
    assert len(system) == 3 and float.fromhex(system[0]) > 0
    assert fast == system


def test_unknown_allocator_name_is_refused(monkeypatch):
    monkeypatch.setenv(allocator.ALLOCATOR_ENV, "jemalloc")
    with pytest.raises(ValueError, match="FCNN_ALLOCATOR='jemalloc': expected one of "
                                         "auto, tcmalloc, mimalloc, system"):
        allocator.use_fast_allocator()


@pytest.mark.parametrize("preload", ["/somewhere/libtcmalloc_minimal.so.4",
                                     "/site-packages/cmeel.prefix/lib/libmimalloc.so"])
def test_nothing_happens_when_already_preloaded(monkeypatch, preload):
    monkeypatch.setenv("LD_PRELOAD", preload)
    monkeypatch.delenv(allocator.ALLOCATOR_ENV, raising=False)
    assert allocator.use_fast_allocator() is False
