"""A small training run that can kill itself on request, for tests/test_crash_safety.py.

    python tests/crash_worker.py OUT_DIR [--keep K]    (K checkpoints kept, 0: all; default 3)

Trains a tiny network (dense, batch norm, dropout: params, state and rng all matter)
on fixed random data with `fit(..., checkpoint_every=CHECKPOINT_EVERY, resume=True)`,
so a run started again in the same OUT_DIR continues the previous one. It prints
"ready" after its first step and "done STEP" at the end.

The environment variable FCNN_CRASH_AT (read here, never by the library) names a
moment at which the process sends itself SIGKILL, after printing "crash SPEC":

    step::N          after the N-th train step of this process
    open:NAME        when the temporary file for NAME is opened, before any byte
    write:NAME:B     once B bytes of NAME's temporary file are written
    replace:NAME     when NAME's temporary file is complete, before its rename onto NAME
    replaced:NAME    right after the rename onto NAME
    unlink:NAME      right after NAME is deleted (checkpoint rotation)
    append:NAME:B    once B bytes of an append to NAME are written

NAME is a base name: ckpt_00000040.npz, ckpt_00000040.json or metrics.jsonl. The
hooks wrap `os` and `tempfile` functions and `open` in this process only.
"""

from __future__ import annotations

import builtins
import os
import signal
import sys
import tempfile

CHECKPOINT_EVERY = 5
EPOCHS = 20
BATCH_SIZE = 8
EXAMPLES = 96  # 12 steps per epoch, 240 steps in all
SEED = 3
ENV = "FCNN_CRASH_AT"


def build():
    """(model, loss, optimizer, params, state, (images, labels)): the same in every process."""
    import jax
    import numpy as np

    import fcnn
    from fcnn import losses
    from fcnn.train import make_optimizer

    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(16), fcnn.BatchNorm(), fcnn.Relu(),
                        fcnn.Dropout(0.25), fcnn.Dense(4))
    # one compiled init rather than one compile per op: it is most of the start-up
    _, params, state = jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(0), (-1, 4, 4, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(EXAMPLES, 4, 4, 1)).astype(np.float32)
    labels = (np.arange(EXAMPLES) % 4).astype(np.int32)
    return (model, losses.softmax_cross_entropy, make_optimizer("adam", 0.01), params, state,
            (images, labels))


def _die(spec: str) -> None:
    sys.stdout.write(f"crash {spec}\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillingFile:
    """A file object that dies once `limit` bytes went through `write` (the rest unwritten)."""

    def __init__(self, f, limit: int, spec: str):
        self._f, self._left, self._spec = f, limit, spec

    def write(self, data):
        # text (ASCII JSON) is counted in characters, bytes in bytes
        view = data if isinstance(data, str) else memoryview(data).cast("B")
        if len(view) >= self._left:
            self._f.write(view[: self._left])
            self._f.flush()
            _die(self._spec)
        self._left -= len(view)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def install_hook(spec: str) -> None:
    """Wraps the file functions so that the process dies at the moment `spec` names."""
    event, name, count = (spec.split(":") + ["", ""])[:3]
    temp_targets: dict[int, str] = {}  # fd of a temporary file -> base name it will replace
    mkstemp, fdopen, replace, unlink, open_ = (
        tempfile.mkstemp, os.fdopen, os.replace, os.unlink, builtins.open)

    def hooked_mkstemp(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        if prefix.startswith(".") and prefix.endswith("."):
            temp_targets[fd] = prefix[1:-1]
        return fd, path

    def hooked_fdopen(fd, *args, **kwargs):
        f = fdopen(fd, *args, **kwargs)
        if temp_targets.pop(fd, None) == name:
            if event == "open":
                _die(spec)
            if event == "write":
                return _KillingFile(f, int(count), spec)
        return f

    def hooked_replace(src, dst, *args, **kwargs):
        hit = os.path.basename(os.fspath(dst)) == name
        if hit and event == "replace":
            _die(spec)
        out = replace(src, dst, *args, **kwargs)
        if hit and event == "replaced":
            _die(spec)
        return out

    def hooked_unlink(path, *args, **kwargs):
        out = unlink(path, *args, **kwargs)
        if event == "unlink" and os.path.basename(os.fspath(path)) == name:
            _die(spec)
        return out

    def hooked_open(file, mode="r", *args, **kwargs):
        f = open_(file, mode, *args, **kwargs)
        if event == "append" and "a" in mode and os.path.basename(os.fspath(file)) == name:
            return _KillingFile(f, int(count), spec)
        return f

    tempfile.mkstemp, os.fdopen, os.replace, os.unlink = (
        hooked_mkstemp, hooked_fdopen, hooked_replace, hooked_unlink)
    builtins.open = hooked_open


def main(argv) -> int:
    out_dir = argv[1]
    keep = int(argv[argv.index("--keep") + 1]) if "--keep" in argv else 3
    spec = os.environ.get(ENV, "")
    from fcnn.train import fit, make_train_step

    model, loss, optimizer, params, state, data = build()
    step = make_train_step(model, loss, optimizer)
    kill_after = int(spec.split(":")[2]) if spec.startswith("step:") else None
    calls = 0

    def counted_step(*args):
        nonlocal calls
        out = step(*args)
        calls += 1
        if calls == 1:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
        if calls == kill_after:
            _die(spec)
        return out

    if spec and kill_after is None:
        install_hook(spec)
    result = fit(model, loss, optimizer, params, state, data, epochs=EPOCHS,
                 batch_size=BATCH_SIZE, seed=SEED, out_dir=out_dir, keep=keep or None,
                 checkpoint_every=CHECKPOINT_EVERY, resume=True, progress=False, log_every=7,
                 train_step=counted_step)
    sys.stdout.write(f"done {result.step}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
