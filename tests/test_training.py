"""The studies' trainer and output: smoothing and targets, layer labels, summaries,
output folders, grid search, and population (vmap) training against one seed at a
time."""

import dataclasses
import functools
import json
import os

import numpy as np
import pytest

import fcnn
from experiments.core import probes, report, study, training
from experiments.core.claims import Claim, Judgement, SUPPORTED
from experiments.core.config import Config
from experiments.core.search import grid_search
from fcnn.train import optimizers


def test_trailing_mean_by_hand():
    values = np.array([[4.0, 2.0, 0.0, 2.0, 4.0]])
    # windows of 2: [4], [4, 2], [2, 0], [0, 2], [2, 4]
    np.testing.assert_allclose(training.trailing_mean(values, 2), [[4.0, 3.0, 1.0, 1.0, 3.0]])
    np.testing.assert_allclose(training.trailing_mean(values, 1), values)
    np.testing.assert_allclose(training.trailing_mean(values, 10), [[4.0, 3.0, 2.0, 2.0, 2.4]])


def test_steps_to_and_first_at_least():
    curve = np.array([0.9, 0.5, 0.3, 0.2, 0.4])
    assert training.steps_to(curve, 0.3) == 3
    assert training.steps_to(curve, 0.1) is None
    assert training.steps_to(np.array([np.nan, 0.1]), 0.2) == 2
    assert training.first_at_least(np.array([0.1, 0.5, 0.95]), 0.9) == 2
    assert training.first_at_least(np.array([0.1]), 0.9) is None
    assert report.target_key(0.25) == "steps_to_25"


def test_weight_layers_label_in_forward_order():
    params = {str(i): {} for i in range(12)}
    params["0"] = {"kernel": np.zeros((3, 3, 1, 4)), "bias": np.zeros(4)}
    params["2"] = {"kernel": np.zeros((3, 3, 4, 8))}
    params["10"] = {"kernel": np.zeros((8, 2))}  # "10" sorts before "2" as a string
    params["4"] = {"slope": np.zeros(8)}
    params["7"] = {"0": {"kernel": np.zeros((32, 8))}}
    assert probes.weight_layers(params) == {"0": "conv1", "2": "conv2", "7/0": "dense1", "10": "dense2"}


def test_stat_and_format():
    s = report.stat([1.0, 3.0, None])
    assert (s["mean"], s["n"], s["seeds"], s["min"], s["max"]) == (2.0, 2, 3, 1.0, 3.0)
    assert s["std"] == pytest.approx(np.sqrt(2.0))
    assert report.format_stat(s, ".2f") == "2.00 ± 1.41 (2/3)"
    assert report.format_stat(report.stat([None, None])) == "not reached"
    assert report.format_stat(report.stat([0.5])) == "0.5"


def test_new_run_dir_never_reuses_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "timestamp", lambda: "20250101-000000")
    first = report.new_run_dir(str(tmp_path), "study")
    (tmp_path / "study" / "20250101-000000" / "keep.txt").write_text("old")
    second = report.new_run_dir(str(tmp_path), "study")
    third = report.new_run_dir(str(tmp_path), "study")
    assert len({first, second, third}) == 3
    assert (tmp_path / "study" / "20250101-000000" / "keep.txt").read_text() == "old"
    assert os.path.basename(second) == "20250101-000000-1"


def _tiny_mlp():
    return fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dense(10))


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return Config(epochs=2, seeds=2, batch_size=32, lr=0.05, out=str(out), quick=True)


@pytest.fixture(scope="module")
def store(quick_config):
    return training.DataStore(quick_config)


def test_population_equals_one_seed_at_a_time(quick_config, store):
    """Seeds trained as one vmapped population and trained one after another give the
    same per-seed losses, accuracies and parameters (the same data order for all)."""
    variant = training.Variant(name="mlp", model=_tiny_mlp(), lr=(0.05, 0.2), probe=probes.units_probe)
    assert training.use_vmap(variant, quick_config)  # "auto": an MLP is batched
    batched = training.train_variant(variant, quick_config, store)
    sequential = training.train_variant(variant, dataclasses.replace(quick_config, population="sequential"),
                                        store)
    assert [r.name for r in batched] == ["mlp lr=0.05", "mlp lr=0.2"]
    for a, b in zip(batched, sequential):
        assert a.lr == b.lr and a.seeds == [0, 1]
        steps = 2 * (training.QUICK_SIZES["train_size"] // 32)
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


def test_a_study_member_equals_fit_with_its_seed(quick_config, store):
    """The studies and fit run on one engine: the member with seed 0 of a study is fit
    with seed 0 (init PRNGKey(0), the data order of seed 0, step keys fold_in(PRNGKey(0),
    t)), step for step; dropout makes the keys matter."""
    import jax
    from fcnn.losses import softmax_cross_entropy

    data = store.get()
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dropout(0.2), fcnn.Dense(10))
    variant = training.Variant(name="mlp", model=model, lr=0.05)
    (member,) = training.train_variant(variant, dataclasses.replace(quick_config, seeds=1), store)
    assert training.DATA_ORDER_SEED == 0
    _, params, state = model.init(jax.random.PRNGKey(0), (-1,) + tuple(data.image_shape))
    fitted = fcnn.train.fit(model, softmax_cross_entropy, optimizers.momentum(0.05), params, state,
                            data.train, epochs=2, batch_size=32, seed=0, progress=False)
    np.testing.assert_allclose(member.params["4"]["kernel"][0], fitted.params["4"]["kernel"],
                               rtol=1e-5, atol=1e-6)
    spe = member.steps_per_epoch
    np.testing.assert_allclose([member.step["loss"][0, :spe].mean(), member.step["loss"][0, spe:].mean()],
                               [h["train_loss"] for h in fitted.history], rtol=1e-5)


