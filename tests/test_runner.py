"""The experiment runner: smoothing and targets, layer labels, summaries, output
folders, search samplers, and population (vmap) training against one seed at a time."""

import dataclasses
import json
import os

import numpy as np
import pytest

import fcnn
from experiments import runner


def test_trailing_mean_by_hand():
    values = np.array([[4.0, 2.0, 0.0, 2.0, 4.0]])
    # windows of 2: [4], [4, 2], [2, 0], [0, 2], [2, 4]
    np.testing.assert_allclose(runner.trailing_mean(values, 2), [[4.0, 3.0, 1.0, 1.0, 3.0]])
    np.testing.assert_allclose(runner.trailing_mean(values, 1), values)
    np.testing.assert_allclose(runner.trailing_mean(values, 10), [[4.0, 3.0, 2.0, 2.0, 2.4]])


def test_steps_to_and_first_at_least():
    curve = np.array([0.9, 0.5, 0.3, 0.2, 0.4])
    assert runner.steps_to(curve, 0.3) == 3
    assert runner.steps_to(curve, 0.1) is None
    assert runner.steps_to(np.array([np.nan, 0.1]), 0.2) == 2
    assert runner.first_at_least(np.array([0.1, 0.5, 0.95]), 0.9) == 2
    assert runner.first_at_least(np.array([0.1]), 0.9) is None
    assert runner.target_key(0.25) == "steps_to_25"


def test_weight_layers_label_in_forward_order():
    params = {str(i): {} for i in range(12)}
    params["0"] = {"kernel": np.zeros((3, 3, 1, 4)), "bias": np.zeros(4)}
    params["2"] = {"kernel": np.zeros((3, 3, 4, 8))}
    params["10"] = {"kernel": np.zeros((8, 2))}  # "10" sorts before "2" as a string
    params["4"] = {"slope": np.zeros(8)}
    params["7"] = {"0": {"kernel": np.zeros((32, 8))}}
    assert runner.weight_layers(params) == {"0": "conv1", "2": "conv2", "7/0": "dense1", "10": "dense2"}


def test_stat_and_format():
    s = runner.stat([1.0, 3.0, None])
    assert (s["mean"], s["n"], s["seeds"], s["min"], s["max"]) == (2.0, 2, 3, 1.0, 3.0)
    assert s["std"] == pytest.approx(np.sqrt(2.0))
    assert runner.format_stat(s, ".2f") == "2.00 ± 1.41 (2/3)"
    assert runner.format_stat(runner.stat([None, None])) == "not reached"
    assert runner.format_stat(runner.stat([0.5])) == "0.5"


def test_new_run_dir_never_reuses_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "timestamp", lambda: "20250101-000000")
    first = runner.new_run_dir(str(tmp_path), "study")
    (tmp_path / "study" / "20250101-000000" / "keep.txt").write_text("old")
    second = runner.new_run_dir(str(tmp_path), "study")
    third = runner.new_run_dir(str(tmp_path), "study")
    assert len({first, second, third}) == 3
    assert (tmp_path / "study" / "20250101-000000" / "keep.txt").read_text() == "old"
    assert os.path.basename(second) == "20250101-000000-1"


