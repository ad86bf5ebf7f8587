"""Ctrl-C (a real SIGINT) sent to `python -m fcnn.main` at any moment: while Python
starts, while JAX imports, while the step compiles, while it trains and while it
writes a checkpoint. Every time the process must end with code 130 and a short
message (no traceback, no crash signal), and the run folder must hold only
complete checkpoints that `--resume` continues from.

The fast test interrupts once, mid-training; the slow one (`make test-slow`) twenty
times in a row at moments spread over the whole run, since a crash at exit (JAX work
in flight while the interpreter finalizes, see fcnn/program.py) showed up in about
one run in ten before `program.end` was written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fcnn.train import list_checkpoints

# A run long enough that no interrupt comes after its end.
ARGV = ["--epochs", "200", "--batch-size", "64", "--seed", "3", "--quiet",
        "--checkpoint-every", "5"]


def _start(out):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, "-m", "fcnn.main", *ARGV, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _interrupt(proc, what: str):
    """Sends SIGINT; returns (exit code, stdout, stderr); fails on a hang."""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{what}: still running 120 s after Ctrl-C\n{err[-3000:]}")
    return proc.returncode, out, err


def _check_interrupted(code, out, err, run_dir, what: str):
    assert code == 130, f"{what}: exit code {code}, expected 130\n{err[-3000:]}"
    assert "Traceback" not in err and "Fatal Python error" not in err, f"{what}:\n{err}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and "interrupted" in err, f"{what}: message\n{err}"
    ckpt_dir = run_dir / "checkpoints"
    for path in list_checkpoints(ckpt_dir):
        with np.load(path.removesuffix(".json") + ".npz", allow_pickle=False) as arrays:
            assert len(arrays.files) > 0, path
    if ckpt_dir.exists():
        leftovers = [n for n in os.listdir(ckpt_dir) if not n.startswith("ckpt_")]
        assert not leftovers, f"{what}: half-written files left behind: {leftovers}"


def _wait_for_checkpoint(proc, ckpt_dir, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before training: {proc.communicate()[1][-3000:]}")
        if list_checkpoints(ckpt_dir):
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no checkpoint after 180 s")


def test_ctrl_c_mid_training_exits_130_and_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    _wait_for_checkpoint(proc, run_dir / "checkpoints")
    time.sleep(0.3)
    code, out, err = _interrupt(proc, "mid-training")
    _check_interrupted(code, out, err, run_dir, "mid-training")
    assert "--resume" in err  # the message says how to continue
    stopped = len(list_checkpoints(run_dir / "checkpoints"))
    assert stopped >= 1

    resumed = subprocess.run(
        [sys.executable, "-m", "fcnn.main", "--epochs", "1", "--batch-size", "64", "--seed",
         "3", "--quiet", "--out", str(run_dir), "--resume"],
        capture_output=True, text=True, timeout=300)
    # One epoch is 22 steps: the interrupted run is past it, so resuming ends at once
    # with its report, or the checkpoint is earlier and the epoch finishes.
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "test accuracy" in resumed.stdout


@pytest.mark.slow
def test_twenty_interrupts_in_a_row_all_exit_130(tmp_path):
    # Moments from 0.2 s (Python starting) to 12 s (training, checkpoints every 5
    # steps), the same on every run of the test.
    moments = np.linspace(0.2, 12.0, 20)
    for i, moment in enumerate(moments):
        run_dir = tmp_path / f"run{i}"
        proc = _start(run_dir)
        time.sleep(moment)
        what = f"interrupt {i + 1} of 20, at {moment:.1f} s"
        if proc.poll() is not None:
            pytest.fail(f"{what}: the run ended by itself with {proc.returncode}")
        code, out, err = _interrupt(proc, what)
        _check_interrupted(code, out, err, run_dir, what)
