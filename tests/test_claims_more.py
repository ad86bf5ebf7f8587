"""The claims added to the dropout, batchnorm and initialization studies, judged on
hand-made tables: each supported, contradicted, and inconclusive when the numbers
cannot decide (a difference within the spread over seeds, or nothing measured)."""

import importlib

import pytest

from experiments.core import claims as v
from experiments.core.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Findings


def claim(study: str, words: str):
    """The claim of `study` whose sentence contains `words` (exactly one)."""
    found = [c for c in importlib.import_module(f"experiments.{study}").STUDY.claims if words in c.text]
    assert len(found) == 1, [c.text for c in found]
    return found[0]


def judge(study: str, words: str, table, facts=None, seeds: int = 2):
    return claim(study, words).judge(Findings(table, seeds, facts or {}))


def status(study: str, words: str, table, facts=None, seeds: int = 2) -> str:
    return judge(study, words, table, facts, seeds).status


def test_dropout_batchnorm_initialization_keep_their_first_claims_and_add_new_ones():
    texts = {s: [c.text for c in importlib.import_module(f"experiments.{s}").STUDY.claims]
             for s in ("dropout", "batchnorm", "initialization")}
    assert texts["dropout"][0].startswith("dropout narrows the gap") and len(texts["dropout"]) == 5
    assert texts["batchnorm"][0].startswith("BatchNorm trains faster") and len(texts["batchnorm"]) == 10
    assert texts["initialization"][0].startswith("equal initial weights") and len(texts["initialization"]) == 5


# ---------------------------------------------------------------------------------
# dropout

HIDDEN = {0.0: "rate=0", 0.2: "rate=0.2", 0.35: "rate=0.35", 0.5: "rate=0.5", 0.65: "rate=0.65",
          0.8: "rate=0.8"}
INPUT = {0.0: "rate=0.5", 0.1: "input=0.1", 0.2: "input=0.2", 0.3: "input=0.3", 0.5: "input=0.5"}


def _sweep_table(by_rate, accuracies, spread=0.001):
    return {by_rate[r]: {"test_accuracy": [a - spread, a + spread]} for r, a in accuracies.items()}


@pytest.mark.parametrize("words, by_rate, key, good, near, far", [
    ("0.5 is near-optimal for hidden", HIDDEN, "hidden_sweep", 0.5, 0.35, 0.0),
    ("0.2 is near-optimal for input", INPUT, "input_sweep", 0.2, 0.3, 0.5),
])
def test_dropout_best_rate_claims(words, by_rate, key, good, near, far):
    facts = {key: by_rate}
    accuracies = {r: 0.90 for r in by_rate}
    accuracies[good] = 0.95
    assert status("dropout", words, _sweep_table(by_rate, accuracies), facts) == SUPPORTED
    accuracies[good], accuracies[near] = 0.93, 0.95  # the best is the neighbour: still one step away
    result = judge("dropout", words, _sweep_table(by_rate, accuracies), facts)
    assert result.status == SUPPORTED and result.numbers["best"] == near
    accuracies = {r: 0.90 for r in by_rate}
    accuracies[far] = 0.95  # far from the notes' rate, and clearly ahead
    assert status("dropout", words, _sweep_table(by_rate, accuracies), facts) == CONTRADICTED
    accuracies[good] = 0.949  # far and near tied within the spread: cannot tell
    result = judge("dropout", words, _sweep_table(by_rate, accuracies, spread=0.002), facts)
    assert result.status == INCONCLUSIVE and "both sides" in result.evidence
    # the notes' rate not trained: nothing to judge; one seed: never more than inconclusive
    missing = {r: n for r, n in by_rate.items() if r != good}
    assert status("dropout", words, _sweep_table(missing, {r: 0.9 for r in missing}), {key: missing}) \
        == INCONCLUSIVE
    accuracies = {r: 0.90 for r in by_rate}
    accuracies[good] = 0.95
    one = {by_rate[r]: {"test_accuracy": [a]} for r, a in accuracies.items()}
    result = judge("dropout", words, one, facts, seeds=1)
    assert result.status == INCONCLUSIVE and "would be supported" in result.evidence


