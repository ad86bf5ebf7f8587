"""The CIFAR-10 recipe on a small subset of the real images: it trains, evaluates,
keeps the best checkpoint, writes its summary and curve, and resumes."""

import json
import os

import pytest

from fcnn.recipes import cifar10

pytestmark = pytest.mark.data


def test_recipe_trains_reports_and_resumes(cifar10_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--model", "refnet", "--epochs", "2", "--train-size", "1024", "--test-size", "500", "--batch-size", "128",
            "--data-dir", str(cifar10_dir), "--out", str(out), "--quiet"]
    assert cifar10.main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "results in" in printed
    summary = json.load(open(out / "summary.json"))
    assert len(summary["history"]) == 2 and 0.1 < summary["final_test_accuracy"] <= 1.0
    assert set(summary["time_to"]) == {"85%", "90%", "91.25%"}
    assert summary["dataset"] == {"name": "cifar10", "train": 1024, "test": 500, "image_shape": [32, 32, 3],
                                  "num_classes": 10}
    assert os.path.getsize(out / "curve.png") > 1000
    report = (out / "report.md").read_text()
    assert f"| final test accuracy | {100 * summary['final_test_accuracy']:.2f}% |" in report
    assert summary["command"] in report
    assert os.listdir(out / "checkpoints" / "best")
    # two more epochs of the same run
    assert cifar10.main(argv[:2] + ["--epochs", "3"] + argv[4:] + ["--resume"]) == 0
    assert len(json.load(open(out / "summary.json"))["history"]) == 3


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cifar10.main(["--model", "resnet21"])
    assert info.value.code == 2 and "invalid choice: 'resnet21'" in capsys.readouterr().err
