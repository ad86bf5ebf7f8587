"""Study 9: the batch-size trade-off, from 8 to 1024 examples per step.

    python -m experiments.batch_size [--batch-sizes 8,32,128,1024] [--target 0.9]

The reference CNN trained for the same number of epochs at each batch size with the
same learning rate. Larger batches use the hardware better (less time per epoch) but
make fewer updates per epoch, so they need more epochs to reach a given accuracy;
measured: time per epoch, epochs and wall time to a target test accuracy, final
accuracy.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli, plots, runner, verdicts
from fcnn.models import refnet

BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
QUICK_BATCH_SIZES = (8, 64)
TARGET = {"digits": 0.9, "mnist": 0.97, "fashion-mnist": 0.85, "cifar10": 0.5}
WIDTHS, HIDDEN = (16, 32), 128

CLAIMS = (
    "larger batches take less time per epoch",
    "smaller batches need fewer epochs to reach the target accuracy",
)


def add_arguments(group):
    group.add_argument("--batch-sizes", type=cli.number_list(int, "batch sizes"), default=None,
                       metavar="N,M,...",
                       help=f"batch sizes (default: {','.join(map(str, BATCH_SIZES))}, those that fit "
                            "the training set)")
    group.add_argument("--target", type=cli.positive_float, default=None, metavar="ACC",
                       help="target test accuracy (default: 0.9 digits, 0.97 MNIST)")


def sizes_for(run: runner.Run):
    s = run.settings
    n_train = run.data.get().train.labels.shape[0]
    given = s.options.get("batch_sizes")
    sizes = tuple(sorted(given or (QUICK_BATCH_SIZES if s.quick else BATCH_SIZES)))
    return sizes if given else tuple(b for b in sizes if b <= n_train), n_train


def check(run: runner.Run) -> None:
    sizes, n_train = sizes_for(run)
    if not sizes or max(sizes) > n_train:
        raise cli.UsageError(f"--batch-sizes: at most {n_train} (the training examples), got {list(sizes)}")
    target = run.settings.options.get("target")
    if target is not None and target > 1:
        raise cli.UsageError(f"--target {target}: expected an accuracy in (0, 1]")


def run(run: runner.Run) -> None:
    s = run.settings
    sizes, _ = sizes_for(run)
    target = s.options.get("target") or TARGET[s.dataset]
    num_classes = run.data.get().num_classes
    run.notes.append(f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9, lr {s.lr:g} at every batch "
                     f"size; target test accuracy {target:g} (checked after each epoch).")
    variants = [runner.Variant(name=f"bs={bs}", model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                               batch_size=bs, info={"batch_size": bs}) for bs in sizes]
    run.plan(variants)
    results = run.train(variants)
    for name, r in results.items():
        acc = r.epoch["test_accuracy"]
        epochs = [runner.first_at_least(row, target) for row in acc]
        run.add_metric(name, "epochs_to_target", epochs)
        run.add_metric(name, "time_to_target",
                       [None if e is None else float(r.epoch["time"][i, e]) for i, e in enumerate(epochs)])
        run.add_metric(name, "batch_size", [r.batch_size] * len(r.seeds))
    run.columns = [
        runner.Column("time_per_epoch", "s/epoch", ".3f"),
        runner.Column("epochs_to_target", f"epochs to {target:g}", ".2g"),
        runner.Column("time_to_target", f"s to {target:g}", ".2f"),
        runner.Column("test_accuracy", "final test acc", ".4f"),
        runner.Column("compile_time", "compile s", ".2f"),
    ]
    run.verdicts = verdicts.batch_size_claims(run.table, sizes, budget=s.epochs + 1)
    fig, axes = plots.figure(1, 3, width=5.0)
    panels = (("time_per_epoch", "seconds per epoch", True),
              ("epochs_to_target", f"epochs to {target:g} test accuracy", False),
              ("test_accuracy", "final test accuracy", False))
    for ax, (metric, ylabel, logy) in zip(axes, panels):
        runs = np.array([[np.nan if v is None else v for v in run.table[f"bs={bs}"][metric]] for bs in sizes],
                        float).T
        plots.band(ax, sizes, runs, label=metric, index=0, logy=logy)
        ax.set_xscale("log", base=2)
        plots.finish(ax, xlabel="batch size", ylabel=ylabel, title=ylabel, logy=logy, legend=False)
    fig.suptitle(f"Batch size trade-off ({s.dataset}, {s.epochs} epochs; missing points: target not reached)")
    run.add_plot(plots.save(fig, run.path("batch_size.png")), "time, epochs to target and accuracy vs batch size")
    runner.plot_epoch_metric(run, results, "test_accuracy", name="test_accuracy.png", ylabel="test accuracy")


STUDY = cli.Study(
    name="batch_size",
    description="Batch sizes from 8 to 1024: time per epoch, epochs and time to a target accuracy, "
                "final accuracy.",
    claims=CLAIMS, run=run, lr=0.01, add_arguments=add_arguments, check=check,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
