"""Study 5: batch normalization across learning rates.

    python -m experiments.batchnorm [--lrs 0.01,0.03,0.1,0.3,1]

The reference CNN (`fcnn.models.refnet`) with and without BatchNorm after each
convolution and the hidden dense layer, trained with SGD + momentum at several
learning rates. Measured: steps to a smoothed training error of 10%, and whether a
run is stable (finite all along, and its final training loss at most half its
initial one). The claims (Ioffe & Szegedy, 2015): BN trains faster and tolerates
larger learning rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnn import program
from fcnn.models import refnet

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import STABLE_FRACTION, Variant

TARGET = 0.10
WIDTHS, HIDDEN = (16, 32), 128


@dataclass(frozen=True)
class Config(study.Config):
    lr: float = 0.1
    lrs: tuple[float, ...] = option((0.01, 0.03, 0.1, 0.3, 1.0), quick=(0.01, 1.0),
                                    help="learning rates swept")


def _by_lr(f: claims.Findings, base: str) -> dict:
    return f.facts["by"][base]


def _faster(f: claims.Findings) -> claims.Judgement:
    key, budget = report.target_key(TARGET), f.facts["budget"]
    plain, bn = _by_lr(f, "plain"), _by_lr(f, "batchnorm")
    best = [(lr, claims.censored_mean(claims.get(f.table, plain[lr], key), budget)[0],
             claims.censored_mean(claims.get(f.table, bn[lr], key), budget)[0])
            for lr in sorted(set(plain) & set(bn))]
    p_best = min((p for _, p, _ in best if p is not None), default=None)
    b_best = min((b for _, _, b in best if b is not None), default=None)
    per_lr = ", ".join(f"lr {claims.fmt(lr)}: {claims.fmt(p)} vs {claims.fmt(b)}" for lr, p, b in best)
    if p_best is None and b_best is None:
        return claims.Judgement(claims.INCONCLUSIVE, "neither reached the target: " + per_lr)
    faster_bn = b_best is not None and (p_best is None or b_best < p_best)
    return claims.Judgement(
        claims.SUPPORTED if faster_bn else claims.CONTRADICTED,
        f"best steps without BN {claims.fmt(p_best)}, with BN {claims.fmt(b_best)} (per lr, plain vs "
        f"BN: {per_lr})", {"plain": p_best, "bn": b_best})


def _largest_stable(f: claims.Findings, base: str):
    ok = [lr for lr, name in _by_lr(f, base).items()
          if (claims.mean(claims.get(f.table, name, "stable")) or 0) >= 1]
    return max(ok) if ok else None


def _tolerates(f: claims.Findings) -> claims.Judgement:
    lp, lb = _largest_stable(f, "plain"), _largest_stable(f, "batchnorm")
    text = f"largest stable learning rate without BN {claims.fmt(lp)}, with BN {claims.fmt(lb)}"
    if lb is None:
        status = claims.INCONCLUSIVE if lp is None else claims.CONTRADICTED
    elif lp is None:
        status = claims.SUPPORTED
    else:
        status = claims.SUPPORTED if lb > lp else claims.INCONCLUSIVE if lb == lp else claims.CONTRADICTED
        if lb == lp:
            text += " (equal: the sweep did not reach a rate that separates them)"
    return claims.Judgement(status, text, {"plain": lp, "bn": lb})


CLAIMS = (
    claims.Claim(f"BatchNorm trains faster (fewer steps to {100 * TARGET:g}% training error, each at "
                 "its best rate)", _faster),
    claims.Claim("BatchNorm tolerates larger learning rates (largest stable rate)", _tolerates),
)


def draw(session, results, table, by, lrs, budget) -> list:
    key = report.target_key(TARGET)
    fig, axes = plots.figure(1, 2)
    for i, (base, by_lr) in enumerate(by.items()):
        xs = sorted(by_lr)
        steps = np.array([[budget * 1.05 if v is None else v for v in table[by_lr[lr]][key]] for lr in xs],
                         float).T
        plots.band(axes[0], xs, steps, label=base, index=i)
        loss = np.array([[np.nan if v is None else v for v in table[by_lr[lr]]["final_train_loss"]]
                         for lr in xs], float).T
        plots.band(axes[1], xs, loss, label=base, index=i, logy=True)
    axes[0].axhline(budget, color="black", linestyle=":", linewidth=0.8, label="budget (not reached above)")
    plots.finish(axes[0], xlabel="learning rate", ylabel=f"steps to {100 * TARGET:g}% training error",
                 title="Steps to the target", logx=True, logy=True)
    plots.finish(axes[1], xlabel="learning rate", ylabel="final training loss",
                 title="Final training loss (diverged runs left out)", logx=True, logy=True)
    dataset = session.config.dataset
    fig.suptitle(f"BatchNorm vs plain across learning rates ({dataset})")
    mid = min(lrs, key=lambda lr: abs(np.log(lr / 0.1)))
    return [(plots.save(fig, session.path("batchnorm_lr.png")),
             "steps to target and final loss vs learning rate"),
            plots.training_error(session.path("train_error.png"),
                                 {f"{b} lr={mid:g}": results[by[b][mid]] for b in by},
                                 study="batchnorm", dataset=dataset, targets=(TARGET,),
                                 title=f"Training error at lr={mid:g} ({dataset})")]


def run(session: study.Session) -> study.Outcome:
    c = session.config
    lrs = tuple(sorted(c.lrs))
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=name, model=refnet(num_classes, "relu", widths=WIDTHS,
                                                             hidden=HIDDEN, batchnorm=bn),
                                     lr=lrs, info={"batchnorm": bn})
                             for name, bn in (("plain", False), ("batchnorm", True))],
                            targets=(TARGET,))
    by: dict[str, dict[float, str]] = {"plain": {}, "batchnorm": {}}
    for name, r in results.items():
        by[r.base][r.lr] = name
    budget = max(r.total_steps for r in results.values())
    return study.Outcome(
        metrics={name: {"lr": [r.lr] * len(r.seeds)} for name, r in results.items()},
        columns=[report.LEARNING_RATE, report.steps_to_column(TARGET),
                 report.Column("stable", "stable", ".2f"), report.FINAL_TRAIN_LOSS,
                 report.TEST_ACCURACY],
        facts={"by": by, "budget": budget},
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9; stable = finite and "
               f"final training loss <= {STABLE_FRACTION:g} x the initial one."],
        plots=draw(session, results, session.table, by, lrs, budget))


STUDY = study.Study(
    name="batchnorm",
    description="The reference CNN with and without BatchNorm across learning rates: steps to "
                "target and the largest stable learning rate.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
