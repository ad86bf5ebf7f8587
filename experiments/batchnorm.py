"""Study 5: batch normalization across learning rates.

    python -m experiments.batchnorm [--lrs 0.01,0.03,0.1,0.3,1]

The reference CNN (`fcnn.models.refnet`) with and without BatchNorm after each
convolution and the hidden dense layer, trained with SGD + momentum at several
learning rates. Measured: steps to a smoothed training error of 10%, and whether a
run is stable (finite all along, and its final training loss at most half its
initial one). The claims (Ioffe & Szegedy,
2015): BN trains faster and tolerates larger learning rates.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli, plots, runner, verdicts
from fcnn.models import refnet

LRS = (0.01, 0.03, 0.1, 0.3, 1.0)
QUICK_LRS = (0.01, 1.0)
TARGET = 0.10
WIDTHS, HIDDEN = (16, 32), 128

CLAIMS = (
    "BatchNorm trains faster (fewer steps to 10% training error, each at its best rate)",
    "BatchNorm tolerates larger learning rates (largest stable rate)",
)


def add_arguments(group):
    cli.add_lrs_argument(group, LRS)


def run(run: runner.Run) -> None:
    s = run.settings
    lrs = tuple(sorted(s.options.get("lrs") or (QUICK_LRS if s.quick else LRS)))
    num_classes = run.data.get().num_classes
    run.targets = (TARGET,)
    run.notes.append(f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9; stable = finite and "
                     f"final training loss <= {runner.STABLE_FRACTION:g} x the initial one.")
    variants = [runner.Variant(name=name, model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN,
                                                       batchnorm=bn),
                               lr=lrs, info={"batchnorm": bn})
                for name, bn in (("plain", False), ("batchnorm", True))]
    run.plan(variants)
    results = run.train(variants)
    by = {"plain": {}, "batchnorm": {}}
    for name, r in results.items():
        by[r.base][r.lr] = name
        run.add_metric(name, "lr", [r.lr] * len(r.seeds))
    key = runner.target_key(TARGET)
    budget = max(r.total_steps for r in results.values())
    run.columns = [
        runner.LEARNING_RATE,
        runner.steps_to_column(TARGET),
        runner.Column("stable", "stable", ".2f"),
        runner.FINAL_TRAIN_LOSS,
        runner.TEST_ACCURACY,
    ]
    run.verdicts = verdicts.batchnorm_claims(run.table, by["plain"], by["batchnorm"], target_metric=key,
                                             budget=budget)
    fig, axes = plots.figure(1, 2)
    for i, (base, by_lr) in enumerate(by.items()):
        xs = sorted(by_lr)
        steps = np.array([[budget * 1.05 if v is None else v for v in run.table[by_lr[lr]][key]] for lr in xs],
                         float).T
        plots.band(axes[0], xs, steps, label=base, index=i)
        loss = np.array([[np.nan if v is None else v for v in run.table[by_lr[lr]]["final_train_loss"]]
                         for lr in xs], float).T
        plots.band(axes[1], xs, loss, label=base, index=i, logy=True)
    axes[0].axhline(budget, color="black", linestyle=":", linewidth=0.8, label="budget (not reached above)")
    plots.finish(axes[0], xlabel="learning rate", ylabel=f"steps to {100 * TARGET:g}% training error",
                 title="Steps to the target", logx=True, logy=True)
    plots.finish(axes[1], xlabel="learning rate", ylabel="final training loss",
                 title="Final training loss (diverged runs left out)", logx=True, logy=True)
    fig.suptitle(f"BatchNorm vs plain across learning rates ({s.dataset})")
    run.add_plot(plots.save(fig, run.path("batchnorm_lr.png")), "steps to target and final loss vs learning rate")
    mid = min(lrs, key=lambda lr: abs(np.log(lr / 0.1)))
    runner.plot_training_error(run, {n: results[by[b][mid]] for b in by for n in [f"{b} lr={mid:g}"]},
                               targets=(TARGET,), title=f"Training error at lr={mid:g} ({s.dataset})")


STUDY = cli.Study(
    name="batchnorm",
    description="The reference CNN with and without BatchNorm across learning rates: steps to "
                "target and the largest stable learning rate.",
    claims=CLAIMS, run=run, lr=0.1, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
