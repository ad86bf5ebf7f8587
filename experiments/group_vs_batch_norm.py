"""Study 6: GroupNorm against BatchNorm at small batch sizes.

    python -m experiments.group_vs_batch_norm [--batch-sizes 2,4,8,32]

The same CNN with BatchNorm or GroupNorm after each convolution and the hidden dense
layer, trained at batch sizes 2, 4, 8 and 32 for the same number of epochs and
learning rate. BatchNorm's batch statistics become noisy at small batches, and its
running averages (used at test time) drift from them; GroupNorm normalizes each
example on its own (Wu & He, 2018), so its accuracy should not depend on the batch.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli, plots, runner, verdicts
from experiments.models import cnn

BATCH_SIZES = (2, 4, 8, 32)
QUICK_BATCH_SIZES = (8,)
GROUPS = 4
TRAIN_SIZE = {"digits": None, "mnist": 10000, "fashion-mnist": 10000, "cifar10": 10000}

CLAIMS = ("GroupNorm keeps its accuracy at small batches where BatchNorm degrades",)


def add_arguments(group):
    group.add_argument("--batch-sizes", type=cli.number_list(int, "batch sizes"), default=None,
                       metavar="N,M,...",
                       help=f"batch sizes compared (default: {','.join(map(str, BATCH_SIZES))})")
    group.add_argument("--train-size", type=cli.positive_int, default=None, metavar="N",
                       help="training examples used (default: all digits; 10000 for the larger "
                            "datasets, as batch 2 means many steps)")


def defaults(dataset: str, quick: bool) -> dict:
    return {} if quick else {"epochs": 5 if dataset == "digits" else 1}


def plan(run: runner.Run):
    s = run.settings
    sizes = tuple(sorted(s.options.get("batch_sizes") or (QUICK_BATCH_SIZES if s.quick else BATCH_SIZES)))
    train_size = s.options.get("train_size") or TRAIN_SIZE[s.dataset]
    available = run.data.get().train.labels.shape[0]
    return sizes, train_size, available if train_size is None else min(train_size, available)


def check(run: runner.Run) -> None:
    sizes, _, n_train = plan(run)
    if max(sizes) > n_train:
        raise cli.UsageError(f"--batch-sizes: {max(sizes)} is larger than the {n_train} training examples")


def run(run: runner.Run) -> None:
    s = run.settings
    sizes, train_size, _ = plan(run)
    num_classes = run.data.get().num_classes
    run.notes.append(f"CNN widths (16, 32), hidden 128, norm before ReLU; GroupNorm with {GROUPS} groups; "
                     f"SGD momentum 0.9, the same lr and epochs at every batch size.")
    variants = [runner.Variant(name=f"{norm}norm bs={bs}",
                               model=cnn(num_classes, "relu", norm=norm, groups=GROUPS),
                               batch_size=bs, train_size=train_size, info={"norm": norm, "batch_size": bs})
                for norm in ("batch", "group") for bs in sizes]
    run.plan(variants)
    run.train(variants)
    run.columns = [
        runner.TEST_ACCURACY,
        runner.FINAL_TRAIN_LOSS,
        runner.Column("time_per_epoch", "s/epoch", ".2f"),
    ]
    run.verdicts = verdicts.group_norm_claims(run.table, sizes)
    fig, (ax,) = plots.figure()
    for i, norm in enumerate(("batch", "group")):
        runs = np.array([[np.nan if v is None else v for v in run.table[f"{norm}norm bs={bs}"]["test_accuracy"]]
                         for bs in sizes], float).T
        plots.band(ax, sizes, runs, label=f"{norm}norm", index=i)
    ax.set_xscale("log", base=2)
    plots.finish(ax, xlabel="batch size", ylabel="test accuracy",
                 title=f"Test accuracy vs batch size ({s.dataset})")
    run.add_plot(plots.save(fig, run.path("accuracy_vs_batch.png")), "test accuracy vs batch size")


STUDY = cli.Study(
    name="group_vs_batch_norm",
    description="BatchNorm vs GroupNorm at batch sizes 2, 4, 8 and 32.",
    claims=CLAIMS, run=run, lr=0.01, defaults=defaults, add_arguments=add_arguments, check=check,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
