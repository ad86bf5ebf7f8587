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


def test_recipe_in_bfloat16(cifar10_dir, tmp_path):
    out = tmp_path / "run"
    assert cifar10.main(["--model", "refnet", "--precision", "bfloat16", "--epochs", "1", "--train-size", "512",
                         "--test-size", "256", "--data-dir", str(cifar10_dir), "--out", str(out), "--quiet"]) == 0
    summary = json.load(open(out / "summary.json"))
    assert summary["settings"]["precision"] == "bfloat16" and 0.0 < summary["final_test_accuracy"] <= 1.0
    assert "bfloat16 compute" in (out / "report.md").read_text()


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cifar10.main(["--model", "resnet21"])
    assert info.value.code == 2 and "invalid choice: 'resnet21'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cifar10.main(["--precision", "float16"])
    assert info.value.code == 2 and "invalid choice: 'float16'" in capsys.readouterr().err


def test_bfloat16_precision_computes_in_bfloat16_with_float32_weights():
    import jax
    import jax.numpy as jnp
    import numpy as np

    plain, low = cifar10.model_for("refnet"), cifar10.model_for("refnet", "bfloat16")
    _, params, state = plain.init(jax.random.PRNGKey(0), (-1, 32, 32, 3))
    _, low_params, _ = low.init(jax.random.PRNGKey(0), (-1, 32, 32, 3))
    same = jax.tree.map(lambda a, b: np.array_equal(a, b) and a.dtype == b.dtype == jnp.float32,
                              params, low_params)
    assert all(jax.tree.leaves(same))  # same float32 weights, same checkpoints
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3))
    want, _ = plain.apply(params, state, x, train=False)
    got, _ = low.apply(params, state, x, train=False)
    assert got.dtype == jnp.float32
    difference = float(jnp.max(jnp.abs(got - want)))
    # bfloat16 keeps 8 mantissa bits: close to the float32 logits, but not equal to them
    assert 0 < difference < 0.05 * float(jnp.max(jnp.abs(want))) + 0.05