def test_dropout_best_rate_near_the_grid_edges():
    from experiments.dropout import best_rate_near

    by_rate = {0.0: "a", 0.5: "b"}  # two rates: both within one step of each other
    table = {"a": {"test_accuracy": [0.9, 0.9]}, "b": {"test_accuracy": [0.8, 0.8]}}
    assert best_rate_near(table, by_rate, 0.5).status == SUPPORTED
    assert best_rate_near(table, {0.5: "b"}, 0.5).status == INCONCLUSIVE  # a single rate


RECIPE = {"recipe": "recipe", "dropout": "rate=0.5", "plain": "rate=0"}


def test_dropout_recipe_claim():
    words = "max-norm, a decaying learning rate and high momentum"
    table = {"recipe": {"test_accuracy": [0.95, 0.951]}, "rate=0.5": {"test_accuracy": [0.92, 0.921]},
             "rate=0": {"test_accuracy": [0.90, 0.901]}}
    assert status("dropout", words, table, {"recipe": RECIPE}) == SUPPORTED
    table["recipe"]["test_accuracy"] = [0.91, 0.911]  # beats no dropout, not dropout alone
    assert status("dropout", words, table, {"recipe": RECIPE}) == CONTRADICTED
    table["recipe"]["test_accuracy"] = [0.90, 0.96]  # within the spread of both
    assert status("dropout", words, table, {"recipe": RECIPE}) == INCONCLUSIVE
    del table["rate=0"]
    assert status("dropout", words, table, {"recipe": RECIPE}) == INCONCLUSIVE
    assert status("dropout", words, table, {}) == INCONCLUSIVE


def test_dropout_recipe_that_collapsed_to_chance_is_inconclusive():
    words = "max-norm, a decaying learning rate and high momentum"
    table = {"recipe": {"test_accuracy": [0.10, 0.10], "train_accuracy": [0.11, 0.105]},
             "rate=0.5": {"test_accuracy": [0.28, 0.29]}, "rate=0": {"test_accuracy": [0.37, 0.38]}}
    facts = {"recipe": RECIPE, "chance": 0.1}
    result = judge("dropout", words, table, facts)
    assert result.status == INCONCLUSIVE and "collapsed" in result.evidence
    table["recipe"]["train_accuracy"] = [0.40, 0.41]  # it learned, and still lost: a real contradiction
    assert status("dropout", words, table, facts) == CONTRADICTED


def _mc_table(kl_first, kl_last, acc_last, ws=0.95):
    return {"rate=0.5": {"test_accuracy": [ws, ws]},
            "k=1": {"test_accuracy": [0.90, 0.91], "kl": kl_first, "agreement": [0.9, 0.9]},
            "k=10": {"test_accuracy": [0.94, 0.94], "kl": [0.05, 0.05], "agreement": [0.97, 0.97]},
            "k=100": {"test_accuracy": acc_last, "kl": kl_last, "agreement": [0.99, 0.99]}}


MC = {"mc": {"ws": "rate=0.5", "samples": {1: "k=1", 10: "k=10", 100: "k=100"}}}


def test_dropout_weight_scaling_claim():
    words = "weight scaling approximates averaging"
    result = judge("dropout", words, _mc_table([0.3, 0.32], [0.01, 0.012], [0.952, 0.948]), MC)
    assert result.status == SUPPORTED
    assert "1: 0.905, 10: 0.94, 100: 0.95" in result.evidence and "weight-scaled 0.95" in result.evidence
    # the averages end 3 points away from the weight-scaled network
    assert status("dropout", words, _mc_table([0.3, 0.32], [0.01, 0.012], [0.92, 0.92]), MC) == CONTRADICTED
    # the KL does not fall
    assert status("dropout", words, _mc_table([0.01, 0.012], [0.3, 0.32], [0.95, 0.95]), MC) == CONTRADICTED
    # the KL falls within the spread over seeds
    assert status("dropout", words, _mc_table([0.1, 0.3], [0.05, 0.2], [0.95, 0.95]), MC) == INCONCLUSIVE
    assert status("dropout", words, _mc_table([0.3, 0.3], [0.01, 0.01], [0.95, 0.95]), {}) == INCONCLUSIVE
    only = {"mc": {"ws": "rate=0.5", "samples": {1: "k=1"}}}
    assert status("dropout", words, _mc_table([0.3, 0.3], [0.01, 0.01], [0.95, 0.95]), only) == INCONCLUSIVE


