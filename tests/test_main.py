"""`make run` (python -m fcnn.main) in a quick setting, and its argument errors."""

import json
import os
import re
import subprocess
import sys

import pytest

from fcnn import main as main_module


def test_quick_run_trains_reports_accuracy_and_writes_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code = main_module.main(["--epochs", "2", "--batch-size", "64", "--lr", "0.003",
                             "--seed", "1", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy (\d+\.\d+)%", printed).group(1))
    assert accuracy > 90.0, printed
    checkpoints = sorted(os.listdir(out / "checkpoints"))
    assert checkpoints[-2:] == ["ckpt_00000044.json", "ckpt_00000044.npz"]  # 2 x 1438 // 64
    lines = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[-1]["eval_accuracy"] == pytest.approx(accuracy / 100, abs=1e-4)


@pytest.mark.parametrize("argv, match", [
    (["--lr", "0"], r"argument --lr: '0': expected a positive finite number"),
    (["--lr", "fast"], r"argument --lr: 'fast' is not a number"),
    (["--epochs", "-3"], r"argument --epochs: '-3': expected a positive integer"),
    (["--batch-size", "x"], r"argument --batch-size: 'x' is not an integer"),
    (["--dataset", "imagenet"], r"argument --dataset: invalid choice: 'imagenet'"),
    (["--dataset", "mnist", "--data-dir", "/no/such/dir"], r"does not exist"),
    (["--batch-size", "5000"], r"--batch-size 5000 is larger than the 1438 training examples"),
    (["--colour", "red"], r"unrecognized arguments: --colour red"),
])
def test_bad_arguments_exit_2_with_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main_module.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(match, err), err


def test_module_entry_point_exit_code():
    """A real process: `python -m fcnn.main` with a bad value exits 2 before importing JAX."""
    proc = subprocess.run([sys.executable, "-m", "fcnn.main", "--lr", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("python -m fcnn.main: error: argument --lr")
