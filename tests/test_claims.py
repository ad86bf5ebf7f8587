"""Claim checking on hand-made metric tables: the generic checks, and every study's
claims supported, contradicted, and undecidable when the numbers cannot decide."""

import importlib
import math

import pytest

from experiments.core import claims as v
from experiments.core.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Findings


def judge(study: str, table, facts=None, seeds: int = 2) -> list[str]:
    """The statuses of a study's claims on a table (2 seeds: a verdict is possible)."""
    module = importlib.import_module(f"experiments.{study}")
    findings = Findings(table, seeds, facts or {})
    return [claim.judge(findings).status for claim in module.STUDY.claims]


def verdicts(study: str, table, facts=None, seeds: int = 2):
    module = importlib.import_module(f"experiments.{study}")
    return [claim.judge(Findings(table, seeds, facts or {})) for claim in module.STUDY.claims]


def test_reductions_over_seeds():
    assert v.mean([1.0, 2.0, 3.0]) == 2.0
    assert v.mean([1.0, None]) is None
    assert v.mean([1.0, float("nan")]) is None
    assert v.mean([]) is None
    assert v.spread([1.0, 3.0]) == pytest.approx(math.sqrt(2.0))
    assert v.spread([5.0]) == 0.0
    assert v.finite([1, None, float("inf"), 2]) == [1.0, 2.0]


def test_judgement_and_verdict_reject_unknown_status():
    with pytest.raises(ValueError, match="status='maybe'"):
        v.Verdict("c", "maybe", "e")
    with pytest.raises(ValueError, match="status='maybe'"):
        v.Judgement("maybe", "e")


def test_faster_supported_contradicted_and_censored():
    table = {"a": {"steps": [10, 12]}, "b": {"steps": [40, 44]}}
    assert v.faster(table, ["a"], ["b"], "steps", budget=100).status == SUPPORTED
    result = v.faster(table, ["b"], ["a"], "steps", budget=100)
    assert result.status == CONTRADICTED
    assert result.numbers["ratio"] == pytest.approx(11 / 42)
    # b never reaches the target: a is faster, and b's steps are a lower bound
    censored = {"a": {"steps": [10, 12]}, "b": {"steps": [None, None]}}
    result = v.faster(censored, ["a"], ["b"], "steps", budget=100)
    assert result.status == SUPPORTED and ">= 100" in result.evidence
    assert "ratio >= 9.09x" in result.evidence  # 100 / 11: a bound, b never reached
    assert v.faster(censored, ["b"], ["a"], "steps", budget=100).status == CONTRADICTED
    noisy = {"a": {"steps": [10, 30]}, "b": {"steps": [25, 35]}}
    result = v.faster(noisy, ["a"], ["b"], "steps", budget=100)
    assert result.status == INCONCLUSIVE and "within the spread" in result.evidence
    neither = {"a": {"steps": [None]}, "b": {"steps": [None]}}
    assert v.faster(neither, ["a"], ["b"], "steps", budget=100).status == INCONCLUSIVE
    assert v.faster(table, ["missing"], ["b"], "steps", budget=100).status == INCONCLUSIVE


def test_faster_names_the_unit_it_counts():
    table = {"a": {"epochs": [2, 2]}, "b": {"epochs": [6, 6]}}
    result = v.faster(table, ["a"], ["b"], "epochs", budget=10, unit="epochs")
    assert result.evidence.startswith("a 2 epochs vs b 6 epochs") and "steps" not in result.evidence
    neither = {"a": {"epochs": [None]}, "b": {"epochs": [None]}}
    assert "within 10 epochs" in v.faster(neither, ["a"], ["b"], "epochs", budget=10, unit="epochs").evidence


def test_smaller_is_inconclusive_within_the_seed_spread():
    assert v.smaller("a", [1.0, 1.1], "b", [5.0, 5.1]).status == SUPPORTED
    assert v.smaller("a", [5.0, 5.1], "b", [1.0, 1.1]).status == CONTRADICTED
    noisy = v.smaller("a", [1.0, 3.0], "b", [2.0, 2.2])
    assert noisy.status == INCONCLUSIVE and "spread" in noisy.evidence
    assert v.smaller("a", [None], "b", [1.0]).status == INCONCLUSIVE