def _session(quick_config, claims=()):
    tiny = study.Study(name="unit", description="a unit test", config=Config, claims=tuple(claims),
                       run=lambda session: study.Outcome())
    session = study.Session(tiny, quick_config)
    session.open()
    return session


def test_session_writes_results_as_variants_finish(quick_config):
    session = _session(quick_config, [Claim("always", lambda f: Judgement(SUPPORTED, "by hand"))])
    variant = training.Variant(name="mlp", model=_tiny_mlp())
    session.train([variant], targets=(0.5,))
    with open(session.path("summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "running"
    assert set(summary["variants"]["mlp"]) >= {"test_accuracy", "steps_to_50", "train_time", "stable"}
    with open(session.path("metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert {row["kind"] for row in rows} == {"step", "epoch", "summary"}  # no probe was asked for
    assert sum(row["kind"] == "step" for row in rows) == 2 * session.results["mlp"].total_steps
    session.finish(study.Outcome(metrics={"mlp": {"extra": [1.0, 2.0]}},
                                 columns=[report.Column("extra", "extra")]))
    with open(session.path("summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "complete" and summary["variants"]["mlp"]["extra"]["mean"] == 1.5
    assert summary["claims"][0]["status"] == SUPPORTED
    text = open(session.path("report.md")).read()
    assert "| mlp | 1.5 ± 0.707 |" in text and "**supported**: always" in text


def test_grid_search_over_learning_rates_uses_validation(quick_config):
    session = _session(dataclasses.replace(quick_config, seeds=1))
    best, trials = grid_search(session, "lr", lambda params: training.Variant(name="mlp", model=_tiny_mlp()),
                               {"lr": [1e-4, 0.1]})
    assert [t[0] for t in trials] == [{"lr": 1e-4}, {"lr": 0.1}]
    scores = [t[1] for t in trials]
    assert best == max(zip(scores, [{"lr": 1e-4}, {"lr": 0.1}]), key=lambda t: t[0])[1]
    assert session.searches["lr"]["score"] == "validation_accuracy"
    with open(session.path("metrics.jsonl")) as f:
        phases = {json.loads(line)["phase"] for line in f}
    assert phases == {"search:lr"}
    assert session.table == {}  # tuning runs never enter the results table


def test_grid_search_over_other_options_trains_one_variant_each(quick_config):
    session = _session(dataclasses.replace(quick_config, seeds=1, epochs=1))

    def make(params):
        return training.Variant(name="mlp", model=_tiny_mlp(),
                                optimizer=functools.partial(optimizers.momentum, momentum=params["momentum"]))

    best, trials = grid_search(session, "m", make, {"momentum": (0.0, 0.9)})
    assert [t[0] for t in trials] == [{"momentum": 0.0}, {"momentum": 0.9}]
    assert best in [t[0] for t in trials] and all(t[1] is not None for t in trials)


def test_auto_population_batches_mlps_and_not_convolutions_on_cpu():
    config = Config()
    cnn = training.Variant(name="c", model=fcnn.serial(fcnn.Conv(4, 3), fcnn.Relu(), fcnn.Flatten(), fcnn.Dense(2)))
    nested = training.Variant(name="n", model=fcnn.serial(fcnn.serial(fcnn.Conv(4, 3)), fcnn.Flatten()))
    wrapped = training.Variant(name="w", model=fcnn.serial(fcnn.WeightNorm(fcnn.Conv(4, 3)), fcnn.Flatten()))
    mlp = training.Variant(name="m", model=_tiny_mlp())
    for variant in (cnn, nested, wrapped):
        assert training.has_convolution(variant.model)
    assert not training.has_convolution(mlp.model)
    assert training.use_vmap(mlp, config)
    assert training.use_vmap(cnn, config) == (training.jax.default_backend() != "cpu")
    assert training.use_vmap(cnn, dataclasses.replace(config, population="vmap"))
    assert not training.use_vmap(mlp, dataclasses.replace(config, population="sequential"))
    assert not training.use_vmap(dataclasses.replace(mlp, vmap=False), dataclasses.replace(config, population="vmap"))