def test_dropout_higher():
    higher = v.higher

    assert higher("a", [0.9, 0.91], "b", [0.8, 0.81]).status == SUPPORTED
    assert higher("a", [0.8, 0.81], "b", [0.9, 0.91]).status == CONTRADICTED
    result = higher("a", [0.8, 0.9], "b", [0.84, 0.86])
    assert result.status == INCONCLUSIVE and "within the spread" in result.evidence
    assert higher("a", [None], "b", [0.8]).status == INCONCLUSIVE


# ---------------------------------------------------------------------------------
# batchnorm


def acc(*values):
    return {"test_accuracy": list(values)}


def test_batchnorm_not_worse_has_a_margin_and_respects_the_spread():
    not_worse = v.not_worse

    assert not_worse("a", [0.95, 0.95], "b", [0.90, 0.90]).status == SUPPORTED
    result = not_worse("a", [0.947, 0.947], "b", [0.95, 0.95])  # 0.3 points lower: within the margin
    assert result.status == SUPPORTED and "within the margin" in result.evidence
    assert not_worse("a", [0.93, 0.93], "b", [0.95, 0.95]).status == CONTRADICTED
    result = not_worse("a", [0.91, 0.95], "b", [0.95, 0.95])  # 2 points lower, spread 2.8
    assert result.status == INCONCLUSIVE and "within the spread" in result.evidence
    assert not_worse("a", [None, 0.9], "b", [0.9, 0.9]).status == INCONCLUSIVE


def test_batchnorm_replaces_dropout_and_l2():
    words = "dropout and L2 can be dropped"
    table = {"BN": acc(0.985, 0.986), "BN + dropout + L2": acc(0.986, 0.987), "dropout + L2": acc(0.975, 0.976)}
    assert status("batchnorm", words, table) == SUPPORTED
    table["BN + dropout + L2"] = acc(0.995, 0.996)  # the regularizers add a point
    assert status("batchnorm", words, table) == CONTRADICTED
    table["BN + dropout + L2"] = acc(0.98, 0.99)
    table["BN"] = acc(0.96, 0.99)  # 1 point lower on average, spread over 2
    assert status("batchnorm", words, table) == INCONCLUSIVE
    del table["dropout + L2"]
    result = judge("batchnorm", words, table)
    assert result.status == INCONCLUSIVE and "not measured: dropout + L2 (see --parts)" in result.evidence


def test_batchnorm_regularizes_mildly():
    words = "regularizes mildly"
    table = {"BN": {"gap": [0.01, 0.012]}, "no norm": {"gap": [0.03, 0.031]}, "dropout + L2": {"gap": [0.0, 0.0]}}
    result = judge("batchnorm", words, table)
    assert result.status == SUPPORTED and "with the explicit regularizers: dropout + L2 0" in result.evidence
    table["BN"]["gap"] = [0.04, 0.041]
    assert status("batchnorm", words, table) == CONTRADICTED
    table["BN"]["gap"] = [0.0, 0.05]
    assert status("batchnorm", words, table) == INCONCLUSIVE
    assert status("batchnorm", words, {"BN": table["BN"]}) == INCONCLUSIVE


def test_batchnorm_makes_lrn_unnecessary():
    words = "local response normalization unnecessary"
    table = {"BN": acc(0.985, 0.986), "BN + LRN": acc(0.985, 0.987), "LRN": acc(0.97, 0.971)}
    assert status("batchnorm", words, table) == SUPPORTED
    table["LRN"] = acc(0.995, 0.996)
    assert status("batchnorm", words, table) == CONTRADICTED
    table = {"BN": acc(0.975, 0.976), "BN + LRN": acc(0.975, 0.977), "LRN": acc(0.965, 1.0)}
    assert status("batchnorm", words, table) == INCONCLUSIVE  # 0.7 points lower, spread 2.5


