"""Claim checking on hand-made metric tables: each claim supported, contradicted, and
undecidable when the numbers cannot decide."""

import math

import pytest

from experiments import verdicts as v
from experiments.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED


def test_reductions_over_seeds():
    assert v.mean([1.0, 2.0, 3.0]) == 2.0
    assert v.mean([1.0, None]) is None
    assert v.mean([1.0, float("nan")]) is None
    assert v.mean([]) is None
    assert v.spread([1.0, 3.0]) == pytest.approx(math.sqrt(2.0))
    assert v.spread([5.0]) == 0.0
    assert v.finite([1, None, float("inf"), 2]) == [1.0, 2.0]


def test_verdict_rejects_unknown_status():
    with pytest.raises(ValueError, match="status='maybe'"):
        v.Verdict("c", "maybe", "e")


def test_faster_supported_contradicted_and_censored():
    table = {"a": {"steps": [10, 12]}, "b": {"steps": [40, 44]}}
    assert v.faster("a beats b", table, ["a"], ["b"], "steps", budget=100).status == SUPPORTED
    result = v.faster("b beats a", table, ["b"], ["a"], "steps", budget=100)
    assert result.status == CONTRADICTED
    assert result.numbers["ratio"] == pytest.approx(11 / 42)
    # b never reaches the target: a is faster, and b's steps are a lower bound
    censored = {"a": {"steps": [10, 12]}, "b": {"steps": [None, None]}}
    result = v.faster("a beats b", censored, ["a"], ["b"], "steps", budget=100)
    assert result.status == SUPPORTED and ">= 100" in result.evidence
    assert "ratio >= 9.09x" in result.evidence  # 100 / 11: a bound, b never reached
    assert v.faster("b beats a", censored, ["b"], ["a"], "steps", budget=100).status == CONTRADICTED
    noisy = {"a": {"steps": [10, 30]}, "b": {"steps": [25, 35]}}
    result = v.faster("a beats b", noisy, ["a"], ["b"], "steps", budget=100)
    assert result.status == INCONCLUSIVE and "within the spread" in result.evidence
    neither = {"a": {"steps": [None]}, "b": {"steps": [None]}}
    assert v.faster("x", neither, ["a"], ["b"], "steps", budget=100).status == INCONCLUSIVE
    assert v.faster("x", table, ["missing"], ["b"], "steps", budget=100).status == INCONCLUSIVE


def test_smaller_is_inconclusive_within_the_seed_spread():
    assert v.smaller("c", "a", [1.0, 1.1], "b", [5.0, 5.1]).status == SUPPORTED
    assert v.smaller("c", "a", [5.0, 5.1], "b", [1.0, 1.1]).status == CONTRADICTED
    noisy = v.smaller("c", "a", [1.0, 3.0], "b", [2.0, 2.2])
    assert noisy.status == INCONCLUSIVE and "spread" in noisy.evidence
    assert v.smaller("c", "a", [None], "b", [1.0]).status == INCONCLUSIVE


def test_decreasing_and_within():
    assert v.decreasing("c", "g", [1.0, 0.5, 0.1]).status == SUPPORTED
    result = v.decreasing("c", "g", [1.0, 0.5, 0.7])
    assert result.status == CONTRADICTED
    assert result.numbers["ratios"] == pytest.approx([0.5, 1.4])
    assert v.decreasing("c", "g", [1.0, None]).status == INCONCLUSIVE
    assert v.within("c", "x", [1.0], 0.5, 2.0).status == SUPPORTED
    assert v.within("c", "x", [3.0], 0.5, 2.0).status == CONTRADICTED


def _activation_table(relu_steps, tanh_steps, sigmoid_steps, sigmoid_grad):
    table = {}
    for name, steps, grad in (("relu", relu_steps, 1.0), ("leaky_relu", relu_steps, 1.0),
                              ("tanh", tanh_steps, 0.5), ("sigmoid", sigmoid_steps, sigmoid_grad)):
        row = {f"steps_to_{p}": list(steps) for p in ("25", "10", "5")}
        for layer in ("conv1", "conv2"):
            row[f"grad_init/{layer}"] = [grad, grad]
            row[f"grad_mean/{layer}"] = [grad, grad]
        table[name] = row
    return table


def test_activation_claims_supported():
    table = _activation_table([100, 110], [300, 330], [900, 990], sigmoid_grad=0.01)
    result = v.activation_claims(table, budget=2000, targets=(0.25, 0.10), early_layers=("conv1", "conv2"))
    assert [r.status for r in result] == [SUPPORTED] * 4
    # the reported ratio: tanh 315 steps vs the ReLU family's 105
    assert result[0].numbers["ratios"]["steps_to_25"]["tanh/relu_family"] == pytest.approx(3.0)
    assert result[1].numbers["25%"]["ratio"] == pytest.approx(3.0)


