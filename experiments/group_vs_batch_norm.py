"""Study 6: GroupNorm against BatchNorm at small batch sizes.

    python -m experiments.group_vs_batch_norm [--batch-sizes 2,4,8,32]

The same CNN with BatchNorm or GroupNorm after each convolution and the hidden dense
layer, trained at batch sizes 2, 4, 8 and 32 for the same number of epochs and
learning rate. BatchNorm's batch statistics become noisy at small batches, and its
running averages (used at test time) drift from them; GroupNorm normalizes each
example on its own (Wu & He, 2018), so its accuracy should not depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnn import program
from fcnn.cli import UsageError
from fcnn.models import cnn

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant

GROUPS = 4
TOLERANCE = 0.02


@dataclass(frozen=True)
class Config(study.Config):
    epochs: int = option(1, per_dataset={"digits": 5})
    batch_sizes: tuple[int, ...] = option((2, 4, 8, 32), quick=(8,), help="batch sizes compared")
    train_size: int | None = option(10000, per_dataset={"digits": None},
                                    help="training examples used (batch 2 means many steps)")


def check(config: Config, data) -> None:
    n_train = data.get().train.labels.shape[0]
    if max(config.batch_sizes) > min(config.train_size or n_train, n_train):
        raise UsageError(f"--batch-sizes: {max(config.batch_sizes)} is larger than the "
                         f"{min(config.train_size or n_train, n_train)} training examples")


def _keeps_accuracy(f: claims.Findings) -> claims.Judgement:
    small, large = min(f.facts["batch_sizes"]), max(f.facts["batch_sizes"])
    acc = lambda norm, bs: claims.mean(claims.get(f.table, f"{norm}norm bs={bs}", "test_accuracy"))  # noqa: E731
    bn_s, bn_l, gn_s, gn_l = acc("batch", small), acc("batch", large), acc("group", small), acc("group", large)
    if None in (bn_s, bn_l, gn_s, gn_l):
        return claims.Judgement(claims.INCONCLUSIVE, "not measured at both batch sizes")
    bn_drop, gn_drop = bn_l - bn_s, gn_l - gn_s
    fmt = claims.fmt
    text = (f"batch {large} -> {small}: BatchNorm {fmt(bn_l)} -> {fmt(bn_s)} (drop {fmt(bn_drop)}), "
            f"GroupNorm {fmt(gn_l)} -> {fmt(gn_s)} (drop {fmt(gn_drop)})")
    if abs(gn_drop - bn_drop) <= TOLERANCE and abs(gn_s - bn_s) <= TOLERANCE:
        return claims.Judgement(claims.INCONCLUSIVE, text + f" (differences within {fmt(TOLERANCE)})")
    holds = gn_drop < bn_drop and gn_s > bn_s
    return claims.Judgement(claims.SUPPORTED if holds else claims.CONTRADICTED, text,
                            {"bn_drop": bn_drop, "gn_drop": gn_drop})


CLAIMS = (claims.Claim("GroupNorm keeps its accuracy at small batches where BatchNorm degrades",
                       _keeps_accuracy),)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    sizes = tuple(sorted(c.batch_sizes))
    num_classes = session.data.get().num_classes
    session.train([Variant(name=f"{norm}norm bs={bs}", model=cnn(num_classes, "relu", norm=norm, groups=GROUPS),
                           batch_size=bs, train_size=c.train_size, info={"norm": norm, "batch_size": bs})
                   for norm in ("batch", "group") for bs in sizes])
    fig, (ax,) = plots.figure()
    for i, norm in enumerate(("batch", "group")):
        runs = np.array([[np.nan if v is None else v for v in session.table[f"{norm}norm bs={bs}"]["test_accuracy"]]
                         for bs in sizes], float).T
        plots.band(ax, sizes, runs, label=f"{norm}norm", index=i)
    ax.set_xscale("log", base=2)
    plots.finish(ax, xlabel="batch size", ylabel="test accuracy",
                 title=f"Test accuracy vs batch size ({c.dataset})")
    return study.Outcome(
        columns=[report.TEST_ACCURACY, report.FINAL_TRAIN_LOSS,
                 report.Column("time_per_epoch", "s/epoch", ".2f")],
        facts={"batch_sizes": sizes},
        notes=[f"CNN widths (16, 32), hidden 128, norm before ReLU; GroupNorm with {GROUPS} groups; "
               "SGD momentum 0.9, the same lr and epochs at every batch size."],
        plots=[(plots.save(fig, session.path("accuracy_vs_batch.png")), "test accuracy vs batch size")])


STUDY = study.Study(
    name="group_vs_batch_norm",
    description="BatchNorm vs GroupNorm at batch sizes 2, 4, 8 and 32.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
