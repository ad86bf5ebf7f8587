"""Study 3: dead ReLU units after training, against the learning rate.

    python -m experiments.dead_relu [--lrs 0.01,0.03,0.1,0.3,1]

An MLP with ReLU, leaky ReLU or PReLU units is trained with plain SGD at several
learning rates (the rates of one activation are trained together, vmapped, with the
seeds). A unit is dead when it is never active (output <= 0) on a held-out batch:
it passes no gradient through a ReLU and cannot recover. The notes: with a too large
learning rate up to 40% of a ReLU network can die; leaky units keep a gradient.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli, plots, runner, verdicts
from experiments.models import mlp

ACTIVATIONS = ("relu", "leaky_relu", "prelu")
QUICK_ACTIVATIONS = ("relu", "leaky_relu")
LRS = (0.01, 0.1, 0.3, 0.5, 0.7, 1.0)
QUICK_LRS = (0.03, 1.0)
DEPTH, WIDTH = 3, 128

CLAIMS = (
    "large learning rates kill a large share of ReLU units (the notes: up to 40%)",
    "leaky ReLU and PReLU units do not die",
)


def add_arguments(group):
    cli.add_lrs_argument(group, LRS)
    group.add_argument("--activations", type=cli.name_list(ACTIVATIONS, "activations"), default=None,
                       metavar="A,B,...", help=f"activations (default: {', '.join(ACTIVATIONS)})")


def run(run: runner.Run) -> None:
    s = run.settings
    lrs = tuple(sorted(s.options.get("lrs") or (QUICK_LRS if s.quick else LRS)))
    names = s.options.get("activations") or (QUICK_ACTIVATIONS if s.quick else ACTIVATIONS)
    num_classes = run.data.get().num_classes
    width = 32 if s.quick else WIDTH
    run.notes.append(f"MLP: {DEPTH} hidden layers of {width} units, LeCun-normal init, plain SGD; "
                     "dead = never active over the held-out validation batch.")
    variants = [runner.Variant(name=n, model=mlp(num_classes, n, depth=DEPTH, width=width), lr=lrs,
                               optimizer="sgd", probe=runner.units_probe, info={"activation": n})
                for n in names]
    run.plan(variants)
    results = run.train(variants)
    by_activation: dict[str, dict[float, str]] = {}
    for name, r in results.items():
        by_activation.setdefault(r.base, {})[r.lr] = name
        layers = runner.probe_layers(r, "dead")
        for layer in layers:
            run.add_metric(name, f"dead/{layer}", runner.probe_at(r, f"dead/{layer}", -1))
        dead = np.array([[np.nan if v is None else v for v in runner.probe_at(r, f"dead/{layer}", -1)]
                         for layer in layers], float)
        active = np.array([[np.nan if v is None else v for v in runner.probe_at(r, f"active/{layer}", -1)]
                           for layer in layers], float)
        diverged = r.scalars["diverged"]
        run.add_metric(name, "dead_max", [None if d else v for d, v in zip(diverged, np.max(dead, axis=0))])
        run.add_metric(name, "active_mean", [None if d else v for d, v in zip(diverged, np.mean(active, axis=0))])
        run.add_metric(name, "lr", [r.lr] * len(r.seeds))
    run.columns = [
        runner.LEARNING_RATE,
        runner.DEAD_MAX,
        runner.Column("active_mean", "active", ".3f"),
        runner.TEST_ACCURACY,
        runner.DIVERGED,
    ]
    leaky = {a: by_lr for a, by_lr in by_activation.items() if a != "relu"}
    run.verdicts = verdicts.dead_relu_claims(run.table, by_activation.get("relu", {}), leaky)
    fig, axes = plots.figure(1, 2)
    for ax, metric, ylabel in ((axes[0], "dead_max", "dead fraction (max over layers)"),
                               (axes[1], "active_mean", "active fraction (mean over layers)")):
        for i, (activation, by_lr) in enumerate(by_activation.items()):
            xs = sorted(by_lr)
            runs = np.array([[np.nan if v is None else v for v in run.table[by_lr[lr]][metric]] for lr in xs], float).T
            plots.band(ax, xs, runs, label=activation, index=i)
        plots.finish(ax, xlabel="learning rate", ylabel=ylabel, title=f"{ylabel} after training", logx=True)
    fig.suptitle(f"Dead units vs learning rate ({s.dataset}; diverged runs left out)")
    run.add_plot(plots.save(fig, run.path("dead_vs_lr.png")), "dead and active fractions vs learning rate")


STUDY = cli.Study(
    name="dead_relu",
    description="Dead ReLU units after training against the learning rate, with leaky ReLU and PReLU.",
    claims=CLAIMS, run=run, lr=0.1, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