def test_activation_claims_decided_by_most_targets():
    table = _activation_table([100, 110], [300, 330], [900, 990], sigmoid_grad=0.01)
    # at the 10% target tanh is as fast as the ReLU family (within the spread): 1 of 2
    # targets supported is not a majority over the undecided one
    table["tanh"]["steps_to_10"] = [100, 115]
    result = v.activation_claims(table, budget=2000, targets=(0.25, 0.10), early_layers=("conv1",))
    assert result[0].status == SUPPORTED  # 1 supported >= half of 2, 0 contradicted
    table["tanh"]["steps_to_5"] = [50, 55]
    result = v.activation_claims(table, budget=2000, targets=(0.25, 0.10, 0.05), early_layers=("conv1",))
    assert result[0].status == INCONCLUSIVE  # one supported, one contradicted, one undecided
    assert "10%: [inconclusive]" in result[0].evidence


def test_activation_claims_contradicted():
    table = _activation_table([500, 500], [300, 300], [100, 100], sigmoid_grad=2.0)
    result = v.activation_claims(table, budget=2000, targets=(0.25,), early_layers=("conv1",))
    assert [r.status for r in result] == [CONTRADICTED] * 4


def test_vanishing_claims():
    layers = ["dense3", "dense2", "dense1"]  # output -> input
    table = {
        "sigmoid": {f"{key}_init/{layer}": [g] for layer, g in zip(layers, (1.0, 0.2, 0.04))
                    for key in ("grad", "delta")},
        "relu": {f"{key}_init/{layer}": [g] for layer, g in zip(layers, (1.0, 0.9, 0.8))
                 for key in ("grad", "delta")},
    }
    assert [r.status for r in v.vanishing_claims(table, layers)] == [SUPPORTED, SUPPORTED]
    table["sigmoid"]["grad_init/dense1"] = [3.0]
    assert [r.status for r in v.vanishing_claims(table, layers)] == [SUPPORTED, CONTRADICTED]
    table["sigmoid"]["delta_init/dense1"] = [3.0]
    assert [r.status for r in v.vanishing_claims(table, layers)] == [CONTRADICTED, CONTRADICTED]


def test_dead_relu_claims():
    relu = {0.01: "relu lr=0.01", 1.0: "relu lr=1"}
    leaky = {"leaky_relu": {0.01: "leaky lr=0.01", 1.0: "leaky lr=1"}}
    table = {"relu lr=0.01": {"dead_max": [0.0, 0.02]}, "relu lr=1": {"dead_max": [0.4, 0.36]},
             "leaky lr=0.01": {"dead_max": [0.0, 0.0]}, "leaky lr=1": {"dead_max": [0.0, 0.01]}}
    assert [r.status for r in v.dead_relu_claims(table, relu, leaky)] == [SUPPORTED, SUPPORTED]
    table["relu lr=1"]["dead_max"] = [0.0, 0.0]
    table["leaky lr=1"]["dead_max"] = [0.3, 0.3]
    assert [r.status for r in v.dead_relu_claims(table, relu, leaky)] == [CONTRADICTED, CONTRADICTED]
    # a diverged largest rate: the claim is judged on the rates that were measured
    table["relu lr=1"]["dead_max"] = [None, None]
    assert v.dead_relu_claims(table, relu, leaky)[0].status == INCONCLUSIVE


def test_dropout_claims():
    table = {"rate=0": {"gap": [0.2, 0.22]}, "rate=0.5": {"gap": [0.05, 0.06]}}
    assert v.dropout_claims(table, "rate=0", ["rate=0.5"])[0].status == SUPPORTED
    table["rate=0.5"]["gap"] = [0.3, 0.31]
    assert v.dropout_claims(table, "rate=0", ["rate=0.5"])[0].status == CONTRADICTED


def test_batchnorm_claims():
    plain = {0.1: "plain lr=0.1", 1.0: "plain lr=1"}
    bn = {0.1: "bn lr=0.1", 1.0: "bn lr=1"}
    table = {"plain lr=0.1": {"steps": [400], "stable": [1.0]}, "plain lr=1": {"steps": [None], "stable": [0.0]},
             "bn lr=0.1": {"steps": [200], "stable": [1.0]}, "bn lr=1": {"steps": [100], "stable": [1.0]}}
    result = v.batchnorm_claims(table, plain, bn, target_metric="steps", budget=1000)
    assert [r.status for r in result] == [SUPPORTED, SUPPORTED]
    assert result[1].numbers == {"plain": 0.1, "bn": 1.0}
    table["bn lr=1"] = {"steps": [None], "stable": [0.0]}
    table["bn lr=0.1"] = {"steps": [800], "stable": [1.0]}
    table["plain lr=1"] = {"steps": [300], "stable": [1.0]}
    result = v.batchnorm_claims(table, plain, bn, target_metric="steps", budget=1000)
    assert [r.status for r in result] == [CONTRADICTED, CONTRADICTED]