def test_decreasing_within_majority_and_every():
    assert v.decreasing("g", [1.0, 0.5, 0.1]).status == SUPPORTED
    result = v.decreasing("g", [1.0, 0.5, 0.7])
    assert result.status == CONTRADICTED
    assert result.numbers["ratios"] == pytest.approx([0.5, 1.4])
    assert v.decreasing("g", [1.0, None]).status == INCONCLUSIVE
    assert v.within("x", [1.0], 0.5, 2.0).status == SUPPORTED
    assert v.within("x", [3.0], 0.5, 2.0).status == CONTRADICTED
    yes, no, maybe = (v.Judgement(s, s) for s in (SUPPORTED, CONTRADICTED, INCONCLUSIVE))
    assert v.majority([yes, maybe], ["a", "b"]).status == SUPPORTED
    assert v.majority([yes, no, maybe], ["a", "b", "c"]).status == INCONCLUSIVE
    assert v.every([yes, yes], ["a", "b"]).status == SUPPORTED
    assert v.every([yes, maybe], ["a", "b"]).status == INCONCLUSIVE
    assert v.every([yes, no], ["a", "b"]).status == CONTRADICTED


def test_one_seed_is_never_more_than_inconclusive():
    table = {"a": {"steps": [10]}, "b": {"steps": [40]}}
    claim = v.Claim("a is faster", lambda f: v.faster(f.table, ["a"], ["b"], "steps", budget=100))
    verdict = claim.judge(Findings(table, seeds=1))
    assert verdict.status == INCONCLUSIVE and "would be supported" in verdict.evidence
    assert verdict.claim == "a is faster"


def _activation_table(relu_steps, tanh_steps, sigmoid_steps, sigmoid_grad, relu_active=0.2,
                      sigmoid_active=0.5):
    table = {}
    for name, steps, grad, active in (("relu", relu_steps, 1.0, relu_active),
                                      ("leaky_relu", relu_steps, 1.0, relu_active),
                                      ("tanh", tanh_steps, 0.5, 0.4),
                                      ("sigmoid", sigmoid_steps, sigmoid_grad, sigmoid_active)):
        row = {f"steps_to_{p}": list(steps) for p in ("25", "10", "5", "2")}
        row["active_mean"] = [active, active + 0.01]
        for layer in ("conv1", "conv2"):
            row[f"grad_init/{layer}"] = [grad, grad]
            row[f"grad_mean/{layer}"] = [grad, grad]
        table[name] = row
    return table


def test_activation_claims():
    table = _activation_table([100, 110], [300, 330], [900, 990], sigmoid_grad=0.01)
    result = verdicts("compare_activations", table, {"budget": 2000})
    # the last claim, AlexNet's 6x, is judged on its own network and dataset only
    assert [r.status for r in result] == [SUPPORTED] * 7 + [INCONCLUSIVE]
    assert "AlexNet's CIFAR-10 network" in result[-1].evidence
    assert result[0].numbers["25%"]["ratio"] == pytest.approx(3.0)  # tanh 315 vs ReLU family 105
    table = _activation_table([500, 500], [300, 300], [100, 100], sigmoid_grad=2.0, relu_active=0.9,
                              sigmoid_active=0.7)
    assert judge("compare_activations", table, {"budget": 2000}) == [CONTRADICTED] * 7 + [INCONCLUSIVE]


ALEXNET_FACTS = {"budget": 2000, "dataset": "cifar10", "model": "alexnet_cifar"}


