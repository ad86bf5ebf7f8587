"""Crash safety: a training process killed with SIGKILL at any moment, even in the middle
of a checkpoint write, leaves a loadable latest checkpoint, and resuming from it
reproduces the uninterrupted run bit for bit.

The training is tests/crash_worker.py, run in a subprocess. One uninterrupted run
keeps every checkpoint (the reference trajectory). A second run in another directory
is killed again and again, each time resumed by the next process: at random times
(the test sends SIGKILL after a random delay) and at chosen points of a checkpoint
write (the worker kills itself there, see FCNN_CRASH_AT in crash_worker.py). After
each kill every checkpoint in the directory loads and equals the reference's at the
same step, bit for bit; the latest is the one the kill moment implies; the final
run ends with the reference's parameters, optimizer state and logs.

The write order being attacked (fcnn/train/checkpoint.py): arrays to a temporary
file, rename onto ckpt_N.npz, metadata to a temporary file, rename onto
ckpt_N.json, then rotation (delete the oldest .json, then its .npz); at the end of
an epoch the metrics line is appended before the checkpoint; a resumed run first
rewrites metrics.jsonl atomically.

Every process imports fcnn afresh: editing the library while this test runs makes
the processes disagree (a mismatch then names the checkpoint and the arrays).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from fcnn.train import init_opt_state, latest_checkpoint, list_checkpoints, load_checkpoint
from tests import crash_worker as worker

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash_worker.py")
STEPS_PER_EPOCH = worker.EXAMPLES // worker.BATCH_SIZE
TOTAL_STEPS = worker.EPOCHS * STEPS_PER_EPOCH
CHECKPOINT_STEPS = sorted(
    s for s in range(1, TOTAL_STEPS + 1)
    if s % worker.CHECKPOINT_EVERY == 0 or s % STEPS_PER_EPOCH == 0
)
# Upper bound of a random kill's delay after the first step, in training steps.
TIMER_SPAN_STEPS = 25

# The kill moments, in order. Hook moments name a file of the checkpoint written
# second after the latest one ({t}), or other targets resolved in `_spec`.
HOOK_MOMENTS = {
    "before the first checkpoint": "step::3",
    "arrays: temporary file created, nothing written": "open:{t}.npz",
    "arrays: 1 byte of the temporary file written": "write:{t}.npz:1",
    "arrays: half of the temporary file written": "write:{t}.npz:7000",
    "arrays: complete, before the rename": "replace:{t}.npz",
    "arrays: renamed, metadata not yet written": "replaced:{t}.npz",
    "metadata: temporary file created, nothing written": "open:{t}.json",
    "metadata: 200 bytes of the temporary file written": "write:{t}.json:200",
    "metadata: complete, before the rename": "replace:{t}.json",
    "metadata: renamed, before the rotation": "replaced:{t}.json",
    "rotation: oldest metadata deleted, its arrays not yet": "unlink:{oldest}",
    "metrics.jsonl: 30 bytes of the epoch's line appended": "append:metrics.jsonl:30",
    "metrics.jsonl: rewrite on resume, 1 byte written": "write:metrics.jsonl:1",
}
FAST_PLAN = [
    "before the first checkpoint", "timer",
    "arrays: temporary file created, nothing written", "timer",
    "arrays: 1 byte of the temporary file written", "timer",
    "arrays: half of the temporary file written", "timer",
    "arrays: complete, before the rename", "timer",
    "arrays: renamed, metadata not yet written", "timer",
    "metadata: temporary file created, nothing written",
    "metadata: 200 bytes of the temporary file written",
    "metadata: complete, before the rename",
    "metadata: renamed, before the rotation",
    "rotation: oldest metadata deleted, its arrays not yet",
    "metrics.jsonl: 30 bytes of the epoch's line appended",
    "metrics.jsonl: rewrite on resume, 1 byte written",
    "timer",
]
# Twice the hook moments (second round on later checkpoints) and 20 random times.
SLOW_PLAN = FAST_PLAN + [m for m in HOOK_MOMENTS if m != "before the first checkpoint"] + [
    "timer"] * 8


def _stem(step: int) -> str:
    return f"ckpt_{step:08d}"


def _step_of(path: str | None) -> int | None:
    return None if path is None else int(os.path.basename(path)[5:13])


def _next_checkpoints(step: int | None) -> list[int]:
    return [s for s in CHECKPOINT_STEPS if s > (step or 0)]


def _expected_latest(moment: str, before: int | None, dir_: str) -> tuple[str, int | None]:
    """(FCNN_CRASH_AT spec, the step the latest checkpoint must have after the kill)."""
    spec = HOOK_MOMENTS[moment]
    first, second = _next_checkpoints(before)[:2]
    if moment == "before the first checkpoint":
        assert before is None, "this moment needs a fresh directory"
        return spec, None
    if moment.startswith("rotation"):
        oldest = list_checkpoints(dir_)
        assert len(oldest) >= 3, "the rotation moment needs `keep` checkpoints already"
        # the first save of the resumed run rotates the oldest out, then dies
        return spec.format(oldest=os.path.basename(oldest[0])), first
    if moment.startswith("metrics.jsonl: 30"):
        epoch_end = next(s for s in _next_checkpoints(before) if s % STEPS_PER_EPOCH == 0)
        return spec, max(s for s in CHECKPOINT_STEPS if s < epoch_end)
    if moment.startswith("metrics.jsonl: rewrite"):
        assert before is not None and before >= STEPS_PER_EPOCH, "needs a logged epoch"
        return spec, before
    if moment == "metadata: renamed, before the rotation":
        return spec.format(t=_stem(second)), second
    return spec.format(t=_stem(second)), first


def _run(out_dir: str, env: dict, *, keep: int = 3, crash: str = "", delay: float | None = None,
         timeout: float = 120.0):
    """Runs the worker; with `delay`, SIGKILLs it that many seconds after its first step.

    Returns (returncode, stdout lines, seconds from the first step to the end).
    The reference run (keep=0) fills the compilation cache and a copy is kept; every
    other run starts from that copy, restored at the same path (JAX's cache keys
    depend on it): JAX writes entries in place, so a killed process may cut one.
    """
    cache = env["JAX_COMPILATION_CACHE_DIR"]
    if keep:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(cache + "_filled", cache)
    env = dict(env, **{worker.ENV: crash})
    proc = subprocess.Popen([sys.executable, WORKER, out_dir, "--keep", str(keep)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    ready = None
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "ready":
                ready = time.perf_counter()
                if delay is not None:
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
        rest, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    lines += rest.splitlines()
    elapsed = time.perf_counter() - ready if ready is not None else float("nan")
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"worker failed ({proc.returncode}):\n{err[-3000:]}")
    return proc.returncode, lines, elapsed


def _npz_arrays(json_path: str) -> dict[str, np.ndarray]:
    with np.load(json_path[: -len(".json")] + ".npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _templates():
    # the worker runs without float64: build the templates the same way
    with jax.enable_x64(False):
        _, _, optimizer, params, state, _ = worker.build()
        return dict(params=params, state=state, opt_state=init_opt_state(optimizer, params))


def _log(path: str) -> list[dict]:
    records = [json.loads(line) for line in open(path)]
    for r in records:
        r.pop("seconds")
    return records


def _check_directory(ckpt_dir: str, reference_dir: str, templates: dict, moment: str):
    """Every checkpoint loads and equals the reference's of the same step, bit for bit."""
    for path in list_checkpoints(ckpt_dir):
        restored = load_checkpoint(path, **templates)
        leaves = jax.tree_util.tree_leaves((restored["params"], restored["opt_state"]))
        assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
        ours = _npz_arrays(path)
        theirs = _npz_arrays(os.path.join(reference_dir, os.path.basename(path)))
        differ = sorted(k for k in ours.keys() | theirs.keys()
                        if k not in ours or k not in theirs or ours[k].dtype != theirs[k].dtype
                        or not np.array_equal(ours[k], theirs[k]))
        assert not differ, (f"after the kill '{moment}', {os.path.basename(path)} differs "
                            f"from the uninterrupted run in {differ}; left: {os.listdir(ckpt_dir)}")