def test_group_norm_claims():
    table = {"batchnorm bs=2": {"test_accuracy": [0.6]}, "batchnorm bs=32": {"test_accuracy": [0.95]},
             "groupnorm bs=2": {"test_accuracy": [0.93]}, "groupnorm bs=32": {"test_accuracy": [0.94]}}
    assert v.group_norm_claims(table, [2, 32])[0].status == SUPPORTED
    table["batchnorm bs=2"]["test_accuracy"] = [0.95]
    table["groupnorm bs=2"]["test_accuracy"] = [0.7]
    assert v.group_norm_claims(table, [2, 32])[0].status == CONTRADICTED
    assert v.group_norm_claims({}, [2, 32])[0].status == INCONCLUSIVE


def test_initialization_claims():
    table = {"zeros": {"unit_spread": [0.0]}, "lecun": {"unit_spread": [1.2], "gain_max_log": [0.2]},
             "normal(0.01)": {"unit_spread": [1.0], "gain_max_log": [4.4]}}
    result = v.initialization_claims(table, ["zeros"], ["lecun", "normal(0.01)"], "lecun")
    assert [r.status for r in result] == [SUPPORTED, SUPPORTED]
    table["zeros"]["unit_spread"] = [0.5]
    table["lecun"]["gain_max_log"] = [1.5]
    result = v.initialization_claims(table, ["zeros"], ["lecun", "normal(0.01)"], "lecun")
    assert [r.status for r in result] == [CONTRADICTED, CONTRADICTED]


def test_loss_slowdown_and_input_normalization_claims():
    table = {"q": {"half": [None], "grad_init_output": [0.1]}, "ce": {"half": [20], "grad_init_output": [5.0]}}
    result = v.loss_slowdown_claims(table, "q", "ce", metric="half", budget=500)
    assert [r.status for r in result] == [SUPPORTED, SUPPORTED]
    swapped = {"q": table["ce"], "ce": table["q"]}
    result = v.loss_slowdown_claims(swapped, "q", "ce", metric="half", budget=500)
    assert [r.status for r in result] == [CONTRADICTED, CONTRADICTED]
    table = {"raw": {"s": [900]}, "std": {"s": [100]}}
    assert v.input_normalization_claims(table, "raw", "std", metric="s", budget=1000)[0].status == SUPPORTED
    table = {"raw": {"s": [50]}, "std": {"s": [100]}}
    assert v.input_normalization_claims(table, "raw", "std", metric="s", budget=1000)[0].status == CONTRADICTED


def test_center_loss_schedule_batch_size_and_pooling_claims():
    table = {"plain": {"compactness": [0.5]}, "center": {"compactness": [0.1]}}
    assert v.center_loss_claims(table, "plain", "center")[0].status == SUPPORTED
    assert v.center_loss_claims(table, "center", "plain")[0].status == CONTRADICTED

    table = {"constant": {"final_train_loss": [0.5]}, "cosine": {"final_train_loss": [0.2]},
             "exponential": {"final_train_loss": [0.3]}}
    assert v.schedule_claims(table, "constant", ["cosine", "exponential"])[0].status == SUPPORTED
    table["constant"]["final_train_loss"] = [0.1]
    assert v.schedule_claims(table, "constant", ["cosine", "exponential"])[0].status == CONTRADICTED

    table = {"bs=8": {"time_per_epoch": [4.0], "epochs_to_target": [2]},
             "bs=512": {"time_per_epoch": [0.5], "epochs_to_target": [9]}}
    assert [r.status for r in v.batch_size_claims(table, [8, 512], budget=11)] == [SUPPORTED, SUPPORTED]
    table = {"bs=8": {"time_per_epoch": [0.1], "epochs_to_target": [9]},
             "bs=512": {"time_per_epoch": [0.5], "epochs_to_target": [2]}}
    assert [r.status for r in v.batch_size_claims(table, [8, 512], budget=11)] == [CONTRADICTED, CONTRADICTED]

    table = {"max": {"test_accuracy": [0.95], "time_per_epoch": [2.0]},
             "avg": {"test_accuracy": [0.90], "time_per_epoch": [2.0]},
             "stride": {"test_accuracy": [0.93], "time_per_epoch": [1.0]}}
    assert [r.status for r in v.pooling_claims(table, "max", "avg", "stride")] == [SUPPORTED, SUPPORTED]
    table["avg"]["test_accuracy"] = [0.99]
    table["stride"]["time_per_epoch"] = [3.0]
    assert [r.status for r in v.pooling_claims(table, "max", "avg", "stride")] == [CONTRADICTED, CONTRADICTED]


def test_statuses_counts():
    items = [v.Verdict("a", SUPPORTED, ""), v.Verdict("b", SUPPORTED, ""), v.Verdict("c", INCONCLUSIVE, "")]
    assert v.statuses(items) == {SUPPORTED: 2, CONTRADICTED: 0, INCONCLUSIVE: 1}