def test_batchnorm_before_the_nonlinearity():
    words = "goes before the nonlinearity"
    facts = {"ablation_budget": 400}
    table = {"BN": {"steps_to_10": [30, 32], "steps_to_3": [100, 110], **acc(0.985, 0.986)},
             "ReLU then BN": {"steps_to_10": [60, 62], "steps_to_3": [200, 210], **acc(0.975, 0.976)}}
    assert status("batchnorm", words, table, facts) == SUPPORTED
    after = dict(table["ReLU then BN"], steps_to_10=[20, 21], steps_to_3=[50, 52], **acc(0.99, 0.991))
    assert status("batchnorm", words, dict(table, **{"ReLU then BN": after}), facts) == CONTRADICTED
    # faster at 10%, slower at 3%, the accuracy within the spread: no majority
    mixed = dict(table["ReLU then BN"], steps_to_3=[50, 52], **acc(0.97, 1.0))
    result = judge("batchnorm", words, dict(table, **{"ReLU then BN": mixed}), facts)
    assert result.status == INCONCLUSIVE and "steps to 3%: [contradicted]" in result.evidence


def test_batchnorm_weight_norm_time_and_noise():
    per_step, sooner, noise = "faster per step", "in less wall time", "less noisy"
    table = {"WN": {"time_per_step": [0.010, 0.011], "time_to_10": [2.0, 2.1], "loss_noise": [0.05, 0.051]},
             "BN": {"time_per_step": [0.015, 0.016], "time_to_10": [3.0, 3.2], "loss_noise": [0.08, 0.081]}}
    facts = {"time_budget": 10.0}
    assert [status("batchnorm", w, table, facts) for w in (per_step, sooner, noise)] == [SUPPORTED] * 3
    swapped = {"WN": table["BN"], "BN": table["WN"]}
    assert [status("batchnorm", w, swapped, facts) for w in (per_step, sooner, noise)] == [CONTRADICTED] * 3
    noisy = {"WN": {"time_per_step": [0.005, 0.02], "time_to_10": [1.0, 4.0], "loss_noise": [0.01, 0.2]},
             "BN": table["BN"]}
    assert [status("batchnorm", w, noisy, facts) for w in (per_step, sooner, noise)] == [INCONCLUSIVE] * 3
    result = judge("batchnorm", sooner, dict(table, WN=dict(table["WN"], time_to_10=[None, None])), facts)
    assert result.status == CONTRADICTED and " s " in result.evidence and "steps" not in result.evidence
    assert status("batchnorm", per_step, {"BN": table["BN"]}, facts) == INCONCLUSIVE


def test_batchnorm_less_sensitive_to_the_init_scale():
    words = "less sensitive to the initialization scale"
    table = {"BN": {"init_acc_range": [0.002, 0.003], "init_steps_ratio": [1.1, 1.2]},
             "WN": {"init_acc_range": [0.05, 0.06], "init_steps_ratio": [3.0, 3.5]}}
    assert status("batchnorm", words, table) == SUPPORTED
    assert status("batchnorm", words, {"BN": table["WN"], "WN": table["BN"]}) == CONTRADICTED
    table["WN"] = {"init_acc_range": [0.0, 0.01], "init_steps_ratio": [1.0, 2.0]}  # within the spread
    assert status("batchnorm", words, table) == INCONCLUSIVE
    result = judge("batchnorm", words, {"BN": {"test_accuracy": [0.9]}, "WN": {"test_accuracy": [0.9]}})
    assert result.status == INCONCLUSIVE and "--init-scales" in result.evidence


def test_batchnorm_scale_sensitivity_per_seed():
    from experiments.batchnorm import scale_sensitivity

    table = {"WN init x0.1": {"test_accuracy": [0.90, 0.92], "steps_to_10": [100, None]},
             "WN": {"test_accuracy": [0.98, 0.97], "steps_to_10": [20, 25]},
             "WN init x10": {"test_accuracy": [0.95, 0.96], "steps_to_10": [40, 50]}}
    got = scale_sensitivity(table, {0.1: "WN init x0.1", 1.0: "WN", 10.0: "WN init x10"}, budget=500, target=0.1)
    assert got["init_acc_range"] == pytest.approx([0.08, 0.05])
    assert got["init_steps_ratio"] == pytest.approx([5.0, 20.0])  # unreached counts as the budget
    never = {n: {"test_accuracy": [0.5], "steps_to_10": [None]} for n in ("a", "b")}
    assert scale_sensitivity(never, {0.1: "a", 1.0: "b"}, budget=500, target=0.1)["init_steps_ratio"] == [None]


