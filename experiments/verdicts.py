"""Claims and verdicts: the measured numbers held against what the notes claim.

Every study reduces its runs to a table of per-seed numbers,

    table[variant][metric] = [value of seed 0, value of seed 1, ...]

where a value is a float, or None when it was not measured or not reached (e.g. a
training-error target the run never reached within its steps). The functions here
turn such a table into `Verdict`s. They are pure: tests feed them hand-made tables.

A verdict is "supported" when the measured means order as the claim says,
"contradicted" when they order the other way, and "inconclusive" when the numbers
cannot decide (nothing reached, or a difference smaller than the spread across
seeds, which is then named in the evidence).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
STATUSES = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)

Table = Mapping[str, Mapping[str, Sequence]]

RELU_FAMILY = ("relu", "leaky_relu", "prelu", "rrelu")
LEAKY_FAMILY = ("leaky_relu", "prelu")


@dataclass(frozen=True)
class Verdict:
    """One claim, the numbers measured for it, and whether they support it."""

    claim: str
    status: str
    evidence: str
    numbers: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r}: expected one of {STATUSES}")

    def line(self) -> str:
        return f"[{self.status.upper()}] {self.claim}\n    measured: {self.evidence}"

    def as_dict(self) -> dict:
        return {"claim": self.claim, "status": self.status, "evidence": self.evidence,
                "numbers": self.numbers}


# ---------------------------------------------------------------------------------
# Reductions over seeds


def finite(values) -> list[float]:
    """The finite floats among `values` (None, NaN and inf dropped)."""
    out = []
    for v in values or ():
        if v is not None and math.isfinite(float(v)):
            out.append(float(v))
    return out


def mean(values) -> float | None:
    """Mean over seeds, or None when any seed has no value (not reached / missing)."""
    values = list(values or ())
    if not values or any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return sum(float(v) for v in values) / len(values)


def spread(values) -> float:
    """Sample standard deviation over seeds (0 for a single seed)."""
    xs = finite(values)
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def get(table: Table, variant: str, metric: str) -> list:
    """table[variant][metric] as a list, [] when absent."""
    return list(table.get(variant, {}).get(metric, []) or [])


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _censored_mean(values, budget):
    """(mean, reached_all) for steps-to-target values where None means 'not reached'.

    Unreached seeds count as `budget` (a lower bound), so the mean is a lower bound
    too when reached_all is False.
    """
    values = list(values or ())
    if not values:
        return None, False
    reached = [v is not None for v in values]
    if not any(reached):
        return None, False
    filled = [float(v) if v is not None else float(budget) for v in values]
    return sum(filled) / len(filled), all(reached)


def _family_mean(table, members, metric, budget):
    """Mean over the members of a family of their per-variant censored means."""
    means, all_reached = [], True
    for name in members:
        m, reached = _censored_mean(get(table, name, metric), budget)
        if m is None:
            m, reached = float(budget), False
        means.append(m)
        all_reached = all_reached and reached
    if not means:
        return None, False
    return sum(means) / len(means), all_reached


# ---------------------------------------------------------------------------------
# Generic checks


def faster(claim: str, table: Table, fast: Sequence[str], slow: Sequence[str], metric: str,
           budget: float) -> Verdict:
    """`fast` variants reach a target in fewer steps than `slow` ones (mean over seeds).

    `metric` holds steps-to-target per seed (None: not reached within `budget`
    steps). A family (several names) is the mean of its members' means.
    """
    present_fast = [n for n in fast if n in table]
    present_slow = [n for n in slow if n in table]
    label_fast, label_slow = "/".join(present_fast) or "-", "/".join(present_slow) or "-"
    if not present_fast or not present_slow:
        return Verdict(claim, INCONCLUSIVE, f"not measured: {label_fast} vs {label_slow}")
    a, a_all = _family_mean(table, present_fast, metric, budget)
    b, b_all = _family_mean(table, present_slow, metric, budget)
    numbers = {"fast": a, "slow": b, "fast_reached_all": a_all, "slow_reached_all": b_all}
    a_txt = fmt(a) if a_all else f">= {fmt(a)}"
    b_txt = fmt(b) if b_all else f">= {fmt(b)}"
    if not a_all and not b_all:
        return Verdict(claim, INCONCLUSIVE,
                       f"neither {label_fast} ({a_txt}) nor {label_slow} ({b_txt}) reached the "
                       f"target in every seed within {fmt(budget)} steps", numbers)
    ratio = b / a if a else math.inf
    numbers["ratio"] = ratio
    # with one side censored the ratio is a bound: unreached runs count as `budget`
    bound = ">= " if a_all and not b_all else "<= " if b_all and not a_all else ""
    text = f"{label_fast} {a_txt} steps vs {label_slow} {b_txt} steps (ratio {bound}{fmt(ratio)}x)"
    if a_all and not b_all:
        return Verdict(claim, SUPPORTED if a <= b else INCONCLUSIVE, text, numbers)
    if b_all and not a_all:
        return Verdict(claim, CONTRADICTED if b <= a else INCONCLUSIVE, text, numbers)
    noise = spread(_pooled(table, present_fast, metric)) + spread(_pooled(table, present_slow, metric))
    if abs(a - b) <= noise:
        return Verdict(claim, INCONCLUSIVE, text + f" (difference within the spread over seeds, {fmt(noise, 2)})",
                       numbers)
    return Verdict(claim, SUPPORTED if a < b else CONTRADICTED, text, numbers)


def _pooled(table, names, metric) -> list:
    """Every seed's value of every variant in `names`, pooled (a family's spread)."""
    return [v for name in names for v in get(table, name, metric)]


def majority(claim: str, parts: Sequence[Verdict], labels: Sequence[str]) -> Verdict:
    """One verdict from several measurements of one claim (e.g. one per target): the
    status held by at least half of them and by more than hold the opposite."""
    supported = sum(p.status == SUPPORTED for p in parts)
    contradicted = sum(p.status == CONTRADICTED for p in parts)
    half = len(parts) / 2
    status = (SUPPORTED if supported > contradicted and supported >= half else
              CONTRADICTED if contradicted > supported and contradicted >= half else INCONCLUSIVE)
    evidence = "; ".join(f"{label}: [{p.status}] {p.evidence}" for label, p in zip(labels, parts))
    return Verdict(claim, status, evidence, {label: p.numbers for label, p in zip(labels, parts)})


def smaller(claim: str, a_label: str, a_values, b_label: str, b_values, *,
            factor: float = 1.0) -> Verdict:
    """mean(a) < factor * mean(b); inconclusive when the gap is within the seed spread."""
    a, b = mean(a_values), mean(b_values)
    if a is None or b is None:
        return Verdict(claim, INCONCLUSIVE,
                       f"{a_label} {fmt(a)}, {b_label} {fmt(b)}: not measured in every seed")
    numbers = {"a": a, "b": b}
    text = f"{a_label} {fmt(a)} (+/- {fmt(spread(a_values), 2)}) vs {b_label} {fmt(b)} (+/- {fmt(spread(b_values), 2)})"
    holds = a < factor * b
    noise = spread(a_values) + spread(b_values)
    if abs(a - factor * b) <= noise and noise > 0:
        return Verdict(claim, INCONCLUSIVE, text + " (difference within the spread over seeds)", numbers)
    return Verdict(claim, SUPPORTED if holds else CONTRADICTED, text, numbers)


def smallest(claim: str, table: Table, name: str, metric: str, others: Sequence[str]) -> Verdict:
    """table[name][metric] has the smallest mean among `name` and `others`."""
    values = {n: mean(get(table, n, metric)) for n in (name, *others) if n in table}
    if values.get(name) is None or len(values) < 2:
        return Verdict(claim, INCONCLUSIVE, f"{metric} of {name} not measured")
    rest = {n: v for n, v in values.items() if n != name and v is not None}
    if not rest:
        return Verdict(claim, INCONCLUSIVE, f"{metric} of the others not measured")
    runner_up = min(rest, key=rest.get)
    ratio = rest[runner_up] / values[name] if values[name] else math.inf
    text = (f"{name} {fmt(values[name])}; smallest other {runner_up} {fmt(rest[runner_up])} "
            f"({fmt(ratio)}x {name}'s)")
    numbers = {"value": values[name], "others": rest, "ratio": ratio}
    return Verdict(claim, SUPPORTED if values[name] < rest[runner_up] else CONTRADICTED, text, numbers)


def within(claim: str, label: str, values, low: float, high: float) -> Verdict:
    """low <= mean(values) <= high."""
    m = mean(values)
    if m is None:
        return Verdict(claim, INCONCLUSIVE, f"{label}: not measured")
    ok = low <= m <= high
    return Verdict(claim, SUPPORTED if ok else CONTRADICTED,
                   f"{label} {fmt(m)} (expected in [{fmt(low)}, {fmt(high)}])", {"value": m})


def decreasing(claim: str, label: str, sequence: Sequence[float], *, factor: float = 1.0) -> Verdict:
    """Every entry is smaller than the previous one times `factor` (None: not measured).

    The sequence runs from the output towards the input (e.g. gradient norm per layer
    listed from the last layer to the first).
    """
    if not sequence or any(v is None for v in sequence):
        return Verdict(claim, INCONCLUSIVE, f"{label}: not measured")
    seq = [float(v) for v in sequence]
    steps = [b / a if a else math.inf for a, b in zip(seq, seq[1:])]
    ok = all(b < factor * a for a, b in zip(seq, seq[1:]))
    text = f"{label}: " + " -> ".join(fmt(v) for v in seq)
    if steps:
        text += f" (layer-to-layer ratios {', '.join(fmt(s, 2) for s in steps)})"
    return Verdict(claim, SUPPORTED if ok else CONTRADICTED, text, {"sequence": seq, "ratios": steps})


# ---------------------------------------------------------------------------------
# The studies' claims (each a pure function of a table)


def activation_claims(table: Table, *, budget: float, targets: Sequence[float],
                      early_layers: Sequence[str]) -> list[Verdict]:
    """compare_activations: the AlexNet-figure speed-up and sigmoid's small gradients.

    Metrics: "steps_to_<pct>" (steps to a smoothed training error <= pct%, None if
    never), "grad_init/<layer>" and "grad_mean/<layer>" (gradient norm of a layer at
    initialisation / averaged over training).
    """
    family = [n for n in RELU_FAMILY if n in table]
    verdicts = []
    ratios = {}
    for target in targets:
        metric = f"steps_to_{_pct(target)}"
        fam = _family_mean(table, family, metric, budget) if family else (None, False)
        tanh = _bounded_mean(get(table, "tanh", metric), budget)
        sig = _bounded_mean(get(table, "sigmoid", metric), budget)
        pair = {"tanh/relu_family": _ratio(tanh, fam), "sigmoid/tanh": _ratio(sig, tanh)}
        ratios[metric] = {k: r for k, (r, _) in pair.items()}
    labels = [f"{_pct(t)}%" for t in targets]
    targets_text = ", ".join(labels)
    for fast, slow, claim in (
        (family, ["tanh"], f"ReLU-family units reach the training-error targets ({targets_text}) in "
                           "fewer steps than tanh units (at most of the targets)"),
        (["tanh"], ["sigmoid"], f"tanh units reach the training-error targets ({targets_text}) in fewer "
                                "steps than sigmoid units (at most of the targets)"),
    ):
        parts = [faster("", table, fast, slow, f"steps_to_{_pct(t)}", budget) for t in targets]
        verdicts.append(majority(claim, parts, labels))
    first = verdicts[0]
    verdicts[0] = Verdict(first.claim, first.status, first.evidence, dict(first.numbers, ratios=ratios))
    others = [n for n in table if n != "sigmoid"]
    for when, prefix in (("at initialisation", "grad_init"), ("averaged over training", "grad_mean")):
        parts = [smallest("", table, "sigmoid", f"{prefix}/{layer}", others) for layer in early_layers]
        statuses = {p.status for p in parts}
        status = (SUPPORTED if statuses == {SUPPORTED} else
                  CONTRADICTED if CONTRADICTED in statuses else INCONCLUSIVE)
        evidence = "; ".join(f"{layer}: {p.evidence}" for layer, p in zip(early_layers, parts))
        verdicts.append(Verdict(
            f"sigmoid has the smallest gradients in the early layers ({', '.join(early_layers)}), {when}",
            status, evidence, {layer: p.numbers for layer, p in zip(early_layers, parts)}))
    return verdicts


def _pct(target: float) -> str:
    return f"{100 * target:g}"


def _bounded_mean(values, budget):
    """(mean, exact) with unreached seeds counted as `budget` ((None, False) if none reached)."""
    m, exact = _censored_mean(values, budget)
    if m is None and values:
        return float(budget), False
    return m, exact


def _ratio(slow, fast):
    """slow / fast for (mean, exact) pairs, with its text ('>= 3.1x' when censored)."""
    (b, b_exact), (a, a_exact) = slow, fast
    if a is None or b is None or not a:
        return None, "n/a"
    if not a_exact and not b_exact:
        return None, "n/a (neither reached)"
    r = b / a
    bound = "" if a_exact and b_exact else ">= " if a_exact else "<= "
    return r, f"{bound}{fmt(r, 2)}x"


def vanishing_claims(table: Table, layers_output_to_input: Sequence[str]) -> list[Verdict]:
    """vanishing_gradients: with sigmoid the back-propagated error (metric "delta_init",
    the bias gradient) shrinks layer by layer towards the input, at initialisation;
    tanh/relu shrink the weight gradient less (ratio first/last layer, "grad_init")."""
    seq = [mean(get(table, "sigmoid", f"delta_init/{layer}")) for layer in layers_output_to_input]
    verdicts = [decreasing(
        "with sigmoid the back-propagated error shrinks layer by layer towards the input "
        "(at initialisation)",
        "sigmoid bias-gradient norm, output -> input", seq)]
    first, last = layers_output_to_input[-1], layers_output_to_input[0]

    def attenuation(name):
        a, b = mean(get(table, name, f"grad_init/{first}")), mean(get(table, name, f"grad_init/{last}"))
        return [a / b] if a is not None and b else [None]

    for other in ("tanh", "relu"):
        if other in table:
            verdicts.append(smaller(
                f"the input-layer / output-layer gradient ratio is smaller with sigmoid than with {other}",
                "sigmoid", attenuation("sigmoid"), other, attenuation(other)))
    return verdicts


def dead_relu_claims(table: Table, relu_by_lr: Mapping[float, str],
                     leaky_by_lr: Mapping[str, Mapping[float, str]], *,
                     large_share: float = 0.1) -> list[Verdict]:
    """dead_relu: the dead ReLU share grows with the learning rate and is large
    (>= `large_share`) at the largest measured rate; leaky variants end with fewer
    never-active units than ReLU at the largest rate measured for both.

    `relu_by_lr` maps learning rate -> variant name; `leaky_by_lr` maps an activation
    to the same. Metric "dead_max": the largest dead fraction over the hidden layers.
    """
    claim = "large learning rates kill a large share of ReLU units (the notes: up to 40%)"
    lrs = sorted(relu_by_lr)
    dead = [mean(get(table, relu_by_lr[lr], "dead_max")) for lr in lrs]
    known = [(lr, d) for lr, d in zip(lrs, dead) if d is not None]
    verdicts = []
    text = "ReLU dead share by learning rate: " + ", ".join(
        f"lr {fmt(lr)}: {fmt(d) if d is not None else 'diverged/n.a.'}" for lr, d in zip(lrs, dead))
    if len(known) >= 2:
        (_, d_lo), (_, d_hi) = known[0], known[-1]
        grows = d_hi > d_lo
        big = d_hi >= large_share
        status = SUPPORTED if grows and big else CONTRADICTED if not grows else INCONCLUSIVE
        if grows and not big:
            text += f" (grows, but stays below {fmt(large_share)} at the largest rate)"
        verdicts.append(Verdict(claim, status, text, {"lrs": lrs, "dead": dead}))
    else:
        verdicts.append(Verdict(claim, INCONCLUSIVE, text + " (fewer than two rates measured)"))
    for name, by_lr in leaky_by_lr.items():
        claim = f"{name} units do not die (fewer never-active units than ReLU at the largest rate)"
        common = sorted(lr for lr in by_lr if lr in relu_by_lr
                        and mean(get(table, by_lr[lr], "dead_max")) is not None
                        and mean(get(table, relu_by_lr[lr], "dead_max")) is not None)
        if not common:
            verdicts.append(Verdict(claim, INCONCLUSIVE, "no learning rate measured for both"))
            continue
        lr = common[-1]
        leaky_values, relu_values = get(table, by_lr[lr], "dead_max"), get(table, relu_by_lr[lr], "dead_max")
        v = smaller(claim, f"{name} at lr {fmt(lr)}", leaky_values, f"relu at lr {fmt(lr)}", relu_values)
        status = v.status
        if status == CONTRADICTED and mean(leaky_values) == mean(relu_values):
            status = INCONCLUSIVE
        verdicts.append(Verdict(claim, status, v.evidence + "; a never-active leaky unit still passes "
                                "gradient (slope > 0), a ReLU one does not", dict(v.numbers, lr=lr)))
    return verdicts


def dropout_claims(table: Table, baseline: str, dropped: Sequence[str]) -> list[Verdict]:
    """dropout: the train-test accuracy gap ("gap") is smaller with dropout."""
    return [smaller(f"dropout ({name}) narrows the train/test gap compared with {baseline}",
                    name, get(table, name, "gap"), baseline, get(table, baseline, "gap"))
            for name in dropped if name in table]


def batchnorm_claims(table: Table, plain_by_lr: Mapping[float, str], bn_by_lr: Mapping[float, str],
                     *, target_metric: str, budget: float) -> list[Verdict]:
    """batchnorm: BN reaches the target in fewer steps at the shared best rate, and its
    largest stable learning rate is at least as large (metric "stable" in {0, 1})."""
    def largest_stable(by_lr):
        ok = [lr for lr, name in by_lr.items() if (mean(get(table, name, "stable")) or 0) >= 1]
        return max(ok) if ok else None

    verdicts = []
    common = sorted(set(plain_by_lr) & set(bn_by_lr))
    best = []
    for lr in common:
        p, _ = _censored_mean(get(table, plain_by_lr[lr], target_metric), budget)
        b, _ = _censored_mean(get(table, bn_by_lr[lr], target_metric), budget)
        best.append((lr, p, b))
    p_best = min((p for _, p, _ in best if p is not None), default=None)
    b_best = min((b for _, _, b in best if b is not None), default=None)
    per_lr = ", ".join(f"lr {fmt(lr)}: {fmt(p)} vs {fmt(b)}" for lr, p, b in best)
    if p_best is None and b_best is None:
        verdicts.append(Verdict("BatchNorm trains faster (fewest steps to the target, each at its best rate)",
                                INCONCLUSIVE, "neither reached the target: " + per_lr))
    else:
        faster_bn = b_best is not None and (p_best is None or b_best < p_best)
        verdicts.append(Verdict(
            "BatchNorm trains faster (fewest steps to the target, each at its best rate)",
            SUPPORTED if faster_bn else CONTRADICTED,
            f"best steps without BN {fmt(p_best)}, with BN {fmt(b_best)} (per lr, plain vs BN: {per_lr})",
            {"plain": p_best, "bn": b_best}))
    lp, lb = largest_stable(plain_by_lr), largest_stable(bn_by_lr)
    text = f"largest stable learning rate without BN {fmt(lp)}, with BN {fmt(lb)}"
    if lb is None:
        status = INCONCLUSIVE if lp is None else CONTRADICTED
    elif lp is None:
        status = SUPPORTED
    else:
        status = SUPPORTED if lb > lp else INCONCLUSIVE if lb == lp else CONTRADICTED
        if lb == lp:
            text += " (equal: the sweep did not reach a rate that separates them)"
    verdicts.append(Verdict("BatchNorm tolerates larger learning rates", status, text,
                            {"plain": lp, "bn": lb}))
    return verdicts


def group_norm_claims(table: Table, batch_sizes: Sequence[int], *, metric: str = "test_accuracy",
                      tolerance: float = 0.02) -> list[Verdict]:
    """group_vs_batch_norm: from the largest to the smallest batch, GroupNorm loses less
    accuracy than BatchNorm, and at the smallest batch GroupNorm is the more accurate.

    Variant names: "batchnorm bs=<n>" and "groupnorm bs=<n>".
    """
    small, large = min(batch_sizes), max(batch_sizes)
    bn_s, bn_l = mean(get(table, f"batchnorm bs={small}", metric)), mean(get(table, f"batchnorm bs={large}", metric))
    gn_s, gn_l = mean(get(table, f"groupnorm bs={small}", metric)), mean(get(table, f"groupnorm bs={large}", metric))
    if None in (bn_s, bn_l, gn_s, gn_l):
        return [Verdict("GroupNorm keeps its accuracy at small batches where BatchNorm degrades",
                        INCONCLUSIVE, "not measured at both batch sizes")]
    bn_drop, gn_drop = bn_l - bn_s, gn_l - gn_s
    text = (f"batch {large} -> {small}: BatchNorm {fmt(bn_l)} -> {fmt(bn_s)} (drop {fmt(bn_drop)}), "
            f"GroupNorm {fmt(gn_l)} -> {fmt(gn_s)} (drop {fmt(gn_drop)})")
    holds = gn_drop < bn_drop and gn_s > bn_s
    if abs(gn_drop - bn_drop) <= tolerance and abs(gn_s - bn_s) <= tolerance:
        status = INCONCLUSIVE
        text += f" (differences within {fmt(tolerance)})"
    else:
        status = SUPPORTED if holds else CONTRADICTED
    return [Verdict("GroupNorm keeps its accuracy at small batches where BatchNorm degrades",
                    status, text, {"bn_drop": bn_drop, "gn_drop": gn_drop})]


def initialization_claims(table: Table, equal: Sequence[str], random: Sequence[str],
                          lecun: str, *, symmetric_below: float = 1e-6,
                          gain_band: tuple[float, float] = (0.5, 2.0)) -> list[Verdict]:
    """initialization: equal initial weights keep units identical ("unit_spread" ~ 0
    after training, while random inits break the symmetry), and LeCun's 1/sqrt(n)
    keeps each layer's output variance near its input's ("gain_max_log": the largest
    |log(var_out / var_in)| over layers, at initialisation)."""
    verdicts = []
    for name in equal:
        s = mean(get(table, name, "unit_spread"))
        if s is None:
            verdicts.append(Verdict(f"equal initial weights ({name}) keep hidden units identical",
                                    INCONCLUSIVE, "not measured"))
            continue
        randoms = {r: mean(get(table, r, "unit_spread")) for r in random if r in table}
        text = f"{name}: spread between units after training {fmt(s)}; random inits: " + ", ".join(
            f"{r} {fmt(v)}" for r, v in randoms.items())
        ok = s <= symmetric_below and all(v is not None and v > s for v in randoms.values())
        verdicts.append(Verdict(f"equal initial weights ({name}) keep hidden units identical",
                                SUPPORTED if ok else CONTRADICTED, text, {"spread": s, "random": randoms}))
    gains = {n: mean(get(table, n, "gain_max_log")) for n in (lecun, *random) if n in table}
    g = gains.get(lecun)
    if g is None:
        verdicts.append(Verdict("1/sqrt(n) keeps the output variance near constant across layers",
                                INCONCLUSIVE, "not measured"))
    else:
        limit = max(abs(math.log(gain_band[0])), abs(math.log(gain_band[1])))
        text = (f"largest |log(var_out/var_in)| over layers: {lecun} {fmt(g)} (band {fmt(limit, 2)}); "
                + ", ".join(f"{n} {fmt(v)}" for n, v in gains.items() if n != lecun))
        verdicts.append(Verdict("1/sqrt(n) keeps the output variance near constant across layers",
                                SUPPORTED if g <= limit else CONTRADICTED, text, {"gains": gains}))
    return verdicts


def loss_slowdown_claims(table: Table, quadratic: str, cross_entropy: str, *, metric: str,
                         budget: float) -> list[Verdict]:
    """loss_slowdown: from a saturated sigmoid output, cross-entropy reaches the error
    target in fewer steps and starts with a larger output-layer gradient."""
    verdicts = [faster("cross-entropy learns fast where the quadratic cost stalls (steps to the target)",
                       table, [cross_entropy], [quadratic], metric, budget)]
    verdicts.append(smaller("the quadratic cost's initial output-layer gradient is smaller (sigma' ~ 0 in saturation)",
                            quadratic, get(table, quadratic, "grad_init_output"),
                            cross_entropy, get(table, cross_entropy, "grad_init_output")))
    return verdicts


def input_normalization_claims(table: Table, raw: str, standardized: str, *, metric: str,
                               budget: float) -> list[Verdict]:
    """input_normalization: standardized inputs reach the target in fewer steps."""
    return [faster("standardized inputs converge faster than raw pixels", table, [standardized],
                   [raw], metric, budget)]


def center_loss_claims(table: Table, plain: str, centered: str) -> list[Verdict]:
    """center_loss: the intra/inter class distance ratio ("compactness") is smaller
    with the center loss."""
    return [smaller("center loss tightens the classes (smaller intra/inter-class distance ratio)",
                    centered, get(table, centered, "compactness"), plain, get(table, plain, "compactness"))]


def statuses(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many verdicts have each status."""
    return {s: sum(v.status == s for v in verdicts) for s in STATUSES}