@pytest.mark.parametrize("relu_steps, tanh_steps, status, ratio_text", [
    ([100, 110], [650, 700], SUPPORTED, "ratio 6.43x"),      # 675 / 105
    ([100, 110], [300, 330], CONTRADICTED, "ratio 3x"),      # 315 / 105
    ([100, 110], [None, None], SUPPORTED, "ratio >= 19"),    # unreached: 2000 / 105, a bound
    ([200, 220], [None, 100], INCONCLUSIVE, "lower bound"),  # (2000 + 100) / 2 / 210 = 5 < 6
])
def test_alexnet_six_times_claim(relu_steps, tanh_steps, status, ratio_text):
    table = _activation_table(relu_steps, tanh_steps, [900, 990], sigmoid_grad=0.01)
    result = verdicts("compare_activations", table, ALEXNET_FACTS)[-1]
    assert result.status == status, result.evidence
    assert ratio_text in result.evidence
    on_mnist = verdicts("compare_activations", table, dict(ALEXNET_FACTS, dataset="mnist"))[-1]
    assert on_mnist.status == INCONCLUSIVE


def test_activation_claims_decided_by_most_targets():
    table = _activation_table([100, 110], [300, 330], [900, 990], sigmoid_grad=0.01)
    # tanh as fast as the ReLU family at 5% and 2%: 2 of 4 supported, none contradicted
    table["tanh"]["steps_to_5"] = table["tanh"]["steps_to_2"] = [100, 115]
    assert judge("compare_activations", table, {"budget": 2000})[0] == SUPPORTED
    table["tanh"]["steps_to_10"] = [50, 55]  # 1 supported, 1 contradicted, 2 undecided
    result = verdicts("compare_activations", table, {"budget": 2000})[0]
    assert result.status == INCONCLUSIVE and "5%: [inconclusive]" in result.evidence


def test_vanishing_claims():
    layers = ["dense3", "dense2", "dense1"]  # output -> input
    table = {
        "sigmoid": {f"delta_init/{layer}": [g, g] for layer, g in zip(layers, (1.0, 0.2, 0.04))},
        "relu": {f"delta_init/{layer}": [g, g] for layer, g in zip(layers, (1.0, 0.9, 0.8))},
    }
    table["sigmoid"]["input_output_ratio_init"] = [0.04, 0.041]
    table["relu"]["input_output_ratio_init"] = [0.8, 0.81]
    table["relu"].update({"active_end/dense1": [0.5, 0.5], "active_end/dense2": [0.25, 0.25]})
    facts = {"layers_output_to_input": layers}
    result = verdicts("vanishing_gradients", table, facts)
    assert [r.status for r in result] == [SUPPORTED] * 3
    assert "mean ratio 0.50" in result[2].evidence
    table["sigmoid"]["input_output_ratio_init"] = [3.0, 3.1]
    table["relu"]["active_end/dense2"] = [0.6, 0.6]
    assert judge("vanishing_gradients", table, facts) == [SUPPORTED, CONTRADICTED, CONTRADICTED]
    table["sigmoid"]["delta_init/dense1"] = [3.0, 3.0]
    assert judge("vanishing_gradients", table, facts)[0] == CONTRADICTED


def test_dead_relu_claims():
    facts = {"by_setting": {"relu mlp sgd": {0.01: "relu lr=0.01", 1.0: "relu lr=1"},
                            "leaky_relu mlp sgd": {0.01: "leaky lr=0.01", 1.0: "leaky lr=1"}}}
    table = {"relu lr=0.01": {"dead_max": [0.0, 0.02]}, "relu lr=1": {"dead_max": [0.4, 0.46]},
             "leaky lr=0.01": {"dead_max": [0.0, 0.0]}, "leaky lr=1": {"dead_max": [0.0, 0.01]}}
    result = verdicts("dead_relu", table, facts)
    assert [r.status for r in result] == [SUPPORTED, SUPPORTED]
    assert result[0].numbers == {"setting": "relu mlp sgd", "lr": 1.0, "dead": pytest.approx(0.43)}
    # the largest share decides the verdict; the evidence also names the share nearest 40%
    facts["by_setting"]["relu cnn sgd"] = {0.01: "cnn lr=0.01", 1.0: "cnn lr=1"}
    table.update({"cnn lr=0.01": {"dead_max": [0.38, 0.38]}, "cnn lr=1": {"dead_max": [0.9, 1.0]}})
    result = verdicts("dead_relu", table, facts)
    assert result[0].numbers == {"setting": "relu cnn sgd", "lr": 1.0, "dead": pytest.approx(0.95)}
    assert "closest to the notes' 40%: relu cnn sgd at lr 0.01 (38.0%)" in result[0].evidence
    del facts["by_setting"]["relu cnn sgd"]
    table["relu lr=1"]["dead_max"] = [0.25, 0.27]  # the same order as the notes' 40%
    assert judge("dead_relu", table, facts)[0] == INCONCLUSIVE
    table["relu lr=1"]["dead_max"] = [0.0, 0.0]
    table["leaky lr=1"]["dead_max"] = [0.3, 0.3]
    assert judge("dead_relu", table, facts) == [CONTRADICTED, CONTRADICTED]
    # diverged runs (None) are left out: the claim is judged on the rates measured
    table["relu lr=1"]["dead_max"] = [None, None]
    table["relu lr=0.01"]["dead_max"] = [None, None]
    assert judge("dead_relu", table, facts)[0] == INCONCLUSIVE


