"""Study 1, the main job: the same CNN with nine activations, trained the same way.

    python -m experiments.compare_activations                    # the 8x8 digits
    python -m experiments.compare_activations --dataset mnist --data-dir DIR

The network is `fcnn.models.refnet` (conv-pool-conv-pool-dense-dense, LeCun-normal
initialisation) with sigmoid, tanh, ReLU, leaky ReLU, PReLU, RReLU, softplus, ELU or
maxout units (maxout: two pieces per unit). Every activation gets the same data
order, initialisation family, optimizer (SGD with momentum 0.9) and learning rate,
or with --tune-lr its own rate picked on the validation split from --lr-grid.

Measured: training loss and error per step, test accuracy per epoch, wall time;
steps to a smoothed training error of 25% (the AlexNet figure), 10%, 5% and 2%;
per layer on a held-out batch: dead units (never active), active units (the notes:
about 50% for ReLU), saturated units (sigmoid/tanh), and the gradient norm.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli, plots, runner, verdicts
from experiments.models import activation_cnn

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu", "softplus", "elu", "maxout")
QUICK_ACTIVATIONS = ("sigmoid", "tanh", "relu")
TARGETS = (0.25, 0.10, 0.05, 0.02)
LR_GRID = (0.003, 0.01, 0.03, 0.1)
EARLY_LAYERS = ("conv1", "conv2")
WIDTHS = (16, 32)
HIDDEN = 128

CLAIMS = (
    "ReLU-family units reach the training-error targets (25%, 10%, 5%, 2%) in fewer steps than "
    "tanh units (the ratios are reported)",
    "tanh units reach them in fewer steps than sigmoid units",
    "sigmoid has the smallest gradients in the early layers (at initialisation, and averaged over "
    "training)",
)


def add_arguments(group):
    group.add_argument("--activations", type=cli.name_list(ACTIVATIONS, "activations"), default=None,
                       metavar="A,B,...",
                       help=f"activations to compare (default: all of {', '.join(ACTIVATIONS)}; "
                            f"with --quick: {', '.join(QUICK_ACTIVATIONS)})")
    group.add_argument("--tune-lr", action="store_true",
                       help="pick each activation's learning rate on the validation split from "
                            "--lr-grid (a fair comparison), then train with it")
    group.add_argument("--lr-grid", type=cli.number_list(float, "learning rates"), default=LR_GRID,
                       metavar="X,Y,...",
                       help=f"learning rates tried by --tune-lr (default: {','.join(map(str, LR_GRID))})")


def build(name: str, num_classes: int, lr=None) -> runner.Variant:
    return runner.Variant(
        name=name, model=activation_cnn(num_classes, name, widths=WIDTHS, hidden=HIDDEN),
        lr=lr, optimizer="momentum", probe=runner.units_probe, info={"activation": name},
    )


def run(run: runner.Run) -> None:
    s = run.settings
    names = s.options.get("activations") or (QUICK_ACTIVATIONS if s.quick else ACTIVATIONS)
    num_classes = run.data.get().num_classes
    run.targets = TARGETS
    run.notes.append(
        f"Network: refnet widths {WIDTHS}, hidden {HIDDEN}, LeCun-normal init, SGD momentum 0.9; "
        f"training error = mean over the last {runner.SMOOTHING} mini-batches; unit statistics on "
        f"{runner.QUICK['probe_size'] if s.quick else runner.PROBE_SIZE} held-out validation images.")
    lrs = {name: s.lr for name in names}
    if s.options.get("tune_lr"):
        grid = tuple(s.options["lr_grid"])
        run.plan([build(n, num_classes, grid) for n in names], seeds=1)
        run.plan([build(n, num_classes) for n in names])
        for name in names:
            best, _ = run.grid_search(f"lr/{name}", lambda params, n=name: build(n, num_classes),
                                      {"lr": grid})
            lrs[name] = best["lr"] if best else s.lr
        run.notes.append("Learning rates tuned per activation on the validation split: " +
                         ", ".join(f"{n} {lr:g}" for n, lr in lrs.items()))
    else:
        run.plan([build(n, num_classes) for n in names])
    results = run.train([build(n, num_classes, lrs[n]) for n in names])
    analyze(run, results)


def analyze(run: runner.Run, results: dict) -> None:
    budget = max(r.total_steps for r in results.values())
    for name, r in results.items():
        for target in TARGETS:
            steps = r.scalars[runner.target_key(target)]
            run.add_metric(name, f"seconds_to_{100 * target:g}", runner.time_to(r, steps))
        run.add_metric(name, "lr", [r.lr] * len(r.seeds))
        run.add_metric(name, "ms_per_step", [1000 * t for t in r.scalars["time_per_step"]])
        for layer in runner.probe_layers(r, "grad"):
            run.add_metric(name, f"grad_init/{layer}", runner.probe_at(r, f"grad/{layer}", 0))
            run.add_metric(name, f"grad_mean/{layer}", runner.probe_mean(r, f"grad/{layer}"))
        for kind in ("dead", "active", "saturated"):
            layers = runner.probe_layers(r, kind)
            for layer in layers:
                run.add_metric(name, f"{kind}_end/{layer}", runner.probe_at(r, f"{kind}/{layer}", -1))
            if layers:
                per_seed = np.array([runner.probe_at(r, f"{kind}/{layer}", -1) for layer in layers], float)
                reduce = np.nanmax if kind == "dead" else np.nanmean
                run.add_metric(name, f"{kind}_{'max' if kind == 'dead' else 'mean'}", reduce(per_seed, axis=0))
    run.columns = [
        runner.TEST_ACCURACY,
        runner.LEARNING_RATE,
        *[runner.steps_to_column(t) for t in TARGETS],
        runner.Column("seconds_to_25", "s to 25%", ".2f"),
        runner.Column("ms_per_step", "ms/step", ".2f"),
        runner.Column("grad_init/conv1", "grad conv1 (init)", ".2e"),
        runner.Column("grad_mean/conv1", "grad conv1 (mean)", ".2e"),
        runner.DEAD_MAX,
        runner.Column("active_mean", "active", ".3f"),
        runner.Column("saturated_mean", "saturated", ".3f"),
    ]
    run.verdicts = verdicts.activation_claims(run.table, budget=budget, targets=TARGETS,
                                              early_layers=EARLY_LAYERS)
    runner.plot_training_error(run, results, targets=TARGETS,
                               title=f"Training error by activation ({run.settings.dataset})")
    runner.plot_epoch_metric(run, results, "test_accuracy", name="test_accuracy.png",
                             ylabel="test accuracy")
    runner.layer_bars(run, results, [("grad", 0, "gradient norm"), ("grad", None, "gradient norm")],
                      name="grad_norm.png", logy=True,
                      title="Gradient norm per layer (held-out batch)", caption="gradient norm per layer")
    panels = [("dead", -1, "dead (never active) fraction"), ("active", -1, "active fraction")]
    if any(runner.probe_layers(r, "saturated") for r in results.values()):
        panels.append(("saturated", -1, "saturated fraction"))
    runner.layer_bars(run, results, panels, name="units.png",
                      title="Units after training (held-out batch)", caption="dead, active and saturated units")
    series = [{"label": n, "x": r.probe_steps, "runs": r.probes["grad/conv1"], "index": i}
              for i, (n, r) in enumerate(results.items()) if "grad/conv1" in r.probes]
    path = plots.curves(run.path("grad_conv1_steps.png"), series, xlabel="training step",
                        ylabel="gradient norm of conv1", logy=True,
                        title="First-layer gradient norm during training")
    run.add_plot(path, "first-layer gradient norm vs step")


STUDY = cli.Study(
    name="compare_activations",
    description="The same CNN with sigmoid, tanh, ReLU, leaky ReLU, PReLU, RReLU, softplus, "
                "ELU and maxout units: training speed, unit statistics and gradients.",
    claims=CLAIMS, run=run, lr=0.01, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