def schedule_claims(table: Table, constant: str, decays: Sequence[str], *,
                    metric: str = "final_train_loss") -> list[Verdict]:
    """lr_schedules: decaying the learning rate ends at a lower training loss than
    keeping it constant (for most of the decays)."""
    base = mean(get(table, constant, metric))
    values = {d: mean(get(table, d, metric)) for d in decays if d in table}
    known = {d: v for d, v in values.items() if v is not None}
    claim = f"decaying the learning rate ends at a lower training loss than the constant rate"
    if base is None or not known:
        return [Verdict(claim, INCONCLUSIVE, "not measured")]
    better = [d for d, v in known.items() if v < base]
    text = f"constant {fmt(base)}; " + ", ".join(f"{d} {fmt(v)}" for d, v in known.items()) + (
        f" ({len(better)} of {len(known)} lower)")
    status = SUPPORTED if 2 * len(better) > len(known) else CONTRADICTED
    return [Verdict(claim, status, text, {"constant": base, "decays": known})]


def batch_size_claims(table: Table, sizes: Sequence[int], *, budget: float) -> list[Verdict]:
    """batch_size: the trade-off. Larger batches take less time per epoch but more
    epochs to reach the target accuracy. Variants are named "bs=<n>"."""
    small, large = f"bs={min(sizes)}", f"bs={max(sizes)}"
    verdicts = [smaller("larger batches take less time per epoch", large,
                        get(table, large, "time_per_epoch"), small, get(table, small, "time_per_epoch"))]
    v = faster("smaller batches need fewer epochs to reach the target accuracy", table, [small], [large],
               "epochs_to_target", budget)
    verdicts.append(v)
    return verdicts


