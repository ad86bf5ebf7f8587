"""The claims added to input_normalization and batch_size and those of fine_tuning and
augmentation, judged on hand-made tables (supported, contradicted, inconclusive); the
measurements they rest on (sign agreement, whitening, loss jitter, class halves,
masks); and the Variant fields init, trainable and augment on the engine."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.core.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Findings

S, C, I = SUPPORTED, CONTRADICTED, INCONCLUSIVE


def statuses(study: str, table, facts=None, seeds: int = 2) -> list[str]:
    module = importlib.import_module(f"experiments.{study}")
    return [claim.judge(Findings(table, seeds, facts or {})).status for claim in module.STUDY.claims]


def verdicts(study: str, table, facts=None, seeds: int = 2):
    module = importlib.import_module(f"experiments.{study}")
    return [claim.judge(Findings(table, seeds, facts or {})) for claim in module.STUDY.claims]


# ---------------------------------------------------------------------------------
# input_normalization


def _sign_row(example, batch):
    return {"sign_example_init": list(example), "sign_example_train": list(example),
            "sign_batch_init": list(batch), "sign_batch_train": list(batch)}


def test_zig_zag_claims():
    table = {"mlp raw": _sign_row([1.0, 1.0], [0.85, 0.84]),
             "mlp minmax": _sign_row([1.0, 0.99], [0.74, 0.75]),
             "mlp standardized": _sign_row([0.60, 0.61], [0.59, 0.58])}
    assert statuses("input_normalization", table)[1:3] == [S, S]
    # zero-centred inputs as one-signed as all-positive ones; the batch as one-signed as an example
    table["mlp standardized"] = _sign_row([0.97, 0.98], [0.9, 0.9])
    table["mlp raw"] = _sign_row([1.0, 1.0], [1.0, 1.0])
    table["mlp minmax"] = _sign_row([1.0, 1.0], [1.0, 1.0])
    result = verdicts("input_normalization", table)
    assert [r.status for r in result[1:3]] == [C, C]
    assert "mlp standardized 0.975 (expected in [0.5, 0.75])" in result[1].evidence
    # one side not measured (e.g. diverged before any probe): nothing to judge
    table = {"mlp raw": _sign_row([1.0, 1.0], [0.8, 0.8]),
             "mlp standardized": {"sign_example_init": [None, None]}}
    assert statuses("input_normalization", table)[1] == I
    # within the spread over seeds: the difference cannot be told
    table = {"mlp raw": _sign_row([0.76, 0.99], [0.7, 0.99]), "mlp standardized": _sign_row([0.7, 0.74], [0.6, 0.6])}
    assert statuses("input_normalization", table)[1:3] == [I, I]
    assert statuses("input_normalization", {})[1:3] == [I, I]


def _speed_acc(steps, acc):
    return {"steps_to_10": list(steps), "test_accuracy": list(acc)}


def test_whitening_and_nonlinear_claims():
    table = {"raw": _speed_acc([900, 950], [0.80, 0.81]), "standardized": _speed_acc([300, 310], [0.95, 0.951]),
             "pca-whitened": _speed_acc([200, 205], [0.96, 0.961]), "zca-whitened": _speed_acc([150, 152], [0.97, 0.971]),
             "log1p": _speed_acc([400, 410], [0.94, 0.94]), "logistic": _speed_acc([350, 360], [0.95, 0.95]),
             "arctan": _speed_acc([320, 330], [0.95, 0.951])}
    facts = {"budget": 1000}
    assert statuses("input_normalization", table, facts) == [S, I, I, S, S, S, S]
    for name in ("pca-whitened", "zca-whitened"):
        table[name] = _speed_acc([600, 610], [0.90, 0.901])
    for name in ("log1p", "logistic", "arctan"):
        table[name] = _speed_acc([990, 999], [0.5, 0.51])
    assert statuses("input_normalization", table, facts)[3:] == [C, C, C, C]
    # within the spread: "at least as fast" cannot be told from "slightly slower"
    table["pca-whitened"] = table["zca-whitened"] = _speed_acc([250, 350], [0.94, 0.96])
    assert statuses("input_normalization", table, facts)[3:5] == [I, I]
    # one whitening never reaches the target: a censored, decided comparison
    table["zca-whitened"] = _speed_acc([None, None], [0.9, 0.9])
    assert statuses("input_normalization", table, facts)[3] == C
    assert statuses("input_normalization", {"raw": {}}, {})[3:] == [I, I, I, I]


def test_sign_shares_count_the_majority_sign_per_unit():
    from experiments.input_normalization import sign_shares

    grad = jnp.array([[1.0, -1.0, 0.0], [2.0, 1.0, 0.0], [3.0, -2.0, 0.0], [-1.0, 1.0, 0.0]])  # 4 inputs, 3 units
    total, count = sign_shares(grad)
    assert int(count) == 2  # the third unit has no non-zero entry
    assert float(total) == pytest.approx(0.75 + 0.5)


def test_the_sign_probe_on_a_dense_unit_reads_the_input_signs():
    """One example's gradient of a dense unit is f' x: all one sign for x >= 0."""
    import fcnn
    from fcnn.losses import softmax_cross_entropy
    from experiments.input_normalization import sign_probe

    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(16), fcnn.Relu(), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 4, 4, 1))
    x = jax.random.uniform(jax.random.PRNGKey(1), (32, 4, 4, 1))
    y = jnp.arange(32) % 3
    probe = sign_probe(model, softmax_cross_entropy)
    positive = probe(params, state, x, y)
    assert float(positive["sign/example"]) == pytest.approx(1.0)
    assert float(positive["sign/batch"]) < 1.0  # summed over the batch, signs mix
    centred = probe(params, state, x - 0.5, y)
    assert 0.5 <= float(centred["sign/example"]) < 0.75


def test_whitening_decorrelates_the_training_pixels():
    from experiments.input_normalization import fit_whitening

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    train = (rng.normal(size=(4000, 6)) @ mixing).reshape(4000, 2, 3, 1).astype(np.float32)
    for kind in ("pca", "zca"):
        white = fit_whitening(train, kind, eps_fraction=1e-6)(train).reshape(4000, 6)
        assert white.shape == (4000, 6)
        np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(6), atol=2e-3)
    # ZCA stays closest to the input (it is the symmetric whitening)
    zca = fit_whitening(train, "zca", 1e-6)(train).reshape(4000, 6)
    pca = fit_whitening(train, "pca", 1e-6)(train).reshape(4000, 6)
    centred = train.reshape(4000, 6) - train.reshape(4000, 6).mean(0)
    assert np.sum(zca * centred) > np.sum(pca * centred)


def test_nonlinear_maps():
    from experiments.input_normalization import arctan, log1p_scaling, logistic

    raw = np.array([0.0, 15.0, 255.0], np.float32).reshape(1, 3, 1, 1)
    scaled = log1p_scaling(raw)(raw)
    np.testing.assert_allclose(scaled.ravel(), [0.0, np.log(16) / np.log(256), 1.0], rtol=1e-6)
    z = np.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(logistic(z), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(arctan(z), [-1.0, 0.0, 1.0], atol=1e-3)


# ---------------------------------------------------------------------------------
# batch_size


def test_time_and_accuracy_optima_claim():
    facts = {"sizes": (8, 128, 1024), "budget": 4}
    table = {"bs=8": {"time_to_target": [30.0, 31.0], "test_accuracy": [0.990, 0.991]},
             "bs=128": {"time_to_target": [5.0, 5.2], "test_accuracy": [0.980, 0.981]},
             "bs=1024": {"time_to_target": [None, None], "test_accuracy": [0.90, 0.91]}}
    result = verdicts("batch_size", table, facts)[2]
    assert result.status == S
    assert result.numbers == {"time_optimal": "bs=128", "accuracy_optimal": "bs=8"}
    # one size is best at both: contradicted, when it is clearly the most accurate
    table["bs=128"]["test_accuracy"] = [0.995, 0.996]
    assert statuses("batch_size", table, facts)[2] == C
    # ... inconclusive when the next best accuracy is within the spread
    table["bs=8"]["test_accuracy"] = [0.990, 0.999]
    assert statuses("batch_size", table, facts)[2] == I
    # nothing reached the target (the facts of the older claims' tables): inconclusive
    table = {"bs=8": {"test_accuracy": [0.5, 0.5]}, "bs=512": {"test_accuracy": [0.6, 0.6]}}
    assert statuses("batch_size", table, {"sizes": (8, 512), "budget": 11})[2] == I


def _noise_row(jitter, failed):
    return {"loss_jitter": list(jitter), "failed": list(failed)}


def test_small_batch_claims():
    facts = {"noise_sizes": (1, 2, 32), "noise_lr": 0.01}
    table = {"subset bs=1": _noise_row([0.9, 1.0], [1.0, 1.0]), "subset bs=2": _noise_row([0.35, 0.36], [1.0, 1.0]),
             "subset bs=32": _noise_row([0.02, 0.03], [0.0, 0.0])}
    assert statuses("batch_size", table, facts)[3:5] == [S, S]
    table = {"subset bs=1": _noise_row([0.01, 0.01], [0.0, 0.0]), "subset bs=2": _noise_row([0.01, 0.011], [0.0, 0.0]),
             "subset bs=32": _noise_row([0.3, 0.31], [1.0, 1.0])}
    assert statuses("batch_size", table, facts)[3:5] == [C, C]
    # nobody failed at this rate: it cannot tell; every small run failed: no jitter to compare
    table = {"subset bs=1": _noise_row([None, None], [0.0, 0.0]), "subset bs=32": _noise_row([0.02, 0.03], [0.0, 0.0])}
    result = verdicts("batch_size", table, facts)
    assert [r.status for r in result[3:5]] == [I, I]
    assert "a rate too small to tell" in result[4].evidence
    # a failed run's jitter is left out (None); the runs left decide
    table = {"subset bs=1": _noise_row([0.9, None], [0.0, 1.0]), "subset bs=32": _noise_row([0.02, 0.03], [0.0, 0.0])}
    assert statuses("batch_size", table, facts)[3] == S
    assert statuses("batch_size", {}, {})[3:5] == [I, I]


def test_rprop_claims():
    table = {"full-batch rprop": {"loss_ratio": [0.001, 0.002]}, "mini-batch rprop": {"loss_ratio": [2.0, 3.5]},
             "mini-batch rmsprop": {"loss_ratio": [0.001, 0.001]}}
    assert statuses("batch_size", table)[5:] == [S, S]
    # mini-batch Rprop converges and beats RMSProp; full-batch Rprop stalls
    table = {"full-batch rprop": {"loss_ratio": [0.7, 0.8]}, "mini-batch rprop": {"loss_ratio": [0.001, 0.0011]},
             "mini-batch rmsprop": {"loss_ratio": [0.05, 0.06]}}
    assert statuses("batch_size", table)[5:] == [C, C]
    # diverged mini-batch Rprop (no finite loss) counts as failing
    table["mini-batch rprop"] = {"loss_ratio": [None, 0.001]}
    assert statuses("batch_size", table)[6] == S
    table["mini-batch rprop"] = {"loss_ratio": [0.04, 0.07]}
    assert statuses("batch_size", table)[6] == I  # within the spread of RMSProp's
    assert statuses("batch_size", {})[5:] == [I, I]


def test_jitter_ignores_a_steady_trend():
    from experiments.batch_size import jitter

    assert jitter(np.linspace(3.0, 1.0, 20)) == pytest.approx(0.0, abs=1e-12)
    assert jitter([1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.0]) == pytest.approx(np.std([1, -1, 1, -1], ddof=1))
    assert jitter([1.0, np.nan, np.nan, np.nan]) is None


# ---------------------------------------------------------------------------------
# fine_tuning


def _regimes(few, many):
    table = {}
    for size, accs in (("few", few), ("all", many)):
        for regime, acc in zip(("features", "last", "all", "scratch"), accs):
            table[f"{regime} ({size})"] = {"test_accuracy": [acc, acc + 0.002]}
    return table


def test_fine_tuning_claims():
    table = _regimes(few=(0.90, 0.92, 0.85, 0.70), many=(0.93, 0.96, 0.99, 0.97))
    result = verdicts("fine_tuning", table)
    assert [r.status for r in result] == [S, S, S]
    assert result[0].numbers["best"] == "last" and result[0].numbers["best_other"] == "all"
    table = _regimes(few=(0.70, 0.75, 0.95, 0.96), many=(0.99, 0.98, 0.93, 0.995))
    assert statuses("fine_tuning", table) == [C, C, C]
    table = _regimes(few=(0.90, 0.90, 0.90, 0.90), many=(0.95, 0.95, 0.95, 0.95))
    for row in table.values():
        row["test_accuracy"] = [row["test_accuracy"][0] - 0.02, row["test_accuracy"][0] + 0.02]
    assert statuses("fine_tuning", table) == [I, I, I]
    assert statuses("fine_tuning", {}) == [I, I, I]


def test_class_halves_are_relabelled_and_cut_per_class():
    from fcnn.data import Split
    from experiments.fine_tuning import TARGET, classes_split

    labels = np.repeat(np.arange(10, dtype=np.int32), 6)
    split = Split(np.arange(60, dtype=np.float32).reshape(60, 1, 1, 1), labels)
    few = classes_split(split, TARGET, per_class=2)
    assert sorted(few.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert np.all(labels[few.images.ravel().astype(int)] == few.labels + 5)
    assert np.all(np.diff(few.images.ravel()) > 0)  # original order kept
    assert classes_split(split, TARGET).labels.shape == (30,)


def test_regime_masks():
    from fcnn.models import refnet
    from experiments.fine_tuning import mask_of, weight_paths

    _, params, _ = refnet(5, widths=(4, 8), hidden=16).init(jax.random.PRNGKey(0), (-1, 8, 8, 1))
    paths = weight_paths(params)
    trained = lambda regime: {p for p in paths if all(jax.tree_util.tree_leaves(  # noqa: E731
        _at(mask_of(regime, params), p)))}
    assert trained("features") == {paths[-1]}
    assert trained("last") == set(paths[-2:])
    assert not any(jax.tree_util.tree_leaves(_at(mask_of("last", params), paths[0])))
    assert mask_of("all", params) is None and mask_of("scratch", params) is None


def _at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


# ---------------------------------------------------------------------------------
# augmentation


def test_augmentation_claims():
    table = {"none": {"gap": [0.20, 0.21]}, "crop": {"gap": [0.10, 0.11]}, "noise": {"gap": [0.15, 0.16]},
             "all": {"gap": [0.05, 0.06]}}
    facts = {"skipped": ("flip", "jitter", "pca")}
    result = verdicts("augmentation", table, facts)
    assert [r.status for r in result] == [S, S]
    assert "left out: flip, jitter, pca (grayscale images)" in result[0].evidence
    assert "crop [supported]" in result[0].evidence
    table = {"none": {"gap": [0.05, 0.06]}, "crop": {"gap": [0.10, 0.11]}, "noise": {"gap": [0.15, 0.16]},
             "all": {"gap": [0.20, 0.21]}}
    assert statuses("augmentation", table) == [C, C]
    # one augmentation narrows it, one does not: "each" is contradicted; within the spread: inconclusive
    table = {"none": {"gap": [0.20, 0.21]}, "crop": {"gap": [0.10, 0.11]}, "noise": {"gap": [0.30, 0.31]},
             "all": {"gap": [0.08, 0.13]}}
    assert statuses("augmentation", table) == [C, I]
    table["noise"] = {"gap": [0.15, 0.25]}
    assert statuses("augmentation", table)[0] == I
    assert statuses("augmentation", {"none": {"gap": [0.2, 0.2]}}) == [I, I]


def test_grayscale_leaves_out_flip_and_colour():
    from experiments.augmentation import applicable

    assert applicable(("crop", "flip", "jitter", "pca", "noise", "all"), 1) == (
        ("crop", "noise", "all"), ("flip", "jitter", "pca"))
    assert applicable(("crop", "flip", "all"), 3) == (("crop", "flip", "all"), ())


# ---------------------------------------------------------------------------------
# The Variant fields init, trainable and augment


def test_variant_init_trainable_and_augment_on_the_engine():
    """A given init is where training starts; frozen leaves stay bit-identical; the
    augmentation runs inside the step, on the images the loss sees."""
    import fcnn
    from fcnn.train import trainable_mask
    from experiments.core import config, study
    from experiments.core.training import DataStore, Variant, train_variant

    conf = config.resolve(study.Config, study.Study("t", "", study.Config, (), None).parser().parse_args(["--quick"]))
    data = DataStore(conf)
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(8), fcnn.Relu(), fcnn.Dense(10))
    _, start, state = model.init(jax.random.PRNGKey(7), (-1, 8, 8, 1))
    start = jax.tree.map(lambda a: a + 0.01, start)  # not what model.init gives
    mask = trainable_mask(start, "last")
    (result,) = train_variant(Variant(name="v", model=model, init=lambda seed: (start, state), trainable=mask),
                              conf, data)
    final = jax.tree.map(lambda a: a[0], result.params)
    np.testing.assert_array_equal(final["1"]["kernel"], start["1"]["kernel"])  # frozen
    assert not np.array_equal(final["3"]["kernel"], start["3"]["kernel"])  # trained
    # blank images: the first step sees logits = zero biases, a loss of exactly ln 10
    (blank,) = train_variant(Variant(name="b", model=model, augment=lambda rng, image: jnp.zeros_like(image)),
                             conf, data)
    (plain,) = train_variant(Variant(name="p", model=model), conf, data)
    assert blank.step["loss"][0, 0] == pytest.approx(np.log(10), rel=1e-6)
    assert abs(plain.step["loss"][0, 0] - np.log(10)) > 1e-3