def test_samplers():
    rng = np.random.default_rng(0)
    draws = [runner.LogUniform(1e-3, 1e-1).draw(rng) for _ in range(200)]
    assert min(draws) >= 1e-3 and max(draws) <= 1e-1
    # log-uniform: about half the draws below the geometric midpoint 1e-2
    assert 0.35 < np.mean(np.asarray(draws) < 1e-2) < 0.65
    assert runner.Choice((1, 2)).draw(rng) in (1, 2)
    assert 0 <= runner.Uniform(0.0, 1.0).draw(rng) <= 1
    with pytest.raises(ValueError, match="0 < low < high"):
        runner.LogUniform(0.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        runner.Uniform(1.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        runner.Choice(())


def _tiny_mlp():
    return fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dense(10))


@pytest.fixture(scope="module")
def quick_settings(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return runner.Settings(study="unit", epochs=2, seeds=2, batch_size=32, lr=0.05, out=str(out), quick=True)


@pytest.fixture(scope="module")
def store(quick_settings):
    return runner.DataStore(quick_settings)


def test_population_equals_one_seed_at_a_time(quick_settings, store):
    """Seeds trained as one vmapped population and trained one after another give the
    same per-seed losses, accuracies and parameters (the same data order for all)."""
    variant = runner.Variant(name="mlp", model=_tiny_mlp(), lr=(0.05, 0.2), probe=runner.units_probe)
    assert runner.use_vmap(variant, quick_settings)  # "auto": an MLP is batched
    batched = runner.train_variant(variant, quick_settings, store)
    sequential = runner.train_variant(variant, dataclasses.replace(quick_settings, population="sequential"),
                                      store)
    assert [r.name for r in batched] == ["mlp lr=0.05", "mlp lr=0.2"]
    for a, b in zip(batched, sequential):
        assert a.lr == b.lr and a.seeds == [0, 1]
        steps = 2 * (runner.QUICK["train_size"] // 32)
        assert a.step["loss"].shape == (2, steps) and a.total_steps == steps
        np.testing.assert_allclose(a.step["loss"], b.step["loss"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.epoch["test_accuracy"], b.epoch["test_accuracy"], atol=1e-6)
        np.testing.assert_allclose(a.params["1"]["kernel"], b.params["1"]["kernel"], rtol=1e-4, atol=1e-5)
        assert a.epoch["test_accuracy"].shape == (2, 3)  # initialisation + 2 epochs
        assert set(a.probes) >= {"grad/dense1", "grad/dense2", "dead/dense1", "active/dense1"}
    # the two seeds start from different weights, the two rates train differently
    assert not np.allclose(batched[0].params["1"]["kernel"][0], batched[0].params["1"]["kernel"][1])
    assert not np.allclose(batched[0].step["loss"], batched[1].step["loss"])
    # the learning rate each member trained with is the one it was given
    np.testing.assert_allclose(batched[1].step["learning_rate"], 0.2, rtol=1e-6)


def test_run_writes_results_as_variants_finish(quick_settings):
    run = runner.Run(quick_settings, "a unit test")
    run.open()
    variant = runner.Variant(name="mlp", model=_tiny_mlp())
    run.plan([variant])
    run.train([variant], targets=(0.5,))
    with open(run.path("summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "running"
    assert set(summary["variants"]["mlp"]) >= {"test_accuracy", "steps_to_50", "train_time", "stable"}
    with open(run.path("metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    kinds = {row["kind"] for row in rows}
    assert kinds == {"step", "epoch", "summary"}  # no probe was asked for
    assert sum(row["kind"] == "step" for row in rows) == 2 * run.results["mlp"].total_steps
    run.finish()
    with open(run.path("summary.json")) as f:
        assert json.load(f)["status"] == "complete"
    assert "| mlp |" in open(run.path("report.md")).read()


def test_grid_search_over_learning_rates_uses_validation(quick_settings):
    run = runner.Run(quick_settings)
    run.open()
    best, trials = run.grid_search("lr", lambda params: runner.Variant(name="mlp", model=_tiny_mlp()),
                                   {"lr": [1e-4, 0.1]}, seeds=1)
    assert [t[0] for t in trials] == [{"lr": 1e-4}, {"lr": 0.1}]
    scores = [t[1] for t in trials]
    assert best == max(zip(scores, [{"lr": 1e-4}, {"lr": 0.1}]), key=lambda t: t[0])[1]
    assert run.searches["lr"]["score"] == "validation_accuracy"
    with open(run.path("metrics.jsonl")) as f:
        phases = {json.loads(line)["phase"] for line in f}
    assert phases == {"search:lr"}
    assert run.table == {}  # tuning runs never enter the results table


def test_random_search_draws_and_scores_each_trial(quick_settings):
    run = runner.Run(quick_settings)
    run.open()

    def make(params):
        return runner.Variant(name="mlp", model=_tiny_mlp(), lr=params.get("lr"),
                              optimizer_kwargs={"momentum": params.get("momentum", 0.9)})

    best, trials = run.random_search("rs", make, {"lr": runner.LogUniform(1e-3, 1e-1),
                                                  "momentum": runner.Choice((0.0, 0.9))}, 2, seed=3)
    assert len(trials) == 2 and best in [t[0] for t in trials]
    assert all(1e-3 <= t[0]["lr"] <= 1e-1 for t in trials)


def test_auto_population_batches_mlps_and_not_convolutions_on_cpu():
    settings = runner.Settings(study="s")
    cnn = runner.Variant(name="c", model=fcnn.serial(fcnn.Conv(4, 3), fcnn.Relu(), fcnn.Flatten(), fcnn.Dense(2)))
    nested = runner.Variant(name="n", model=fcnn.serial(fcnn.serial(fcnn.Conv(4, 3)), fcnn.Flatten()))
    mlp = runner.Variant(name="m", model=_tiny_mlp())
    assert runner.has_convolution(cnn.model) and runner.has_convolution(nested.model)
    assert not runner.has_convolution(mlp.model)
    assert runner.use_vmap(mlp, settings)
    assert runner.use_vmap(cnn, settings) == (runner.jax.default_backend() != "cpu")
    assert runner.use_vmap(cnn, dataclasses.replace(settings, population="vmap"))
    assert not runner.use_vmap(mlp, dataclasses.replace(settings, population="sequential"))
    assert not runner.use_vmap(dataclasses.replace(mlp, vmap=False), dataclasses.replace(settings, population="vmap"))