def pooling_claims(table: Table, max_pool: str, avg_pool: str, strided: str) -> list[Verdict]:
    """pooling: max pooling is at least as accurate as average pooling, and a stride-2
    convolution (the convolution before each pool computed at every other position,
    same depth and parameters) trains faster per epoch than convolution + pooling."""
    verdicts = []
    a, b = mean(get(table, max_pool, "test_accuracy")), mean(get(table, avg_pool, "test_accuracy"))
    claim = "max pooling is at least as accurate as average pooling"
    if a is None or b is None:
        verdicts.append(Verdict(claim, INCONCLUSIVE, "not measured"))
    else:
        noise = spread(get(table, max_pool, "test_accuracy")) + spread(get(table, avg_pool, "test_accuracy"))
        text = f"{max_pool} {fmt(a)} vs {avg_pool} {fmt(b)} test accuracy"
        if a >= b:
            status = SUPPORTED
        elif b - a <= noise:
            status, text = INCONCLUSIVE, text + " (difference within the spread over seeds)"
        else:
            status = CONTRADICTED
        verdicts.append(Verdict(claim, status, text, {"max": a, "avg": b}))
    verdicts.append(smaller("a stride-2 convolution trains faster per epoch than convolution + max pooling",
                            strided, get(table, strided, "time_per_epoch"),
                            max_pool, get(table, max_pool, "time_per_epoch")))
    return verdicts