def test_the_first_batchnorm_claims_ignore_the_comparisons():
    facts = {"by": {"plain": {0.1: "plain lr=0.1"}, "batchnorm": {0.1: "bn lr=0.1"}}, "budget": 1000}
    table = {"plain lr=0.1": {"steps_to_10": [400, 400], "stable": [1.0, 1.0]},
             "bn lr=0.1": {"steps_to_10": [200, 200], "stable": [1.0, 1.0]},
             "BN": {"steps_to_10": [5000, 5000], "stable": [0.0, 0.0]}}
    assert status("batchnorm", "BatchNorm trains faster", table, facts) == SUPPORTED
    # without the sweep (--parts), the first two claims are inconclusive
    empty = {"by": {"plain": {}, "batchnorm": {}}, "budget": 0}
    assert status("batchnorm", "BatchNorm trains faster", table, empty) == INCONCLUSIVE
    assert status("batchnorm", "tolerates larger", table, empty) == INCONCLUSIVE


# ---------------------------------------------------------------------------------
# initialization


def test_initialization_sparse_claim():
    words = "sparse initialization (Martens"
    table = {"lecun": acc(0.970, 0.971), "xavier": acc(0.968, 0.969), "he": acc(0.967, 0.968),
             "sparse": acc(0.969, 0.970)}
    assert status("initialization", words, table) == SUPPORTED
    table["sparse"] = acc(0.90, 0.91)
    result = judge("initialization", words, table)
    assert result.status == CONTRADICTED and "vs lecun" in result.evidence and "vs he" in result.evidence
    table["sparse"] = acc(0.93, 0.99)
    assert status("initialization", words, table) == INCONCLUSIVE
    assert status("initialization", words, {"sparse": table["sparse"]}) == INCONCLUSIVE
    assert status("initialization", words, {"lecun": table["lecun"]}) == INCONCLUSIVE


BIASES = {"biases": {"zero": "relu bias=0", "positive": "relu bias=0.01"}, "bias_budget": 1000}


def test_initialization_positive_bias_dead_units_claim():
    words = "leaves fewer dead units"
    table = {"relu bias=0": {"dead_init": [0.05, 0.06], "dead_end": [0.2, 0.21]},
             "relu bias=0.01": {"dead_init": [0.0, 0.01], "dead_end": [0.1, 0.11]}}
    assert status("initialization", words, table, BIASES) == SUPPORTED
    swapped = {"relu bias=0": table["relu bias=0.01"], "relu bias=0.01": table["relu bias=0"]}
    assert status("initialization", words, swapped, BIASES) == CONTRADICTED
    # no dead unit with either bias at initialisation: nothing to reduce
    table["relu bias=0"]["dead_init"] = table["relu bias=0.01"]["dead_init"] = [0.0, 0.0]
    result = judge("initialization", words, table, BIASES)
    assert result.status == INCONCLUSIVE and "nothing to reduce" in result.evidence
    assert status("initialization", words, table, {}) == INCONCLUSIVE


def test_initialization_positive_bias_speed_claim():
    words = "in fewer steps than bias 0"
    table = {"relu bias=0": {"steps_to_10": [200, 210]}, "relu bias=0.01": {"steps_to_10": [100, 105]}}
    assert status("initialization", words, table, BIASES) == SUPPORTED
    table["relu bias=0.01"]["steps_to_10"] = [300, 310]
    assert status("initialization", words, table, BIASES) == CONTRADICTED
    table["relu bias=0.01"]["steps_to_10"] = [150, 260]
    assert status("initialization", words, table, BIASES) == INCONCLUSIVE
    table["relu bias=0"]["steps_to_10"] = table["relu bias=0.01"]["steps_to_10"] = [None, None]
    assert status("initialization", words, table, BIASES) == INCONCLUSIVE


def test_the_first_initialization_claims_read_only_the_initializations():
    """The bias rows (no unit spread, no variance gain) do not count as random inits."""
    table = {"zeros": {"unit_spread": [0.0, 0.0]},
             "lecun": {"unit_spread": [1.2, 1.2], "gain_max_log": [0.2, 0.2]},
             "relu bias=0": {"dead_init": [0.0, 0.0]}, "relu bias=0.01": {"dead_init": [0.0, 0.0]}}
    facts = dict(BIASES, inits=["zeros", "lecun"])
    assert status("initialization", "keep the hidden units identical", table, facts) == SUPPORTED
    result = judge("initialization", "1/sqrt(n) (LeCun)", table, facts)
    assert result.status == SUPPORTED and "relu" not in result.evidence