# The studies' later claims are tested in tests/test_claims_more.py and test_claims_new.py;
# the tables here hold only the numbers of the first ones.


def test_dropout_claims():
    facts = {"baseline": "rate=0", "dropped": ["rate=0.5"]}
    table = {"rate=0": {"gap": [0.2, 0.22]}, "rate=0.5": {"gap": [0.05, 0.06]}}
    assert judge("dropout", table, facts)[:1] == [SUPPORTED]
    table["rate=0.5"]["gap"] = [0.3, 0.31]
    assert judge("dropout", table, facts)[:1] == [CONTRADICTED]
    assert judge("dropout", table, {"baseline": "rate=0.5", "dropped": []})[:1] == [INCONCLUSIVE]


def test_batchnorm_claims():
    facts = {"by": {"plain": {0.1: "plain lr=0.1", 1.0: "plain lr=1"},
                    "batchnorm": {0.1: "bn lr=0.1", 1.0: "bn lr=1"}}, "budget": 1000}
    steps = "steps_to_10"
    table = {"plain lr=0.1": {steps: [400, 400], "stable": [1.0, 1.0]},
             "plain lr=1": {steps: [None, None], "stable": [0.0, 0.0]},
             "bn lr=0.1": {steps: [200, 200], "stable": [1.0, 1.0]},
             "bn lr=1": {steps: [100, 100], "stable": [1.0, 1.0]}}
    result = verdicts("batchnorm", table, facts)[:2]  # the sweep's claims; the rest: test_claims_more
    assert [r.status for r in result] == [SUPPORTED, SUPPORTED]
    assert result[1].numbers == {"plain": 0.1, "bn": 1.0}
    table["bn lr=1"] = {steps: [None, None], "stable": [0.0, 0.0]}
    table["bn lr=0.1"] = {steps: [800, 800], "stable": [1.0, 1.0]}
    table["plain lr=1"] = {steps: [300, 300], "stable": [1.0, 1.0]}
    assert judge("batchnorm", table, facts)[:2] == [CONTRADICTED, CONTRADICTED]


def test_group_norm_claims():
    facts = {"batch_sizes": (2, 32)}
    table = {"batchnorm bs=2": {"test_accuracy": [0.6]}, "batchnorm bs=32": {"test_accuracy": [0.95]},
             "groupnorm bs=2": {"test_accuracy": [0.93]}, "groupnorm bs=32": {"test_accuracy": [0.94]}}
    assert judge("group_vs_batch_norm", table, facts) == [SUPPORTED]
    table["batchnorm bs=2"]["test_accuracy"] = [0.95]
    table["groupnorm bs=2"]["test_accuracy"] = [0.7]
    assert judge("group_vs_batch_norm", table, facts) == [CONTRADICTED]
    assert judge("group_vs_batch_norm", {}, facts) == [INCONCLUSIVE]