def _kill_and_resume(tmp_path, plan):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               # every process after the first reuses the compiled step
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    reference = str(tmp_path / "reference")
    code, lines, elapsed = _run(reference, env, keep=0)
    assert code == 0 and lines[-1] == f"done {TOTAL_STEPS}"
    shutil.copytree(env["JAX_COMPILATION_CACHE_DIR"], env["JAX_COMPILATION_CACHE_DIR"] + "_filled")
    reference_ckpt = os.path.join(reference, "checkpoints")
    assert [_step_of(p) for p in list_checkpoints(reference_ckpt)] == CHECKPOINT_STEPS
    seconds_per_step = elapsed / (TOTAL_STEPS - 1)

    run = str(tmp_path / "killed")
    ckpt_dir = os.path.join(run, "checkpoints")
    templates = _templates()
    rng = np.random.default_rng(20240611)
    survived = []
    for moment in plan:
        before = _step_of(latest_checkpoint(ckpt_dir))
        if moment == "timer":
            delay = float(rng.uniform(0, TIMER_SPAN_STEPS)) * seconds_per_step
            code, lines, _ = _run(run, env, delay=delay)
            assert code == -signal.SIGKILL, f"the run ended before the kill at {delay:.3f} s"
            after = _step_of(latest_checkpoint(ckpt_dir))
            assert after is None or after >= (before or 0)
        else:
            spec, expected = _expected_latest(moment, before, ckpt_dir)
            code, lines, _ = _run(run, env, crash=spec)
            assert code == -signal.SIGKILL and lines[-1] == f"crash {spec}", (moment, lines)
            after = _step_of(latest_checkpoint(ckpt_dir))
            # a checkpoint whose metadata is not complete and renamed is never the latest
            assert after == expected, (moment, spec, after, expected)
        if moment.startswith("rotation"):  # the rotated-out arrays are left behind ...
            assert os.path.exists(os.path.join(ckpt_dir, spec.split(":")[1][:-5] + ".npz"))
        _check_directory(ckpt_dir, reference_ckpt, templates, moment)
        listed = {os.path.basename(p) for p in list_checkpoints(ckpt_dir)}
        names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
        left = sorted(n for n in names
                      if n[:-4] + ".json" not in listed and not n.endswith(".json"))
        survived.append((moment, before, after, left))

    code, lines, _ = _run(run, env)
    assert code == 0 and lines[-1] == f"done {TOTAL_STEPS}"
    # ... and removed by the next run, like every temporary file
    assert sorted(os.listdir(ckpt_dir)) == sorted(
        _stem(s) + ext for s in CHECKPOINT_STEPS[-3:] for ext in (".json", ".npz"))
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]
    final, reference_final = latest_checkpoint(ckpt_dir), latest_checkpoint(reference_ckpt)
    assert _step_of(final) == TOTAL_STEPS
    ours = load_checkpoint(final, **templates)
    theirs = load_checkpoint(reference_final, **templates)
    for group in ("params", "state", "opt_state", "rng"):
        a, b = jax.tree_util.tree_leaves(ours[group]), jax.tree_util.tree_leaves(theirs[group])
        assert len(a) == len(b) and all(
            x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b)), group
    # the logs agree too: per-epoch means are carried across mid-epoch kills exactly
    assert _log(os.path.join(run, "metrics.jsonl")) == _log(
        os.path.join(reference, "metrics.jsonl"))
    return survived


def test_twenty_kills_each_leave_a_valid_latest_and_resume_bit_identically(tmp_path):
    survived = _kill_and_resume(tmp_path, FAST_PLAN)
    assert len(survived) == 20
    assert sum(m == "timer" for m, *_ in survived) == 7
    assert sum(1 for m, *_ in survived if m != "timer") == len(HOOK_MOMENTS)
    print("\n".join(f"killed: {m:55s} latest {b} -> {a}; left behind {left}"
                     for m, b, a, left in survived))


@pytest.mark.slow
def test_forty_kills(tmp_path):
    survived = _kill_and_resume(tmp_path, SLOW_PLAN)
    assert len(survived) == len(SLOW_PLAN) == 40
