"""Claims and their verdicts: the measured numbers held against what the notes claim.

A study reduces its runs to a table of per-seed numbers,

    table[variant][metric] = [value of seed 0, value of seed 1, ...]

where a value is a float, or None when it was not measured or not reached (e.g. a
training-error target the run never reached within its steps). A `Claim` is the
sentence of the notes and the check that judges it, in one object: the command
line's help, the report and the printed verdict all read the sentence from it.

A check is a function of the `Findings` (the table, the number of seeds and the
study's facts such as the step budget) returning a `Judgement`: "supported" when the
measured means order as the claim says, "contradicted" when they order the other
way, "inconclusive" when the numbers cannot decide (nothing reached, or a difference
within the spread across seeds, which is then named in the evidence). With a single
seed there is no spread to compare a difference with, so a claim is never more than
inconclusive then. The generic checks below (faster, smaller, higher, not_worse,
smallest, within, decreasing, majority, every) are pure: tests feed them hand-made tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
STATUSES = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
AS_ACCURATE_MARGIN = 0.005  # "as accurate": at most half a point of test accuracy lower

Table = Mapping[str, Mapping[str, Sequence]]


@dataclass(frozen=True)
class Judgement:
    """What a check concludes: a status, the evidence in words, the numbers."""

    status: str
    evidence: str
    numbers: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r}: expected one of {STATUSES}")


@dataclass(frozen=True)
class Findings:
    """What a study measured: the table, the seeds per variant, and study facts
    (e.g. {"budget": 1287}) its checks need."""

    table: Table
    seeds: int
    facts: Mapping = field(default_factory=dict)


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


@dataclass(frozen=True)
class Claim:
    """A claim of the notes: its sentence and the check that judges it."""

    text: str
    check: Callable[[Findings], Judgement]

    def judge(self, findings: Findings) -> Verdict:
        j = self.check(findings)
        status, evidence = j.status, j.evidence
        if findings.seeds < 2 and status != INCONCLUSIVE:
            evidence += f" (would be {status}, but one seed gives no spread to judge a difference by)"
            status = INCONCLUSIVE
        return Verdict(self.text, status, evidence, j.numbers)


# ---------------------------------------------------------------------------------
# Reductions over seeds


def finite(values) -> list[float]:
    """The finite floats among `values` (None, NaN and inf dropped)."""
    return [float(v) for v in values or () if v is not None and math.isfinite(float(v))]


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


def censored_mean(values, budget):
    """(mean, reached_all) for steps-to-target values where None means 'not reached'.

    Unreached seeds count as `budget` (a lower bound), so the mean is a lower bound
    too when reached_all is False; (None, False) when no seed reached it.
    """
    values = list(values or ())
    if not values or not any(v is not None for v in values):
        return None, False
    filled = [float(v) if v is not None else float(budget) for v in values]
    return sum(filled) / len(filled), all(v is not None for v in values)


def family_mean(table, members, metric, budget):
    """Mean over the members of a family of their censored means (unreached: budget)."""
    means, all_reached = [], True
    for name in members:
        m, reached = censored_mean(get(table, name, metric), budget)
        if m is None:
            m, reached = float(budget), False
        means.append(m)
        all_reached = all_reached and reached
    if not means:
        return None, False
    return sum(means) / len(means), all_reached


def pooled(table, names, metric) -> list:
    """Every seed's value of every variant in `names`, pooled (a family's spread)."""
    return [v for name in names for v in get(table, name, metric)]


# ---------------------------------------------------------------------------------
# Generic checks


def faster(table: Table, fast: Sequence[str], slow: Sequence[str], metric: str,
           budget: float, unit: str = "steps") -> Judgement:
    """`fast` variants reach a target in fewer steps than `slow` ones (mean over seeds).

    `metric` holds steps-to-target per seed (None: not reached within `budget`
    steps). A family (several names) is the mean of its members' means. `unit` names
    what `metric` counts in the evidence ("steps", "epochs", "s").
    """
    present_fast = [n for n in fast if n in table]
    present_slow = [n for n in slow if n in table]
    label_fast, label_slow = "/".join(present_fast) or "-", "/".join(present_slow) or "-"
    if not present_fast or not present_slow:
        return Judgement(INCONCLUSIVE, f"not measured: {label_fast} vs {label_slow}")
    a, a_all = family_mean(table, present_fast, metric, budget)
    b, b_all = family_mean(table, present_slow, metric, budget)
    numbers = {"fast": a, "slow": b, "fast_reached_all": a_all, "slow_reached_all": b_all}
    a_txt = fmt(a) if a_all else f">= {fmt(a)}"
    b_txt = fmt(b) if b_all else f">= {fmt(b)}"
    if not a_all and not b_all:
        return Judgement(INCONCLUSIVE,
                         f"neither {label_fast} ({a_txt}) nor {label_slow} ({b_txt}) reached the "
                         f"target in every seed within {fmt(budget)} {unit}", numbers)
    ratio = b / a if a else math.inf
    numbers["ratio"] = ratio
    # with one side censored the ratio is a bound: unreached runs count as `budget`
    bound = ">= " if a_all and not b_all else "<= " if b_all and not a_all else ""
    text = f"{label_fast} {a_txt} {unit} vs {label_slow} {b_txt} {unit} (ratio {bound}{fmt(ratio)}x)"
    if a_all and not b_all:
        return Judgement(SUPPORTED if a <= b else INCONCLUSIVE, text, numbers)
    if b_all and not a_all:
        return Judgement(CONTRADICTED if b <= a else INCONCLUSIVE, text, numbers)
    noise = spread(pooled(table, present_fast, metric)) + spread(pooled(table, present_slow, metric))
    if abs(a - b) <= noise:
        return Judgement(INCONCLUSIVE, text + f" (difference within the spread over seeds, "
                                              f"{fmt(noise, 2)})", numbers)
    return Judgement(SUPPORTED if a < b else CONTRADICTED, text, numbers)


def majority(parts: Sequence[Judgement], labels: Sequence[str]) -> Judgement:
    """One judgement from several measurements of one claim (e.g. one per target): the
    status held by at least half of them and by more than hold the opposite."""
    supported = sum(p.status == SUPPORTED for p in parts)
    contradicted = sum(p.status == CONTRADICTED for p in parts)
    half = len(parts) / 2
    status = (SUPPORTED if supported > contradicted and supported >= half else
              CONTRADICTED if contradicted > supported and contradicted >= half else INCONCLUSIVE)
    evidence = "; ".join(f"{label}: [{p.status}] {p.evidence}" for label, p in zip(labels, parts))
    return Judgement(status, evidence, {label: p.numbers for label, p in zip(labels, parts)})


def every(parts: Sequence[Judgement], labels: Sequence[str]) -> Judgement:
    """Supported when every part is, contradicted when any part is."""
    statuses = {p.status for p in parts}
    status = (SUPPORTED if statuses == {SUPPORTED} else
              CONTRADICTED if CONTRADICTED in statuses else INCONCLUSIVE)
    evidence = "; ".join(f"{label}: {p.evidence}" for label, p in zip(labels, parts))
    return Judgement(status, evidence, {label: p.numbers for label, p in zip(labels, parts)})


def smaller(a_label: str, a_values, b_label: str, b_values, *, factor: float = 1.0) -> Judgement:
    """mean(a) < factor * mean(b); inconclusive when the gap is within the seed spread."""
    a, b = mean(a_values), mean(b_values)
    if a is None or b is None:
        return Judgement(INCONCLUSIVE,
                         f"{a_label} {fmt(a)}, {b_label} {fmt(b)}: not measured in every seed")
    numbers = {"a": a, "b": b}
    text = (f"{a_label} {fmt(a)} (+/- {fmt(spread(a_values), 2)}) vs {b_label} {fmt(b)} "
            f"(+/- {fmt(spread(b_values), 2)})")
    noise = spread(a_values) + spread(b_values)
    if abs(a - factor * b) <= noise and noise > 0:
        return Judgement(INCONCLUSIVE, text + " (difference within the spread over seeds)", numbers)
    return Judgement(SUPPORTED if a < factor * b else CONTRADICTED, text, numbers)


def smallest(table: Table, name: str, metric: str, others: Sequence[str]) -> Judgement:
    """table[name][metric] has the smallest mean among `name` and `others`."""
    values = {n: mean(get(table, n, metric)) for n in (name, *others) if n in table}
    if values.get(name) is None or len(values) < 2:
        return Judgement(INCONCLUSIVE, f"{metric} of {name} not measured")
    rest = {n: v for n, v in values.items() if n != name and v is not None}
    if not rest:
        return Judgement(INCONCLUSIVE, f"{metric} of the others not measured")
    runner_up = min(rest, key=rest.get)
    ratio = rest[runner_up] / values[name] if values[name] else math.inf
    text = (f"{name} {fmt(values[name])}; smallest other {runner_up} {fmt(rest[runner_up])} "
            f"({fmt(ratio)}x {name}'s)")
    numbers = {"value": values[name], "others": rest, "ratio": ratio}
    return Judgement(SUPPORTED if values[name] < rest[runner_up] else CONTRADICTED, text, numbers)


def within(label: str, values, low: float, high: float) -> Judgement:
    """low <= mean(values) <= high."""
    m = mean(values)
    if m is None:
        return Judgement(INCONCLUSIVE, f"{label}: not measured")
    return Judgement(SUPPORTED if low <= m <= high else CONTRADICTED,
                     f"{label} {fmt(m)} (expected in [{fmt(low)}, {fmt(high)}])", {"value": m})


def decreasing(label: str, sequence: Sequence[float], *, factor: float = 1.0) -> Judgement:
    """Every entry is smaller than the previous one times `factor` (None: not measured).

    The sequence runs from the output towards the input (e.g. gradient norm per layer
    listed from the last layer to the first).
    """
    if not sequence or any(v is None for v in sequence):
        return Judgement(INCONCLUSIVE, f"{label}: not measured")
    seq = [float(v) for v in sequence]
    steps = [b / a if a else math.inf for a, b in zip(seq, seq[1:])]
    ok = all(b < factor * a for a, b in zip(seq, seq[1:]))
    text = f"{label}: " + " -> ".join(fmt(v) for v in seq)
    if steps:
        text += f" (layer-to-layer ratios {', '.join(fmt(s, 2) for s in steps)})"
    return Judgement(SUPPORTED if ok else CONTRADICTED, text, {"sequence": seq, "ratios": steps})


def higher(a_label: str, a_values, b_label: str, b_values) -> Judgement:
    """mean(a) > mean(b); inconclusive when the difference is within the seed spread."""
    j = smaller(b_label, b_values, a_label, a_values)
    a, b = mean(a_values), mean(b_values)
    text = (f"{a_label} {fmt(a)} (+/- {fmt(spread(a_values), 2)}) vs {b_label} {fmt(b)} "
            f"(+/- {fmt(spread(b_values), 2)})")
    if j.status == INCONCLUSIVE and a is not None and b is not None:
        text += " (difference within the spread over seeds)"
    elif a is None or b is None:
        text = j.evidence
    return Judgement(j.status, text, {"a": a, "b": b})


def not_worse(a_label: str, a_values, b_label: str, b_values, *,
              margin: float = AS_ACCURATE_MARGIN) -> Judgement:
    """mean(a) is at most `margin` below mean(b): "a is as good as b".

    Supported when a is higher or lower by at most `margin`; contradicted when lower by
    more than `margin` plus the seed spread; inconclusive in between.
    """
    a, b = mean(a_values), mean(b_values)
    if a is None or b is None:
        return Judgement(INCONCLUSIVE,
                         f"{a_label} {fmt(a)}, {b_label} {fmt(b)}: not measured in every seed")
    noise = spread(a_values) + spread(b_values)
    short = b - a
    text = (f"{a_label} {fmt(a)} (+/- {fmt(spread(a_values), 2)}) vs {b_label} "
            f"{fmt(b)} (+/- {fmt(spread(b_values), 2)})")
    numbers = {"a": a, "b": b, "margin": margin}
    if short <= margin:
        if short > 0:
            text += f" (lower by {fmt(short, 2)}, within the margin {fmt(margin)})"
        return Judgement(SUPPORTED, text, numbers)
    if short > margin + noise:
        return Judgement(CONTRADICTED, text + f" (lower by {fmt(short, 2)}: more than the "
                                              f"margin {fmt(margin)} plus the seed spread)", numbers)
    return Judgement(INCONCLUSIVE, text + f" (lower by {fmt(short, 2)}: more than the margin "
                                          f"{fmt(margin)}, but within the spread over seeds)", numbers)


def statuses(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many verdicts have each status."""
    return {s: sum(v.status == s for v in verdicts) for s in STATUSES}