def test_initialization_claims():
    table = {"zeros": {"unit_spread": [0.0]}, "lecun": {"unit_spread": [1.2], "gain_max_log": [0.2]},
             "normal(0.01)": {"unit_spread": [1.0], "gain_max_log": [4.4]}}
    assert judge("initialization", table)[:2] == [SUPPORTED, SUPPORTED]
    table["zeros"]["unit_spread"] = [0.5]
    table["lecun"]["gain_max_log"] = [1.5]
    assert judge("initialization", table)[:2] == [CONTRADICTED, CONTRADICTED]


def test_loss_slowdown_and_input_normalization_claims():
    table = {"quadratic": {"steps_to_half_loss": [None, None], "grad_init_output": [0.1, 0.1]},
             "cross_entropy": {"steps_to_half_loss": [20, 22], "grad_init_output": [5.0, 5.1]}}
    assert judge("loss_slowdown", table, {"budget": 500}) == [SUPPORTED, SUPPORTED]
    swapped = {"quadratic": table["cross_entropy"], "cross_entropy": table["quadratic"]}
    assert judge("loss_slowdown", swapped, {"budget": 500}) == [CONTRADICTED, CONTRADICTED]
    table = {"raw": {"steps_to_10": [900, 910]}, "standardized": {"steps_to_10": [100, 105]}}
    assert judge("input_normalization", table, {"budget": 1000})[:1] == [SUPPORTED]
    table = {"raw": {"steps_to_10": [50, 52]}, "standardized": {"steps_to_10": [100, 104]}}
    assert judge("input_normalization", table, {"budget": 1000})[:1] == [CONTRADICTED]


def test_center_loss_schedule_batch_size_and_pooling_claims():
    table = {"softmax": {"compactness": [0.5]}, "softmax + center": {"compactness": [0.1]}}
    assert judge("center_loss", table) == [SUPPORTED]
    table = {"softmax": {"compactness": [0.1]}, "softmax + center": {"compactness": [0.5]}}
    assert judge("center_loss", table) == [CONTRADICTED]

    table = {"constant": {"final_train_loss": [0.5]}, "cosine": {"final_train_loss": [0.2]},
             "exponential": {"final_train_loss": [0.3]}}
    assert judge("lr_schedules", table) == [SUPPORTED]
    table["constant"]["final_train_loss"] = [0.1]
    assert judge("lr_schedules", table) == [CONTRADICTED]

    facts = {"sizes": (8, 512), "budget": 11}
    table = {"bs=8": {"time_per_epoch": [4.0], "epochs_to_target": [2]},
             "bs=512": {"time_per_epoch": [0.5], "epochs_to_target": [9]}}
    assert judge("batch_size", table, facts)[:2] == [SUPPORTED, SUPPORTED]
    assert verdicts("batch_size", table, facts)[1].evidence == "bs=8 2 epochs vs bs=512 9 epochs (ratio 4.5x)"
    table = {"bs=8": {"time_per_epoch": [0.1], "epochs_to_target": [9]},
             "bs=512": {"time_per_epoch": [0.5], "epochs_to_target": [2]}}
    assert judge("batch_size", table, facts)[:2] == [CONTRADICTED, CONTRADICTED]

    sensitive = {"feature_shift": [0.9, 0.91], "prediction_shift": [0.3, 0.31],
                 "feature_warp": [0.5, 0.51], "gap": [0.05, 0.051]}
    robust = {k: [v[0] / 3, v[1] / 3] for k, v in sensitive.items()}
    table = {"max pool": robust, "avg pool": robust, "stride-2 conv": sensitive}
    assert judge("pooling", table) == [SUPPORTED] * 4
    table = {"max pool": sensitive, "avg pool": sensitive, "stride-2 conv": robust}
    assert judge("pooling", table) == [CONTRADICTED] * 4


def test_statuses_counts():
    items = [v.Verdict("a", SUPPORTED, ""), v.Verdict("b", SUPPORTED, ""), v.Verdict("c", INCONCLUSIVE, "")]
    assert v.statuses(items) == {SUPPORTED: 2, CONTRADICTED: 0, INCONCLUSIVE: 1}
