"""Study 9: the batch-size trade-off, from 8 to 1024 examples per step.

    python -m experiments.batch_size [--batch-sizes 8,32,128,1024] [--target 0.9]

The reference CNN trained for the same number of epochs at each batch size with the
same learning rate. Larger batches use the hardware better (less time per epoch) but
make fewer updates per epoch, so they need more epochs to reach a given accuracy;
measured: time per epoch, epochs and wall time to a target test accuracy, final
accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnn import program
from fcnn.cli import UsageError
from fcnn.models import refnet

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant, first_at_least

WIDTHS, HIDDEN = (16, 32), 128
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
QUICK_BATCH_SIZES = (8, 64)


@dataclass(frozen=True)
class Config(study.Config):
    batch_sizes: tuple[int, ...] | None = option(
        None, help=f"batch sizes (default: {','.join(map(str, BATCH_SIZES))}, those that fit the "
                   f"training set; --quick: {','.join(map(str, QUICK_BATCH_SIZES))})")
    target: float = option(0.97, per_dataset={"digits": 0.9, "fashion-mnist": 0.85, "cifar10": 0.5},
                           help="target test accuracy")


def sizes_for(config: Config, data) -> tuple[int, ...]:
    """The sizes given, or the default ones that fit the training set."""
    if config.batch_sizes:
        return tuple(sorted(config.batch_sizes))
    n_train = data.get().train.labels.shape[0]
    return tuple(b for b in (QUICK_BATCH_SIZES if config.quick else BATCH_SIZES) if b <= n_train)


def check(config: Config, data) -> None:
    n_train = data.get().train.labels.shape[0]
    sizes = sizes_for(config, data)
    if not sizes or max(sizes) > n_train:
        raise UsageError(f"--batch-sizes: at most {n_train} (the training examples), got {list(sizes)}")
    if config.target > 1:
        raise UsageError(f"--target {config.target}: expected an accuracy in (0, 1]")


def _per_epoch_faster(f: claims.Findings) -> claims.Judgement:
    small, large = f"bs={min(f.facts['sizes'])}", f"bs={max(f.facts['sizes'])}"
    time = lambda n: claims.get(f.table, n, "time_per_epoch")  # noqa: E731
    return claims.smaller(large, time(large), small, time(small))


def _fewer_epochs(f: claims.Findings) -> claims.Judgement:
    small, large = f"bs={min(f.facts['sizes'])}", f"bs={max(f.facts['sizes'])}"
    return claims.faster(f.table, [small], [large], "epochs_to_target", f.facts["budget"])


CLAIMS = (
    claims.Claim("larger batches take less time per epoch", _per_epoch_faster),
    claims.Claim("smaller batches need fewer epochs to reach the target accuracy", _fewer_epochs),
)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    sizes = sizes_for(c, session.data)
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=f"bs={bs}", model=refnet(num_classes, "relu", widths=WIDTHS,
                                                                  hidden=HIDDEN),
                                     batch_size=bs, info={"batch_size": bs}) for bs in sizes])
    metrics = {}
    for name, r in results.items():
        epochs = [first_at_least(row, c.target) for row in r.epoch["test_accuracy"]]
        metrics[name] = {
            "epochs_to_target": epochs, "batch_size": [r.batch_size] * len(r.seeds),
            "time_to_target": [None if e is None else float(r.epoch["time"][i, e]) for i, e in enumerate(epochs)]}
    fig, axes = plots.figure(1, 3, width=5.0)
    for ax, (metric, ylabel, logy) in zip(axes, (
            ("time_per_epoch", "seconds per epoch", True),
            ("epochs_to_target", f"epochs to {c.target:g} test accuracy", False),
            ("test_accuracy", "final test accuracy", False))):
        rows = [metrics[f"bs={bs}"].get(metric) or session.table[f"bs={bs}"][metric] for bs in sizes]
        runs = np.array([[np.nan if v is None else v for v in row] for row in rows], float).T
        plots.band(ax, sizes, runs, label=metric, index=0, logy=logy)
        ax.set_xscale("log", base=2)
        plots.finish(ax, xlabel="batch size", ylabel=ylabel, title=ylabel, logy=logy, legend=False)
    fig.suptitle(f"Batch size trade-off ({c.dataset}, {c.epochs} epochs; missing points: target not reached)")
    return study.Outcome(
        metrics=metrics,
        columns=[report.Column("time_per_epoch", "s/epoch", ".3f"),
                 report.Column("epochs_to_target", f"epochs to {c.target:g}", ".2g"),
                 report.Column("time_to_target", f"s to {c.target:g}", ".2f"),
                 report.Column("test_accuracy", "final test acc", ".4f"),
                 report.Column("compile_time", "compile s", ".2f")],
        facts={"sizes": sizes, "budget": c.epochs + 1},
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9, lr {c.lr:g} at every batch "
               f"size; target test accuracy {c.target:g} (checked after each epoch)."],
        plots=[(plots.save(fig, session.path("batch_size.png")),
                "time, epochs to target and accuracy vs batch size"),
               plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                                  ylabel="test accuracy", study="batch_size", dataset=c.dataset)])


STUDY = study.Study(
    name="batch_size",
    description="Batch sizes from 8 to 1024: time per epoch, epochs and time to a target accuracy, "
                "final accuracy.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
